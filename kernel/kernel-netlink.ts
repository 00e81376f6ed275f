/**
 * The production kernel port: rtnetlink in-process through the `netlink`
 * package's native socket, with weft's own framing (see netlink/channel.ts).
 *
 * Why this path: the package's high-level one-request-one-promise API pays a
 * round trip per request and is slower than `ip -batch` + `bridge -batch`.
 * Packing a chunk of requests into one datagram with a single fencing ACK
 * removes the per-request round trip and beats the iproute2 batch (figures
 * in docs/benchmarks.md), while keeping errors per operation and needing no
 * child process.
 *
 * The process must already live in the network namespace it programs (no
 * setns here): weftd runs in the host's namespace, tests run it under
 * `ip netns exec`.
 *
 * Notifications (`monitor`, `nftMonitor`) come from the kernel listener
 * (netlink/monitor.ts), a child process started by the first subscription of
 * either kind. While it is starting or restarting, reads wait for it
 * (briefly) if anyone subscribed to `monitor`: subscribe first, then dump, so
 * a change between a dump and the subscription is never missed.
 */
import { WeftError } from '../common/errors.js';
import { writeFile } from 'node:fs/promises';
import { addrAddMessage, addrDelMessage, addrDumpMessage, parseAddrInfo } from './netlink/addr.js';
import { neighDumpMessage, parseNeigh, toFdb, toNeigh, writeFdbDel, writeFdbReplace, writeNeighDel, writeNeighSet } from './netlink/neigh.js';
import { blackholeMessage, parseRoute, routeDumpMessage, writeRouteDel, writeRouteReplace } from './netlink/route.js';
import { nexthopDumpMessage, parseNexthop, writeNexthopDel, writeNexthopReplace } from './netlink/nexthop.js';
import { AF_BRIDGE, AF_INET, AF_INET6, errnoName, Writer, type OutMessage } from './netlink/wire.js';
import { NetlinkChannel, type DumpDecoder } from './netlink/channel.js';
import { NetlinkMonitor, spawnListenerChild } from './netlink/monitor.js';
import { bridgeAddMessage, linkDelMessage, linkDumpMessage, linkGetMessage, linkSetMessage, parseLink, vxlanAddMessage } from './netlink/link.js';
import {
  KernelError,
  applyOne,
  collect,
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

const ENODEV = 19;

export class NetlinkKernel implements Kernel, NftMonitor {
  /** ACKed requests; bulk programming goes here. */
  private readonly requests = new NetlinkChannel();
  /** Dumps only, so dump replies never crowd out ACKs in one receive buffer. */
  private readonly dumps = new NetlinkChannel();
  /** Notifications of both kinds; its child runs while anyone subscribes. Drops the echoes of `requests`. */
  private readonly listener = new NetlinkMonitor(() => spawnListenerChild([this.requests.port]));
  /** Calls of the port not yet settled: close() lets them finish. */
  private readonly inFlight = new Set<Promise<unknown>>();
  private closing: Promise<void> | null = null;

  linkByName(name: string): Promise<Link | null> {
    return this.call(() => this.getLink({ name }));
  }

  linkGet(index: number): Promise<Link | null> {
    return this.call(() => this.getLink({ index }));
  }

  linkList(): Promise<Link[]> {
    return this.call(() => this.dump(linkDumpMessage(), (buf, start, end) => parseLink(buf.subarray(start, end))));
  }

  linkAdd(spec: VxlanLinkSpec): Promise<Link> {
    return this.call(async () => {
      await this.single('link add', vxlanAddMessage(spec));
      const link = await this.getLink({ name: spec.name });
      if (!link) throw new KernelError(`link add ${spec.name}`, 'ENODEV');
      return link;
    });
  }

  bridgeAdd(name: string, mtu: number): Promise<Link> {
    return this.call(async () => {
      await this.single('link add', bridgeAddMessage(name, mtu));
      const link = await this.getLink({ name });
      if (!link) throw new KernelError(`link add ${name}`, 'ENODEV');
      return link;
    });
  }

  linkDel(index: number): Promise<void> {
    return this.call(() => this.single(`link del #${index}`, linkDelMessage(index)));
  }

  linkSetUp(index: number): Promise<void> {
    return this.call(() => this.single(`link set #${index} up`, linkSetMessage(index, { up: true })));
  }

  linkSetMtu(index: number, mtu: number): Promise<void> {
    return this.call(() => this.single(`link set #${index} mtu ${mtu}`, linkSetMessage(index, { mtu })));
  }

  async sysctlSet(path: string, value: string): Promise<void> {
    if (!/^[A-Za-z0-9_.\-]+(\/[A-Za-z0-9_.\-]+)*$/.test(path) || path.split('/').some((part) => part === '..' || part === '.')) {
      throw new KernelError(`sysctl ${path}`, 'EINVAL');
    }
    try {
      await writeFile(`/proc/sys/${path}`, value);
    } catch (err) {
      throw new KernelError(`sysctl ${path}=${value}`, (err as NodeJS.ErrnoException).code ?? 'EIO', { cause: err });
    }
  }

  addrListAll(family: Family = 4): Promise<AddrInfo[]> {
    return this.call(() => this.dump(addrDumpMessage(family), (buf, start, end) => parseAddrInfo(buf.subarray(start, end))));
  }

  addrAdd(addr: Addr): Promise<void> {
    return this.call(() => this.single(`addr add ${addr.cidr} dev #${addr.ifindex}`, addrAddMessage(addr)));
  }

  addrDel(addr: Addr): Promise<void> {
    return this.call(() => this.single(`addr del ${addr.cidr} dev #${addr.ifindex}`, addrDelMessage(addr)));
  }

  neighSet(neigh: Omit<Neigh, 'permanent'>): Promise<void> {
    return applyOne(this, { op: 'neighSet', neigh });
  }

  neighDel(neigh: Pick<Neigh, 'ifindex' | 'ip'>): Promise<void> {
    return applyOne(this, { op: 'neighDel', neigh });
  }

  neighList(ifindex: number, family: Family = 4): Promise<Neigh[]> {
    return collect<Neigh>((visit) => this.neighEach(ifindex, visit, family));
  }

  neighEach(ifindex: number, visit: (n: Neigh) => void, family: Family = 4): Promise<void> {
    return this.call(async () => {
      await this.dump(neighDumpMessage(family === 6 ? AF_INET6 : AF_INET), (buf, start, end) => {
        const n = toNeigh(parseNeigh(buf, start, end));
        if (n && n.ifindex === ifindex) visit(n);
        return null;
      });
    });
  }

  fdbReplace(fdb: Omit<Fdb, 'permanent'>): Promise<void> {
    return applyOne(this, { op: 'fdbReplace', fdb });
  }

  fdbDel(fdb: Omit<Fdb, 'permanent'>): Promise<void> {
    return applyOne(this, { op: 'fdbDel', fdb });
  }

  fdbList(ifindex: number): Promise<Fdb[]> {
    return collect<Fdb>((visit) => this.fdbEach(ifindex, visit));
  }

  fdbEach(ifindex: number, visit: (f: Fdb) => void): Promise<void> {
    // The kernel ignores the ifindex filter of an AF_BRIDGE dump here; filter in JS.
    return this.call(async () => {
      await this.dump(neighDumpMessage(AF_BRIDGE), (buf, start, end) => {
        const f = toFdb(parseNeigh(buf, start, end));
        if (f && f.ifindex === ifindex) visit(f);
        return null;
      });
    });
  }

  routeReplace(route: Omit<Route, 'proto'> & { proto?: number }): Promise<void> {
    return applyOne(this, { op: 'routeReplace', route });
  }

  routeDel(route: Pick<Route, 'dst'> & Partial<Omit<Route, 'dst'>>): Promise<void> {
    return applyOne(this, { op: 'routeDel', route });
  }

  blackholeReplace(dst: string): Promise<void> {
    return this.call(() => this.single(`route replace blackhole ${dst}`, blackholeMessage('replace', dst)));
  }

  blackholeDel(dst: string): Promise<void> {
    return this.call(() => this.single(`route del blackhole ${dst}`, blackholeMessage('del', dst)));
  }

  routeList(family: Family = 4): Promise<Route[]> {
    return collect<Route>((visit) => this.routeEach(visit, family));
  }

  routeEach(visit: (r: Route) => void, family: Family = 4): Promise<void> {
    return this.call(async () => {
      await this.dump(routeDumpMessage(family), (buf, start, end) => {
        const r = parseRoute(buf, start, end);
        if (r) visit(r);
        return null;
      });
    });
  }

  nexthopReplace(nexthop: Omit<Nexthop, 'proto'> & { proto?: number }): Promise<void> {
    return applyOne(this, { op: 'nexthopReplace', nexthop });
  }

  nexthopDel(nexthop: Pick<Nexthop, 'id'>): Promise<void> {
    return applyOne(this, { op: 'nexthopDel', nexthop });
  }

  nexthopList(): Promise<Nexthop[]> {
    return collect<Nexthop>((visit) => this.nexthopEach(visit));
  }

  nexthopEach(visit: (nh: Nexthop) => void): Promise<void> {
    return this.call(async () => {
      await this.dump(nexthopDumpMessage(), (buf, start, end) => {
        const nh = parseNexthop(buf, start, end);
        if (nh) visit(nh);
        return null;
      });
    });
  }

  apply(ops: readonly KernelOp[]): Promise<OpResult[]> {
    return this.call(async () => {
      if (ops.length === 0) return [];
      const errnos = await this.requests.transact(ops, writeOp);
      return errnos.map((e) => (e === 0 ? null : errnoName(e)));
    });
  }

  monitor(listener: (change: KernelChange) => void): () => void {
    return this.listener.monitor(listener);
  }

  nftMonitor(listener: (change: NftChange) => void): () => void {
    return this.listener.nftMonitor(listener);
  }

  /** Graceful: subscriptions end, calls in flight finish (later ones are refused), then the sockets close. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.listener.close();
      while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
      await Promise.all([this.requests.close(), this.dumps.close()]);
    })();
    return this.closing;
  }

  /** Immediate: calls in flight are rejected (WEFT_ERR_INVALID_STATE), the listener child killed. */
  destroy(): void {
    this.closing ??= Promise.resolve();
    this.listener.destroy();
    this.requests.destroy();
    this.dumps.destroy();
  }

  /** One call of the port: refused once closing began, awaited by close() while in flight. */
  private call<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing) return Promise.reject(new WeftError('WEFT_ERR_INVALID_STATE', 'kernel port closed'));
    const running = fn();
    this.inFlight.add(running);
    const settled = (): void => void this.inFlight.delete(running);
    running.then(settled, settled);
    return running;
  }

  /** Before a read: the listener, if anyone subscribed to `monitor`, is listening (or gave up waiting and will report the gap). */
  private caughtUp(): Promise<void> {
    return this.listener.caughtUp();
  }

  /** Every dump reads the kernel after the monitor listens (subscribe first, then dump). */
  private async dump<T>(msg: OutMessage, decode: DumpDecoder<T>): Promise<T[]> {
    await this.caughtUp();
    return this.dumps.dump(msg, decode);
  }

  private async getLink(by: { index: number } | { name: string }): Promise<Link | null> {
    await this.caughtUp();
    const { errno, replies } = await this.requests.request(linkGetMessage(by));
    if (errno === ENODEV) return null;
    if (errno !== 0) throw new KernelError(`link show ${'name' in by ? by.name : `#${by.index}`}`, errnoName(errno));
    const reply = replies[0];
    return reply ? parseLink(reply.payload) : null;
  }

  private async single(what: string, msg: OutMessage): Promise<void> {
    const { errno } = await this.requests.request(msg);
    if (errno) throw new KernelError(what, errnoName(errno));
  }
}

function writeOp(w: Writer, op: KernelOp): void {
  switch (op.op) {
    case 'neighSet':
      return writeNeighSet(w, op.neigh);
    case 'neighDel':
      return writeNeighDel(w, op.neigh);
    case 'fdbReplace':
      return writeFdbReplace(w, op.fdb);
    case 'fdbDel':
      return writeFdbDel(w, op.fdb);
    case 'routeReplace':
      return writeRouteReplace(w, op.route);
    case 'routeDel':
      return writeRouteDel(w, op.route);
    case 'nexthopReplace':
      return writeNexthopReplace(w, op.nexthop);
    case 'nexthopDel':
      return writeNexthopDel(w, op.nexthop);
  }
}
