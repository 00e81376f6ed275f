/**
 * Hostile and malformed IPv6 leases never reach a node's kernel, with a real
 * weftd on two dual-stack hosts (fault-input.test.ts and
 * lease-admission-real.test.ts for IPv4). The IPv6Network covers the hosts'
 * IPv6 LAN: `2001:2::/48` with the hosts on `2001:2::/64`, legal because the
 * default IPv6SubnetMin skips the first /64 (and IPv6SubnetMax ends the range
 * at `2001:2:0:ef::`, so that a simulated node can sit in `2001:2:0:f1::/64`).
 * Every bad lease is written between two valid ones under a continuous ping6
 * across the hosts, which loses nothing; afterwards each host's IPv6 and IPv4
 * entries hold the valid peers only, and `/status` names every refused lease
 * with its reason.
 */
import { expect } from 'chai';
import { Subnet } from '../common/subnet.js';
import { Cluster, type WeftNode } from './harness/cluster.js';
import { eventually } from './harness/netns.js';
import { PingStream } from './harness/pod.js';

const P = '/coreos.com/network';
const DEV6 = 'flannel-v6.1';
const NETWORK_CONFIG = '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:2::/48","IPv6SubnetMax":"2001:2:0:ef::","Backend":{"Type":"vxlan"}}';

/** A dual-stack vxlan lease value of simulated node `n` (198.18.4.n, 2001:2::1:n), fields overridden by `extra`. */
function value(n: number, extra: Record<string, unknown> = {}): string {
  const hex = n.toString(16).padStart(2, '0');
  return JSON.stringify({
    PublicIP: `198.18.4.${n}`,
    PublicIPv6: `2001:2::1:${hex}`,
    BackendType: 'vxlan',
    BackendData: { VNI: 1, VtepMAC: `0e:2a:00:00:04:${hex}` },
    BackendV6Data: { VNI: 1, VtepMAC: `0e:2a:00:00:06:${hex}` },
    ...extra,
  });
}
const v6data = (mac: string) => ({ BackendV6Data: { VNI: 1, VtepMAC: mac } });

interface Refused {
  key: string;
  subnet: string;
  reason: string;
  detail: string;
  winner: string | null;
}

interface Entries {
  routes6: string[];
  neighs6: string[];
  fdb6: string[];
  routes4: string[];
}

/** Everything weft programs for peers, both families (the kernel's own link-local entries and /128 prefix route left out). */
async function entries(n: WeftNode): Promise<Entries> {
  const routes6 = await n.ns.ipJson<{ dst: string; dev: string; protocol?: string }[]>('-6', 'route', 'show', 'table', 'main');
  const neighs6 = await n.ns.ipJson<{ dst: string; lladdr?: string }[]>('-6', 'neigh', 'show', 'dev', DEV6);
  const fdb6 = await n.ns.bridgeJson<{ mac: string; dst?: string }[]>('fdb', 'show', 'dev', DEV6);
  const routes4 = await n.ns.ipJson<{ dst: string; dev: string }[]>('route', 'show', 'table', 'main');
  return {
    routes6: routes6.filter((r) => r.protocol !== 'kernel' && !r.dst.startsWith('fe80:')).map((r) => `${r.dst} dev ${r.dev}`).sort(),
    neighs6: neighs6.filter((e) => !e.dst.startsWith('fe80:')).map((e) => `${e.dst} ${e.lladdr}`).sort(),
    fdb6: fdb6.filter((f) => f.dst).map((f) => `${f.mac}>${f.dst}`).sort(),
    routes4: routes4.filter((r) => r.dst.startsWith('10.244.')).map((r) => `${r.dst} dev ${r.dev}`).sort(),
  };
}

/** What `after` holds beyond `before`. */
function added(before: Entries, after: Entries): Entries {
  const diff = (k: keyof Entries) => after[k].filter((e) => !before[k].includes(e));
  return { routes6: diff('routes6'), neighs6: diff('neighs6'), fdb6: diff('fdb6'), routes4: diff('routes4') };
}

/** The entries a valid simulated peer `n` (PublicIPv6 2001:2::1:n unless given) gets: its /64 and /24 through the devices, its NDP neighbour and FDB entries. */
function peer(n: number, subnet4: string, subnet6: string, publicIPv6?: string): Entries {
  const hex = n.toString(16).padStart(2, '0');
  return {
    routes6: [`${subnet6} dev ${DEV6}`],
    neighs6: [`${Subnet.parse(subnet6).ip} 0e:2a:00:00:06:${hex}`],
    fdb6: [`0e:2a:00:00:06:${hex}>${publicIPv6 ?? `2001:2::1:${hex}`}`],
    routes4: [`${subnet4} dev flannel.1`],
  };
}

async function refused(n: WeftNode): Promise<Refused[]> {
  return (JSON.parse((await n.http('/status')).body) as { refused: Refused[] }).refused;
}

describe('hostile and malformed IPv6 leases never reach the kernel; valid peers still do, dual-stack weftd @real', function () {
  this.timeout(60_000);
  let cluster: Cluster;
  const h1 = () => cluster.node(1);
  const h2 = () => cluster.node(2);
  const key = (name: string) => `${P}/subnets/${name}`;

  before(async function () {
    this.timeout(90_000);
    cluster = await Cluster.create({ hosts: 2, stack: 'dual', networkConfig: NETWORK_CONFIG });
    for (const n of cluster.nodes) n.start();
    await Promise.all(cluster.nodes.map((n) => n.waitReady(45_000)));
  });
  after(async () => cluster?.destroy());

  it('malformed IPv6 parts are skipped, refused ones listed in /status with their reason, and none reaches either host\'s kernel', async () => {
    const h2mac6 = (await h2().ns.ipJson<{ address: string }[]>('link', 'show', DEV6))[0]!.address;
    const h2subnet6 = Subnet.parse(h2().subnetEnv().FLANNEL_IPV6_SUBNET!);
    const before = await Promise.all([entries(h1()), entries(h2())]);
    const skippedBefore = await Promise.all([h1().metric('weft_leases_skipped_total'), h2().metric('weft_leases_skipped_total')]);
    // h1 has an address (and its connected route) in a /64 that a lease then names.
    await h1().ns.ip('-6', 'addr', 'add', '2001:2:0:c9::1/64', 'dev', 'eth0', 'nodad');
    const ping6 = new PingStream(h1().ns.spawn('ping', ['-n', '-i', '0.05', '-W', '1', h2subnet6.ip]), 50);
    await ping6.waitReplies(5);

    // A valid peer whose PublicIPv6 lies in IPv6Network, after IPv6SubnetMax (legal), and which a bad lease below covers.
    const valid1 = '10.244.240.0-24&2001:2:0:d0::-64';
    await cluster.writeKeys([{ key: key(valid1), value: value(0xd0, { PublicIPv6: '2001:2:0:f1::5' }) }]);
    const malformed: [string, string][] = [
      ['10.244.220.0-24&2001:2:0:dc::-64', value(0xdc, { PublicIPv6: 'ff02::1' })], // multicast PublicIPv6
      ['10.244.221.0-24&2001:2:0:dd::-64', value(0xdd, { PublicIPv6: '::ffff:198.18.0.2' })], // IPv4-mapped
      ['10.244.222.0-24&2001:2:0:de::-64', value(0xde, { PublicIPv6: '2001:2::zz' })], // not an address
      ['10.244.223.0-24&2001:2:0:df::-64', value(0xdf, v6data('01:00:5e:00:00:df'))], // multicast VTEP MAC
      ['10.244.224.0-24&fd00:99::-64', value(0xe0)], // IPv6 subnet outside IPv6Network
      ['10.244.225.0-24&2001:2:0:e1::-80', value(0xe1)], // wrong IPv6 prefix length
      ['10.244.226.0-24&2001:2:0:e2::-64', value(0xe2, { PublicIPv6: null })], // IPv6 subnet, no PublicIPv6
      ['10.244.227.0-24&2001:2:0:e3::-64', value(0xe3, { BackendV6Data: null })], // IPv6 subnet, no BackendV6Data
      ['10.244.228.0-24&2001:2:0:e4::-64', value(0xe4, v6data('$(reboot)'))], // shell metacharacters in the MAC
      ['10.244.229.0-24&2001:2:0:e5::1-64', value(0xe5)], // host bits set in the IPv6 part of the key
      ['10.244.219.0-24&2001:2:0:db::-64', value(0xdb, { PublicIPv6: '2001:2::1; ip link del eth0' })], // shell metacharacters
    ];
    const hostile: [string, string][] = [
      ['10.244.230.0-24&2001:2:0:e6::-64', value(0xe6, { PublicIPv6: 'fe80::e6' })], // link-local tunnel endpoint
      ['10.244.231.0-24&2001:2:0:e7::-64', value(0xe7, { PublicIPv6: '2001:2:0:99::7' })], // inside the range leases come from
      ['10.244.232.0-24&2001:2:0:e8::-64', value(0xe8, v6data(h2mac6))], // h2's IPv6 VTEP MAC
      ['10.244.233.0-24&2001:2:0:e9::-64', value(0xe9, { PublicIPv6: h1().ip6 })], // h1's PublicIPv6
      ['10.244.234.0-24&2001:2::-64', value(0xea, { PublicIPv6: '2001:db8::ea' })], // the hosts' IPv6 LAN
      ['10.244.235.0-24&2001:2:0:f1::-64', value(0xeb, { PublicIPv6: '2001:db8::eb' })], // covers valid1's PublicIPv6
      ['10.244.236.0-24&2001:2:0:c9::-64', value(0xec)], // collides with h1's own 2001:2:0:c9::1/64 (h1 only)
    ];
    await cluster.writeKeys([...malformed, ...hostile].map(([k, v]) => ({ key: key(k), value: v })));
    // A valid peer written after them: the bad ones disturbed nothing.
    const valid2 = '10.244.239.0-24&2001:2:0:ef::-64';
    await cluster.writeKeys([{ key: key(valid2), value: value(0xef) }]);

    const refusedH1 = [
      '10.244.230.0/24 public-ip',
      '10.244.231.0/24 public-ip',
      '10.244.232.0/24 duplicate-mac',
      '10.244.233.0/24 duplicate-public-ip',
      '10.244.234.0/24 covers-public-ip',
      '10.244.235.0/24 covers-public-ip',
      '10.244.236.0/24 collides-with-node',
    ];
    const refusedH2 = refusedH1.filter((r) => !r.endsWith('collides-with-node'));
    for (const [n, want] of [[h1(), refusedH1], [h2(), refusedH2]] as const) {
      const list = async () => (await refused(n)).map((r) => `${r.subnet} ${r.reason}`).sort();
      try {
        await eventually(async () => JSON.stringify(await list()) === JSON.stringify(want), 10_000, `h${n.index} refuses them`);
      } catch {
        expect(await list(), `h${n.index}: /status refused`).to.deep.equal(want);
      }
    }
    for (const [i, n] of [h1(), h2()].entries()) {
      await eventually(async () => (await n.metric('weft_leases_skipped_total')) - skippedBefore[i]! >= malformed.length, 10_000, `h${n.index} skips the malformed`);
      const log = n.logTail(300);
      for (const [k] of malformed) expect(log, `h${n.index} names ${k}`).to.include(key(k));
    }
    const why = Object.fromEntries((await refused(h1())).map((r) => [r.subnet, r]));
    expect(why['10.244.230.0/24']!.detail).to.equal('PublicIPv6 fe80::e6 is link-local');
    expect(why['10.244.231.0/24']!.detail).to.match(/^PublicIPv6 2001:2:0:99::7 lies inside the range leases are taken from/);
    expect(why['10.244.232.0/24']!.winner).to.equal(key(h2().subnetEnv().FLANNEL_SUBNET!.replace('.1/', '.0-') + '&' + h2subnet6.toString().replace('/', '-')));
    expect(why['10.244.233.0/24']!.detail).to.match(/advertises this node's PublicIPv6 2001:2::1/);
    expect(why['10.244.234.0/24']!.detail).to.equal('its subnet 2001:2::/64 holds the PublicIPv6 2001:2::1 of this node');
    expect(why['10.244.235.0/24']!.detail).to.equal(`its subnet 2001:2:0:f1::/64 holds the PublicIPv6 2001:2:0:f1::5 of ${key(valid1)}`);
    expect(why['10.244.236.0/24']!.detail).to.match(/2001:2:0:c9::/);

    // The kernels: the valid peers (and, on h2, the lease that collides only with h1), nothing else, in either family.
    const want1 = peer(0xd0, '10.244.240.0/24', '2001:2:0:d0::/64', '2001:2:0:f1::5');
    const want2 = peer(0xef, '10.244.239.0/24', '2001:2:0:ef::/64');
    const want3 = peer(0xec, '10.244.236.0/24', '2001:2:0:c9::/64');
    const expected = (parts: Entries[]): Entries => ({
      routes6: parts.flatMap((p) => p.routes6).sort(),
      neighs6: parts.flatMap((p) => p.neighs6).sort(),
      fdb6: parts.flatMap((p) => p.fdb6).sort(),
      routes4: parts.flatMap((p) => p.routes4).sort(),
    });
    for (const [i, n] of [h1(), h2()].entries()) {
      const want = expected(n === h1() ? [want1, want2] : [want1, want2, want3]);
      try {
        await eventually(async () => JSON.stringify(added(before[i]!, await entries(n))) === JSON.stringify(want), 10_000, `h${n.index}'s entries`);
      } catch {
        expect(added(before[i]!, await entries(n)), `h${n.index}: entries added`).to.deep.equal(want);
      }
    }
    // The hosts' IPv6 LAN keeps its connected route only, and h1's own /64 stays on eth0.
    const lan = await h1().ns.ipJson<{ dst: string; dev: string; protocol: string }[]>('-6', 'route', 'show', '2001:2::/64');
    expect(lan.map((r) => `${r.dst} ${r.dev} ${r.protocol}`)).to.deep.equal(['2001:2::/64 eth0 kernel']);
    const own = await h1().ns.ipJson<{ dst: string; dev: string; protocol: string }[]>('-6', 'route', 'show', '2001:2:0:c9::/64');
    expect(own.map((r) => `${r.dst} ${r.dev} ${r.protocol}`)).to.deep.equal(['2001:2:0:c9::/64 eth0 kernel']);
    expect(h1().running && h2().running).to.equal(true);

    // Written under a continuous ping6 across the hosts: nothing lost.
    await ping6.waitReplies(20);
    const r = await ping6.stop();
    console.log(`      ${malformed.length} malformed and ${hostile.length} hostile leases: ${r.sent} pings6, ${r.lost} lost`);
    expect(r.lost, `lost seqs ${r.lostSeqs.join(',')}`).to.equal(0);

    // All removed (and h1's address): the refusals go, and so do the valid peers' entries.
    await h1().ns.ip('-6', 'addr', 'del', '2001:2:0:c9::1/64', 'dev', 'eth0');
    await cluster.writeKeys([...malformed, ...hostile, [valid1], [valid2]].map(([k]) => ({ key: key(k!), value: null })));
    for (const [i, n] of [h1(), h2()].entries()) {
      await eventually(async () => (await refused(n)).length === 0, 10_000, `h${n.index}: no refusal left`);
      await eventually(async () => JSON.stringify(await entries(n)) === JSON.stringify(before[i]), 10_000, `h${n.index}: back to its entries before`);
    }
  });
});

describe('hostile and malformed leases in an IPv6-only network never reach the kernel, IPv6-only weftd @real', function () {
  this.timeout(60_000);
  let cluster: Cluster;
  const h1 = () => cluster.node(1);
  const h2 = () => cluster.node(2);
  const key = (name: string) => `${P}/subnets/${name}`;
  /** An IPv6-only value of simulated node `n`: flannel's unset PublicIP, BackendV6Data alone. */
  const value6 = (n: number, extra: Record<string, unknown> = {}) => {
    const hex = n.toString(16).padStart(2, '0');
    return JSON.stringify({ PublicIP: '0.0.0.0', PublicIPv6: `2001:2::1:${hex}`, BackendType: 'vxlan', BackendV6Data: { VNI: 1, VtepMAC: `0e:2a:00:00:06:${hex}` }, ...extra });
  };

  before(async function () {
    this.timeout(90_000);
    cluster = await Cluster.create({ hosts: 2, stack: 'v6', networkConfig: NETWORK_CONFIG.replace('"Network":"10.244.0.0/16"', '"EnableIPv4":false') });
    for (const n of cluster.nodes) n.start();
    await Promise.all(cluster.nodes.map((n) => n.waitReady(45_000)));
  });
  after(async () => cluster?.destroy());

  it('IPv6-only keys: malformed ones skipped, duplicates and covering keys refused by IPv6 subnet, the valid peer programmed on flannel-v6.1 alone', async () => {
    const h2mac6 = (await h2().ns.ipJson<{ address: string }[]>('link', 'show', DEV6))[0]!.address;
    const h2subnet6 = Subnet.parse(h2().subnetEnv().FLANNEL_IPV6_SUBNET!);
    const before = await entries(h1());
    const skippedBefore = await h1().metric('weft_leases_skipped_total');
    const ping6 = new PingStream(h1().ns.spawn('ping', ['-n', '-i', '0.05', '-W', '1', h2subnet6.ip]), 50);
    await ping6.waitReplies(5);
    const malformed: [string, string][] = [
      ['10.244.5.0-24', value6(0xd1, { PublicIP: '198.18.4.5', BackendData: { VNI: 1, VtepMAC: '0e:2a:00:00:04:d1' } })], // no IPv6 subnet
      ['0.0.0.0-0&2001:2:0:d2::-64', value6(0xd2, { PublicIPv6: null })], // neither PublicIP nor PublicIPv6
      ['0.0.0.0-0&2001:2:0:d3::-64', value6(0xd3, { BackendV6Data: null })], // no VTEP
      ['0.0.0.0-0&2001:2:0:d4::-64', value6(0xd4, { PublicIPv6: 'ff05::d4' })], // multicast PublicIPv6
    ];
    const hostile: [string, string][] = [
      ['0.0.0.0-0&2001:2:0:e0::-64', value6(0xe0, { PublicIPv6: h2().ip6 })], // h2's PublicIPv6
      ['0.0.0.0-0&2001:2:0:e1::-64', value6(0xe1, { BackendV6Data: { VNI: 1, VtepMAC: h2mac6 } })], // h2's IPv6 VTEP MAC
      ['0.0.0.0-0&2001:2::-64', value6(0xe2)], // the hosts' IPv6 LAN
      ['0.0.0.0-0&2001:2:0:e3::-64', value6(0xe3, { PublicIPv6: 'fe80::e3' })], // link-local tunnel endpoint
    ];
    await cluster.writeKeys([...malformed, ...hostile].map(([k, v]) => ({ key: key(k), value: v })));
    const valid = '0.0.0.0-0&2001:2:0:d0::-64';
    await cluster.writeKeys([{ key: key(valid), value: value6(0xd0) }]);

    const want = ['2001:2:0:e0::/64 duplicate-public-ip', '2001:2:0:e1::/64 duplicate-mac', '2001:2::/64 covers-public-ip', '2001:2:0:e3::/64 public-ip'].sort();
    const list = async () => (await refused(h1())).map((r) => `${r.subnet} ${r.reason}`).sort();
    try {
      await eventually(async () => JSON.stringify(await list()) === JSON.stringify(want), 10_000, 'h1 refuses them');
    } catch {
      expect(await list(), 'h1: /status refused').to.deep.equal(want);
    }
    await eventually(async () => (await h1().metric('weft_leases_skipped_total')) - skippedBefore >= malformed.length, 10_000, 'h1 skips the malformed');
    for (const [k] of malformed) expect(h1().logTail(200), k).to.include(key(k));
    const programmed = { routes6: [`2001:2:0:d0::/64 dev ${DEV6}`], neighs6: ['2001:2:0:d0:: 0e:2a:00:00:06:d0'], fdb6: ['0e:2a:00:00:06:d0>2001:2::1:d0'], routes4: [] };
    try {
      await eventually(async () => JSON.stringify(added(before, await entries(h1()))) === JSON.stringify(programmed), 10_000, 'h1 programs the valid peer');
    } catch {
      expect(added(before, await entries(h1())), 'h1: entries added').to.deep.equal(programmed);
    }
    expect(await h1().ns.ipJson<unknown[]>('link', 'show', 'flannel.1').catch(() => []), 'no IPv4 device').to.have.length(0);
    await ping6.waitReplies(20);
    const r = await ping6.stop();
    console.log(`      ${malformed.length} malformed and ${hostile.length} hostile leases: ${r.sent} pings6, ${r.lost} lost`);
    expect(r.lost, `lost seqs ${r.lostSeqs.join(',')}`).to.equal(0);
    await cluster.writeKeys([...malformed, ...hostile, [valid]].map(([k]) => ({ key: key(k!), value: null })));
    await eventually(async () => (await refused(h1())).length === 0 && JSON.stringify(await entries(h1())) === JSON.stringify(before), 10_000, 'h1 back to its entries before');
  });
});
