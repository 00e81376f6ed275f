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
import { eventually, type Netns } from './harness/netns.js';
import type { NodeStatus, PeerHealth } from '../daemon/status.js';

const WEFTCTL = fileURLToPath(new URL('../bin/weftctl.cjs', import.meta.url));
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
