import { expect } from 'chai';
import type { Etcd3 } from 'etcd3';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import winston from 'winston';
import { WeftError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { createEtcdClient } from '../lease/etcd-client.js';
import { configKey, subnetKey } from '../lease/keyspace.js';
import { serializeLeaseAttrs } from '../lease/lease-value.js';
import { LeaseManager } from '../lease/manager.js';
import { EtcdRegistry } from '../lease/registry.js';
import { Subnet } from '../common/subnet.js';
import type { Lease, LeaseAttrs, PeerBatch } from '../lease/types.js';
import { LeaseWatcher } from '../lease/watcher.js';
import { EtcdServer } from './harness/etcd.js';

const P = '/coreos.com/network';
const NET = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';

function attrs(n: number): LeaseAttrs {
  const hex = n.toString(16).padStart(2, '0');
  return { PublicIP: `198.18.0.${n}`, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: `0e:2a:00:00:00:${hex}` } };
}

/** Waits until `predicate` holds, polling; fails with `what` after `ms`. */
async function eventually<T>(what: string, fn: () => Promise<T> | T, ms = 10_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    await sleep(50);
  }
  const log = registryLog.length ? `\nregistry log:\n  ${registryLog.slice(-20).join('\n  ')}` : '';
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}${log}`);
}

/** `promise`, or an error naming `what` (with the registry's log) if it has not settled within `ms`. */
async function within<T>(what: string, promise: Promise<T>, ms = 10_000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      const log = registryLog.length ? `\nregistry log:\n  ${registryLog.slice(-20).join('\n  ')}` : '';
      reject(new Error(`timed out waiting for ${what}${log}`));
    }, ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** What the test's registry logged (watch failures, re-lists, connectivity), shown when a wait times out. */
const registryLog: string[] = [];
function recordingLogger(): Logger {
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      registryLog.push(`${new Date().toISOString()} ${chunk.toString().trim()}`);
      done();
    },
  });
  return winston.createLogger({ level: 'debug', format: winston.format.simple(), transports: [new winston.transports.Stream({ stream })] });
}

/** Collects peer batches from a watcher in the background. */
class BatchLog {
  readonly batches: PeerBatch[] = [];
  readonly done: Promise<void>;
  constructor(watcher: LeaseWatcher, signal: AbortSignal) {
    this.done = (async () => {
      for await (const b of watcher.batches(signal)) this.batches.push({ ...b, events: [...b.events] });
    })();
  }
  events(): string[] {
    return this.batches.flatMap((b) => b.events.map((e) => `${e.type} ${e.lease.subnet}${e.type !== 'removed' ? ' ' + e.lease.attrs.BackendData?.VtepMAC : ''}`));
  }
}

describe('leases against a real etcd @real', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let client: Etcd3;
  let registry: EtcdRegistry;
  const clients: Etcd3[] = [];
  const controllers: AbortController[] = [];

  const newRegistry = () => {
    const c = createEtcdClient({ endpoints: [etcd.endpoint], callTimeoutMs: 2000 });
    clients.push(c);
    return new EtcdRegistry(c, P);
  };
  /** A manager of node 1 that acquired its lease and keeps it (run() in the background). */
  const runningManager = async () => {
    const m = new LeaseManager({ registry, config: await registry.readNetworkConfig(), attrs: attrs(1), ttlSeconds: 30 });
    const signal = newSignal();
    const lease = await m.acquire(signal);
    void m.run(signal);
    await sleep(200); // the own-key watch is established
    return { m, lease, signal };
  };
  /** `registry`, noting each listSubnets() call. */
  const countingLists = () => {
    const lists: string[] = [];
    const counting = Object.assign(Object.create(registry) as EtcdRegistry, {
      listSubnets: () => {
        lists.push('list');
        return registry.listSubnets();
      },
    });
    return { counting, lists };
  };
  const newSignal = () => {
    const c = new AbortController();
    controllers.push(c);
    return c.signal;
  };

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
    // Earlier tests' managers keep leases in etcd by design (hitless restart); start each test from none.
    for (const l of (await client.leaseClient.leaseLeases()).leases) await client.leaseClient.leaseRevoke({ ID: l.ID });
    await client.put(configKey(P)).value(NET);
    registryLog.length = 0;
    registry = new EtcdRegistry(client, P, recordingLogger());
  });
  afterEach(() => {
    for (const c of controllers.splice(0)) c.abort();
    for (const c of clients.splice(0)) c.close();
  });

  it('reads the config and explains a missing one', async () => {
    expect((await registry.readNetworkConfig()).network!.toString()).to.equal('10.244.0.0/16');
    await client.delete().key(configKey(P));
    try {
      await registry.readNetworkConfig();
      expect.fail('should throw');
    } catch (err) {
      expect(err).to.have.property('code', 'WEFT_ERR_CONFIG_MISSING');
      expect((err as Error).message).to.match(/not found in etcd at \/coreos.com\/network\/config.*etcd v3 API/);
    }
  });

  it('acquires a subnet on one etcd lease and writes flannel\'s JSON', async () => {
    const config = await registry.readNetworkConfig();
    const m = new LeaseManager({ registry, config, attrs: attrs(1), ttlSeconds: 60 });
    const lease = await m.acquire(newSignal());
    expect(config.network!.contains(lease.subnet)).to.equal(true);
    const raw = await client.get(lease.key).exec();
    expect(raw.kvs[0]!.value.toString()).to.equal('{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:2a:00:00:00:01"}}');
    expect(raw.kvs[0]!.lease).to.not.equal('0');
    const ttl = await client.leaseClient.leaseTimeToLive({ ID: raw.kvs[0]!.lease });
    expect(Number(ttl.TTL)).to.be.within(55, 60);
  });

  it('keeps ONE etcd lease alive across renewals (no orphan lease per renewal)', async () => {
    const config = await registry.readNetworkConfig();
    const m = new LeaseManager({ registry, config, attrs: attrs(1), ttlSeconds: 3, renewMarginSeconds: 2 });
    const signal = newSignal();
    const lease = await m.acquire(signal);
    void m.run(signal);
    let renewals = 0;
    m.on('renewed', () => renewals++);
    await sleep(4500); // longer than the TTL: only keepalives keep the key
    expect(renewals).to.be.greaterThan(2);
    const kv = (await client.get(lease.key).exec()).kvs[0];
    expect(kv, 'key still present').to.not.equal(undefined);
    expect(kv!.lease).to.equal(lease.etcdLeaseId);
    const leases = await client.leaseClient.leaseLeases();
    expect(leases.leases.map((l) => l.ID)).to.deep.equal([lease.etcdLeaseId]);
    expect(m.ttlRemaining).to.be.greaterThan(0);
  });

  it('two managers racing for the same subnet both end up with distinct subnets', async () => {
    const config = await registry.readNetworkConfig();
    // Both pick the first free subnet: exactly one create wins, the other re-lists and retries.
    const a = new LeaseManager({ registry: newRegistry(), config, attrs: attrs(1), randomInt: () => 0 });
    const b = new LeaseManager({ registry: newRegistry(), config, attrs: attrs(2), randomInt: () => 0 });
    const [la, lb] = await Promise.all([a.acquire(newSignal()), b.acquire(newSignal())]);
    expect(la.subnet.equals(lb.subnet)).to.equal(false);
    expect([la.subnet.toString(), lb.subnet.toString()].sort()).to.deep.equal(['10.244.1.0/24', '10.244.2.0/24']);
  });

  it('a restart reuses the same subnet (by public IP, or from the previous subnet file)', async () => {
    const config = await registry.readNetworkConfig();
    const first = await new LeaseManager({ registry, config, attrs: attrs(1), ttlSeconds: 60 }).acquire(newSignal());
    // Process restart: a new manager and a new client; the old key is still alive.
    const again = await new LeaseManager({ registry: newRegistry(), config, attrs: attrs(1), ttlSeconds: 60 }).acquire(newSignal());
    expect(again.subnet.toString()).to.equal(first.subnet.toString());
    expect(again.etcdLeaseId).to.not.equal(first.etcdLeaseId);
    // The old etcd lease was revoked, not orphaned.
    expect((await client.leaseClient.leaseLeases()).leases.map((l) => l.ID)).to.deep.equal([again.etcdLeaseId]);
    // Key expired while down: the previous subnet from the subnet file is taken again.
    await client.delete().key(again.key);
    const afterExpiry = await new LeaseManager({ registry: newRegistry(), config, attrs: attrs(1), previousSubnet: first.subnet }).acquire(newSignal());
    expect(afterExpiry.subnet.toString()).to.equal(first.subnet.toString());
  });

  it('honours a reservation and never converts it to a leased key', async () => {
    const config = await registry.readNetworkConfig();
    const key = subnetKey(P, Subnet.parse('10.244.77.0/24'));
    await client.put(key).value(serializeLeaseAttrs({ ...attrs(1), BackendData: { VNI: 1, VtepMAC: '0e:00:00:00:00:99' } }));
    const m = new LeaseManager({ registry, config, attrs: attrs(1), ttlSeconds: 3, renewMarginSeconds: 2 });
    const signal = newSignal();
    const lease = await m.acquire(signal);
    void m.run(signal);
    expect(lease.subnet.toString()).to.equal('10.244.77.0/24');
    expect(lease.etcdLeaseId).to.equal('0');
    await sleep(1500);
    const kv = (await client.get(key).exec()).kvs[0]!;
    expect(kv.lease).to.equal('0');
    expect(JSON.parse(kv.value.toString()).BackendData.VtepMAC).to.equal('0e:2a:00:00:00:01'); // our MAC published
    // Another node never takes a reserved subnet.
    const other = await new LeaseManager({ registry: newRegistry(), config, attrs: attrs(2), previousSubnet: Subnet.parse('10.244.77.0/24'), randomInt: () => 0 }).acquire(newSignal());
    expect(other.subnet.toString()).to.not.equal('10.244.77.0/24');
    await m.release();
    expect((await client.get(key).exec()).kvs).to.have.length(1);
  });

  it('a lease key deleted under a running manager is re-created with the same subnet', async () => {
    const { m, lease } = await runningManager();
    const lost = once(m, 'lost');
    await client.delete().key(lease.key);
    await lost;
    const kv = await eventually('key re-created', async () => (await client.get(lease.key).exec()).kvs[0]);
    expect(JSON.parse(kv.value.toString()).PublicIP).to.equal('198.18.0.1');
    expect(m.lease!.subnet.toString()).to.equal(lease.subnet.toString());
    expect(m.losses).to.equal(1);
    await eventually('state held', () => m.state === 'held');
  });

  it('a revoked etcd lease is replaced and the same subnet re-created', async () => {
    const { m, lease } = await runningManager();
    await client.leaseClient.leaseRevoke({ ID: lease.etcdLeaseId });
    const kv = await eventually('key re-created on a new lease', async () => {
      const k = (await client.get(lease.key).exec()).kvs[0];
      return k && k.lease !== lease.etcdLeaseId ? k : undefined;
    });
    expect(kv.lease).to.not.equal('0');
    expect(m.lease!.subnet.toString()).to.equal(lease.subnet.toString());
  });

  it('when another node took the subnet, acquires a new one and reports the change', async () => {
    const { m, lease } = await runningManager();
    const changed = once(m, 'change') as Promise<[Lease, Lease]>;
    await client.put(lease.key).value(serializeLeaseAttrs(attrs(9)));
    const [now, before] = await changed;
    expect(before.subnet.toString()).to.equal(lease.subnet.toString());
    expect(now.subnet.toString()).to.not.equal(lease.subnet.toString());
    expect(JSON.parse((await client.get(now.key).string())!).PublicIP).to.equal('198.18.0.1');
  });

  it('range exhausted is a clear, retried error, and succeeds once a subnet frees up', async () => {
    await client.put(configKey(P)).value('{"Network":"10.9.0.0/28","SubnetLen":30}');
    const config = await registry.readNetworkConfig();
    const holders = await Promise.all([1, 2, 3].map((n) => new LeaseManager({ registry: newRegistry(), config, attrs: attrs(n), ttlSeconds: 60 })));
    const leases = await Promise.all(holders.map((h) => h.acquire(newSignal())));
    expect(new Set(leases.map((l) => l.subnet.toString())).size).to.equal(3);
    const errors: string[] = [];
    const fourth = new LeaseManager({ registry: newRegistry(), config, attrs: attrs(4), log: { error: (m: string) => errors.push(m), info() {}, warn() {} } as never });
    const pending = fourth.acquire(newSignal());
    await eventually('exhaustion reported', () => errors.some((e) => /no free subnet/.test(e)));
    await holders[1]!.release();
    const got = await pending;
    expect(got.subnet.toString()).to.equal(leases[1]!.subnet.toString());
  });

  it('five nodes racing for a /28 with SubnetLen 30: three distinct subnets, two report exhaustion, never an overlap', async () => {
    await client.put(configKey(P)).value('{"Network":"10.9.0.0/28","SubnetLen":30}');
    const config = await registry.readNetworkConfig();
    const exhausted = new Set<number>();
    const managers = [1, 2, 3, 4, 5].map(
      (n) =>
        new LeaseManager({
          registry: newRegistry(),
          config,
          attrs: attrs(n),
          randomInt: () => 0, // everyone wants the same first free subnet: maximum contention
          log: { error: (m: string) => /no free subnet/.test(m) && exhausted.add(n), info() {}, warn() {} } as never,
        }),
    );
    const signals = managers.map(() => newSignal());
    const results = managers.map((m, i) => m.acquire(signals[i]!).then((l) => l.subnet.toString(), () => null));
    await eventually('two exhausted', () => exhausted.size === 2);
    for (const c of controllers) c.abort();
    const got = (await Promise.all(results)).filter((x): x is string => x !== null);
    expect(got.sort()).to.deep.equal(['10.9.0.12/30', '10.9.0.4/30', '10.9.0.8/30']);
    const keys = await client.getAll().prefix(`${P}/subnets/`).keys();
    expect(keys).to.have.length(3);
  });

  it('watch sees add, change, expiry and delete, with last known attributes on removal', async () => {
    const config = await registry.readNetworkConfig();
    const w = new LeaseWatcher({ registry, config, ownSubnet: () => null, ownPublicIP: '198.18.0.1' });
    const log = new BatchLog(w, newSignal());
    await eventually('first snapshot', () => log.batches.length === 1);
    const k2 = subnetKey(P, Subnet.parse('10.244.2.0/24'));
    await client.put(k2).value(serializeLeaseAttrs(attrs(2)));
    await client.put(k2).value(serializeLeaseAttrs({ ...attrs(2), BackendData: { VNI: 1, VtepMAC: '0e:2a:00:00:00:22' } }));
    const short = await client.leaseClient.leaseGrant({ TTL: 2 });
    await client.put(subnetKey(P, Subnet.parse('10.244.3.0/24'))).value(serializeLeaseAttrs(attrs(3))).lease(short.ID);
    await client.delete().key(k2);
    await eventually('expiry delete', () => log.events().includes('removed 10.244.3.0/24'), 8000);
    expect(log.events()).to.deep.equal([
      'added 10.244.2.0/24 0e:2a:00:00:00:02',
      'changed 10.244.2.0/24 0e:2a:00:00:00:22',
      'added 10.244.3.0/24 0e:2a:00:00:00:03',
      'removed 10.244.2.0/24',
      'removed 10.244.3.0/24',
    ]);
    const removed = log.batches.flatMap((b) => b.events).filter((e) => e.type === 'removed');
    expect(removed.map((e) => e.lease.attrs.BackendData!.VtepMAC)).to.deep.equal(['0e:2a:00:00:00:22', '0e:2a:00:00:00:03']);
  });

  it('a watch seeded with the acquisition listing starts from it: nothing read twice, nothing written since missed', async () => {
    const config = await registry.readNetworkConfig();
    await client.put(subnetKey(P, Subnet.parse('10.244.2.0/24'))).value(serializeLeaseAttrs(attrs(2)));
    // The node's own subnet is pinned: chosen at random, it was 10.244.3.0/24 about once in a hundred runs, and the
    // key this test writes as a new peer was then the node's own, which the watcher rightly leaves out.
    const m = new LeaseManager({ registry, config, attrs: attrs(1), ttlSeconds: 30, previousSubnet: Subnet.parse('10.244.1.0/24') });
    const { lease, listing } = await m.acquireWithListing(newSignal());
    expect(lease.subnet.toString()).to.equal('10.244.1.0/24');
    expect(listing.kvs.map((kv) => kv.key)).to.deep.equal([subnetKey(P, Subnet.parse('10.244.2.0/24'))]);
    // Written after the listing: a new peer, and a change to the listed one.
    await client.put(subnetKey(P, Subnet.parse('10.244.3.0/24'))).value(serializeLeaseAttrs(attrs(3)));
    await client.put(subnetKey(P, Subnet.parse('10.244.2.0/24'))).value(serializeLeaseAttrs({ ...attrs(2), BackendData: { VNI: 1, VtepMAC: '0e:2a:00:00:00:22' } }));
    const w = new LeaseWatcher({ registry, config, ownSubnet: () => lease.subnet, ownPublicIP: '198.18.0.1' });
    const iterator = w.batches(newSignal(), listing)[Symbol.asyncIterator]();
    const first = await iterator.next();
    // The snapshot is the listing as it was (the old MAC, no 10.244.3.0), not a fresh read.
    expect(first.value!.events.map((e: { lease: Lease }) => `${e.lease.subnet} ${e.lease.attrs.BackendData!.VtepMAC}`)).to.deep.equal(['10.244.2.0/24 0e:2a:00:00:00:02']);
    const seen: string[] = [];
    while (seen.length < 2) {
      const next = await within(`the events written after the listing (seen so far: ${seen.join(', ') || 'none'})`, iterator.next());
      expect(next.value!.resync).to.equal(false);
      seen.push(...next.value!.events.map((e: { type: string; lease: Lease }) => `${e.type} ${e.lease.subnet}`));
    }
    // Its own key (created after the listing) arrived too, and was not taken for a peer.
    expect(seen).to.deep.equal(['added 10.244.3.0/24', 'changed 10.244.2.0/24']);
    expect(w.resyncs).to.equal(0);
    await iterator.return?.(undefined);
  });

  it('a listing read ahead serves the first try; when it is out of date, the lost race re-lists', async () => {
    const config = await registry.readNetworkConfig();
    const wanted = Subnet.parse('10.244.9.0/24');
    const early = registry.listSubnets();
    await early;
    // Another node takes the subnet this one wants after the listing was read.
    await client.put(subnetKey(P, wanted)).value(serializeLeaseAttrs(attrs(2)));
    const { counting, lists } = countingLists();
    const m = new LeaseManager({ registry: counting, config, attrs: attrs(1), previousSubnet: wanted, ttlSeconds: 30 });
    const { lease, listing } = await m.acquireWithListing(newSignal(), { prefetched: early });
    expect(lease.subnet.equals(wanted)).to.equal(false);
    expect(lists).to.deep.equal(['list']); // only the re-list after the lost race
    expect(listing.kvs.map((kv) => kv.key)).to.include(subnetKey(P, wanted));
  });

  it('a listing read ahead that failed is read again', async () => {
    const config = await registry.readNetworkConfig();
    const failed = Promise.reject(new WeftError('WEFT_ERR_STORE_UNAVAILABLE', 'etcd range failed: connection refused'));
    const { counting, lists } = countingLists();
    const m = new LeaseManager({ registry: counting, config, attrs: attrs(1), ttlSeconds: 30 });
    const { lease } = await m.acquireWithListing(newSignal(), { prefetched: failed });
    expect(lists).to.deep.equal(['list']);
    expect((await registry.getSubnet(lease.key))?.key).to.equal(lease.key);
  });

  it('compaction while the watch is behind loses no peer: re-list and diff', async () => {
    const config = await registry.readNetworkConfig();
    await client.put(subnetKey(P, Subnet.parse('10.244.2.0/24'))).value(serializeLeaseAttrs(attrs(2)));
    await client.put(subnetKey(P, Subnet.parse('10.244.3.0/24'))).value(serializeLeaseAttrs(attrs(3)));
    const w = new LeaseWatcher({ registry, config, ownSubnet: () => null, ownPublicIP: '198.18.0.1' });
    const iterator = w.batches(newSignal())[Symbol.asyncIterator]();
    const first = await iterator.next(); // snapshot taken; the watch is not yet created (the generator is lazy)
    expect(first.value!.events.map((e: { lease: Lease }) => e.lease.subnet.toString())).to.deep.equal(['10.244.2.0/24', '10.244.3.0/24']);
    // While the watch is behind: a MAC change, a delete, an add; then compaction of that history.
    await client.put(subnetKey(P, Subnet.parse('10.244.2.0/24'))).value(serializeLeaseAttrs({ ...attrs(2), BackendData: { VNI: 1, VtepMAC: '0e:2a:00:00:00:22' } }));
    await client.delete().key(subnetKey(P, Subnet.parse('10.244.3.0/24')));
    await client.put(subnetKey(P, Subnet.parse('10.244.4.0/24'))).value(serializeLeaseAttrs(attrs(4)));
    await etcd.compact();
    const next = await iterator.next();
    expect(next.value!.resync).to.equal(true);
    expect(next.value!.events.map((e: { type: string; lease: Lease }) => `${e.type} ${e.lease.subnet}`)).to.deep.equal([
      'changed 10.244.2.0/24',
      'added 10.244.4.0/24',
      'removed 10.244.3.0/24',
    ]);
    expect(w.resyncs).to.equal(1);
    expect([...w.current.keys()].sort()).to.deep.equal(['10.244.2.0/24', '10.244.4.0/24']);
    await iterator.return?.(undefined);
  });

  it('an etcd restart mid-watch loses no event and the lease survives', async () => {
    const config = await registry.readNetworkConfig();
    const { m, lease: own, signal } = await runningManager();
    const w = new LeaseWatcher({ registry, config, ownSubnet: () => m.lease?.subnet ?? null, ownPublicIP: '198.18.0.1' });
    const log = new BatchLog(w, signal);
    await eventually('first snapshot', () => log.batches.length === 1);
    await client.put(subnetKey(P, Subnet.parse('10.244.2.0/24'))).value(serializeLeaseAttrs(attrs(2)));
    await eventually('peer 2', () => log.events().length === 1);
    await etcd.restart(1500);
    const writer = createEtcdClient({ endpoints: [etcd.endpoint] });
    clients.push(writer);
    await writer.put(subnetKey(P, Subnet.parse('10.244.3.0/24'))).value(serializeLeaseAttrs(attrs(3)));
    await writer.delete().key(subnetKey(P, Subnet.parse('10.244.2.0/24')));
    await eventually('events after restart', () => log.events().length === 3, 20_000);
    expect(log.events()).to.deep.equal(['added 10.244.2.0/24 0e:2a:00:00:00:02', 'added 10.244.3.0/24 0e:2a:00:00:00:03', 'removed 10.244.2.0/24']);
    expect((await writer.get(own.key).exec()).kvs[0]?.lease).to.equal(own.etcdLeaseId);
    expect(m.losses).to.equal(0);
  });

  it('an idle watch lives on etcd\'s answers to its progress requests (and its hasleader metadata): never stale, never re-listed', async () => {
    const quick = new EtcdRegistry(client, P, recordingLogger(), { confirmMs: 5000, reconnectMs: 10_000, progressAfterMs: 100, staleAfterMs: 400 });
    const signal = newSignal();
    const it = quick.watchSubnets(signal)[Symbol.asyncIterator]();
    expect((await it.next()).value).to.include({ type: 'snapshot', reason: 'initial' });
    const pending = it.next();
    // Ten times the stale bound of silence: only etcd's progress answers keep the watch.
    const outcome = await Promise.race([pending.then(() => 'an update'), sleep(4000).then(() => 'quiet')]);
    expect(outcome, registryLog.join('\n')).to.equal('quiet');
    expect(quick.state).to.equal('connected');
    await client.put(subnetKey(P, Subnet.parse('10.244.2.0/24'))).value(serializeLeaseAttrs(attrs(2)));
    expect((await pending).value, 'the watch still delivers').to.include({ type: 'events' });
    await it.return?.(undefined);
  });

  it('malformed leases in etcd are skipped and disturb nothing else', async () => {
    const config = await registry.readNetworkConfig();
    const sub = (s: string) => `${P}/subnets/${s}`;
    await client.put(sub('10.244.5.0-24')).value('{"PublicIP":');
    await client.put(sub('10.244.6.0-24')).value('{"PublicIP":"198.18.0.6","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"not-a-mac"}}');
    await client.put(sub('10.244.7.0-25')).value(serializeLeaseAttrs(attrs(7)));
    await client.put(sub('10.99.0.0-24')).value(serializeLeaseAttrs(attrs(8)));
    await client.put(sub('10.244.9.0-24')).value(serializeLeaseAttrs(attrs(9)));
    const w = new LeaseWatcher({ registry, config, ownSubnet: () => null, ownPublicIP: '198.18.0.1' });
    const log = new BatchLog(w, newSignal());
    await eventually('snapshot', () => log.batches.length === 1);
    expect(log.events()).to.deep.equal(['added 10.244.9.0/24 0e:2a:00:00:00:09']);
    expect(w.skipped).to.equal(4);
    // A manager never allocates a subnet whose key exists, even with a broken value.
    const m = new LeaseManager({ registry, config, attrs: attrs(1), previousSubnet: Subnet.parse('10.244.5.0/24'), randomInt: () => 0 });
    const got = await m.acquire(newSignal());
    expect(['10.244.5.0/24', '10.244.6.0/24', '10.244.9.0/24']).to.not.include(got.subnet.toString());
  });
});
