/**
 * Route messages: destinations sent as networks, anything but an IPv4 CIDR
 * refused. No kernel.
 */
import { expect } from 'chai';
import { WeftError } from '../common/errors.js';
import { RTPROT_WEFT } from '../kernel/kernel.js';
import { parseRoute } from '../kernel/netlink/route.js';
import { routeDelMessage, routeReplaceMessage } from './harness/netlink-messages.js';

describe('netlink route messages (unit)', () => {
  it('route destinations are sent as networks: host bits masked, canonical ones untouched', () => {
    const sent = (dst: string) => parseRoute(routeReplaceMessage({ dst, gw: '10.244.2.0', oif: 5, onlink: true, proto: RTPROT_WEFT }).body)!.dst;
    expect(sent('10.244.2.0/24')).to.equal('10.244.2.0/24');
    expect(sent('10.1.2.3/16')).to.equal('10.1.0.0/16');
    expect(sent('10.1.2.3/32')).to.equal('10.1.2.3/32');
    expect(sent('10.1.2.3/0')).to.equal('0.0.0.0/0');
    // A delete's rtmsg has type 0 (any), which parseRoute skips: read rtm_dst_len and RTA_DST's data directly.
    const del = routeDelMessage({ dst: '10.244.7.9/24' }).body;
    expect([del[1], ...del.subarray(16, 20)]).to.deep.equal([24, 10, 244, 7, 0]);
    for (const bad of ['10.244.2.0', '10.244.2.0/', '10.244.2.0/33', '10.244.2.0/24/1', '/24']) {
      expect(() => routeReplaceMessage({ dst: bad, gw: null, oif: 5, onlink: false, proto: RTPROT_WEFT }), bad).to.throw(/not an IPv4/);
    }
  });

  it('a message shorter than its header fails with WEFT_ERR_KERNEL', () => {
    expect(() => parseRoute(Buffer.alloc(8))).to.throw(WeftError, /route message of 8 bytes, shorter than its header/).with.property('code', 'WEFT_ERR_KERNEL');
    expect(() => routeDelMessage({ dst: '10.244.2.0' })).to.throw(WeftError).with.property('code', 'WEFT_ERR_ADDRESS_INVALID');
  });
});
