/**
 * A kernel port for looking, not touching: reads go to the real kernel,
 * writes are recorded as the iproute2 commands weftd would run. weftctl
 * drives the backend's own programmer through it, so `diff` shows exactly
 * what the next reconcile pass would do and changes nothing.
 */
import { WeftError } from '../common/errors.js';
import { describeOp, type Addr, type AddrInfo, type Family, type Fdb, type Kernel, type KernelOp, type Link, type Neigh, type Nexthop, type OpResult, type Route, type VxlanLinkSpec } from '../kernel/kernel.js';

export class DryRunKernel implements Kernel {
  /** Writes weftd would make, iproute2 style, in order. */
  readonly wouldRun: string[] = [];
  private readonly names = new Map<number, string>();

  constructor(private readonly real: Kernel) {}

  async linkByName(name: string): Promise<Link | null> {
    return this.seen(await this.real.linkByName(name));
  }

  async linkGet(index: number): Promise<Link | null> {
    return this.seen(await this.real.linkGet(index));
  }

  async linkList(): Promise<Link[]> {
    const links = await this.real.linkList();
    for (const link of links) this.seen(link);
    return links;
  }

  async linkAdd(spec: VxlanLinkSpec): Promise<Link> {
    throw new WeftError('WEFT_ERR_KERNEL', `device ${spec.name} is missing or incompatible with the network config; weftd would (re)create it and program every peer`);
  }

  async bridgeAdd(name: string): Promise<Link> {
    throw new WeftError('WEFT_ERR_KERNEL', `bridge ${name} is missing; weftd would create it`);
  }

  async linkDel(index: number): Promise<void> {
    this.record(`ip link del dev ${this.dev(index)}`);
  }

  async linkSetUp(index: number): Promise<void> {
    this.record(`ip link set dev ${this.dev(index)} up`);
  }

  async linkSetMtu(index: number, mtu: number): Promise<void> {
    this.record(`ip link set dev ${this.dev(index)} mtu ${mtu}`);
  }

  async blackholeReplace(dst: string): Promise<void> {
    this.record(`ip route replace blackhole ${dst} metric 4294967295`);
  }

  async blackholeDel(dst: string): Promise<void> {
    this.record(`ip route del blackhole ${dst} metric 4294967295`);
  }

  async sysctlSet(path: string, value: string): Promise<void> {
    this.record(`sysctl -w ${path.replace(/\//g, '.')}=${value}`);
  }

  addrListAll(family?: Family): Promise<AddrInfo[]> {
    return this.real.addrListAll(family);
  }

  async addrAdd(addr: Addr): Promise<void> {
    this.record(`ip addr add ${addr.cidr} dev ${this.dev(addr.ifindex)}`);
  }

  async addrDel(addr: Addr): Promise<void> {
    this.record(`ip addr del ${addr.cidr} dev ${this.dev(addr.ifindex)}`);
  }

  async neighSet(neigh: Omit<Neigh, 'permanent'>): Promise<void> {
    await this.apply([{ op: 'neighSet', neigh }]);
  }

  async neighDel(neigh: Pick<Neigh, 'ifindex' | 'ip'>): Promise<void> {
    await this.apply([{ op: 'neighDel', neigh }]);
  }

  neighList(ifindex: number, family?: Family): Promise<Neigh[]> {
    return this.real.neighList(ifindex, family);
  }

  neighEach(ifindex: number, visit: (n: Neigh) => void, family?: Family): Promise<void> {
    return this.real.neighEach(ifindex, visit, family);
  }

  async fdbReplace(fdb: Omit<Fdb, 'permanent'>): Promise<void> {
    await this.apply([{ op: 'fdbReplace', fdb }]);
  }

  async fdbDel(fdb: Omit<Fdb, 'permanent'>): Promise<void> {
    await this.apply([{ op: 'fdbDel', fdb }]);
  }

  fdbList(ifindex: number): Promise<Fdb[]> {
    return this.real.fdbList(ifindex);
  }

  fdbEach(ifindex: number, visit: (f: Fdb) => void): Promise<void> {
    return this.real.fdbEach(ifindex, visit);
  }

  async routeReplace(route: Omit<Route, 'proto'> & { proto?: number }): Promise<void> {
    await this.apply([{ op: 'routeReplace', route }]);
  }

  async routeDel(route: Pick<Route, 'dst'> & Partial<Omit<Route, 'dst'>>): Promise<void> {
    await this.apply([{ op: 'routeDel', route }]);
  }

  routeList(family?: Family): Promise<Route[]> {
    return this.real.routeList(family);
  }

  routeEach(visit: (r: Route) => void, family?: Family): Promise<void> {
    return this.real.routeEach(visit, family);
  }

  async nexthopReplace(nexthop: Omit<Nexthop, 'proto'> & { proto?: number }): Promise<void> {
    await this.apply([{ op: 'nexthopReplace', nexthop }]);
  }

  async nexthopDel(nexthop: Pick<Nexthop, 'id'>): Promise<void> {
    await this.apply([{ op: 'nexthopDel', nexthop }]);
  }

  nexthopList(): Promise<Nexthop[]> {
    return this.real.nexthopList();
  }

  nexthopEach(visit: (nh: Nexthop) => void): Promise<void> {
    return this.real.nexthopEach(visit);
  }

  async apply(ops: readonly KernelOp[]): Promise<OpResult[]> {
    for (const op of ops) this.record(describeOp(op));
    return ops.map(() => null);
  }

  /** Looking needs no notifications: nothing is ever repaired through this port. */
  monitor(): () => void {
    return () => undefined;
  }

  close(): Promise<void> {
    return this.real.close();
  }

  private seen(link: Link | null): Link | null {
    if (link) this.names.set(link.index, link.name);
    return link;
  }

  private dev(index: number): string {
    return this.names.get(index) ?? `#${index}`;
  }

  private record(command: string): void {
    this.wouldRun.push(command);
  }
}
