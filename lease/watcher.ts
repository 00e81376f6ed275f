import { silentLogger, type Logger } from '../common/log.js';
import { judgeLease, sameAttrs, type LeaseVerdict, type RawKeyValue, type ValidatedListing } from './lease-value.js';
import type { Registry, StoreUpdate } from './registry.js';
import type { Subnet } from '../common/subnet.js';
import type { Lease, NetworkConfig, PeerBatch, PeerEvent } from './types.js';
import { PeerAdmission, type Refusal } from './admission.js';
import { hasIPv4, slotOf } from './keyspace.js';

export interface LeaseWatcherOptions {
  readonly registry: Registry;
  readonly config: NetworkConfig;
  /** This node's subnet (excluded from peers); read at every change, so it may move at runtime. */
  readonly ownSubnet: () => Subnet | null;
  /** This node's public IP: another key advertising it is misconfiguration and is not a peer. */
  readonly ownPublicIP: string;
  /** This node's PublicIPv6, likewise (an IPv6 network). */
  readonly ownPublicIPv6?: string | null;
  /** This node's lease, which takes part in VtepMAC and PublicIP conflicts (see PeerAdmission). */
  readonly ownLease?: () => Lease | null;
  readonly log?: Logger;
}

/**
 * Turns the store watch into peer batches: a cache of valid peer leases
 * keyed by subnet (the IPv4 one; an IPv6-only lease's IPv6 one, see slotOf), diffed against every snapshot (so a peer that changed MAC
 * or public IP during a compaction gap is a `changed`, not nothing), with
 * deltas applied in between. Malformed values are skipped with one warning
 * per key and revision; a peer whose key turns malformed keeps its last valid
 * lease, so bad data never tears down working routes.
 *
 * Valid leases are candidates; PeerAdmission decides which of them are peers
 * (a sane PublicIP, no older lease with the same VtepMAC or PublicIP). A
 * change that flips another lease's verdict (the winner of a conflict left)
 * is an event for that lease too.
 */
export class LeaseWatcher {
  /** The admitted peers, the batches' `peers`. */
  private readonly peers = new Map<string, Lease>();
  private readonly admission: PeerAdmission;
  /** The candidates indexed by etcd key, so a delete event (which has no value) finds its slot in O(1). */
  private readonly byEtcdKey = new Map<string, Lease>();
  private readonly refused = new Map<string, Refusal>();
  private readonly warned = new Map<string, string>();
  private readonly log: Logger;
  /** How many times the watch had to re-list (compaction, cancel, watch end). */
  resyncs = 0;
  skipped = 0;

  constructor(private readonly options: LeaseWatcherOptions) {
    this.log = options.log ?? silentLogger();
    this.admission = new PeerAdmission({ config: options.config, ownPublicIP: options.ownPublicIP, ownPublicIPv6: options.ownPublicIPv6 ?? null, ownLease: options.ownLease ?? (() => null) });
  }

  /** The current peer set (live view; valid until the next batch). */
  get current(): ReadonlyMap<string, Lease> {
    return this.peers;
  }

  /** Valid leases that are not peers here, with why; in subnet order. */
  refusals(): Refusal[] {
    return [...this.refused.values()].sort((a, b) => (a.subnet < b.subnet ? -1 : a.subnet > b.subnet ? 1 : 0));
  }

  /** The older lease this node's own lease loses a conflict to, or null. */
  ownLoss(): Refusal | null {
    return this.admission.ownLoss();
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
    const affected = new Set<string>();
    for (const ev of update.events) {
      const subnetKey = this.keyOf(ev.kv);
      if (ev.type === 'delete') {
        this.warned.delete(ev.kv.key);
        if (subnetKey) {
          const known = this.admission.get(subnetKey) as Lease;
          this.byEtcdKey.delete(known.key);
          this.admission.delete(subnetKey, affected);
        }
        continue;
      }
      const lease = this.validate(ev.kv);
      if (lease) this.putCandidate(lease, affected);
    }
    const events: PeerEvent[] = [];
    this.settle(affected, events);
    return { events, peers: this.peers, resync: false };
  }

  private reset(kvs: readonly RawKeyValue[], verdicts?: readonly LeaseVerdict[]): PeerEvent[] {
    const kept = new Map<string, Lease>();
    // Index loop and forEach: at start-up this runs unoptimised over every lease, where iterator steps allocate.
    for (let i = 0; i < kvs.length; i++) {
      const kv = kvs[i] as RawKeyValue;
      const verdict = verdicts?.[i];
      const lease = this.validate(kv, verdict?.kv === kv ? verdict : undefined);
      if (lease) kept.set(slotOf(lease), lease);
      else {
        // A known candidate whose value turned malformed keeps its slot and its last valid lease.
        const slot = this.keyOf(kv);
        const known = slot === null ? undefined : this.admission.get(slot);
        if (slot !== null && known && !kept.has(slot)) kept.set(slot, known);
      }
    }
    // Every slot judged before is judged again, so that what is gone leaves the peers and the refusals.
    const affected = new Set<string>(this.peers.keys());
    this.refused.forEach((_, subnetKey) => affected.add(subnetKey));
    this.admission.clear();
    this.byEtcdKey.clear();
    kept.forEach((lease) => this.putCandidate(lease, affected));
    // Warnings are remembered only for keys that exist, so a cluster's churn of bad keys does not pile up.
    if (this.warned.size > 0) {
      const listed = new Set(kvs.map((kv) => kv.key));
      for (const key of this.warned.keys()) if (!listed.has(key)) this.warned.delete(key);
    }
    const events: PeerEvent[] = [];
    this.settle(affected, events);
    return events;
  }

  private putCandidate(lease: Lease, affected: Set<string>): void {
    const subnetKey = slotOf(lease);
    const previous = this.admission.get(subnetKey);
    if (previous && previous.key !== lease.key) this.byEtcdKey.delete(previous.key);
    this.byEtcdKey.set(lease.key, lease);
    this.admission.put(subnetKey, lease, affected);
  }

  /** Re-judges the `affected` candidates and turns every change of the peer set into an event. */
  private settle(affected: ReadonlySet<string>, events: PeerEvent[]): void {
    const removals: PeerEvent[] = [];
    affected.forEach((subnetKey) => {
      const candidate = this.admission.get(subnetKey);
      const verdict = candidate ? this.admission.judge(subnetKey) : null;
      if (verdict) this.refuse(subnetKey, verdict);
      else this.refused.delete(subnetKey);
      const next = candidate && !verdict ? candidate : null;
      const previous = this.peers.get(subnetKey);
      if (next) this.peers.set(subnetKey, next);
      else this.peers.delete(subnetKey);
      if (!previous && next) events.push({ type: 'added', lease: next });
      else if (previous && !next) removals.push({ type: 'removed', lease: previous });
      else if (previous && next && previous !== next && (!sameAttrs(previous.attrs, next.attrs) || !equalSubnets(previous.ipv6Subnet, next.ipv6Subnet))) {
        events.push({ type: 'changed', lease: next, previous });
      }
    });
    // Removals last, as a re-list reports them: what replaced a peer is in place first.
    for (const e of removals) events.push(e);
  }

  /** Records a refusal; warns once per lease revision and reason. */
  private refuse(subnetKey: string, verdict: Refusal): void {
    const before = this.refused.get(subnetKey);
    this.refused.set(subnetKey, verdict);
    if (before && before.reason === verdict.reason && before.detail === verdict.detail) return;
    this.log.warn(`refusing lease ${verdict.key}: ${verdict.detail}`, { key: verdict.key, reason: verdict.reason, ...(verdict.winner ? { winner: verdict.winner } : {}) });
  }

  /** Whether `listing` was judged by the rules this watcher applies (same keyspace, same config). */
  private judgedAlike(listing: ValidatedListing): boolean {
    return listing.prefix === this.options.registry.prefix && listing.config === this.options.config;
  }

  /** A valid lease of another subnet, or null (not a subnet key, own subnet, or malformed: warned once). `verdict`: `kv` judged already. */
  private validate(kv: RawKeyValue, verdict: LeaseVerdict = judgeLease(this.options.registry.prefix, kv, this.options.config)): Lease | null {
    if (verdict.error) {
      this.warnOnce(kv, verdict.error.message);
      return null;
    }
    const lease = verdict.lease;
    if (!lease) return null;
    const own = this.options.ownSubnet();
    if (own && hasIPv4(own)) return own.equals(lease.subnet) ? null : lease;
    // An IPv6-only node's own subnet is its lease's IPv6 one.
    const ownLease = this.options.ownLease?.();
    return ownLease && slotOf(ownLease) === slotOf(lease) ? null : lease;
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
    return lease ? slotOf(lease) : null;
  }
}

function equalSubnets(a: Subnet | null, b: Subnet | null): boolean {
  return a === b || (!!a && a.equals(b));
}
