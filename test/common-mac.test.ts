/** The one MAC rule (common/mac.ts), shared by lease validation and the VTEP MAC store. */
import { expect } from 'chai';
import { isUnicastMac } from '../common/mac.js';

describe('MAC addresses', () => {
  it('accepts only lower-case unicast MACs', () => {
    expect(isUnicastMac('0a:00:00:00:00:01')).to.equal(true);
    expect(isUnicastMac('01:00:5e:00:00:01')).to.equal(false);
    expect(isUnicastMac('0A:00:00:00:00:01')).to.equal(false);
    expect(isUnicastMac('0a:00:00:00:00')).to.equal(false);
  });
});
