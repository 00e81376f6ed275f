/**
 * A Kubernetes node's container runtime for tests: Debian's containerd (1.6,
 * CRI plugin built in) inside a test host's network namespace, driven over the
 * CRI (cri.ts) as kubelet drives it. Pod sandboxes get their network from the
 * CNI plugins and config in this host's own CNI directories.
 *
 * Isolation. containerd has its own root, state, socket and config under the
 * host directory. It runs in the private mount namespace `ip netns exec`
 * gives, where the launcher first mounts the cgroup hierarchies again (the
 * fresh /sys hides them; runc needs them) and binds the host directory's run/
 * and lib/ over /run and /var/lib. So the paths that containerd, its shims,
 * runc and the CNI plugins would otherwise share with the machine
 * (/run/containerd/s for shim sockets, /run/containerd/runc, libcni's result
 * cache in /var/lib/cni, host-local's default dataDir, /run/flannel) are per
 * host, and every mount they make (image snapshots, pod netns files, shm)
 * stays in that namespace and goes away with its last process. The pods'
 * cgroups go under /weft-cri-<netns> in each hierarchy, removed on stop.
 *
 * Stop: every sandbox is stopped and removed over the CRI (so CNI DEL runs),
 * then containerd gets SIGTERM (SIGKILL after a grace period). Shims outlive
 * containerd by design (they reparent to PID 1): what is left is killed by PID,
 * found by this instance's socket in a shim's `-address` argument, by the
 * marker in its environment, and by this host's pod cgroups.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statfsSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { WeftError } from '../../common/errors.js';
import { atExit, tempDir } from './at-exit.js';
import { CriClient, type PodSandboxConfig, type PodSandboxStatus } from './cri.js';
import { buildPauseImage, type BuiltImage } from './image.js';
import { pidAlive, type Netns } from './netns.js';

const execFileP = promisify(execFile);

const CONTAINERD = '/usr/bin/containerd';
const CTR = '/usr/bin/ctr';
const NSENTER = '/usr/bin/nsenter';
/** Debian's containernetworking-plugins. */
export const STOCK_CNI_DIR = '/usr/lib/cni';
/** The namespace the CRI plugin keeps its images and containers in. */
export const CRI_NAMESPACE = 'k8s.io';
/** In containerd's environment and so in its shims': `<test process pid>:<host dir>`, to find them after a crash. */
const MARKER = 'WEFT_TEST_CONTAINERD';
const CGROUP_PREFIX = 'weft-cri-';
const CGROUP_ROOT = '/sys/fs/cgroup';
const OVERLAYFS_MAGIC = 0x794c7630;

const running = new Set<ContainerdHost>();
atExit(() => {
  for (const h of running) h.killNow();
});

export type Snapshotter = 'overlayfs' | 'native';

export interface ContainerdOptions {
  /** The host namespace (created by the caller, who also deletes it). */
  readonly netns: Netns;
  /**
   * This runtime's directory, created by start() and removed by stop(). Keep it short: the socket inside must stay
   * under 108 bytes. Not under /run or /var/lib, which containerd sees replaced.
   */
  readonly dir: string;
  /**
   * The CNI plugins in the bin dir, name -> executable (linked there). Default: the stock bridge, host-local and
   * loopback; containerd's CRI attaches every pod's lo through `loopback`, so keep that one.
   */
  readonly cniPlugins?: Readonly<Record<string, string>>;
  /** overlayfs, unless the directory sits on overlayfs (a containerised CI), then native. */
  readonly snapshotter?: Snapshotter;
  /** The sandbox image; default the busybox pause image, built once per test process. */
  readonly image?: BuiltImage;
  readonly readyTimeoutMs?: number;
}

/** How long the start-up steps took, in milliseconds. */
export interface ContainerdTimings {
  /** From the launch to the first CRI Version answered. */
  readonly readyMs: number;
  /** `ctr images import` of the sandbox image, until the CRI's ImageStatus reports it. */
  readonly importMs: number;
}

let pauseImage: BuiltImage | null = null;

/** The busybox pause image, built on first use into a temporary directory of this run. */
export function sharedPauseImage(): BuiltImage {
  pauseImage ??= buildPauseImage(join(tempDir('weft-image-'), 'pause.tar'));
  return pauseImage;
}

/** The default CNI plugin set: stock bridge, host-local, loopback. */
export function stockCniPlugins(names: readonly string[] = ['bridge', 'host-local', 'loopback']): Record<string, string> {
  return Object.fromEntries(names.map((n) => [n, join(STOCK_CNI_DIR, n)]));
}

/**
 * A conflist for the stock bridge plugin with host-local IPAM: a pod network without any overlay. Without `dataDir`,
 * host-local keeps its reservations in /var/lib/cni/networks/<name>, which is per host here (hostPath()).
 */
export function bridgeConflist(o: { name: string; subnet: string; dataDir?: string; bridge?: string; routes?: readonly string[]; mtu?: number }): object {
  return {
    cniVersion: '1.0.0',
    name: o.name,
    plugins: [
      {
        type: 'bridge',
        bridge: o.bridge ?? 'cni0',
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ...(o.mtu ? { mtu: o.mtu } : {}),
        ipam: {
          type: 'host-local',
          ...(o.dataDir ? { dataDir: o.dataDir } : {}),
          ranges: [[{ subnet: o.subnet }]],
          routes: (o.routes ?? []).map((dst) => ({ dst })),
        },
      },
    ],
  };
}

function configToml(o: { dir: string; socket: string; binDir: string; confDir: string; image: string; snapshotter: Snapshotter }): string {
  const q = (s: string) => JSON.stringify(s); // TOML basic strings escape like JSON
  const cri = '[plugins."io.containerd.grpc.v1.cri"';
  return [
    'version = 2',
    `root = ${q(join(o.dir, 'root'))}`,
    `state = ${q(join(o.dir, 'state'))}`,
    // opt would create /opt/containerd on the machine; the others are storage drivers this machine has no use for.
    'disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.aufs"]',
    '',
    '[grpc]',
    `  address = ${q(o.socket)}`,
    '',
    `${cri}]`,
    `  sandbox_image = ${q(o.image)}`,
    // The pod netns files under the state dir instead of the machine-wide /var/run/netns.
    '  netns_mounts_under_state_dir = true',
    // kubelet-style sandboxes ask for oom_score_adj -998; a machine without CAP_SYS_RESOURCE refuses it (runc:
    // "failed to update /proc/self/oom_score_adj: Permission denied"). Restricted, containerd clamps to its own.
    '  restrict_oom_score_adj = true',
    '  disable_apparmor = true',
    `${cri}.cni]`,
    `  bin_dir = ${q(o.binDir)}`,
    `  conf_dir = ${q(o.confDir)}`,
    '  max_conf_num = 1',
    `${cri}.containerd]`,
    `  snapshotter = ${q(o.snapshotter)}`,
    '  default_runtime_name = "runc"',
    `${cri}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `${cri}.containerd.runtimes.runc.options]`,
    `  Root = ${q(join(o.dir, 'run', 'runc'))}`,
    '  SystemdCgroup = false',
    '',
  ].join('\n');
}

/**
 * Runs in the namespace (via `ip netns exec`), then execs containerd, so the PID we hold is containerd's:
 * the cgroup hierarchies mounted again from PID 1's table, then the per-host /run and /var/lib.
 */
const LAUNCHER = [
  'set -e',
  'run=$1 lib=$2; shift 2',
  'grep -E "^[^ ]+ /sys/fs/cgroup" /proc/1/mounts | while read -r src dst fs opts _; do mkdir -p "$dst"; mountpoint -q "$dst" || mount -t "$fs" -o "$opts" "$src" "$dst"; done',
  'mount --bind "$run" /run',
  'mount --bind "$lib" /var/lib',
  'exec "$@"',
].join('\n');


function kill(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    /* gone */
  }
}

/** Live processes (zombies left out: they hold nothing and PID 1 reaps them). */
function processes(): { pid: number; argv: string[]; environ: () => string[] }[] {
  const out: { pid: number; argv: string[]; environ: () => string[] }[] = [];
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      if (stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z') continue;
      const argv = readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      out.push({
        pid: Number(p),
        argv,
        environ: () => {
          try {
            return readFileSync(`/proc/${p}/environ`, 'utf8').split('\0');
          } catch {
            return [];
          }
        },
      });
    } catch {
      /* exited while we looked */
    }
  }
  return out;
}

/** The cgroup hierarchies' top directories: /sys/fs/cgroup itself (v2) and its subdirectories (v1 controllers, hybrid's unified). */
function hierarchies(): string[] {
  const tops = [CGROUP_ROOT];
  try {
    for (const h of readdirSync(CGROUP_ROOT, { withFileTypes: true })) if (h.isDirectory()) tops.push(join(CGROUP_ROOT, h.name));
  } catch {
    /* no cgroupfs */
  }
  return tops;
}

/** The cgroup directories named `name` at the top of every hierarchy. */
function cgroupDirs(name: string): string[] {
  return hierarchies()
    .map((h) => join(h, name))
    .filter((d) => existsSync(d));
}

/** The processes in the cgroup tree at `dir`. */
function cgroupTreePids(dir: string, into = new Set<number>()): Set<number> {
  try {
    for (const pid of readFileSync(join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) into.add(Number(pid));
    for (const child of readdirSync(dir, { withFileTypes: true })) if (child.isDirectory()) cgroupTreePids(join(dir, child.name), into);
  } catch {
    /* gone */
  }
  return into;
}

/** rmdir of a cgroup tree, deepest first; true when it is gone. */
function removeCgroupTree(dir: string): boolean {
  try {
    for (const child of readdirSync(dir, { withFileTypes: true })) if (child.isDirectory()) removeCgroupTree(join(dir, child.name));
    rmdirSync(dir);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT';
  }
}

/**
 * Removes what containerd instances of test runs that died left behind: containerd and shims carrying a dead run's
 * marker, and the pod cgroups (with their processes) of a dead run's namespaces (`weft-cri-wft<pid>b-...`).
 */
export async function cleanupContainerdLeftovers(): Promise<{ processes: number; cgroups: number }> {
  let procs = 0;
  let cgroups = 0;
  for (const p of processes()) {
    const marker = p.environ().find((e) => e.startsWith(`${MARKER}=`));
    if (!marker) continue;
    const owner = Number(marker.slice(MARKER.length + 1).split(':')[0]);
    if (owner && owner !== process.pid && !pidAlive(owner)) {
      kill(p.pid);
      procs++;
    }
  }
  const dead = new Set<string>();
  for (const top of hierarchies()) {
    try {
      for (const e of readdirSync(top)) {
        const m = new RegExp(`^${CGROUP_PREFIX}wft(\\d+)b-`).exec(e);
        if (m && Number(m[1]) !== process.pid && !pidAlive(Number(m[1]))) dead.add(e);
      }
    } catch {
      /* not a hierarchy */
    }
  }
  for (const name of dead) {
    const dirs = cgroupDirs(name);
    const pids = new Set<number>();
    for (const d of dirs) cgroupTreePids(d, pids);
    for (const pid of pids) kill(pid);
    procs += pids.size;
    // Killed processes take a moment to leave their cgroups.
    for (let i = 0; i < 50 && dirs.some((d) => existsSync(d)); i++) {
      for (const d of dirs) if (existsSync(d) && removeCgroupTree(d)) cgroups++;
      if (dirs.some((d) => existsSync(d))) await sleep(20);
    }
  }
  return { processes: procs, cgroups };
}

/** One running containerd with its CRI, in one host namespace. */
export class ContainerdHost {
  private proc: ChildProcess | null = null;
  private readonly children = new Set<ChildProcess>();
  private stopped = false;
  timings: ContainerdTimings = { readyMs: 0, importMs: 0 };

  private constructor(
    readonly netns: Netns,
    readonly dir: string,
    readonly snapshotter: Snapshotter,
    readonly image: BuiltImage,
    /** CRI client on this runtime's socket. */
    readonly cri: CriClient,
  ) {}

  /** containerd's gRPC socket (CRI and containerd's own API). */
  get socket(): string {
    return join(this.dir, 'c.sock');
  }
  get configFile(): string {
    return join(this.dir, 'containerd.toml');
  }
  get logFile(): string {
    return join(this.dir, 'containerd.log');
  }
  /** The CRI plugin's CNI bin_dir. */
  get cniBinDir(): string {
    return join(this.dir, 'cni', 'bin');
  }
  /** The CRI plugin's CNI conf_dir: the first config in it (by name) is the pod network. */
  get cniConfDir(): string {
    return join(this.dir, 'cni', 'net.d');
  }
  /** cgroupfs parent of this host's pods (kubelet would say /kubepods/...); the runtime appends the sandbox id. */
  get cgroupParent(): string {
    return `/${CGROUP_PREFIX}${this.netns.name}`;
  }
  get pid(): number | undefined {
    return this.proc?.pid;
  }
  get running(): boolean {
    return !!this.proc && this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /**
   * Where a path that containerd, its shims or a CNI plugin sees lies on the machine: /run/... and /var/lib/... are
   * this host's run/ and lib/ (e.g. `/run/flannel/subnet.env`, `/var/lib/cni/networks`); other paths are shared.
   */
  hostPath(inside: string): string {
    for (const [prefix, local] of [
      ['/var/run', 'run'],
      ['/run', 'run'],
      ['/var/lib', 'lib'],
    ] as const) {
      if (inside === prefix || inside.startsWith(prefix + '/')) return join(this.dir, local, inside.slice(prefix.length));
    }
    return inside;
  }

  /** Starts containerd in `netns`, links the CNI plugins, imports the sandbox image; resolves once the CRI answers. */
  static async start(options: ContainerdOptions): Promise<ContainerdHost> {
    for (const hidden of ['/run', '/var/run', '/var/lib']) {
      if (options.dir === hidden || options.dir.startsWith(hidden + '/')) throw new WeftError('WEFT_ERR_HARNESS', `containerd dir ${options.dir} is under ${hidden}, which containerd sees replaced`);
    }
    await cleanupContainerdLeftovers();
    mkdirSync(options.dir, { recursive: true });
    const snapshotter = options.snapshotter ?? (statfsSync(options.dir).type === OVERLAYFS_MAGIC ? 'native' : 'overlayfs');
    const image = options.image ?? sharedPauseImage();
    const socket = join(options.dir, 'c.sock');
    if (Buffer.byteLength(socket) >= 108) throw new WeftError('WEFT_ERR_HARNESS', `containerd socket path too long for a unix socket: ${socket}`);
    const host = new ContainerdHost(options.netns, options.dir, snapshotter, image, CriClient.connect(socket, { timeoutMs: 60_000 }));
    for (const d of [host.cniBinDir, host.cniConfDir, join(options.dir, 'run'), join(options.dir, 'lib')]) mkdirSync(d, { recursive: true });
    for (const [name, path] of Object.entries(options.cniPlugins ?? stockCniPlugins())) host.linkCniPlugin(name, path);
    writeFileSync(
      host.configFile,
      configToml({ dir: options.dir, socket, binDir: host.cniBinDir, confDir: host.cniConfDir, image: image.name, snapshotter }),
    );
    running.add(host);
    try {
      const readyMs = await host.launch(options.readyTimeoutMs ?? 30_000);
      const importMs = await host.importImage(image);
      host.timings = { readyMs, importMs };
    } catch (err) {
      await host.stop();
      throw err;
    }
    return host;
  }

  private async launch(timeoutMs: number): Promise<number> {
    const log = openSync(this.logFile, 'a');
    const t0 = performance.now();
    this.proc = spawn(
      'ip',
      ['netns', 'exec', this.netns.name, 'sh', '-c', LAUNCHER, 'sh', join(this.dir, 'run'), join(this.dir, 'lib'), CONTAINERD, '--config', this.configFile],
      {
        stdio: ['ignore', log, log],
        env: { ...process.env, PATH: `${process.env.PATH ?? ''}:/usr/sbin:/usr/bin:/sbin:/bin`, [MARKER]: `${process.pid}:${this.dir}` },
      },
    );
    closeSync(log);
    const deadline = Date.now() + timeoutMs;
    let last: unknown = null;
    while (Date.now() < deadline) {
      if (!this.running) throw new WeftError('WEFT_ERR_HARNESS', `containerd in ${this.netns.name} exited during start-up: ${this.logTail()}`);
      if (existsSync(this.socket)) {
        try {
          await this.cri.version();
          return performance.now() - t0;
        } catch (err) {
          last = err; // the CRI plugin answers "server is not initialized yet" for a moment
        }
      }
      await sleep(20);
    }
    throw new WeftError('WEFT_ERR_HARNESS', `containerd in ${this.netns.name} not ready in ${timeoutMs} ms (${String(last)}): ${this.logTail()}`);
  }

  /** The last lines of containerd's log. */
  logTail(lines = 6): string {
    try {
      return readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }

  /** `ctr -a SOCKET -n k8s.io ARGS...` (tasks that take fifos need `--fifo-dir`: ctr's default is under /run, which containerd sees replaced). */
  async ctr(...args: string[]): Promise<string> {
    const { stdout } = await execFileP(CTR, ['-a', this.socket, '-n', CRI_NAMESPACE, ...args], { maxBuffer: 16 << 20 });
    return stdout.trim();
  }

  /**
   * Imports an image tarball into the CRI's namespace, unpacked for the CRI's snapshotter, and waits until the CRI
   * reports it (its image store follows containerd's events): an image the CRI reports is one it will not pull.
   * Returns the milliseconds taken.
   */
  async importImage(image: BuiltImage): Promise<number> {
    const t0 = performance.now();
    await this.ctr('images', 'import', '--snapshotter', this.snapshotter, image.file);
    const deadline = Date.now() + 10_000;
    for (;;) {
      const status = await this.cri.imageStatus(image.name);
      if (status?.id === image.configDigest) return performance.now() - t0;
      if (Date.now() > deadline) throw new WeftError('WEFT_ERR_HARNESS', `CRI does not report ${image.name} after import (ImageStatus: ${JSON.stringify(status)})`);
      await sleep(20);
    }
  }

  /** Links `path` into the CNI bin dir as `name` (a plugin runs under the name its config's `type` gives). */
  linkCniPlugin(name: string, path: string): void {
    const link = join(this.cniBinDir, name);
    rmSync(link, { force: true });
    symlinkSync(path, link);
  }

  /**
   * Writes a CNI config (a conflist when it has `plugins`) into the conf dir, atomically: containerd watches the
   * directory and must never load half a file. The name decides its rank (the first by name is used).
   */
  writeCniConfig(fileName: string, config: object): string {
    const file = join(this.cniConfDir, fileName);
    const tmp = join(this.cniConfDir, `.${fileName}.tmp`); // libcni reads only .conf, .conflist and .json files
    writeFileSync(tmp, JSON.stringify(config, null, 2) + '\n');
    renameSync(tmp, file);
    return file;
  }

  removeCniConfig(fileName: string): void {
    rmSync(join(this.cniConfDir, fileName), { force: true });
  }

  /** Polls the CRI's NetworkReady condition (true once containerd has loaded a CNI config) until it is `ready`. */
  async waitNetworkReady(ready = true, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const cond = (await this.cri.status()).find((c) => c.type === 'NetworkReady');
      if (cond && cond.status === ready) return;
      if (Date.now() > deadline) throw new WeftError('WEFT_ERR_HARNESS', `NetworkReady not ${ready} after ${timeoutMs} ms: ${JSON.stringify(cond)}`);
      await sleep(50);
    }
  }

  /** The sandbox config kubelet would send for pod `name` in `namespace`, placed in this host's pod cgroup. */
  podConfig(name: string, extra: { namespace?: string; uid?: string; labels?: Record<string, string>; annotations?: Record<string, string> } = {}): PodSandboxConfig {
    const namespace = extra.namespace ?? 'default';
    return {
      metadata: { name, uid: extra.uid ?? `uid-${namespace}-${name}`, namespace, attempt: 0 },
      hostname: name,
      labels: { 'io.kubernetes.pod.name': name, 'io.kubernetes.pod.namespace': namespace, ...extra.labels },
      annotations: extra.annotations ?? {},
      linux: {
        cgroupParent: this.cgroupParent,
        securityContext: { namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } },
      },
    };
  }

  /** RunPodSandbox for pod `name`, then its status: id, IP, the sandbox process. Fails with the runtime's CriError. */
  async runPod(name: string, extra: Parameters<ContainerdHost['podConfig']>[1] = {}): Promise<CriPod> {
    const t0 = performance.now();
    const id = await this.cri.runPodSandbox(this.podConfig(name, extra));
    const runMs = performance.now() - t0;
    return CriPod.of(this, id, runMs);
  }

  /** The pods this runtime holds, as CriPods (sandboxes not ready have no process: pid 0). */
  async pods(): Promise<CriPod[]> {
    const out: CriPod[] = [];
    for (const s of await this.cri.listPodSandbox()) out.push(await CriPod.of(this, s.id, 0));
    return out;
  }

  /** Remembers a process started for a pod, killed by PID on stop() if it is still running. */
  track(child: ChildProcess): ChildProcess {
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /**
   * Stops this runtime and everything it started: sandboxes stopped and removed over the CRI (CNI DEL for each),
   * containerd SIGTERMed (SIGKILL after `graceMs`), leftover shims and pod processes killed by PID, the pod cgroups
   * and the directory removed. Safe to call twice.
   */
  async stop(graceMs = 10_000): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const c of this.children) if (c.pid) kill(c.pid);
    const proc = this.proc;
    if (proc && this.running) {
      const sandboxes = await this.cri.listPodSandbox().catch(() => []);
      await Promise.all(
        sandboxes.map(async (s) => {
          await this.cri.stopPodSandbox(s.id).catch(() => undefined);
          await this.cri.removePodSandbox(s.id).catch(() => undefined);
        }),
      );
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }
    this.cri.close();
    running.delete(this);
    this.killLeftovers();
    // Pod processes take a moment to leave their cgroups after SIGKILL.
    for (let i = 0; i < 50 && !this.removeCgroups(); i++) await sleep(20);
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last resort (process exit): SIGKILL containerd, its shims and this host's pods. */
  killNow(): void {
    if (this.proc?.pid) kill(this.proc.pid);
    for (const c of this.children) if (c.pid) kill(c.pid);
    this.killLeftovers();
    this.removeCgroups();
  }

  /** This instance's processes still alive: containerd, shims (by socket or marker) and pod processes. */
  leftoverPids(): number[] {
    const pids = new Set<number>();
    const marker = `${MARKER}=${process.pid}:${this.dir}`;
    for (const p of processes()) {
      const i = p.argv.indexOf('-address');
      if ((i >= 0 && p.argv[i + 1] === this.socket) || p.environ().includes(marker)) pids.add(p.pid);
    }
    for (const d of cgroupDirs(this.cgroupParent.slice(1))) cgroupTreePids(d, pids);
    return [...pids].filter((pid) => pid !== process.pid);
  }

  private killLeftovers(): void {
    for (const pid of this.leftoverPids()) kill(pid);
  }

  private removeCgroups(): boolean {
    return cgroupDirs(this.cgroupParent.slice(1))
      .map((d) => removeCgroupTree(d))
      .every(Boolean);
  }
}

/** A pod sandbox run through the CRI: its id, the IP the runtime reported, and its process (for entering its netns). */
export class CriPod {
  private constructor(
    readonly host: ContainerdHost,
    readonly id: string,
    readonly name: string,
    /** The IP PodSandboxStatus reports (from the CNI result). */
    readonly ip: string,
    /** The sandbox (pause) process, in the pod's network namespace; 0 when not running. */
    readonly pid: number,
    /** The netns file as containerd sees it (a bind mount in containerd's mount namespace, not visible outside). */
    readonly netnsPath: string,
    /** How long RunPodSandbox took (0 when the pod was listed, not run, here). */
    readonly runMs: number,
  ) {}

  static async of(host: ContainerdHost, id: string, runMs: number): Promise<CriPod> {
    const s = await host.cri.podSandboxStatus(id, true);
    const info = (s.info.info ?? {}) as { pid?: number; runtimeSpec?: { linux?: { namespaces?: { type: string; path?: string }[] } } };
    const netnsPath = info.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network')?.path ?? '';
    // A stopped sandbox's process is gone (and its pid may be reused): only a ready one is entered.
    return new CriPod(host, id, s.metadata.name, s.ip, s.state === 'SANDBOX_READY' ? (info.pid ?? 0) : 0, netnsPath, runMs);
  }

  /** The pod's network namespace as this process can open it. */
  get netnsFile(): string {
    return `/proc/${this.pid}/ns/net`;
  }

  /** PodSandboxStatus, verbose. */
  status(): Promise<PodSandboxStatus> {
    return this.host.cri.podSandboxStatus(this.id, true);
  }

  /** Runs a command of this machine in the pod's network namespace (`nsenter --net`); resolves with stdout. */
  async exec(cmd: string, ...args: string[]): Promise<string> {
    if (!this.pid) throw new WeftError('WEFT_ERR_HARNESS', `pod ${this.name} has no sandbox process`);
    const child = execFileP(NSENTER, [`--net=${this.netnsFile}`, '--', cmd, ...args], { maxBuffer: 16 << 20 });
    this.host.track(child.child);
    return (await child).stdout;
  }

  /** Starts a long-running command in the pod's network namespace; killed by PID when the host stops. */
  spawn(cmd: string, args: readonly string[]): ChildProcess {
    if (!this.pid) throw new WeftError('WEFT_ERR_HARNESS', `pod ${this.name} has no sandbox process`);
    return this.host.track(spawn(NSENTER, [`--net=${this.netnsFile}`, '--', cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
  }

  /** StopPodSandbox then RemovePodSandbox, as kubelet does when a pod is deleted; resolves with the time each took. */
  async remove(): Promise<{ stopMs: number; removeMs: number }> {
    const t0 = performance.now();
    await this.host.cri.stopPodSandbox(this.id);
    const t1 = performance.now();
    await this.host.cri.removePodSandbox(this.id);
    return { stopMs: t1 - t0, removeMs: performance.now() - t1 };
  }
}
