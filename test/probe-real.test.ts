/**
 * Peer health by ICMP against real kernels, in a three-host namespace cluster:
 *   h1: weftd as root (CAP_NET_RAW): probes with ICMP echo.
 *   h2: weftd started without CAP_NET_RAW (setpriv drops it from the bounding
 *       set): probes with weft's UDP echo, and says why.
 *   h3: a flanneld-style node with no weft at all: its lease written to etcd
 *       by the test (with an etcd lease, as flanneld does), and its VXLAN
 *       device, address, FDB entries, neighbours and routes made by hand in
 *       its namespace, as flanneld programs them.
 * h1 sees h3 reachable on both paths (its kernel answers the echoes), and
 * still diagnoses "underlay OK but overlay blocked" when h3 drops UDP 8472.
 */
import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { Cluster, type WeftNode } from './harness/cluster.js';
import { Netns, Switch, eventually } from './harness/netns.js';
import type { NodeStatus, PeerHealth } from '../daemon/status.js';

const WEFTCTL = fileURLToPath(new URL('../bin/weftctl.cjs', import.meta.url));
const PROBE_MODULE = new URL('../daemon/probe.js', import.meta.url).href;
const PREFIX = '/coreos.com/network';
/** The flanneld-style node's lease and device (outside what weft allocates first: any free /24 would do). */
const FLANNEL_SUBNET = '10.244.213.0';
const FLANNEL_MAC = '0e:fa:00:00:00:03';

async function status(node: WeftNode): Promise<NodeStatus> {
  const { status: code, body } = await node.http('/status');
  if (code !== 200) throw new Error(`/status on h${node.index}: ${code} ${body}`);
  return JSON.parse(body) as NodeStatus;
}

async function peerHealth(node: WeftNode, subnet: string): Promise<PeerHealth | undefined> {
  return (await status(node)).probes?.peers.find((p) => p.subnet === subnet);
}

/** The weft leases in etcd: subnet (`10.244.3.0`), public IP and VTEP MAC of each. */
async function weftLeases(cluster: Cluster): Promise<{ subnet: string; publicIP: string; mac: string }[]> {
  const lines = (await cluster.etcd.etcdctl('get', '--prefix', `${PREFIX}/subnets/`)).trim().split('\n');
  const leases: { subnet: string; publicIP: string; mac: string }[] = [];
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const subnet = lines[i]!.slice(`${PREFIX}/subnets/`.length).split('-')[0]!;
    const value = JSON.parse(lines[i + 1]!) as { PublicIP: string; BackendData: { VtepMAC: string } };
    leases.push({ subnet, publicIP: value.PublicIP, mac: value.BackendData.VtepMAC });
  }
  return leases;
}

/**
 * What flanneld's vxlan backend does on start in `ns` (underlay `eth0` at
 * `publicIP`): flannel.1 with VNI 1 on port 8472, no learning, the lease's
 * `<subnet>.0/32` on it, MTU of the underlay less 50. And its lease in etcd,
 * bound to an etcd lease with flanneld's TTL.
 */
async function startFlanneldStyleNode(cluster: Cluster, ns: Netns, publicIP: string): Promise<void> {
  await ns.ip('link', 'add', 'flannel.1', 'address', FLANNEL_MAC, 'mtu', '1450', 'type', 'vxlan', 'id', '1', 'local', publicIP, 'dev', 'eth0', 'dstport', '8472', 'nolearning');
  await ns.ip('addr', 'add', `${FLANNEL_SUBNET}/32`, 'dev', 'flannel.1');
  await ns.ip('link', 'set', 'flannel.1', 'up');
  const grant = await cluster.etcd.etcdctl('lease', 'grant', '86400');
  const id = /lease ([0-9a-f]+) granted/.exec(grant)?.[1];
  if (!id) throw new Error(`etcdctl lease grant: ${grant}`);
  const value = JSON.stringify({ PublicIP: publicIP, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: FLANNEL_MAC } });
  await cluster.etcd.etcdctl('put', `--lease=${id}`, `${PREFIX}/subnets/${FLANNEL_SUBNET}-24`, value);
}

/** What flanneld programs per peer lease: the neighbour of its `.0`, the FDB entry to its public IP, the route of its subnet. */
async function programFlanneldPeer(ns: Netns, peer: { subnet: string; publicIP: string; mac: string }): Promise<void> {
  await ns.ip('neigh', 'replace', peer.subnet, 'lladdr', peer.mac, 'dev', 'flannel.1', 'nud', 'permanent');
  await ns.exec('bridge', 'fdb', 'replace', peer.mac, 'dev', 'flannel.1', 'dst', peer.publicIP, 'self', 'permanent');
  await ns.ip('route', 'replace', `${peer.subnet}/24`, 'via', peer.subnet, 'dev', 'flannel.1', 'onlink');
}

describe('peer health by ICMP, with a flanneld-style peer @real', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  let h1: WeftNode, h2: WeftNode;
  let h3ns: Netns;
  const flannelPeer = `${FLANNEL_SUBNET}/24`;
  let h2Subnet = '';

  before(async () => {
    cluster = await Cluster.create({ hosts: 3 });
    [h1, h2] = [cluster.node(1), cluster.node(2)];
    h3ns = cluster.node(3).ns;
    await startFlanneldStyleNode(cluster, h3ns, cluster.node(3).ip);
    h1.start(['--probe-interval', '1']);
    h2.start(['--probe-interval', '1'], ['setpriv', '--bounding-set', '-net_raw']);
    await Promise.all([h1.waitReady(60_000), h2.waitReady(60_000)]);
    for (const peer of await weftLeases(cluster)) {
      if (peer.publicIP === h2.ip) h2Subnet = `${peer.subnet}/24`;
      if (peer.publicIP !== cluster.node(3).ip) await programFlanneldPeer(h3ns, peer);
    }
  });

  after(async () => cluster?.destroy());

  it('weftd with CAP_NET_RAW probes by ICMP and says so in /status and weftctl status', async () => {
    const probes = (await status(h1)).probes!;
    expect(probes).to.include({ method: 'icmp', fallbackReason: null });
    await eventually(async () => (await peerHealth(h1, flannelPeer)) !== undefined, 15_000, 'h3 probed by h1');
    const out = await h1.ns.exec('node', WEFTCTL, '--config', h1.configFile, 'status').catch((e: { stdout?: string }) => e.stdout ?? '');
    expect(out).to.match(/^peer health \(ICMP echo; last round /m);
  });

  it('a flanneld node (no weft) shows reachable over underlay and overlay', async () => {
    await eventually(async () => (await peerHealth(h1, flannelPeer))?.verdict === 'ok', 15_000, 'h3 reachable from h1');
    const h = (await peerHealth(h1, flannelPeer))!;
    expect(h).to.deep.include({ publicIP: cluster.node(3).ip, verdict: 'ok', diagnosis: 'reachable over underlay and overlay', mtu: null });
    expect(h.underlay.rttMs).to.be.a('number');
    expect(h.overlay.rttMs).to.be.a('number');
    expect(await h1.metric(`weft_peer_reachable{peer="${flannelPeer}",public_ip="${cluster.node(3).ip}",path="overlay",family="4"}`)).to.equal(1);
  });

  it('a weft peer is reachable by ICMP too and still reports its MTU through the UDP echo', async () => {
    await eventually(async () => (await peerHealth(h1, h2Subnet))?.verdict === 'ok', 15_000, 'h2 reachable from h1');
    expect(await peerHealth(h1, h2Subnet)).to.deep.include({ verdict: 'ok', mtu: 1450 });
  });

  it('weftd without CAP_NET_RAW falls back to the UDP echo, says why, and cannot see the flanneld node', async () => {
    const probes = (await status(h2)).probes!;
    expect(probes.method).to.equal('udp');
    expect(probes.fallbackReason).to.equal('raw sockets not allowed (no CAP_NET_RAW)');
    await eventually(async () => (await peerHealth(h2, flannelPeer)) !== undefined && (await peerHealth(h2, `${(await weftLeases(cluster)).find((l) => l.publicIP === h1.ip)!.subnet}/24`))?.verdict === 'ok', 15_000, 'h2 probed both');
    expect((await peerHealth(h2, flannelPeer))!.verdict).to.equal('unreachable');
    const out = await h2.ns.exec('node', WEFTCTL, '--config', h2.configFile, 'status').catch((e: { stdout?: string }) => e.stdout ?? '');
    expect(out).to.contain('peer health (UDP echo, answered by weft only: raw sockets not allowed (no CAP_NET_RAW); last round');
  });

  it('UDP 8472 dropped on the flanneld node: h1 diagnoses underlay OK but overlay blocked, and recovers', async () => {
    await h3ns.exec('iptables', '-I', 'INPUT', '-p', 'udp', '--dport', '8472', '-j', 'DROP');
    try {
      await eventually(async () => (await peerHealth(h1, flannelPeer))?.verdict === 'overlay-blocked', 15_000, 'overlay blocked to h3');
      const h = (await peerHealth(h1, flannelPeer))!;
      expect(h.underlay.ok).to.equal(true);
      expect(h.overlay).to.deep.equal({ ok: false, rttMs: null });
      expect(h.diagnosis).to.match(/^underlay OK but overlay blocked: VXLAN \(UDP 8472\)/);
      const doctor = await h1.ns.exec('node', WEFTCTL, '--config', h1.configFile, 'doctor').catch((e: { stdout?: string }) => e.stdout ?? '');
      expect(doctor).to.contain(`underlay OK but overlay blocked to ${flannelPeer} (${cluster.node(3).ip})`);
    } finally {
      await h3ns.exec('iptables', '-D', 'INPUT', '-p', 'udp', '--dport', '8472', '-j', 'DROP');
    }
    await eventually(async () => (await peerHealth(h1, flannelPeer))?.verdict === 'ok', 15_000, 'h3 reachable again');
  });
});

/**
 * The IPv6 probes against real kernels, without weftd's IPv6 programming: two
 * hosts on one switch with `2001:2::N/64` (nodad), the peer h2 holding its
 * "overlay" address `fd00:10:244:3::/128` on a device of its own and
 * `fd00:10:244:3::1/64` on a bridge with IPv6 forwarding on (as a node's cni0
 * with its pods' gateway), h1 routing `fd00:10:244:3::/64` to h2. The probes
 * run in a Node process inside h1's namespace: ICMPv6 through a raw socket,
 * the UDP echo over udp6 to a responder in h2, and a PeerProber round over an
 * IPv6-only lease.
 */
describe('peer health over IPv6 (ICMPv6 and the UDP echo over udp6) between two namespaces @real', function () {
  this.timeout(60_000);
  const created: Netns[] = [];
  let h1: Netns, h2: Netns;
  let responder: ReturnType<Netns['spawn']> | null = null;
  const port = '8479';

  /** Runs `body` (ES module code with `probe` imported) in a Node process inside `ns` and parses what it prints as JSON. */
  async function inNamespace<T>(ns: Netns, body: string): Promise<T> {
    const code = `import * as probe from ${JSON.stringify(PROBE_MODULE)};\nconst out = await (async () => { ${body} })();\nprocess.stdout.write(JSON.stringify(out));\nprocess.exit(0);`;
    return JSON.parse(await ns.exec(process.execPath, '--input-type=module', '-e', code)) as T;
  }

  before(async () => {
    const sw = await Switch.create('p6sw');
    created.push(sw.ns);
    h1 = await sw.addHost('p6h1', '198.18.6.1/24');
    h2 = await sw.addHost('p6h2', '198.18.6.2/24');
    created.push(h1, h2);
    await h1.ip('-6', 'addr', 'add', '2001:2::1/64', 'dev', 'eth0', 'nodad');
    await h2.ip('-6', 'addr', 'add', '2001:2::2/64', 'dev', 'eth0', 'nodad');
    await h2.exec('sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1');
    await h2.ip('link', 'add', 'flannel-v6.1', 'type', 'bridge'); // a device of its own (no dummy module needed)
    await h2.ip('-6', 'addr', 'add', 'fd00:10:244:3::/128', 'dev', 'flannel-v6.1', 'nodad');
    await h2.ip('link', 'set', 'flannel-v6.1', 'up');
    await h2.ip('link', 'add', 'cni0', 'type', 'bridge');
    await h2.ip('-6', 'addr', 'add', 'fd00:10:244:3::1/64', 'dev', 'cni0', 'nodad');
    await h2.ip('link', 'set', 'cni0', 'up');
    await h1.ip('-6', 'route', 'add', 'fd00:10:244:3::/64', 'via', '2001:2::2', 'dev', 'eth0');
    const code = `import { ProbeResponder } from ${JSON.stringify(PROBE_MODULE)};\nawait new ProbeResponder(${port}, () => 1430).start();\nprocess.stdout.write('ready\\n');`;
    responder = h2.spawn(process.execPath, ['--input-type=module', '-e', code]);
    await new Promise<void>((resolve, reject) => {
      responder!.stdout!.on('data', (d: Buffer) => d.toString().includes('ready') && resolve());
      responder!.once('exit', (c) => reject(new Error(`responder exited with ${c}`)));
    });
  });

  after(async () => {
    if (responder?.pid && responder.exitCode === null) process.kill(responder.pid);
    for (const ns of created.reverse()) await ns.delete();
  });

  it('ICMPv6 echo: answered by the peer\'s kernel at its public IPv6 and its overlay address, not by an address nobody holds', async () => {
    const out = await inNamespace<{ opened: string | null; results: { ok: boolean; rttMs: number | null }[] }>(
      h1,
      `const { openIcmpClient } = await import(${JSON.stringify(new URL('../daemon/icmp.js', import.meta.url).href)});
       const opened = openIcmpClient(undefined, 6);
       if (!('client' in opened)) return { opened: opened.reason, results: [] };
       const results = await Promise.all(['2001:2::2', 'fd00:10:244:3::', '2001:2::99'].map((ip) => opened.client.echo(ip, 1000)));
       await opened.client.close();
       return { opened: null, results };`,
    );
    expect(out.opened).to.equal(null);
    expect(out.results.map((r) => r.ok)).to.deep.equal([true, true, false]);
    expect(out.results[0]!.rttMs).to.be.a('number');
  });

  it('UDP echo over udp6: the responder answers on IPv6 with its MTU, over the underlay and the routed overlay address', async () => {
    const out = await inNamespace<{ ok: boolean; mtu: number | null }[]>(
      h1,
      `const client = new probe.ProbeClient(${port});
       const r = await Promise.all(['2001:2::2', 'fd00:10:244:3::', '198.18.6.2'].map((ip) => client.echo(ip, 1000)));
       await client.close();
       return r.map(({ ok, mtu }) => ({ ok, mtu }));`,
    );
    expect(out).to.deep.equal([
      { ok: true, mtu: 1430 },
      { ok: true, mtu: 1430 },
      { ok: true, mtu: 1430 },
    ]);
  });

  it('a PeerProber round over an IPv6-only lease: one IPv6 record, by ICMPv6, with the MTU from the UDP echo', async () => {
    const health = await inNamespace<unknown[]>(
      h1,
      `const { Subnet } = await import(${JSON.stringify(new URL('../common/subnet.js', import.meta.url).href)});
       const lease = { subnet: Subnet.parse('0.0.0.0/0'), ipv6Subnet: Subnet.parse('fd00:10:244:3::/64'), attrs: { PublicIP: '0.0.0.0', PublicIPv6: '2001:2::2', BackendType: 'vxlan' }, key: 'k', etcdLeaseId: '1', modRevision: '1', createRevision: '1' };
       const prober = new probe.PeerProber({ port: ${port}, intervalMs: 60000, sample: 8, peers: () => new Map([['fd00:10:244:3::/64', lease]]), mtu: () => 1430, families: [4, 6] });
       const ac = new AbortController();
       const running = prober.run(ac.signal);
       const deadline = Date.now() + 10000;
       while (prober.lastRound === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
       ac.abort();
       await running;
       return [prober.method, ...prober.health().map(({ family, subnet, publicIP, verdict, underlay, overlay, mtu }) => ({ family, subnet, publicIP, verdict, underlay: underlay.ok, overlay: overlay.ok, mtu }))];`,
    );
    expect(health[0]).to.deep.equal({ method: 'icmp', fallbackReason: null });
    expect(health.slice(1), 'no IPv4 record: the lease\'s 0.0.0.0 is never probed').to.deep.equal([
      { family: 6, subnet: 'fd00:10:244:3::/64', publicIP: '2001:2::2', verdict: 'ok', underlay: true, overlay: true, mtu: 1430 },
    ]);
  });
});
