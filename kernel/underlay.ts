/**
 * The underlay: the interface weft sends encapsulated (or, for host-gw and
 * DirectRouting, routed) traffic over. Chosen once at start by flanneld's
 * interface selection (`discoverUnderlay`); its link and connected segments are
 * read again before every full pass (`readSegments`), since the interface can be
 * recreated or re-addressed while weftd runs.
 */
import { WeftError } from '../common/errors.js';
import { canonicalIPv4, maskIPv4, parseIPv4, Subnet } from '../common/subnet.js';
import { addrsOn } from './addresses.js';
import type { AddrInfo, Family, Kernel, Link, Route } from './kernel.js';

/** The interface weft sends VXLAN traffic over, and the address it advertises. */
export interface Underlay {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  /** The interface's own IPv4 address. */
  readonly address: string;
  readonly prefixLength: number;
  /** What peers send to (PublicIP in the lease): --public-ip or the interface address. */
  readonly publicIP: string;
  /** The interface's global IPv6 address, when the network has IPv6. */
  readonly address6?: string | null;
  /** What peers send IPv6 to (PublicIPv6): --public-ipv6 or `address6`; null without IPv6. */
  readonly publicIPv6?: string | null;
}

/**
 * One interface as `selectUnderlay` sees it: the shape `ip -j -4 addr show`
 * prints (the fields weft reads), built from kernel dumps by `interfacesWithIPv4`.
 */
export interface InterfaceInfo {
  readonly ifindex: number;
  readonly ifname: string;
  readonly mtu: number;
  readonly addr_info: readonly { family: string; local: string; prefixlen: number; scope: string; deprecated?: boolean; dynamic?: boolean; temporary?: boolean }[];
}

export interface UnderlaySelection {
  readonly iface: readonly string[];
  readonly ifaceRegex: readonly string[];
  /** Tried after `iface` and `ifaceRegex`: the interface the kernel routes this IPv4 address through. */
  readonly ifaceCanReach?: string;
  readonly publicIp?: string;
}

/**
 * flanneld's interface selection (flannel's main.go and pkg/ipmatch), as a pure
 * function: `--iface` entries (an IP or a name) in order, then each
 * `--iface-regex` against addresses first and names second, then the
 * interface `--iface-can-reach` is routed through (`reachDev`); with none of
 * them, the interface holding `--public-ip`, else the default route's interface.
 */
export function selectUnderlay(interfaces: readonly InterfaceInfo[], defaultRouteDev: string | null, sel: UnderlaySelection, reachDev: string | null = null): Underlay {
  let chosen: InterfaceInfo | undefined;
  const byAddress = (ip: string) => interfaces.find((i) => i.addr_info.some((a) => a.family === 'inet' && a.local === ip));
  if (sel.iface.length === 0 && sel.ifaceRegex.length === 0 && !sel.ifaceCanReach) {
    if (sel.publicIp) chosen = byAddress(sel.publicIp);
    if (!chosen) {
      if (!defaultRouteDev) throw new WeftError('WEFT_ERR_OPTION_INVALID', 'no default route to pick the underlay interface from; use --iface');
      chosen = interfaces.find((i) => i.ifname === defaultRouteDev);
    }
  } else {
    for (const want of sel.iface) {
      chosen = canonicalIPv4(want) ? byAddress(want) : interfaces.find((i) => i.ifname === want);
      if (chosen) break;
    }
    for (const pattern of chosen ? [] : sel.ifaceRegex) {
      const re = new RegExp(pattern);
      chosen =
        interfaces.find((i) => i.addr_info.some((a) => a.family === 'inet' && re.test(a.local))) ??
        interfaces.find((i) => re.test(i.ifname));
      if (chosen) break;
    }
    if (!chosen && sel.ifaceCanReach && reachDev) chosen = interfaces.find((i) => i.ifname === reachDev);
    if (!chosen) {
      const reach = sel.ifaceCanReach ? ` / --iface-can-reach ${sel.ifaceCanReach} (routed through ${reachDev ?? 'no interface'})` : '';
      throw new WeftError('WEFT_ERR_OPTION_INVALID', `no interface matches --iface ${JSON.stringify(sel.iface)} / --iface-regex ${JSON.stringify(sel.ifaceRegex)}${reach}`);
    }
  }
  if (!chosen) throw new WeftError('WEFT_ERR_OPTION_INVALID', `interface ${defaultRouteDev} of the default route not found`);
  // Global before host-scoped, permanent before dynamic, non-temporary before temporary; never deprecated.
  const addrs = chosen.addr_info
    .filter((a) => a.family === 'inet' && !a.deprecated)
    .sort((a, b) => rank(a) - rank(b));
  const addr = addrs[0];
  if (!addr) throw new WeftError('WEFT_ERR_OPTION_INVALID', `interface ${chosen.ifname} has no IPv4 address`);
  if (!chosen.mtu) throw new WeftError('WEFT_ERR_OPTION_INVALID', `interface ${chosen.ifname} reports MTU 0`);
  return { name: chosen.ifname, index: chosen.ifindex, mtu: chosen.mtu, address: addr.local, prefixLength: addr.prefixlen, publicIP: sel.publicIp ?? addr.local };
}

function rank(a: InterfaceInfo['addr_info'][number]): number {
  return (a.scope === 'global' ? 0 : 4) + (a.dynamic ? 2 : 0) + (a.temporary ? 1 : 0);
}

/** The kernel reads `discoverUnderlay` needs. */
export type UnderlayKernel = Pick<Kernel, 'linkList' | 'addrListAll' | 'routeList'>;

/**
 * Reads the links, their IPv4 addresses and the main routing table of the
 * current network namespace through the kernel port (rtnetlink dumps in
 * process, rather than spawning `ip -j`, which slowed weftd's start-up) and
 * picks the underlay with `selectUnderlay`.
 */
export async function discoverUnderlay(kernel: UnderlayKernel, sel: UnderlaySelection): Promise<Underlay> {
  const [links, addrs, routes] = await Promise.all([kernel.linkList(), kernel.addrListAll(), kernel.routeList()]);
  const reach = sel.ifaceCanReach ? routeDevTowards(links, routes, sel.ifaceCanReach) : null;
  return selectUnderlay(interfacesWithIPv4(links, addrs), defaultRouteDev(links, routes), sel, reach);
}

/**
 * The device of the main table's most specific route covering `ip` (the first
 * listed, lowest metric, among equals): what `ip route get IP` answers on a
 * host without policy routing rules. null when no route with a device covers it.
 */
export function routeDevTowards(links: readonly Link[], routes: readonly Route[], ip: string): string | null {
  const target = parseIPv4(ip);
  if (target === null) return null;
  let best: Route | undefined;
  let bestLen = -1;
  for (const r of routes) {
    const [base = '', len = '0'] = r.dst.split('/');
    const prefix = Number(len);
    const value = parseIPv4(base);
    if (r.oif === 0 || value === null || prefix <= bestLen || maskIPv4(target, prefix) !== maskIPv4(value, prefix)) continue;
    best = r;
    bestLen = prefix;
  }
  return best ? (links.find((l) => l.index === best.oif)?.name ?? `#${best.oif}`) : null;
}

/**
 * What `ip -4 addr show` lists: the links holding at least one IPv4 address,
 * in link dump order, each with its addresses in dump order. Links without
 * IPv4 are left out, as iproute2 leaves them out, so they never match.
 */
export function interfacesWithIPv4(links: readonly Link[], addrs: readonly AddrInfo[]): InterfaceInfo[] {
  const byLink = new Map<number, AddrInfo[]>();
  for (const a of addrs) {
    const list = byLink.get(a.ifindex);
    if (list) list.push(a);
    else byLink.set(a.ifindex, [a]);
  }
  const out: InterfaceInfo[] = [];
  for (const link of links) {
    const own = byLink.get(link.index);
    if (own) out.push({ ifindex: link.index, ifname: link.name, mtu: link.mtu, addr_info: own.map(addrEntry) });
  }
  return out;
}

// No `temporary`: IPv4 has no temporary addresses (the flag bit means
// IFA_F_SECONDARY there, which iproute2 prints as `secondary`).
function addrEntry(a: AddrInfo): InterfaceInfo['addr_info'][number] {
  const [local = '', prefixlen] = a.cidr.split('/');
  return { family: 'inet', local, prefixlen: Number(prefixlen), scope: a.scope, deprecated: a.deprecated, dynamic: !a.permanent };
}

/**
 * The device of the main table's first IPv4 default route, as
 * `ip -4 route show default` lists it first (lowest metric); null without
 * one, or when it names no single device (a multipath route).
 */
export function defaultRouteDev(links: readonly Link[], routes: readonly Route[]): string | null {
  const route = routes.find((r) => r.dst === '0.0.0.0/0');
  if (!route || route.oif === 0) return null;
  // A link deleted between the dumps: the name selectUnderlay then reports as not found.
  return links.find((l) => l.index === route.oif)?.name ?? `#${route.oif}`;
}

/** The underlay's link as it is now, and its connected subnets of the families asked for (its addresses' prefixes, host addresses excluded). */
export interface UnderlaySegments {
  readonly link: Link;
  readonly segments: readonly Subnet[];
}

/** Reads the underlay `name` again: its ifindex changes if it is recreated, its segments if it is re-addressed. */
export async function readSegments(kernel: Kernel, name: string, families: readonly Family[] = [4]): Promise<UnderlaySegments> {
  const link = await kernel.linkByName(name);
  if (!link) throw new WeftError('WEFT_ERR_KERNEL', `underlay interface ${name} not found`);
  const addrs = (await Promise.all(families.map((family) => addrsOn(kernel, link.index, family)))).flat();
  // IPv6's link-local fe80::/64 is on every link and reaches no peer's PublicIPv6.
  const segments = addrs.map((a) => Subnet.parse(a.cidr)).filter((s) => s.prefixLength < s.bits && !(s.family === 6 && s.ip.startsWith('fe80:')));
  return { link, segments };
}

/** True when `ip` lies in one of the connected subnets: a peer reachable without a router (DirectRouting, host-gw). */
export function onSegment(segments: readonly Subnet[], ip: string): boolean {
  return segments.some((s) => s.contains(ip));
}
