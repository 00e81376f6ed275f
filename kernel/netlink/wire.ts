/**
 * The netlink wire format every message kind shares: nlmsghdr framing, the
 * Writer that builds requests in place, rtattr walking, and the IPv4, IPv6 and
 * MAC encodings. The message kinds sit beside it, one module each, as
 * vishvananda/netlink splits them: link.ts, addr.ts, route.ts, neigh.ts
 * (neighbours and FDB entries).
 *
 * weft encodes its messages by hand rather than through the generic
 * formatters of the `netlink` package (it uses only the package's socket):
 * its messages have fixed headers and a handful of attributes, so this is
 * short, and bulk passes write them straight into the datagram they go out in.
 *
 * Layouts from <linux/netlink.h> and <linux/rtnetlink.h>. Integers are host
 * order (little-endian on every target).
 */
import { constants as osConstants } from 'node:os';
import { WeftError } from '../../common/errors.js';
import { formatIPv6, parseIPv4, parseIPv6 } from '../../common/subnet.js';

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

export const AF_UNSPEC = 0;
export const AF_INET = 2;
export const AF_BRIDGE = 7;
export const AF_INET6 = 10;

/** rtnetlink's scopes and route types (<linux/rtnetlink.h>), shared by routes, addresses and neighbours. */
export const RT_SCOPE_UNIVERSE = 0;
export const RT_SCOPE_NOWHERE = 255;
export const RTN_UNICAST = 1;

export const align4 = (n: number): number => (n + 3) & ~3;

/** A message still to be sent: type, flags and body; the channel adds seq and port. */
export interface OutMessage {
  readonly type: number;
  readonly flags: number;
  /** Everything after the nlmsghdr, 4-byte aligned. */
  readonly body: Buffer;
}

/** Writes one request into `w`: begin() with its type, flags and body size, then the body. */
export type RequestWriter<T> = (w: Writer, item: T) => void;

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
 * rather than through intermediate ones. Bulk passes (a few requests per peer)
 * write whole requests back to back into one datagram: begin() puts a
 * request's header, the body follows, seal() completes the header. So a chunk
 * of requests is one buffer, not one body per request copied into another.
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
  /** An IPv6 address attribute (16 bytes); throws on anything but an IPv6 address. */
  attrIPv6(type: number, ip: string): this {
    writeIPv6(ip, this.buf, this.attrHeader(type, 16));
    return this.pad();
  }
  /** An address attribute of either family, as `ip` reads (ipFamily): 4 or 16 bytes. */
  attrIP(type: number, ip: string): this {
    return ipFamily(ip) === 6 ? this.attrIPv6(type, ip) : this.attrIPv4(type, ip);
  }
  /**
   * An IPv6 network attribute: the 16 bytes of `ip` with the bits after
   * `prefixLength` cleared (`fd00:1::5/64` is sent as fd00:1::), as `ip route` does.
   */
  attrIPv6Network(type: number, ip: string, prefixLength: number): this {
    const at = this.attrHeader(type, 16);
    writeIPv6(ip, this.buf, at);
    for (let bit = prefixLength; bit < 128; bit++) this.buf[at + (bit >> 3)]! &= ~(0x80 >> (bit & 7));
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
    // Byte stores rather than writeUInt16LE: bulk passes write one header per attribute, at start-up while this still runs unoptimised.
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

/** Room the attributes of these data lengths take in a body, padding included. */
export function attrSpace(...lengths: number[]): number {
  return lengths.reduce((sum, n) => sum + align4(4 + n), 0);
}

/**
 * Iterates the rtattrs in `buf` from `offset`, each one's data as a view: for
 * the few-per-lifetime link and address messages. The parsers of dumped
 * neighbours and routes (three entries per peer in every full pass) walk
 * theirs with attrLength/attrType instead, without a view or a callback per
 * attribute.
 */
export function forEachAttr(buf: Buffer, offset: number, fn: (type: number, data: Buffer) => void): void {
  for (let off = offset, len: number; (len = attrLength(buf, off, buf.length)) > 0; off += align4(len)) {
    fn(attrType(buf, off), buf.subarray(off + 4, off + len));
  }
}

/** The length (header included) of the rtattr at `off`, or 0 when no whole one starts there before `end`. */
export function attrLength(buf: Buffer, off: number, end: number): number {
  if (off + 4 > end) return 0;
  const len = buf.readUInt16LE(off);
  return len < 4 || off + len > end ? 0 : len;
}

/** The type of the rtattr at `off`, its nested and byte-order flags masked off. */
export function attrType(buf: Buffer, off: number): number {
  return buf.readUInt16LE(off + 2) & 0x3fff;
}

// ---------------------------------------------------------------- addresses and MACs

/** Writes dotted-quad `ip` as 4 bytes at `off`. */
function writeIPv4(ip: string, buf: Buffer, off: number): void {
  buf.writeUInt32BE(ipv4Number(ip), off);
}

/** Dotted-quad `ip` as a number (common/subnet.ts's parseIPv4); throws on anything else. */
export function ipv4Number(ip: string): number {
  const value = parseIPv4(ip);
  if (value === null) throw new WeftError('WEFT_ERR_ADDRESS_INVALID', `not an IPv4 address: ${ip}`);
  return value;
}

/**
 * The family of an address or CIDR string as a change sends it: 6 when it
 * has a colon (only IPv6 addresses do), else 4. The encoders then refuse
 * what is not a valid address of that family, so this agrees with
 * node:net's isIPv6/isIPv4 on what they accept, at the cost of one scan.
 */
export function ipFamily(ip: string): 4 | 6 {
  return ip.includes(':') ? 6 : 4;
}

/** The prefix length of a CIDR of either family; throws unless it is `a.b.c.d/0..32`'s or an IPv6 address's `/0..128`. */
export function cidrPrefixLength(cidr: string): number {
  const slash = cidr.indexOf('/');
  const n = slash > 0 && slash < cidr.length - 1 ? Number(cidr.slice(slash + 1)) : NaN;
  const v6 = ipFamily(cidr) === 6;
  if (!Number.isInteger(n) || n < 0 || n > (v6 ? 128 : 32)) {
    throw new WeftError('WEFT_ERR_ADDRESS_INVALID', `not an ${v6 ? 'IPv6' : 'IPv4'} CIDR: ${cidr}`);
  }
  return n;
}

export function ipv4String(b: Buffer, at = 0): string {
  return `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;
}

/**
 * Writes IPv6 `ip` as 16 bytes at `off`: hex groups with at most one `::`,
 * and an IPv4 tail (`::ffff:198.18.0.1`); no zone, no prefix. Throws
 * WEFT_ERR_ADDRESS_INVALID on anything else (a zone, `fe80::1%eth0`, included:
 * netlink names the device in an attribute of its own).
 */
function writeIPv6(ip: string, buf: Buffer, off: number): void {
  if (!parseIPv6Into(ip, buf, off)) throw new WeftError('WEFT_ERR_ADDRESS_INVALID', `not an IPv6 address: ${ip}`);
}

/** writeIPv6's work: false when `ip` is no IPv6 address (common/subnet.ts reads it). */
function parseIPv6Into(ip: string, buf: Buffer, off: number): boolean {
  const groups = parseIPv6(ip);
  if (!groups) return false;
  for (let i = 0; i < 8; i++) buf.writeUInt16BE(groups[i] as number, off + i * 2);
  return true;
}

/** The RFC 5952 text of the 16 bytes at `at`, as Subnet.toString writes it (formatIPv6), so dumped and wanted addresses compare as strings. */
export function ipv6String(b: Buffer, at = 0): string {
  const groups = new Array<number>(8);
  for (let i = 0; i < 8; i++) groups[i] = ((b[at + i * 2] as number) << 8) | (b[at + i * 2 + 1] as number);
  return formatIPv6(groups);
}

/** An address attribute's data of either family (4 or 16 bytes at `at`, `len` of them) as text, or null for another length. */
export function ipAttrString(b: Buffer, at: number, len: number): string | null {
  if (len === 4) return ipv4String(b, at);
  if (len === 16) return ipv6String(b, at);
  return null;
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
  throw new WeftError('WEFT_ERR_ADDRESS_INVALID', `not a MAC address: ${mac}`);
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

