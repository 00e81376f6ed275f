import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeAtExit } from './at-exit.js';
import { EtcdServer, urlHost, type EtcdTls } from './etcd.js';
import { Netns, RUN_PREFIX, Switch, cleanupLeftovers } from './netns.js';

/** weftd as shipped (dist/bin/weftd.cjs: its Node flags, the bundle and its code cache), relative to this compiled harness file. */
export const WEFTD = fileURLToPath(new URL('../../bin/weftd.cjs', import.meta.url));
export const ETCD_IP = '198.18.0.250';
/** etcd's IPv6 underlay address; an IPv6-only cluster's etcd listens on `[2001:2::fa]:2379`. */
export const ETCD_IP6 = '2001:2::fa';
/** etcd member i (0-based) listens on 198.18.0.(250 + i), or 2001:2::(fa + i) on an IPv6-only underlay. */
const etcdIp = (i: number) => `198.18.0.${250 + i}`;
const etcdIp6 = (i: number) => `2001:2::${(250 + i).toString(16)}`;
/** Host hN's IPv6 underlay address (the benchmarking range, RFC 5180): 2001:2::N. */
export const hostIp6 = (n: number) => `2001:2::${n.toString(16)}`;

/**
 * The address families of a cluster: its underlay (eth0 of every host and
 * etcd) and its network config. 'v4' is IPv4 only; 'dual' adds 2001:2::N/64
 * next to 198.18.0.N/24 and an IPv6Network; 'v6' has IPv6 only, etcd
 * included, so nothing can fall back to IPv4.
 */
export type Stack = 'v4' | 'dual' | 'v6';

/** The network config a cluster of each stack writes to etcd unless told otherwise. */
export const NETWORK_CONFIGS: Readonly<Record<Stack, string>> = {
  v4: '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}',
  dual: '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/48","Backend":{"Type":"vxlan"}}',
  v6: '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/48","Backend":{"Type":"vxlan"}}',
};

/** eth0's addresses for a stack: the IPv4 one with /24, the IPv6 one with /64. */
export function underlayCidrs(stack: Stack, ip4: string, ip6: string): string[] {
  return [...(stack === 'v6' ? [] : [`${ip4}/24`]), ...(stack === 'v4' ? [] : [`${ip6}/64`])];
}
export const HEALTHZ_PORT = 8471;
const PREFIX = '/coreos.com/network';

/**
 * One simulated node: a host namespace on the underlay switch, with its own
 * directory for the subnet file, state and logs, and (when started) a weftd.
 */
export class WeftNode {
  private proc: ChildProcess | null = null;
  private subnetFilePath: string | null = null;
  readonly dir: string;

  constructor(
    readonly ns: Netns,
    /** Underlay address, e.g. 198.18.0.1; on an IPv6-only underlay the IPv6 one, e.g. 2001:2::1. */
    readonly ip: string,
    readonly index: number,
    baseDir: string,
    /** The cluster's etcd client URLs, given to weftd. */
    readonly etcdEndpoints: readonly string[] = [`http://${ETCD_IP}:2379`],
    /** IPv6 underlay address (dual-stack and IPv6-only underlays), e.g. 2001:2::1. */
    readonly ip6: string | null = null,
  ) {
    this.dir = join(baseDir, `h${index}`);
    mkdirSync(this.dir, { recursive: true });
  }

  /** Where weftd writes the subnet file: in the host's directory, unless `useSubnetFile` moved it. */
  get subnetFile(): string {
    return this.subnetFilePath ?? join(this.dir, 'subnet.env');
  }

  /** Has the next start write the subnet file to `path` (e.g. where a runtime on this host reads it). */
  useSubnetFile(path: string): void {
    this.subnetFilePath = path;
  }

  get stateDir(): string {
    return join(this.dir, 'state');
  }

  get logFile(): string {
    return join(this.dir, 'weftd.log');
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  get configFile(): string {
    return join(this.dir, 'weftd.yaml');
  }

  /**
   * Starts weftd inside this host's namespace, configured like an operator
   * would: a config file (this node's etcd, interface, files, health port)
   * plus any extra flags, which override the file. `launcher`: a command
   * weftd is started through, e.g. `['setpriv', '--bounding-set', '-net_raw']`
   * for a weftd without CAP_NET_RAW, or `[process.execPath]` for `node
   * dist/bin/weftd.cjs` (it must exec weftd, so that the PID stays weftd's).
   * `env` adds to the environment.
   */
  start(extraArgs: readonly string[] = [], launcher: readonly string[] = [], env: NodeJS.ProcessEnv = {}): void {
    if (this.running) throw new Error(`weftd on h${this.index} is already running`);
    writeFileSync(
      this.configFile,
      [
        `etcd-endpoints: ${this.etcdEndpoints.join(',')}`,
        'iface: [eth0]',
        `subnet-file: ${this.subnetFile}`,
        `state-dir: ${this.stateDir}`,
        'healthz-ip: 127.0.0.1',
        `healthz-port: ${HEALTHZ_PORT}`,
        'resync-interval: 1',
        'iptables-resync: 1',
        '',
      ].join('\n'),
    );
    this.spawnWeftd(['--config', this.configFile, ...extraArgs], { ...process.env, ...env }, launcher);
  }

  /**
   * Starts weftd with exactly `args` and no config file, as a unit's
   * ExecStart runs it (flanneld's command lines), with `env` added to the
   * environment (the unit's Environment= lines). The health endpoint is
   * where waitReady looks only if `args` or `env` put it there.
   */
  startWith(args: readonly string[], env: NodeJS.ProcessEnv = {}): void {
    if (this.running) throw new Error(`weftd on h${this.index} is already running`);
    this.spawnWeftd(args, { ...process.env, ...env });
  }

  private spawnWeftd(args: readonly string[], env?: NodeJS.ProcessEnv, launcher: readonly string[] = []): void {
    const out = openSync(this.logFile, 'a');
    const [cmd, ...rest] = [...launcher, WEFTD, ...args];
    this.proc = this.ns.spawn(cmd!, rest, env ? { env } : {});
    this.proc.stdout?.on('data', (d: Buffer) => appendSync(out, d));
    this.proc.stderr?.on('data', (d: Buffer) => appendSync(out, d));
    this.proc.once('exit', () => closeSync(out));
  }

  /** Sends `signal` by PID and waits for the exit; returns the exit code and how long it took. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000): Promise<{ code: number | null; ms: number }> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return { code: proc?.exitCode ?? null, ms: 0 };
    const t0 = Date.now();
    const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)));
    proc.kill(signal);
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    const code = await exited;
    clearTimeout(timer);
    return { code, ms: Date.now() - t0 };
  }

  /** GET on this node's health endpoint (from inside its namespace). */
  async http(path: string): Promise<{ status: number; body: string }> {
    const script = `fetch('http://127.0.0.1:${HEALTHZ_PORT}${path}').then(async r=>process.stdout.write(JSON.stringify({status:r.status,body:await r.text()})),e=>{process.stdout.write(JSON.stringify({status:0,body:String(e)}))})`;
    return JSON.parse(await this.ns.exec('node', '-e', script)) as { status: number; body: string };
  }

  /** One sample of a metric from /metrics (the first series whose name and labels start with `series`). */
  async metric(series: string): Promise<number> {
    const { body } = await this.http('/metrics');
    const line = body.split('\n').find((l) => l.startsWith(series + ' ') || l.startsWith(series + '{'));
    if (!line) throw new Error(`no metric ${series}`);
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  }

  /** True while the weftd process runs. */
  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Sends a signal without waiting (SIGSTOP / SIGCONT to freeze a daemon). */
  signal(sig: NodeJS.Signals): void {
    this.proc?.kill(sig);
  }

  async waitReady(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.proc && this.proc.exitCode !== null) throw new Error(`weftd on h${this.index} exited (${this.proc.exitCode}): ${this.logTail()}`);
      if ((await this.http('/readyz').catch(() => ({ status: 0 }))).status === 200) return;
      await sleep(100);
    }
    throw new Error(`weftd on h${this.index} not ready after ${timeoutMs} ms: ${this.logTail()}`);
  }

  subnetEnv(): Record<string, string> {
    return Object.fromEntries(
      readFileSync(this.subnetFile, 'utf8')
        .trim()
        .split('\n')
        .map((l) => l.split('=') as [string, string]),
    );
  }

  logTail(lines = 8): string {
    try {
      return readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}

function appendSync(fd: number, data: Buffer): void {
  try {
    writeSync(fd, data);
  } catch {
    /* log file closed: the process is gone */
  }
}

export interface ClusterOptions {
  readonly hosts: number;
  /** The network config written to etcd before any weftd starts. */
  readonly networkConfig?: string;
  /** etcd members (default 1), each in its own namespace at 198.18.0.250, .251, ... */
  readonly etcdMembers?: number;
  /** Serve etcd over TLS (single member only); weftd then needs the matching --etcd-* flags. */
  readonly etcdTls?: EtcdTls;
  /** Address families of the underlay and of the default network config (default 'v4'). */
  readonly stack?: Stack;
}

/**
 * The test topology weft's namespace tests share: a switch namespace (br0),
 * etcd in its own namespace at 198.18.0.250, and hosts h1..hN at
 * 198.18.0.1..N; with `stack` 'dual' also 2001:2::N and 2001:2::fa, with
 * 'v6' only those (etcd then listens on [2001:2::fa]:2379). Host namespaces
 * of an IPv6 stack forward IPv6 (`net.ipv6.conf.all.forwarding=1`, their
 * own sysctl). Nothing is placed in the root namespace.
 */
export class Cluster {
  private constructor(
    readonly sw: Switch,
    readonly etcdNses: Netns[],
    readonly etcds: EtcdServer[],
    readonly nodes: WeftNode[],
    readonly dir: string,
    readonly stack: Stack,
  ) {}

  static async create(options: ClusterOptions): Promise<Cluster> {
    await cleanupLeftovers();
    const stack = options.stack ?? 'v4';
    const dir = join('/tmp', `${RUN_PREFIX}cluster`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    removeAtExit(dir);
    const sw = await Switch.create('sw');
    const members = options.etcdMembers ?? 1;
    const etcdNses: Netns[] = [];
    for (let i = 0; i < members; i++) etcdNses.push(await sw.addHost(members === 1 ? 'etcd' : `etcd${i + 1}`, underlayCidrs(stack, etcdIp(i), etcdIp6(i))));
    const etcdAddress = (i: number) => (stack === 'v6' ? etcdIp6(i) : etcdIp(i));
    const etcds =
      members === 1
        ? [await EtcdServer.start({ netns: { name: etcdNses[0]!.name, ip: etcdAddress(0) }, ...(options.etcdTls ? { tls: options.etcdTls } : {}) })]
        : await EtcdServer.startCluster(etcdNses.map((ns, i) => ({ name: ns.name, ip: etcdAddress(i) })));
    await etcds[0]!.etcdctl('put', `${PREFIX}/config`, options.networkConfig ?? NETWORK_CONFIGS[stack]);
    const endpoints = etcds.map((_, i) => `${options.etcdTls ? 'https' : 'http'}://${urlHost(etcdAddress(i))}:2379`);
    const cluster = new Cluster(sw, etcdNses, etcds, [], dir, stack);
    for (let i = 1; i <= options.hosts; i++) cluster.nodes.push(await cluster.addNode(i, endpoints));
    return cluster;
  }

  /** Host hI on the switch with this cluster's underlay addresses, as a node not yet started. */
  private async addNode(i: number, endpoints: readonly string[]): Promise<WeftNode> {
    const ip4 = `198.18.0.${i}`;
    const ip6 = this.stack === 'v4' ? null : hostIp6(i);
    const ns = await this.sw.addHost(`h${i}`, underlayCidrs(this.stack, ip4, hostIp6(i)));
    if (ip6) await ns.sysctl('net.ipv6.conf.all.forwarding', '1');
    return new WeftNode(ns, this.stack === 'v6' ? ip6! : ip4, i, this.dir, endpoints, ip6);
  }

  /** The (first) etcd member. */
  get etcd(): EtcdServer {
    return this.etcds[0]!;
  }

  /** The namespace of the first etcd member, on the underlay. */
  get etcdNs(): Netns {
    return this.etcdNses[0]!;
  }

  /** Writes (value) or deletes (null) keys in the cluster's etcd, from inside etcd's namespace. */
  async writeKeys(ops: readonly { key: string; value: string | null }[]): Promise<void> {
    const file = join(this.dir, `etcd-ops-${Date.now()}.json`);
    writeFileSync(file, JSON.stringify(ops));
    const endpoints = this.etcds.map((_, i) => `http://${urlHost(this.stack === 'v6' ? etcdIp6(i) : etcdIp(i))}:2379`).join(',');
    await this.etcdNs.exec('node', fileURLToPath(new URL('./etcd-writer.js', import.meta.url)), endpoints, file);
    rmSync(file, { force: true });
  }

  /**
   * A host reboot: weftd killed, the namespace (and every kernel entry in it)
   * gone, the volatile subnet file (/run) gone; the state directory survives.
   * Returns the fresh node, not yet started.
   */
  async reboot(i: number): Promise<WeftNode> {
    const old = this.node(i);
    await old.stop('SIGKILL');
    await old.ns.delete();
    rmSync(old.subnetFile, { force: true });
    const fresh = await this.addNode(i, old.etcdEndpoints);
    this.nodes[i - 1] = fresh;
    return fresh;
  }

  node(i: number): WeftNode {
    return this.nodes[i - 1]!;
  }

  /** Stops every weftd (SIGTERM) and etcd by PID, deletes the namespaces and the directory. */
  async destroy(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop('SIGTERM', 3000)));
    for (const e of this.etcds) await e.destroy();
    for (const n of this.nodes) await n.ns.delete();
    for (const ns of this.etcdNses) await ns.delete();
    await this.sw.ns.delete();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
