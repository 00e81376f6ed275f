/**
 * The IPv6 device under a real weftd, on a two-host dual-stack cluster: what
 * fault.test.ts proves for flannel.1, for flannel-v6.1. Entries deleted by
 * hand come back, the device deleted by hand is rebuilt with its MAC and
 * every IPv6 peer replayed, a peer gone while weftd was down loses its IPv6
 * entries at the next start, and a restart under a continuous ping in both
 * families loses nothing and touches no entry. The traffic is host to host
 * over the overlay: h1 pings h2's addresses on flannel.1 (`<subnet>.0`) and
 * flannel-v6.1 (`<subnet6>::`), so every packet crosses both hosts' entries.
 * The same checks run again in an IPv6-only cluster, where flannel-v6.1 is
 * the only device.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Subnet } from '../common/subnet.js';
import { Cluster, type WeftNode } from './harness/cluster.js';
import { eventually } from './harness/netns.js';
import { PingStream } from './harness/pod.js';

const P = '/coreos.com/network';
const DEV6 = 'flannel-v6.1';
/** A simulated dual-stack peer (no host behind it): its entries are what the checks look for. */
const FAKE_KEY = `${P}/subnets/10.244.200.0-24&fd00:10:244:c8::-64`;
const FAKE_MAC = '0e:2a:00:00:06:c8';
const FAKE_MAC6 = '0e:2a:00:00:66:c8';
const FAKE_VALUE = JSON.stringify({
  PublicIP: '198.18.2.200',
  PublicIPv6: '2001:2::c8',
  BackendType: 'vxlan',
  BackendData: { VNI: 1, VtepMAC: FAKE_MAC },
  BackendV6Data: { VNI: 1, VtepMAC: FAKE_MAC6 },
});
const FAKE6 = 'fd00:10:244:c8::/64';

/** The node's IPv6 /64 (`fd00:10:244:3::/64`) and its IPv4 /24, from the subnet file. */
const subnet6 = (n: WeftNode) => Subnet.parse(n.subnetEnv().FLANNEL_IPV6_SUBNET!);
const subnet4 = (n: WeftNode) => Subnet.parse(n.subnetEnv().FLANNEL_SUBNET!);

interface Entries6 {
  routes: string[];
  neighs: string[];
  fdb: string[];
}

/**
 * flannel-v6.1's entries inside the IPv6Network, iproute2-style, sorted. Left
 * out: the kernel's own, i.e. link-local ones and the prefix route
 * (`<subnet6>:: proto kernel`) an IPv6 /128 address gets in the main table.
 */
async function entries6(n: WeftNode): Promise<Entries6> {
  const routes = await n.ns.ipJson<{ dst: string; gateway?: string; flags?: string[]; protocol?: string }[]>('-6', 'route', 'show', 'dev', DEV6).catch(() => []);
  const neighs = await n.ns.ipJson<{ dst: string; lladdr?: string; state?: string[] }[]>('-6', 'neigh', 'show', 'dev', DEV6).catch(() => []);
  const fdb = await n.ns.bridgeJson<{ mac: string; dst?: string; flags?: string[]; state?: string }[]>('fdb', 'show', 'dev', DEV6).catch(() => []);
  return {
    routes: routes
      .filter((r) => r.dst.startsWith('fd00:10:244:') && r.protocol !== 'kernel')
      .map((r) => `${r.dst} via ${r.gateway}${(r.flags ?? []).includes('onlink') ? ' onlink' : ''} proto ${r.protocol}`)
      .sort(),
    neighs: neighs.filter((e) => e.dst.startsWith('fd00:10:244:')).map((e) => `${e.dst} ${e.lladdr} ${(e.state ?? []).join(',')}`).sort(),
    fdb: fdb.filter((f) => f.dst).map((f) => `${f.mac} dst ${f.dst} ${(f.flags ?? []).join(',')} ${f.state ?? ''}`.trim()).sort(),
  };
}

/** What weftd programs on flannel-v6.1 for a peer: NDP neighbour, FDB entry (IPv6 dst), onlink route. */
function peerEntries6(subnet: string, mac: string, publicIPv6: string): Entries6 {
  const s0 = Subnet.parse(subnet).ip;
  return { routes: [`${subnet} via ${s0} onlink proto 87`], neighs: [`${s0} ${mac} PERMANENT`], fdb: [`${mac} dst ${publicIPv6} self permanent`] };
}

function merge(...all: Entries6[]): Entries6 {
  return {
    routes: all.flatMap((e) => e.routes).sort(),
    neighs: all.flatMap((e) => e.neighs).sort(),
    fdb: all.flatMap((e) => e.fdb).sort(),
  };
}

/** Waits until `n` holds `want` on flannel-v6.1; on timeout fails with the difference. */
async function converges(n: WeftNode, want: Entries6, timeoutMs: number, what: string): Promise<void> {
  try {
    await eventually(async () => JSON.stringify(await entries6(n)) === JSON.stringify(want), timeoutMs, what);
  } catch {
    expect(await entries6(n), what).to.deep.equal(want);
  }
}

async function link(n: WeftNode, dev: string): Promise<{ ifindex: number; address: string; mtu: number } | null> {
  return (await n.ns.ipJson<{ ifindex: number; address: string; mtu: number }[]>('link', 'show', dev).catch(() => []))[0] ?? null;
}

/** The device's global addresses (`fd00:10:244:3::/128`); the link-local one the kernel gives it is not weft's. */
async function globalAddrs6(n: WeftNode, dev: string): Promise<string[]> {
  const out = await n.ns.ipJson<{ addr_info: { local: string; prefixlen: number; scope: string }[] }[]>('-6', 'addr', 'show', 'dev', dev);
  return (out[0]?.addr_info ?? []).filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`);
}

async function acceptRa(n: WeftNode, dev: string): Promise<string> {
  return (await n.ns.exec('cat', `/proc/sys/net/ipv6/conf/${dev}/accept_ra`)).trim();
}

async function ping(n: WeftNode, ip: string): Promise<boolean> {
  try {
    await n.ns.exec('ping', '-c', '1', '-W', '1', ip);
    return true;
  } catch {
    return false;
  }
}

/**
 * Two hosts of `stack` running weftd, with one simulated peer (`key`, `value`)
 * in etcd; resolves once h1 holds both IPv6 peers' entries, with those entries
 * and h2's IPv6 VTEP MAC.
 */
async function twoHostsAndAPeer(stack: 'dual' | 'v6', key: string, value: string, peer: { subnet6: string; mac6: string; ip6: string }): Promise<{ cluster: Cluster; want: Entries6; h2mac6: string }> {
  const cluster = await Cluster.create({ hosts: 2, stack });
  await cluster.writeKeys([{ key, value }]);
  for (const n of cluster.nodes) n.start();
  await Promise.all(cluster.nodes.map((n) => n.waitReady(45_000)));
  const h2 = cluster.node(2);
  const h2mac6 = (await link(h2, DEV6))!.address;
  const want = merge(peerEntries6(subnet6(h2).toString(), h2mac6, h2.ip6!), peerEntries6(peer.subnet6, peer.mac6, peer.ip6));
  await converges(cluster.node(1), want, 10_000, 'h1 programs both IPv6 peers');
  return { cluster, want, h2mac6 };
}

describe('the IPv6 device under weftd: drift repair, rebuild, stale cleanup and a hitless restart, dual-stack @real', function () {
  this.timeout(60_000);
  let cluster: Cluster;
  const h1 = () => cluster.node(1);
  const h2 = () => cluster.node(2);
  /** What h1 should hold on flannel-v6.1: h2's entries and the simulated peer's. */
  let want: Entries6;
  let h2mac6: string;

  before(async function () {
    this.timeout(90_000);
    ({ cluster, want, h2mac6 } = await twoHostsAndAPeer('dual', FAKE_KEY, FAKE_VALUE, { subnet6: FAKE6, mac6: FAKE_MAC6, ip6: '2001:2::c8' }));
  });
  after(async () => cluster?.destroy());

  it(`${DEV6}: the node's <subnet6>::/128, accept_ra 0, the kept MAC, and per peer an NDP neighbour, an FDB entry to its PublicIPv6 and an onlink route`, async () => {
    for (const n of cluster.nodes) {
      expect(await globalAddrs6(n, DEV6), `h${n.index}`).to.deep.equal([`${subnet6(n).ip}/128`]);
      expect(await acceptRa(n, DEV6), `h${n.index} accept_ra`).to.equal('0');
      const mac6 = (await link(n, DEV6))!.address;
      expect(readFileSync(join(n.stateDir, `${DEV6}.mac`), 'utf8').trim(), 'the MAC kept in the state directory').to.equal(mac6);
      expect(mac6).to.not.equal((await link(n, 'flannel.1'))!.address);
    }
    expect(await entries6(h1())).to.deep.equal(want);
    expect(await ping(h1(), subnet6(h2()).ip), 'ping6 h1 -> h2 over the overlay').to.equal(true);
  });

  const deletions: [string, () => Promise<unknown>][] = [
    ['route', () => h1().ns.ip('-6', 'route', 'del', subnet6(h2()).toString(), 'dev', DEV6)],
    ['NDP neighbour', () => h1().ns.ip('-6', 'neigh', 'del', subnet6(h2()).ip, 'dev', DEV6)],
    ['FDB entry', () => h1().ns.exec('bridge', 'fdb', 'del', h2mac6, 'dev', DEV6, 'dst', h2().ip6!, 'self')],
  ];
  for (const [what, deleteIt] of deletions) {
    it(`an IPv6 ${what} deleted by hand is restored, and ping6 works again`, async () => {
      await deleteIt();
      const t0 = Date.now();
      await converges(h1(), want, 5000, `${what} restored`);
      console.log(`      IPv6 ${what}: restored after ${Date.now() - t0} ms`);
      await eventually(() => ping(h1(), subnet6(h2()).ip), 5000, 'ping6 after the repair');
    });
  }

  it(`\`ip link del ${DEV6}\`: rebuilt with the same MAC, address and accept_ra 0, every IPv6 peer replayed, flannel.1 untouched`, async () => {
    const before6 = (await link(h1(), DEV6))!;
    const before4 = (await link(h1(), 'flannel.1'))!;
    await h1().ns.ip('link', 'del', DEV6);
    await converges(h1(), want, 10_000, 'device rebuilt, peers replayed');
    const after6 = (await link(h1(), DEV6))!;
    expect(after6.ifindex, 'a new device').to.not.equal(before6.ifindex);
    expect(after6.address, 'the advertised MAC').to.equal(before6.address);
    expect(after6.mtu).to.equal(before6.mtu);
    expect(await globalAddrs6(h1(), DEV6)).to.deep.equal([`${subnet6(h1()).ip}/128`]);
    expect(await acceptRa(h1(), DEV6)).to.equal('0');
    expect((await link(h1(), 'flannel.1'))!.ifindex, 'the IPv4 device is the same').to.equal(before4.ifindex);
    await eventually(() => ping(h1(), subnet6(h2()).ip), 5000, 'ping6 over the rebuilt device');
    expect(await ping(h1(), subnet4(h2()).ip), 'ping over flannel.1').to.equal(true);
  });

  it('weftd SIGKILLed and restarted under ping and ping6 across hosts: nothing lost in either family, no peer entry removed or re-added', async () => {
    const mac6 = (await link(h1(), DEV6))!.address;
    const subnet = subnet6(h1()).toString();
    const monitor = h1().ns.spawn('ip', ['monitor', 'route', 'neigh']);
    let changes = '';
    monitor.stdout?.on('data', (d: Buffer) => (changes += d.toString()));
    const ping4 = new PingStream(h1().ns.spawn('ping', ['-n', '-i', '0.05', '-W', '1', subnet4(h2()).ip]), 50);
    const ping6 = new PingStream(h1().ns.spawn('ping', ['-n', '-i', '0.05', '-W', '1', subnet6(h2()).ip]), 50);
    try {
      await Promise.all([ping4.waitReplies(5), ping6.waitReplies(5)]);
      await h1().stop('SIGKILL');
      h1().start();
      await h1().waitReady();
      await Promise.all([ping4.waitReplies(40), ping6.waitReplies(40)]);
    } finally {
      monitor.kill('SIGTERM');
    }
    const [r4, r6] = [await ping4.stop(), await ping6.stop()];
    console.log(`      restart: IPv4 ${r4.lost} of ${r4.sent} lost, IPv6 ${r6.lost} of ${r6.sent} lost`);
    expect(r4.lost, `IPv4 lost seqs ${r4.lostSeqs.join(',')}`).to.equal(0);
    expect(r6.lost, `IPv6 lost seqs ${r6.lostSeqs.join(',')}`).to.equal(0);
    expect(r4.sent).to.be.greaterThan(20);
    expect(r6.sent).to.be.greaterThan(20);
    expect(subnet6(h1()).toString(), 'same IPv6 subnet').to.equal(subnet);
    expect((await link(h1(), DEV6))!.address, 'same IPv6 VTEP MAC').to.equal(mac6);
    const peer = [subnet4(h2()).ip, subnet6(h2()).ip, FAKE6.split('/')[0]!];
    const touched = changes.split('\n').filter((l) => peer.some((ip) => l.includes(ip)));
    expect(touched, 'kernel notifications about the peers during the restart').to.deep.equal([]);
    expect(await entries6(h1())).to.deep.equal(want);
  });

  it('a peer whose lease went while weftd was down loses its IPv6 entries at the next start; the others stay', async () => {
    await h1().stop('SIGTERM');
    await cluster.writeKeys([{ key: FAKE_KEY, value: null }]);
    expect(await entries6(h1()), 'still there while weftd is down').to.deep.equal(want);
    h1().start();
    await h1().waitReady();
    const left = peerEntries6(subnet6(h2()).toString(), h2mac6, h2().ip6!);
    // Ready means programmed: the stale entries went in the first pass, by dump.
    expect(await entries6(h1())).to.deep.equal(left);
    const routes4 = (await h1().ns.ipJson<{ dst: string }[]>('route', 'show', 'dev', 'flannel.1')).map((r) => r.dst);
    expect(routes4).to.deep.equal([subnet4(h2()).toString()]);
    expect((await h1().ns.bridgeJson<{ mac: string }[]>('fdb', 'show', 'dev', 'flannel.1')).map((f) => f.mac)).to.not.include(FAKE_MAC);
    want = left;
  });
});

/** A simulated IPv6-only peer: flannel's empty IPv4 part, PublicIP 0.0.0.0, BackendV6Data alone. */
const FAKE_V6_KEY = `${P}/subnets/0.0.0.0-0&fd00:10:244:c9::-64`;
const FAKE_V6_MAC6 = '0e:2a:00:00:66:c9';
const FAKE_V6_VALUE = JSON.stringify({ PublicIP: '0.0.0.0', PublicIPv6: '2001:2::c9', BackendType: 'vxlan', BackendV6Data: { VNI: 1, VtepMAC: FAKE_V6_MAC6 } });

describe('the IPv6 device under weftd in an IPv6-only cluster: drift repair, rebuild and a hitless restart @real', function () {
  this.timeout(60_000);
  let cluster: Cluster;
  const h1 = () => cluster.node(1);
  const h2 = () => cluster.node(2);
  let want: Entries6;

  before(async function () {
    this.timeout(90_000);
    ({ cluster, want } = await twoHostsAndAPeer('v6', FAKE_V6_KEY, FAKE_V6_VALUE, { subnet6: 'fd00:10:244:c9::/64', mac6: FAKE_V6_MAC6, ip6: '2001:2::c9' }));
  });
  after(async () => cluster?.destroy());

  it(`only ${DEV6}: no flannel.1, and nothing of the IPv4 placeholder 0.0.0.0/0 in the kernel`, async () => {
    for (const n of cluster.nodes) {
      expect(await link(n, 'flannel.1'), `h${n.index}`).to.equal(null);
      expect(await globalAddrs6(n, DEV6), `h${n.index}`).to.deep.equal([`${subnet6(n).ip}/128`]);
      const routes4 = await n.ns.ipJson<{ dst: string; protocol?: string }[]>('route', 'show');
      expect(routes4.filter((r) => r.protocol === '87' || r.dst === 'default'), `h${n.index}: IPv4 routes of weft's`).to.deep.equal([]);
    }
    expect(await entries6(h1())).to.deep.equal(want);
  });

  it('an IPv6 route and NDP neighbour deleted by hand are restored, and ping6 works again', async () => {
    await h1().ns.ip('-6', 'route', 'del', subnet6(h2()).toString(), 'dev', DEV6);
    await h1().ns.ip('-6', 'neigh', 'del', subnet6(h2()).ip, 'dev', DEV6);
    await converges(h1(), want, 5000, 'route and neighbour restored');
    await eventually(() => ping(h1(), subnet6(h2()).ip), 5000, 'ping6 after the repair');
  });

  it(`\`ip link del ${DEV6}\`: rebuilt with the same MAC, every peer replayed`, async () => {
    const before = (await link(h1(), DEV6))!;
    await h1().ns.ip('link', 'del', DEV6);
    await converges(h1(), want, 10_000, 'device rebuilt, peers replayed');
    const after = (await link(h1(), DEV6))!;
    expect(after.ifindex, 'a new device').to.not.equal(before.ifindex);
    expect(after.address, 'the advertised MAC').to.equal(before.address);
    expect(await acceptRa(h1(), DEV6)).to.equal('0');
    await eventually(() => ping(h1(), subnet6(h2()).ip), 5000, 'ping6 over the rebuilt device');
  });

  it('weftd SIGKILLed and restarted under ping6: nothing lost, the same subnet and MAC', async () => {
    const mac6 = (await link(h1(), DEV6))!.address;
    const subnet = subnet6(h1()).toString();
    const ping6 = new PingStream(h1().ns.spawn('ping', ['-n', '-i', '0.05', '-W', '1', subnet6(h2()).ip]), 50);
    await ping6.waitReplies(5);
    await h1().stop('SIGKILL');
    h1().start();
    await h1().waitReady();
    await ping6.waitReplies(40);
    const r6 = await ping6.stop();
    expect(r6.lost, `lost seqs ${r6.lostSeqs.join(',')}`).to.equal(0);
    expect(r6.sent).to.be.greaterThan(20);
    expect(subnet6(h1()).toString(), 'same IPv6 subnet').to.equal(subnet);
    expect((await link(h1(), DEV6))!.address, 'same VTEP MAC').to.equal(mac6);
    expect(await entries6(h1())).to.deep.equal(want);
  });
});
