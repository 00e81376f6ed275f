/**
 * Shared fixtures for the backend unit tests (test/backend-*.test.ts): leases,
 * a hand-fed batch stream, a backend registered on the in-memory kernel (a
 * "rig"), a readable summary of the kernel's tables, and the waits and
 * counters the drift tests compare passes with.
 */
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import winston from 'winston';
import { silentLogger, type Logger } from '../../common/log.js';
import { Subnet } from '../../common/subnet.js';
import type { BackendConfig, Lease, NetworkConfig, PeerBatch } from '../../lease/types.js';
import type { BackendNetwork, BackendRegistration } from '../../backend/backend.js';
import type { RouteNexthopsMode } from '../../common/defaults.js';
import { FakeKernel } from '../../kernel/kernel-fake.js';
import { HostGwBackend } from '../../backend/hostgw/hostgw.js';
import { VxlanBackend } from '../../backend/vxlan/vxlan.js';
import { slotOf } from '../../lease/keyspace.js';

export const log = silentLogger();

export function backendConfig(over: Partial<BackendConfig> = {}): BackendConfig {
  return { type: 'vxlan', vni: 1, port: 0, mtu: 0, gbp: false, learning: false, directRouting: false, raw: {}, ...over };
}

/** The overlay's families: IPv4 (10.244.0.0/16), dual-stack (and fd00:10:244::/48), or IPv6-only. */
export type Stack = 'v4' | 'dual' | 'v6';

export function networkConfig(over: Partial<BackendConfig> = {}, stack: Stack = 'v4'): NetworkConfig {
  const v4 = stack !== 'v6';
  const v6 = stack !== 'v4';
  return {
    enableIPv4: v4, enableIPv6: v6, network: v4 ? Subnet.parse('10.244.0.0/16') : null, subnetLen: v4 ? 24 : 0,
    subnetMin: null, subnetMax: null, ipv6Network: v6 ? Subnet.parse('fd00:10:244::/48') : null, ipv6SubnetLen: v6 ? 64 : 0, ipv6SubnetMin: null, ipv6SubnetMax: null,
    enableNFTables: false, backend: backendConfig(over),
  };
}

let macSeq = 0x10;
export function lease(subnet: string, publicIP: string, opts: { mac?: string; type?: string; noMac?: boolean } = {}): Lease {
  const mac = opts.mac ?? `0a:00:00:00:00:${(macSeq++).toString(16).padStart(2, '0')}`;
  return {
    subnet: Subnet.parse(subnet),
    ipv6Subnet: null,
    attrs: { PublicIP: publicIP, PublicIPv6: null, BackendType: opts.type ?? 'vxlan', ...(opts.noMac ? {} : { BackendData: { VNI: 1, VtepMAC: mac } }) },
    key: `/coreos.com/network/subnets/${subnet.replace('/', '-')}`,
    etcdLeaseId: '7',
    modRevision: '1',
    createRevision: '1',
  };
}

/**
 * A dual-stack lease (`ipv6` and `publicIPv6` given) or, with `subnet` null,
 * an IPv6-only one (flannel's 0.0.0.0 PublicIP, BackendV6Data alone).
 */
export function lease6(
  subnet: string | null,
  publicIP: string | null,
  ipv6: string,
  publicIPv6: string,
  opts: { mac?: string; mac6?: string; type?: string } = {},
): Lease {
  const v4 = subnet !== null;
  const mac6 = opts.mac6 ?? `0a:00:00:00:06:${(macSeq++).toString(16).padStart(2, '0')}`;
  const type = opts.type ?? 'vxlan';
  const data = type === 'vxlan';
  const name = `${v4 ? subnet.replace('/', '-') : '0.0.0.0-0'}&${ipv6.replace('/', '-')}`;
  return {
    subnet: Subnet.parse(subnet ?? '0.0.0.0/0'),
    ipv6Subnet: Subnet.parse(ipv6),
    attrs: {
      PublicIP: publicIP ?? '0.0.0.0',
      PublicIPv6: publicIPv6,
      BackendType: type,
      ...(data && v4 ? { BackendData: { VNI: 1, VtepMAC: opts.mac ?? `0a:00:00:00:00:${(macSeq++).toString(16).padStart(2, '0')}` } } : {}),
      ...(data ? { BackendV6Data: { VNI: 1, VtepMAC: mac6 } } : {}),
    },
    key: `/coreos.com/network/subnets/${name}`,
    etcdLeaseId: '7',
    modRevision: '1',
    createRevision: '1',
  };
}

/** A peer map keyed as the watcher keys it (slotOf: the IPv4 subnet, an IPv6-only lease's IPv6 one). */
export function peersOf(...leases: Lease[]): Map<string, Lease> {
  return new Map(leases.map((l) => [slotOf(l), l]));
}

/**
 * A hand-fed batch stream. The backend pulls the next batch only after the
 * pass that applied the previous one, so "parked waiting for more" means
 * "everything pushed so far went through a pass".
 */
export class Feed implements AsyncIterable<PeerBatch> {
  private queue: PeerBatch[] = [];
  private wake: (() => void) | null = null;
  private ended = false;
  private parkedWaiters: Array<() => void> = [];
  push(batch: PeerBatch): void {
    this.queue.push(batch);
    this.wake?.();
  }
  /** Resolves once the consumer has taken every batch and asks for more. */
  drained(): Promise<void> {
    if (this.wake && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.parkedWaiters.push(r));
  }
  end(): void {
    this.ended = true;
    this.wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<PeerBatch> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.ended) return;
      const woken = new Promise<void>((r) => (this.wake = r));
      for (const w of this.parkedWaiters.splice(0)) w();
      await woken;
      this.wake = null;
    }
  }
}

export interface Rig {
  kernel: FakeKernel;
  net: BackendNetwork;
  feed: Feed;
  abort: AbortController;
  running: Promise<void>;
  own: Lease;
  device: () => Promise<number>;
}

/**
 * A backend (vxlan, or host-gw) registered on a fake kernel whose eth0 holds
 * 198.18.0.1/24, configured with its own lease 10.244.1.0/24, and running on
 * a Feed the test pushes batches into.
 */
export async function rig(
  options: {
    kernel?: FakeKernel;
    backend?: Partial<BackendConfig>;
    stateDir?: string;
    hostgw?: boolean;
    resyncIntervalMs?: number;
    log?: Logger;
    routeNexthops?: RouteNexthopsMode;
    /** The overlay's families; dual-stack and IPv6-only nodes also hold 2001:2::1/64 on eth0 and lease fd00:10:244:1::/64. */
    stack?: Stack;
  } = {},
): Promise<Rig> {
  const kernel = options.kernel ?? new FakeKernel();
  const stack = options.stack ?? 'v4';
  if (!(await kernel.linkByName('eth0'))) {
    const eth0 = kernel.addLink({ name: 'eth0', mtu: 1500 });
    await kernel.addrAdd({ ifindex: eth0.index, cidr: '198.18.0.1/24' });
    if (stack !== 'v4') await kernel.addrAdd({ ifindex: eth0.index, cidr: '2001:2::1/64' });
  }
  const reg: BackendRegistration = {
    publicIP: stack === 'v6' ? '0.0.0.0' : '198.18.0.1',
    publicIPv6: stack === 'v4' ? null : '2001:2::1',
    iface: { name: 'eth0', mtu: 1500 },
    network: networkConfig({ ...(options.hostgw ? { type: 'host-gw' } : {}), ...options.backend }, stack),
    log: options.log ?? log,
    kernel,
    resyncIntervalMs: options.resyncIntervalMs ?? 60_000,
    ...(options.stateDir ? { stateDir: options.stateDir } : {}),
    ...(options.routeNexthops ? { routeNexthops: options.routeNexthops } : {}),
  };
  const net = await (options.hostgw ? new HostGwBackend() : new VxlanBackend()).register(reg);
  const type = options.hostgw ? 'host-gw' : 'vxlan';
  const mac = (net.leaseAttrs.BackendData?.VtepMAC as string | undefined) ?? undefined;
  const mac6 = (net.leaseAttrs.BackendV6Data?.VtepMAC as string | undefined) ?? undefined;
  const own =
    stack === 'v4'
      ? lease('10.244.1.0/24', '198.18.0.1', { mac, type })
      : lease6(stack === 'dual' ? '10.244.1.0/24' : null, stack === 'dual' ? '198.18.0.1' : null, 'fd00:10:244:1::/64', '2001:2::1', { ...(mac ? { mac } : {}), ...(mac6 ? { mac6 } : {}), type });
  await net.configure(own);
  const feed = new Feed();
  const abort = new AbortController();
  const running = net.run(feed, abort.signal);
  const device = async (): Promise<number> => (await kernel.linkByName('flannel.1'))?.index ?? -1;
  return { kernel, net, feed, abort, running, own, device };
}

/** Waits until every pushed batch went through a pass and no work is left. */
export async function settle(r: Rig): Promise<void> {
  await r.feed.drained();
  await r.net.settled();
}

export async function stop(r: Rig): Promise<void> {
  r.abort.abort();
  await r.running;
  await r.net.close();
}

export function summary(kernel: FakeKernel): { neighs: string[]; fdbs: string[]; routes: string[] } {
  const s = kernel.state();
  return {
    neighs: s.neighs.map((n) => `${n.ip} ${n.mac}`).sort(),
    fdbs: s.fdbs.map((f) => `${f.mac} ${f.dst}`).sort(),
    routes: s.routes.map((r) => `${r.dst} via ${r.gw}${r.onlink ? ' onlink' : ''} #${r.oif} proto ${r.proto}`).sort(),
  };
}

/** summary() with nexthops, and routes by nhid as `ip route` prints them. */
export function nexthopSummary(kernel: FakeKernel): { neighs: string[]; fdbs: string[]; nexthops: string[]; routes: string[] } {
  const s = kernel.state();
  return {
    ...summary(kernel),
    nexthops: s.nexthops.map((n) => `id ${n.id} via ${n.gw} #${n.oif}${n.onlink ? ' onlink' : ''} proto ${n.proto}`).sort(),
    routes: s.routes.map((r) => (r.nhid ? `${r.dst} nhid ${r.nhid} proto ${r.proto}` : `${r.dst} via ${r.gw}${r.onlink ? ' onlink' : ''} #${r.oif} proto ${r.proto}`)).sort(),
  };
}

/**
 * A logger that keeps what weft says, for assertions: its info lines (the
 * messages), and its warnings with their fields.
 */
export function recordingLogger(): { log: Logger; infos: string[]; warnings: Array<Record<string, unknown>> } {
  const infos: string[] = [];
  const warnings: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const entry = JSON.parse(chunk.toString()) as { level: string; message: string };
      if (entry.level === 'info') infos.push(entry.message);
      if (entry.level === 'warn') warnings.push(entry);
      done();
    },
  });
  return { log: winston.createLogger({ level: 'info', format: winston.format.json(), transports: [new winston.transports.Stream({ stream: sink })] }), infos, warnings };
}

/** Peer i: subnet 10.244.(10+i).0/24 on the underlay segment, MAC 0a:00:00:00:01:<i>. */
export function peer(i: number, mac = `0a:00:00:00:01:${i.toString(16).padStart(2, '0')}`, publicIP = `198.18.0.${10 + i}`): Lease {
  return lease(`10.244.${10 + i}.0/24`, publicIP, { mac });
}

/** Lets notifications, the drift debounce (50 ms) and any repair pass run. */
export async function quiet(r: Rig): Promise<void> {
  await sleep(120);
  await settle(r);
}

/** Programs peer b (10.244.2.0/24) and returns the stats to compare against. */
export async function programmed(r: Rig): Promise<{ fullPasses: number; driftRepairs: number; driftEvents: number }> {
  r.feed.push({ events: [], peers: peersOf(lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' })), resync: true });
  await quiet(r);
  return r.net.stats();
}

export function passesSince(r: Rig, before: { fullPasses: number; driftRepairs: number }): { full: number; drift: number } {
  const now = r.net.stats();
  return { full: now.fullPasses - before.fullPasses, drift: now.driftRepairs - before.driftRepairs };
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
}
