/**
 * An in-memory kernel for unit tests, with the semantics weft relies on:
 * `replace` creates or overwrites, deleting an absent entry fails (ENOENT for
 * neighbours and FDB, ESRCH for routes), adding a taken link or address fails
 * with EEXIST, and deleting a link takes its neighbours, FDB entries, routes,
 * nexthops and addresses with it. Nexthop objects behave as on Linux >= 5.3
 * (a route by `nhid` needs its nexthop, deleting a nexthop takes its routes
 * along unannounced, dumps report a route's nexthop gateway beside its nhid as
 * nexthop_compat_mode does); `refuseNexthops` makes it an older kernel that
 * refuses them. Tests can inject failures and count round trips.
 *
 * IPv4 and IPv6 entries live side by side, each of the family its addresses
 * say, and dumps read the family asked for; the kernel's refusals of mixed
 * families are kept (an IPv6 route through an IPv4 gateway or nexthop,
 * EINVAL; an FDB remote of the other family than the vxlan device's local,
 * EAFNOSUPPORT).
 *
 * Like the kernel, it notifies `monitor` subscribers of every link,
 * neighbour, FDB and route change, weft's own included (deleting a link
 * reports its neighbours and FDB entries gone, not its IPv4 routes, as Linux
 * does; IPv6 reports its routes gone too, and the IPv6 routes through a
 * deleted nexthop), and tests can report an overrun. It holds no nf_tables ruleset:
 * tests report ruleset changes to `nftMonitor` subscribers themselves
 * (`nftReport`). Listeners are called synchronously, inside the change.
 */
import { Subnet } from '../common/subnet.js';
import {
  KernelError,
  RTPROT_WEFT,
  applyOne,
  type Addr,
  type AddrInfo,
  type Family,
  type Fdb,
  type Kernel,
  type KernelChange,
  type KernelOp,
  type NftChange,
  type NftMonitor,
  type Link,
  type Neigh,
  type Nexthop,
  type OpResult,
  type Route,
  type VxlanLinkSpec,
} from './kernel.js';

export class FakeKernel implements Kernel, NftMonitor {
  private readonly links = new Map<number, Link>();
  private readonly addrs = new Map<string, AddrInfo>();
  private readonly neighs = new Map<string, Neigh>();
  private readonly fdbs = new Map<string, Fdb>();
  private readonly routes = new Map<string, Route>();
  /** Destinations of the blackhole routes (`ip route show type blackhole`). */
  readonly blackholes = new Set<string>();
  private readonly nexthops = new Map<number, Nexthop>();
  /** An older kernel (< 5.3): every nexthop request and dump fails with EOPNOTSUPP. */
  refuseNexthops = false;
  private nextIndex = 1;
  private readonly faults: Array<{ match: (op: KernelOp) => boolean; errno: string; times: number }> = [];
  private readonly listeners = new Set<(change: KernelChange) => void>();
  private readonly nftListeners = new Set<(change: NftChange) => void>();
  /** Number of `apply` calls (round trips) and of ops they carried. */
  applyCalls = 0;
  opsApplied = 0;

  /** Adds a non-vxlan link (an underlay), `ip link add NAME type veth`. */
  addLink(link: { name: string; mtu?: number; kind?: string; mac?: string }): Link {
    const l: Link = { index: this.nextIndex++, name: link.name, mac: link.mac ?? '02:00:00:00:00:01', mtu: link.mtu ?? 1500, up: true, kind: link.kind ?? 'veth' };
    this.links.set(l.index, l);
    this.notify({ kind: 'link', op: 'new', link: l });
    return l;
  }

  /** Makes the next `times` ops matching `match` fail with `errno`. */
  failOps(match: (op: KernelOp) => boolean, errno: string, times = 1): void {
    this.faults.push({ match, errno, times });
  }

  /** Changes a link behind weft's back (`ip link set dev X down`, `mtu M`). */
  alterLink(index: number, change: { up?: boolean; mtu?: number }): void {
    this.updateLink(index, change);
  }

  /** Tells every `monitor` subscriber that notifications were lost, as ENOBUFS does. */
  overrun(): void {
    this.notify({ kind: 'overrun' });
  }

  /** Reports an nf_tables change to every `nftMonitor` subscriber: by default a committed ruleset change, as `iptables -A ...` makes. */
  nftReport(change: NftChange = { kind: 'newgen' }): void {
    for (const listener of [...this.nftListeners]) listener(change);
  }

  /** Whether anyone subscribed, of either kind: the real port's listener child would run. */
  get listening(): boolean {
    return this.listeners.size > 0 || this.nftListeners.size > 0;
  }

  /** Snapshot of the tables, for assertions. */
  state(): { neighs: Neigh[]; fdbs: Fdb[]; routes: Route[]; nexthops: Nexthop[]; addrs: Addr[]; links: Link[] } {
    return {
      neighs: [...this.neighs.values()],
      fdbs: [...this.fdbs.values()],
      routes: [...this.routes.values()].map((r) => this.reported(r)),
      nexthops: [...this.nexthops.values()],
      addrs: [...this.addrs.values()],
      links: [...this.links.values()],
    };
  }

  async linkByName(name: string): Promise<Link | null> {
    return [...this.links.values()].find((l) => l.name === name) ?? null;
  }

  async linkGet(index: number): Promise<Link | null> {
    return this.links.get(index) ?? null;
  }

  async linkList(): Promise<Link[]> {
    return [...this.links.values()].sort((a, b) => a.index - b.index);
  }

  async linkAdd(spec: VxlanLinkSpec): Promise<Link> {
    if (await this.linkByName(spec.name)) throw new KernelError(`link add ${spec.name}`, 'EEXIST');
    if (!this.links.has(spec.underlayIndex)) throw new KernelError(`link add ${spec.name}`, 'ENODEV');
    const link: Link = {
      index: this.nextIndex++,
      name: spec.name,
      mac: spec.mac,
      mtu: spec.mtu,
      up: false,
      kind: 'vxlan',
      vxlan: { vni: spec.vni, port: spec.port, local: spec.local, underlayIndex: spec.underlayIndex, learning: spec.learning, gbp: spec.gbp },
    };
    this.links.set(link.index, link);
    this.notify({ kind: 'link', op: 'new', link });
    return link;
  }

  async bridgeAdd(name: string, mtu: number): Promise<Link> {
    if (await this.linkByName(name)) throw new KernelError(`link add ${name}`, 'EEXIST');
    const link: Link = { index: this.nextIndex++, name, mac: '02:00:00:00:00:01', mtu, up: false, kind: 'bridge' };
    this.links.set(link.index, link);
    this.notify({ kind: 'link', op: 'new', link });
    return link;
  }

  async linkDel(index: number): Promise<void> {
    const link = this.links.get(index);
    if (!link) throw new KernelError(`link del #${index}`, 'ENODEV');
    this.links.delete(index);
    for (const [k, f] of this.fdbs) if (f.ifindex === index) this.deleteFdb(k);
    for (const [k, n] of this.neighs) if (n.ifindex === index) this.deleteNeigh(k);
    // IPv4 drops the routes and nexthops of a deleted link without a notification; IPv6 reports its routes gone.
    for (const [id, nh] of this.nexthops) if (nh.oif === index) this.flushNexthop(id);
    for (const [k, r] of this.routes) {
      if (r.oif !== index) continue;
      if (familyOf(r.dst) === 6) this.deleteRoute(k);
      else this.routes.delete(k);
    }
    // Addresses go with a notification each.
    for (const [k, a] of this.addrs) {
      if (a.ifindex !== index) continue;
      this.addrs.delete(k);
      this.notify({ kind: 'addr', op: 'del', addr: a });
    }
    this.notify({ kind: 'link', op: 'del', link });
  }

  async linkSetUp(index: number): Promise<void> {
    this.updateLink(index, { up: true });
  }

  async linkSetMtu(index: number, mtu: number): Promise<void> {
    this.updateLink(index, { mtu });
  }

  /** What `sysctlSet` wrote, by path. */
  readonly sysctls = new Map<string, string>();

  async sysctlSet(path: string, value: string): Promise<void> {
    this.sysctls.set(path, value);
  }

  async addrListAll(family: Family = 4): Promise<AddrInfo[]> {
    return [...this.addrs.values()].filter((a) => familyOf(a.cidr) === family).sort((a, b) => a.ifindex - b.ifindex);
  }

  /**
   * As `ip addr add CIDR dev NAME` does: global scope, no lifetime, secondary
   * when the link already has an address in the same prefix; an IPv6 one
   * (`nodad`) is never secondary, and not temporary.
   */
  async addrAdd(addr: Addr): Promise<void> {
    if (!this.links.has(addr.ifindex)) throw new KernelError(`addr add ${addr.cidr}`, 'ENODEV');
    const key = addrKey(addr);
    if (this.addrs.has(key)) throw new KernelError(`addr add ${addr.cidr}`, 'EEXIST');
    const prefix = Subnet.parse(addr.cidr).toString();
    const info: AddrInfo =
      familyOf(addr.cidr) === 6
        ? { ifindex: addr.ifindex, cidr: addr.cidr, scope: 'global', permanent: true, deprecated: false, secondary: false, temporary: false }
        : {
            ifindex: addr.ifindex,
            cidr: addr.cidr,
            scope: 'global',
            permanent: true,
            deprecated: false,
            secondary: [...this.addrs.values()].some((a) => a.ifindex === addr.ifindex && Subnet.parse(a.cidr).toString() === prefix),
          };
    this.addrs.set(key, info);
    this.notify({ kind: 'addr', op: 'new', addr: info });
  }

  async addrDel(addr: Addr): Promise<void> {
    const info = this.addrs.get(addrKey(addr));
    if (!info) throw new KernelError(`addr del ${addr.cidr}`, 'EADDRNOTAVAIL');
    this.addrs.delete(addrKey(addr));
    this.notify({ kind: 'addr', op: 'del', addr: info });
  }

  neighSet(neigh: Omit<Neigh, 'permanent'>): Promise<void> {
    return applyOne(this, { op: 'neighSet', neigh });
  }
  neighDel(neigh: Pick<Neigh, 'ifindex' | 'ip'>): Promise<void> {
    return applyOne(this, { op: 'neighDel', neigh });
  }
  async neighList(ifindex: number, family: Family = 4): Promise<Neigh[]> {
    return [...this.neighs.values()].filter((n) => n.ifindex === ifindex && familyOf(n.ip) === family);
  }
  async neighEach(ifindex: number, visit: (n: Neigh) => void, family: Family = 4): Promise<void> {
    for (const n of await this.neighList(ifindex, family)) visit(n);
  }
  fdbReplace(fdb: Omit<Fdb, 'permanent'>): Promise<void> {
    return applyOne(this, { op: 'fdbReplace', fdb });
  }
  fdbDel(fdb: Omit<Fdb, 'permanent'>): Promise<void> {
    return applyOne(this, { op: 'fdbDel', fdb });
  }
  async fdbList(ifindex: number): Promise<Fdb[]> {
    return [...this.fdbs.values()].filter((f) => f.ifindex === ifindex);
  }
  async fdbEach(ifindex: number, visit: (f: Fdb) => void): Promise<void> {
    for (const f of await this.fdbList(ifindex)) visit(f);
  }
  routeReplace(route: Omit<Route, 'proto'> & { proto?: number }): Promise<void> {
    return applyOne(this, { op: 'routeReplace', route });
  }
  routeDel(route: Pick<Route, 'dst'> & Partial<Omit<Route, 'dst'>>): Promise<void> {
    return applyOne(this, { op: 'routeDel', route });
  }
  async blackholeReplace(dst: string): Promise<void> {
    this.blackholes.add(dst);
  }
  async blackholeDel(dst: string): Promise<void> {
    if (!this.blackholes.delete(dst)) throw new KernelError(`route del blackhole ${dst}`, 'ESRCH');
  }
  async routeList(family: Family = 4): Promise<Route[]> {
    return [...this.routes.values()].filter((r) => familyOf(r.dst) === family).map((r) => this.reported(r));
  }
  async routeEach(visit: (r: Route) => void, family: Family = 4): Promise<void> {
    for (const r of await this.routeList(family)) visit(r);
  }

  nexthopReplace(nexthop: Omit<Nexthop, 'proto'> & { proto?: number }): Promise<void> {
    return applyOne(this, { op: 'nexthopReplace', nexthop });
  }
  nexthopDel(nexthop: Pick<Nexthop, 'id'>): Promise<void> {
    return applyOne(this, { op: 'nexthopDel', nexthop });
  }
  async nexthopList(): Promise<Nexthop[]> {
    if (this.refuseNexthops) throw new KernelError('netlink dump refused', 'EOPNOTSUPP');
    return [...this.nexthops.values()].sort((a, b) => a.id - b.id);
  }
  async nexthopEach(visit: (nh: Nexthop) => void): Promise<void> {
    for (const nh of await this.nexthopList()) visit(nh);
  }

  /** Adds an entry behind weft's back, as an administrator, DHCP client (or flanneld) would. */
  inject(entry: { neigh: Neigh } | { fdb: Fdb } | { route: Route } | { addr: AddrInfo } | { nexthop: Nexthop }): void {
    if ('nexthop' in entry) this.setNexthop(entry.nexthop);
    else if ('neigh' in entry) this.setNeigh(entry.neigh);
    else if ('fdb' in entry) this.setFdb(entry.fdb);
    else if ('addr' in entry) {
      this.addrs.set(addrKey(entry.addr), entry.addr);
      this.notify({ kind: 'addr', op: 'new', addr: entry.addr });
    }
    else this.setRoute(entry.route);
  }

  /** Removes an entry behind weft's back. */
  remove(entry: { neigh: string; ifindex: number } | { fdb: string; ifindex: number } | { route: string } | { nexthop: number }): void {
    if ('nexthop' in entry) this.deleteNexthop(entry.nexthop);
    else if ('neigh' in entry) this.deleteNeigh(`${entry.ifindex}|${entry.neigh}`);
    else if ('fdb' in entry) this.deleteFdb(`${entry.ifindex}|${entry.fdb}`);
    else this.deleteRoute(entry.route);
  }

  monitor(listener: (change: KernelChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  nftMonitor(listener: (change: NftChange) => void): () => void {
    this.nftListeners.add(listener);
    return () => this.nftListeners.delete(listener);
  }

  async apply(ops: readonly KernelOp[]): Promise<OpResult[]> {
    this.applyCalls++;
    this.opsApplied += ops.length;
    return ops.map((op) => this.fault(op) ?? this.applyOp(op));
  }

  async close(): Promise<void> {}

  private fault(op: KernelOp): string | null {
    const f = this.faults.find((x) => x.times > 0 && x.match(op));
    if (!f) return null;
    f.times--;
    return f.errno;
  }

  private applyOp(op: KernelOp): OpResult {
    switch (op.op) {
      case 'neighSet': {
        if (!this.links.has(op.neigh.ifindex)) return 'ENODEV';
        this.setNeigh({ ...op.neigh, permanent: true });
        return null;
      }
      case 'neighDel':
        return this.deleteNeigh(`${op.neigh.ifindex}|${op.neigh.ip}`) ? null : 'ENOENT';
      case 'fdbReplace': {
        const link = this.links.get(op.fdb.ifindex);
        if (!link) return 'ENODEV';
        if (link.vxlan?.local && familyOf(link.vxlan.local) !== familyOf(op.fdb.dst)) return 'EAFNOSUPPORT';
        this.setFdb({ ...op.fdb, permanent: true });
        return null;
      }
      case 'fdbDel':
        return this.deleteFdb(`${op.fdb.ifindex}|${op.fdb.mac}`) ? null : 'ENOENT';
      case 'routeReplace': {
        const r = op.route;
        const v6 = familyOf(r.dst) === 6;
        if (r.nhid) {
          if (this.refuseNexthops) return 'EINVAL';
          const nh = this.nexthops.get(r.nhid);
          if (!nh) return 'EINVAL';
          // "IPv6 routes can not use an IPv4 nexthop" (one without a gateway is IPv4's); IPv4 routes may use IPv6 ones.
          if (v6 && (nh.blackhole || !nh.gw || familyOf(nh.gw) !== 6)) return 'EINVAL';
          this.setRoute({ dst: Subnet.parse(r.dst).toString(), gw: null, oif: 0, onlink: false, proto: r.proto ?? RTPROT_WEFT, nhid: r.nhid });
          return null;
        }
        if (!this.links.has(r.oif)) return 'ENODEV';
        if (v6 && r.gw && familyOf(r.gw) !== 6) return 'EINVAL';
        if (r.gw && !r.onlink && !this.gatewayReachable(r.oif, r.gw)) return 'ENETUNREACH';
        this.setRoute({ dst: Subnet.parse(r.dst).toString(), gw: r.gw, oif: r.oif, onlink: r.onlink, proto: r.proto ?? RTPROT_WEFT });
        return null;
      }
      case 'routeDel': {
        const key = Subnet.parse(op.route.dst).toString();
        const have = this.routes.get(key);
        if (!have) return 'ESRCH';
        if (op.route.gw && op.route.gw !== have.gw) return 'ESRCH';
        if (op.route.oif && op.route.oif !== have.oif) return 'ESRCH';
        if (op.route.nhid && op.route.nhid !== have.nhid) return 'ESRCH';
        this.deleteRoute(key);
        return null;
      }
      case 'nexthopReplace': {
        if (this.refuseNexthops) return 'EOPNOTSUPP';
        const nh = op.nexthop;
        if (!nh.id) return 'EINVAL';
        if (nh.blackhole) {
          this.setNexthop({ id: nh.id, gw: null, oif: 0, onlink: false, proto: nh.proto ?? RTPROT_WEFT, blackhole: true });
          return null;
        }
        const link = this.links.get(nh.oif);
        if (!link) return 'ENODEV';
        if (!link.up) return 'ENETDOWN';
        if (nh.gw && !nh.onlink && !this.gatewayReachable(nh.oif, nh.gw)) return 'ENETUNREACH';
        this.setNexthop({ id: nh.id, gw: nh.gw, oif: nh.oif, onlink: nh.onlink, proto: nh.proto ?? RTPROT_WEFT });
        return null;
      }
      case 'nexthopDel':
        if (this.refuseNexthops) return 'EOPNOTSUPP';
        return this.deleteNexthop(op.nexthop.id) ? null : 'ENOENT';
    }
  }

  /** A route as a dump reports it: one by nhid carries its nexthop's gateway and device too (nexthop_compat_mode). */
  private reported(r: Route): Route {
    if (!r.nhid) return r;
    const nh = this.nexthops.get(r.nhid);
    return nh ? { ...r, gw: nh.gw, oif: nh.oif, onlink: nh.onlink } : r;
  }

  private setNexthop(nexthop: Nexthop): void {
    this.nexthops.set(nexthop.id, nexthop);
    this.notify({ kind: 'nexthop', op: 'new', nexthop });
  }

  /** `ip nexthop del`: announced; the routes through it go after it, IPv4's unannounced (see flushNexthop). */
  private deleteNexthop(id: number): boolean {
    const nexthop = this.nexthops.get(id);
    if (!nexthop) return false;
    this.flushNexthop(id, nexthop);
    return true;
  }

  /**
   * Drops a nexthop (announced when `announce` is given, as `ip nexthop del`
   * is; a link's deletion drops them silently) and then the routes through
   * it: IPv4 ones without a notification, IPv6 ones with one each
   * (nexthop_compat_mode).
   */
  private flushNexthop(id: number, announce?: Nexthop): void {
    const gone: Array<[string, Route]> = [];
    for (const [k, r] of this.routes) if (r.nhid === id) gone.push([k, this.reported(r)]);
    this.nexthops.delete(id);
    if (announce) this.notify({ kind: 'nexthop', op: 'del', nexthop: announce });
    for (const [k, r] of gone) {
      this.routes.delete(k);
      if (familyOf(r.dst) === 6) this.notify({ kind: 'route', op: 'del', route: r });
    }
  }

  private setNeigh(neigh: Neigh): void {
    this.neighs.set(`${neigh.ifindex}|${neigh.ip}`, neigh);
    this.notify({ kind: 'neigh', op: 'new', neigh });
  }

  /** As Linux reports it: the entry goes FAILED first, so the deletion carries no lladdr. */
  private deleteNeigh(key: string): boolean {
    return this.drop(this.neighs, key, (neigh) => ({ kind: 'neigh', op: 'del', neigh: { ...neigh, mac: '', permanent: false } }));
  }

  private setFdb(fdb: Fdb): void {
    this.fdbs.set(`${fdb.ifindex}|${fdb.mac}`, fdb);
    this.notify({ kind: 'fdb', op: 'new', fdb });
  }

  private deleteFdb(key: string): boolean {
    return this.drop(this.fdbs, key, (fdb) => ({ kind: 'fdb', op: 'del', fdb }));
  }

  private setRoute(route: Route): void {
    this.routes.set(route.dst, route);
    this.notify({ kind: 'route', op: 'new', route: this.reported(route) });
  }

  private deleteRoute(key: string): boolean {
    return this.drop(this.routes, key, (route) => ({ kind: 'route', op: 'del', route: this.reported(route) }));
  }

  /** Deletes one entry of a table and reports it as `report` says; false when there was none. */
  private drop<T>(table: Map<string, T>, key: string, report: (entry: T) => KernelChange): boolean {
    const entry = table.get(key);
    if (entry === undefined) return false;
    table.delete(key);
    this.notify(report(entry));
    return true;
  }

  private notify(change: KernelChange): void {
    for (const listener of [...this.listeners]) listener(change);
  }

  private gatewayReachable(ifindex: number, gw: string): boolean {
    return [...this.addrs.values()].some((a) => a.ifindex === ifindex && Subnet.parse(a.cidr).contains(gw));
  }

  private updateLink(index: number, change: Partial<Link>): void {
    const link = this.links.get(index);
    if (!link) throw new KernelError(`link set #${index}`, 'ENODEV');
    const updated = { ...link, ...change };
    this.links.set(index, updated);
    this.notify({ kind: 'link', op: 'new', link: updated });
  }
}

/** The family of an address or CIDR, as the port reads it: IPv6 ones have colons. */
function familyOf(ip: string): Family {
  return ip.includes(':') ? 6 : 4;
}

/** The kernel keys addresses of either family by link and local address; the prefix length is not part of the key. */
function addrKey(addr: Addr): string {
  return `${addr.ifindex}|${addr.cidr.split('/')[0]}`;
}
