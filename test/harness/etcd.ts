import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { atExit, tempDir } from './at-exit.js';

const execFileP = promisify(execFile);

/** An address as a URL's host: IPv6 in brackets (`[2001:2::fa]`), IPv4 as is. */
export function urlHost(ip: string): string {
  return ip.includes(':') ? `[${ip}]` : ip;
}

/** PIDs of every etcd this process started, killed on exit so a failing test leaves none behind. */
const started = new Set<number>();
atExit(() => {
  for (const pid of started) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

/** A free TCP port on 127.0.0.1 (bound then released). */
export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}

/** `n` distinct free TCP ports on 127.0.0.1: all held until all are picked, so two picks never return one port. */
export async function freePorts(n: number): Promise<number[]> {
  const held = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const srv = createServer();
          srv.unref();
          srv.on('error', reject);
          srv.listen(0, '127.0.0.1', () => resolve(srv));
        }),
    ),
  );
  const ports = held.map((srv) => {
    const addr = srv.address();
    return typeof addr === 'object' && addr ? addr.port : 0;
  });
  await Promise.all(held.map((srv) => new Promise((r) => srv.close(r))));
  return ports;
}

/**
 * A real etcd (Debian etcd-server 3.4) on 127.0.0.1 with a temporary data
 * directory, for the lease tests that need no network namespace. Stopped by
 * PID; restart() keeps the data and the port.
 */
/** TLS for the client port: a server certificate, and optionally client-certificate authentication. */
export interface EtcdTls {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** Require client certificates signed by `caFile` (mutual TLS). */
  readonly clientCertAuth: boolean;
  /** Certificate etcdctl presents when clientCertAuth is on. */
  readonly clientCertFile?: string;
  readonly clientKeyFile?: string;
}

export class EtcdServer {
  private proc: ChildProcess | null = null;

  private constructor(
    readonly dataDir: string,
    readonly clientPort: number,
    readonly peerPort: number,
    readonly tls: EtcdTls | null,
    /** Where etcd runs: a namespace on the test underlay and its address there, or the root namespace's loopback. */
    readonly place: { netns: string; ip: string } | null,
    /** Member name and the --initial-cluster list, for a multi-member cluster. */
    readonly member: { name: string; initialCluster: string } | null,
  ) {}

  /**
   * Starts etcd on 127.0.0.1 (lease tests), or inside `netns` listening on
   * `ip:2379` (cluster tests: etcd on the underlay, as in a real cluster;
   * an IPv6 `ip` listens on `[ip]:2379`).
   */
  static async start(options: { tls?: EtcdTls; netns?: { name: string; ip: string } } = {}): Promise<EtcdServer> {
    const place = options.netns ? { netns: options.netns.name, ip: options.netns.ip } : null;
    const [client, peer] = place ? [2379, 2380] : ((await freePorts(2)) as [number, number]);
    const server = new EtcdServer(tempDir('weft-etcd-'), client, peer, options.tls ?? null, place, null);
    await server.launch();
    return server;
  }

  /**
   * A cluster of etcd members, one per namespace on the underlay
   * (`members[i]` = its namespace and address). Members start together: none
   * is healthy before a quorum is up.
   */
  static async startCluster(members: readonly { name: string; ip: string }[]): Promise<EtcdServer[]> {
    const initialCluster = members.map((m, i) => `m${i + 1}=http://${urlHost(m.ip)}:2380`).join(',');
    const servers = members.map(
      (m, i) => new EtcdServer(tempDir('weft-etcd-'), 2379, 2380, null, { netns: m.name, ip: m.ip }, { name: `m${i + 1}`, initialCluster }),
    );
    await Promise.all(servers.map((s) => s.launch()));
    return servers;
  }

  /** True when this member is the cluster's leader (`etcdctl endpoint status`). */
  async isLeader(): Promise<boolean> {
    const [s] = JSON.parse(await this.etcdctl('endpoint', 'status', '-w', 'json')) as { Status: { leader: number | string; header: { member_id: number | string } } }[];
    return String(s!.Status.leader) === String(s!.Status.header.member_id);
  }

  /** The URL host etcd listens on: its underlay address (IPv6 in brackets) or loopback. */
  private get host(): string {
    return urlHost(this.place?.ip ?? '127.0.0.1');
  }

  get endpoint(): string {
    return `${this.tls ? 'https' : 'http'}://${this.host}:${this.clientPort}`;
  }

  /** A command, run inside etcd's namespace when it has one. */
  private inPlace(cmd: string, args: string[]): [string, string[]] {
    return this.place ? ['ip', ['netns', 'exec', this.place.netns, cmd, ...args]] : [cmd, args];
  }

  /** etcdctl flags for this server's TLS (and root credentials once auth is on). */
  private ctlFlags(): string[] {
    const flags = ['--endpoints', this.endpoint];
    if (this.tls) {
      flags.push('--cacert', this.tls.caFile);
      if (this.tls.clientCertAuth && this.tls.clientCertFile && this.tls.clientKeyFile) flags.push('--cert', this.tls.clientCertFile, '--key', this.tls.clientKeyFile);
    }
    if (this.rootPassword) flags.push('--user', `root:${this.rootPassword}`);
    return flags;
  }

  private rootPassword: string | null = null;

  /** Turns on etcd's user/password auth with a `root` user (etcd requires one) and returns its password. */
  async enableAuth(password = 'weft-root-pw'): Promise<string> {
    await this.etcdctl('user', 'add', `root:${password}`);
    await this.etcdctl('auth', 'enable');
    this.rootPassword = password;
    return password;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  private async launch(): Promise<void> {
    const peer = `http://${this.host}:${this.peerPort}`;
    const proc = spawn(
      ...this.inPlace('etcd', [
        '--name', this.member?.name ?? 'weft-test',
        '--data-dir', this.dataDir,
        '--listen-client-urls', this.endpoint,
        '--advertise-client-urls', this.endpoint,
        '--listen-peer-urls', peer,
        '--initial-advertise-peer-urls', peer,
        '--initial-cluster', this.member?.initialCluster ?? `weft-test=${peer}`,
        '--logger', 'zap',
        '--log-level', 'error',
        ...(this.tls ? ['--cert-file', this.tls.certFile, '--key-file', this.tls.keyFile] : []),
        ...(this.tls?.clientCertAuth ? ['--client-cert-auth', '--trusted-ca-file', this.tls.caFile] : []),
      ]),
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let stderr = '';
    proc.stderr?.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    this.proc = proc;
    if (proc.pid) started.add(proc.pid);
    proc.once('exit', () => proc.pid && started.delete(proc.pid));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`etcd exited with ${proc.exitCode}: ${stderr}`);
      try {
        if (this.tls || this.place) {
          await this.etcdctl('endpoint', 'health');
          return;
        }
        const res = await fetch(`${this.endpoint}/health`);
        if (res.ok && ((await res.json()) as { health?: string }).health === 'true') return;
      } catch {
        /* not listening yet */
      }
      await sleep(50);
    }
    throw new Error(`etcd did not become healthy within 15 s: ${stderr}`);
  }

  /** Stops etcd by PID (SIGTERM, then SIGKILL after 5 s). */
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
    this.proc = null;
  }

  /** Stops and starts again on the same data directory and port. */
  async restart(downMs = 0): Promise<void> {
    await this.stop();
    if (downMs > 0) await sleep(downMs);
    await this.launch();
  }

  /** Runs etcdctl (v3 API) against this server. */
  async etcdctl(...args: string[]): Promise<string> {
    const { stdout } = await execFileP(...this.inPlace('etcdctl', [...this.ctlFlags(), ...args]), { env: { ...process.env, ETCDCTL_API: '3' } });
    return stdout;
  }

  /** Compacts the history up to the current revision (`etcdctl compact`). */
  async compact(): Promise<void> {
    const status = JSON.parse(await this.etcdctl('endpoint', 'status', '-w', 'json')) as { Status: { header: { revision: number } } }[];
    await this.etcdctl('compact', String(status[0]!.Status.header.revision), '--physical');
  }

  /** Stops etcd and removes its data directory. */
  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}
