/**
 * Route messages (`ip route`, `ip -6 route`): the main-table unicast routes
 * weft programs per peer and reads back in every full pass. A request's
 * family is its destination's (ipFamily); a dump reads one family.
 *
 * Layouts from <linux/rtnetlink.h> (struct rtmsg, RTA_*).
 */
import { WeftError } from '../../common/errors.js';
import { maskIPv4 } from '../../common/subnet.js';
import { RTNH_F_ONLINK, RTPROT_WEFT, RT_TABLE_MAIN, type Family, type Route } from '../kernel.js';
import {
  AF_INET,
  AF_INET6,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_REPLACE,
  RTN_UNICAST,
  RT_SCOPE_NOWHERE,
  RT_SCOPE_UNIVERSE,
  NLMSG_HDRLEN,
  Writer,
  align4,
  attrLength,
  attrSpace,
  attrType,
  cidrPrefixLength,
  ipAttrString,
  ipFamily,
  ipv4Number,
  type OutMessage,
} from './wire.js';

export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;

const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_PRIORITY = 6;
const RTA_TABLE = 15;
/** A gateway of the other family (struct rtvia: u16 family, then the address): `ip route ... via inet6 GW`, an IPv4 route through an IPv6 gateway. */
const RTA_VIA = 18;
/** rtm_flags of a cached (exception) route, which `ip route show` leaves out. */
const RTM_F_CLONED = 0x200;
const RTN_BLACKHOLE = 6;
/** The metric of weft's blackhole route: the highest, so it never shadows another route to the same prefix. */
export const BLACKHOLE_METRIC = 0xffffffff;
/** The nexthop object a route goes through (kernel >= 5.3); excludes RTA_GATEWAY, RTA_OIF and RTNH_F_ONLINK. */
const RTA_NH_ID = 30;

export const RTMSG_LEN = 12;

function rtmsg(w: Writer, family: number, dstLen: number, proto: number, scope: number, type: number, flags: number): Writer {
  return w.u8(family).u8(dstLen).u8(0).u8(0).u8(RT_TABLE_MAIN).u8(proto).u8(scope).u8(type).u32(flags);
}

/** Room for the largest route request: an IPv6 destination and gateway, and a device. */
const ROUTE_BODY = RTMSG_LEN + attrSpace(16, 16, 4);

/**
 * RTM_NEWROUTE CREATE|REPLACE: `ip route replace DST via GW dev IF [onlink] proto P`
 * (weft's own proto unless given), or `ip route replace DST nhid N proto P`.
 * A replace swaps the route in one step, whichever form it had.
 */
export function writeRouteReplace(w: Writer, r: { dst: string; gw: string | null; oif: number; onlink: boolean; proto?: number; nhid?: number }): void {
  const family = routeFamily(r.dst);
  const len = cidrPrefixLength(r.dst);
  if (r.nhid) {
    rtmsg(w.begin(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, ROUTE_BODY), family, len, r.proto ?? RTPROT_WEFT, RT_SCOPE_UNIVERSE, RTN_UNICAST, 0);
    writeDst(w, family, r.dst, len);
    w.attrU32(RTA_NH_ID, r.nhid);
    return;
  }
  rtmsg(w.begin(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, ROUTE_BODY), family, len, r.proto ?? RTPROT_WEFT, RT_SCOPE_UNIVERSE, RTN_UNICAST, r.onlink ? RTNH_F_ONLINK : 0);
  writeDst(w, family, r.dst, len);
  if (r.gw) w.attrIP(RTA_GATEWAY, r.gw);
  if (r.oif) w.attrU32(RTA_OIF, r.oif);
}

/**
 * RTM_DELROUTE: `ip route del DST [via GW] [dev IF] [nhid N]`; scope NOWHERE and proto 0 match any.
 * IPv6 matches no metric when none is given, and takes the first route to DST
 * by metric: weft's own (1024, the kernel's default) before its blackhole's.
 */
export function writeRouteDel(w: Writer, r: { dst: string; gw?: string | null; oif?: number; nhid?: number }): void {
  const family = routeFamily(r.dst);
  const len = cidrPrefixLength(r.dst);
  rtmsg(w.begin(RTM_DELROUTE, 0, ROUTE_BODY), family, len, 0, RT_SCOPE_NOWHERE, 0, 0);
  writeDst(w, family, r.dst, len);
  if (r.nhid) {
    // Only the route through this nexthop, not another route to the same prefix.
    w.attrU32(RTA_NH_ID, r.nhid);
    return;
  }
  if (r.gw) w.attrIP(RTA_GATEWAY, r.gw);
  if (r.oif) w.attrU32(RTA_OIF, r.oif);
}

/**
 * `ip route replace blackhole DST metric 4294967295 proto 0x57` (RTM_NEWROUTE
 * CREATE|REPLACE), or its `ip route del` (RTM_DELROUTE, matching only that
 * blackhole); `ip -6 route ...` for an IPv6 DST. The kernel keys routes of
 * either family by prefix and metric, so the replace touches no other route,
 * and at the highest metric the blackhole catches only what no other route
 * to the prefix takes.
 */
export function blackholeMessage(op: 'replace' | 'del', dst: string): OutMessage {
  const family = routeFamily(dst);
  const len = cidrPrefixLength(dst);
  const body = RTMSG_LEN + attrSpace(16, 4);
  const w = new Writer(NLMSG_HDRLEN + body);
  const flags = op === 'replace' ? NLM_F_CREATE | NLM_F_REPLACE : 0;
  rtmsg(w.begin(op === 'replace' ? RTM_NEWROUTE : RTM_DELROUTE, flags, body), family, len, op === 'replace' ? RTPROT_WEFT : 0, RT_SCOPE_UNIVERSE, RTN_BLACKHOLE, 0);
  writeDst(w, family, dst, len);
  w.attrU32(RTA_PRIORITY, BLACKHOLE_METRIC);
  return w.message();
}

/**
 * RTM_GETROUTE dump of every route of a family, of which parseRoute keeps the
 * main table's unicast ones (`ip -4 route show table main`, `ip -6 ...`:
 * IPv6 dumps also carry the local table's and multicast routes, ff00::/8).
 */
export function routeDumpMessage(family: Family = 4): OutMessage {
  const w = new Writer(RTMSG_LEN);
  w.u8(family === 6 ? AF_INET6 : AF_INET).u8(0).u8(0).u8(0).u8(0).u8(0).u8(0).u8(0).u32(0);
  return { type: RTM_GETROUTE, flags: NLM_F_DUMP, body: w.done() };
}

/**
 * A main-table unicast route of either family from a dump (the payload in
 * `buf` from `start` to `end`, like parseNeigh), or null for anything else:
 * other tables (IPv6 keeps its local and multicast routes in the local
 * table), other types (blackhole, unreachable, multicast), cached routes.
 */
export function parseRoute(buf: Buffer, start = 0, end = buf.length): Route | null {
  if (end - start < RTMSG_LEN) throw new WeftError('WEFT_ERR_KERNEL', `route message of ${end - start} bytes, shorter than its header`);
  const family = buf.readUInt8(start);
  const dstLen = buf.readUInt8(start + 1);
  const proto = buf.readUInt8(start + 5);
  const type = buf.readUInt8(start + 7);
  const flags = buf.readUInt32LE(start + 8);
  if ((family !== AF_INET && family !== AF_INET6) || type !== RTN_UNICAST || (flags & RTM_F_CLONED) !== 0) return null;
  const addrLen = family === AF_INET ? 4 : 16;
  let table = buf.readUInt8(start + 4);
  let dst = family === AF_INET ? '0.0.0.0' : '::';
  let gw: string | null = null;
  let oif = 0;
  let nhid = 0;
  for (let off = start + RTMSG_LEN, len: number; (len = attrLength(buf, off, end)) > 0; off += align4(len)) {
    const t = attrType(buf, off);
    if (t === RTA_DST && len === 4 + addrLen) dst = ipAttrString(buf, off + 4, addrLen)!;
    else if (t === RTA_GATEWAY && len === 4 + addrLen) gw = ipAttrString(buf, off + 4, addrLen);
    else if (t === RTA_VIA && len > 6) gw = ipAttrString(buf, off + 6, len - 6);
    else if (t === RTA_OIF && len >= 8) oif = buf.readUInt32LE(off + 4);
    else if (t === RTA_TABLE && len >= 8) table = buf.readUInt32LE(off + 4);
    else if (t === RTA_NH_ID && len >= 8) nhid = buf.readUInt32LE(off + 4);
  }
  if (table !== RT_TABLE_MAIN) return null;
  const onlink = (flags & RTNH_F_ONLINK) !== 0;
  if (nhid !== 0) return { dst: `${dst}/${dstLen}`, gw, oif, onlink, proto, nhid };
  return { dst: `${dst}/${dstLen}`, gw, oif, onlink, proto };
}

function routeFamily(dst: string): number {
  return ipFamily(dst) === 6 ? AF_INET6 : AF_INET;
}

/** RTA_DST of a request: the network address, host bits masked (`10.1.2.3/16` is 10.1.0.0/16) as `ip route` does. */
function writeDst(w: Writer, family: number, cidr: string, prefixLength: number): void {
  if (family === AF_INET6) w.attrIPv6Network(RTA_DST, cidr.slice(0, cidr.indexOf('/')), prefixLength);
  else w.attrU32BE(RTA_DST, networkNumber(cidr, prefixLength));
}

/** An IPv4 route destination as a number, host bits masked. */
function networkNumber(cidr: string, prefixLength: number): number {
  return maskIPv4(ipv4Number(cidr.slice(0, cidr.indexOf('/'))), prefixLength);
}
