/**
 * Dual-stack end to end: three hosts with 198.18.0.N/24 and 2001:2::N/64 on
 * one underlay, the network config `{"Network":"10.244.0.0/16","EnableIPv6":
 * true,"IPv6Network":"fd00:10:244::/48"}`, weftd with --ip-masq on each, and
 * a real dockerd started with the options weft generated (`--bip` and
 * `--ipv6 --fixed-cidr-v6`). Containers reach each other over both families,
 * through flannel.1 and flannel-v6.1, and see each other's own addresses.
 */
import { expect } from 'chai';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Subnet } from '../common/subnet.js';
import { Cluster } from './harness/cluster.js';
import { BUSYBOX_IMAGE, DockerHost } from './harness/docker.js';
import { WHOAMI_CGI, WHOAMI_WEB, clientAddress, dockerOpts } from './harness/whoami.js';
import { urlHost } from './harness/etcd.js';
import { eventually } from './harness/netns.js';
import type { NodeStatus, PeerHealth } from '../daemon/status.js';





/** The node's subnet of a subnet file line (`fd00:10:244:3::1/64` -> `fd00:10:244:3::/64`). */
const network = (line: string) => Subnet.parse(line);

/** The etcd key of a dual-stack lease from the subnet file: `10.244.3.0-24&fd00:10:244:3::-64`. */
function leaseKey(env: Record<string, string>): string {
  const key = (line: string) => network(line).toString().replace('/', '-');
  return `/coreos.com/network/subnets/${key(env.FLANNEL_SUBNET!)}&${key(env.FLANNEL_IPV6_SUBNET!)}`;
}

interface VxlanLink {
  address: string;
  mtu: number;
  linkinfo: { info_kind: string; info_data: { id: number; local?: string; local6?: string; port: number; learning: boolean } };
}

describe('end to end: dual-stack weftd + real Docker on three hosts in namespaces @real', function () {
  this.timeout(180_000);
  let cluster: Cluster;
  const docker: DockerHost[] = [];
  const ips: string[] = [];
  const ip6s: string[] = [];

  before(async () => {
    cluster = await Cluster.create({ hosts: 3, stack: 'dual' });
    for (const n of cluster.nodes) n.start(['--ip-masq']);
    await Promise.all(cluster.nodes.map((n) => n.waitReady(45_000)));
    for (const n of cluster.nodes) {
      const d = await DockerHost.start(n.ns.name, join(cluster.dir, `d${n.index}`), (await dockerOpts(n)).opts);
      docker.push(d);
      // Each container serves its view of the client's address on :8080, over both families.
      await d.docker('run', '-d', '--name', 'web', BUSYBOX_IMAGE, 'sh', '-c', WHOAMI_WEB);
      await d.waitBridgeIPv6();
      ips.push(await d.containerIP('web'));
      ip6s.push(await d.containerIPv6('web'));
    }
  });

  after(async () => {
    await Promise.all(docker.map((d) => d.stop()));
    await cluster?.destroy();
  });

  it('writes flannel\'s exact dual-stack subnet file and docker options', async () => {
    for (const n of cluster.nodes) {
      const text = readFileSync(n.subnetFile, 'utf8');
      expect(text).to.match(
        // The smaller device MTU: an IPv6 packet of a container must fit flannel-v6.1 (1500 - 70).
        /^FLANNEL_NETWORK=10\.244\.0\.0\/16\nFLANNEL_SUBNET=10\.244\.\d{1,3}\.1\/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::\/48\nFLANNEL_IPV6_SUBNET=fd00:10:244:[0-9a-f]{1,4}::1\/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n$/,
      );
      const env = n.subnetEnv();
      const sub = env.FLANNEL_SUBNET!;
      const net6 = network(env.FLANNEL_IPV6_SUBNET!).toString();
      const { file } = await dockerOpts(n);
      expect(file).to.equal(
        `DOCKER_OPT_BIP="--bip=${sub}"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_IPV6="--ipv6 --fixed-cidr-v6=${net6}"\nDOCKER_OPT_MTU="--mtu=1430"\n` +
          `DOCKER_OPTS=" --bip=${sub} --ip-masq=false --ipv6 --fixed-cidr-v6=${net6} --mtu=1430"\n`,
      );
    }
    // Containers got addresses of both families from their host's lease.
    for (const [i, n] of cluster.nodes.entries()) {
      const env = n.subnetEnv();
      expect(network(env.FLANNEL_SUBNET!).contains(ips[i]!), `${ips[i]} in ${env.FLANNEL_SUBNET}`).to.equal(true);
      expect(network(env.FLANNEL_IPV6_SUBNET!).contains(ip6s[i]!), `${ip6s[i]} in ${env.FLANNEL_IPV6_SUBNET}`).to.equal(true);
    }
    // Every host has its own /64.
    expect(new Set(cluster.nodes.map((n) => n.subnetEnv().FLANNEL_IPV6_SUBNET)).size).to.equal(3);
  });

  it('holds one dual-stack lease per host, with PublicIPv6 and the VTEP of flannel-v6.1 in BackendV6Data', async () => {
    for (const n of cluster.nodes) {
      const value = JSON.parse(await cluster.etcd.etcdctl('get', leaseKey(n.subnetEnv()), '--print-value-only')) as Record<string, unknown>;
      const [v4] = await n.ns.ipJson<VxlanLink[]>('-d', 'link', 'show', 'flannel.1');
      const [v6] = await n.ns.ipJson<VxlanLink[]>('-d', 'link', 'show', 'flannel-v6.1');
      expect(value).to.include({ PublicIP: n.ip, PublicIPv6: n.ip6, BackendType: 'vxlan' });
      expect(value.BackendData).to.deep.equal({ VNI: 1, VtepMAC: v4!.address });
      expect(value.BackendV6Data).to.deep.equal({ VNI: 1, VtepMAC: v6!.address });
      // The IPv6 device encapsulates from the host's IPv6 underlay address, on flannel's port, without learning.
      expect(v6!.linkinfo.info_kind).to.equal('vxlan');
      expect(v6!.linkinfo.info_data).to.include({ id: 1, local6: n.ip6, port: 8472, learning: false });
      expect(v4!.linkinfo.info_data).to.include({ id: 1, local: n.ip, port: 8472, learning: false });
      // Each peer's /64 is routed through flannel-v6.1.
      const routed = (await n.ns.ipJson<{ dst: string }[]>('-6', 'route', 'show', 'dev', 'flannel-v6.1')).map((r) => r.dst);
      for (const peer of cluster.nodes.filter((p) => p !== n)) {
        expect(routed, `h${n.index} -> h${peer.index}`).to.include(network(peer.subnetEnv().FLANNEL_IPV6_SUBNET!).toString());
      }
    }
  });

  it('containers ping and ping6 each other across every pair of hosts', async () => {
    for (let a = 0; a < 3; a++) {
      for (let b = 0; b < 3; b++) {
        if (a === b) continue;
        const v4 = await docker[a]!.docker('exec', 'web', 'ping', '-c', '2', '-W', '2', ips[b]!);
        expect(v4, `c${a + 1} -> c${b + 1} over IPv4`).to.match(/2 packets received/);
        const v6 = await docker[a]!.docker('exec', 'web', 'ping6', '-c', '2', '-W', '2', ip6s[b]!);
        expect(v6, `c${a + 1} -> c${b + 1} over IPv6`).to.match(/2 packets received/);
      }
    }
  });

  it('a TCP connection across hosts sees the real container source address over both families (no NAT inside the overlay)', async () => {
    const seen6 = await docker[0]!.docker('exec', 'web', 'wget', '-qO-', `http://[${ip6s[1]}]:8080/cgi-bin/whoami`);
    expect(clientAddress(seen6)).to.equal(ip6s[0]);
    const seen4 = await docker[2]!.docker('exec', 'web', 'wget', '-qO-', `http://${ips[1]}:8080/cgi-bin/whoami`);
    expect(clientAddress(seen4)).to.equal(ips[2]);
  });

  it('--ip-masq masquerades IPv6 only when it leaves the overlay, with flannel\'s ip6tables rules', async () => {
    // A server on h2's own IPv6 underlay address, outside the overlay.
    const h2 = cluster.node(2);
    const www = join(h2.dir, 'www');
    mkdirSync(join(www, 'cgi-bin'), { recursive: true });
    writeFileSync(join(www, 'cgi-bin', 'whoami'), WHOAMI_CGI);
    chmodSync(join(www, 'cgi-bin', 'whoami'), 0o755);
    const server = h2.ns.spawn('busybox', ['httpd', '-f', '-p', `[${h2.ip6}]:8081`, '-h', www]);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const outside = await docker[0]!.docker('exec', 'web', 'wget', '-qO-', `http://${urlHost(h2.ip6!)}:8081/cgi-bin/whoami`);
      expect(clientAddress(outside), 'leaving the overlay: source is h1\'s IPv6 underlay address').to.equal(cluster.node(1).ip6);
      const inside = await docker[0]!.docker('exec', 'web', 'wget', '-qO-', `http://[${ip6s[2]}]:8080/cgi-bin/whoami`);
      expect(clientAddress(inside), 'inside the overlay: untouched').to.equal(ip6s[0]);
      const nat6 = await cluster.node(1).ns.exec('ip6tables-save', '-t', 'nat');
      expect(nat6).to.include('-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG');
      expect(nat6).to.include('-A FLANNEL-POSTRTG -s fd00:10:244::/48 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully');
      // IPv4 keeps its own rules.
      expect(await cluster.node(1).ns.exec('iptables-save', '-t', 'nat')).to.include('-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully');
    } finally {
      server.kill('SIGTERM');
    }
  });

  it('peer health: every peer answers in both families, over the underlay and through flannel.1 and flannel-v6.1', async () => {
    const n1 = cluster.node(1);
    let peers: readonly PeerHealth[] = [];
    await eventually(
      async () => {
        const status = JSON.parse((await n1.http('/status')).body) as NodeStatus;
        peers = status.probes?.peers ?? [];
        return peers.length === 4 && peers.every((p) => p.verdict === 'ok');
      },
      40_000,
      'both peers healthy in both families',
    );
    expect(peers.map((p) => `${p.family} ${p.publicIP}`).sort()).to.deep.equal(['4 198.18.0.2', '4 198.18.0.3', `6 ${cluster.node(2).ip6}`, `6 ${cluster.node(3).ip6}`].sort());
    for (const p of peers) expect(p.overlay.ok && p.underlay.ok, `${p.family} ${p.subnet}`).to.equal(true);
  });
});
