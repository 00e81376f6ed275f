/**
 * Dual-stack and IPv6-only leases against a real etcd: acquisition of both
 * families, reuse after a restart, reservations, lost-lease recovery and the
 * peer watch (the lease layer of issue 21; weftd does not program IPv6 yet).
 */
import { expect } from 'chai';
import type { Etcd3 } from 'etcd3';
import { once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { createEtcdClient } from '../lease/etcd-client.js';
import { NO_IPV4_SUBNET, configKey, subnetKey } from '../lease/keyspace.js';
import { serializeLeaseAttrs } from '../lease/lease-value.js';
import { LeaseManager } from '../lease/manager.js';
import { EtcdRegistry } from '../lease/registry.js';
import { Subnet } from '../common/subnet.js';
import type { LeaseAttrs, PeerBatch } from '../lease/types.js';
import { LeaseWatcher } from '../lease/watcher.js';
import { EtcdServer } from './harness/etcd.js';
import { eventually } from './harness/netns.js';
import { readLeaseRows, release, reserve } from '../weftctl/leases.js';

const P = '/coreos.com/network';
const DUAL = '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/48","Backend":{"Type":"vxlan"}}';
const V6ONLY = '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/48","Backend":{"Type":"vxlan"}}';
const hex = (n: number) => n.toString(16).padStart(2, '0');

/** What a dual-stack vxlan node `n` publishes (underlay 198.18.0.n and 2001:2::n). */
function dualAttrs(n: number): LeaseAttrs {
  return { PublicIP: `198.18.0.${n}`, PublicIPv6: `2001:2::${n}`, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: `0e:2a:00:00:00:${hex(n)}` }, BackendV6Data: { VNI: 1, VtepMAC: `0e:2b:00:00:00:${hex(n)}` } };
}

/** What an IPv6-only vxlan node `n` publishes: flannel's unset PublicIP, BackendV6Data alone. */
function v6Attrs(n: number): LeaseAttrs {
  return { PublicIP: '0.0.0.0', PublicIPv6: `2001:2::${n}`, BackendType: 'vxlan', BackendV6Data: { VNI: 1, VtepMAC: `0e:2b:00:00:00:${hex(n)}` } };
}

describe('dual-stack and IPv6-only leases against a real etcd @real', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let client: Etcd3;
  let registry: EtcdRegistry;
  const clients: Etcd3[] = [];
  const controllers: AbortController[] = [];
  const newSignal = () => {
    const c = new AbortController();
    controllers.push(c);
    return c.signal;
  };
  const newRegistry = () => {
    const c = createEtcdClient({ endpoints: [etcd.endpoint], callTimeoutMs: 2000 });
    clients.push(c);
    return new EtcdRegistry(c, P);
  };
  const useConfig = async (text: string) => {
    await client.put(configKey(P)).value(text);
    return registry.readNetworkConfig();
  };
  const keys = async () => (await client.getAll().prefix(`${P}/subnets/`).keys()).sort();

  before(async () => {
    etcd = await EtcdServer.start();
  });
  after(async () => {
    await etcd?.destroy();
  });
  beforeEach(async () => {
    client = createEtcdClient({ endpoints: [etcd.endpoint] });
    clients.push(client);
    await client.delete().prefix('/coreos.com/');
    for (const l of (await client.leaseClient.leaseLeases()).leases) await client.leaseClient.leaseRevoke({ ID: l.ID });
    registry = new EtcdRegistry(client, P);
  });
  afterEach(() => {
    for (const c of controllers.splice(0)) c.abort();
    for (const c of clients.splice(0)) c.close();
  });

  it("acquires both subnets under one key in flannel's form, with flannel's JSON, on an etcd lease", async () => {
    const config = await useConfig(DUAL);
    const lease = await new LeaseManager({ registry, config, attrs: dualAttrs(1), ttlSeconds: 60, randomInt: () => 0 }).acquire(newSignal());
    expect(lease.subnet.toString()).to.equal('10.244.1.0/24');
    expect(lease.ipv6Subnet!.toString()).to.equal('fd00:10:244:1::/64');
    expect(lease.key).to.equal(`${P}/subnets/10.244.1.0-24&fd00:10:244:1::-64`);
    const kv = (await client.get(lease.key).exec()).kvs[0]!;
    expect(kv.value.toString()).to.equal(
      '{"PublicIP":"198.18.0.1","PublicIPv6":"2001:2::1","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:2a:00:00:00:01"},"BackendV6Data":{"VNI":1,"VtepMAC":"0e:2b:00:00:00:01"}}',
    );
    expect(kv.lease).to.not.equal('0');
  });

  it('two dual-stack nodes racing for the same subnets end up with distinct subnets of both families', async () => {
    const config = await useConfig(DUAL);
    const a = new LeaseManager({ registry: newRegistry(), config, attrs: dualAttrs(1), randomInt: () => 0 });
    const b = new LeaseManager({ registry: newRegistry(), config, attrs: dualAttrs(2), randomInt: () => 0 });
    const [la, lb] = await Promise.all([a.acquire(newSignal()), b.acquire(newSignal())]);
    expect([la.subnet.toString(), lb.subnet.toString()].sort()).to.deep.equal(['10.244.1.0/24', '10.244.2.0/24']);
    expect([la.ipv6Subnet!.toString(), lb.ipv6Subnet!.toString()].sort()).to.deep.equal(['fd00:10:244:1::/64', 'fd00:10:244:2::/64']);
  });

  it('two nodes choosing one IPv4 subnet with different IPv6 ones at the same moment (two keys): the newer lease chooses again', async () => {
    const config = await useConfig(DUAL);
    for (const k of await keys()) await client.delete().key(k);
    // Both choose from one listing, taken before either wrote: the same /24, and /64s 1 and 2.
    const listing = registry.listSubnets();
    const picks = (...seq: number[]) => () => seq.shift() ?? 0;
    const a = new LeaseManager({ registry: newRegistry(), config, attrs: dualAttrs(1), randomInt: picks(0, 0) });
    const b = new LeaseManager({ registry: newRegistry(), config, attrs: dualAttrs(2), randomInt: picks(0, 1) });
    const [la, lb] = await Promise.all([a.acquireWithListing(newSignal(), { prefetched: listing }), b.acquireWithListing(newSignal(), { prefetched: listing })]);
    expect(la.lease.subnet.equals(lb.lease.subnet), 'one IPv4 subnet each').to.equal(false);
    expect(la.lease.ipv6Subnet!.equals(lb.lease.ipv6Subnet), 'one IPv6 subnet each').to.equal(false);
    expect(await keys()).to.deep.equal([la.lease.key, lb.lease.key].sort());
  });

  it('a restart reuses both subnets (by PublicIP, or from the previous subnet file once the key is gone)', async () => {
    const config = await useConfig(DUAL);
    const first = await new LeaseManager({ registry, config, attrs: dualAttrs(1), ttlSeconds: 60 }).acquire(newSignal());
    const again = await new LeaseManager({ registry: newRegistry(), config, attrs: dualAttrs(1), ttlSeconds: 60 }).acquire(newSignal());
    expect(again.key).to.equal(first.key);
    expect(again.etcdLeaseId).to.not.equal(first.etcdLeaseId);
    expect((await client.leaseClient.leaseLeases()).leases.map((l) => l.ID)).to.deep.equal([again.etcdLeaseId]);
    await client.delete().key(again.key);
    const afterExpiry = await new LeaseManager({ registry: newRegistry(), config, attrs: dualAttrs(1), previousSubnet: first.subnet, previousIPv6Subnet: first.ipv6Subnet }).acquire(newSignal());
    expect(afterExpiry.key).to.equal(first.key);
  });

  it('IPv6-only: the key with the empty IPv4 part, reused after a restart by PublicIPv6', async () => {
    const config = await useConfig(V6ONLY);
    const other = await new LeaseManager({ registry: newRegistry(), config, attrs: v6Attrs(2), ttlSeconds: 60, randomInt: () => 0 }).acquire(newSignal());
    expect(other.key).to.equal(`${P}/subnets/0.0.0.0-0&fd00:10:244:1::-64`);
    expect(other.subnet.equals(NO_IPV4_SUBNET)).to.equal(true);
    const first = await new LeaseManager({ registry, config, attrs: v6Attrs(1), ttlSeconds: 60, randomInt: () => 0 }).acquire(newSignal());
    expect(first.key).to.equal(`${P}/subnets/0.0.0.0-0&fd00:10:244:2::-64`);
    expect((await client.get(first.key).string())!).to.equal('{"PublicIP":"0.0.0.0","PublicIPv6":"2001:2::1","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"0e:2b:00:00:00:01"}}');
    // Both nodes publish PublicIP 0.0.0.0: the restart finds its own key by PublicIPv6, never the other's.
    const again = await new LeaseManager({ registry: newRegistry(), config, attrs: v6Attrs(1), ttlSeconds: 60, randomInt: () => 0 }).acquire(newSignal());
    expect(again.key).to.equal(first.key);
    expect(await keys()).to.have.length(2);
  });

  it('enabling IPv6 on a running cluster: the IPv4-only key becomes a dual-stack key of the same IPv4 subnet', async () => {
    const v4config = await useConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    const v4lease = await new LeaseManager({ registry, config: v4config, attrs: { ...dualAttrs(1), PublicIPv6: null, BackendV6Data: undefined } as LeaseAttrs, ttlSeconds: 60 }).acquire(newSignal());
    const config = await useConfig(DUAL);
    const lease = await new LeaseManager({ registry: newRegistry(), config, attrs: dualAttrs(1), ttlSeconds: 60, randomInt: () => 0 }).acquire(newSignal());
    expect(lease.subnet.toString()).to.equal(v4lease.subnet.toString());
    expect(lease.ipv6Subnet!.toString()).to.equal('fd00:10:244:1::/64');
    expect(await keys()).to.deep.equal([lease.key]);
  });

  it('honours a dual-stack reservation and never converts it to a leased key; no other node takes it', async () => {
    const config = await useConfig(DUAL);
    const key = subnetKey(P, Subnet.parse('10.244.77.0/24'), Subnet.parse('fd00:10:244:77::/64'));
    await client.put(key).value(serializeLeaseAttrs({ ...dualAttrs(1), BackendV6Data: { VNI: 1, VtepMAC: '0e:00:00:00:00:99' } }));
    const m = new LeaseManager({ registry, config, attrs: dualAttrs(1), ttlSeconds: 3, renewMarginSeconds: 2 });
    const signal = newSignal();
    const lease = await m.acquire(signal);
    void m.run(signal);
    expect(lease.key).to.equal(key);
    expect(lease.etcdLeaseId).to.equal('0');
    await sleep(1500);
    const kv = (await client.get(key).exec()).kvs[0]!;
    expect(kv.lease).to.equal('0');
    expect(JSON.parse(kv.value.toString()).BackendV6Data.VtepMAC).to.equal('0e:2b:00:00:00:01'); // this node's IPv6 VTEP published
    const other = await new LeaseManager({
      registry: newRegistry(),
      config,
      attrs: dualAttrs(2),
      previousSubnet: Subnet.parse('10.244.77.0/24'),
      previousIPv6Subnet: Subnet.parse('fd00:10:244:77::/64'),
      randomInt: () => 0,
    }).acquire(newSignal());
    expect(other.subnet.toString()).to.not.equal('10.244.77.0/24');
    expect(other.ipv6Subnet!.toString()).to.not.equal('fd00:10:244:77::/64');
    await m.release();
    expect((await client.get(key).exec()).kvs).to.have.length(1);
  });

  it('a dual-stack key deleted under a running manager is re-created with both subnets; taken by another node, a new one is acquired', async () => {
    const config = await useConfig(DUAL);
    const m = new LeaseManager({ registry, config, attrs: dualAttrs(1), ttlSeconds: 30 });
    const signal = newSignal();
    const lease = await m.acquire(signal);
    void m.run(signal);
    await sleep(200);
    const lost = once(m, 'lost');
    await client.delete().key(lease.key);
    await lost;
    const reread = async () => (await client.get(lease.key).exec()).kvs[0];
    await eventually(async () => (await reread()) !== undefined, 10_000, 'key re-created');
    expect(JSON.parse((await reread())!.value.toString()).PublicIPv6).to.equal('2001:2::1');
    await eventually(async () => m.state === 'held', 10_000, 'held again');
    const changed = once(m, 'change');
    await client.put(lease.key).value(serializeLeaseAttrs(dualAttrs(9)));
    await changed;
    expect(m.lease!.key).to.not.equal(lease.key);
    expect(m.lease!.ipv6Subnet!.equals(lease.ipv6Subnet)).to.equal(false);
    expect(JSON.parse((await client.get(m.lease!.key).string())!).PublicIPv6).to.equal('2001:2::1');
  });

  it('the watch sees dual-stack peers added, changed and removed, and refuses a duplicate PublicIPv6', async () => {
    const config = await useConfig(DUAL);
    const w = new LeaseWatcher({ registry, config, ownSubnet: () => null, ownPublicIP: '198.18.0.1', ownPublicIPv6: '2001:2::1' });
    const batches: PeerBatch[] = [];
    void (async () => {
      for await (const b of w.batches(newSignal())) batches.push({ ...b, events: [...b.events] });
    })();
    const events = () => batches.flatMap((b) => b.events.map((e) => `${e.type} ${e.lease.subnet} ${e.lease.ipv6Subnet} ${e.lease.attrs.BackendV6Data?.VtepMAC}`));
    await eventually(async () => batches.length === 1, 10_000, 'first snapshot');
    const k2 = subnetKey(P, Subnet.parse('10.244.2.0/24'), Subnet.parse('fd00:10:244:2::/64'));
    await client.put(k2).value(serializeLeaseAttrs(dualAttrs(2)));
    await client.put(k2).value(serializeLeaseAttrs({ ...dualAttrs(2), BackendV6Data: { VNI: 1, VtepMAC: '0e:2b:00:00:00:22' } }));
    const k3 = subnetKey(P, Subnet.parse('10.244.3.0/24'), Subnet.parse('fd00:10:244:3::/64'));
    await client.put(k3).value(serializeLeaseAttrs({ ...dualAttrs(3), PublicIPv6: '2001:2::2' }));
    await eventually(async () => w.refusals().length === 1, 10_000, 'refusal');
    expect(w.refusals()[0]).to.include({ subnet: '10.244.3.0/24', reason: 'duplicate-public-ip' });
    await client.delete().key(k2);
    await eventually(async () => events().length === 4, 10_000, 'removal and take-over');
    expect(events()).to.deep.equal([
      'added 10.244.2.0/24 fd00:10:244:2::/64 0e:2b:00:00:00:02',
      'changed 10.244.2.0/24 fd00:10:244:2::/64 0e:2b:00:00:00:22',
      'added 10.244.3.0/24 fd00:10:244:3::/64 0e:2b:00:00:00:03',
      'removed 10.244.2.0/24 fd00:10:244:2::/64 0e:2b:00:00:00:22',
    ]);
  });

  it('an IPv6-only watch keys peers by IPv6 subnet and leaves out the own lease', async () => {
    const config = await useConfig(V6ONLY);
    const own = await new LeaseManager({ registry, config, attrs: v6Attrs(1), ttlSeconds: 60, randomInt: () => 0 }).acquire(newSignal());
    await new LeaseManager({ registry: newRegistry(), config, attrs: v6Attrs(2), ttlSeconds: 60, randomInt: () => 0 }).acquire(newSignal());
    const w = new LeaseWatcher({ registry, config, ownSubnet: () => own.subnet, ownPublicIP: '0.0.0.0', ownPublicIPv6: '2001:2::1', ownLease: () => own });
    const batches: PeerBatch[] = [];
    void (async () => {
      for await (const b of w.batches(newSignal())) batches.push(b);
    })();
    await eventually(async () => batches.length === 1, 10_000, 'first snapshot');
    expect([...batches[0]!.peers.keys()]).to.deep.equal(['fd00:10:244:2::/64']);
    await new LeaseManager({ registry: newRegistry(), config, attrs: v6Attrs(3), ttlSeconds: 60, randomInt: () => 0 }).acquire(newSignal());
    await eventually(async () => w.current.size === 2, 10_000, 'third node');
    expect([...w.current.keys()].sort()).to.deep.equal(['fd00:10:244:2::/64', 'fd00:10:244:3::/64']);
  });

  it("weftctl's reserve, leases and release with dual-stack and IPv6-only keys", async () => {
    const config = await useConfig(DUAL);
    await expectRejection(reserve(registry, '10.244.80.0/24', '198.18.0.8', undefined), /--ipv6-subnet: the network is dual-stack/);
    await expectRejection(reserve(registry, '10.244.80.0/24', '198.18.0.8', '02:00:00:00:00:08', { ipv6Subnet: 'fd00:10:244:80::/64', publicIPv6: '2001:2::8' }), /invalid reservation: vxlan lease with IPv6 subnet .* without BackendV6Data/);
    const r = await reserve(registry, '10.244.80.0/24', '198.18.0.8', '02:00:00:00:00:08', { ipv6Subnet: 'fd00:10:244:80::/64', publicIPv6: '2001:2::8', vtepMacV6: '02:00:00:00:06:08' });
    expect(r.text).to.equal(`reserved 10.244.80.0/24 + fd00:10:244:80::/64 for 198.18.0.8 / 2001:2::8 (${P}/subnets/10.244.80.0-24&fd00:10:244:80::-64)`);
    const lease = await new LeaseManager({ registry, config, attrs: dualAttrs(8), ttlSeconds: 60 }).acquire(newSignal());
    expect(lease.key).to.equal(`${P}/subnets/10.244.80.0-24&fd00:10:244:80::-64`);
    expect(lease.etcdLeaseId).to.equal('0');
    const { rows } = await readLeaseRows(registry);
    expect(rows).to.have.length(1);
    expect(rows[0]).to.include({ subnet: '10.244.80.0/24', ipv6Subnet: 'fd00:10:244:80::/64', publicIPv6: '2001:2::8', reservation: true });
    expect((await release(registry, '10.244.80.0/24', false)).text).to.equal(`released 10.244.80.0/24 (${P}/subnets/10.244.80.0-24&fd00:10:244:80::-64)`);
    expect(await keys()).to.deep.equal([]);

    await useConfig(V6ONLY);
    expect((await reserve(registry, 'fd00:10:244:81::/64', undefined, undefined, { publicIPv6: '2001:2::9' })).text).to.equal(`reserved fd00:10:244:81::/64 for 2001:2::9 (${P}/subnets/0.0.0.0-0&fd00:10:244:81::-64)`);
    expect(JSON.parse((await client.get(`${P}/subnets/0.0.0.0-0&fd00:10:244:81::-64`).string())!)).to.deep.equal({ PublicIP: '0.0.0.0', PublicIPv6: '2001:2::9' });
    await release(registry, 'fd00:10:244:81::/64', false);
    expect(await keys()).to.deep.equal([]);
  });
});

async function expectRejection(promise: Promise<unknown>, pattern: RegExp): Promise<void> {
  try {
    await promise;
  } catch (err) {
    expect((err as Error).message).to.match(pattern);
    return;
  }
  expect.fail(`expected a rejection matching ${pattern}`);
}
