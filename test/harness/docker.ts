import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmdirSync, rmSync, symlinkSync, copyFileSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { atExit } from './at-exit.js';

const execFileP = promisify(execFile);
/** Debian's docker.io client, matching its 20.10 daemon (another docker CLI may shadow it on PATH). */
const DOCKER = '/usr/bin/docker';
export const BUSYBOX_IMAGE = 'local/busybox:latest';

const running = new Set<DockerHost>();
atExit(() => {
  for (const h of running) h.killNow();
});

/**
 * One real dockerd (Debian docker.io 20.10) inside a host network namespace,
 * with its own data-root, exec-root, socket and cgroup parent, so several
 * "hosts" run side by side and nothing touches the root namespace:
 * `--iptables=false --ip-masq=false` keep Docker's rules out, and the
 * bridge, veths and ip_forward live in the namespace. IPv6 needs nothing
 * more than weft's docker options (`--ipv6 --fixed-cidr-v6=...`): Docker 20.10
 * writes no ip6tables rules unless `--experimental --ip6tables`.
 */
export class DockerHost {
  private proc: ChildProcess | null = null;

  private constructor(
    readonly netns: string,
    /** Per-host directory; keep it short, the socket path must stay under 108 bytes. */
    readonly dir: string,
  ) {}

  get socket(): string {
    return join(this.dir, 'docker.sock');
  }

  private get cgroupParent(): string {
    return `/weft-test-${this.netns}`;
  }

  /** Starts dockerd in `netns` with the given network options (e.g. weft's --bip/--mtu) and imports a busybox image. */
  static async start(netns: string, dir: string, networkArgs: readonly string[]): Promise<DockerHost> {
    const host = new DockerHost(netns, dir);
    mkdirSync(dir, { recursive: true });
    await host.launch(networkArgs);
    running.add(host);
    await host.importBusybox(join(dir, '..', 'rootfs'));
    return host;
  }

  private async launch(networkArgs: readonly string[]): Promise<void> {
    const conf = join(this.dir, 'daemon.json');
    await import('node:fs/promises').then((fs) => fs.writeFile(conf, '{}\n')); // ignore the machine's /etc/docker/daemon.json
    const log = openSync(join(this.dir, 'dockerd.log'), 'a');
    // `ip netns exec` gives a private mount namespace with a fresh /sys that hides the cgroup
    // mounts (dockerd: "Devices cgroup isn't mounted"); mount them again from PID 1's table,
    // then exec dockerd so the PID we hold is dockerd's.
    const remountThenExec = 'grep -E "^[^ ]+ /sys/fs/cgroup" /proc/1/mounts | while read -r src dst fs opts _; do mkdir -p "$dst"; mountpoint -q "$dst" || mount -t "$fs" -o "$opts" "$src" "$dst"; done; exec "$@"';
    this.proc = spawn(
      'ip',
      [
        'netns', 'exec', this.netns, 'sh', '-c', remountThenExec, 'sh',
        'dockerd', '--config-file', conf, '--data-root', join(this.dir, 'data'), '--exec-root', join(this.dir, 'exec'),
        '--pidfile', join(this.dir, 'docker.pid'), '-H', `unix://${this.socket}`, '--cgroup-parent', this.cgroupParent,
        '--iptables=false', '--ip-masq=false', ...networkArgs,
      ],
      { stdio: ['ignore', log, log] },
    );
    closeSync(log);
    const deadline = Date.now() + 30_000;
    while (Date.now() < deadline) {
      if (this.proc.exitCode !== null) throw new Error(`dockerd in ${this.netns} exited: ${this.logTail()}`);
      try {
        await this.docker('version');
        return;
      } catch {
        await sleep(100);
      }
    }
    throw new Error(`dockerd in ${this.netns} not ready in 30 s: ${this.logTail()}`);
  }

  private logTail(): string {
    try {
      return readFileSync(join(this.dir, 'dockerd.log'), 'utf8').split('\n').slice(-4).join(' | ');
    } catch {
      return '';
    }
  }

  /** Runs the docker CLI against this host's daemon. */
  async docker(...args: string[]): Promise<string> {
    const { stdout } = await execFileP(DOCKER, ['-H', `unix://${this.socket}`, ...args], { maxBuffer: 16 << 20 });
    return stdout.trim();
  }

  /** A busybox image made from the static binary: no registry needed. */
  private async importBusybox(rootfs: string): Promise<void> {
    if (!existsSync(join(rootfs, 'bin', 'busybox'))) {
      for (const d of ['bin', 'etc', 'proc', 'sys', 'dev', 'tmp']) mkdirSync(join(rootfs, d), { recursive: true });
      copyFileSync('/bin/busybox', join(rootfs, 'bin', 'busybox'));
      const { stdout } = await execFileP('/bin/busybox', ['--list']);
      for (const applet of stdout.split('\n').filter((a) => a && a !== 'busybox')) {
        try {
          symlinkSync('busybox', join(rootfs, 'bin', applet));
        } catch {
          /* exists from a concurrent host */
        }
      }
    }
    await new Promise<void>((resolve, reject) => {
      const tar = spawn('tar', ['-C', rootfs, '-c', '.'], { stdio: ['ignore', 'pipe', 'ignore'] });
      const imp = spawn(DOCKER, ['-H', `unix://${this.socket}`, 'import', '-c', 'CMD ["/bin/sh"]', '-', BUSYBOX_IMAGE], { stdio: ['pipe', 'ignore', 'pipe'] });
      tar.stdout.pipe(imp.stdin);
      let err = '';
      imp.stderr.on('data', (d: Buffer) => (err += d.toString()));
      imp.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`docker import failed: ${err}`))));
    });
  }

  /** IPv4 address of a container on the default bridge. */
  async containerIP(name: string): Promise<string> {
    return this.docker('inspect', '-f', '{{.NetworkSettings.IPAddress}}', name);
  }

  /** Global IPv6 address of a container on the default bridge (dockerd started with `--ipv6 --fixed-cidr-v6`), '' without one. */
  async containerIPv6(name: string): Promise<string> {
    return this.docker('inspect', '-f', '{{.NetworkSettings.GlobalIPv6Address}}', name);
  }

  /**
   * Waits until the default bridge's IPv6 addresses have passed duplicate
   * address detection. dockerd adds its `--fixed-cidr-v6` gateway without
   * `nodad`, and DAD only starts once the first container's veth gives the
   * bridge a carrier: until then the gateway answers no neighbour
   * solicitation, and a container's first IPv6 packets are lost.
   */
  async waitBridgeIPv6(bridge = 'docker0', timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { stdout } = await execFileP('ip', ['-n', this.netns, '-6', 'addr', 'show', 'dev', bridge, 'tentative']);
      if (!stdout.trim()) return;
      if (Date.now() > deadline) throw new Error(`${bridge} in ${this.netns} still has tentative IPv6 addresses after ${timeoutMs} ms: ${stdout.trim()}`);
      await sleep(100);
    }
  }

  /**
   * Stops this dockerd and everything it started, by PID: containers removed
   * first (a busybox PID 1 ignores SIGTERM), then SIGTERM, then SIGKILL of
   * what is left in this instance's cgroups; then its directory.
   */
  async stop(): Promise<void> {
    running.delete(this);
    const proc = this.proc;
    if (proc && proc.exitCode === null && proc.signalCode === null) {
      const ids = await this.docker('ps', '-aq').catch(() => '');
      if (ids) await this.docker('rm', '-f', ...ids.split('\n')).catch(() => undefined);
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    this.killLeftovers();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last resort (process exit): SIGKILL dockerd and this instance's cgroup members. */
  killNow(): void {
    try {
      this.proc?.kill('SIGKILL');
    } catch {
      /* gone */
    }
    this.killLeftovers();
  }

  private killLeftovers(): void {
    for (const root of ['/sys/fs/cgroup/pids', '/sys/fs/cgroup']) {
      const parent = join(root, this.cgroupParent);
      if (!existsSync(parent)) continue;
      for (const child of readdirSync(parent, { withFileTypes: true }).filter((d) => d.isDirectory())) {
        try {
          for (const pid of readFileSync(join(parent, child.name, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
            try {
              process.kill(Number(pid), 'SIGKILL');
            } catch {
              /* gone */
            }
          }
        } catch {
          /* no procs file */
        }
      }
    }
    // containerd and its shims of this instance: found by this instance's exec-root in their command line.
    const execRoot = join(this.dir, 'exec');
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      try {
        const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
        if (cmd.includes(execRoot)) process.kill(Number(pid), 'SIGKILL');
      } catch {
        /* gone */
      }
    }
    // Per-instance cgroup directories are machine-global: remove them, deepest first.
    const tops = [join('/sys/fs/cgroup', this.cgroupParent)];
    for (const ctl of existsSync('/sys/fs/cgroup') ? readdirSync('/sys/fs/cgroup') : []) tops.push(join('/sys/fs/cgroup', ctl, this.cgroupParent));
    for (const top of tops.filter((t) => existsSync(t))) removeCgroupTree(top);
    try {
      for (const id of readdirSync(join(this.dir, 'data', 'containers'))) {
        const hash = createHash('sha256').update(`${join(this.dir, 'exec')}/containerd/containerd.sock/moby/${id}`).digest('hex');
        rmSync(`/run/containerd/s/${hash}`, { force: true });
      }
    } catch {
      /* no containers */
    }
  }
}

function removeCgroupTree(dir: string): void {
  try {
    for (const child of readdirSync(dir, { withFileTypes: true })) if (child.isDirectory()) removeCgroupTree(join(dir, child.name));
    rmdirSync(dir);
  } catch {
    /* busy or gone */
  }
}
