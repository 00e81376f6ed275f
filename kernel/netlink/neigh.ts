/**
 * Neighbour messages (`ip neigh`: ARP entries, and IPv6's NDP entries as
 * AF_INET6 neighbours) and, as AF_BRIDGE neighbours of a vxlan device, its
 * FDB entries (`bridge fdb ... self`, with an IPv4 or IPv6 remote): what weft
 * programs per peer and reads back in every full pass. The family of a
 * request is its address's (ipFamily).
 *
 * Layouts from <linux/neighbour.h> (struct ndmsg, NDA_*).
 */
import { WeftError } from '../../common/errors.js';
import { NUD_PERMANENT, NTF_SELF, type Fdb, type Neigh } from '../kernel.js';
import { AF_BRIDGE, AF_INET, AF_INET6, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REPLACE, RTN_UNICAST, Writer, align4, attrLength, attrSpace, attrType, ipAttrString, ipFamily, macString, type OutMessage } from './wire.js';

export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;

const NDA_DST = 1;
const NDA_LLADDR = 2;

export const NDMSG_LEN = 12;

/** Neighbour state of entries that need no resolution: IPv6's multicast mappings (ff02::1 -> 33:33:00:00:00:01). */
const NUD_NOARP = 0x40;

function ndmsg(w: Writer, family: number, ifindex: number, state: number, flags: number, type: number): Writer {
  return w.u8(family).u8(0).u16(0).u32(ifindex).u16(state).u8(flags).u8(type);
}

/** Body sizes, room for an IPv6 NDA_DST (an IPv4 one takes less; the Writer only needs enough). */
const NEIGH_SET_BODY = NDMSG_LEN + attrSpace(16, 6);
const NEIGH_DEL_BODY = NDMSG_LEN + attrSpace(16);
const FDB_REPLACE_BODY = NDMSG_LEN + attrSpace(6, 16);
const FDB_DEL_BODY = NDMSG_LEN + attrSpace(6);

/**
 * RTM_NEWNEIGH, CREATE|REPLACE: `ip neigh replace IP dev IF lladdr MAC nud permanent`,
 * an AF_INET6 (NDP) entry for an IPv6 `ip` (`ip -6 neigh replace ...`).
 */
export function writeNeighSet(w: Writer, n: { ifindex: number; ip: string; mac: string }): void {
  ndmsg(w.begin(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, NEIGH_SET_BODY), neighFamily(n.ip), n.ifindex, NUD_PERMANENT, 0, RTN_UNICAST)
    .attrIP(NDA_DST, n.ip)
    .attrMAC(NDA_LLADDR, n.mac);
}

/** RTM_DELNEIGH: `ip neigh del IP dev IF` (`ip -6 neigh del` for an IPv6 `ip`). */
export function writeNeighDel(w: Writer, n: { ifindex: number; ip: string }): void {
  ndmsg(w.begin(RTM_DELNEIGH, 0, NEIGH_DEL_BODY), neighFamily(n.ip), n.ifindex, 0, 0, 0).attrIP(NDA_DST, n.ip);
}

/** RTM_NEWNEIGH AF_BRIDGE NTF_SELF: `bridge fdb replace MAC dev IF dst IP self permanent`; NDA_DST of 16 bytes for an IPv6 remote. */
export function writeFdbReplace(w: Writer, f: { ifindex: number; mac: string; dst: string }): void {
  ndmsg(w.begin(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, FDB_REPLACE_BODY), AF_BRIDGE, f.ifindex, NUD_PERMANENT, NTF_SELF, 0)
    .attrMAC(NDA_LLADDR, f.mac)
    .attrIP(NDA_DST, f.dst);
}

/** AF_INET or AF_INET6 by the neighbour's address. */
function neighFamily(ip: string): number {
  return ipFamily(ip) === 6 ? AF_INET6 : AF_INET;
}

/**
 * RTM_DELNEIGH AF_BRIDGE NTF_SELF without NDA_DST: `bridge fdb del MAC dev IF self`.
 * Without a destination the vxlan driver drops the MAC with all its remotes,
 * which is what removing a peer needs even when its dst drifted.
 */
export function writeFdbDel(w: Writer, f: { ifindex: number; mac: string }): void {
  ndmsg(w.begin(RTM_DELNEIGH, 0, FDB_DEL_BODY), AF_BRIDGE, f.ifindex, 0, NTF_SELF, 0).attrMAC(NDA_LLADDR, f.mac);
}

/** RTM_GETNEIGH dump of one family (`ip neigh show` / `bridge fdb show`). */
export function neighDumpMessage(family: number): OutMessage {
  const w = new Writer(NDMSG_LEN);
  ndmsg(w, family, 0, 0, 0, 0);
  return { type: RTM_GETNEIGH, flags: NLM_F_DUMP, body: w.done() };
}

export interface DumpedNeigh {
  readonly family: number;
  readonly ifindex: number;
  readonly state: number;
  readonly flags: number;
  /** NDA_DST when it is an IPv4 or IPv6 address (4 or 16 bytes), else null. */
  readonly dst: string | null;
  /** NDA_LLADDR when it is a MAC address, else null. */
  readonly lladdr: string | null;
}

/**
 * An RTM_NEWNEIGH/DELNEIGH payload: the one in `buf` from `start` to `end`
 * (a dump reads every message of a datagram in place, without a view per
 * message), by default all of `buf`.
 */
export function parseNeigh(buf: Buffer, start = 0, end = buf.length): DumpedNeigh {
  if (end - start < NDMSG_LEN) throw new WeftError('WEFT_ERR_KERNEL', `neighbour message of ${end - start} bytes, shorter than its header`);
  let dst: string | null = null;
  let lladdr: string | null = null;
  for (let off = start + NDMSG_LEN, len: number; (len = attrLength(buf, off, end)) > 0; off += align4(len)) {
    const type = attrType(buf, off);
    if (type === NDA_DST) dst = ipAttrString(buf, off + 4, len - 4);
    else if (type === NDA_LLADDR && len === 10) lladdr = macString(buf, off + 4);
  }
  return {
    family: buf.readUInt8(start),
    ifindex: buf.readInt32LE(start + 4),
    state: buf.readUInt16LE(start + 8),
    flags: buf.readUInt8(start + 10),
    dst,
    lladdr,
  };
}

/**
 * An IPv4 ARP or IPv6 NDP entry from a dump, or null for other families /
 * incomplete entries. IPv6's NUD_NOARP entries are left out, as `ip -6 neigh
 * show` leaves them out: the kernel makes one per multicast group a device
 * joins, never weft's.
 */
export function toNeigh(n: DumpedNeigh): Neigh | null {
  if ((n.family !== AF_INET && n.family !== AF_INET6) || n.dst === null || n.lladdr === null || isMulticastMapping(n)) return null;
  return { ifindex: n.ifindex, ip: n.dst, mac: n.lladdr, permanent: (n.state & NUD_PERMANENT) !== 0 };
}

/**
 * The IPv4 or IPv6 neighbour an RTM_DELNEIGH removes, or null for other families. The
 * kernel marks an entry FAILED before it removes it, which drops the lladdr
 * from the message: `mac` is '' then.
 */
export function toDeletedNeigh(n: DumpedNeigh): Neigh | null {
  if ((n.family !== AF_INET && n.family !== AF_INET6) || n.dst === null || isMulticastMapping(n)) return null;
  return { ifindex: n.ifindex, ip: n.dst, mac: n.lladdr ?? '', permanent: (n.state & NUD_PERMANENT) !== 0 };
}

/** An IPv6 NUD_NOARP entry (IPv4's stay reported, as they always were). */
function isMulticastMapping(n: DumpedNeigh): boolean {
  return n.family === AF_INET6 && (n.state & NUD_NOARP) !== 0;
}

/** A vxlan FDB entry with an IPv4 or IPv6 remote from a dump, or null. */
export function toFdb(n: DumpedNeigh): Fdb | null {
  if (n.family !== AF_BRIDGE || (n.flags & NTF_SELF) === 0 || n.lladdr === null || n.dst === null) return null;
  return { ifindex: n.ifindex, mac: n.lladdr, dst: n.dst, permanent: (n.state & NUD_PERMANENT) !== 0 };
}
