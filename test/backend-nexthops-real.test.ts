import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import { Cluster, type WeftNode } from './harness/cluster.js';
import { eventually } from './harness/netns.js';
import { Pod } from './harness/pod.js';

/**
 * Peer routes through nexthop objects against the real kernel, in a
 * two-host namespace cluster (etcd, weftd, a pod per host): the form forced
 * off is flannel's, a node with flanneld's onlink routes moves to nexthops
 * under a continuous pod-to-pod ping without losing a packet, a nexthop
 * deleted by hand is restored, and forcing the form off again moves back
 * just as quietly. What weft programs is read back with iproute2.
 */
const BASE_ARGS = ['--bridge', 'weft0'];
const PING_MS = 20;
const WEFT_PROTO = ['87', '0x57'];
const WEFTCTL = fileURLToPath(new URL('../bin/weftctl.cjs', import.meta.url));

interface IpRoute {
  dst: string;
  nhid?: number;
  gateway?: string;
  dev?: string;
  flags?: string[];
  protocol?: string;
}
interface IpNexthop {
  id: number;
  gateway?: string;
  dev?: string;
  flags?: string[];
  protocol?: string;
}

describe('backend: peer routes through nexthop objects in a namespace cluster @real', function () {
  this.timeout(180_000);
  let cluster: Cluster;
  let pod1: Pod;
  let pod2: Pod;
  const h1 = (): WeftNode => cluster.node(1);
  const h2 = (): WeftNode => cluster.node(2);
  const subnetOf = (n: WeftNode): string => n.subnetEnv().FLANNEL_SUBNET!.replace('.1/', '.0/');

  /** h1's route to h2's subnet, as `ip -j route` prints it. */
  async function peerRoute(): Promise<IpRoute | undefined> {
    return (await h1().ns.ipJson<IpRoute[]>('route', 'show', 'table', 'main')).find((r) => r.dst === subnetOf(h2()));
  }
  async function weftNexthops(node: WeftNode): Promise<IpNexthop[]> {
    // iproute2 names weft's protocol 87 (or 0x57 where rt_protos lists it).
    return (await node.ns.ipJson<IpNexthop[]>('nexthop', 'show')).filter((n) => WEFT_PROTO.includes(String(n.protocol)));
  }
  async function restart(node: WeftNode, args: string[]): Promise<void> {
    await node.stop('SIGTERM');
    node.start([...BASE_ARGS, ...args]);
    await node.waitReady();
  }
  /** `weftctl diff` on `node` with its weftd's config (and `args`): exit code and output. */
  async function diff(node: WeftNode, ...args: string[]): Promise<{ code: number; stdout: string }> {
    try {
      return { code: 0, stdout: await node.ns.exec('node', WEFTCTL, '--config', node.configFile, ...args, 'diff') };
    } catch (err) {
      const e = err as { code?: number; stdout?: string };
      return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '' };
    }
  }
  /** `ip monitor route` on h1 while `during` runs: the lines about h2's subnet. */
  async function routeChanges(during: () => Promise<void>): Promise<string[]> {
    const monitor = h1().ns.spawn('ip', ['monitor', 'route']);
    let out = '';
    monitor.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await new Promise((r) => setTimeout(r, 200));
    try {
      await during();
      await new Promise((r) => setTimeout(r, 200));
    } finally {
      monitor.kill('SIGTERM');
    }
    return out.split('\n').filter((l) => l.includes(subnetOf(h2())));
  }

  before(async () => {
    cluster = await Cluster.create({ hosts: 2 });
    for (const n of cluster.nodes) n.start([...BASE_ARGS, '--route-nexthops', 'off']);
    await Promise.all(cluster.nodes.map((n) => n.waitReady()));
    pod1 = await Pod.attach(h1(), 1);
    pod2 = await Pod.attach(h2(), 1);
    const warmup = pod1.ping(pod2.ip);
    await warmup.waitReplies(3);
    await warmup.stop();
  });
  after(async () => {
    await pod1?.delete();
    await pod2?.delete();
    await cluster?.destroy();
  });

  it('--route-nexthops off programs flannel\'s onlink routes and no nexthop object', async () => {
    const s = subnetOf(h2());
    expect(await peerRoute()).to.deep.include({ gateway: s.split('/')[0], dev: 'flannel.1', protocol: '87' });
    expect((await peerRoute())?.nhid).to.equal(undefined);
    expect((await peerRoute())?.flags).to.include('onlink');
    expect(await weftNexthops(h1())).to.deep.equal([]);
  });

  it('adopts flanneld\'s onlink routes hitlessly: each route is replaced by its nhid form under a continuous ping', async () => {
    const s = subnetOf(h2());
    const s0 = s.split('/')[0]!;
    // flanneld's route: no protocol (the kernel records boot, which iproute2 leaves out), its own gateway.
    await h1().stop('SIGTERM');
    await h1().ns.ip('route', 'replace', s, 'via', s0, 'dev', 'flannel.1', 'onlink', 'proto', 'boot');
    expect((await peerRoute())?.protocol).to.equal(undefined);
    const ping = pod1.ping(pod2.ip, PING_MS);
    await ping.waitReplies(5);
    const changes = await routeChanges(async () => {
      h1().start(BASE_ARGS); // the default: --route-nexthops auto
      await h1().waitReady();
      await eventually(async () => (await peerRoute())?.nhid !== undefined, 10_000, 'route by nhid');
      // A further 2 s of traffic: the last second is not counted (its replies may still be in flight).
      await ping.waitReplies(100);
    });
    const r = await ping.stop();
    expect(r.lost, `lost seqs ${r.lostSeqs.join(',')}`).to.equal(0);
    expect(r.sent).to.be.greaterThan(50);
    const route = (await peerRoute())!;
    const nexthops = await weftNexthops(h1());
    expect(nexthops.map((n) => ({ id: n.id, gateway: n.gateway, dev: n.dev, onlink: (n.flags ?? []).includes('onlink') }))).to.deep.equal([
      { id: route.nhid, gateway: s0, dev: 'flannel.1', onlink: true },
    ]);
    expect(route.protocol).to.equal('87');
    // The id is the subnet's index in the Network (10.244.0.0/16, /24s).
    expect(route.nhid).to.equal(Number(s0.split('.')[2]));
    // Replaced in place: the kernel never reported the route deleted.
    expect(changes.filter((l) => l.startsWith('Deleted')), changes.join('\n')).to.deep.equal([]);
    const text = await h1().ns.ip('route', 'show', s);
    expect(text).to.match(new RegExp(`^${s.replace(/\./g, '\\.')} nhid ${route.nhid} `));
    console.log(`      ${r.sent} pings every ${PING_MS} ms, ${r.lost} lost; h1: ${text.trim()}`);
    // weftctl diff wants what weftd programmed: neighbour, FDB entry, nexthop and route by nhid.
    const clean = await diff(h1());
    expect(clean.code, clean.stdout).to.equal(0);
    expect(clean.stdout).to.contain('1 peers, 4 desired entries: kernel in sync');
  });

  it('a nexthop deleted by hand (which takes its route along) is restored, and so is the route', async () => {
    const before = (await peerRoute())!;
    expect(before.nhid).to.be.a('number');
    await h1().ns.ip('nexthop', 'del', 'id', String(before.nhid));
    await eventually(async () => (await peerRoute())?.nhid === before.nhid, 5000, 'route by nhid restored');
    expect((await weftNexthops(h1())).map((n) => n.id)).to.deep.equal([before.nhid]);
    const ping = pod1.ping(pod2.ip, PING_MS);
    await ping.waitReplies(5);
    expect((await ping.stop()).lost).to.equal(0);
  });

  it('a peer that joins gets its nexthop and route by nhid; when it leaves, both go', async () => {
    const key = '/coreos.com/network/subnets/10.244.201.0-24';
    const value = JSON.stringify({ PublicIP: '198.18.2.201', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0e:2a:00:00:01:c9' } });
    const byNhid = async (): Promise<IpRoute | undefined> => (await h1().ns.ipJson<IpRoute[]>('route', 'show', 'table', 'main')).find((r) => r.dst === '10.244.201.0/24');
    await cluster.writeKeys([{ key, value }]);
    await eventually(async () => (await byNhid())?.nhid === 201, 10_000, 'route by nhid 201');
    expect((await weftNexthops(h1())).map((n) => `${n.id} ${n.gateway} ${n.dev}`)).to.include('201 10.244.201.0 flannel.1');
    await cluster.writeKeys([{ key, value: null }]);
    await eventually(async () => (await byNhid()) === undefined && !(await weftNexthops(h1())).some((n) => n.id === 201), 10_000, 'route and nexthop 201 gone');
  });

  it('forced off again, routes get their own gateway back before weft\'s nexthops go, without a packet lost', async () => {
    const ping = pod1.ping(pod2.ip, PING_MS);
    await ping.waitReplies(5);
    const changes = await routeChanges(async () => {
      await restart(h1(), ['--route-nexthops', 'off']);
      await eventually(async () => (await peerRoute())?.nhid === undefined, 10_000, 'onlink route');
      await eventually(async () => (await weftNexthops(h1())).length === 0, 10_000, 'weft\'s nexthops removed');
      // A further 2 s of traffic: the last second is not counted (its replies may still be in flight).
      await ping.waitReplies(100);
    });
    const r = await ping.stop();
    expect(r.lost, `lost seqs ${r.lostSeqs.join(',')}`).to.equal(0);
    expect(changes.filter((l) => l.startsWith('Deleted')), changes.join('\n')).to.deep.equal([]);
    expect((await peerRoute())?.flags).to.include('onlink');
    const clean = await diff(h1(), '--route-nexthops', 'off');
    expect(clean.code, clean.stdout).to.equal(0);
    expect(clean.stdout).to.contain('1 peers, 3 desired entries: kernel in sync');
    // Asked for the other form, diff names the moves weftd would make.
    const moves = await diff(h1(), '--route-nexthops', 'on');
    expect(moves.code).to.equal(1);
    expect(moves.stdout).to.match(/missing\s+\S+\s+nexthop\s+id \d+ via \S+ dev flannel\.1 onlink/);
    expect(moves.stdout).to.match(/wrong\s+\S+\s+route\s+\S+ nhid \d+\s+\S+ via \S+ dev flannel\.1 onlink/);
  });
});
