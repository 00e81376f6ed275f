/**
 * The harness's IPv6 underlay, on its own (no weftd): what the dual-stack and
 * IPv6-only end-to-end tests stand on. Hosts reach each other over
 * 2001:2::/64, an IPv6-only cluster's etcd answers on [2001:2::fa]:2379 and
 * nowhere else, and a dockerd started with weft's IPv6 options hands its
 * containers addresses from --fixed-cidr-v6.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster, ETCD_IP6, NETWORK_CONFIGS, hostIp6, underlayCidrs } from './harness/cluster.js';
import { BUSYBOX_IMAGE, DockerHost } from './harness/docker.js';
import { urlHost } from './harness/etcd.js';
import { WHOAMI_WEB } from './harness/whoami.js';

/** A CGI script that answers with the client's address as the server sees it (REMOTE_ADDR). */

interface AddrInfo {
  family: string;
  local: string;
  prefixlen: number;
  scope: string;
}

async function globalAddresses(cluster: Cluster, i: number): Promise<string[]> {
  const [eth0] = await cluster.node(i).ns.ipJson<{ addr_info: AddrInfo[] }[]>('addr', 'show', 'dev', 'eth0');
  return eth0!.addr_info.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`);
}

describe('harness: IPv6 addresses and configs', () => {
  it('puts the families of each stack on eth0', () => {
    expect(underlayCidrs('v4', '198.18.0.1', '2001:2::1')).to.deep.equal(['198.18.0.1/24']);
    expect(underlayCidrs('dual', '198.18.0.1', '2001:2::1')).to.deep.equal(['198.18.0.1/24', '2001:2::1/64']);
    expect(underlayCidrs('v6', '198.18.0.1', '2001:2::1')).to.deep.equal(['2001:2::1/64']);
    expect([hostIp6(1), hostIp6(10), ETCD_IP6]).to.deep.equal(['2001:2::1', '2001:2::a', '2001:2::fa']);
  });

  it('brackets IPv6 hosts in URLs', () => {
    expect(urlHost('2001:2::fa')).to.equal('[2001:2::fa]');
    expect(urlHost('198.18.0.250')).to.equal('198.18.0.250');
  });

  it('writes flannel\'s network config for each stack', () => {
    expect(JSON.parse(NETWORK_CONFIGS.v4)).to.deep.equal({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } });
    expect(JSON.parse(NETWORK_CONFIGS.dual)).to.deep.equal({ Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/48', Backend: { Type: 'vxlan' } });
    expect(JSON.parse(NETWORK_CONFIGS.v6)).to.deep.equal({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::/48', Backend: { Type: 'vxlan' } });
  });
});

describe('harness: a dual-stack underlay and Docker with IPv6 @real', function () {
  this.timeout(90_000);
  let cluster: Cluster;
  let docker: DockerHost | null = null;
  const rootForwarding = readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8');

  before(async () => {
    cluster = await Cluster.create({ hosts: 2, stack: 'dual' });
  });
  after(async () => {
    await docker?.stop();
    await cluster?.destroy();
  });

  it('gives every host both families on eth0, IPv6 forwarding in its own namespace only', async () => {
    expect(await globalAddresses(cluster, 1)).to.deep.equal(['198.18.0.1/24', '2001:2::1/64']);
    expect(await globalAddresses(cluster, 2)).to.deep.equal(['198.18.0.2/24', '2001:2::2/64']);
    expect(cluster.node(2).ip6).to.equal('2001:2::2');
    expect((await cluster.node(1).ns.exec('sysctl', '-n', 'net.ipv6.conf.all.forwarding')).trim()).to.equal('1');
    expect(readFileSync('/proc/sys/net/ipv6/conf/all/forwarding', 'utf8'), 'the root namespace is untouched').to.equal(rootForwarding);
  });

  it('hosts ping each other over both families at once (no wait for duplicate address detection)', async () => {
    const h1 = cluster.node(1).ns;
    expect(await h1.exec('ping', '-6', '-c', '1', '-W', '2', '2001:2::2')).to.match(/1 received/);
    expect(await h1.exec('ping', '-4', '-c', '1', '-W', '2', '198.18.0.2')).to.match(/1 received/);
    expect(await h1.exec('ping', '-6', '-c', '1', '-W', '2', ETCD_IP6)).to.match(/1 received/);
  });

  it('etcd is reached over IPv4 as in an IPv4 cluster, with the dual-stack config in it', async () => {
    const n = cluster.node(1);
    expect(n.etcdEndpoints).to.deep.equal(['http://198.18.0.250:2379']);
    const config = await n.ns.exec('etcdctl', '--endpoints', n.etcdEndpoints[0]!, 'get', '/coreos.com/network/config', '--print-value-only');
    expect(config.trim()).to.equal(NETWORK_CONFIGS.dual);
  });

  it('dockerd started with --ipv6 --fixed-cidr-v6 gives containers addresses from it, and IPv6 TCP peers see them', async () => {
    const h1 = cluster.node(1);
    docker = await DockerHost.start(h1.ns.name, join(cluster.dir, 'd1'), ['--bip=10.244.1.1/24', '--ipv6', '--fixed-cidr-v6=fd00:10:244:1::/64', '--mtu=1450']);
    await docker.docker('run', '-d', '--name', 'web', BUSYBOX_IMAGE, 'sh', '-c',
      WHOAMI_WEB);
    await docker.docker('run', '-d', '--name', 'client', BUSYBOX_IMAGE, 'sleep', '3600');
    await docker.waitBridgeIPv6();
    const web = await docker.containerIPv6('web');
    const client = await docker.containerIPv6('client');
    expect(web).to.match(/^fd00:10:244:1:/);
    expect(client).to.match(/^fd00:10:244:1:/);
    expect(await docker.containerIP('web')).to.match(/^10\.244\.1\.\d+$/);
    // The gateway is docker0's first address; the default route leads there.
    expect(await docker.docker('exec', 'client', 'ip', '-6', 'route')).to.match(/^default via fd00:10:244:1::1 dev eth0/m);
    expect(await docker.docker('exec', 'client', 'ping6', '-c', '2', '-W', '2', 'fd00:10:244:1::1')).to.match(/2 packets received/);
    // busybox httpd reports an IPv6 client in brackets.
    expect(await docker.docker('exec', 'client', 'wget', '-qO-', `http://[${web}]:8080/cgi-bin/whoami`)).to.equal(`[${client}]`);
  });
});

describe('harness: an IPv6-only underlay, etcd over IPv6 @real', function () {
  this.timeout(90_000);
  let cluster: Cluster;
  let docker: DockerHost | null = null;

  before(async () => {
    cluster = await Cluster.create({ hosts: 2, stack: 'v6' });
  });
  after(async () => {
    await docker?.stop();
    await cluster?.destroy();
  });

  it('gives hosts and etcd IPv6 only', async () => {
    expect(await globalAddresses(cluster, 1)).to.deep.equal(['2001:2::1/64']);
    const [etcd0] = await cluster.etcdNs.ipJson<{ addr_info: AddrInfo[] }[]>('addr', 'show', 'dev', 'eth0');
    expect(etcd0!.addr_info.filter((a) => a.scope === 'global').map((a) => a.local)).to.deep.equal([ETCD_IP6]);
    expect(cluster.node(1).ip).to.equal('2001:2::1');
    expect(cluster.node(1).ip6).to.equal('2001:2::1');
    expect(await cluster.node(1).ns.exec('ping', '-6', '-c', '1', '-W', '2', '2001:2::2')).to.match(/1 received/);
  });

  it('weftd is pointed at etcd on [2001:2::fa]:2379, which answers there from a host', async () => {
    const n = cluster.node(1);
    expect(n.etcdEndpoints).to.deep.equal(['http://[2001:2::fa]:2379']);
    expect(cluster.etcd.endpoint).to.equal('http://[2001:2::fa]:2379');
    const config = await n.ns.exec('etcdctl', '--endpoints', n.etcdEndpoints[0]!, 'get', '/coreos.com/network/config', '--print-value-only');
    expect(config.trim()).to.equal(NETWORK_CONFIGS.v6);
    // The etcd3 client (weftd's) over IPv6 too: writeKeys runs it inside etcd's namespace.
    await cluster.writeKeys([{ key: '/coreos.com/network/probe', value: 'v6' }]);
    expect((await cluster.etcd.etcdctl('get', '/coreos.com/network/probe', '--print-value-only')).trim()).to.equal('v6');
  });

  it('dockerd with IPv6 options only (no --bip) gives containers an address from --fixed-cidr-v6', async () => {
    const h2 = cluster.node(2);
    docker = await DockerHost.start(h2.ns.name, join(cluster.dir, 'd2'), ['--ip-masq=false', '--ipv6', '--fixed-cidr-v6=fd00:10:244:2::/64', '--mtu=1430']);
    await docker.docker('run', '-d', '--name', 'c1', BUSYBOX_IMAGE, 'sleep', '3600');
    await docker.waitBridgeIPv6();
    expect(await docker.containerIPv6('c1')).to.match(/^fd00:10:244:2:/);
    expect(await docker.docker('exec', 'c1', 'ping6', '-c', '2', '-W', '2', 'fd00:10:244:2::1')).to.match(/2 packets received/);
  });
});
