import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import { ExponentialBackoff } from 'cockatiel';
import type { Etcd3 } from 'etcd3';
import { NSApplicator } from 'etcd3/lib/util.js';
import { WatchManager, Watcher } from 'etcd3/lib/watch.js';
import type { Logger } from '../common/log.js';
import { Subnet } from '../common/subnet.js';
import { parseNetworkConfig } from '../lease/config.js';
import { watchProgress } from '../lease/etcd-client.js';
import { LeaseManager } from '../lease/manager.js';
import { EtcdRegistry, type Listing, type Registry, type StoreState, type StoreUpdate } from '../lease/registry.js';
import { WatchLiveness, type LivenessVerdict } from '../lease/watch-liveness.js';
import { isWeftError } from '../common/errors.js';

const P = '/coreos.com/network';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('watch liveness (pure)', () => {
  const bounds = { progressAfterMs: 3000, staleAfterMs: 6000 };

  it('asks for progress once per silence, and calls the watch stale when the silence outlasts the bound', () => {
    // [ms of silence, expected verdict]
    const steps: [number, LivenessVerdict][] = [
      [1000, 'wait'],
      [2999, 'wait'],
      [3000, 'ask'],
      [4000, 'wait'], // asked already: once is enough, etcd answers at once
      [5999, 'wait'],
      [6000, 'stale'],
      [7000, 'stale'],
    ];
    const l = new WatchLiveness(bounds, 0);
    for (const [t, want] of steps) expect(l.check(t), `at ${t} ms`).to.equal(want);
  });

  it('anything heard (an event, a progress answer, a confirmation) starts the silence over and allows a new question', () => {
    const l = new WatchLiveness(bounds, 0);
    expect(l.check(3000)).to.equal('ask');
    l.heard(3500); // the progress answer
    expect(l.check(5999)).to.equal('wait');
    expect(l.check(6500)).to.equal('ask');
    l.heard(6501);
    expect(l.check(9600)).to.equal('ask');
    expect(l.check(12_000)).to.equal('wait');
    expect(l.check(12_501)).to.equal('stale');
    expect(l.silentMs(12_501)).to.equal(6000);
  });

  it('an out-of-order clock reading never moves the last sign of life back', () => {
    const l = new WatchLiveness(bounds, 0);
    l.heard(5000);
    l.heard(4000);
    expect(l.silentMs(6000)).to.equal(1000);
  });

  it('says when the next verdict can change, so a timer need not poll', () => {
    const l = new WatchLiveness(bounds, 0);
    expect(l.nextCheckInMs(0)).to.equal(3000);
    expect(l.nextCheckInMs(1000)).to.equal(2000);
    expect(l.check(3000)).to.equal('ask');
    expect(l.nextCheckInMs(3000)).to.equal(3000);
    expect(l.nextCheckInMs(7000)).to.equal(0);
  });

  it('refuses bounds that cannot work, with WEFT_ERR_OPTION_INVALID', () => {
    for (const b of [
      { progressAfterMs: 0, staleAfterMs: 10 },
      { progressAfterMs: 5000, staleAfterMs: 5000 },
    ]) {
      let err: unknown = null;
      try {
        new WatchLiveness(b, 0);
      } catch (e) {
        err = e;
      }
      expect(isWeftError(err, 'WEFT_ERR_OPTION_INVALID'), JSON.stringify(b)).to.equal(true);
    }
  });
});

/** A stand-in for etcd3's gRPC watch stream: records what is written, and plays etcd's part when told. */
class StandInStream extends EventEmitter {
  readonly written: unknown[] = [];
  writable = true;
  write(req: unknown): boolean {
    this.written.push(req);
    return true;
  }
  cancel(): void {
    this.writable = false;
  }
}

describe('watchProgress on etcd3\'s own watch manager', () => {
  it('writes a WatchProgressRequest on the stream and hands etcd\'s answer (watch_id -1) to every watcher as progress, events still as data', async () => {
    const stream = new StandInStream();
    const manager = new WatchManager({ watch: async () => stream } as never, new ExponentialBackoff() as never);
    const watcher = new Watcher(manager, new NSApplicator(Buffer.alloc(0)), { key: Buffer.from('/a') });
    const other = new Watcher(manager, new NSApplicator(Buffer.alloc(0)), { key: Buffer.from('/b') });
    const progress = watchProgress(watcher)!;
    expect(progress, 'etcd3 internals as expected').to.not.equal(null);
    expect(progress.request(), 'no stream yet').to.equal(false);
    await sleep(5);
    stream.emit('data', { created: true, watch_id: '0', header: { revision: '5' }, events: [] });
    stream.emit('data', { created: true, watch_id: '1', header: { revision: '5' }, events: [] });
    expect(progress.request()).to.equal(true);
    expect(stream.written.at(-1)).to.deep.equal({ progress_request: {} });
    const seen: string[] = [];
    watcher.on('progress' as never, () => seen.push('a progress'));
    (other as EventEmitter).on('progress', () => seen.push('b progress'));
    watcher.on('data', () => seen.push('a data'));
    // Without watchProgress, etcd3 throws 'Failed to find watcher for IWatchResponse' on this answer.
    stream.emit('data', { created: false, canceled: false, watch_id: '-1', header: { revision: '6' }, events: [] });
    stream.emit('data', { created: false, canceled: false, watch_id: '0', header: { revision: '7' }, events: [] });
    expect(seen).to.deep.equal(['a progress', 'b progress', 'a data']);
    // Taught once: a second call on the same manager neither wraps it again nor breaks it.
    expect(watchProgress(other)).to.not.equal(null);
    stream.emit('data', { created: false, canceled: false, watch_id: '-1', header: { revision: '8' }, events: [] });
    expect(seen.filter((s) => s === 'a progress')).to.have.length(2);
  });

  it('is null for a watcher that is not etcd3\'s: such a watch runs without a liveness check', () => {
    expect(watchProgress(new EventEmitter())).to.equal(null);
  });
});

/**
 * A client whose watchers sit on a stand-in of etcd3's watch manager: etcd
 * answers progress requests, or (a silent partition) answers nothing.
 */
class PartitionableClient {
  revision = 10;
  lists = 0;
  /** While true, etcd answers nothing: lists hang up to the caller's deadline, progress requests go unanswered. */
  partitioned = false;
  readonly progressRequests: number[] = [];
  readonly watchers: EventEmitter[] = [];
  private readonly manager = {
    state: 2,
    watchers: this.watchers,
    stream: { write: (req: unknown) => this.onWrite(req) },
    handleResponse: (_res: unknown) => undefined,
  };

  private onWrite(req: unknown): boolean {
    if ((req as { progress_request?: unknown }).progress_request) {
      this.progressRequests.push(Date.now());
      if (!this.partitioned) setImmediate(() => this.manager.handleResponse({ watch_id: '-1', header: { revision: String(this.revision) } }));
    }
    return true;
  }

  getAll() {
    return {
      prefix: () => ({
        exec: async () => {
          if (this.partitioned) throw Object.assign(new Error('14 UNAVAILABLE: deadline'), {});
          this.lists++;
          return { kvs: [], header: { revision: String(this.revision) } };
        },
      }),
    };
  }

  watch() {
    const builder = {
      startRevision: () => builder,
      prefix: () => builder,
      watcher: () => {
        const w = Object.assign(new EventEmitter(), { manager: this.manager, cancel: async () => undefined });
        this.watchers.push(w);
        if (!this.partitioned) setImmediate(() => w.emit('connected', {}));
        return w;
      },
    };
    return builder;
  }
}

function recordingLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const keep = (level: string) => (m: string) => void lines.push(`${level} ${m}`);
  const log = { debug: () => undefined, info: keep('info'), warn: keep('warn'), error: keep('error'), log: (level: string, m: string) => keep(level)(m) };
  return { log: log as unknown as Logger, lines };
}

async function next(it: AsyncIterator<StoreUpdate>): Promise<StoreUpdate> {
  const r = await it.next();
  if (r.done) throw new Error('watch ended');
  return r.value;
}

describe('etcd registry watch liveness (unit, stand-in client)', () => {
  const bounds = { confirmMs: 1000, reconnectMs: 60_000, progressAfterMs: 40, staleAfterMs: 120 };

  it('an idle watch whose progress requests are answered stays, however long it is quiet', async () => {
    const client = new PartitionableClient();
    const registry = new EtcdRegistry(client as unknown as Etcd3, P, undefined, bounds);
    const ac = new AbortController();
    const it = registry.watchSubnets(ac.signal)[Symbol.asyncIterator]();
    await next(it);
    const pending = it.next();
    await sleep(500);
    expect(client.lists, 'never re-listed').to.equal(1);
    expect(client.progressRequests.length, 'etcd was asked').to.be.at.least(3);
    expect(registry.state).to.equal('connected');
    ac.abort();
    expect((await pending).done).to.equal(true);
  });

  it('a silent partition: the watch is stale within the bound, etcd is reported unreachable with since when, and after the heal a re-list brings what changed', async () => {
    const client = new PartitionableClient();
    const { log, lines } = recordingLog();
    const registry = new EtcdRegistry(client as unknown as Etcd3, P, log, bounds);
    const states: StoreState[] = [];
    registry.on('state', (s) => states.push(s));
    const ac = new AbortController();
    const it = registry.watchSubnets(ac.signal)[Symbol.asyncIterator]();
    try {
      await next(it);
      const update = next(it);
      await sleep(20);
      const cut = Date.now();
      client.partitioned = true;
      while (registry.state === 'connected' && Date.now() - cut < 2000) await sleep(5);
      const detected = Date.now() - cut;
      expect(registry.state).to.equal('unreachable');
      expect(detected, 'within the stale bound (and a timer tick)').to.be.below(bounds.staleAfterMs + 100);
      expect(registry.unreachableSince).to.be.a('number');
      expect(lines.some((l) => /^warn etcd unreachable: the watch showed no sign of life for \d+ ms/.test(l)), lines.join('\n')).to.equal(true);
      await sleep(200);
      client.revision = 30; // a newcomer's lease, written meanwhile
      client.partitioned = false;
      expect(await update).to.include({ type: 'snapshot', reason: 'resync', revision: '30' });
      await sleep(20);
      expect(registry.state).to.equal('connected');
      expect(registry.unreachableSince).to.equal(null);
      expect(states).to.deep.equal(['unreachable', 'connected']);
      expect(lines.some((l) => /^info etcd connected again after \d+\.\d s unreachable$/.test(l)), lines.join('\n')).to.equal(true);
      expect(lines.filter((l) => l.startsWith('warn etcd list failed')), 'one warning for the failed re-lists, not one per attempt').to.have.length(1);
    } finally {
      ac.abort();
      await it.return?.(undefined);
    }
  });
});

describe('the lease keepalive and etcd outages', () => {
  const config = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');

  /** A registry that holds one key and counts keepalives; its connectivity is set by the test. */
  function outageRegistry(): Registry & { keepalives: number; setStoreState(s: StoreState): void } {
    const emitter = new EventEmitter();
    const key = `${P}/subnets/10.244.1.0-24`;
    const value = JSON.stringify({ PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0e:2a:00:00:00:01' } });
    const kv = { key, value, lease: '77', modRevision: '11' };
    return Object.assign(emitter, {
      prefix: P,
      state: 'connected' as StoreState,
      unreachableSince: null,
      keepalives: 0,
      setStoreState(s: StoreState) {
        this.state = s;
        emitter.emit('state', s);
      },
      async listSubnets(): Promise<Listing> {
        return { kvs: [], revision: '10' };
      },
      async grantLease(ttl: number) {
        return { id: '77', ttl };
      },
      async createSubnet() {
        return true;
      },
      async getSubnet() {
        return kv;
      },
      async keepAliveLease(this: { keepalives: number }) {
        this.keepalives++;
        return 3600;
      },
      async *watchSubnets(signal: AbortSignal): AsyncGenerator<StoreUpdate> {
        yield { type: 'snapshot', kvs: [kv], revision: '11', reason: 'initial' };
        await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
      },
    }) as unknown as Registry & { keepalives: number; setStoreState(s: StoreState): void };
  }

  it('says how long the lease stays valid when etcd goes out of reach, and renews at once when it is back', async () => {
    const registry = outageRegistry();
    const { log, lines } = recordingLog();
    const m = new LeaseManager({
      registry,
      config,
      attrs: { PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0e:2a:00:00:00:01' } },
      previousSubnet: Subnet.parse('10.244.1.0/24'),
      ttlSeconds: 3600,
      log,
    });
    const ac = new AbortController();
    await m.acquire(ac.signal);
    const running = m.run(ac.signal);
    try {
      await sleep(20);
      expect(registry.keepalives, 'the next keepalive is 20 minutes away').to.equal(0);
      registry.setStoreState('unreachable');
      expect(lines.some((l) => /^warn lease 10\.244\.1\.0\/24 stays valid for 3\d{3} s without etcd$/.test(l)), lines.join('\n')).to.equal(true);
      registry.setStoreState('connected');
      await sleep(20);
      expect(registry.keepalives, 'renewed as soon as etcd was back').to.equal(1);
      expect(m.state).to.equal('held');
    } finally {
      ac.abort();
      await running;
    }
  });
});
