import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import type { Etcd3 } from 'etcd3';
import type { Logger } from '../common/log.js';
import { EtcdRegistry, type StoreState, type StoreUpdate } from '../lease/registry.js';

const P = '/coreos.com/network';

/**
 * Just enough of etcd3's client for watchSubnets: a prefix listing at a
 * revision, and watch builders whose watchers etcd confirms or not, as the
 * test decides. (The real client is exercised in lease-etcd.test.ts.)
 */
class StandInClient {
  revision = 10;
  lists = 0;
  /** One entry per watcher created: true = etcd confirms it, false = its create request is never answered. */
  readonly confirms: boolean[] = [];
  readonly watchers: (EventEmitter & { startRevision: string; cancelled: boolean })[] = [];
  /**
   * A response the next confirmed watcher emits right behind its confirmation, in the same tick: what etcd3
   * does when a watch starts at a past revision and etcd sends the created response and the events since
   * in one read.
   */
  replay: unknown = null;

  getAll() {
    return {
      prefix: () => ({
        exec: async () => {
          this.lists++;
          return { kvs: [], header: { revision: String(this.revision) } };
        },
      }),
    };
  }

  watch() {
    let startRevision = '';
    const builder = {
      startRevision: (r: string) => ((startRevision = r), builder),
      prefix: () => builder,
      watcher: () => {
        const w = Object.assign(new EventEmitter(), { startRevision, cancelled: false, cancel: async () => void (w.cancelled = true) });
        const confirm = this.confirms[this.watchers.length] ?? true;
        this.watchers.push(w);
        const replay = this.replay;
        this.replay = null;
        if (confirm) {
          setImmediate(() => {
            w.emit('connected', {});
            if (replay) w.emit('data', replay);
          });
        }
        return w;
      },
    };
    return builder;
  }
}

async function next(it: AsyncIterator<StoreUpdate>): Promise<StoreUpdate> {
  const r = await it.next();
  if (r.done) throw new Error('watch ended');
  return r.value;
}

/** Runs `body` on a registry's watch over `client` with the given bounds; stops the watch afterwards. */
async function watching(
  client: StandInClient,
  timeouts: { confirmMs: number; reconnectMs: number },
  body: (it: AsyncIterator<StoreUpdate>, ac: AbortController) => Promise<void>,
): Promise<void> {
  const registry = new EtcdRegistry(client as unknown as Etcd3, P, undefined, timeouts);
  const ac = new AbortController();
  const it = registry.watchSubnets(ac.signal)[Symbol.asyncIterator]();
  try {
    await body(it, ac);
  } finally {
    ac.abort();
    await it.return?.(undefined);
  }
}

describe('etcd registry watch (unit, stand-in client)', () => {
  it('a watch etcd never confirms is given up after the deadline: the registry re-lists and watches again', async () => {
    const client = new StandInClient();
    client.confirms.push(false, true);
    await watching(client, { confirmMs: 50, reconnectMs: 60_000 }, async (it) => {
      expect(await next(it)).to.include({ type: 'snapshot', reason: 'initial', revision: '10' });
      client.revision = 12;
      const started = Date.now();
      const update = next(it); // creates the first watch, which stays unconfirmed
      const resync = await update;
      expect(Date.now() - started).to.be.at.least(45);
      expect(resync).to.include({ type: 'snapshot', reason: 'resync', revision: '12' });
      expect(client.lists).to.equal(2);
      expect(client.watchers[0]!.cancelled, 'the unconfirmed watch is cancelled').to.equal(true);
      // The next watch starts after the new listing and carries events.
      const events = next(it);
      await new Promise((r) => setTimeout(r, 10));
      expect(client.watchers).to.have.length(2);
      expect(client.watchers[1]!.startRevision).to.equal('13');
      client.watchers[1]!.emit('data', { header: { revision: '13' }, events: [{ type: 'Put', kv: { key: Buffer.from(`${P}/subnets/10.244.2.0-24`), value: Buffer.from('{}'), lease: '7', mod_revision: '13' } }] });
      expect(await events).to.deep.include({ type: 'events', revision: '13' });
    });
  });

  it('events etcd sends right behind the confirmation of the watch, in the same read, are not lost', async () => {
    const client = new StandInClient();
    await watching(client, { confirmMs: 1000, reconnectMs: 60_000 }, async (it) => {
      expect(await next(it)).to.include({ type: 'snapshot', revision: '10' });
      // A lease written after the listing: the watch starts at revision 11 and etcd replays it at once.
      client.replay = { header: { revision: '11' }, events: [{ type: 'Put', kv: { key: Buffer.from(`${P}/subnets/10.244.2.0-24`), value: Buffer.from('{}'), lease: '7', mod_revision: '11' } }] };
      const update = await Promise.race([next(it), new Promise<null>((r) => setTimeout(() => r(null), 500))]);
      expect(update, 'the replayed event').to.deep.include({ type: 'events', revision: '11' });
      expect(client.lists).to.equal(1);
    });
  });

  it('a confirmed watch is not re-listed however long it stays quiet', async () => {
    const client = new StandInClient();
    await watching(client, { confirmMs: 30, reconnectMs: 30 }, async (it, ac) => {
      await next(it);
      const pending = it.next();
      await new Promise((r) => setTimeout(r, 150));
      expect(client.lists).to.equal(1);
      expect(client.watchers).to.have.length(1);
      ac.abort();
      expect((await pending).done, 'the watch ends on abort, with nothing yielded').to.equal(true);
    });
  });

  it('a watch that stays disconnected past the bound is given up and the prefix re-listed; a prompt reconnect is not', async () => {
    const client = new StandInClient();
    await watching(client, { confirmMs: 1000, reconnectMs: 80 }, async (it) => {
      await next(it);
      const update = next(it);
      await new Promise((r) => setTimeout(r, 20));
      const watch = client.watchers[0]!;
      // etcd3 reconnects within the bound: nothing happens.
      watch.emit('disconnected', new Error('stream reset'));
      await new Promise((r) => setTimeout(r, 40));
      watch.emit('connected', {});
      await new Promise((r) => setTimeout(r, 100));
      expect(client.lists, 'no re-list after a prompt reconnect').to.equal(1);
      // It does not: the watch is abandoned and the prefix listed again.
      client.revision = 20;
      watch.emit('disconnected', new Error('stream reset'));
      expect(await update).to.include({ type: 'snapshot', reason: 'resync', revision: '20' });
      expect(client.lists).to.equal(2);
      expect(watch.cancelled).to.equal(true);
    });
  });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
