/**
 * weft-cni with the real delegates (Debian's containernetworking-plugins:
 * bridge, host-local) inside namespaces: a host namespace with a subnet file
 * in a temporary directory, pods attached by the plugin as a runtime runs it
 * (`ip netns exec HOST plugin`, CNI_* in the environment, the config on
 * stdin). The plugin is installed by `weftctl cni install` (the shipped
 * bundle) twice: as `flannel` through a symlink, as `weft` by a copy, the
 * copy under a package.json with "type": "module" (so it runs as an ES module).
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './harness/at-exit.js';
import { Netns } from './harness/netns.js';

const DIST_BIN = fileURLToPath(new URL('../bin/', import.meta.url));
const DEBIAN_PLUGINS = '/usr/lib/cni';
const SUBNET = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n';

interface Run {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs `cmd` inside `ns` with exactly `env` (plus PATH), `stdin` on its stdin. */
function runIn(ns: Netns, cmd: string, args: string[], env: Record<string, string>, stdin = ''): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn('ip', ['netns', 'exec', ns.name, cmd, ...args], { env: { PATH: process.env.PATH!, ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    // `node -e 0` and a failing plugin may exit before reading their stdin: that EPIPE is not the run's failure.
    child.stdin.on('error', () => undefined);
    child.on('close', (status) => resolve({ status: status ?? -1, stdout, stderr, ms: Number(process.hrtime.bigint() - started) / 1e6 }));
    child.stdin.end(stdin);
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

describe('cni-real: weft-cni with the real bridge and host-local in namespaces @real', function () {
  this.timeout(180_000);
  let host: Netns;
  let dir: string;
  let binDir: string;
  let subnetFile: string;
  let stateDir: string;
  let ipamDir: string;
  const pods: Netns[] = [];

  before(async function () {
    if (!existsSync(join(DEBIAN_PLUGINS, 'bridge'))) throw new Error(`${DEBIAN_PLUGINS}/bridge missing: apt-get install containernetworking-plugins`);
    dir = tempDir('weft-cni-real-');
    // A copy without .cjs below this runs as an ES module.
    writeFileSync(join(dir, 'package.json'), '{"type":"module"}\n');
    binDir = join(dir, 'opt/cni/bin');
    subnetFile = join(dir, 'run/flannel/subnet.env');
    stateDir = join(dir, 'var/lib/cni/flannel');
    ipamDir = join(dir, 'var/lib/cni/networks');
    host = await Netns.create('cnih');
    const weftctl = join(DIST_BIN, 'weftctl.cjs');
    const confDir = join(dir, 'etc/cni/net.d');
    for (const args of [['--name', 'flannel', '--link'], ['--name', 'weft']]) {
      const r = await runIn(host, weftctl, ['cni', 'install', '--bin-dir', binDir, '--conf-dir', confDir, ...args], {});
      expect(r.status, r.stderr).to.equal(0);
    }
  });

  after(async () => {
    for (const p of pods) await p.delete();
    await host?.delete();
  });

  function conf(o: Record<string, unknown> = {}): string {
    // What a runtime hands the first plugin of the installed conflist, plus this test's paths (host-local's store
    // per host, never the machine's /var/lib/cni/networks).
    return JSON.stringify({
      cniVersion: '1.0.0',
      name: 'cbr0',
      type: 'flannel',
      subnetFile,
      dataDir: stateDir,
      delegate: { hairpinMode: true, isDefaultGateway: true },
      ipam: { dataDir: ipamDir },
      ...o,
    });
  }

  /** The subnet file, as weftd writes it once it holds a lease. */
  function writeSubnet(text = SUBNET): void {
    mkdirSync(join(dir, 'run/flannel'), { recursive: true });
    writeFileSync(subnetFile, text);
  }

  async function pod(short: string): Promise<Netns> {
    const ns = await Netns.create(short);
    pods.push(ns);
    return ns;
  }

  function cni(command: string, p: Netns | null, o: { plugin?: string; stdin?: string; env?: Record<string, string>; id?: string; ifname?: string } = {}): Promise<Run> {
    const env: Record<string, string> = { CNI_COMMAND: command, CNI_PATH: `${binDir}:${DEBIAN_PLUGINS}` };
    if (p) Object.assign(env, { CNI_CONTAINERID: o.id ?? `id-${p.name}`, CNI_NETNS: `/var/run/netns/${p.name}`, CNI_IFNAME: o.ifname ?? 'eth0' });
    return runIn(host, join(binDir, o.plugin ?? 'flannel'), [], { ...env, ...o.env }, o.stdin ?? conf());
  }

  async function ok(r: Promise<Run>): Promise<Run> {
    const run = await r;
    expect(run.status, `${run.stdout}\n${run.stderr}`).to.equal(0);
    return run;
  }

  /** host-local's reservations: one file per address in its store. */
  const reserved = () => (existsSync(join(ipamDir, 'cbr0')) ? readdirSync(join(ipamDir, 'cbr0')).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)).sort() : []);
  const saved = () => (existsSync(stateDir) ? readdirSync(stateDir).sort() : []);
  const veths = async () => (await host.ipJson<Array<{ ifname: string }>>('link', 'show', 'type', 'veth')).map((l) => l.ifname);

  it('weftctl cni install put the plugin in place as flannel (symlink) and weft (copy), and the conflist', () => {
    expect(lstatSync(join(binDir, 'flannel')).isSymbolicLink()).to.equal(true);
    expect(lstatSync(join(binDir, 'weft')).isFile()).to.equal(true);
    const conflists = readdirSync(join(dir, 'etc/cni/net.d')).sort();
    expect(conflists).to.deep.equal(['10-flannel.conflist', '10-weft.conflist']);
    const list = JSON.parse(readFileSync(join(dir, 'etc/cni/net.d/10-weft.conflist'), 'utf8'));
    expect(list.plugins.map((p: { type: string }) => p.type)).to.deep.equal(['weft', 'portmap']);
  });

  it('both run on their own, with the build\'s code cache: VERSION through the symlink and through the copy (an ES module here)', async () => {
    const preload = join(dir, 'report-cache.cjs');
    writeFileSync(preload, 'process.on("exit", () => process.stderr.write("code cache " + globalThis.__weftCodeCache + "\\n"));\n');
    for (const name of ['flannel', 'weft']) {
      const r = await ok(runIn(host, 'node', ['-r', preload, join(binDir, name)], { CNI_COMMAND: 'VERSION' }, '{"cniVersion":"1.0.0"}'));
      expect(JSON.parse(r.stdout)).to.deep.equal({ cniVersion: '1.0.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
      expect(r.stderr.trim(), name).to.equal('code cache used');
    }
  });

  it('a broken config or environment: a CNI error object on stdout, exit 1, no stack trace', async () => {
    const p = await pod('cnibad');
    rmSync(subnetFile, { force: true });
    const cases: Array<[Promise<Run>, number, RegExp]> = [
      [cni('ADD', p, { stdin: '{"cniVersion":' }), 6, /network config on stdin is not JSON/],
      [cni('ADD', p, { stdin: conf({ cniVersion: '0.2.0' }) }), 1, /cniVersion "0.2.0" is not supported/],
      [cni('ADD', p, { stdin: conf({ delegate: { name: 'x' } }) }), 7, /"delegate" must not have a "name"/],
      [cni('ADD', p), 11, new RegExp(`subnet file ${subnetFile} does not exist: weftd writes it once it holds a lease for this node`)],
      [cni('ADD', p, { env: { CNI_IFNAME: 'bad/name' } }), 4, /CNI_IFNAME="bad\/name" is not an interface name/],
      [cni('BOGUS', p, { plugin: 'weft' }), 4, /CNI_COMMAND="BOGUS" is not a CNI command/],
    ];
    for (const [run, code, msg] of cases) {
      const r = await run;
      expect(r.status, r.stdout).to.equal(1);
      const e = JSON.parse(r.stdout) as { cniVersion: string; code: number; msg: string; details: string };
      expect(e.code, r.stdout).to.equal(code);
      expect(e.msg).to.match(msg);
      expect(e).to.have.all.keys('cniVersion', 'code', 'msg', 'details');
      expect(r.stdout + r.stderr).to.not.match(/\n\s+at /);
    }
    expect(saved()).to.deep.equal([]);
  });

  it('STATUS: not ready (50) without the subnet file, ready with it', async () => {
    rmSync(subnetFile, { force: true });
    const stdin = conf({ cniVersion: '1.1.0' });
    const notReady = await cni('STATUS', null, { stdin });
    expect(notReady.status).to.equal(1);
    expect(JSON.parse(notReady.stdout)).to.deep.include({ cniVersion: '1.1.0', code: 50 });
    expect(JSON.parse(notReady.stdout).msg).to.match(/weftd writes it once it holds a lease/);
    writeSubnet();
    const ready = await ok(cni('STATUS', null, { stdin }));
    expect(ready.stdout).to.equal('');
  });

  it('ADD (as flannel): the pod gets an address in the node\'s subnet, pings its gateway, routes to the network; DEL frees address and veth, twice is fine', async () => {
    writeSubnet();
    const p = await pod('cnip1');
    const add = await ok(cni('ADD', p));
    const result = JSON.parse(add.stdout) as { ips: Array<{ address: string; gateway: string }>; interfaces: Array<{ name: string; sandbox?: string }> };
    const [ip] = result.ips;
    expect(ip!.address).to.match(/^10\.244\.7\.\d+\/24$/);
    expect(ip!.gateway).to.equal('10.244.7.1');
    const addrs = await p.ipJson<Array<{ addr_info: Array<{ local: string }>; mtu: number }>>('addr', 'show', 'eth0');
    expect(addrs[0]!.addr_info.map((a) => a.local)).to.include(ip!.address.split('/')[0]);
    expect(addrs[0]!.mtu).to.equal(1450);
    const routes = await p.ipJson<Array<{ dst: string; gateway?: string }>>('route');
    expect(routes.find((r) => r.dst === '10.244.0.0/16')?.gateway).to.equal('10.244.7.1');
    expect(routes.find((r) => r.dst === 'default')?.gateway).to.equal('10.244.7.1');
    await p.exec('ping', '-c', '1', '-W', '2', '10.244.7.1');
    expect(saved()).to.deep.equal([`id-${p.name}@eth0`]);
    expect(reserved()).to.deep.equal([ip!.address.split('/')[0]]);
    expect(await veths()).to.have.length(1);

    await ok(cni('DEL', p));
    expect(saved()).to.deep.equal([]);
    expect(reserved()).to.deep.equal([]);
    expect(await veths()).to.deep.equal([]);
    expect(await p.ipJson('link', 'show', 'eth0').catch(() => 'gone')).to.equal('gone');
    await ok(cni('DEL', p));
  });

  it('the copy (as weft) attaches and detaches the same way', async () => {
    writeSubnet();
    const p = await pod('cnip2');
    const add = await ok(cni('ADD', p, { plugin: 'weft' }));
    expect(JSON.parse(add.stdout).ips[0].address).to.match(/^10\.244\.7\.\d+\/24$/);
    await p.exec('ping', '-c', '1', '-W', '2', '10.244.7.1');
    await ok(cni('DEL', p, { plugin: 'weft' }));
    expect([saved(), reserved(), await veths()]).to.deep.equal([[], [], []]);
  });

  it('DEL with nothing saved succeeds and still releases the address (rebuilt from the subnet file)', async () => {
    writeSubnet();
    const p = await pod('cnip3');
    await ok(cni('ADD', p));
    rmSync(join(stateDir, `id-${p.name}@eth0`));
    await ok(cni('DEL', p));
    expect([reserved(), await veths()]).to.deep.equal([[], []]);
  });

  it('DEL after the pod\'s netns is gone succeeds and releases the address', async () => {
    writeSubnet();
    const p = await pod('cnip4');
    await ok(cni('ADD', p));
    await p.delete();
    const del = await ok(cni('DEL', p));
    expect(del.stdout).to.equal('');
    expect([saved(), reserved(), await veths()]).to.deep.equal([[], [], []]);
  });

  it('CHECK passes after ADD, and fails once the pod\'s interface is deleted', async () => {
    writeSubnet();
    const p = await pod('cnip5');
    const add = await ok(cni('ADD', p));
    const prevResult = JSON.parse(add.stdout) as unknown;
    await ok(cni('CHECK', p, { stdin: conf({ prevResult }) }));
    await p.ip('link', 'del', 'eth0');
    const check = await cni('CHECK', p, { stdin: conf({ prevResult }) });
    expect(check.status).to.equal(1);
    const e = JSON.parse(check.stdout) as { msg: string };
    expect(e.msg).to.match(/^delegate bridge CHECK failed: /);
    await ok(cni('DEL', p, { stdin: conf({ prevResult }) }));
    expect([saved(), reserved()]).to.deep.equal([[], []]);
  });

  it('GC releases and forgets the attachments the runtime no longer lists', async () => {
    writeSubnet();
    const keep = await pod('cnip6');
    const stale = await pod('cnip7');
    await ok(cni('ADD', keep));
    await ok(cni('ADD', stale));
    expect(reserved()).to.have.length(2);
    const stdin = conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': [{ containerID: `id-${keep.name}`, ifname: 'eth0' }] });
    await ok(cni('GC', null, { stdin }));
    expect(saved()).to.deep.equal([`id-${keep.name}@eth0`]);
    expect(reserved()).to.have.length(1);
    await ok(cni('DEL', keep));
    await ok(cni('DEL', stale));
    expect([saved(), reserved(), await veths()]).to.deep.equal([[], [], []]);
  });

  it('20 ADD/DEL cycles leave no reservation, veth or saved file (timed beside the bare bridge with the same delegate config, and node -e 0)', async () => {
    writeSubnet();
    const p = await pod('cnip8');
    // The delegate config weft-cni hands bridge, for the bare runs.
    await ok(cni('ADD', p, { id: 'probe' }));
    const delegateConfig = readFileSync(join(stateDir, 'probe@eth0'), 'utf8');
    await ok(cni('DEL', p, { id: 'probe' }));
    const t = { weftAdd: [] as number[], weftDel: [] as number[], bridgeAdd: [] as number[], bridgeDel: [] as number[], node: [] as number[] };
    // Interleaved, so that the machine's load (other tests run beside these) weighs on each the same.
    for (let i = 0; i < 20; i++) {
      t.weftAdd.push((await ok(cni('ADD', p, { id: `cycle${i}` }))).ms);
      t.weftDel.push((await ok(cni('DEL', p, { id: `cycle${i}` }))).ms);
      const env = { CNI_PATH: DEBIAN_PLUGINS, CNI_CONTAINERID: `bare${i}`, CNI_NETNS: `/var/run/netns/${p.name}`, CNI_IFNAME: 'eth0' };
      t.bridgeAdd.push((await ok(runIn(host, join(DEBIAN_PLUGINS, 'bridge'), [], { ...env, CNI_COMMAND: 'ADD' }, delegateConfig))).ms);
      t.bridgeDel.push((await ok(runIn(host, join(DEBIAN_PLUGINS, 'bridge'), [], { ...env, CNI_COMMAND: 'DEL' }, delegateConfig))).ms);
      t.node.push((await ok(runIn(host, 'node', ['-e', '0'], {}))).ms);
    }
    expect([saved(), reserved(), await veths()]).to.deep.equal([[], [], []]);
    const f = (xs: number[]) => `${median(xs).toFixed(0)} ms`;
    console.log(`      median of 20 (each through ip netns exec): weft ADD ${f(t.weftAdd)}, DEL ${f(t.weftDel)}; bare bridge ADD ${f(t.bridgeAdd)}, DEL ${f(t.bridgeDel)}; node -e 0 ${f(t.node)}`);
  });
});
