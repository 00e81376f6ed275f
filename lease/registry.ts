import { EventEmitter, once } from 'node:events';
import { EtcdLeaseInvalidError, type Etcd3, type IKeyValue, type Watcher } from 'etcd3';
import { Backoff } from '../common/backoff.js';
import { ETCD_RELIST_BACKOFF_MAX_MS, ETCD_UNREACHABLE_LOG_INTERVAL_MS } from '../common/defaults.js';
import { WeftError, isWeftError, storeError } from '../common/errors.js';
import { silentLogger, type Logger } from '../common/log.js';
import { parseNetworkConfig } from './config.js';
import { watchProgress, type WatchProgress } from './etcd-client.js';
import { configKey, subnetsPrefix } from './keyspace.js';
import { DEFAULT_LIVENESS, WatchLiveness, type LivenessBounds } from './watch-liveness.js';
import type { RawKeyValue } from './lease-value.js';
import type { NetworkConfig } from './types.js';

/**
 * What a store watch delivers: a full listing, then deltas, and a new listing
 * whenever the watch had to restart. A snapshot's `kvs` are valid until the
 * consumer asks for the next update; the registry then empties the array.
 */
export type StoreUpdate =
  | { readonly type: 'snapshot'; readonly kvs: readonly RawKeyValue[]; readonly revision: string; readonly reason: 'initial' | 'resync' }
  | { readonly type: 'events'; readonly events: readonly StoreEvent[]; readonly revision: string };

export interface StoreEvent {
  readonly type: 'put' | 'delete';
  /** For a delete: the key and its mod revision, value empty. */
  readonly kv: RawKeyValue;
}

/** A prefix listing and the store revision it was read at. */
export interface Listing {
  readonly kvs: RawKeyValue[];
  readonly revision: string;
}

export interface WatchOptions {
  /** Watch this one key instead of the whole subnets prefix. */
  readonly exactKey?: string;
  /**
   * A listing of the same range the caller already read: it becomes the
   * initial snapshot and the watch starts at its revision + 1, so start-up
   * reads and decodes every lease once instead of twice. Anything written
   * since arrives as events (or, if compacted away, through a re-list). The
   * listing is handed over: its `kvs` are emptied once the snapshot is consumed.
   */
  readonly initial?: Listing;
}

/**
 * How long a watch may go unconfirmed: when created, and again after a
 * disconnect. etcd3's create() has no deadline, and its watch stream can
 * swallow a create request sent in the moment it is closing the stream: the
 * watch then comes up only after the client's reconnect backoff, or never.
 * weft gives up on such a watch, re-lists and watches again; the re-list's
 * diff makes up for anything the watch missed.
 */
export const WATCH_CONFIRM_TIMEOUT_MS = 5000;
/** After a disconnect etcd3 reconnects on its own (backoff up to 2 s); past this, weft re-lists instead. */
export const WATCH_RECONNECT_TIMEOUT_MS = 10_000;

/** Store connectivity, as seen by the last call that reached (or failed to reach) etcd, and by the watch's liveness. */
export type StoreState = 'connected' | 'unreachable';

/** The bounds a registry's watches keep (see WATCH_CONFIRM_TIMEOUT_MS, WATCH_RECONNECT_TIMEOUT_MS, WatchLiveness). */
export interface WatchBounds extends Partial<LivenessBounds> {
  readonly confirmMs: number;
  readonly reconnectMs: number;
}

/** A registry's events and their arguments. */
export type RegistryEvents = {
  /** Store connectivity changed. */
  state: [state: StoreState];
};

/**
 * weft's view of etcd: flannel's keyspace and the few operations the lease
 * layer needs. The only module that talks to the etcd3 client.
 */
export interface Registry extends EventEmitter<RegistryEvents> {
  readonly prefix: string;
  readonly state: StoreState;
  /** Since when (ms since the epoch) etcd has been out of reach; null while connected. */
  readonly unreachableSince: number | null;
  /** Reads and validates `<prefix>/config`. Throws WEFT_ERR_CONFIG_MISSING / _INVALID / STORE_UNAVAILABLE. */
  readNetworkConfig(): Promise<NetworkConfig>;
  /** The raw text of `<prefix>/config`, or null when absent (for tools that show it as written). */
  readNetworkConfigText(): Promise<string | null>;
  /** Validates `text` as a network config and writes it; an invalid config never reaches etcd. */
  writeNetworkConfig(text: string): Promise<NetworkConfig>;
  /** Seconds left on an etcd lease, or -1 when it no longer exists. */
  leaseTimeToLive(id: string): Promise<number>;
  /** Every key under `<prefix>/subnets/` with the store revision of the listing. */
  listSubnets(): Promise<Listing>;
  getSubnet(key: string): Promise<RawKeyValue | null>;
  /** Create-if-absent (create revision == 0) on an etcd lease ('0': none, a reservation). False when the key exists. */
  createSubnet(key: string, value: string, etcdLeaseId: string): Promise<boolean>;
  /** Compare-and-swap on mod revision. False when the key changed or vanished since `modRevision`. */
  replaceSubnet(key: string, value: string, etcdLeaseId: string, modRevision: string): Promise<boolean>;
  /** Deletes the key if still at `modRevision`. */
  deleteSubnet(key: string, modRevision: string): Promise<boolean>;
  grantLease(ttlSeconds: number): Promise<{ id: string; ttl: number }>;
  /** One keepalive; returns the TTL etcd granted, or <= 0 when the lease no longer exists. */
  keepAliveLease(id: string): Promise<number>;
  revokeLease(id: string): Promise<void>;
  /**
   * Lists then watches the subnets prefix (or one exact key) from the
   * listing's revision + 1. After a compaction or a cancelled watch it
   * re-lists and yields a new snapshot; disconnects resume from the last
   * seen revision. A watch that shows no sign of life (see WatchLiveness)
   * is stale: etcd is reported unreachable and the watch is replaced by a
   * re-list. Ends when `signal` aborts.
   */
  watchSubnets(signal: AbortSignal, options?: WatchOptions): AsyncIterable<StoreUpdate>;
  /**
   * Graceful: calls in flight finish, then the connection closes. Keys and
   * etcd leases stay in etcd; watches end with their signal. Calls made after
   * close() fail with WEFT_ERR_INVALID_STATE.
   */
  close(): Promise<void>;
  /** Closes the connection now: calls in flight fail. Keys and etcd leases stay in etcd. */
  destroy(): void;
}

export class EtcdRegistry extends EventEmitter<RegistryEvents> implements Registry {
  private currentState: StoreState = 'connected';
  private since: number | null = null;
  private stillUnreachable: NodeJS.Timeout | null = null;
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;
  private readonly liveness: LivenessBounds;
  private warnedNoProgress = false;

  constructor(
    private readonly client: Etcd3,
    readonly prefix: string,
    private readonly log: Logger = silentLogger(),
    private readonly watchTimeouts: WatchBounds = { confirmMs: WATCH_CONFIRM_TIMEOUT_MS, reconnectMs: WATCH_RECONNECT_TIMEOUT_MS },
  ) {
    super();
    this.liveness = {
      progressAfterMs: watchTimeouts.progressAfterMs ?? DEFAULT_LIVENESS.progressAfterMs,
      staleAfterMs: watchTimeouts.staleAfterMs ?? DEFAULT_LIVENESS.staleAfterMs,
    };
  }

  get state(): StoreState {
    return this.currentState;
  }

  get unreachableSince(): number | null {
    return this.since;
  }

  async readNetworkConfigText(): Promise<string | null> {
    return this.call('get config', () => this.client.get(configKey(this.prefix)).string());
  }

  async writeNetworkConfig(text: string): Promise<NetworkConfig> {
    const config = parseNetworkConfig(text);
    const compact = JSON.stringify(JSON.parse(text));
    await this.call('put config', () => this.client.put(configKey(this.prefix)).value(compact).exec());
    return config;
  }

  async leaseTimeToLive(id: string): Promise<number> {
    const res = await this.call('lease time-to-live', () => this.client.leaseClient.leaseTimeToLive({ ID: id }));
    return Number(res.TTL);
  }

  async readNetworkConfig(): Promise<NetworkConfig> {
    const key = configKey(this.prefix);
    const text = await this.readNetworkConfigText();
    if (text === null) {
      throw new WeftError(
        'WEFT_ERR_CONFIG_MISSING',
        `network config not found in etcd at ${key}; write it with the etcd v3 API (etcdctl put ${key} '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}')`,
      );
    }
    return parseNetworkConfig(text);
  }

  async listSubnets(): Promise<Listing> {
    return this.list(subnetsPrefix(this.prefix), true);
  }

  async getSubnet(key: string): Promise<RawKeyValue | null> {
    const { kvs } = await this.list(key, false);
    return kvs[0] ?? null;
  }

  async createSubnet(key: string, value: string, etcdLeaseId: string): Promise<boolean> {
    const put = this.client.put(key).value(value);
    if (etcdLeaseId !== '0') put.lease(etcdLeaseId);
    const res = await this.call('create subnet', () => this.client.if(key, 'Create', '==', 0).then(put).commit());
    return res.succeeded;
  }

  async replaceSubnet(key: string, value: string, etcdLeaseId: string, modRevision: string): Promise<boolean> {
    const put = this.client.put(key).value(value);
    if (etcdLeaseId !== '0') put.lease(etcdLeaseId);
    const res = await this.call('update subnet', () => this.client.if(key, 'Mod', '==', modRevision).then(put).commit());
    return res.succeeded;
  }

  async deleteSubnet(key: string, modRevision: string): Promise<boolean> {
    const res = await this.call('delete subnet', () =>
      this.client.if(key, 'Mod', '==', modRevision).then(this.client.delete().key(key)).commit(),
    );
    return res.succeeded;
  }

  async grantLease(ttlSeconds: number): Promise<{ id: string; ttl: number }> {
    const res = await this.call('grant lease', () => this.client.leaseClient.leaseGrant({ TTL: ttlSeconds }));
    return { id: res.ID, ttl: Number(res.TTL) };
  }

  async keepAliveLease(id: string): Promise<number> {
    return this.call('keepalive', async () => {
      const stream = await this.client.leaseClient.leaseKeepAlive();
      try {
        const res = await new Promise<{ TTL: string }>((resolve, reject) => {
          const timer = setTimeout(() => reject(new WeftError('WEFT_ERR_STORE_UNAVAILABLE', 'etcd keepalive timed out')), 5000);
          stream.on('data', (r: { TTL: string }) => (clearTimeout(timer), resolve(r)));
          stream.on('error', (e: Error) => (clearTimeout(timer), reject(e)));
          stream.write({ ID: id });
        });
        return Number(res.TTL);
      } finally {
        stream.on('error', () => undefined); // late errors of an ended stream are expected
        stream.end();
      }
    });
  }

  async revokeLease(id: string): Promise<void> {
    try {
      await this.call('revoke lease', () => this.client.leaseClient.leaseRevoke({ ID: id }));
    } catch (err) {
      if (!isWeftError(err, 'WEFT_ERR_ETCD_LEASE_NOT_FOUND')) throw err; // already gone is what we wanted
    }
  }

  async *watchSubnets(signal: AbortSignal, { exactKey, initial }: WatchOptions = {}): AsyncGenerator<StoreUpdate> {
    const range = exactKey ?? subnetsPrefix(this.prefix);
    const backoff = new Backoff({ initialMs: 100, maxMs: ETCD_RELIST_BACKOFF_MAX_MS });
    let reason: 'initial' | 'resync' = 'initial';
    let given = initial;
    let failedLists = 0;
    while (!signal.aborted) {
      let listing: Listing;
      try {
        listing = given ?? (await this.list(range, exactKey === undefined));
        given = undefined;
        failedLists = 0;
      } catch (err) {
        // The first failure in a row is worth a warning; the outage itself is logged by setState, with its length.
        this.log.log(failedLists++ === 0 ? 'warn' : 'debug', 'etcd list failed; retrying', { key: range, error: (err as Error).message });
        if (!(await sleepOrAbort(backoff, signal))) return;
        continue;
      }
      yield { type: 'snapshot', kvs: listing.kvs, revision: listing.revision, reason };
      // The consumer has taken the snapshot. Its entries go now (a large cluster's listing is big): this
      // generator, and the callers' frames the initial listing came through, live as long as the watch.
      listing.kvs.length = 0;
      reason = 'resync';

      let watcher: Watcher | undefined;
      try {
        const builder = this.client.watch().startRevision(String(BigInt(listing.revision) + 1n));
        watcher = (exactKey === undefined ? builder.prefix(range) : builder.key(range)).watcher();
        // Taking responses starts before the confirmation is awaited: etcd sends the events since the start
        // revision right behind it, often in the same read, and etcd3 emits them in the same tick; an event
        // emitted before a listener is attached is lost.
        const progress = watchProgress(watcher);
        if (!progress && !this.warnedNoProgress) {
          this.warnedNoProgress = true;
          this.log.warn('etcd watch runs without a liveness check (the etcd3 client offers no progress requests); a silent partition is found by gRPC keepalive only');
        }
        const liveness = { bounds: this.liveness, progress, onStale: (why: string) => this.setState('unreachable', why) };
        const drained = drainWatch(watcher, this.watchTimeouts.reconnectMs, signal, liveness);
        await confirmed(watcher, this.watchTimeouts.confirmMs, signal);
        // An idle daemon makes no calls for hours: the watch stream is what notices etcd going away.
        watcher.on('disconnected', (err?: Error) => this.setState('unreachable', `watch stream lost${err?.message ? ` (${err.message})` : ''}`));
        watcher.on('connected', () => this.setState('connected'));
        this.setState('connected'); // etcd confirmed the watch
        backoff.reset();
        for await (const responses of drained) {
          const events = responses.flatMap((res) => res.events.map(toStoreEvent));
          if (events.length > 0) yield { type: 'events', events, revision: responses[responses.length - 1]!.header.revision };
        }
        if (signal.aborted) return;
        this.log.warn('etcd watch ended; re-listing', { key: range });
      } catch (err) {
        if (signal.aborted) return;
        this.log.warn('etcd watch failed (compacted, cancelled, stale, or not confirmed in time); re-listing', { key: range, error: (err as Error).message });
        if (!(await sleepOrAbort(backoff, signal))) return;
      } finally {
        watcher?.removeAllListeners().on('error', () => undefined);
        void watcher?.cancel().catch(() => undefined);
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    this.stopReminder();
    this.client.close();
  }

  destroy(): void {
    this.closed = true;
    this.stopReminder();
    this.client.close();
  }

  private async list(range: string, prefix: boolean): Promise<Listing> {
    const res = await this.call('list', () => (prefix ? this.client.getAll().prefix(range) : this.client.get(range)).exec());
    return { kvs: res.kvs.map(toRawKeyValue), revision: res.header.revision };
  }

  /** Runs one etcd call, maps failures to WeftError and drives the connectivity state. */
  private async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed) throw new WeftError('WEFT_ERR_INVALID_STATE', `etcd ${operation}: the registry is closed`);
    const attempt = this.attempt(operation, fn);
    this.inFlight.add(attempt);
    try {
      return await attempt;
    } finally {
      this.inFlight.delete(attempt);
    }
  }

  private async attempt<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    try {
      const result = await fn();
      this.setState('connected');
      return result;
    } catch (err) {
      // etcd3 types the errors of its unary calls; an error on the keepalive stream comes from grpc as it is, and
      // etcd's text is all it carries. This is the one place a message is read: it becomes a code here.
      if (err instanceof EtcdLeaseInvalidError || /requested lease not found/.test((err as Error).message)) {
        this.setState('connected'); // etcd answered
        throw new WeftError('WEFT_ERR_ETCD_LEASE_NOT_FOUND', `etcd ${operation}: lease not found`, { cause: err });
      }
      const failure = storeError(operation, err);
      this.setState('unreachable', failure.message);
      throw failure;
    }
  }

  /** The one place connectivity changes: logged with the reason, and with how long it lasted once over. */
  private setState(next: StoreState, reason = ''): void {
    if (next === this.currentState) return;
    this.currentState = next;
    if (next === 'unreachable') {
      this.since = Date.now();
      this.log.warn(`etcd unreachable${reason ? `: ${reason}` : ''}; the kernel keeps every peer entry, retrying`);
      if (!this.closed) {
        this.stillUnreachable = setInterval(() => {
          this.log.warn(`etcd still unreachable after ${Math.round((Date.now() - this.since!) / 1000)} s`);
        }, ETCD_UNREACHABLE_LOG_INTERVAL_MS);
        this.stillUnreachable.unref();
      }
    } else {
      const lasted = this.since === null ? null : (Date.now() - this.since) / 1000;
      this.since = null;
      this.stopReminder();
      this.log.info(lasted === null ? 'etcd connected' : `etcd connected again after ${lasted.toFixed(1)} s unreachable`);
    }
    this.emit('state', next);
  }

  private stopReminder(): void {
    if (this.stillUnreachable) clearInterval(this.stillUnreachable);
    this.stillUnreachable = null;
  }
}

interface WatchData {
  header: { revision: string };
  events: { type: 'Put' | 'Delete'; kv: IKeyValue }[];
}

/**
 * The watcher's responses, delivered as arrays of everything that arrived
 * while the consumer was busy: a burst of lease writes then becomes one
 * batch (one kernel pass) instead of one pass per response. Ends on the
 * watcher's 'end' or the signal; throws its 'error' (compaction, cancel), or
 * when a disconnect is not followed by a reconnect within `reconnectTimeoutMs`.
 * The listeners go on at the call, not at the first next() as a generator's
 * body would, so nothing the watcher emits from then on is missed.
 */
function drainWatch(watcher: Watcher, reconnectTimeoutMs: number, signal: AbortSignal, liveness: WatchLivenessCheck): AsyncGenerator<WatchData[]> {
  const pending: WatchData[] = [];
  let failure: Error | null = null;
  let ended = false;
  let wake: (() => void) | null = null;
  let reconnectDeadline: NodeJS.Timeout | null = null;
  const poke = () => {
    wake?.();
    wake = null;
  };
  const reconnected = () => {
    if (reconnectDeadline) clearTimeout(reconnectDeadline);
    reconnectDeadline = null;
  };
  const alive = followLiveness(liveness, (err) => {
    failure ??= err;
    poke();
  });
  watcher.on('data', (res: WatchData) => (alive.heard(), pending.push(res), poke()));
  (watcher as EventEmitter).on('progress', () => alive.heard()); // see watchProgress
  watcher.on('error', (err: Error) => ((failure = err), poke()));
  watcher.on('end', () => ((ended = true), poke()));
  watcher.on('connected', () => (reconnected(), alive.resume()));
  watcher.on('disconnected', () => {
    alive.pause(); // while etcd3 reconnects, the reconnect deadline is the bound
    reconnectDeadline ??= setTimeout(() => {
      failure = new WeftError('WEFT_ERR_STORE_UNAVAILABLE', `etcd watch not re-established within ${reconnectTimeoutMs} ms of a disconnect`);
      poke();
    }, reconnectTimeoutMs);
  });
  return (async function* (): AsyncGenerator<WatchData[]> {
    signal.addEventListener('abort', poke, { once: true });
    try {
      for (;;) {
        if (pending.length > 0) {
          yield pending.splice(0);
          continue;
        }
        if (failure) throw failure;
        if (ended || signal.aborted) return;
        await new Promise<void>((resolve) => (wake = resolve));
      }
    } finally {
      reconnected();
      alive.pause();
      signal.removeEventListener('abort', poke);
    }
  })();
}

/** What a watch needs to prove it is alive: the bounds, a way to ask etcd for progress (null: no check), and whom to tell when it is stale. */
interface WatchLivenessCheck {
  readonly bounds: LivenessBounds;
  readonly progress: WatchProgress | null;
  readonly onStale: (reason: string) => void;
}

/**
 * Runs a WatchLiveness on a timer while the watch is up (from its
 * confirmation, between disconnects): asks etcd for progress when the watch
 * has been silent, and fails it through `fail` when it stays silent.
 */
function followLiveness(check: WatchLivenessCheck, fail: (err: WeftError) => void): { heard(): void; pause(): void; resume(): void } {
  let live: WatchLiveness | null = null;
  let timer: NodeJS.Timeout | null = null;
  const pause = () => {
    if (timer) clearTimeout(timer);
    timer = null;
    live = null;
  };
  const schedule = () => {
    if (!live) return;
    timer = setTimeout(() => tick(), live.nextCheckInMs(Date.now()) + 1);
    timer.unref();
  };
  const tick = (confirming = false) => {
    if (confirming && timer) return; // resumed meanwhile, on a timer of its own
    timer = null;
    if (!live) return;
    const now = Date.now();
    const verdict = live.check(now);
    if (verdict === 'stale' && !confirming) {
      // Timers run before the loop polls for I/O: after the event loop was busy, an answer may be waiting
      // unread. setImmediate comes after that poll.
      setImmediate(() => tick(true));
      return;
    }
    if (verdict === 'stale') {
      const reason = `the watch showed no sign of life for ${live.silentMs(now)} ms (a progress request went unanswered)`;
      pause();
      check.onStale(reason);
      fail(new WeftError('WEFT_ERR_STORE_UNAVAILABLE', `etcd watch stale: ${reason}`));
      return;
    }
    if (verdict === 'ask') check.progress!.request();
    schedule();
  };
  return {
    heard: () => live?.heard(Date.now()),
    pause,
    resume: () => {
      if (!check.progress) return;
      if (timer) clearTimeout(timer);
      live = new WatchLiveness(check.bounds, Date.now());
      schedule();
    },
  };
}

/** Resolves once etcd confirms `watcher`; rejects on its error, after `timeoutMs`, or on abort. */
async function confirmed(watcher: Watcher, timeoutMs: number, signal: AbortSignal): Promise<void> {
  const deadline = AbortSignal.timeout(timeoutMs);
  try {
    await once(watcher, 'connected', { signal: AbortSignal.any([signal, deadline]) });
  } catch (err) {
    if (deadline.aborted && !signal.aborted) throw new WeftError('WEFT_ERR_STORE_UNAVAILABLE', `etcd did not confirm the watch within ${timeoutMs} ms`);
    throw err;
  }
}

function toRawKeyValue(kv: IKeyValue): RawKeyValue {
  return { key: kv.key.toString(), value: kv.value.toString(), lease: kv.lease, modRevision: kv.mod_revision, createRevision: kv.create_revision };
}

function toStoreEvent(ev: { type: 'Put' | 'Delete'; kv: IKeyValue }): StoreEvent {
  return { type: ev.type === 'Put' ? 'put' : 'delete', kv: toRawKeyValue(ev.kv) };
}

async function sleepOrAbort(backoff: Backoff, signal: AbortSignal): Promise<boolean> {
  try {
    await backoff.wait(signal);
    return true;
  } catch {
    return false;
  }
}
