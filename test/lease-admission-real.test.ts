/**
 * Nothing from etcd can hurt a node (lease/admission.ts, backend/node-networks.ts),
 * on a two-host namespace cluster whose pod Network covers the hosts' LAN:
 * Network 198.18.0.0/16 with the hosts on 198.18.0.0/24, legal because the
 * default SubnetMin skips the first /24. Every bad lease is written and
 * removed under a continuous pod-to-pod ping, which loses nothing.
 */
import { expect } from 'chai';
import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster, type WeftNode } from './harness/cluster.js';
import { eventually } from './harness/netns.js';
import { Pod, type PingStream } from './harness/pod.js';

const P = '/coreos.com/network';
const WEFTCTL = fileURLToPath(new URL('../bin/weftctl.cjs', import.meta.url));
const vx = (ip: string, mac: string) => JSON.stringify({ PublicIP: ip, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });

interface Refused {
  key: string;
  subnet: string;
  reason: string;
  detail: string;
  winner: string | null;
}

async function status(n: WeftNode): Promise<{ refused: Refused[]; ownLeaseConflict: Refused | null; lease: { subnet: string } }> {
  return JSON.parse((await n.http('/status')).body) as never;
}

async function ctlJson<T>(n: WeftNode, ...args: string[]): Promise<T> {
  let out: string;
  try {
    out = await n.ns.exec('node', WEFTCTL, '--config', n.configFile, ...args, '--output', 'json');
  } catch (err) {
    out = (err as { stdout?: string }).stdout ?? '';
  }
  return JSON.parse(out) as T;
}

async function fdb(n: WeftNode): Promise<string[]> {
  return (await n.ns.bridgeJson<{ mac: string; dst?: string }[]>('fdb', 'show', 'dev', 'flannel.1')).filter((f) => f.dst).map((f) => `${f.mac}>${f.dst}`);
}

async function routesTo(n: WeftNode, dst: string): Promise<string[]> {
  return (await n.ns.ipJson<{ dst: string; dev: string; protocol?: string }[]>('route', 'show', dst)).map((r) => `${r.dst} dev ${r.dev} proto ${r.protocol ?? '?'}`);
}

describe('nothing from etcd can hurt a node: refused leases, under a continuous ping @real', function () {
  this.timeout(180_000);
  let cluster: Cluster;
  let pod1: Pod;
  let pod2: Pod;
  let ping: PingStream;
  const h1 = () => cluster.node(1);
  const h2 = () => cluster.node(2);
  const put = (name: string, value: string) => cluster.writeKeys([{ key: `${P}/subnets/${name}`, value }]);
  const del = (name: string) => cluster.writeKeys([{ key: `${P}/subnets/${name}`, value: null }]);

  before(async () => {
    cluster = await Cluster.create({ hosts: 3, networkConfig: '{"Network":"198.18.0.0/16","Backend":{"Type":"vxlan"}}' });
    for (const n of [h1(), h2()]) n.start(['--bridge', 'weft0']);
    await Promise.all([h1().waitReady(), h2().waitReady()]);
    pod1 = await Pod.attach(h1(), 1);
    pod2 = await Pod.attach(h2(), 1);
    const warm = pod1.ping(pod2.ip);
    await warm.waitReplies(3);
    await warm.stop();
  });
  after(async () => {
    await pod1?.delete();
    await pod2?.delete();
    await cluster?.destroy();
  });
  beforeEach(async () => {
    ping = pod1.ping(pod2.ip);
    await ping.waitReplies(5);
  });
  afterEach(async function () {
    const r = await ping.stop();
    expect(r.lost, `pod-to-pod pings lost: seqs ${r.lostSeqs.join(',')}`).to.equal(0);
    console.log(`      ${this.currentTest?.title.slice(0, 40)}...: ${r.sent} pings, ${r.lost} lost`);
  });

  it("a key for the hosts' own /24 never replaces their connected route: refused on every node, etcd stays reachable", async () => {
    const connected = await routesTo(h1(), '198.18.0.0/24');
    await put('198.18.0.0-24', vx('203.0.113.9', '0e:2a:00:00:09:09'));
    for (const n of [h1(), h2()]) {
      await eventually(async () => (await n.metric('weft_leases_refused{reason="covers-public-ip"}')) === 1, 10_000, `h${n.index} refuses it`);
      const s = await status(n);
      expect(s.refused.map((r) => `${r.subnet} ${r.reason}`)).to.deep.equal(['198.18.0.0/24 covers-public-ip']);
      expect(n.logTail(50)).to.match(/refusing lease .*198\.18\.0\.0-24: its subnet 198\.18\.0\.0\/24 holds the PublicIP/);
    }
    expect(await routesTo(h1(), '198.18.0.0/24')).to.deep.equal(connected);
    expect(connected.join()).to.contain('dev eth0 proto kernel');
    expect(await h1().metric('weft_etcd_connected')).to.equal(1);
    const leases = await ctlJson<{ leases: { subnet: string; refused: { reason: string } | null }[] }>(h1(), 'leases');
    expect(leases.leases.find((l) => l.subnet === '198.18.0.0/24')?.refused?.reason).to.equal('covers-public-ip');
    const doctor = await ctlJson<{ checks: { name: string; verdict: string; fix: string | null }[] }>(h1(), 'doctor');
    const check = doctor.checks.find((c) => c.name === 'lease conflicts')!;
    expect(check.verdict).to.equal('fail');
    expect(check.fix).to.match(/etcdctl del/);
    await del('198.18.0.0-24');
    await eventually(async () => (await h1().metric('weft_leases_refused{reason="covers-public-ip"}')) === 0, 10_000, 'refusal gone');
  });

  it('a lease colliding with one node\'s own network is skipped there only, and programmed once the network goes', async () => {
    // h1 gets an address (and its connected route) in a /24 that a lease then names.
    await h1().ns.ip('addr', 'add', '198.18.201.1/24', 'dev', 'eth0');
    try {
      await put('198.18.201.0-24', vx('198.18.0.77', '0e:2a:00:00:09:77'));
      await eventually(async () => (await h1().metric('weft_leases_refused{reason="collides-with-node"}')) === 1, 10_000, 'h1 skips it');
      await eventually(async () => (await fdb(h2())).includes('0e:2a:00:00:09:77>198.18.0.77'), 10_000, 'h2 programs it');
      expect(await fdb(h1())).to.not.include('0e:2a:00:00:09:77>198.18.0.77');
      expect(await routesTo(h1(), '198.18.201.0/24')).to.deep.equal(['198.18.201.0/24 dev eth0 proto kernel']);
      const s = await status(h1());
      expect(s.refused[0]).to.include({ subnet: '198.18.201.0/24', reason: 'collides-with-node' });
      expect(s.refused[0]!.detail).to.contain('route 198.18.201.0/24 dev #');
      const doctor = await ctlJson<{ checks: { name: string; verdict: string }[] }>(h1(), 'doctor');
      expect(doctor.checks.find((c) => c.name === 'leases vs this node')?.verdict).to.equal('fail');
    } finally {
      await h1().ns.ip('addr', 'del', '198.18.201.1/24', 'dev', 'eth0');
    }
    // The address went: the kernel listener reports it, and h1 programs the lease without waiting for a periodic pass.
    await eventually(async () => (await fdb(h1())).includes('0e:2a:00:00:09:77>198.18.0.77'), 10_000, 'h1 programs it');
    expect(await h1().metric('weft_leases_refused{reason="collides-with-node"}')).to.equal(0);
    await del('198.18.201.0-24');
  });

  it('a PublicIP inside the range leases come from is refused on every node', async () => {
    await put('198.18.202.0-24', vx('198.18.9.9', '0e:2a:00:00:09:99'));
    for (const n of [h1(), h2()]) {
      await eventually(async () => (await n.metric('weft_leases_refused{reason="public-ip"}')) === 1, 10_000, `h${n.index} refuses it`);
      expect((await fdb(n)).some((f) => f.endsWith('>198.18.9.9'))).to.equal(false);
    }
    await del('198.18.202.0-24');
  });

  it("a newer lease with a live node's VTEP MAC or PublicIP is refused everywhere and never re-points the node's entries", async () => {
    const lease2 = (await status(h2())).lease.subnet;
    const mac2 = (await fdb(h1())).find((f) => f.endsWith('>198.18.0.2'))!.split('>')[0]!;
    await put('198.18.203.0-24', vx('198.18.0.66', mac2));
    await put('198.18.204.0-24', vx('198.18.0.2', '0e:2a:00:00:09:44'));
    for (const n of [h1(), h2()]) {
      await eventually(async () => (await n.metric('weft_leases_refused{reason="duplicate-mac"}')) === 1, 10_000, `h${n.index}: duplicate MAC refused`);
      await eventually(async () => (await n.metric('weft_leases_refused{reason="duplicate-public-ip"}')) === 1, 10_000, `h${n.index}: duplicate IP refused`);
    }
    expect(await fdb(h1())).to.include(`${mac2}>198.18.0.2`);
    expect((await fdb(h1())).filter((f) => f.startsWith(mac2))).to.have.length(1);
    const refused = (await status(h1())).refused.find((r) => r.reason === 'duplicate-mac')!;
    expect(refused.winner).to.equal(`${P}/subnets/${lease2.replace('/', '-')}`);
    // h2's own lease is the older one: no conflict lost.
    expect((await status(h2())).ownLeaseConflict).to.equal(null);
    await del('198.18.203.0-24');
    await del('198.18.204.0-24');
    await eventually(async () => (await h1().metric('weft_leases_refused{reason="duplicate-mac"}')) === 0, 10_000, 'refusals gone');
  });

  it("a node started with another node's VTEP MAC (a cloned state directory) takes a new MAC and says so", async () => {
    const h3 = cluster.node(3);
    mkdirSync(h3.stateDir, { recursive: true });
    copyFileSync(join(h2().stateDir, 'flannel.1.mac'), join(h3.stateDir, 'flannel.1.mac'));
    const mac2 = (await fdb(h1())).find((f) => f.endsWith('>198.18.0.2'))!.split('>')[0]!;
    h3.start(['--bridge', 'weft0']);
    try {
      await h3.waitReady();
      expect(h3.logTail(50)).to.match(new RegExp(`VTEP MAC ${mac2} is already advertised by the older lease .*; taking the new MAC`));
      await eventually(async () => (await fdb(h1())).some((f) => f.endsWith('>198.18.0.3')), 10_000, 'h1 programs h3');
      const mac3 = (await fdb(h1())).find((f) => f.endsWith('>198.18.0.3'))!.split('>')[0]!;
      expect(mac3).to.not.equal(mac2);
      expect(await fdb(h1())).to.include(`${mac2}>198.18.0.2`);
      expect(await h1().metric('weft_leases_refused{reason="duplicate-mac"}')).to.equal(0);
    } finally {
      await h3.stop();
    }
  });
});
