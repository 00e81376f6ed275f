import { expect } from 'chai';
import { mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { Cluster, WEFTD } from './harness/cluster.js';
import { BUSYBOX_IMAGE, DockerHost } from './harness/docker.js';
import { WHOAMI_CGI, WHOAMI_WEB, clientAddress, dockerOpts } from './harness/whoami.js';



/** h3 gives Docker the bridge weftd made (`weftd --bridge`, `docker-opts --bridge`); h1 and h2 use `--bip`. */
const BRIDGE_HOST = 3;


describe('end to end: weftd + real Docker on three hosts in namespaces @real', function () {
  this.timeout(180_000);
  let cluster: Cluster;
  const docker: DockerHost[] = [];
  const ips: string[] = [];

  before(async () => {
    cluster = await Cluster.create({ hosts: 3 });
    for (const n of cluster.nodes) n.start(['--ip-masq', ...(n.index === BRIDGE_HOST ? ['--bridge', 'weft0'] : [])]);
    await Promise.all(cluster.nodes.map((n) => n.waitReady(60_000)));
    for (const n of cluster.nodes) {
      const d = await DockerHost.start(n.ns.name, join(cluster.dir, `d${n.index}`), (await dockerOpts(n, n.index === BRIDGE_HOST ? ['--bridge', 'weft0'] : [])).opts);
      docker.push(d);
      // Each container serves its view of the client's address on :8080.
      await d.docker('run', '-d', '--name', 'web', BUSYBOX_IMAGE, 'sh', '-c',
        WHOAMI_WEB);
      ips.push(await d.containerIP('web'));
    }
  });

  after(async () => {
    await Promise.all(docker.map((d) => d.stop()));
    await cluster?.destroy();
  });

  it('writes flannel\'s exact subnet file and docker options', async () => {
    for (const n of cluster.nodes) {
      const text = readFileSync(n.subnetFile, 'utf8');
      expect(text).to.match(/^FLANNEL_NETWORK=10\.244\.0\.0\/16\nFLANNEL_SUBNET=10\.244\.\d{1,3}\.1\/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n$/);
      const sub = n.subnetEnv().FLANNEL_SUBNET!;
      const { file } = await dockerOpts(n, n.index === BRIDGE_HOST ? ['--bridge', 'weft0'] : []);
      if (n.index === BRIDGE_HOST) {
        expect(file).to.equal('DOCKER_OPT_BRIDGE="--bridge=weft0"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_MTU="--mtu=1450"\nDOCKER_OPTS=" --bridge=weft0 --ip-masq=false --mtu=1450"\n');
        // weftd made the bridge with the gateway address and the overlay MTU.
        const [br] = await n.ns.ipJson<{ mtu: number; addr_info: { local: string; prefixlen: number }[] }[]>('-4', 'addr', 'show', 'dev', 'weft0');
        expect(br!.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).to.deep.equal([sub]);
        expect(br!.mtu).to.equal(1450);
      } else {
        expect(file).to.equal(`DOCKER_OPT_BIP="--bip=${sub}"\nDOCKER_OPT_IPMASQ="--ip-masq=false"\nDOCKER_OPT_MTU="--mtu=1450"\nDOCKER_OPTS=" --bip=${sub} --ip-masq=false --mtu=1450"\n`);
      }
    }
    // Containers got addresses from their host's lease.
    for (const [i, n] of cluster.nodes.entries()) {
      const prefix = n.subnetEnv().FLANNEL_SUBNET!.split('.').slice(0, 3).join('.');
      expect(ips[i]).to.match(new RegExp(`^${prefix.replace(/\./g, '\\.')}\\.\\d+$`));
    }
  });

  it('containers ping each other across every pair of hosts, at the overlay MTU', async () => {
    for (let a = 0; a < 3; a++) {
      for (let b = 0; b < 3; b++) {
        if (a === b) continue;
        const out = await docker[a]!.docker('exec', 'web', 'ping', '-c', '2', '-W', '2', ips[b]!);
        expect(out, `c${a + 1} -> c${b + 1}`).to.match(/2 packets received/);
      }
    }
    // A full-size packet (1450 - 28 bytes of IP+ICMP header) crosses without fragmentation trouble.
    const big = await docker[0]!.docker('exec', 'web', 'ping', '-c', '1', '-W', '2', '-s', '1422', ips[1]!);
    expect(big).to.match(/1 packets received/);
  });

  it('a TCP connection across hosts sees the real container source IP (no NAT inside the overlay)', async () => {
    const seen = await docker[0]!.docker('exec', 'web', 'wget', '-qO-', `http://${ips[1]}:8080/cgi-bin/whoami`);
    expect(clientAddress(seen)).to.equal(ips[0]);
  });

  it('--ip-masq masquerades only traffic leaving the overlay', async () => {
    // A server on h2's own underlay address, outside the overlay.
    const h2 = cluster.node(2);
    const www = join(h2.dir, 'www');
    mkdirSync(join(www, 'cgi-bin'), { recursive: true });
    writeFileSync(join(www, 'cgi-bin', 'whoami'), WHOAMI_CGI);
    chmodSync(join(www, 'cgi-bin', 'whoami'), 0o755);
    const server = h2.ns.spawn('busybox', ['httpd', '-f', '-p', '198.18.0.2:8081', '-h', www]);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const outside = await docker[0]!.docker('exec', 'web', 'wget', '-qO-', 'http://198.18.0.2:8081/cgi-bin/whoami');
      expect(clientAddress(outside), 'leaving the overlay: source is h1\'s underlay address').to.equal('198.18.0.1');
      const inside = await docker[0]!.docker('exec', 'web', 'wget', '-qO-', `http://${ips[2]}:8080/cgi-bin/whoami`);
      expect(clientAddress(inside), 'inside the overlay: untouched').to.equal(ips[0]);
      // flannel's rule set, with its comments, is what holds this.
      const nat = await cluster.node(1).ns.exec('iptables-save', '-t', 'nat');
      expect(nat).to.include('-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG');
      expect(nat).to.include('-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully');
    } finally {
      server.kill('SIGTERM');
    }
  });
});

describe('weftd readiness, restart and shutdown in namespaces @real', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  before(async () => {
    cluster = await Cluster.create({ hosts: 2 });
  });
  after(async () => cluster?.destroy());

  it('/readyz turns ready only after every peer is programmed', async () => {
    // 200 peer leases already in etcd (simulated nodes): readiness must wait for all of them.
    const n = cluster.node(1);
    await writePeers(cluster, 200);
    n.start();
    let sawNotReady = false;
    for (;;) {
      const r = await n.http('/readyz').catch(() => ({ status: 0, body: '' }));
      if (r.status === 503) sawNotReady = true;
      if (r.status === 200) break;
      await new Promise((res) => setTimeout(res, 20));
    }
    const routes = await n.ns.ipJson<{ dst: string }[]>('route', 'show', 'dev', 'flannel.1');
    expect(routes.length, 'every peer has its route when /readyz first says ready').to.equal(200);
    expect(sawNotReady || routes.length === 200).to.equal(true);
    expect((await n.http('/healthz')).status).to.equal(200);
  });

  it('SIGTERM stops within 2 s, keeping the lease and the kernel state; a restart keeps subnet and VTEP MAC', async () => {
    const n = cluster.node(1);
    const subnet = n.subnetEnv().FLANNEL_SUBNET;
    const mac = (await n.ns.ipJson<{ address: string }[]>('link', 'show', 'flannel.1'))[0]!.address;
    const { code, ms } = await n.stop('SIGTERM');
    expect(code).to.equal(0);
    expect(ms).to.be.below(2000);
    expect(await n.ns.ipJson<unknown[]>('route', 'show', 'dev', 'flannel.1')).to.have.length(200);
    const key = `/coreos.com/network/subnets/${subnet!.replace('.1/', '.0-')}`;
    expect(await cluster.etcd.etcdctl('get', key, '--print-value-only')).to.include('"PublicIP":"198.18.0.1"');
    n.start();
    await n.waitReady();
    expect(n.subnetEnv().FLANNEL_SUBNET).to.equal(subnet);
    expect((await n.ns.ipJson<{ address: string }[]>('link', 'show', 'flannel.1'))[0]!.address).to.equal(mac);
  });

  it('bad options exit with code 2 and a message naming the option, touching nothing', async () => {
    const n = cluster.node(2);
    for (const [args, pattern] of [
      [['--healthz-port', 'x'], /--healthz-port/],
      [['--etcd-endpoints', 'ftp://x'], /--etcd-endpoints/],
      [['--no-such-flag'], /Unknown argument/],
    ] as const) {
      try {
        await n.ns.exec(WEFTD, ...args);
        expect.fail('should exit non-zero');
      } catch (err) {
        expect((err as { code: number }).code).to.equal(2);
        expect((err as { stderr: string }).stderr).to.match(pattern);
      }
    }
    expect(await n.ns.ipJson<unknown[]>('link', 'show', 'flannel.1').catch(() => [])).to.have.length(0);
  });
});

/** Writes `count` simulated peer leases (vxlan, distinct MACs and public IPs) into 10.244.1-count.0/24. */
async function writePeers(cluster: Cluster, count: number): Promise<void> {
  const ops = Array.from({ length: count }, (_, k) => {
    const i = k + 1;
    const mac = `0e:2a:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
    const value = JSON.stringify({ PublicIP: `198.18.1.${i}`, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
    return { key: `/coreos.com/network/subnets/10.244.${i}.0-24`, value };
  });
  await cluster.writeKeys(ops);
}
