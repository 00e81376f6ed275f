import { silentLogger, type Logger } from '../common/log.js';
import { judgeLease, sameAttrs, type LeaseVerdict, type RawKeyValue, type ValidatedListing } from './lease-value.js';
import type { Registry, StoreUpdate } from './registry.js';
import type { Subnet } from '../common/subnet.js';
import type { Lease, NetworkConfig, PeerBatch, PeerEvent } from './types.js';

export interface LeaseWatcherOptions {
  readonly registry: Registry;
  readonly config: NetworkConfig;
  /** This node's subnet (excluded from peers); read at every change, so it may move at runtime. */
  readonly ownSubnet: () => Subnet | null;
  /** This node's public IP: another key advertising it is misconfiguration and is not a peer. */
  readonly ownPublicIP: string;
  readonly log?: Logger;
}

/**
 * Turns the store watch into peer batches: a cache of valid peer leases
 * keyed by subnet, diffed against every snapshot (so a peer that changed MAC
 * or public IP during a compaction gap is a `changed`, not nothing), with
 * deltas applied in between. Malformed values are skipped with one warning
 * per key and revision; a peer whose key turns malformed keeps its last valid
 * lease, so bad data never tears down working routes.
 */
export class LeaseWatcher {
  private readonly peers = new Map<string, Lease>();
  /** The same leases indexed by etcd key, so a delete event (which has no value) finds its peer in O(1). */
  private readonly byEtcdKey = new Map<string, Lease>();
  private readonly warned = new Map<string, string>();
  private readonly log: Logger;
  /** How many times the watch had to re-list (compaction, cancel, watch end). */
  resyncs = 0;
  skipped = 0;

  constructor(private readonly options: LeaseWatcherOptions) {
    this.log = options.log ?? silentLogger();
  }

  /** The current peer set (live view; valid until the next batch). */
  get current(): ReadonlyMap<string, Lease> {
    return this.peers;
  }

  /**
   * Peer batches until `signal` aborts. `initial`, a listing already read and
   * judged (LeaseManager.acquireWithListing), becomes the first snapshot: its
   * keys are neither read nor validated again (see Registry.watchSubnets).
   */
  async *batches(signal: AbortSignal, initial?: ValidatedListing): AsyncGenerator<PeerBatch> {
    let verdicts = initial && this.judgedAlike(initial) ? initial.verdicts : undefined;
    for await (const update of this.options.registry.watchSubnets(signal, initial ? { initial } : {})) {
      // The first update is `initial` itself (the registry yields a given listing first).
      const batch = this.apply(update, verdicts);
      if (verdicts) verdicts.length = 0; // handed over: the watch outlives them (see ValidatedListing)
      verdicts = undefined;
      if (batch.resync || batch.events.length > 0) yield batch;
    }
  }

  /**
   * Applies one store update to the cache; exposed for unit tests.
   * `verdicts`, the snapshot's keys already judged (in order), spare judging them again.
   */
  apply(update: StoreUpdate, verdicts?: readonly LeaseVerdict[]): PeerBatch {
    if (update.type === 'snapshot') {
      if (update.reason === 'resync') this.resyncs++;
      return { events: this.reset(update.kvs, verdicts), peers: this.peers, resync: true };
    }
    const events: PeerEvent[] = [];
    for (const ev of update.events) {
      const subnetKey = this.keyOf(ev.kv);
      if (ev.type === 'delete') {
        this.warned.delete(ev.kv.key);
        const known = subnetKey && this.peers.get(subnetKey);
        if (known) events.push({ type: 'removed', lease: this.remove(known) });
        continue;
      }
      const lease = this.validate(ev.kv);
      if (lease) this.upsert(lease, events);
    }
    return { events, peers: this.peers, resync: false };
  }

  private reset(kvs: readonly RawKeyValue[], verdicts?: readonly LeaseVerdict[]): PeerEvent[] {
    const events: PeerEvent[] = [];
    const seen = new Set<string>();
    // Index loop and forEach: at start-up this runs unoptimised over every lease, where iterator steps allocate.
    for (let i = 0; i < kvs.length; i++) {
      const kv = kvs[i] as RawKeyValue;
      const verdict = verdicts?.[i];
      const lease = this.validate(kv, verdict?.kv === kv ? verdict : undefined);
      const subnetKey = lease ? lease.subnet.toString() : this.keyOf(kv);
      if (subnetKey) seen.add(subnetKey); // a known peer whose value turned malformed keeps its slot
      if (lease) this.upsert(lease, events);
    }
    this.peers.forEach((lease, subnetKey) => {
      if (!seen.has(subnetKey)) events.push({ type: 'removed', lease: this.remove(lease) });
    });
    // Warnings are remembered only for keys that exist, so a cluster's churn of bad keys does not pile up.
    if (this.warned.size > 0) {
      const listed = new Set(kvs.map((kv) => kv.key));
      for (const key of this.warned.keys()) if (!listed.has(key)) this.warned.delete(key);
    }
    return events;
  }

  private upsert(lease: Lease, events: PeerEvent[]): void {
    const subnetKey = lease.subnet.toString();
    const previous = this.peers.get(subnetKey);
    if (previous && previous.key !== lease.key) this.byEtcdKey.delete(previous.key);
    this.peers.set(subnetKey, lease);
    this.byEtcdKey.set(lease.key, lease);
    if (!previous) events.push({ type: 'added', lease });
    else if (!sameAttrs(previous.attrs, lease.attrs) || !equalSubnets(previous.ipv6Subnet, lease.ipv6Subnet)) {
      events.push({ type: 'changed', lease, previous });
    }
  }

  private remove(lease: Lease): Lease {
    this.peers.delete(lease.subnet.toString());
    this.byEtcdKey.delete(lease.key);
    return lease;
  }

  /** Whether `listing` was judged by the rules this watcher applies (same keyspace, same config). */
  private judgedAlike(listing: ValidatedListing): boolean {
    return listing.prefix === this.options.registry.prefix && listing.config === this.options.config;
  }

  /** A valid peer lease, or null (not a subnet key, own subnet, or malformed: warned once). `verdict`: `kv` judged already. */
  private validate(kv: RawKeyValue, verdict: LeaseVerdict = judgeLease(this.options.registry.prefix, kv, this.options.config)): Lease | null {
    if (verdict.error) {
      this.warnOnce(kv, verdict.error.message);
      return null;
    }
    const lease = verdict.lease;
    if (!lease) return null;
    const own = this.options.ownSubnet();
    if (own && own.equals(lease.subnet)) return null;
    if (lease.attrs.PublicIP === this.options.ownPublicIP) {
      this.warnOnce(kv, `lease ${kv.key} advertises this node's public IP ${lease.attrs.PublicIP}; not a peer (duplicate public IP?)`);
      return null;
    }
    return lease;
  }

  private warnOnce(kv: RawKeyValue, message: string): void {
    if (this.warned.get(kv.key) === kv.modRevision) return;
    this.warned.set(kv.key, kv.modRevision);
    this.skipped++;
    this.log.warn(`skipping lease: ${message}`, { key: kv.key });
  }

  /** The cache slot (subnet) of an etcd key we hold, or null. */
  private keyOf(kv: RawKeyValue): string | null {
    const lease = this.byEtcdKey.get(kv.key);
    return lease ? lease.subnet.toString() : null;
  }
}

function equalSubnets(a: Subnet | null, b: Subnet | null): boolean {
  return a === b || (!!a && a.equals(b));
}
