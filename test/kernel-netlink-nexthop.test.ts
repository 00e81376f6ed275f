/**
 * Nexthop object messages and routes by nhid: what weft sends reads back as
 * what it meant, the layout is the kernel's (<linux/nexthop.h>), and
 * notifications of both decode like dump entries. No kernel.
 */
import { expect } from 'chai';
import { WeftError } from '../common/errors.js';
import { RTPROT_BOOT, RTPROT_WEFT } from '../kernel/kernel.js';
import { RTM_DELNEXTHOP, RTM_NEWNEXTHOP, nexthopDumpMessage, parseNexthop } from '../kernel/netlink/nexthop.js';
import { decodeChange, MONITOR_GROUPS, OPTIONAL_MONITOR_GROUPS, RTNLGRP_NEXTHOP } from '../kernel/netlink/notify.js';
import { parseRoute } from '../kernel/netlink/route.js';
import { Writer, forEachAttr } from '../kernel/netlink/wire.js';
import { dirtyPool, nexthopDelMessage, nexthopReplaceMessage, routeDelMessage, routeReplaceMessage } from './harness/netlink-messages.js';

describe('netlink nexthop messages (unit)', () => {
  it('a nexthop replace reads back as sent: gateway, device, onlink, weft proto unless given', () => {
    dirtyPool();
    const msg = nexthopReplaceMessage({ id: 3, gw: '10.244.3.0', oif: 7, onlink: true });
    expect(msg.type).to.equal(RTM_NEWNEXTHOP);
    // NLM_F_CREATE | NLM_F_REPLACE, as `ip nexthop replace` sends.
    expect(msg.flags).to.equal(0x500);
    // struct nhmsg: family AF_INET, scope 0 (return only), protocol, reserved, flags RTNH_F_ONLINK.
    expect([...msg.body.subarray(0, 8)]).to.deep.equal([2, 0, RTPROT_WEFT, 0, 4, 0, 0, 0]);
    expect(parseNexthop(msg.body)).to.deep.equal({ id: 3, gw: '10.244.3.0', oif: 7, onlink: true, proto: RTPROT_WEFT });
    const direct = nexthopReplaceMessage({ id: 70000, gw: '192.168.5.9', oif: 2, onlink: false, proto: RTPROT_BOOT });
    expect(parseNexthop(direct.body)).to.deep.equal({ id: 70000, gw: '192.168.5.9', oif: 2, onlink: false, proto: RTPROT_BOOT });
  });

  it('a blackhole carries nothing but its id and flag; a delete names the id only', () => {
    const hole = nexthopReplaceMessage({ id: 0x57000000, gw: '10.0.0.1', oif: 9, onlink: true, blackhole: true });
    expect(parseNexthop(hole.body)).to.deep.equal({ id: 0x57000000, gw: null, oif: 0, onlink: false, proto: RTPROT_WEFT, blackhole: true });
    // nhmsg, then NHA_ID and NHA_BLACKHOLE (an empty flag attribute): no gateway or device.
    expect(hole.body.length).to.equal(8 + 8 + 4);
    const del = nexthopDelMessage({ id: 12 });
    expect(del.type).to.equal(RTM_DELNEXTHOP);
    expect(del.body.length).to.equal(8 + 8);
    expect(del.body.readUInt32LE(12)).to.equal(12);
    const dump = nexthopDumpMessage();
    expect(dump.flags).to.equal(0x300);
    expect([...dump.body]).to.deep.equal([0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('nexthops weft never makes still report their id, so it counts as taken', () => {
    // A group (AF_UNSPEC, NHA_GROUP = 2 with one nexthop_grp entry), as `ip nexthop add id 40 group 3` makes it.
    const w = new Writer(64);
    w.begin(RTM_NEWNEXTHOP, 0, 8 + 8 + 12).u8(0).u8(0).u8(RTPROT_BOOT).u8(0).u32(0).attrU32(1, 40).attr(2, Buffer.from([3, 0, 0, 0, 1, 0, 0, 0]));
    expect(parseNexthop(w.message().body)).to.deep.equal({ id: 40, gw: null, oif: 0, onlink: false, proto: RTPROT_BOOT });
    expect(() => parseNexthop(Buffer.alloc(4))).to.throw(WeftError, /nexthop message of 4 bytes/).with.property('code', 'WEFT_ERR_KERNEL');
  });

  it('a route by nhid carries RTA_NH_ID and no gateway, device or onlink; a dump with both keeps both', () => {
    const msg = routeReplaceMessage({ dst: '10.244.3.0/24', gw: '10.244.3.0', oif: 7, onlink: true, proto: RTPROT_WEFT, nhid: 3 });
    // rtmsg (12) + RTA_DST (8) + RTA_NH_ID (8): the kernel refuses a gateway or device beside a nexthop id.
    expect(msg.body.length).to.equal(28);
    expect(msg.body.readUInt32LE(8)).to.equal(0);
    expect(parseRoute(msg.body)).to.deep.equal({ dst: '10.244.3.0/24', gw: null, oif: 0, onlink: false, proto: RTPROT_WEFT, nhid: 3 });
    // What nexthop_compat_mode dumps: the nexthop's gateway, device and onlink flag beside the id.
    const plain = routeReplaceMessage({ dst: '10.244.3.0/24', gw: '10.244.3.0', oif: 7, onlink: true, proto: RTPROT_WEFT });
    const body = Buffer.concat([plain.body, Buffer.from([8, 0, 30, 0, 3, 0, 0, 0])]);
    expect(parseRoute(body)).to.deep.equal({ dst: '10.244.3.0/24', gw: '10.244.3.0', oif: 7, onlink: true, proto: RTPROT_WEFT, nhid: 3 });
    expect(parseRoute(plain.body)).to.not.have.property('nhid');
    // A delete by nhid names the nexthop, so another route to the prefix is left alone: rtmsg + RTA_DST + RTA_NH_ID.
    const del = routeDelMessage({ dst: '10.244.3.0/24', gw: '10.244.3.0', oif: 7, nhid: 3 }).body;
    expect(del.length).to.equal(28);
    expect([del.readUInt16LE(22), del.readUInt32LE(24)]).to.deep.equal([30, 3]);
  });

  it('nexthop notifications decode like dump entries; the listener joins their group where the kernel has it', () => {
    const body = nexthopReplaceMessage({ id: 5, gw: '10.244.5.0', oif: 4, onlink: true }).body;
    expect(decodeChange({ type: RTM_NEWNEXTHOP, flags: 0, seq: 0, payload: body })).to.deep.equal({
      kind: 'nexthop', op: 'new', nexthop: { id: 5, gw: '10.244.5.0', oif: 4, onlink: true, proto: RTPROT_WEFT },
    });
    expect(decodeChange({ type: RTM_DELNEXTHOP, flags: 0, seq: 0, payload: body })).to.have.property('op', 'del');
    expect(OPTIONAL_MONITOR_GROUPS).to.deep.equal([RTNLGRP_NEXTHOP]);
    expect(MONITOR_GROUPS).to.not.include(RTNLGRP_NEXTHOP);
  });

  it('a nexthop with an IPv6 gateway is AF_INET6, with the attributes `ip nexthop replace id 7 via 2001:2::3 dev X onlink proto 0x57` sends', () => {
    dirtyPool();
    const msg = nexthopReplaceMessage({ id: 7, gw: '2001:2::3', oif: 9, onlink: true });
    // iproute2 6.1 (strace): nhmsg {AF_INET6, 0, 0x57, 0, RTNH_F_ONLINK}; NHA_ID 7, NHA_GATEWAY (16 bytes), NHA_OIF (weft puts the device first).
    expect([...msg.body.subarray(0, 8)]).to.deep.equal([10, 0, RTPROT_WEFT, 0, 4, 0, 0, 0]);
    const attrs: string[] = [];
    forEachAttr(msg.body, 8, (type, data) => attrs.push(`${type}=${data.toString('hex')}`));
    expect(attrs.sort()).to.deep.equal(['1=07000000', '5=09000000', '6=20010002000000000000000000000003']);
    expect(msg.body.length).to.equal(8 + 8 + 8 + 20);
    expect(parseNexthop(msg.body)).to.deep.equal({ id: 7, gw: '2001:2::3', oif: 9, onlink: true, proto: RTPROT_WEFT });
    expect(parseNexthop(nexthopReplaceMessage({ id: 8, gw: 'fe80::1', oif: 2, onlink: false }).body)).to.deep.equal({ id: 8, gw: 'fe80::1', oif: 2, onlink: false, proto: RTPROT_WEFT });
    // A nexthop without a gateway stays AF_INET: nothing says it is IPv6.
    expect(nexthopReplaceMessage({ id: 9, gw: null, oif: 2, onlink: false }).body[0]).to.equal(2);
    // The dump asks for both families (AF_UNSPEC), and an IPv6 notification decodes like its dump entry.
    expect(nexthopDumpMessage().body[0]).to.equal(0);
    expect(decodeChange({ type: RTM_NEWNEXTHOP, flags: 0, seq: 0, payload: msg.body })).to.deep.equal({ kind: 'nexthop', op: 'new', nexthop: parseNexthop(msg.body) });
  });
});
