/**
 * Nexthop object messages (`ip nexthop`, kernel >= 5.3): the gateway and
 * device of a peer route as an object of its own, which the route names by
 * id (RTA_NH_ID, see route.ts).
 *
 * Layouts from <linux/nexthop.h> (struct nhmsg, NHA_*).
 */
import { WeftError } from '../../common/errors.js';
import { RTNH_F_ONLINK, RTPROT_WEFT, type Nexthop } from '../kernel.js';
import { AF_INET, AF_INET6, AF_UNSPEC, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, Writer, align4, attrLength, attrSpace, attrType, ipAttrString, ipFamily, type OutMessage } from './wire.js';

export const RTM_NEWNEXTHOP = 104;
export const RTM_DELNEXTHOP = 105;
export const RTM_GETNEXTHOP = 106;

const NHA_ID = 1;
const NHA_BLACKHOLE = 4;
const NHA_OIF = 5;
const NHA_GATEWAY = 6;

export const NHMSG_LEN = 8;

function nhmsg(w: Writer, family: number, proto: number, flags: number): Writer {
  // nh_scope is reported by the kernel, never set.
  return w.u8(family).u8(0).u8(proto).u8(0).u32(flags);
}

/** Room for the largest nexthop request: id, device and an IPv6 gateway. */
const NEXTHOP_BODY = NHMSG_LEN + attrSpace(4, 4, 16);
const NEXTHOP_DEL_BODY = NHMSG_LEN + attrSpace(4);

/**
 * RTM_NEWNEXTHOP CREATE|REPLACE: `ip nexthop replace id N via GW dev IF [onlink] proto P`
 * (weft's own proto unless given), or `ip nexthop replace id N blackhole`.
 * An IPv6 gateway makes an AF_INET6 nexthop, the kind IPv6 routes need (the
 * kernel refuses an IPv6 route through an AF_INET nexthop); one without a
 * gateway (device or blackhole) is AF_INET, as the contract reads the family
 * from addresses only.
 * Replacing a nexthop that routes use moves them all at once.
 */
export function writeNexthopReplace(w: Writer, nh: { id: number; gw: string | null; oif: number; onlink: boolean; proto?: number; blackhole?: boolean }): void {
  const proto = nh.proto ?? RTPROT_WEFT;
  if (nh.blackhole) {
    // Nothing but the flag: a blackhole takes no gateway or device (AF_UNSPEC is for groups only).
    nhmsg(w.begin(RTM_NEWNEXTHOP, NLM_F_CREATE | NLM_F_REPLACE, NEXTHOP_BODY), AF_INET, proto, 0).attrU32(NHA_ID, nh.id).attrFlag(NHA_BLACKHOLE);
    return;
  }
  const family = nh.gw && ipFamily(nh.gw) === 6 ? AF_INET6 : AF_INET;
  nhmsg(w.begin(RTM_NEWNEXTHOP, NLM_F_CREATE | NLM_F_REPLACE, NEXTHOP_BODY), family, proto, nh.onlink ? RTNH_F_ONLINK : 0).attrU32(NHA_ID, nh.id);
  if (nh.oif) w.attrU32(NHA_OIF, nh.oif);
  if (nh.gw) w.attrIP(NHA_GATEWAY, nh.gw);
}

/** RTM_DELNEXTHOP: `ip nexthop del id N`. */
export function writeNexthopDel(w: Writer, nh: { id: number }): void {
  nhmsg(w.begin(RTM_DELNEXTHOP, 0, NEXTHOP_DEL_BODY), AF_UNSPEC, 0, 0).attrU32(NHA_ID, nh.id);
}

/** RTM_GETNEXTHOP dump of every nexthop object, of both families (`ip nexthop show`; AF_UNSPEC asks for all). */
export function nexthopDumpMessage(): OutMessage {
  const w = new Writer(NHMSG_LEN);
  nhmsg(w, AF_UNSPEC, 0, 0);
  return { type: RTM_GETNEXTHOP, flags: NLM_F_DUMP, body: w.done() };
}

/**
 * A nexthop from a dump or notification (the payload in `buf` from `start`
 * to `end`). Every nexthop with an id comes back, whoever made it, since its
 * id is taken: IPv4 and IPv6 ones with their gateway, those weft never makes
 * (groups, FDB nexthops) without one. Null only for a message without an id.
 */
export function parseNexthop(buf: Buffer, start = 0, end = buf.length): Nexthop | null {
  if (end - start < NHMSG_LEN) throw new WeftError('WEFT_ERR_KERNEL', `nexthop message of ${end - start} bytes, shorter than its header`);
  const family = buf.readUInt8(start);
  const proto = buf.readUInt8(start + 2);
  const flags = buf.readUInt32LE(start + 4);
  let id = 0;
  let gw: string | null = null;
  let oif = 0;
  let blackhole = false;
  for (let off = start + NHMSG_LEN, len: number; (len = attrLength(buf, off, end)) > 0; off += align4(len)) {
    const t = attrType(buf, off);
    if (t === NHA_ID && len >= 8) id = buf.readUInt32LE(off + 4);
    else if (t === NHA_GATEWAY && ((family === AF_INET && len === 8) || (family === AF_INET6 && len === 20))) gw = ipAttrString(buf, off + 4, len - 4);
    else if (t === NHA_OIF && len >= 8) oif = buf.readUInt32LE(off + 4);
    else if (t === NHA_BLACKHOLE) blackhole = true;
  }
  if (id === 0) return null;
  if (blackhole) return { id, gw: null, oif: 0, onlink: false, proto, blackhole };
  return { id, gw, oif, onlink: (family === AF_INET || family === AF_INET6) && (flags & RTNH_F_ONLINK) !== 0, proto };
}
