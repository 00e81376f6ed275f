/**
 * Route messages: destinations sent as networks, anything but an IPv4 CIDR
 * refused. No kernel.
 */
import { expect } from 'chai';
import { WeftError } from '../common/errors.js';
import { RTPROT_WEFT } from '../kernel/kernel.js';
import { RTM_DELROUTE, RTM_NEWROUTE, blackholeMessage, parseRoute, routeDumpMessage } from '../kernel/netlink/route.js';
import { dirtyPool, routeDelMessage, routeReplaceMessage } from './harness/netlink-messages.js';

/** An rtattr with its padding. */
function rta(type: number, data: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16LE(4 + data.length, 0);
  head.writeUInt16LE(type, 2);
  return Buffer.concat([head, data, Buffer.alloc((4 - (data.length % 4)) % 4)]);
}
const u32 = (v: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0, 0);
  return b;
};
/** struct rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags. */
function rtmsg(family: number, dstLen: number, table: number, proto: number, scope: number, type: number, flags: number): Buffer {
  return Buffer.concat([Buffer.from([family, dstLen, 0, 0, table, proto, scope, type]), u32(flags)]);
}
const v6 = (groups: string): Buffer => Buffer.from(groups.replace(/ /g, ''), 'hex');
const FD00_3 = v6('fd00 0010 0244 0003 0000 0000 0000 0000');
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_TABLE = 15;
const RTA_VIA = 18;
const RTA_NH_ID = 30;

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

  it('IPv6 requests are AF_INET6 rtmsgs with 16-byte addresses, as `ip -6 route` sends them', () => {
    dirtyPool();
    // ip -6 route replace fd00:10:244:3::/64 via fd00:10:244:3:: dev #9 onlink proto 0x57 (iproute2 6.1, strace): byte for byte.
    const replace = routeReplaceMessage({ dst: 'fd00:10:244:3::/64', gw: 'fd00:10:244:3::', oif: 9, onlink: true, proto: RTPROT_WEFT });
    expect(replace.type).to.equal(RTM_NEWROUTE);
    expect(replace.flags).to.equal(0x500);
    expect(replace.body.toString('hex')).to.equal(Buffer.concat([rtmsg(10, 64, 254, 0x57, 0, 1, 4), rta(RTA_DST, FD00_3), rta(RTA_GATEWAY, FD00_3), rta(RTA_OIF, u32(9))]).toString('hex'));
    // ip -6 route replace fd00:10:244:3::/64 nhid 7 proto 0x57
    const byNhid = routeReplaceMessage({ dst: 'fd00:10:244:3::/64', gw: null, oif: 0, onlink: false, proto: RTPROT_WEFT, nhid: 7 });
    expect(byNhid.body.toString('hex')).to.equal(Buffer.concat([rtmsg(10, 64, 254, 0x57, 0, 1, 0), rta(RTA_DST, FD00_3), rta(RTA_NH_ID, u32(7))]).toString('hex'));
    // ip -6 route replace blackhole fd00:10:244:3::/64 metric 4294967295 proto 0x57
    const hole = blackholeMessage('replace', 'fd00:10:244:3::/64');
    expect(hole.body.toString('hex')).to.equal(Buffer.concat([rtmsg(10, 64, 254, 0x57, 0, 6, 0), rta(RTA_DST, FD00_3), rta(RTA_PRIORITY, u32(0xffffffff))]).toString('hex'));
    const holeDel = blackholeMessage('del', 'fd00:10:244:3::/64');
    expect([holeDel.type, holeDel.body[0], holeDel.body[7], holeDel.body.readUInt32LE(36)]).to.deep.equal([RTM_DELROUTE, 10, 6, 0xffffffff]);
    // ip -6 route del fd00:10:244:3::/64: iproute2 sends scope UNIVERSE, weft NOWHERE as for IPv4 (IPv6 ignores a delete's scope).
    const del = routeDelMessage({ dst: 'fd00:10:244:3::/64' });
    expect(del.body.toString('hex')).to.equal(Buffer.concat([rtmsg(10, 64, 254, 0, 255, 0, 0), rta(RTA_DST, FD00_3)]).toString('hex'));
    const delVia = routeDelMessage({ dst: 'fd00:10:244:3::/64', gw: '2001:2::3', oif: 2 }).body;
    expect(parseRoute(Buffer.concat([rtmsg(10, 64, 254, 0, 0, 1, 0), delVia.subarray(12)]))).to.deep.include({ gw: '2001:2::3', oif: 2 });
  });

  it('IPv6 destinations are sent as networks, and read back as RFC 5952 CIDRs', () => {
    const sent = (dst: string) => parseRoute(routeReplaceMessage({ dst, gw: 'fe80::1', oif: 5, onlink: false, proto: RTPROT_WEFT }).body);
    expect(sent('fd00:10:244:3::/64')).to.deep.equal({ dst: 'fd00:10:244:3::/64', gw: 'fe80::1', oif: 5, onlink: false, proto: RTPROT_WEFT });
    expect(sent('FD00:10:244:3::17/64')!.dst).to.equal('fd00:10:244:3::/64');
    expect(sent('fd00:10:244:3::17/128')!.dst).to.equal('fd00:10:244:3::17/128');
    expect(sent('::/0')!.dst).to.equal('::/0');
    for (const bad of ['fd00:10:244:3::', 'fd00:10:244:3::/129', 'fd00:10:244:3::/', 'fd00::3::/64']) {
      expect(() => routeReplaceMessage({ dst: bad, gw: null, oif: 5, onlink: false, proto: RTPROT_WEFT }), bad).to.throw(WeftError).with.property('code', 'WEFT_ERR_ADDRESS_INVALID');
    }
  });

  it('an IPv6 dump keeps what `ip -6 route show table main` shows as unicast: not the local table, multicast, blackholes or cached routes', () => {
    // As the kernel dumps them: the table in rtm_table and RTA_TABLE, RTA_PRIORITY (metric) and others beside.
    const dumped = (table: number, type: number, dstLen: number, dst: Buffer | null, flags = 0, ...more: Buffer[]): Buffer =>
      Buffer.concat([rtmsg(10, dstLen, table, 2, 0, type, flags), rta(RTA_TABLE, u32(table)), ...(dst ? [rta(RTA_DST, dst)] : []), rta(RTA_PRIORITY, u32(256)), rta(RTA_OIF, u32(3)), ...more]);
    const fe80 = v6('fe80 0000 0000 0000 0000 0000 0000 0000');
    expect(parseRoute(dumped(254, 1, 64, fe80))).to.deep.equal({ dst: 'fe80::/64', gw: null, oif: 3, onlink: false, proto: 2 });
    expect(parseRoute(dumped(254, 1, 0, null, 0, rta(RTA_GATEWAY, fe80)))).to.deep.equal({ dst: '::/0', gw: 'fe80::', oif: 3, onlink: false, proto: 2 });
    // multicast ff00::/8 table local, local 2001:2::1 table local, a blackhole, a cached (RTM_F_CLONED) route.
    expect(parseRoute(dumped(255, 5, 8, v6('ff00 0000 0000 0000 0000 0000 0000 0000')))).to.equal(null);
    expect(parseRoute(dumped(255, 2, 128, v6('2001 0002 0000 0000 0000 0000 0000 0001')))).to.equal(null);
    expect(parseRoute(dumped(254, 6, 64, FD00_3))).to.equal(null);
    expect(parseRoute(dumped(254, 1, 128, FD00_3, 0x200))).to.equal(null);
    // A route by nhid reports its id beside the nexthop's gateway and device (nexthop_compat_mode).
    expect(parseRoute(dumped(254, 1, 64, FD00_3, 4, rta(RTA_GATEWAY, v6('2001 0002 0000 0000 0000 0000 0000 0003')), rta(RTA_NH_ID, u32(7))))).to.deep.equal({
      dst: 'fd00:10:244:3::/64', gw: '2001:2::3', oif: 3, onlink: true, proto: 2, nhid: 7,
    });
    expect([...routeDumpMessage(6).body]).to.deep.equal([10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect([...routeDumpMessage().body]).to.deep.equal([2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  });

  it('an IPv4 route through an IPv6 gateway (`via inet6 GW`, RTA_VIA) reports that gateway', () => {
    const via = Buffer.concat([Buffer.from([10, 0]), v6('2001 0002 0000 0000 0000 0000 0000 0003')]);
    const body = Buffer.concat([rtmsg(2, 24, 254, 0x57, 0, 1, 0), rta(RTA_DST, Buffer.from([10, 8, 0, 0])), rta(RTA_VIA, via), rta(RTA_OIF, u32(2))]);
    expect(parseRoute(body)).to.deep.equal({ dst: '10.8.0.0/24', gw: '2001:2::3', oif: 2, onlink: false, proto: 0x57 });
  });
});
