import { expect } from 'chai';
import type { Etcd3 } from 'etcd3';
import { WeftError, isWeftError, type WeftErrorCode } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { Subnet } from '../common/subnet.js';
import { parseNetworkConfig } from '../lease/config.js';
import { parseSubnetKey } from '../lease/keyspace.js';
import { judgeLease, parseLeaseAttrs, validateLease, type RawKeyValue } from '../lease/lease-value.js';
import { LeaseManager } from '../lease/manager.js';
import { EtcdRegistry, type Listing, type Registry, type StoreUpdate, type WatchOptions } from '../lease/registry.js';
import { LeaseWatcher } from '../lease/watcher.js';
import type { Lease } from '../lease/types.js';

const P = '/coreos.com/network';
const config = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
const value = (ip: string, mac: string) => JSON.stringify({ PublicIP: ip, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
const kv = (name: string, v: string, rev = '2'): RawKeyValue => ({ key: `${P}/subnets/${name}`, value: v, lease: '9', modRevision: rev });

/** What `fn` throws, or a failure when it throws nothing. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  return expect.fail('expected a throw');
}

function expectCode(err: unknown, code: WeftErrorCode, message: RegExp): void {
  expect(err).to.be.instanceOf(WeftError);
  expect(err).to.have.property('code', code);
  expect((err as Error).message).to.match(message);
}

/**
 * A registry over an in-memory keyspace: listings of the keys it was given,
 * create-if-absent, and a watch that yields a given listing (or a listing)
 * as its snapshot and then nothing, as the etcd registry does.
 */
function memoryRegistry(kvs: RawKeyValue[]): Registry & { listings: number } {
  const store = new Map(kvs.map((k) => [k.key, k]));
  let revision = 10;
  const registry = {
    prefix: P,
    listings: 0,
    async listSubnets(): Promise<Listing> {
      registry.listings++;
      return { kvs: [...store.values()], revision: String(revision) };
    },
    async getSubnet(key: string) {
      return store.get(key) ?? null;
    },
    async grantLease(ttl: number) {
      return { id: '77', ttl };
    },
    async createSubnet(key: string, v: string, id: string) {
      if (store.has(key)) return false;
      store.set(key, { key, value: v, lease: id, modRevision: String(++revision) });
      return true;
    },
    async *watchSubnets(signal: AbortSignal, { initial }: WatchOptions = {}): AsyncGenerator<StoreUpdate> {
      const listing = initial ?? (await registry.listSubnets());
      yield { type: 'snapshot', kvs: listing.kvs, revision: listing.revision, reason: 'initial' };
      listing.kvs.length = 0;
      await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
    },
  };
  return registry as unknown as Registry & { listings: number };
}

/** A logger that keeps its warnings (synchronously, unlike a winston transport). */
function recordingLog(): { log: Logger; warnings: string[] } {
  const warnings: string[] = [];
  const log = { debug: () => undefined, info: () => undefined, warn: (m: string) => void warnings.push(m), error: () => undefined };
  return { log: log as unknown as Logger, warnings };
}

describe('error codes of lease values, keys and addresses', () => {
  it('parseLeaseAttrs rejects with WEFT_ERR_LEASE_MALFORMED and the reason validateLease quotes', () => {
    const cases: [string, RegExp][] = [
      ['{', /value is not valid JSON/],
      ['[]', /value must be a JSON object, got array/],
      ['{"PublicIP":7}', /PublicIP must be an IPv4 address string/],
      ['{"PublicIP":"198.18.0.300"}', /is not an IPv4 address/],
      ['{"PublicIP":"127.0.0.1"}', /not a usable unicast address/],
      ['{"PublicIP":"198.18.0.2","BackendType":"vxlan"}', /vxlan lease without BackendData/],
      [value('198.18.0.2', 'not-a-mac'), /VtepMAC "not-a-mac" is not a MAC address/],
      [value('198.18.0.2', '01:00:5e:00:00:01'), /is not a unicast MAC address/],
      [JSON.stringify({ PublicIP: '198.18.0.2', pad: 'x'.repeat(5000) }), /larger than 4096 bytes/],
    ];
    for (const [text, reason] of cases) {
      expectCode(thrown(() => parseLeaseAttrs(text)), 'WEFT_ERR_LEASE_MALFORMED', reason);
      // validateLease names the key in front of the same reason, and keeps the parser's error as the cause.
      const err = thrown(() => validateLease(P, kv('10.244.3.0-24', text), config));
      expectCode(err, 'WEFT_ERR_LEASE_MALFORMED', new RegExp(`^malformed lease ".*10\\.244\\.3\\.0-24": .*${reason.source}`));
      expect((err as Error).cause).to.satisfy((cause: unknown) => isWeftError(cause, 'WEFT_ERR_LEASE_MALFORMED'));
    }
  });

  it('parseSubnetKey rejects a malformed subnet key with WEFT_ERR_LEASE_MALFORMED, keeping the address error text', () => {
    expectCode(thrown(() => parseSubnetKey(P, `${P}/subnets/10.244.300.0-24`)), 'WEFT_ERR_LEASE_MALFORMED', /invalid CIDR/);
    expectCode(thrown(() => parseSubnetKey(P, `${P}/subnets/10.244.3.7-24`)), 'WEFT_ERR_LEASE_MALFORMED', /not a network address \(host bits set/);
    expectCode(thrown(() => parseSubnetKey(P, `${P}/subnets/10.244.3.0-24&fc00::1-64`)), 'WEFT_ERR_LEASE_MALFORMED', /not a network address/);
    expect(parseSubnetKey(P, `${P}/subnets/not-a-subnet`)).to.equal(null);
  });

  it('address parsing throws WEFT_ERR_ADDRESS_INVALID, which is not retryable', () => {
    for (const bad of ['10.0.0.0', '10.0.0.0/33', 'fe80::1%eth0/64', '10.0.0.0/8/8', 'x/8']) {
      const err = thrown(() => Subnet.parse(bad));
      expectCode(err, 'WEFT_ERR_ADDRESS_INVALID', /invalid CIDR/);
      expect((err as WeftError).retryable).to.equal(false);
    }
    expectCode(thrown(() => Subnet.parseCanonical('10.0.0.1/8')), 'WEFT_ERR_ADDRESS_INVALID', /not a network address/);
    expectCode(thrown(() => Subnet.of(4, 0n, 33)), 'WEFT_ERR_ADDRESS_INVALID', /invalid prefix length 33 for IPv4/);
  });

  it('judgeLease gives the lease, null for a key that is not a subnet key, or the malformed-lease error, without throwing', () => {
    const good = kv('10.244.3.0-24', value('198.18.0.3', '0e:2a:00:00:00:03'));
    expect(judgeLease(P, good, config).lease?.subnet.toString()).to.equal('10.244.3.0/24');
    expect(judgeLease(P, good, config).kv).to.equal(good);
    expect(judgeLease(P, kv('elsewhere', '{}'), config)).to.deep.include({ lease: null, error: null });
    const bad = judgeLease(P, kv('10.99.0.0-24', value('198.18.0.4', '0e:2a:00:00:00:04')), config);
    expect(bad.lease).to.equal(null);
    expectCode(bad.error, 'WEFT_ERR_LEASE_MALFORMED', /outside Network/);
  });

  it('LeaseManager.run() before acquire() is WEFT_ERR_INVALID_STATE', async () => {
    const m = new LeaseManager({ registry: memoryRegistry([]), config, attrs: { PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: '' } });
    const err = await m.run(new AbortController().signal).then(
      () => expect.fail('run() should refuse'),
      (e: unknown) => e,
    );
    expectCode(err, 'WEFT_ERR_INVALID_STATE', /call acquire\(\) first/);
  });
});

describe('the acquisition listing handed to the peer watch', () => {
  const peers = () => [
    kv('10.244.2.0-24', value('198.18.0.2', '0e:2a:00:00:00:02')),
    kv('10.244.5.0-24', '{"PublicIP":'),
    kv('10.244.6.0-24', value('198.18.0.6', '0e:2a:00:00:00:06')),
  ];
  const attrs = { PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0e:2a:00:00:00:01' } };

  async function acquired(registry: Registry, log = recordingLog().log) {
    const m = new LeaseManager({ registry, config, attrs, log, randomInt: () => 0 });
    const ac = new AbortController();
    const got = await m.acquireWithListing(ac.signal);
    return { ...got, ac };
  }

  it('carries one verdict per listed key, judged against the manager\'s keyspace and config', async () => {
    const { listing, lease } = await acquired(memoryRegistry(peers()));
    expect(listing.prefix).to.equal(P);
    expect(listing.config).to.equal(config);
    expect(listing.verdicts).to.have.length(listing.kvs.length);
    listing.verdicts.forEach((v, i) => expect(v.kv).to.equal(listing.kvs[i]));
    expect(listing.verdicts.map((v) => (v.error ? v.error.code : v.lease?.subnet.toString()))).to.deep.equal([
      '10.244.2.0/24',
      'WEFT_ERR_LEASE_MALFORMED',
      '10.244.6.0/24',
    ]);
    // The malformed key still occupies its subnet.
    expect(['10.244.2.0/24', '10.244.5.0/24', '10.244.6.0/24']).to.not.include(lease.subnet.toString());
  });

  it('the watch starts from the verdicts: the same leases, nothing validated or read again, one warning per malformed key', async () => {
    const registry = memoryRegistry(peers());
    const { listing, lease, ac } = await acquired(registry);
    const judged = new Map(listing.verdicts.flatMap((v) => (v.lease ? [[v.lease.subnet.toString(), v.lease] as const] : [])));
    const { log, warnings } = recordingLog();
    const w = new LeaseWatcher({ registry, config, ownSubnet: () => lease.subnet, ownPublicIP: attrs.PublicIP, log });
    const iterator = w.batches(ac.signal, listing)[Symbol.asyncIterator]();
    try {
      const first = (await iterator.next()).value!;
      expect(first.resync).to.equal(true);
      expect(first.events.map((e: { type: string; lease: Lease }) => `${e.type} ${e.lease.subnet}`)).to.deep.equal(['added 10.244.2.0/24', 'added 10.244.6.0/24']);
      // The very lease objects acquisition judged: a second validation would have built new ones.
      for (const e of first.events) expect(e.lease).to.equal(judged.get(e.lease.subnet.toString()));
      expect(registry.listings).to.equal(1); // acquisition's listing only
      expect(w.skipped).to.equal(1);
      expect(warnings.filter((m) => m.startsWith('skipping lease'))).to.have.length(1);
      expect(warnings.join('\n')).to.include('10.244.5.0-24');
      // Handed over: the watch does not keep the verdicts alive (the registry empties the keys likewise).
      expect(listing.verdicts).to.have.length(0);
    } finally {
      ac.abort();
      await iterator.return?.(undefined);
    }
  });

  it('a listing judged against another config is judged again, by the watcher\'s own rules', async () => {
    const registry = memoryRegistry(peers());
    const { listing, lease, ac } = await acquired(registry);
    const judged = new Set(listing.verdicts.map((v) => v.lease));
    // The same rules in another object: the watcher cannot tell they are the same, so it judges for itself.
    const otherConfig = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    const w = new LeaseWatcher({ registry, config: otherConfig, ownSubnet: () => lease.subnet, ownPublicIP: attrs.PublicIP });
    const iterator = w.batches(ac.signal, listing)[Symbol.asyncIterator]();
    try {
      const first = (await iterator.next()).value!;
      expect(first.events.map((e: { lease: Lease }) => e.lease.subnet.toString())).to.deep.equal(['10.244.2.0/24', '10.244.6.0/24']);
      for (const e of first.events) expect(judged.has(e.lease), 'judged again: new lease objects').to.equal(false);
      expect(w.skipped).to.equal(1);
    } finally {
      ac.abort();
      await iterator.return?.(undefined);
    }
  });
});

describe('EtcdRegistry lifetime: close() is graceful, destroy() is now', () => {
  /** An etcd3 stand-in whose time-to-live calls answer when the test says so. */
  function standIn() {
    const answers: ((ttl: string) => void)[] = [];
    const client = {
      closed: 0,
      close() {
        client.closed++;
      },
      leaseClient: {
        leaseTimeToLive: () => new Promise<{ TTL: string }>((resolve) => answers.push((TTL) => resolve({ TTL }))),
      },
    };
    return { client, answers, registry: new EtcdRegistry(client as unknown as Etcd3, P) };
  }

  it('close() lets the call in flight finish, then closes the connection; later calls fail with WEFT_ERR_INVALID_STATE', async () => {
    const { client, answers, registry } = standIn();
    const inFlight = registry.leaseTimeToLive('9');
    await new Promise((r) => setImmediate(r));
    let closed = false;
    const closing = registry.close().then(() => (closed = true));
    await new Promise((r) => setImmediate(r));
    expect(closed, 'waits for the call in flight').to.equal(false);
    expect(client.closed).to.equal(0);
    const refused = await registry.leaseTimeToLive('9').then(
      () => expect.fail('a call after close() should fail'),
      (e: unknown) => e,
    );
    expectCode(refused, 'WEFT_ERR_INVALID_STATE', /registry is closed/);
    answers[0]!('42');
    expect(await inFlight).to.equal(42);
    await closing;
    expect(client.closed).to.equal(1);
  });

  it('destroy() closes the connection at once', async () => {
    const { client, registry } = standIn();
    void registry.leaseTimeToLive('9').catch(() => undefined);
    await new Promise((r) => setImmediate(r));
    registry.destroy();
    expect(client.closed).to.equal(1);
    const refused = await registry.leaseTimeToLive('9').then(
      () => expect.fail('a call after destroy() should fail'),
      (e: unknown) => e,
    );
    expectCode(refused, 'WEFT_ERR_INVALID_STATE', /registry is closed/);
  });
});
