/**
 * The kernel port: everything weft asks of the Linux kernel, named like
 * iproute2 (and vishvananda/netlink). Backends and the reconciler speak only
 * this interface; `kernel-netlink.ts` implements it over rtnetlink,
 * `kernel-fake.ts` in memory for unit tests.
 *
 * Addresses are strings (`10.244.3.0`, `10.244.3.0/24`, `fd00:10:244:3::/64`
 * in RFC 5952 form), MACs lower-case `aa:bb:cc:dd:ee:ff`. A change names its
 * family by its addresses: an IPv6 neighbour, route, nexthop gateway, FDB
 * remote, address or vxlan `local` is sent as AF_INET6 (LOCAL6). Dumps take
 * the family to read, IPv4 when none is given. Entries are keyed the way the kernel keys them, so a
 * diff of desired against dumped state can be done by key.
 */
import { WeftError } from '../common/errors.js';

/** An address family by its IP version. */
export type Family = 4 | 6;

/** rtnetlink route protocol that marks a route as weft's (`ip route ... proto 0x57`). */
export const RTPROT_WEFT = 0x57;
/** Routes added by the kernel itself (connected/local routes); never weft's. */
export const RTPROT_KERNEL = 2;
/** flanneld adds its routes without a protocol, which the kernel records as `boot`. */
export const RTPROT_BOOT = 3;
/** The main routing table. */
export const RT_TABLE_MAIN = 254;
/** Neighbour state of entries that never expire and are never probed. */
export const NUD_PERMANENT = 0x80;
/** FDB entry flag: the entry belongs to the device itself (vxlan), not to a bridge master. */
export const NTF_SELF = 0x02;
/** Route next-hop flag: the gateway is on-link even though no prefix covers it. */
export const RTNH_F_ONLINK = 0x04;
/** The lowest kernel with nexthop objects (`ip nexthop`, RTM_NEWNEXTHOP). */
export const NEXTHOP_MIN_KERNEL = '5.3';

/** A network interface as dumped. */
export interface Link {
  readonly index: number;
  readonly name: string;
  readonly mac: string;
  readonly mtu: number;
  readonly up: boolean;
  /** `vxlan`, `veth`, `bridge`, ... or `''` for a device without link info. */
  readonly kind: string;
  /** Set when `kind` is vxlan. */
  readonly vxlan?: VxlanAttrs;
}

/** The vxlan attributes weft sets and compares (`ip -d link show`). */
export interface VxlanAttrs {
  readonly vni: number;
  /** UDP destination port; the kernel reports 8472 when none was given. */
  readonly port: number;
  /** Local (source) tunnel address, IPv4 (IFLA_VXLAN_LOCAL) or IPv6 (IFLA_VXLAN_LOCAL6), or null when unset. */
  readonly local: string | null;
  /** ifindex of the underlay device, 0 when unset. */
  readonly underlayIndex: number;
  readonly learning: boolean;
  readonly gbp: boolean;
}

/** What `linkAdd` creates: a point-to-multipoint vxlan device driven by the FDB. */
export interface VxlanLinkSpec {
  readonly name: string;
  readonly mac: string;
  readonly mtu: number;
  readonly vni: number;
  readonly port: number;
  readonly local: string;
  readonly underlayIndex: number;
  readonly learning: boolean;
  readonly gbp: boolean;
}

/** An interface address, `10.244.3.0/32`. */
export interface Addr {
  readonly ifindex: number;
  readonly cidr: string;
}

/**
 * An address with what `ip -4 addr show` (`ip -6 addr show`) prints beside
 * it: the scope and the IFA_F_* flags that decide which address a host
 * should advertise.
 */
export interface AddrInfo extends Addr {
  /** iproute2's scope name: `global`, `site`, `link`, `host`, `nowhere`, or the number when unnamed. */
  readonly scope: string;
  /** IFA_F_PERMANENT: no lifetime. iproute2 prints its absence as `dynamic` (e.g. a DHCP lease). */
  readonly permanent: boolean;
  /** IFA_F_DEPRECATED: the preferred lifetime ran out; not to be used for new traffic. */
  readonly deprecated: boolean;
  /**
   * IFA_F_SECONDARY: another address of the same prefix on the link is primary.
   * For IPv4 this bit is the one IPv6 calls IFA_F_TEMPORARY; IPv4 has no temporary addresses.
   * Always false for IPv6, which has no primary address.
   */
  readonly secondary: boolean;
  /**
   * IPv6 only (absent for IPv4): IFA_F_TEMPORARY, a privacy address (RFC 8981)
   * that is replaced every few hours; never one to advertise as a node's address.
   */
  readonly temporary?: boolean;
}

/** A permanent ARP entry, or an IPv6 NDP entry, on a device (`ip neigh`, `ip -6 neigh`). */
export interface Neigh {
  readonly ifindex: number;
  readonly ip: string;
  readonly mac: string;
  /** True when NUD_PERMANENT; dumps also report learned entries. */
  readonly permanent: boolean;
}

/** A vxlan forwarding entry (`bridge fdb ... self`): which VTEP serves a MAC. */
export interface Fdb {
  readonly ifindex: number;
  readonly mac: string;
  /** Remote VTEP (underlay) address, IPv4 or IPv6. */
  readonly dst: string;
  readonly permanent: boolean;
}

/** A unicast route in the main table, IPv4 or IPv6. */
export interface Route {
  /** Destination, `10.244.3.0/24` or `fd00:10:244:3::/64`. */
  readonly dst: string;
  readonly gw: string | null;
  /** Output device, 0 when the kernel did not report one. */
  readonly oif: number;
  readonly onlink: boolean;
  readonly proto: number;
  /**
   * The nexthop object the route goes through (`ip route ... nhid N`), 0 or
   * absent for a route with its own gateway. The kernel still reports the
   * nexthop's gateway, device and onlink flag beside it (sysctl
   * net.ipv4.nexthop_compat_mode, on by default, for both families), or leaves them out.
   */
  readonly nhid?: number;
}

/**
 * A nexthop object (`ip nexthop`, kernel >= 5.3): a gateway and device that
 * routes share by id. The kernel finds a route's `fib_info` by a hash that
 * includes the nexthop id but not a gateway, so routes by `nhid` are added in
 * constant time where routes with a gateway each are compared with each other.
 */
export interface Nexthop {
  /** Non-zero; ids are global to the network namespace, whoever made them. */
  readonly id: number;
  readonly gw: string | null;
  /** Output device, 0 for a blackhole. */
  readonly oif: number;
  readonly onlink: boolean;
  /** Who installed it, as for routes (`ip nexthop ... proto 0x57`). */
  readonly proto: number;
  /** `ip nexthop add id N blackhole`: drops what is routed through it. */
  readonly blackhole?: boolean;
}

/** One idempotent kernel change; `apply` runs a list of them in order. */
export type KernelOp =
  | { readonly op: 'neighSet'; readonly neigh: Omit<Neigh, 'permanent'> }
  | { readonly op: 'neighDel'; readonly neigh: Pick<Neigh, 'ifindex' | 'ip'> }
  | { readonly op: 'fdbReplace'; readonly fdb: Omit<Fdb, 'permanent'> }
  | { readonly op: 'fdbDel'; readonly fdb: Omit<Fdb, 'permanent'> }
  | { readonly op: 'routeReplace'; readonly route: Omit<Route, 'proto'> & { readonly proto?: number } }
  | { readonly op: 'routeDel'; readonly route: Pick<Route, 'dst'> & Partial<Omit<Route, 'dst'>> }
  | { readonly op: 'nexthopReplace'; readonly nexthop: Omit<Nexthop, 'proto'> & { readonly proto?: number } }
  | { readonly op: 'nexthopDel'; readonly nexthop: Pick<Nexthop, 'id'> };

/** Whether a notification reports an entry added or changed (`new`), or removed (`del`). */
export type ChangeOp = 'new' | 'del';

/**
 * One kernel object notification (`ip monitor link neigh route`), decoded
 * like the matching dump entry. The kernel also reports weft's own changes
 * (echoes).
 * `overrun`: notifications were lost (receive buffer overrun, or the listener
 * restarted after a gap), so anything may have changed.
 */
export type KernelChange =
  | { readonly kind: 'link'; readonly op: ChangeOp; readonly link: Link }
  | { readonly kind: 'route'; readonly op: ChangeOp; readonly route: Route }
  /** An address (IPv4 or IPv6) added to or removed from any link. */
  | { readonly kind: 'addr'; readonly op: ChangeOp; readonly addr: AddrInfo }
  /** A deleted neighbour may come without its lladdr (the kernel marks it FAILED first): `mac` is '' then. */
  | { readonly kind: 'neigh'; readonly op: ChangeOp; readonly neigh: Neigh }
  | { readonly kind: 'fdb'; readonly op: ChangeOp; readonly fdb: Fdb }
  /** A nexthop object added, replaced or removed (`ip monitor nexthop`), whoever owns it. */
  | { readonly kind: 'nexthop'; readonly op: ChangeOp; readonly nexthop: Nexthop }
  | { readonly kind: 'overrun'; readonly why?: string };

/**
 * One nf_tables report (`nft monitor`; iptables-nft keeps its rules there).
 * `newgen`: the ruleset changed: a transaction committed, which the kernel
 * closes with NFT_MSG_NEWGEN (`nft monitor` prints `# new generation`); one
 * report per burst, without detail.
 * `unwatched`: the listener could not subscribe to nf_tables, so changes
 * will not be reported.
 * `overrun`: reports were lost, or nothing watched for a moment (the listener
 * was starting or restarting), so the ruleset may have changed.
 */
export type NftChange =
  | { readonly kind: 'newgen' }
  | { readonly kind: 'unwatched'; readonly why: string }
  | { readonly kind: 'overrun'; readonly why?: string };

/** errno name of a failed op (`EEXIST`, `ENOENT`, ...), or null on success. */
export type OpResult = string | null;

export interface Kernel {
  /** `ip -d link show NAME`; null when absent. */
  linkByName(name: string): Promise<Link | null>;
  /** `ip -d link show` by index; null when absent. */
  linkGet(index: number): Promise<Link | null>;
  /** `ip -d link show`: every link of the namespace, in the kernel's dump order. */
  linkList(): Promise<Link[]>;
  /** `ip link add NAME address MAC mtu M type vxlan id VNI local IP dev DEV [no]learning dstport P [gbp]`; EEXIST if taken. */
  linkAdd(spec: VxlanLinkSpec): Promise<Link>;
  /** `ip link add NAME mtu M type bridge` (for dockerd --bridge); EEXIST if taken. */
  bridgeAdd(name: string, mtu: number): Promise<Link>;
  /** `ip link del dev NAME` */
  linkDel(index: number): Promise<void>;
  /** `ip link set dev NAME up` */
  linkSetUp(index: number): Promise<void>;
  /** `ip link set dev NAME mtu M` */
  linkSetMtu(index: number, mtu: number): Promise<void>;
  /** `ip -4 addr show` (`-6` for family 6): the addresses of every link, with scope and flags, in the kernel's dump order. */
  addrListAll(family?: Family): Promise<AddrInfo[]>;
  /** `ip addr add CIDR dev NAME` (an IPv6 one with `nodad`: weft's addresses are unique by lease); EEXIST if present. */
  addrAdd(addr: Addr): Promise<void>;
  /** `ip addr del CIDR dev NAME` */
  addrDel(addr: Addr): Promise<void>;
  /** `ip neigh replace IP dev NAME lladdr MAC nud permanent` */
  neighSet(neigh: Omit<Neigh, 'permanent'>): Promise<void>;
  /** `ip neigh del IP dev NAME` */
  neighDel(neigh: Pick<Neigh, 'ifindex' | 'ip'>): Promise<void>;
  /** `ip -4 neigh show dev NAME` (`-6` for family 6) */
  neighList(ifindex: number, family?: Family): Promise<Neigh[]>;
  /** `bridge fdb replace MAC dev NAME dst IP self permanent` */
  fdbReplace(fdb: Omit<Fdb, 'permanent'>): Promise<void>;
  /** `bridge fdb del MAC dev NAME dst IP self` */
  fdbDel(fdb: Omit<Fdb, 'permanent'>): Promise<void>;
  /** `bridge fdb show dev NAME` (self entries with a remote only) */
  fdbList(ifindex: number): Promise<Fdb[]>;
  /** `ip route replace DST via GW dev NAME [onlink] proto 0x57` */
  routeReplace(route: Omit<Route, 'proto'> & { proto?: number }): Promise<void>;
  /** `ip route del DST [via GW] [dev NAME]` */
  routeDel(route: Pick<Route, 'dst'> & Partial<Omit<Route, 'dst'>>): Promise<void>;
  /**
   * `ip route replace blackhole DST metric 4294967295 proto 0x57`: drops what
   * no other route to DST takes (flanneld's --ip-blackhole-route, below any
   * route to the prefix, so it never shadows a bridge's connected route).
   */
  blackholeReplace(dst: string): Promise<void>;
  /** `ip route del blackhole DST metric 4294967295`; ESRCH when absent. */
  blackholeDel(dst: string): Promise<void>;
  /** `ip -4 route show table main` (`-6` for family 6): every unicast route, whoever added it, in the kernel's dump order (lowest metric first per prefix). */
  routeList(family?: Family): Promise<Route[]>;
  /**
   * neighList, fdbList and routeList without the list: each entry goes to
   * `visit` as its reply is read, and nothing is kept. A full pass compares
   * every peer's entries this way instead of holding them all until the dumps
   * end, which would make them old-generation garbage at every pass.
   */
  neighEach(ifindex: number, visit: (n: Neigh) => void, family?: Family): Promise<void>;
  fdbEach(ifindex: number, visit: (f: Fdb) => void): Promise<void>;
  routeEach(visit: (r: Route) => void, family?: Family): Promise<void>;
  /** `ip nexthop replace id N via GW dev NAME [onlink] proto 0x57` (kernel >= 5.3; EOPNOTSUPP before). */
  nexthopReplace(nexthop: Omit<Nexthop, 'proto'> & { proto?: number }): Promise<void>;
  /** `ip nexthop del id N`; deleting a nexthop takes the routes through it along, without a notification. */
  nexthopDel(nexthop: Pick<Nexthop, 'id'>): Promise<void>;
  /** `ip nexthop show`: every nexthop object of the namespace (both families), whoever made it; throws EOPNOTSUPP on kernels without them. */
  nexthopList(): Promise<Nexthop[]>;
  /** nexthopList without the list, like routeEach. */
  nexthopEach(visit: (nh: Nexthop) => void): Promise<void>;
  /**
   * Runs the ops in order, as few round trips as the implementation allows,
   * and reports each op's outcome by position. Never throws for a failed op.
   */
  apply(ops: readonly KernelOp[]): Promise<OpResult[]>;
  /**
   * `sysctl -w` of one key under /proc/sys of the port's namespace, by path
   * (`net/ipv6/conf/flannel-v6.1/accept_ra`: slashes, so that a device name's
   * dots stay dots); ENOENT when the key does not exist.
   */
  sysctlSet(path: string, value: string): Promise<void>;
  /**
   * `ip monitor link neigh address route nexthop`: calls `listener` with every link,
   * neighbour, FDB, address, main-table unicast route (IPv4 and IPv6) and nexthop object change from now on, or
   * with an `overrun` where some were lost. Returns the unsubscribe.
   */
  monitor(listener: (change: KernelChange) => void): () => void;
  /** Graceful: operations in flight finish, then the port lets go of its sockets. */
  close(): Promise<void>;
}

/**
 * The nf_tables side of the port: `nft monitor`, for whoever keeps packet
 * filter rules. Apart from Kernel so that a port that only reads (weftctl's
 * dry run) need not offer it; the implementations offer both, and both
 * subscriptions share one listener, started by whichever comes first.
 */
export interface NftMonitor {
  /** Calls `listener` with every burst of nf_tables ruleset changes from now on, and when reports were lost; returns the unsubscribe. */
  nftMonitor(listener: (change: NftChange) => void): () => void;
}

/** A kernel operation the kernel refused; `errno` is its name, e.g. `EEXIST`. */
export class KernelError extends WeftError {
  readonly errno: string;
  constructor(operation: string, errno: string, options?: { cause?: unknown }) {
    super('WEFT_ERR_KERNEL', `${operation}: ${errno}`, options);
    this.name = 'KernelError';
    this.errno = errno;
  }
}

export function isKernelErrno(err: unknown, errno: string): boolean {
  return err instanceof KernelError && err.errno === errno;
}

/** Human-readable one-liner of an op, iproute2 style, for logs and errors. */
export function describeOp(op: KernelOp): string {
  switch (op.op) {
    case 'neighSet':
      return `neigh replace ${op.neigh.ip} dev #${op.neigh.ifindex} lladdr ${op.neigh.mac} nud permanent`;
    case 'neighDel':
      return `neigh del ${op.neigh.ip} dev #${op.neigh.ifindex}`;
    case 'fdbReplace':
      return `fdb replace ${op.fdb.mac} dev #${op.fdb.ifindex} dst ${op.fdb.dst} self permanent`;
    case 'fdbDel':
      return `fdb del ${op.fdb.mac} dev #${op.fdb.ifindex} dst ${op.fdb.dst} self`;
    case 'routeReplace':
      if (op.route.nhid) return `route replace ${op.route.dst} nhid ${op.route.nhid}`;
      return `route replace ${op.route.dst} via ${op.route.gw ?? '-'} dev #${op.route.oif}${op.route.onlink ? ' onlink' : ''}`;
    case 'routeDel':
      return `route del ${op.route.dst}`;
    case 'nexthopReplace':
      return `nexthop replace id ${op.nexthop.id} ${showNexthopTarget(op.nexthop, (i) => `#${i}`)}`;
    case 'nexthopDel':
      return `nexthop del id ${op.nexthop.id}`;
  }
}

/** What a nexthop leads to, iproute2 style: `via GW dev NAME [onlink]` or `blackhole`. */
export function showNexthopTarget(nh: Pick<Nexthop, 'gw' | 'oif' | 'onlink' | 'blackhole'>, dev: (ifindex: number) => string): string {
  if (nh.blackhole) return 'blackhole';
  return `${nh.gw ? `via ${nh.gw} ` : ''}dev ${dev(nh.oif)}${nh.onlink ? ' onlink' : ''}`;
}

/** The entries a `*Each` dump visits, as a list. */
export async function collect<T>(each: (visit: (entry: T) => void) => Promise<void>): Promise<T[]> {
  const entries: T[] = [];
  await each((entry) => entries.push(entry));
  return entries;
}

/** Runs one op through `apply` and throws its error, for the single-op methods. */
export async function applyOne(kernel: Pick<Kernel, 'apply'>, op: KernelOp): Promise<void> {
  const [result] = await kernel.apply([op]);
  if (result) throw new KernelError(describeOp(op), result);
}
