/**
 * Address messages (`ip addr`): the overlay address weft puts on its device
 * and the dump underlay discovery reads.
 *
 * Layouts from <linux/if_addr.h> (struct ifaddrmsg, IFA_*, IFA_F_*).
 */
import type { Addr, AddrInfo } from '../kernel.js';
import { AF_INET, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, RT_SCOPE_NOWHERE, RT_SCOPE_UNIVERSE, Writer, attrSpace, cidrPrefixLength, forEachAttr, ipv4String, type OutMessage } from './wire.js';

export const RTM_NEWADDR = 20;
export const RTM_DELADDR = 21;
export const RTM_GETADDR = 22;

const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
/** u32 flags; supersedes the 8-bit ifa_flags of the header when present. */
const IFA_FLAGS = 8;
const IFA_F_SECONDARY = 0x01;
const IFA_F_DEPRECATED = 0x20;
const IFA_F_PERMANENT = 0x80;

const IFADDRMSG_LEN = 8;

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

/** RTM_GETADDR dump of the IPv4 addresses: `ip -4 addr show`. */
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

function splitCidr(cidr: string): [string, number] {
  return [cidr.slice(0, cidr.indexOf('/')), cidrPrefixLength(cidr)];
}
