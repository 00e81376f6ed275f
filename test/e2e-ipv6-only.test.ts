/**
 * IPv6-only end to end: three hosts with only 2001:2::N/64 on the underlay,
 * etcd only on [2001:2::fa]:2379, the network config `{"EnableIPv4":false,
 * "EnableIPv6":true,"IPv6Network":"fd00:10:244::/48"}`, and a real dockerd
 * on each host started with the options weft generated (`--ipv6
 * --fixed-cidr-v6`, no `--bip`: Docker keeps a host-local IPv4 bridge of its
 * own that weft does not route). Containers reach each other over the
 * overlay's IPv6 through flannel-v6.1; there is no flannel.1.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Subnet } from '../common/subnet.js';
import { Cluster, type WeftNode } from './harness/cluster.js';
import { BUSYBOX_IMAGE, DockerHost } from './harness/docker.js';
import { WHOAMI_WEB, dockerOpts } from './harness/whoami.js';



/** The node's /64 from its subnet file (`fd00:10:244:3::1/64` -> `fd00:10:244:3::/64`). */
const subnet6 = (node: WeftNode) => Subnet.parse(node.subnetEnv().FLANNEL_IPV6_SUBNET!);

describe('end to end: IPv6-only weftd + real Docker on three hosts, etcd over IPv6 @real', function () {
  this.timeout(150_000);
  let cluster: Cluster;
  const docker: DockerHost[] = [];
  const ip6s: string[] = [];

  before(async () => {
    cluster = await Cluster.create({ hosts: 3, stack: 'v6' });
    for (const n of cluster.nodes) n.start(['--ip-masq']);
    await Promise.all(cluster.nodes.map((n) => n.waitReady(45_000)));
    for (const n of cluster.nodes) {
      const d = await DockerHost.start(n.ns.name, join(cluster.dir, `d${n.index}`), (await dockerOpts(n)).opts);
      docker.push(d);
      await d.docker('run', '-d', '--name', 'web', BUSYBOX_IMAGE, 'sh', '-c', WHOAMI_WEB);
      await d.waitBridgeIPv6();
      ip6s.push(await d.containerIPv6('web'));
    }
  });

  after(async () => {
    await Promise.all(docker.map((d) => d.stop()));
    await cluster?.destroy();
  });

  it('reaches etcd over IPv6 only: the underlay carries no IPv4 at all', async () => {
    for (const n of cluster.nodes) {
      expect(n.etcdEndpoints).to.deep.equal(['http://[2001:2::fa]:2379']);
      expect(await n.ns.ipJson<unknown[]>('-4', 'addr', 'show', 'dev', 'eth0')).to.deep.equal([]);
    }
    expect(await cluster.etcdNs.ipJson<unknown[]>('-4', 'addr', 'show', 'dev', 'eth0')).to.deep.equal([]);
  });

  it('writes the IPv6 lines of the subnet file exactly as flannel does, and no IPv4 ones', async () => {
    for (const n of cluster.nodes) {
      const text = readFileSync(n.subnetFile, 'utf8');
      // MTU: the underlay's 1500 less VXLAN over IPv6 (40 + 8 + 8 + 14).
      expect(text).to.match(/^FLANNEL_IPV6_NETWORK=fd00:10:244::\/48\nFLANNEL_IPV6_SUBNET=fd00:10:244:[0-9a-f]{1,4}::1\/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n$/);
      const net6 = subnet6(n).toString();
      expect((await dockerOpts(n)).file).to.equal(
        `DOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_IPV6="--ipv6 --fixed-cidr-v6=${net6}"\nDOCKER_OPT_MTU="--mtu=1430"\n` +
          `DOCKER_OPTS=" --ip-masq=false --ipv6 --fixed-cidr-v6=${net6} --mtu=1430"\n`,
      );
    }
    expect(new Set(cluster.nodes.map((n) => subnet6(n).toString())).size).to.equal(3);
    for (const [i, n] of cluster.nodes.entries()) expect(subnet6(n).contains(ip6s[i]!), `${ip6s[i]} in ${subnet6(n)}`).to.equal(true);
  });

  it('holds IPv6-only leases (flannel\'s `0.0.0.0-0&` keys) and programs flannel-v6.1 only', async () => {
    for (const n of cluster.nodes) {
      const key = `/coreos.com/network/subnets/0.0.0.0-0&${subnet6(n).toString().replace('/', '-')}`;
      const value = JSON.parse(await cluster.etcd.etcdctl('get', key, '--print-value-only')) as Record<string, unknown>;
      const [v6] = await n.ns.ipJson<{ address: string; linkinfo: { info_data: Record<string, unknown> } }[]>('-d', 'link', 'show', 'flannel-v6.1');
      expect(value).to.include({ PublicIP: '0.0.0.0', PublicIPv6: n.ip6, BackendType: 'vxlan' });
      expect(value.BackendV6Data).to.deep.equal({ VNI: 1, VtepMAC: v6!.address });
      expect(v6!.linkinfo.info_data).to.include({ id: 1, local6: n.ip6, port: 8472, learning: false });
      expect(await n.ns.ipJson<unknown[]>('link', 'show', 'flannel.1').catch(() => []), 'no IPv4 device').to.have.length(0);
      const routed = (await n.ns.ipJson<{ dst: string }[]>('-6', 'route', 'show', 'dev', 'flannel-v6.1')).map((r) => r.dst);
      for (const peer of cluster.nodes.filter((p) => p !== n)) expect(routed, `h${n.index} -> h${peer.index}`).to.include(subnet6(peer).toString());
    }
  });

  it('containers ping6 each other across every pair of hosts', async () => {
    for (let a = 0; a < 3; a++) {
      for (let b = 0; b < 3; b++) {
        if (a === b) continue;
        const out = await docker[a]!.docker('exec', 'web', 'ping6', '-c', '2', '-W', '2', ip6s[b]!);
        expect(out, `c${a + 1} -> c${b + 1}`).to.match(/2 packets received/);
      }
    }
  });

  it('a TCP connection across hosts sees the container\'s own IPv6 address (no NAT inside the overlay)', async () => {
    const seen = await docker[0]!.docker('exec', 'web', 'wget', '-qO-', `http://[${ip6s[1]}]:8080/cgi-bin/whoami`);
    expect(seen.trim()).to.equal(`[${ip6s[0]}]`);
  });
});
