/**
 * The soak's cluster: the test topology (switch, a 3-member etcd on the
 * underlay, host namespaces; test/harness/cluster.ts) with a pod on every
 * host (test/harness/pod.ts), a ping between the pods of every pair of hosts,
 * a second LAN (10.244.0.0/24 on eth1: the hosts' network inside the pod
 * Network, the classic mistake weft must survive), and the agent that
 * reads and writes etcd from a namespace of its own.
 */
import type { ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../common/errors.js';
import { parseNetworkConfig } from '../lease/config.js';
import type { NetworkConfig } from '../lease/types.js';
import { Cluster, WeftNode } from '../test/harness/cluster.js';
import type { Netns } from '../test/harness/netns.js';
import { Pod } from '../test/harness/pod.js';
import { Rpc } from './cluster-rpc.js';
import { desiredPeers, kernelDiff, pairKey, validPeers, type KernelView, type ListedKey, type Peer } from './soak-check.js';

const AGENT = fileURLToPath(new URL('./soak-agent.js', import.meta.url));
export const PREFIX = '/coreos.com/network';
export const NETWORK_CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';
/** The hosts' second LAN, inside Network and below SubnetMin: no node is ever given it. */
export const LAN = '10.244.0.0/24';
export const UNDERLAY = '198.18.0.0/24';
/** The production periods (the harness's config file says 1 s for both): repairs must come from the kernel's reports. */
export const WEFTD_ARGS = ['--bridge', 'weft0', '--ip-masq', '--resync-interval', '60', '--iptables-resync', '5'];
const PING_INTERVAL_MS = 100;

/** A continuous ping from one pod to another, with the time of every reply. */
export class PairPing {
  private out = '';
  readonly replies = new Map<number, number>();
  readonly startedAt = Date.now();
  transmitted = 0;
  private exited: Promise<unknown>;

  constructor(
    readonly a: number,
    readonly b: number,
    private readonly proc: ChildProcess,
  ) {
    this.exited = new Promise((r) => proc.once('exit', r));
    proc.stdout?.on('data', (d: Buffer) => {
      this.out += d.toString();
      const lines = this.out.split('\n');
      this.out = lines.pop()!;
      for (const l of lines) {
        const m = /^\[(\d+\.\d+)\].*icmp_seq=(\d+) /.exec(l);
        if (m) this.replies.set(Number(m[2]), Number(m[1]) * 1000);
        const t = /(\d+) packets transmitted/.exec(l);
        if (t) this.transmitted = Number(t[1]);
      }
    });
  }

  static start(from: Pod, to: Pod, a: number, b: number): PairPing {
    return new PairPing(a, b, from.ns.spawn('ping', ['-D', '-n', '-i', String(PING_INTERVAL_MS / 1000), '-W', '1', to.ip]));
  }

  get intervalMs(): number {
    return PING_INTERVAL_MS;
  }

  /** Stops the ping; returns how many requests count (those sent up to a second before the stop). */
  async stop(): Promise<number> {
    this.proc.kill('SIGINT');
    await this.exited;
    if (this.out) {
      const t = /(\d+) packets transmitted/.exec(this.out);
      if (t) this.transmitted = Number(t[1]);
    }
    return Math.max(0, this.transmitted - Math.ceil(1000 / PING_INTERVAL_MS));
  }
}

/** A host of the soak: its weftd, its pod, and whether its weftd is meant to be running. */
export class SoakHost {
  /** Set while the soak itself has weftd down (killed, leaving): an exit then is no violation. */
  expectDown = false;
  /** Set once an unexpected exit was reported, so it is reported once. */
  exitReported = false;
  pod: Pod | null = null;

  constructor(readonly node: WeftNode) {}

  get index(): number {
    return this.node.index;
  }

  get ns(): Netns {
    return this.node.ns;
  }

  /** This host's lease subnet, from its subnet file (`10.244.5.0/24`). */
  subnet(): string {
    return this.node.subnetEnv().FLANNEL_SUBNET!.replace(/\.1\//, '.0/');
  }

  key(): string {
    return `${PREFIX}/subnets/${this.subnet().replace('/', '-')}`;
  }

  /** The kernel entries on flannel.1 (empty when the device is gone). */
  async kernel(): Promise<KernelView & { device: boolean }> {
    const [routes, neighs, fdb] = await Promise.all([
      this.ns.ipJson<{ dst: string; gateway?: string }[]>('route', 'show', 'dev', 'flannel.1').catch(() => null),
      this.ns.ipJson<{ dst: string; lladdr?: string }[]>('neigh', 'show', 'dev', 'flannel.1').catch(() => null),
      this.ns.bridgeJson<{ mac: string; dst?: string }[]>('fdb', 'show', 'dev', 'flannel.1').catch(() => null),
    ]);
    return {
      device: routes !== null && neighs !== null && fdb !== null,
      routes: new Map((routes ?? []).map((r) => [r.dst, r.gateway ?? ''])),
      neighs: new Map((neighs ?? []).filter((n) => n.lladdr).map((n) => [n.dst, n.lladdr!])),
      fdb: new Set((fdb ?? []).filter((f) => f.dst).map((f) => `${f.mac}>${f.dst}`)),
    };
  }

  /** Connected routes of the host's own networks that are missing (the underlay's only when `withUnderlay`). */
  async missingOwnRoutes(withUnderlay: boolean): Promise<string[]> {
    const routes = await this.ns.ipJson<{ dst: string; dev?: string; protocol?: string }[]>('route', 'show', 'table', 'main');
    const want: [string, string][] = [[LAN, 'eth1'], ...(withUnderlay ? ([[UNDERLAY, 'eth0']] as [string, string][]) : [])];
    return want.filter(([dst, dev]) => !routes.some((r) => r.dst === dst && r.dev === dev && r.protocol === 'kernel')).map(([dst, dev]) => `${dst} dev ${dev}`);
  }

  /** weft's iptables chains whose jump is missing. */
  async missingChains(): Promise<string[]> {
    const saved = await this.ns.exec('iptables-save');
    return ['FLANNEL-POSTRTG', 'FLANNEL-FWD'].filter((c) => !saved.includes(`-j ${c}`) || !saved.includes(`-A ${c} `));
  }
}

export class SoakCluster {
  readonly hosts = new Map<number, SoakHost>();
  readonly pings = new Map<string, PairPing>();
  /** Pings already stopped (their pair left): their counts. */
  readonly stopped: { ping: PairPing; counted: number }[] = [];
  readonly config: NetworkConfig = parseNetworkConfig(NETWORK_CONFIG);
  private nextIndex: number;

  private constructor(
    readonly cluster: Cluster,
    readonly agent: Rpc,
    readonly ctl: Netns,
  ) {
    this.nextIndex = cluster.nodes.length + 1;
  }

  static async create(hosts: number): Promise<SoakCluster> {
    const cluster = await Cluster.create({ hosts, etcdMembers: 3, networkConfig: NETWORK_CONFIG });
    const ctl = await cluster.sw.addHost('ctl', '198.18.0.240/24');
    const endpoints = cluster.nodes[0]!.etcdEndpoints.join(',');
    const agent = new Rpc(ctl.spawn(process.execPath, [AGENT, endpoints], { ipc: true }), 'soak agent');
    const soak = new SoakCluster(cluster, agent, ctl);
    await Promise.all(cluster.nodes.map((n) => soak.bringUp(n)));
    return soak;
  }

  /** A fresh host joins: namespace, LAN, weftd, pod. */
  async join(): Promise<SoakHost> {
    const i = this.nextIndex++;
    const ns = await this.cluster.sw.addHost(`h${i}`, `198.18.0.${i}/24`);
    const node = new WeftNode(ns, `198.18.0.${i}`, i, this.cluster.dir, this.cluster.nodes[0]!.etcdEndpoints);
    return this.bringUp(node);
  }

  private lanPorts = 0;

  private async bringUp(node: WeftNode): Promise<SoakHost> {
    const port = `l${++this.lanPorts}`;
    const sw = this.cluster.sw.ns;
    await node.ns.ip('link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', port, 'netns', sw.name);
    await sw.ip('link', 'set', port, 'master', 'br0', 'up');
    await node.ns.ip('addr', 'add', `10.244.0.${node.index}/24`, 'dev', 'eth1');
    await node.ns.ip('link', 'set', 'eth1', 'up');
    const host = new SoakHost(node);
    node.start(WEFTD_ARGS);
    await node.waitReady(60_000);
    host.pod = await Pod.attach(node, 1);
    this.hosts.set(node.index, host);
    return host;
  }

  /** Live hosts' indices, ascending. */
  live(): number[] {
    return [...this.hosts.keys()].sort((a, b) => a - b);
  }

  host(i: number): SoakHost {
    const h = this.hosts.get(i);
    if (!h) throw new WeftError('WEFT_ERR_HARNESS', `no host h${i}`);
    return h;
  }

  /** Starts the ping of pair a-b (the lower index pings the higher). */
  startPing(a: number, b: number): void {
    const [lo, hi] = a < b ? [a, b] : [b, a];
    const key = pairKey(lo, hi);
    if (this.pings.has(key)) return;
    this.pings.set(key, PairPing.start(this.host(lo).pod!, this.host(hi).pod!, lo, hi));
  }

  /** Stops every ping with host `i`. */
  async stopPingsOf(i: number): Promise<void> {
    for (const [key, ping] of [...this.pings]) {
      if (ping.a !== i && ping.b !== i) continue;
      this.pings.delete(key);
      this.stopped.push({ ping, counted: await ping.stop() });
    }
  }

  async stopAllPings(): Promise<void> {
    for (const ping of [...this.pings.values()]) this.stopped.push({ ping, counted: await ping.stop() });
    this.pings.clear();
  }

  async list(): Promise<ListedKey[]> {
    return (await this.agent.call<{ kvs: ListedKey[] }>('list', { prefix: `${PREFIX}/subnets/` })).kvs;
  }

  peers(kvs: readonly ListedKey[]): Peer[] {
    return validPeers(PREFIX, kvs, this.config);
  }

  /** How `host`'s entries on flannel.1 differ from its desired state under `kvs` (empty: in sync). */
  async entriesDiff(host: SoakHost, kvs: readonly ListedKey[]): Promise<string[]> {
    const peers = this.peers(kvs);
    const desired = desiredPeers(peers, { publicIP: host.node.ip, ownSubnet: host.subnet(), ownNetworks: [UNDERLAY, LAN] }, this.config.network);
    const k = await host.kernel();
    return k.device ? kernelDiff(desired, k) : ['device flannel.1 missing'];
  }

  /** How `host`'s kernel differs from its desired state under `kvs`: entries, own routes, weft's chains (empty: in sync). */
  async diff(host: SoakHost, kvs: readonly ListedKey[]): Promise<string[]> {
    const lines = await this.entriesDiff(host, kvs);
    for (const r of await host.missingOwnRoutes(true)) lines.push(`own route ${r} missing`);
    for (const c of await host.missingChains()) lines.push(`iptables chain ${c} missing`);
    return lines;
  }

  /** Polls `check` every 100 ms until true; returns the ms it took, or null after `timeoutMs`. */
  static async until(check: () => Promise<boolean>, timeoutMs: number): Promise<number | null> {
    const t0 = Date.now();
    for (;;) {
      if (await check().catch(() => false)) return Date.now() - t0;
      if (Date.now() - t0 > timeoutMs) return null;
      await sleep(100);
    }
  }

  async destroy(): Promise<void> {
    await this.stopAllPings().catch(() => undefined);
    await this.agent.close().catch(() => undefined);
    for (const h of this.hosts.values()) await h.pod?.delete().catch(() => undefined);
    // Hosts that joined are not in the harness's list: stop them here, by PID.
    for (const h of this.hosts.values()) if (!this.cluster.nodes.includes(h.node)) await h.node.stop('SIGTERM', 3000);
    await this.ctl.delete();
    await this.cluster.destroy();
  }
}
