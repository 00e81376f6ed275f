/**
 * The underlay: the interface weft sends encapsulated (or, for host-gw and
 * DirectRouting, routed) traffic over. Chosen once at start by flanneld's
 * interface selection (`discoverUnderlay`); its link and connected segments are
 * read again before every full pass (`readSegments`), since the interface can be
 * recreated or re-addressed while weftd runs.
 */
import { WeftError } from '../common/errors.js';
import { canonicalIPv4, canonicalIPv6, ipValue, maskIPv4, parseIPv4, Subnet } from '../common/subnet.js';
import { addrsOn } from './addresses.js';
import type { AddrInfo, Family, Kernel, Link, Route } from './kernel.js';

/** The interface weft sends VXLAN traffic over, and the addresses it advertises. */
export interface Underlay {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  /** The interface's own IPv4 address; `''` for an IPv6-only config. */
  readonly address: string;
  /** Its prefix length; 0 for an IPv6-only config. */
  readonly prefixLength: number;
  /** What peers send to (PublicIP in the lease): --public-ip or the interface address; flannel's unset `0.0.0.0` for an IPv6-only config. */
  readonly publicIP: string;
  /** The interface's best global IPv6 address; null when IPv6 is off. */
  readonly address6: string | null;
  /** Its prefix length; 0 when IPv6 is off. */
  readonly prefixLength6: number;
  /** PublicIPv6 in the lease: --public-ipv6 or `address6`; null when IPv6 is off. */
  readonly publicIPv6: string | null;
}

/** One address as `ip -j addr show` prints it (the fields weft reads). */
export interface InterfaceAddress {
  readonly family: string;
  readonly local: string;
  readonly prefixlen: number;
  readonly scope: string;
  readonly deprecated?: boolean;
  readonly dynamic?: boolean;
  readonly temporary?: boolean;
  /** IPv6 duplicate address detection still running: the address cannot be used yet. */
  readonly tentative?: boolean;
  /** IPv6 duplicate address detection found the address in use elsewhere. */
  readonly dadfailed?: boolean;
}

/**
 * One interface as `selectUnderlay` sees it: the shape `ip -j addr show`
 * prints (the fields weft reads), built from kernel dumps by `interfacesWithAddresses`.
 */
export interface InterfaceInfo {
  readonly ifindex: number;
  readonly ifname: string;
  readonly mtu: number;
  readonly addr_info: readonly InterfaceAddress[];
}

export interface UnderlaySelection {
  readonly iface: readonly string[];
  readonly ifaceRegex: readonly string[];
  /** Tried after `iface` and `ifaceRegex`: the interface the kernel routes this IPv4 or IPv6 address through. */
  readonly ifaceCanReach?: string;
  readonly publicIp?: string;
  /** --public-ipv6, in RFC 5952 form (options.ts canonicalises it). */
  readonly publicIpv6?: string;
  /** The address families of the network config: which addresses the underlay must have. */
  readonly stack: { readonly v4: boolean; readonly v6: boolean };
}

/**
 * flanneld's interface selection (flannel's main.go and pkg/ipmatch), as a pure
 * function: `--iface` entries (an IPv4 or IPv6 address, or a name) in order,
 * then each `--iface-regex` against addresses (both families) first and names
 * second, then the interface `--iface-can-reach` is routed through
 * (`reachDev`); with none of them, the interface holding `--public-ip` (or
 * `--public-ipv6`), else the default route's interface: for dual stack the
 * IPv4 (`defaultRouteDev`) and IPv6 (`defaultRouteDev6`) default routes must
 * leave through the same one, for IPv6-only the IPv6 one counts.
 */
export function selectUnderlay(
  interfaces: readonly InterfaceInfo[],
  defaultRouteDev: string | null,
  sel: UnderlaySelection,
  reachDev: string | null = null,
  defaultRouteDev6: string | null = null,
): Underlay {
  const { v4, v6 } = sel.stack;
  if (!v4 && !v6) throw new WeftError('WEFT_ERR_OPTION_INVALID', 'no address family to pick the underlay for: the network config enables neither IPv4 nor IPv6');
  let chosen: InterfaceInfo | undefined;
  const byAddress = (ip: string) => interfaces.find((i) => i.addr_info.some((a) => a.local === ip));
  if (sel.iface.length === 0 && sel.ifaceRegex.length === 0 && !sel.ifaceCanReach) {
    if (v4 && sel.publicIp) chosen = byAddress(sel.publicIp);
    if (!chosen && v6 && sel.publicIpv6) chosen = byAddress(sel.publicIpv6);
    const dev = chosen ? null : defaultDev(v4 ? defaultRouteDev : null, v6 ? defaultRouteDev6 : null, sel.stack);
    if (dev !== null) {
      chosen = interfaces.find((i) => i.ifname === dev);
      if (!chosen) throw new WeftError('WEFT_ERR_OPTION_INVALID', `interface ${dev} of the default route not found`);
    }
  } else {
    for (const want of sel.iface) {
      const ip = canonicalIPv4(want) ?? canonicalIPv6(want);
      chosen = ip ? byAddress(ip) : interfaces.find((i) => i.ifname === want);
      if (chosen) break;
    }
    for (const pattern of chosen ? [] : sel.ifaceRegex) {
      const re = new RegExp(pattern);
      chosen = interfaces.find((i) => i.addr_info.some((a) => re.test(a.local))) ?? interfaces.find((i) => re.test(i.ifname));
      if (chosen) break;
    }
    if (!chosen && sel.ifaceCanReach && reachDev) chosen = interfaces.find((i) => i.ifname === reachDev);
    if (!chosen) {
      const reach = sel.ifaceCanReach ? ` / --iface-can-reach ${sel.ifaceCanReach} (routed through ${reachDev ?? 'no interface'})` : '';
      throw new WeftError('WEFT_ERR_OPTION_INVALID', `no interface matches --iface ${JSON.stringify(sel.iface)} / --iface-regex ${JSON.stringify(sel.ifaceRegex)}${reach}`);
    }
  }
  if (!chosen) throw new WeftError('WEFT_ERR_OPTION_INVALID', `interface ${defaultRouteDev} of the default route not found`);
  const addr = v4 ? bestAddress(chosen, 'inet') : undefined;
  if (v4 && !addr) throw new WeftError('WEFT_ERR_OPTION_INVALID', `interface ${chosen.ifname} has no IPv4 address`);
  const addr6 = v6 ? bestAddress(chosen, 'inet6') : undefined;
  if (v6 && !addr6) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', `interface ${chosen.ifname} has no usable global IPv6 address (the network config enables IPv6; link-local, deprecated, tentative and DAD-failed addresses do not count)`);
  }
  if (!chosen.mtu) throw new WeftError('WEFT_ERR_OPTION_INVALID', `interface ${chosen.ifname} reports MTU 0`);
  return {
    name: chosen.ifname,
    index: chosen.ifindex,
    mtu: chosen.mtu,
    address: addr?.local ?? '',
    prefixLength: addr?.prefixlen ?? 0,
    publicIP: addr ? (sel.publicIp ?? addr.local) : '0.0.0.0',
    address6: addr6?.local ?? null,
    prefixLength6: addr6?.prefixlen ?? 0,
    publicIPv6: addr6 ? (sel.publicIpv6 ?? addr6.local) : null,
  };
}

/**
 * The default route's interface for the stack: IPv4's, IPv6's, or for dual
 * stack the one both leave through (flanneld refuses two, as one VXLAN
 * device pair is bound to one underlay).
 */
function defaultDev(dev4: string | null, dev6: string | null, stack: UnderlaySelection['stack']): string {
  if (stack.v4 && !dev4) throw new WeftError('WEFT_ERR_OPTION_INVALID', 'no default route to pick the underlay interface from; use --iface');
  if (stack.v6 && !dev6) throw new WeftError('WEFT_ERR_OPTION_INVALID', 'no IPv6 default route (::/0) to pick the underlay interface from; use --iface');
  if (stack.v4 && stack.v6 && dev4 !== dev6) {
    throw new WeftError(
      'WEFT_ERR_OPTION_INVALID',
      `the IPv4 default route leaves through ${dev4} and the IPv6 default route through ${dev6}: a dual-stack underlay is one interface; choose it with --iface`,
    );
  }
  return (stack.v4 ? dev4 : dev6)!;
}

/**
 * The address of `family` the interface should advertise: global before
 * host-scoped, permanent before dynamic, non-temporary before temporary;
 * never a deprecated one. IPv6 takes only a global address (a link-local one
 * cannot be reached from another link) that passed duplicate address detection.
 */
function bestAddress(iface: InterfaceInfo, family: 'inet' | 'inet6'): InterfaceAddress | undefined {
  return iface.addr_info
    .filter((a) => a.family === family && !a.deprecated && (family === 'inet' || (a.scope === 'global' && !a.tentative && !a.dadfailed)))
    .sort((a, b) => rank(a) - rank(b))[0];
}

function rank(a: InterfaceAddress): number {
  return (a.scope === 'global' ? 0 : 4) + (a.dynamic ? 2 : 0) + (a.temporary ? 1 : 0);
}

/** The kernel reads `discoverUnderlay` needs. */
export type UnderlayKernel = Pick<Kernel, 'linkList' | 'addrListAll' | 'routeList'>;

/**
 * Reads the links, their addresses and the main routing table of the current
 * network namespace through the kernel port (rtnetlink dumps in process,
 * rather than spawning `ip -j`, which slowed weftd's start-up) and picks the
 * underlay with `selectUnderlay`. The IPv6 addresses and routes are read only
 * when IPv6 is on, or an option names an IPv6 address: an IPv4-only start
 * does the three dumps it always did.
 */
export async function discoverUnderlay(kernel: UnderlayKernel, sel: UnderlaySelection): Promise<Underlay> {
  const reach6 = !!sel.ifaceCanReach && canonicalIPv6(sel.ifaceCanReach) !== null;
  const read6 = sel.stack.v6 || reach6 || sel.iface.some((i) => canonicalIPv6(i) !== null);
  const none = Promise.resolve([]);
  const [links, addrs, routes, addrs6, routes6] = await Promise.all([
    kernel.linkList(),
    kernel.addrListAll(),
    kernel.routeList(),
    read6 ? kernel.addrListAll(6) : none,
    read6 ? kernel.routeList(6) : none,
  ]);
  const reach = sel.ifaceCanReach ? routeDevTowards(links, reach6 ? routes6 : routes, sel.ifaceCanReach) : null;
  return selectUnderlay(interfacesWithAddresses(links, [...addrs, ...addrs6]), defaultRouteDev(links, routes), sel, reach, defaultRouteDev(links, routes6));
}

/**
 * The device of the main table's most specific route covering `ip` (the first
 * listed, lowest metric, among equals): what `ip route get IP` answers on a
 * host without policy routing rules. `routes` is the dump of `ip`'s family.
 * null when no route with a device covers it.
 */
export function routeDevTowards(links: readonly Link[], routes: readonly Route[], ip: string): string | null {
  const covers = coverage(ip);
  if (!covers) return null;
  let best: Route | undefined;
  let bestLen = -1;
  for (const r of routes) {
    const [base = '', len = '0'] = r.dst.split('/');
    const prefix = Number(len);
    if (r.oif === 0 || prefix <= bestLen || !covers(base, prefix)) continue;
    best = r;
    bestLen = prefix;
  }
  return best ? (links.find((l) => l.index === best.oif)?.name ?? `#${best.oif}`) : null;
}

/** A test of whether network `base`/`prefix` holds `ip`, or null when `ip` is no address. */
function coverage(ip: string): ((base: string, prefix: number) => boolean) | null {
  const target = parseIPv4(ip);
  if (target !== null) {
    return (base, prefix) => {
      const value = parseIPv4(base);
      return value !== null && maskIPv4(target, prefix) === maskIPv4(value, prefix);
    };
  }
  const v6 = ipValue(ip);
  if (v6?.family !== 6) return null;
  return (base, prefix) => {
    const value = ipValue(base);
    if (value?.family !== 6 || prefix > 128) return false;
    const shift = BigInt(128 - prefix);
    return value.value >> shift === v6.value >> shift;
  };
}

/**
 * What `ip -4 addr show` lists: the links holding at least one IPv4 address,
 * in link dump order, each with its addresses in dump order. Links without
 * IPv4 are left out, as iproute2 leaves them out, so they never match.
 */
export function interfacesWithIPv4(links: readonly Link[], addrs: readonly AddrInfo[]): InterfaceInfo[] {
  return interfacesWithAddresses(links, addrs);
}

/**
 * What `ip addr show` lists of the dumped families: the links holding at
 * least one of the addresses, in link dump order, each with its addresses in
 * the order given (IPv4 first when both dumps are passed, as iproute2 prints).
 */
export function interfacesWithAddresses(links: readonly Link[], addrs: readonly AddrInfo[]): InterfaceInfo[] {
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

/**
 * An IPv6 address as the port may report it: IFA_F_TENTATIVE and
 * IFA_F_DADFAILED, where it decodes them (weft's own addresses are added
 * `nodad`, so only an underlay's can be either).
 */
type AddrInfo6 = AddrInfo & { readonly tentative?: boolean; readonly dadfailed?: boolean };

// No `temporary` for IPv4: IPv4 has no temporary addresses (the flag bit means
// IFA_F_SECONDARY there, which iproute2 prints as `secondary`); for IPv6 the
// same bit is IFA_F_TEMPORARY (a privacy address, RFC 8981).
function addrEntry(a: AddrInfo6): InterfaceAddress {
  const [local = '', prefixlen] = a.cidr.split('/');
  if (!local.includes(':')) return { family: 'inet', local, prefixlen: Number(prefixlen), scope: a.scope, deprecated: a.deprecated, dynamic: !a.permanent };
  return {
    family: 'inet6',
    local,
    prefixlen: Number(prefixlen),
    scope: a.scope,
    deprecated: a.deprecated,
    dynamic: !a.permanent,
    temporary: a.secondary,
    tentative: a.tentative === true,
    dadfailed: a.dadfailed === true,
  };
}

/**
 * The device of the main table's first default route (`0.0.0.0/0`, or `::/0`
 * in an IPv6 dump), as `ip route show default` lists it first (lowest
 * metric); null without one, or when it names no single device (a multipath route).
 */
export function defaultRouteDev(links: readonly Link[], routes: readonly Route[]): string | null {
  const route = routes.find((r) => r.dst === '0.0.0.0/0' || r.dst === '::/0');
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
