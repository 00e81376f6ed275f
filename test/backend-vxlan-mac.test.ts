/** The VTEP MAC a vxlan device gets when none is stored (backend/vxlan/mac.ts). */
import { expect } from 'chai';
import { deriveVtepMac } from '../backend/vxlan/mac.js';

describe('backend: VTEP MAC', () => {
  it('derives a stable, locally administered unicast MAC', () => {
    const mac = deriveVtepMac('198.18.0.1/1');
    expect(mac).to.equal(deriveVtepMac('198.18.0.1/1'));
    expect(mac).to.not.equal(deriveVtepMac('198.18.0.2/1'));
    const first = parseInt(mac.slice(0, 2), 16);
    expect(first & 0x02, 'locally administered').to.equal(0x02);
    expect(first & 0x01, 'unicast').to.equal(0);
  });
});
