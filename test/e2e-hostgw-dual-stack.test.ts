/**
 * Dual-stack without encapsulation, end to end: two hosts on one underlay
 * segment (198.18.0.N/24 and 2001:2::N/64), weftd with `--bridge weft0`, and a
 * pod on each host's bridge with an address of both families from the host's
 * lease. With host-gw, and with vxlan's DirectRouting (every peer on the
 * segment), each peer's /24 and /64 are routed via its PublicIP and
 * PublicIPv6 on eth0, and pods reach each other over IPv4 and IPv6.
 */
import { expect } from 'chai';
import { Subnet } from '../common/subnet.js';
import { Cluster, type WeftNode } from './harness/cluster.js';
import { eventually } from './harness/netns.js';
import { Pod, PingStream } from './harness/pod.js';

const DUAL = (backend: string) => `{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/48","Backend":${backend}}`;

/** The node's IPv6 /64 from its subnet file. */
const subnet6 = (n: WeftNode) => Subnet.parse(n.subnetEnv().FLANNEL_IPV6_SUBNET!);
const subnet4 = (n: WeftNode) => Subnet.parse(n.subnetEnv().FLANNEL_SUBNET!);

/** Gives pod 1 of `node` its IPv6 address `<subnet6>::b/64` and the bridge's `<subnet6>::1` as IPv6 default route; returns the address. */
async function addPodIPv6(pod: Pod, node: WeftNode): Promise<string> {
  const net = subnet6(node);
  const gw = net.ip.replace(/::$/, '::1');
  const ip = net.ip.replace(/::$/, '::b');
  await pod.ns.ip('-6', 'addr', 'add', `${ip}/${net.prefixLength}`, 'dev', 'eth0', 'nodad');
  await pod.ns.ip('-6', 'route', 'add', 'default', 'via', gw);
  return ip;
}

/** weft's (proto 87) routes in the main table of both families, `dst via gw dev`, sorted; nexthop objects shown by their gateway. */
async function weftRoutes(n: WeftNode): Promise<string[]> {
  const out: string[] = [];
  for (const family of ['-4', '-6']) {
    const routes = await n.ns.ipJson<{ dst: string; gateway?: string; dev?: string; protocol?: string; nhid?: number }[]>(family, 'route', 'show', 'table', 'main');
    for (const r of routes.filter((x) => x.protocol === '87')) out.push(`${r.dst} via ${r.gateway} dev ${r.dev}`);
  }
  return out.sort();
}

async function lossless(from: Pod, target: string): Promise<void> {
  const ping = new PingStream(from.ns.spawn('ping', ['-n', '-i', '0.05', '-W', '1', target]), 50);
  await ping.waitReplies(30);
  const r = await ping.stop();
  expect(r.lost, `${target}: lost seqs ${r.lostSeqs.join(',')}`).to.equal(0);
}

for (const [name, backend, devices] of [
  ['host-gw', '{"Type":"host-gw"}', [] as string[]],
  ['vxlan with DirectRouting', '{"Type":"vxlan","DirectRouting":true}', ['flannel.1', 'flannel-v6.1']],
] as const) {
  describe(`end to end: dual-stack ${name} between two hosts on one segment, pods over IPv4 and IPv6 @real`, function () {
    this.timeout(60_000);
    let cluster: Cluster;
    let pod1: Pod;
    let pod2: Pod;
    let pod2ip6 = '';
    const h1 = () => cluster.node(1);
    const h2 = () => cluster.node(2);

    before(async function () {
      this.timeout(90_000);
      cluster = await Cluster.create({ hosts: 2, stack: 'dual', networkConfig: DUAL(backend) });
      for (const n of cluster.nodes) n.start(['--bridge', 'weft0']);
      await Promise.all(cluster.nodes.map((n) => n.waitReady(45_000)));
      [pod1, pod2] = await Pod.pair(h1(), h2());
      await addPodIPv6(pod1, h1());
      pod2ip6 = await addPodIPv6(pod2, h2());
    });
    after(async () => {
      await pod1?.delete();
      await pod2?.delete();
      await cluster?.destroy();
    });

    it("routes the peer's /24 and /64 via its PublicIP and PublicIPv6 on eth0, nothing through a tunnel", async () => {
      expect(await weftRoutes(h1())).to.deep.equal([`${subnet4(h2())} via ${h2().ip} dev eth0`, `${subnet6(h2())} via ${h2().ip6} dev eth0`].sort());
      expect(await weftRoutes(h2())).to.deep.equal([`${subnet4(h1())} via ${h1().ip} dev eth0`, `${subnet6(h1())} via ${h1().ip6} dev eth0`].sort());
      for (const dev of devices) {
        expect(await h1().ns.bridgeJson<{ dst?: string }[]>('fdb', 'show', 'dev', dev).then((f) => f.filter((e) => e.dst)), `${dev}: no FDB entry`).to.deep.equal([]);
      }
      if (devices.length === 0) expect(await h1().ns.ipJson<unknown[]>('link', 'show', 'flannel-v6.1').catch(() => []), 'no IPv6 device').to.have.length(0);
      // The bridge holds the gateways of both families.
      const addrs = await h1().ns.ipJson<{ addr_info: { local: string; prefixlen: number; scope: string }[] }[]>('addr', 'show', 'dev', 'weft0');
      expect(addrs[0]!.addr_info.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`)).to.deep.equal([
        `${subnet4(h1()).ip.replace(/0$/, '1')}/24`,
        `${subnet6(h1()).ip}1/64`,
      ]);
    });

    it('pods ping and ping6 each other across the hosts without a loss, seeing each other\'s own addresses', async () => {
      await eventually(async () => {
        try {
          await pod1.ns.exec('ping', '-c', '1', '-W', '1', pod2ip6);
          return true;
        } catch {
          return false;
        }
      }, 10_000, 'ping6 pod1 -> pod2');
      await lossless(pod1, pod2.ip);
      await lossless(pod1, pod2ip6);
      // No NAT inside the overlay: pod2 sees pod1's own IPv6 address as the source (a UDP echo of the sender's address).
      const server = pod2.ns.spawn('node', ['-e', "const s=require('dgram').createSocket('udp6');s.on('message',(m,r)=>s.send(r.address,r.port,r.address));s.bind(7777)"]);
      try {
        const client = "const s=require('dgram').createSocket('udp6');s.on('message',(m)=>{process.stdout.write(String(m));process.exit(0)});" +
          `setInterval(()=>s.send('who','7777','${pod2ip6}'),200);setTimeout(()=>process.exit(1),5000)`;
        expect(await pod1.ns.exec('node', '-e', client)).to.equal(`${subnet6(h1()).ip}b`);
      } finally {
        server.kill('SIGTERM');
      }
    });

    it("an IPv6 peer route deleted by hand is restored and ping6 resumes", async () => {
      await h1().ns.ip('-6', 'route', 'del', subnet6(h2()).toString());
      await eventually(async () => (await weftRoutes(h1())).includes(`${subnet6(h2())} via ${h2().ip6} dev eth0`), 5000, 'IPv6 route restored');
      await lossless(pod1, pod2ip6);
    });
  });
}
