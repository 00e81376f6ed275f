import { expect } from 'chai';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, type WeftNode } from './harness/cluster.js';
import type { EtcdServer } from './harness/etcd.js';
import { eventually } from './harness/netns.js';
import { Pod } from './harness/pod.js';

const P = '/coreos.com/network';
const peerValue = (n: number) =>
  JSON.stringify({ PublicIP: `198.18.3.${n}`, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: `0e:2a:00:00:03:${n.toString(16).padStart(2, '0')}` } });

async function routes(node: WeftNode): Promise<string[]> {
  return (await node.ns.ipJson<{ dst: string }[]>('route', 'show', 'dev', 'flannel.1')).map((r) => r.dst);
}

async function leaseOfKey(etcd: EtcdServer, key: string): Promise<string> {
  // Lease ids are int64: read the digits, JSON.parse would round them to a double.
  return /"lease":(\d+)/.exec(await etcd.etcdctl('get', key, '-w', 'json'))?.[1] ?? 'none';
}

describe('fault injection: a 3-member etcd cluster loses a follower, then its leader @real', function () {
  this.timeout(180_000);
  let cluster: Cluster;
  let pod1: Pod;
  let pod2: Pod;

  before(async () => {
    cluster = await Cluster.create({ hosts: 2, etcdMembers: 3 });
    for (const n of cluster.nodes) n.start(['--bridge', 'weft0']);
    await Promise.all(cluster.nodes.map((n) => n.waitReady()));
    pod1 = await Pod.attach(cluster.node(1), 1);
    pod2 = await Pod.attach(cluster.node(2), 1);
  });
  after(async () => {
    await pod1?.delete();
    await pod2?.delete();
    await cluster?.destroy();
  });

  it('keeps traffic, the lease and the watch through both failures', async () => {
    const h1 = cluster.node(1);
    const key = `${P}/subnets/${h1.subnetEnv().FLANNEL_SUBNET!.replace('.1/', '.0-')}`;
    const lease = await leaseOfKey(cluster.etcd, key);
    const ping = pod1.ping(pod2.ip);
    await ping.waitReplies(5);

    const leaderFlags = await Promise.all(cluster.etcds.map((e) => e.isLeader()));
    const follower = cluster.etcds[leaderFlags.indexOf(false)]!;
    await follower.stop();
    await cluster.writeKeys([{ key: `${P}/subnets/10.244.221.0-24`, value: peerValue(221) }]);
    await eventually(async () => (await routes(h1)).includes('10.244.221.0/24'), 15_000, 'peer added with a follower down');
    await follower.restart();

    const leader = cluster.etcds[leaderFlags.indexOf(true)]!;
    await leader.stop();
    const rest = cluster.etcds.filter((e) => e !== leader);
    await eventually(async () => (await Promise.all(rest.map((e) => e.isLeader().catch(() => false)))).some(Boolean), 15_000, 'a new leader');
    await cluster.writeKeys([{ key: `${P}/subnets/10.244.222.0-24`, value: peerValue(222) }]);
    await eventually(async () => (await routes(h1)).includes('10.244.222.0/24'), 20_000, 'peer added after the leader died');
    await sleep(1000);
    const r = await ping.stop();
    const other = rest[0]!;
    expect(await leaseOfKey(other, key), 'the same etcd lease still holds the key').to.equal(lease);
    expect(await h1.metric('weft_lease_losses_total')).to.equal(0);
    expect(r.lost, `lost seqs ${r.lostSeqs.join(',')}`).to.equal(0);
    console.log(`      etcd member failures: ${r.sent} pings, ${r.lost} lost`);
    await leader.restart();
  });
});
