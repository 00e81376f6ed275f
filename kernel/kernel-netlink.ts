/**
 * The production kernel port: rtnetlink in-process through the `netlink`
 * package's native socket, with weft's own framing (see netlink/channel.ts).
 *
 * Why this path: measured on the target machine, the package's high-level
 * one-request-one-promise API programs 5000 peers in about 0.9 s, slower than
 * `ip -batch` + `bridge -batch` (about 0.7 s). Packing up to 64 requests into
 * one datagram with a single fencing ACK removes the per-request round trip
 * and beats the iproute2 batch (numbers in backend/README.md), while keeping
 * errors per operation and needing no child process.
 *
 * The process must already live in the network namespace it programs (no
 * setns here): weftd runs in the host's namespace, tests run it under
 * `ip netns exec`.
 *
 * Notifications (`monitor`) come from a third socket, held by a child process
 * (netlink/monitor.ts) started on the first subscription. While it is starting
 * or restarting, reads wait for it (briefly): subscribe first, then dump, so
 * a change between a dump and the subscription is never missed.
 */
import { addrAddMessage, addrDelMessage, addrDumpMessage, parseAddrInfo } from './netlink/addr.js';
import { neighDumpMessage, parseNeigh, toFdb, toNeigh, writeFdbDel, writeFdbReplace, writeNeighDel, writeNeighSet } from './netlink/neigh.js';
import { parseRoute, routeDumpMessage, writeRouteDel, writeRouteReplace } from './netlink/route.js';
import { AF_BRIDGE, AF_INET, errnoName, Writer, type OutMessage } from './netlink/wire.js';
import { NetlinkChannel, type DumpDecoder } from './netlink/channel.js';
import { NetlinkMonitor } from './netlink/monitor.js';
import { bridgeAddMessage, linkDelMessage, linkDumpMessage, linkGetMessage, linkSetMessage, parseLink, vxlanAddMessage } from './netlink/link.js';
import {
  KernelError,
  applyOne,
  collect,
  type Addr,
  type AddrInfo,
  type Fdb,
  type Kernel,
  type KernelChange,
  type KernelOp,
  type Link,
  type Neigh,
  type OpResult,
  type Route,
  type VxlanLinkSpec,
} from './kernel.js';

const ENODEV = 19;

export class NetlinkKernel implements Kernel {
  /** ACKed requests; bulk programming goes here. */
  private readonly requests = new NetlinkChannel();
  /** Dumps only, so dump replies never crowd out ACKs in one receive buffer. */
  private readonly dumps = new NetlinkChannel();
  /** Notifications, while anyone listens. */
  private notifications: NetlinkMonitor | null = null;
  private readonly listeners = new Set<(change: KernelChange) => void>();

  async linkByName(name: string): Promise<Link | null> {
    return this.getLink({ name });
  }

  async linkGet(index: number): Promise<Link | null> {
    return this.getLink({ index });
  }

  async linkList(): Promise<Link[]> {
    return this.dump(linkDumpMessage(), (buf, start, end) => parseLink(buf.subarray(start, end)));
  }

  async linkAdd(spec: VxlanLinkSpec): Promise<Link> {
    await this.single('link add', vxlanAddMessage(spec));
    const link = await this.linkByName(spec.name);
    if (!link) throw new KernelError(`link add ${spec.name}`, 'ENODEV');
    return link;
  }

  async bridgeAdd(name: string, mtu: number): Promise<Link> {
    await this.single('link add', bridgeAddMessage(name, mtu));
    const link = await this.linkByName(name);
    if (!link) throw new KernelError(`link add ${name}`, 'ENODEV');
    return link;
  }

  async linkDel(index: number): Promise<void> {
    await this.single(`link del #${index}`, linkDelMessage(index));
  }

  async linkSetUp(index: number): Promise<void> {
    await this.single(`link set #${index} up`, linkSetMessage(index, { up: true }));
  }

  async linkSetMtu(index: number, mtu: number): Promise<void> {
    await this.single(`link set #${index} mtu ${mtu}`, linkSetMessage(index, { mtu }));
  }

  async addrListAll(): Promise<AddrInfo[]> {
    return this.dump(addrDumpMessage(), (buf, start, end) => parseAddrInfo(buf.subarray(start, end)));
  }

  async addrAdd(addr: Addr): Promise<void> {
    await this.single(`addr add ${addr.cidr} dev #${addr.ifindex}`, addrAddMessage(addr));
  }

  async addrDel(addr: Addr): Promise<void> {
    await this.single(`addr del ${addr.cidr} dev #${addr.ifindex}`, addrDelMessage(addr));
  }

  neighSet(neigh: Omit<Neigh, 'permanent'>): Promise<void> {
    return applyOne(this, { op: 'neighSet', neigh });
  }

  neighDel(neigh: Pick<Neigh, 'ifindex' | 'ip'>): Promise<void> {
    return applyOne(this, { op: 'neighDel', neigh });
  }

  neighList(ifindex: number): Promise<Neigh[]> {
    return collect<Neigh>((visit) => this.neighEach(ifindex, visit));
  }

  async neighEach(ifindex: number, visit: (n: Neigh) => void): Promise<void> {
    await this.dump(neighDumpMessage(AF_INET), (buf, start, end) => {
      const n = toNeigh(parseNeigh(buf, start, end));
      if (n && n.ifindex === ifindex) visit(n);
      return null;
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

  async fdbEach(ifindex: number, visit: (f: Fdb) => void): Promise<void> {
    // The kernel ignores the ifindex filter of an AF_BRIDGE dump here; filter in JS.
    await this.dump(neighDumpMessage(AF_BRIDGE), (buf, start, end) => {
      const f = toFdb(parseNeigh(buf, start, end));
      if (f && f.ifindex === ifindex) visit(f);
      return null;
    });
  }

  routeReplace(route: Omit<Route, 'proto'> & { proto?: number }): Promise<void> {
    return applyOne(this, { op: 'routeReplace', route });
  }

  routeDel(route: Pick<Route, 'dst'> & Partial<Omit<Route, 'dst'>>): Promise<void> {
    return applyOne(this, { op: 'routeDel', route });
  }

  routeList(): Promise<Route[]> {
    return collect<Route>((visit) => this.routeEach(visit));
  }

  async routeEach(visit: (r: Route) => void): Promise<void> {
    await this.dump(routeDumpMessage(), (buf, start, end) => {
      const r = parseRoute(buf, start, end);
      if (r) visit(r);
      return null;
    });
  }

  async apply(ops: readonly KernelOp[]): Promise<OpResult[]> {
    if (ops.length === 0) return [];
    const errnos = await this.requests.transact(ops, writeOp);
    return errnos.map((e) => (e === 0 ? null : errnoName(e)));
  }

  monitor(listener: (change: KernelChange) => void): () => void {
    this.listeners.add(listener);
    this.notifications ??= new NetlinkMonitor((change) => {
      for (const l of [...this.listeners]) l(change);
    }, [this.requests.port]);
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size > 0) return;
      this.notifications?.close();
      this.notifications = null;
    };
  }

  async close(): Promise<void> {
    this.listeners.clear();
    this.notifications?.close();
    this.notifications = null;
    this.requests.close();
    this.dumps.close();
  }

  /** Before a read: the monitor, if any, is listening (or gave up waiting and will report the gap). */
  private caughtUp(): Promise<void> {
    return this.notifications ? this.notifications.caughtUp() : Promise.resolve();
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
  }
}
