/**
 * Address messages (`ip addr`, `ip -6 addr`): the overlay address weft puts
 * on its device and the dump underlay discovery reads. A request's family is
 * its address's (ipFamily); a dump reads one family.
 *
 * Layouts from <linux/if_addr.h> (struct ifaddrmsg, IFA_*, IFA_F_*).
 */
import type { Addr, AddrInfo, Family } from '../kernel.js';
import { AF_INET, AF_INET6, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, RT_SCOPE_NOWHERE, RT_SCOPE_UNIVERSE, Writer, attrSpace, cidrPrefixLength, forEachAttr, ipAttrString, ipFamily, type OutMessage } from './wire.js';

export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
/** u32 flags; supersedes the 8-bit ifa_flags of the header when present. */
const IFA_FLAGS = 8;
/** IPv4's: another address of the same prefix on the link is primary. */
const IFA_F_SECONDARY = 0x01;
/** IPv6's name for the same bit: a privacy (RFC 8981) address, which rotates. */
const IFA_F_TEMPORARY = IFA_F_SECONDARY;
/** IPv6: no duplicate address detection; the address is usable at once (`ip -6 addr add ... nodad`). */
export const IFA_F_NODAD = 0x02;
const IFA_F_DEPRECATED = 0x20;
const IFA_F_PERMANENT = 0x80;

const IFADDRMSG_LEN = 8;

function ifaddrmsg(w: Writer, family: number, prefixLen: number, flags: number, ifindex: number): Writer {
  return w.u8(family).u8(prefixLen).u8(flags).u8(RT_SCOPE_UNIVERSE).u32(ifindex);
}

/**
 * RTM_NEWADDR CREATE|EXCL: `ip addr add CIDR dev IF`; for an IPv6 CIDR
 * `ip -6 addr add CIDR dev IF nodad` (IFA_F_NODAD in ifa_flags, as iproute2
 * sends it): weft's addresses are unique by lease, and an address in DAD is
 * tentative, unusable as a source until DAD is done.
 */
export function addrAddMessage(a: Addr): OutMessage {
  return { type: RTM_NEWADDR, flags: NLM_F_CREATE | NLM_F_EXCL, body: addrBody(a, true) };
}

/** RTM_DELADDR: `ip addr del CIDR dev IF` (`ip -6 addr del` for an IPv6 CIDR). */
export function addrDelMessage(a: Addr): OutMessage {
  return { type: RTM_DELADDR, flags: 0, body: addrBody(a, false) };
}

function addrBody(a: Addr, add: boolean): Buffer {
  const [ip, len] = splitCidr(a.cidr);
  const v6 = ipFamily(ip) === 6;
  const w = new Writer(IFADDRMSG_LEN + attrSpace(16, 16));
  ifaddrmsg(w, v6 ? AF_INET6 : AF_INET, len, v6 && add ? IFA_F_NODAD : 0, a.ifindex).attrIP(IFA_LOCAL, ip).attrIP(IFA_ADDRESS, ip);
  return w.done();
}

/** RTM_GETADDR dump of one family's addresses: `ip -4 addr show` (`ip -6 addr show` for 6). */
export function addrDumpMessage(family: Family = 4): OutMessage {
  const w = new Writer(IFADDRMSG_LEN);
  w.u8(family === 6 ? AF_INET6 : AF_INET).u8(0).u8(0).u8(0).u32(0);
  return { type: RTM_GETADDR, flags: NLM_F_DUMP, body: w.done() };
}

/**
 * An IPv4 or IPv6 interface address from a dump with its scope and flags, or
 * null for anything else or a short message. IFA_F_SECONDARY and IPv6's
 * IFA_F_TEMPORARY are one bit: it is `secondary` for IPv4 and `temporary`
 * for IPv6 (where `secondary` is always false, IPv6 having no primary address).
 */
export function parseAddrInfo(payload: Buffer): AddrInfo | null {
  if (payload.length < IFADDRMSG_LEN) return null;
  const family = payload.readUInt8(0);
  if (family !== AF_INET && family !== AF_INET6) return null;
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
  // IFA_LOCAL is the address itself where there is a peer (then in IFA_ADDRESS); IPv6 sends only IFA_ADDRESS without one.
  const ip = local ?? address;
  const bytes = family === AF_INET ? 4 : 16;
  if (!ip || ip.length !== bytes || prefixLen > bytes * 8) return null;
  const info = {
    ifindex,
    cidr: `${ipAttrString(ip, 0, bytes)}/${prefixLen}`,
    scope: scopeName(scope),
    permanent: (flags & IFA_F_PERMANENT) !== 0,
    deprecated: (flags & IFA_F_DEPRECATED) !== 0,
    secondary: family === AF_INET && (flags & IFA_F_SECONDARY) !== 0,
  };
  return family === AF_INET ? info : { ...info, temporary: (flags & IFA_F_TEMPORARY) !== 0 };
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

function splitCidr(cidr: string): [string, number] {
  return [cidr.slice(0, cidr.indexOf('/')), cidrPrefixLength(cidr)];
}
