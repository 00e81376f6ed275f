/**
 * Network namespaces for tests and benchmarks. Everything kernel-side happens
 * inside namespaces created here; the root namespace is only read.
 *
 * Names are `wft<pid>b-<name>`: unique per run, and the pid lets a later run
 * remove leftovers of runs that died (their pid no longer exists). A run
 * deletes its own namespaces on teardown and, as a last resort, when it
 * exits, Ctrl-C included (at-exit.ts).
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { atExit } from './at-exit.js';

const execFileAsync = promisify(execFile);
const FAMILY = /^wft(\d+)b-/;

/** This run's name prefix. */
export const RUN_PREFIX = `wft${process.pid}b-`;

const created = new Set<string>();
const children = new Set<ChildProcess>();

atExit(() => {
  for (const child of children) if (child.pid && child.exitCode === null) safeKill(child.pid);
  for (const ns of created) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    } catch {
      // already gone
    }
  }
});

/** Remembers `child` until it exits, so teardown and exit can kill it by PID. */
function track<T extends ChildProcess>(child: T): T {
  children.add(child);
  child.once('exit', () => children.delete(child));
  return child;
}

function safeKill(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // exited already
  }
}

/** True while a process with this PID exists (EPERM: it exists, owned by someone else). */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs a command in the root namespace that only reads or manages namespaces (`ip netns ...`). */
async function run(cmd: string, args: readonly string[], input?: string): Promise<string> {
  const child = execFileAsync(cmd, args as string[], { maxBuffer: 64 << 20 });
  // Killed on exit too: an interrupted run must not leave e.g. an iperf3 client behind.
  track(child.child);
  if (input !== undefined) {
    // A command may exit without reading its input; its exit status, not the EPIPE, says how it went.
    child.child.stdin?.on('error', () => undefined);
    child.child.stdin?.end(input);
  }
  const { stdout } = await child;
  return stdout;
}

/** Names of all namespaces (`ip netns list`). */
export async function listNamespaces(): Promise<string[]> {
  const out = await run('ip', ['-j', 'netns', 'list']);
  if (!out.trim()) return [];
  return (JSON.parse(out) as Array<{ name: string }>).map((n) => n.name);
}

/** Deletes namespaces of this family left by runs whose process is gone. */
export async function cleanupLeftovers(): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await listNamespaces()) {
    const m = FAMILY.exec(name);
    if (!m || pidAlive(Number(m[1]))) continue;
    await run('ip', ['netns', 'del', name]).catch(() => undefined);
    removed.push(name);
  }
  return removed;
}

/** A network namespace created by this run. */
export class Netns {
  private constructor(readonly name: string) {}

  /** `ip netns add <prefix><short>`; loopback up. */
  static async create(short: string): Promise<Netns> {
    const name = `${RUN_PREFIX}${short}`;
    await run('ip', ['netns', 'add', name]);
    created.add(name);
    const ns = new Netns(name);
    await ns.ip('link', 'set', 'lo', 'up');
    return ns;
  }

  /** `ip -n NS ARGS...` */
  ip(...args: string[]): Promise<string> {
    return run('ip', ['-n', this.name, ...args]);
  }

  /** `ip -n NS -j ARGS...`, parsed. */
  async ipJson<T = unknown>(...args: string[]): Promise<T> {
    const out = await run('ip', ['-n', this.name, '-j', ...args]);
    return (out.trim() ? JSON.parse(out) : []) as T;
  }

  /** `bridge -n NS -j ARGS...`, parsed. */
  async bridgeJson<T = unknown>(...args: string[]): Promise<T> {
    const out = await run('bridge', ['-n', this.name, '-j', ...args]);
    return (out.trim() ? JSON.parse(out) : []) as T;
  }

  /** `ip -n NS -force -batch -` with the given lines; resolves with stderr lines of failures. */
  async ipBatch(lines: readonly string[], tool: 'ip' | 'bridge' = 'ip'): Promise<void> {
    await run(tool, ['-n', this.name, '-force', '-batch', '-'], lines.join('\n') + '\n');
  }

  /** Runs a command inside the namespace: `ip netns exec NS CMD ARGS...`. */
  exec(cmd: string, ...args: string[]): Promise<string> {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args]);
  }

  /** `sysctl -w KEY=VALUE` inside the namespace (a `net.*` key is the namespace's own). */
  async sysctl(key: string, value: string): Promise<void> {
    await this.exec('sysctl', '-q', '-w', `${key}=${value}`);
  }

  /**
   * Spawns a long-lived process inside the namespace. It is killed by PID on
   * teardown (and on exit) if still running. `ipc` adds a Node IPC channel.
   */
  spawn(cmd: string, args: readonly string[], options: { ipc?: boolean; env?: NodeJS.ProcessEnv } = {}): ChildProcess {
    return track(
      spawn('ip', ['netns', 'exec', this.name, cmd, ...args], {
        stdio: options.ipc ? ['ignore', 'inherit', 'inherit', 'ipc'] : ['ignore', 'pipe', 'pipe'],
        env: options.env ?? process.env,
      }),
    );
  }

  async delete(): Promise<void> {
    for (const child of children) {
      // Children are spawned as `ip netns exec`, which execs into the command: same pid.
      if (child.pid && child.exitCode === null && child.spawnargs.includes(this.name)) safeKill(child.pid);
    }
    await run('ip', ['netns', 'del', this.name]).catch(() => undefined);
    created.delete(this.name);
  }
}

/** A switch namespace with bridge br0: the underlay L2 segment. */
export class Switch {
  private ports = 0;
  private constructor(readonly ns: Netns) {}

  static async create(short = 'sw'): Promise<Switch> {
    const ns = await Netns.create(short);
    await ns.ip('link', 'add', 'br0', 'type', 'bridge');
    await ns.ip('link', 'set', 'br0', 'up');
    return new Switch(ns);
  }

  /**
   * Creates host namespace `short` with `eth0` (a veth whose peer is a br0
   * port) carrying `cidr`, e.g. 198.18.0.1/24, or several addresses, e.g.
   * `['198.18.0.1/24', '2001:2::1/64']` (dual-stack) or `['2001:2::1/64']`
   * (IPv6-only). br0 bridges both families. IPv6 addresses are added `nodad`,
   * so they are usable at once instead of after duplicate address detection.
   */
  async addHost(short: string, cidr: string | readonly string[], mtu = 1500): Promise<Netns> {
    const host = await Netns.create(short);
    const port = `p${++this.ports}`;
    await host.ip('link', 'add', 'eth0', 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', port, 'netns', this.ns.name);
    await this.ns.ip('link', 'set', port, 'mtu', String(mtu), 'master', 'br0', 'up');
    for (const a of typeof cidr === 'string' ? [cidr] : cidr) await host.ip('addr', 'add', a, 'dev', 'eth0', ...(a.includes(':') ? ['nodad'] : []));
    await host.ip('link', 'set', 'eth0', 'up');
    return host;
  }
}

/**
 * A namespace with a lone underlay `eth0` (one end of a veth pair whose other
 * end stays inside the same namespace), for tests that need no peers to answer.
 */
export async function standaloneHost(short: string, cidr: string, mtu = 1500): Promise<Netns> {
  const ns = await Netns.create(short);
  await ns.ip('link', 'add', 'eth0', 'mtu', String(mtu), 'type', 'veth', 'peer', 'name', 'eth0p');
  await ns.ip('addr', 'add', cidr, 'dev', 'eth0');
  await ns.ip('link', 'set', 'eth0', 'up');
  await ns.ip('link', 'set', 'eth0p', 'up');
  return ns;
}

/** Deletes every namespace this run created. */
export async function teardownAll(): Promise<void> {
  for (const name of [...created]) {
    await run('ip', ['netns', 'del', name]).catch(() => undefined);
    created.delete(name);
  }
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function eventually(check: () => Promise<boolean>, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
