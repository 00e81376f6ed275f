/**
 * rtnetlink wire format for the messages weft sends in bulk (neighbours, FDB
 * entries, routes, addresses) and the dumps it reads back. These have fixed
 * headers and a handful of attributes, so encoding them by hand is short and
 * several times cheaper than the generic formatters of the `netlink` package
 * (weft uses only its socket). Link messages (netlink/link.ts) use the same
 * Writer.
 *
 * Layouts from <linux/netlink.h>, <linux/rtnetlink.h>, <linux/neighbour.h>,
 * <linux/if_addr.h>. Integers are host order (little-endian on every target).
 */
import { constants as osConstants } from 'node:os';
import { maskIPv4, parseIPv4 } from '../../common/subnet.js';
import { NUD_PERMANENT, NTF_SELF, RTNH_F_ONLINK, RTPROT_WEFT, RT_TABLE_MAIN, type Addr, type AddrInfo, type Fdb, type Neigh, type Route } from '../kernel.js';

export const NLMSG_HDRLEN = 16;
export const NLMSG_ERROR = 2;
export const NLMSG_DONE = 3;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_MULTI = 0x2;
export const NLM_F_ACK = 0x4;
export const NLM_F_DUMP = 0x300;
export const NLM_F_REPLACE = 0x100;
export const NLM_F_EXCL = 0x200;
export const NLM_F_CREATE = 0x400;

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;
export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;
export const RTM_NEWROUTE = 24;
export const RTM_DELROUTE = 25;
export const RTM_GETROUTE = 26;
export const RTM_NEWNEIGH = 28;
export const RTM_DELNEIGH = 29;
export const RTM_GETNEIGH = 30;

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_BRIDGE = 7;

const NDA_DST = 1;
const NDA_LLADDR = 2;
const RTA_DST = 1;
const RTA_OIF = 4;
const RTA_GATEWAY = 5;
const RTA_TABLE = 15;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
/** u32 flags; supersedes the 8-bit ifa_flags of the header when present. */
const IFA_FLAGS = 8;
const IFA_F_SECONDARY = 0x01;
const IFA_F_DEPRECATED = 0x20;
const IFA_F_PERMANENT = 0x80;
const RT_SCOPE_UNIVERSE = 0;
const RT_SCOPE_NOWHERE = 255;
const RTN_UNICAST = 1;

const NDMSG_LEN = 12;
const RTMSG_LEN = 12;
const IFADDRMSG_LEN = 8;

const align4 = (n: number): number => (n + 3) & ~3;

/** A message still to be sent: type, flags and body; the channel adds seq and port. */
export interface OutMessage {
  readonly type: number;
  readonly flags: number;
  /** Everything after the nlmsghdr, 4-byte aligned. */
  readonly body: Buffer;
}

/** Writes one request into `w`: begin() with its type, flags and body size, then the body. */
export type RequestWriter<T> = (w: Writer, item: T) => void;

/** One request as a message of its own (single requests, tests); bulk passes write straight into a datagram. */
export function requestMessage<T>(write: RequestWriter<T>, item: T): OutMessage {
  const w = new Writer(NLMSG_HDRLEN + 64);
  write(w, item);
  return w.message();
}

/** A received message, header fields decoded, `payload` after the nlmsghdr. */
export interface InMessage {
  readonly type: number;
  readonly flags: number;
  readonly seq: number;
  readonly payload: Buffer;
}

/** Writes nlmsghdr + body into one buffer. */
export function frame(msg: OutMessage, seq: number, port: number, extraFlags = 0): Buffer {
  const buf = Buffer.allocUnsafe(NLMSG_HDRLEN + msg.body.length);
  frameInto(buf, 0, msg, seq, port, extraFlags);
  return buf;
}

/** Writes nlmsghdr + body at `off` of `buf` (several messages share one datagram); returns the offset after it. */
export function frameInto(buf: Buffer, off: number, msg: OutMessage, seq: number, port: number, extraFlags = 0): number {
  const len = NLMSG_HDRLEN + msg.body.length;
  buf.writeUInt32LE(len, off);
  buf.writeUInt16LE(msg.type, off + 4);
  buf.writeUInt16LE(msg.flags | extraFlags | NLM_F_REQUEST, off + 6);
  buf.writeUInt32LE(seq >>> 0, off + 8);
  buf.writeUInt32LE(port >>> 0, off + 12);
  msg.body.copy(buf, off + NLMSG_HDRLEN);
  return off + len;
}

/**
 * Visits each message of a received datagram in place: where it starts and
 * its length (its payload runs from at + NLMSG_HDRLEN to at + len), type and
 * seq. Dump replies are read this way, without an object or a view per message.
 */
export function forEachMessage(datagram: Buffer, fn: (at: number, len: number, type: number, seq: number) => void): void {
  let off = 0;
  while (off + NLMSG_HDRLEN <= datagram.length) {
    const len = datagram.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > datagram.length) break;
    fn(off, len, datagram.readUInt16LE(off + 4), datagram.readUInt32LE(off + 8));
    off += align4(len);
  }
}

/** The message at `at` (of `len` bytes) of a datagram, header fields decoded and its payload as a view. */
export function messageAt(datagram: Buffer, at: number, len: number): InMessage {
  return {
    type: datagram.readUInt16LE(at + 4),
    flags: datagram.readUInt16LE(at + 6),
    seq: datagram.readUInt32LE(at + 8),
    payload: datagram.subarray(at + NLMSG_HDRLEN, at + len),
  };
}

/** Splits one received datagram into its messages. */
export function splitMessages(datagram: Buffer): InMessage[] {
  const out: InMessage[] = [];
  forEachMessage(datagram, (at, len) => void out.push(messageAt(datagram, at, len)));
  return out;
}

/** The errno of an NLMSG_ERROR payload (in `buf` from `at`): 0 for an ACK, else a positive errno. */
export function errorCode(buf: Buffer, at = 0): number {
  return -buf.readInt32LE(at) | 0;
}

const ERRNO_NAMES = new Map<number, string>(Object.entries(osConstants.errno).map(([name, value]) => [value, name]));

export function errnoName(errno: number): string {
  return ERRNO_NAMES.get(errno) ?? `errno ${errno}`;
}

// ---------------------------------------------------------------- attributes

/**
 * Builds message bodies in place, addresses written straight into the buffer
 * rather than through intermediate ones. Bulk passes (tens of thousands of
 * messages) write whole requests back to back into one datagram: begin() puts
 * a request's header, the body follows, seal() completes the header. So a
 * chunk of 64 requests is one buffer, not 64 bodies copied into a 65th.
 */
export class Writer {
  private buf: Buffer;
  private off = 0;
  /** Offset of the request begun last (begin/seal). */
  private start = 0;
  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }
  /** Starts a request at the current offset: its header, then `bodySize` bytes of body are to follow. */
  begin(type: number, flags: number, bodySize: number): this {
    const need = this.off + NLMSG_HDRLEN + bodySize;
    if (need > this.buf.length) {
      const bigger = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      this.buf.copy(bigger, 0, 0, this.off);
      this.buf = bigger;
    }
    this.start = this.off;
    this.buf.writeUInt16LE(type, this.off + 4);
    this.buf.writeUInt16LE(flags, this.off + 6);
    this.off += NLMSG_HDRLEN;
    return this;
  }
  /** Completes the request begun last: its length, NLM_F_REQUEST and `extraFlags`, seq and port. */
  seal(seq: number, port: number, extraFlags = 0): void {
    const at = this.start;
    this.buf.writeUInt32LE(this.off - at, at);
    this.buf.writeUInt16LE(this.buf.readUInt16LE(at + 6) | extraFlags | NLM_F_REQUEST, at + 6);
    this.buf.writeUInt32LE(seq >>> 0, at + 8);
    this.buf.writeUInt32LE(port >>> 0, at + 12);
  }
  /** The single request written by begin() and a body, as a message to send (the channel frames it). */
  message(): OutMessage {
    return { type: this.buf.readUInt16LE(4), flags: this.buf.readUInt16LE(6), body: this.buf.subarray(NLMSG_HDRLEN, this.off) };
  }
  u8(v: number): this {
    this.buf[this.off++] = v;
    return this;
  }
  u16(v: number): this {
    this.buf.writeUInt16LE(v, this.off);
    this.off += 2;
    return this;
  }
  u32(v: number): this {
    this.buf.writeUInt32LE(v >>> 0, this.off);
    this.off += 4;
    return this;
  }
  attr(type: number, data: Buffer): this {
    data.copy(this.buf, this.attrHeader(type, data.length));
    return this.pad();
  }
  attrU32(type: number, v: number): this {
    this.buf.writeUInt32LE(v >>> 0, this.attrHeader(type, 4));
    return this.pad();
  }
  /** A 32-bit value in network byte order (an IPv4 address as a number). */
  attrU32BE(type: number, v: number): this {
    this.buf.writeUInt32BE(v >>> 0, this.attrHeader(type, 4));
    return this.pad();
  }
  /** An IPv4 address attribute from its dotted form; throws on anything else. */
  attrIPv4(type: number, ip: string): this {
    writeIPv4(ip, this.buf, this.attrHeader(type, 4));
    return this.pad();
  }
  /** A MAC address attribute from `aa:bb:cc:dd:ee:ff`; throws on anything else. */
  attrMAC(type: number, mac: string): this {
    writeMAC(mac, this.buf, this.attrHeader(type, 6));
    return this.pad();
  }
  attrU8(type: number, v: number): this {
    this.buf[this.attrHeader(type, 1)] = v;
    return this.pad();
  }
  /** A 16-bit value in network byte order (ports). */
  attrU16BE(type: number, v: number): this {
    this.buf.writeUInt16BE(v, this.attrHeader(type, 2));
    return this.pad();
  }
  /** A NUL-terminated string attribute, as iproute2 sends names. */
  attrString(type: number, s: string): this {
    const bytes = Buffer.byteLength(s);
    const at = this.attrHeader(type, bytes + 1);
    this.buf.write(s, at);
    this.buf[at + bytes] = 0;
    return this.pad();
  }
  /** A flag attribute: present or absent, no data. */
  attrFlag(type: number): this {
    this.attrHeader(type, 0);
    return this;
  }
  /** A nested attribute: `fill` writes its members, then its length is set. */
  nest(type: number, fill: (w: this) => void): this {
    const start = this.off;
    this.attrHeader(type, 0);
    fill(this);
    this.buf.writeUInt16LE(this.off - start, start);
    return this;
  }
  done(): Buffer {
    return this.buf.subarray(0, this.off);
  }
  /** Writes an rtattr header and returns where its `length` bytes of data go. */
  private attrHeader(type: number, length: number): number {
    // Byte stores rather than writeUInt16LE: bulk passes write ~40 000 headers, at start-up in unoptimised code.
    const buf = this.buf;
    const at = this.off;
    buf[at] = (4 + length) & 0xff;
    buf[at + 1] = (4 + length) >>> 8;
    buf[at + 2] = type & 0xff;
    buf[at + 3] = type >>> 8;
    const data = at + 4;
    this.off = data + length;
    return data;
  }
  /** Zeroes the alignment padding after an attribute (the buffer is not zero-filled). */
  private pad(): this {
    while (this.off & 3) this.buf[this.off++] = 0;
    return this;
  }
}

function attrSpace(...lengths: number[]): number {
  return lengths.reduce((sum, n) => sum + align4(4 + n), 0);
}

/**
 * Iterates the rtattrs in `buf` from `offset`, each one's data as a view: for
 * the few-per-lifetime link and address messages. The parsers of dumped
 * neighbours and routes (15 000 per full pass at 5000 peers) walk theirs
 * with attrLength/attrType instead, without a view or a callback per attribute.
 */
export function forEachAttr(buf: Buffer, offset: number, fn: (type: number, data: Buffer) => void): void {
  for (let off = offset, len: number; (len = attrLength(buf, off, buf.length)) > 0; off += align4(len)) {
    fn(attrType(buf, off), buf.subarray(off + 4, off + len));
  }
}

/** The length (header included) of the rtattr at `off`, or 0 when no whole one starts there before `end`. */
function attrLength(buf: Buffer, off: number, end: number): number {
  if (off + 4 > end) return 0;
  const len = buf.readUInt16LE(off);
  return len < 4 || off + len > end ? 0 : len;
}

/** The type of the rtattr at `off`, its nested and byte-order flags masked off. */
function attrType(buf: Buffer, off: number): number {
  return buf.readUInt16LE(off + 2) & 0x3fff;
}

// ---------------------------------------------------------------- addresses and MACs

/** Writes dotted-quad `ip` as 4 bytes at `off`. */
function writeIPv4(ip: string, buf: Buffer, off: number): void {
  buf.writeUInt32BE(ipv4Number(ip), off);
}

function ipv4Number(ip: string): number {
  const value = parseIPv4(ip);
  if (value === null) throw new Error(`not an IPv4 address: ${ip}`);
  return value;
}

export function ipv4String(b: Buffer, at = 0): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/** Writes `aa:bb:cc:dd:ee:ff` (either case) as 6 bytes at `off`. */
function writeMAC(mac: string, buf: Buffer, off: number): void {
  if (mac.length === 17) {
    let i = 0;
    for (; i < 6; i++) {
      const hi = hexValue(mac.charCodeAt(i * 3));
      const lo = hexValue(mac.charCodeAt(i * 3 + 1));
      if (hi < 0 || lo < 0 || (i < 5 && mac.charCodeAt(i * 3 + 2) !== 0x3a)) break;
      buf[off + i] = (hi << 4) | lo;
    }
    if (i === 6) return;
  }
  throw new Error(`not a MAC address: ${mac}`);
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  const lower = c | 0x20;
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x61 + 10 : -1;
}

/** `aa:bb:cc:dd:ee:ff` from the 6 bytes at `at`. */
export function macString(b: Buffer, at = 0): string {
  // Called once per dumped neighbour and FDB entry: one flat string from its character codes.
  const codes = new Array<number>(17);
  for (let i = 0; i < 6; i++) {
    const byte = b[at + i]!;
    codes[i * 3] = HEX[byte >> 4]!;
    codes[i * 3 + 1] = HEX[byte & 15]!;
    if (i < 5) codes[i * 3 + 2] = 0x3a;
  }
  return String.fromCharCode(...codes);
}

/** Character codes of the lower-case hex digits. */
const HEX = [...'0123456789abcdef'].map((c) => c.charCodeAt(0));

// ---------------------------------------------------------------- neighbours and FDB

function ndmsg(w: Writer, family: number, ifindex: number, state: number, flags: number, type: number): Writer {
  return w.u8(family).u8(0).u16(0).u32(ifindex).u16(state).u8(flags).u8(type);
}

const NEIGH_SET_BODY = NDMSG_LEN + attrSpace(4, 6);
const NEIGH_DEL_BODY = NDMSG_LEN + attrSpace(4);
const FDB_REPLACE_BODY = NDMSG_LEN + attrSpace(6, 4);
const FDB_DEL_BODY = NDMSG_LEN + attrSpace(6);

/** RTM_NEWNEIGH, CREATE|REPLACE: `ip neigh replace IP dev IF lladdr MAC nud permanent`. */
export function writeNeighSet(w: Writer, n: { ifindex: number; ip: string; mac: string }): void {
  ndmsg(w.begin(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, NEIGH_SET_BODY), AF_INET, n.ifindex, NUD_PERMANENT, 0, RTN_UNICAST)
    .attrIPv4(NDA_DST, n.ip)
    .attrMAC(NDA_LLADDR, n.mac);
}

/** RTM_DELNEIGH: `ip neigh del IP dev IF`. */
export function writeNeighDel(w: Writer, n: { ifindex: number; ip: string }): void {
  ndmsg(w.begin(RTM_DELNEIGH, 0, NEIGH_DEL_BODY), AF_INET, n.ifindex, 0, 0, 0).attrIPv4(NDA_DST, n.ip);
}

/** RTM_NEWNEIGH AF_BRIDGE NTF_SELF: `bridge fdb replace MAC dev IF dst IP self permanent`. */
export function writeFdbReplace(w: Writer, f: { ifindex: number; mac: string; dst: string }): void {
  ndmsg(w.begin(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, FDB_REPLACE_BODY), AF_BRIDGE, f.ifindex, NUD_PERMANENT, NTF_SELF, 0)
    .attrMAC(NDA_LLADDR, f.mac)
    .attrIPv4(NDA_DST, f.dst);
}

/**
 * RTM_DELNEIGH AF_BRIDGE NTF_SELF without NDA_DST: `bridge fdb del MAC dev IF self`.
 * Without a destination the vxlan driver drops the MAC with all its remotes,
 * which is what removing a peer needs even when its dst drifted.
 */
export function writeFdbDel(w: Writer, f: { ifindex: number; mac: string }): void {
  ndmsg(w.begin(RTM_DELNEIGH, 0, FDB_DEL_BODY), AF_BRIDGE, f.ifindex, 0, NTF_SELF, 0).attrMAC(NDA_LLADDR, f.mac);
}

export const neighSetMessage = (n: { ifindex: number; ip: string; mac: string }): OutMessage => requestMessage(writeNeighSet, n);
export const neighDelMessage = (n: { ifindex: number; ip: string }): OutMessage => requestMessage(writeNeighDel, n);
export const fdbReplaceMessage = (f: { ifindex: number; mac: string; dst: string }): OutMessage => requestMessage(writeFdbReplace, f);
export const fdbDelMessage = (f: { ifindex: number; mac: string }): OutMessage => requestMessage(writeFdbDel, f);

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
  /** NDA_DST when it is an IPv4 address (an IPv6 one is not weft's), else null. */
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
  if (end - start < NDMSG_LEN) throw new RangeError(`neighbour message of ${end - start} bytes, shorter than its header`);
  let dst: string | null = null;
  let lladdr: string | null = null;
  for (let off = start + NDMSG_LEN, len: number; (len = attrLength(buf, off, end)) > 0; off += align4(len)) {
    const type = attrType(buf, off);
    if (type === NDA_DST && len === 8) dst = ipv4String(buf, off + 4);
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

/** An IPv4 ARP entry from a dump, or null for other families / incomplete entries. */
export function toNeigh(n: DumpedNeigh): Neigh | null {
  if (n.family !== AF_INET || n.dst === null || n.lladdr === null) return null;
  return { ifindex: n.ifindex, ip: n.dst, mac: n.lladdr, permanent: (n.state & NUD_PERMANENT) !== 0 };
}

/**
 * The IPv4 neighbour an RTM_DELNEIGH removes, or null for other families. The
 * kernel marks an entry FAILED before it removes it, which drops the lladdr
 * from the message: `mac` is '' then.
 */
export function toDeletedNeigh(n: DumpedNeigh): Neigh | null {
  if (n.family !== AF_INET || n.dst === null) return null;
  return { ifindex: n.ifindex, ip: n.dst, mac: n.lladdr ?? '', permanent: (n.state & NUD_PERMANENT) !== 0 };
}

/** A vxlan FDB entry with an IPv4 remote from a dump, or null. */
export function toFdb(n: DumpedNeigh): Fdb | null {
  if (n.family !== AF_BRIDGE || (n.flags & NTF_SELF) === 0 || n.lladdr === null || n.dst === null) return null;
  return { ifindex: n.ifindex, mac: n.lladdr, dst: n.dst, permanent: (n.state & NUD_PERMANENT) !== 0 };
}

// ---------------------------------------------------------------- routes

function rtmsg(w: Writer, dstLen: number, proto: number, scope: number, type: number, flags: number): Writer {
  return w.u8(AF_INET).u8(dstLen).u8(0).u8(0).u8(RT_TABLE_MAIN).u8(proto).u8(scope).u8(type).u32(flags);
}

const ROUTE_BODY = RTMSG_LEN + attrSpace(4, 4, 4);

/** RTM_NEWROUTE CREATE|REPLACE: `ip route replace DST via GW dev IF [onlink] proto P` (weft's own proto unless given). */
export function writeRouteReplace(w: Writer, r: { dst: string; gw: string | null; oif: number; onlink: boolean; proto?: number }): void {
  const len = cidrPrefixLength(r.dst);
  rtmsg(w.begin(RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, ROUTE_BODY), len, r.proto ?? RTPROT_WEFT, RT_SCOPE_UNIVERSE, RTN_UNICAST, r.onlink ? RTNH_F_ONLINK : 0);
  w.attrU32BE(RTA_DST, networkNumber(r.dst, len));
  if (r.gw) w.attrIPv4(RTA_GATEWAY, r.gw);
  if (r.oif) w.attrU32(RTA_OIF, r.oif);
}

/** RTM_DELROUTE: `ip route del DST [via GW] [dev IF]`; scope NOWHERE and proto 0 match any. */
export function writeRouteDel(w: Writer, r: { dst: string; gw?: string | null; oif?: number }): void {
  const len = cidrPrefixLength(r.dst);
  rtmsg(w.begin(RTM_DELROUTE, 0, ROUTE_BODY), len, 0, RT_SCOPE_NOWHERE, 0, 0);
  w.attrU32BE(RTA_DST, networkNumber(r.dst, len));
  if (r.gw) w.attrIPv4(RTA_GATEWAY, r.gw);
  if (r.oif) w.attrU32(RTA_OIF, r.oif);
}

export const routeReplaceMessage = (r: { dst: string; gw: string | null; oif: number; onlink: boolean; proto: number }): OutMessage =>
  requestMessage(writeRouteReplace, r);
export const routeDelMessage = (r: { dst: string; gw?: string | null; oif?: number }): OutMessage => requestMessage(writeRouteDel, r);

export function routeDumpMessage(): OutMessage {
  const w = new Writer(RTMSG_LEN);
  w.u8(AF_INET).u8(0).u8(0).u8(0).u8(0).u8(0).u8(0).u8(0).u32(0);
  return { type: RTM_GETROUTE, flags: NLM_F_DUMP, body: w.done() };
}

/** A main-table IPv4 unicast route from a dump (the payload in `buf` from `start` to `end`, like parseNeigh), or null for anything else. */
export function parseRoute(buf: Buffer, start = 0, end = buf.length): Route | null {
  if (end - start < RTMSG_LEN) throw new RangeError(`route message of ${end - start} bytes, shorter than its header`);
  const family = buf.readUInt8(start);
  const dstLen = buf.readUInt8(start + 1);
  const proto = buf.readUInt8(start + 5);
  const type = buf.readUInt8(start + 7);
  const flags = buf.readUInt32LE(start + 8);
  if (family !== AF_INET || type !== RTN_UNICAST) return null;
  let table = buf.readUInt8(start + 4);
  let dst = '0.0.0.0';
  let gw: string | null = null;
  let oif = 0;
  for (let off = start + RTMSG_LEN, len: number; (len = attrLength(buf, off, end)) > 0; off += align4(len)) {
    const t = attrType(buf, off);
    if (t === RTA_DST && len === 8) dst = ipv4String(buf, off + 4);
    else if (t === RTA_GATEWAY && len === 8) gw = ipv4String(buf, off + 4);
    else if (t === RTA_OIF && len >= 8) oif = buf.readUInt32LE(off + 4);
    else if (t === RTA_TABLE && len >= 8) table = buf.readUInt32LE(off + 4);
  }
  if (table !== RT_TABLE_MAIN) return null;
  return { dst: `${dst}/${dstLen}`, gw, oif, onlink: (flags & RTNH_F_ONLINK) !== 0, proto };
}

// ---------------------------------------------------------------- addresses

function ifaddrmsg(w: Writer, prefixLen: number, ifindex: number): Writer {
  return w.u8(AF_INET).u8(prefixLen).u8(0).u8(RT_SCOPE_UNIVERSE).u32(ifindex);
}

/** RTM_NEWADDR CREATE|EXCL: `ip addr add CIDR dev IF`. */
export function addrAddMessage(a: Addr): OutMessage {
  const [ip, len] = splitCidr(a.cidr);
  const w = new Writer(IFADDRMSG_LEN + attrSpace(4, 4));
  ifaddrmsg(w, len, a.ifindex).attrIPv4(IFA_LOCAL, ip).attrIPv4(IFA_ADDRESS, ip);
  return { type: RTM_NEWADDR, flags: NLM_F_CREATE | NLM_F_EXCL, body: w.done() };
}

/** RTM_DELADDR: `ip addr del CIDR dev IF`. */
export function addrDelMessage(a: Addr): OutMessage {
  const [ip, len] = splitCidr(a.cidr);
  const w = new Writer(IFADDRMSG_LEN + attrSpace(4, 4));
  ifaddrmsg(w, len, a.ifindex).attrIPv4(IFA_LOCAL, ip).attrIPv4(IFA_ADDRESS, ip);
  return { type: RTM_DELADDR, flags: 0, body: w.done() };
}

export function addrDumpMessage(): OutMessage {
  const w = new Writer(IFADDRMSG_LEN);
  w.u8(AF_INET).u8(0).u8(0).u8(0).u32(0);
  return { type: RTM_GETADDR, flags: NLM_F_DUMP, body: w.done() };
}

/** An IPv4 interface address from a dump with its scope and flags, or null for anything else or a short message. */
export function parseAddrInfo(payload: Buffer): AddrInfo | null {
  if (payload.length < IFADDRMSG_LEN || payload.readUInt8(0) !== AF_INET) return null;
  const prefixLen = payload.readUInt8(1);
  let flags = payload.readUInt8(2);
  const scope = payload.readUInt8(3);
  const ifindex = payload.readUInt32LE(4);
  // Assigned in the callback, which TypeScript's narrowing does not follow.
  let local = null as Buffer | null;
  let address = null as Buffer | null;
  forEachAttr(payload, IFADDRMSG_LEN, (t, data) => {
    if (t === IFA_LOCAL) local = data;
    else if (t === IFA_ADDRESS) address = data;
    else if (t === IFA_FLAGS && data.length >= 4) flags = data.readUInt32LE(0);
  });
  const ip = local ?? address;
  if (!ip || ip.length !== 4 || prefixLen > 32) return null;
  return {
    ifindex,
    cidr: `${ipv4String(ip)}/${prefixLen}`,
    scope: scopeName(scope),
    permanent: (flags & IFA_F_PERMANENT) !== 0,
    deprecated: (flags & IFA_F_DEPRECATED) !== 0,
    secondary: (flags & IFA_F_SECONDARY) !== 0,
  };
}

/** iproute2's names for rt_scope_t (/etc/iproute2/rt_scopes), the number otherwise. */
const SCOPE_NAMES = new Map<number, string>([
  [RT_SCOPE_UNIVERSE, 'global'],
  [200, 'site'],
  [253, 'link'],
  [254, 'host'],
  [RT_SCOPE_NOWHERE, 'nowhere'],
]);

function scopeName(scope: number): string {
  return SCOPE_NAMES.get(scope) ?? String(scope);
}

/** The prefix length of an IPv4 CIDR; throws unless it is `a.b.c.d/0..32`'s. */
function cidrPrefixLength(cidr: string): number {
  const slash = cidr.indexOf('/');
  const n = slash > 0 && slash < cidr.length - 1 ? Number(cidr.slice(slash + 1)) : NaN;
  if (!Number.isInteger(n) || n < 0 || n > 32) throw new Error(`not an IPv4 CIDR: ${cidr}`);
  return n;
}

/**
 * A route destination as the kernel wants it: the network address as a
 * number, host bits masked (`10.1.2.3/16` is 10.1.0.0/16) as `ip route` does.
 */
function networkNumber(cidr: string, prefixLength: number): number {
  return maskIPv4(ipv4Number(cidr.slice(0, cidr.indexOf('/'))), prefixLength);
}

function splitCidr(cidr: string): [string, number] {
  return [cidr.slice(0, cidr.indexOf('/')), cidrPrefixLength(cidr)];
}
