import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { removeAtExit } from './at-exit.js';
import { EtcdServer, type EtcdTls } from './etcd.js';
import { Netns, RUN_PREFIX, Switch, cleanupLeftovers } from './netns.js';

/** weftd as shipped (dist/bin/weftd.cjs: its Node flags, the bundle and its code cache), relative to this compiled harness file. */
export const WEFTD = fileURLToPath(new URL('../../bin/weftd.cjs', import.meta.url));
export const ETCD_IP = '198.18.0.250';
/** etcd member i (0-based) listens on 198.18.0.(250 + i). */
const etcdIp = (i: number) => `198.18.0.${250 + i}`;
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
    /** Underlay address, e.g. 198.18.0.1. */
    readonly ip: string,
    readonly index: number,
    baseDir: string,
    /** The cluster's etcd client URLs, given to weftd. */
    readonly etcdEndpoints: readonly string[] = [`http://${ETCD_IP}:2379`],
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
}

/**
 * The test topology weft's namespace tests share: a switch namespace (br0),
 * etcd in its own namespace at 198.18.0.250, and hosts h1..hN at
 * 198.18.0.1..N. Nothing is placed in the root namespace.
 */
export class Cluster {
  private constructor(
    readonly sw: Switch,
    readonly etcdNses: Netns[],
    readonly etcds: EtcdServer[],
    readonly nodes: WeftNode[],
    readonly dir: string,
  ) {}

  static async create(options: ClusterOptions): Promise<Cluster> {
    await cleanupLeftovers();
    const dir = join('/tmp', `${RUN_PREFIX}cluster`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    removeAtExit(dir);
    const sw = await Switch.create('sw');
    const members = options.etcdMembers ?? 1;
    const etcdNses: Netns[] = [];
    for (let i = 0; i < members; i++) etcdNses.push(await sw.addHost(members === 1 ? 'etcd' : `etcd${i + 1}`, `${etcdIp(i)}/24`));
    const etcds =
      members === 1
        ? [await EtcdServer.start({ netns: { name: etcdNses[0]!.name, ip: ETCD_IP }, ...(options.etcdTls ? { tls: options.etcdTls } : {}) })]
        : await EtcdServer.startCluster(etcdNses.map((ns, i) => ({ name: ns.name, ip: etcdIp(i) })));
    await etcds[0]!.etcdctl('put', `${PREFIX}/config`, options.networkConfig ?? '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    const endpoints = etcds.map((_, i) => `${options.etcdTls ? 'https' : 'http'}://${etcdIp(i)}:2379`);
    const nodes: WeftNode[] = [];
    for (let i = 1; i <= options.hosts; i++) {
      const ns = await sw.addHost(`h${i}`, `198.18.0.${i}/24`);
      nodes.push(new WeftNode(ns, `198.18.0.${i}`, i, dir, endpoints));
    }
    return new Cluster(sw, etcdNses, etcds, nodes, dir);
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
    const endpoints = this.etcds.map((_, i) => `http://${etcdIp(i)}:2379`).join(',');
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
    const ns = await this.sw.addHost(`h${i}`, `${old.ip}/24`);
    const fresh = new WeftNode(ns, old.ip, i, this.dir, old.etcdEndpoints);
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
