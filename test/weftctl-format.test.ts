/** weftctl's tables and durations (weftctl/format.ts). */
import { expect } from 'chai';
import { formatSeconds, table } from '../weftctl/format.js';

describe('weftctl output', () => {
  it('aligns table columns and formats TTLs', () => {
    expect(table(['A', 'BB'], [['xyz', '1'], ['q', '22']])).to.equal('A    BB\nxyz  1\nq    22');
    expect([formatSeconds(45), formatSeconds(125), formatSeconds(86_399)]).to.deep.equal(['45s', '2m05s', '23h59m59s']);
  });
});
