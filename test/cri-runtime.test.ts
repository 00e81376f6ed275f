import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { removeAtExit } from './harness/at-exit.js';
import { bridgeConflist, ContainerdHost, type CriPod } from './harness/containerd.js';
import { CriError } from './harness/cri.js';
import { cleanupLeftovers, Netns, RUN_PREFIX, Switch } from './harness/netns.js';

const NET = 'crinet';
const SUBNET_PREFIX = '10.244.9.';

/** A CNI plugin that refuses every ADD with a CNI error object, as a plugin missing its subnet file would. */
const FAILING_PLUGIN = `#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
  ADD) printf '%s\\n' '{"cniVersion":"1.0.0","code":11,"msg":"no subnet file here","details":"test plugin refuses every ADD"}'; exit 1 ;;
  VERSION) printf '%s\\n' '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}' ;;
esac
exit 0
`;

/** A live process (a zombie holds nothing: PID 1 reaps it). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat[stat.lastIndexOf(')') + 2] !== 'Z';
  } catch {
    return false;
  }
}

/** Machine paths a runtime would use by default; this suite must leave them as it found them. */
const MACHINE_PATHS = ['/var/lib/cni', '/var/lib/containerd', '/opt/cni', '/etc/cni'];

/**
 * A CNI plugin that records each call (one JSON line in <base>.log) and answers ADD with 10.9.9.9 in the version of
 * its config, or in the version written in <base>.version. (It runs as the link in the bin dir: $0 is not <base>.)
 */
const recordingPlugin = (base: string) => `#!/bin/sh
base='${base}'
conf=$(cat)
ver=$(printf '%s' "$conf" | sed -n 's/.*"cniVersion" *: *"\\([^"]*\\)".*/\\1/p')
printf '{"cmd":"%s","id":"%s","ifname":"%s","netns":"%s","version":"%s"}\\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$CNI_NETNS" "$ver" >> "$base.log"
[ -s "$base.version" ] && ver=$(cat "$base.version")
case "$CNI_COMMAND" in
  ADD) printf '{"cniVersion":"%s","ips":[{"address":"10.9.9.9/24"}]}\\n' "$ver" ;;
  VERSION) printf '%s\\n' '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}' ;;
esac
exit 0
`;

describe('a real Kubernetes runtime: containerd CRI + stock CNI bridge/host-local in a host namespace @real', function () {
  this.timeout(120_000);
  const dir = join('/tmp', `${RUN_PREFIX}cri`);
  let sw: Switch;
  let ns: Netns;
  let host: ContainerdHost;
  const times: Record<string, number> = {};
  const machineBefore = new Map<string, boolean>();
  const machineNetns = () => (existsSync('/var/run/netns') ? readdirSync('/var/run/netns').filter((n) => n.startsWith('cni-')) : []);
  let netnsBefore: string[] = [];

  const ipamDir = () => host.hostPath(`/var/lib/cni/networks/${NET}`);
  /** host-local's reservations: one file per IP, named by the IP. */
  const reservations = () => (existsSync(ipamDir()) ? readdirSync(ipamDir()).filter((f) => f.startsWith(SUBNET_PREFIX)) : []);
  const bridgePorts = async () => (await ns.ipJson<{ ifname: string }[]>('link', 'show', 'master', 'cni0')).map((l) => l.ifname);
  const netnsFiles = () => {
    const d = join(host.dir, 'state', 'io.containerd.grpc.v1.cri', 'netns');
    return existsSync(d) ? readdirSync(d) : [];
  };
  const shims = () =>
    host.leftoverPids().filter((pid) => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').startsWith('/usr/bin/containerd-shim-runc-v2');
      } catch {
        return false; // exited meanwhile
      }
    });

  before(async () => {
    await cleanupLeftovers();
    for (const p of MACHINE_PATHS) machineBefore.set(p, existsSync(p));
    netnsBefore = machineNetns();
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    removeAtExit(dir);
    sw = await Switch.create('crisw');
    ns = await sw.addHost('crih1', '198.18.0.1/24');
    const t0 = performance.now();
    host = await ContainerdHost.start({ netns: ns, dir: join(dir, 'h1') });
    times.startMs = performance.now() - t0;
    times.readyMs = host.timings.readyMs;
    times.importMs = host.timings.importMs;
    // host-local without dataDir: its reservations land in /var/lib/cni/networks, which is this host's own here.
    host.writeCniConfig('10-crinet.conflist', bridgeConflist({ name: NET, subnet: `${SUBNET_PREFIX}0/24`, routes: ['10.244.0.0/16'] }));
    await host.waitNetworkReady();
  });

  after(async () => {
    await host?.stop();
    await sw?.ns.delete();
    await ns?.delete();
    rmSync(dir, { recursive: true, force: true });
    const f = (k: string) => (times[k] === undefined ? '-' : `${Math.round(times[k]!)} ms`);
    console.log(
      `      containerd ready ${f('readyMs')}, image import ${f('importMs')}, start in all ${f('startMs')}; ` +
        `RunPodSandbox ${f('run1Ms')} / ${f('run2Ms')}, 10 pods: run ${f('run10Ms')} (median ${f('run10MedianMs')}), ` +
        `remove ${f('remove10Ms')}; StopPodSandbox ${f('stopMs')}, RemovePodSandbox ${f('removeMs')}; stop ${f('hostStopMs')}`,
    );
  });

  it('containerd answers the CRI from inside the host namespace, with the sandbox image imported, not pulled', async () => {
    const v = await host.cri.version();
    expect(v.runtimeName).to.equal('containerd');
    expect(v.runtimeApiVersion).to.equal('v1');
    expect(execFileSync('ip', ['netns', 'identify', String(host.pid)], { encoding: 'utf8' }).trim()).to.equal(ns.name);
    const conditions = Object.fromEntries((await host.cri.status()).map((c) => [c.type, c.status]));
    expect(conditions).to.deep.equal({ RuntimeReady: true, NetworkReady: true });
    const image = await host.cri.imageStatus(host.image.name);
    expect(image?.id).to.equal(host.image.configDigest);
    expect(image?.repoTags).to.deep.equal([host.image.name]);
    // containerd's mounts stay in its own mount namespace.
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.to.include(dir);
  });

  // Mocha runs a suite's own tests before its nested suites: these stay flat, in order.
  let p1: CriPod;
  let p2: CriPod;  it('RunPodSandbox attaches each pod through the conflist; PodSandboxStatus reports its IP', async () => {
    p1 = await host.runPod('web-1');
    p2 = await host.runPod('web-2');
    times.run1Ms = p1.runMs;
    times.run2Ms = p2.runMs;
    for (const p of [p1, p2]) {
      expect(p.ip).to.match(new RegExp(`^${SUBNET_PREFIX.replace(/\./g, '\\.')}\\d+$`));
      expect((await p.status()).state).to.equal('SANDBOX_READY');
      const [eth0] = await p.exec('ip', '-j', '-4', 'addr', 'show', 'dev', 'eth0').then((o) => JSON.parse(o) as { addr_info: { local: string }[] }[]);
      expect(eth0!.addr_info.map((a) => a.local)).to.deep.equal([p.ip]);
      // The pod's netns is its own, not the host's.
      expect(execFileSync('ip', ['netns', 'identify', String(p.pid)], { encoding: 'utf8' }).trim()).to.equal('');
    }
    expect(p1.ip).not.to.equal(p2.ip);
    expect(reservations().sort()).to.deep.equal([p1.ip, p2.ip].sort());
    expect(readFileSync(join(ipamDir(), p1.ip), 'utf8')).to.match(new RegExp(`^${p1.id}\\s+eth0`));
    expect(await bridgePorts()).to.have.length(2);
    expect(netnsFiles()).to.have.length(2);
    expect((await host.cri.listPodSandbox()).map((s) => s.id).sort()).to.deep.equal([p1.id, p2.id].sort());
  });

  it('the host reaches both pods, and the pods reach each other', async () => {
    for (const p of [p1, p2]) expect(await ns.exec('ping', '-c', '1', '-W', '2', p.ip)).to.match(/1 received/);
    expect(await p1.exec('ping', '-c', '1', '-W', '2', p2.ip)).to.match(/1 received/);
    expect(await p2.exec('ping', '-c', '1', '-W', '2', p1.ip)).to.match(/1 received/);
    // Through the bridge's gateway address, which the route to the pod network uses.
    expect(await p1.exec('ip', 'route', 'show', '10.244.0.0/16')).to.match(new RegExp(`via ${SUBNET_PREFIX.replace(/\./g, '\\.')}1 dev eth0`));
  });

  it('StopPodSandbox + RemovePodSandbox free the IP and the veth; each may be repeated', async () => {
    let t = performance.now();
    await host.cri.stopPodSandbox(p1.id);
    times.stopMs = performance.now() - t;
    // Stopping releases the network (CNI DEL): the sandbox is still listed, not ready.
    expect(reservations()).to.deep.equal([p2.ip]);
    expect(await bridgePorts()).to.have.length(1);
    expect(netnsFiles()).to.have.length(1);
    expect(alive(p1.pid)).to.equal(false);
    expect((await p1.status()).state).to.equal('SANDBOX_NOTREADY');
    await host.cri.stopPodSandbox(p1.id); // kubelet may stop twice
    t = performance.now();
    await host.cri.removePodSandbox(p1.id);
    times.removeMs = performance.now() - t;
    await host.cri.removePodSandbox(p1.id); // and remove twice
    // A removed sandbox is unknown: containerd answers NOT_FOUND to a status and to a late stop.
    for (const call of [() => host.cri.podSandboxStatus(p1.id), () => host.cri.stopPodSandbox(p1.id)]) {
      const err = await call().catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CriError);
      expect((err as CriError).code).to.equal('WEFT_ERR_HARNESS');
      expect((err as CriError).grpcCode).to.equal(5); // NOT_FOUND
    }
    await p2.remove();
    expect(reservations()).to.deep.equal([]);
    expect(await bridgePorts()).to.deep.equal([]);
  });

  it('a CNI plugin\'s error object reaches the CRI caller, and the failed sandbox leaves nothing behind', async () => {
    const script = join(dir, 'failing-plugin');
    writeFileSync(script, FAILING_PLUGIN);
    chmodSync(script, 0o755);
    host.linkCniPlugin('bridge', script); // plugins are looked up at each call: no config reload involved
    try {
      const err = await host.runPod('doomed').catch((e: unknown) => e);
      expect(err).to.be.instanceOf(CriError);
      const e = err as CriError;
      expect(e.grpcCode).to.equal(2); // UNKNOWN: containerd wraps the plugin's failure
      expect(e.details).to.include('failed to setup network for sandbox');
      expect(e.details).to.include('plugin type="bridge"');
      expect(e.details).to.include('no subnet file here');
    } finally {
      host.linkCniPlugin('bridge', '/usr/lib/cni/bridge');
    }
    expect(await host.cri.listPodSandbox()).to.deep.equal([]);
    expect(netnsFiles()).to.deep.equal([]);
    expect(shims()).to.deep.equal([]);
    // The stock plugin is back: the same pod now runs.
    const pod = await host.runPod('doomed');
    expect(pod.ip).to.match(/^10\.244\.9\./);
    await pod.remove();
  });

  it('10 pods created and removed leave no IP reservation, veth, netns, shim, cgroup or CNI cache entry', async () => {
    const t0 = performance.now();
    const pods = await Promise.all(Array.from({ length: 10 }, (_, i) => host.runPod(`batch-${i}`)));
    times.run10Ms = performance.now() - t0;
    const sorted = pods.map((p) => p.runMs).sort((a, b) => a - b);
    times.run10MedianMs = (sorted[4]! + sorted[5]!) / 2;
    expect(new Set(pods.map((p) => p.ip)).size).to.equal(10);
    expect(reservations()).to.have.length(10);
    expect(await bridgePorts()).to.have.length(10);
    expect(shims()).to.have.length(10);
    const t1 = performance.now();
    await Promise.all(pods.map((p) => p.remove()));
    times.remove10Ms = performance.now() - t1;
    expect(reservations()).to.deep.equal([]);
    expect(await bridgePorts()).to.deep.equal([]);
    expect(netnsFiles()).to.deep.equal([]);
    expect(await host.cri.listPodSandbox()).to.deep.equal([]);
    // Shims exit once their sandbox is removed; their zombies are left out.
    for (let i = 0; i < 50 && shims().length; i++) await new Promise((r) => setTimeout(r, 20));
    expect(shims()).to.deep.equal([]);
    // runc removed each sandbox's cgroup: only the (empty) parent remains until stop.
    const pidsParent = join('/sys/fs/cgroup/pids', host.cgroupParent);
    if (existsSync(pidsParent)) expect(readdirSync(pidsParent, { withFileTypes: true }).filter((d) => d.isDirectory())).to.deep.equal([]);
    // libcni's result cache (/var/lib/cni/results, this host's own) is empty again.
    const results = host.hostPath('/var/lib/cni/results');
    expect(existsSync(results) ? readdirSync(results) : []).to.deep.equal([]);
  });

  it('stop leaves no process, mount, cgroup or file of the runtime behind', async () => {
    const pod = await host.runPod('left-running'); // stop() has to clear it
    expect(pod.ip).to.match(/^10\.244\.9\./);
    const pids = host.leftoverPids();
    expect(pids).to.include(host.pid);
    const t0 = performance.now();
    await host.stop();
    times.hostStopMs = performance.now() - t0;
    expect(host.leftoverPids()).to.deep.equal([]);
    for (const pid of [...pids, pod.pid]) expect(alive(pid), `pid ${pid}`).to.equal(false);
    expect(readFileSync('/proc/self/mountinfo', 'utf8')).not.to.include(dir);
    expect(existsSync(host.dir)).to.equal(false);
    for (const h of readdirSync('/sys/fs/cgroup')) expect(existsSync(join('/sys/fs/cgroup', h, host.cgroupParent)), h).to.equal(false);
    // The machine's own runtime paths were never used: pod netns files, CNI cache and IPAM, containerd's root.
    for (const p of MACHINE_PATHS) expect(existsSync(p), p).to.equal(machineBefore.get(p));
    expect(machineNetns()).to.deep.equal(netnsBefore);
  });
});

describe('what containerd 1.6 asks of a CNI plugin, recorded @real', function () {
  this.timeout(60_000);
  const dir = join('/tmp', `${RUN_PREFIX}cri-rec`);
  const plugin = join(dir, 'recorder');
  let ns: Netns;
  let host: ContainerdHost;
  interface Call {
    cmd: string;
    id: string;
    ifname: string;
    netns: string;
    version: string;
  }
  const calls = (): Call[] => (existsSync(`${plugin}.log`) ? readFileSync(`${plugin}.log`, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Call) : []);
  const drain = (): Call[] => {
    const c = calls();
    rmSync(`${plugin}.log`, { force: true });
    return c;
  };

  before(async () => {
    await cleanupLeftovers();
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    removeAtExit(dir);
    writeFileSync(plugin, recordingPlugin(plugin));
    chmodSync(plugin, 0o755);
    ns = await Netns.create('crirec');
    host = await ContainerdHost.start({ netns: ns, dir: join(dir, 'h'), cniPlugins: { loopback: '/usr/lib/cni/loopback', recorder: plugin } });
    host.writeCniConfig('10-rec.conflist', { cniVersion: '1.0.0', name: 'rec', plugins: [{ type: 'recorder' }] });
    await host.waitNetworkReady();
  });

  after(async () => {
    await host?.stop();
    await ns?.delete();
    rmSync(dir, { recursive: true, force: true });
  });

  it('one ADD per sandbox, with the netns path; the IP the plugin returns is what PodSandboxStatus reports', async () => {
    const pod = await host.runPod('rec-1');
    expect(pod.ip).to.equal('10.9.9.9');
    expect(drain()).to.deep.equal([{ cmd: 'ADD', id: pod.id, ifname: 'eth0', netns: pod.netnsPath, version: '1.0.0' }]);
    expect(pod.netnsPath).to.match(/\/state\/io\.containerd\.grpc\.v1\.cri\/netns\/cni-[0-9a-f-]+$/);
  });

  it('a DEL on every StopPodSandbox and RemovePodSandbox: only the first has the netns, the later ones an empty CNI_NETNS', async () => {
    const [pod] = await host.pods();
    await host.cri.stopPodSandbox(pod!.id);
    await host.cri.stopPodSandbox(pod!.id);
    await host.cri.removePodSandbox(pod!.id);
    expect(drain().map((c) => [c.cmd, c.id, c.netns])).to.deep.equal([
      ['DEL', pod!.id, pod!.netnsPath],
      ['DEL', pod!.id, ''],
      ['DEL', pod!.id, ''],
    ]);
  });

  it('a 1.1.0 result is refused (libcni 1.1 knows results up to 1.0.0), and the failed ADD is followed by a DEL', async () => {
    writeFileSync(`${plugin}.version`, '1.1.0');
    try {
      const err = (await host.runPod('rec-2').catch((e: unknown) => e)) as CriError;
      expect(err).to.be.instanceOf(CriError);
      expect(err.details).to.include('plugin type="recorder" failed (add): unsupported CNI result version "1.1.0"');
    } finally {
      rmSync(`${plugin}.version`);
    }
    // Only ADD and DEL, here and above: containerd 1.6 sends no VERSION, CHECK, STATUS or GC.
    const c = drain();
    expect(c.map((x) => x.cmd)).to.deep.equal(['ADD', 'DEL']);
    expect(c[0]!.id).to.equal(c[1]!.id);
    expect(await host.cri.listPodSandbox()).to.deep.equal([]);
  });
});
