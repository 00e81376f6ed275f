import { EventEmitter } from 'node:events';
import { Backoff, delay } from '../common/backoff.js';
import { Wakeup } from '../common/periodic.js';
import { WeftError, isWeftError } from '../common/errors.js';
import { silentLogger, type Logger } from '../common/log.js';
import { chooseSubnet, type AllocationInput } from './allocate.js';
import { describeSubnets, hasIPv4, parseSubnetKey, subnetKey } from './keyspace.js';
import { UNSET_PUBLIC_IP, judgeLease, serializeLeaseAttrs, validateLease, type LeaseVerdict, type RawKeyValue, type ValidatedListing } from './lease-value.js';
import type { Listing, Registry, StoreState, StoreUpdate } from './registry.js';
import { WEFTD_DEFAULTS } from '../common/defaults.js';
import type { Subnet } from '../common/subnet.js';
import { isReservation, type Lease, type LeaseAttrs, type NetworkConfig } from './types.js';

const DEFAULT_LEASE_TTL_SECONDS = WEFTD_DEFAULTS['subnet-lease-ttl'];
const DEFAULT_RENEW_MARGIN_SECONDS = WEFTD_DEFAULTS['subnet-lease-renew-margin'] * 60;

export interface LeaseManagerOptions {
  readonly registry: Registry;
  readonly config: NetworkConfig;
  /** What this node publishes (PublicIP, BackendType, BackendData with the VTEP MAC). */
  readonly attrs: LeaseAttrs;
  /** The subnet from the previous subnet file, tried before a random one. */
  readonly previousSubnet?: Subnet | null;
  /** The IPv6 subnet from the previous subnet file (FLANNEL_IPV6_SUBNET), likewise. */
  readonly previousIPv6Subnet?: Subnet | null;
  readonly ttlSeconds?: number;
  /** Renew at the latest this long before expiry (flannel's --subnet-lease-renew-margin). */
  readonly renewMarginSeconds?: number;
  readonly log?: Logger;
  readonly randomInt?: (n: number) => number;
  /** What of this node's own networks a subnet collides with (see AllocationInput.collides); read before each choice. */
  readonly nodeCollisions?: () => Promise<(s: Subnet) => string | null>;
}

/** `held`: key present and kept alive; `renewing`: a keepalive is failing, retrying; `lost`: key gone, recovering. */
export type LeaseState = 'acquiring' | 'held' | 'renewing' | 'lost';

/** A LeaseManager's events and their arguments. */
export type LeaseManagerEvents = {
  state: [state: LeaseState];
  /** Recovery moved this node to another subnet. */
  change: [lease: Lease, previous: Lease];
  /** The lease was found lost; recovery is under way. */
  lost: [reason: string];
  /** A keepalive went through; etcd granted `ttl` seconds. */
  renewed: [ttl: number];
};

/**
 * Obtains this node's subnet lease and keeps it: one etcd lease per process
 * kept alive (never a new etcd lease per renewal), a watch on the exact own
 * key, and recovery when the key is deleted, revoked or expires: the same
 * subnet is re-created at once if free; only if another node took it is a new
 * subnet acquired, and reported through the `'change'` event (see LeaseManagerEvents).
 */
export class LeaseManager extends EventEmitter<LeaseManagerEvents> {
  private readonly registry: Registry;
  private readonly log: Logger;
  private readonly ttl: number;
  private readonly renewMargin: number;
  private etcdLeaseId: string | null = null;
  private held: Lease | null = null;
  private currentState: LeaseState = 'acquiring';
  private recovery: Promise<void> = Promise.resolve();
  private expiresAt: number | null = null;
  /** Ends the wait for the next keepalive early: etcd is back after an outage. */
  private readonly renewNow = new Wakeup();
  /** Times the lease was found lost while running. */
  losses = 0;

  constructor(private readonly options: LeaseManagerOptions) {
    super();
    this.registry = options.registry;
    this.log = options.log ?? silentLogger();
    this.ttl = options.ttlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    this.renewMargin = options.renewMarginSeconds ?? Math.min(DEFAULT_RENEW_MARGIN_SECONDS, Math.floor(this.ttl / 3));
    if (!(this.renewMargin > 0 && this.renewMargin < this.ttl)) {
      throw new WeftError('WEFT_ERR_OPTION_INVALID', `subnet-lease-renew-margin (${this.renewMargin}s) must be between 0 and the lease TTL (${this.ttl}s)`);
    }
  }

  get lease(): Lease | null {
    return this.held;
  }

  get state(): LeaseState {
    return this.currentState;
  }

  /** Seconds until the etcd lease expires if never renewed again; null for a reservation or before acquisition. */
  get ttlRemaining(): number | null {
    if (!this.held || isReservation(this.held) || this.expiresAt === null) return null;
    return Math.max(0, (this.expiresAt - Date.now()) / 1000);
  }

  /**
   * Acquires a subnet: own lease (same PublicIP) reused, else the previous
   * subnet if free, else a random free one; create-if-absent, re-listing and
   * retrying on a lost race. Retries (with backoff) while etcd is unreachable
   * or the range is exhausted, logging why, until it succeeds or `signal` aborts.
   */
  async acquire(signal: AbortSignal, exclude?: readonly Subnet[]): Promise<Lease> {
    return (await this.acquireWithListing(signal, { exclude })).lease;
  }

  /**
   * acquire(), also returning the listing of every subnet key the choice was
   * made from, with each key's verdict: the peer watch can start from it
   * instead of reading, decoding and validating all leases a second time.
   * `prefetched`, a listing already asked for, is used for the first try;
   * with its keys' verdicts (judged by the caller, under this manager's
   * prefix and config), they are not judged again.
   */
  async acquireWithListing(
    signal: AbortSignal,
    { exclude, prefetched }: { exclude?: readonly Subnet[]; prefetched?: Promise<Listing & { readonly verdicts?: LeaseVerdict[] }> } = {},
  ): Promise<{ lease: Lease; listing: ValidatedListing }> {
    const backoff = new Backoff({ initialMs: 200, maxMs: 10_000 });
    // A listing read ahead (while the caller set up its device) serves the first try. An old
    // listing is safe: creating and replacing are conditional, and a lost race re-lists.
    let first = prefetched;
    for (;;) {
      if (signal.aborted) throw new WeftError('WEFT_ERR_ABORTED', 'lease acquisition aborted');
      try {
        const listing: Listing & { readonly verdicts?: LeaseVerdict[] } = await (first ?? this.registry.listSubnets());
        first = undefined;
        const { prefix } = this.registry;
        const { config } = this.options;
        const verdicts = listing.verdicts ?? listing.kvs.map((kv) => judgeLease(prefix, kv, config));
        const lease = await this.tryAcquire(verdicts, exclude);
        if (lease) {
          this.hold(lease);
          return { lease, listing: { kvs: listing.kvs, revision: listing.revision, prefix, config, verdicts } };
        }
        this.log.info('lost a race for a subnet; re-listing');
        await delay(Math.floor(Math.random() * 50), signal);
      } catch (err) {
        first = undefined;
        if (signal.aborted) throw new WeftError('WEFT_ERR_ABORTED', 'lease acquisition aborted');
        if (!isWeftError(err) || !err.retryable) throw err;
        this.log.error(`cannot acquire a subnet lease: ${err.message}; retrying`, { code: err.code });
        await backoff.wait(signal).catch(() => undefined);
      }
    }
  }

  /**
   * Keeps the lease until `signal` aborts: keepalives on schedule, the own-key
   * watch, and recovery. Resolves when aborted; the lease is left in etcd
   * (a restart reuses it). Call release() to give it up.
   */
  async run(signal: AbortSignal): Promise<void> {
    if (!this.held) throw new WeftError('WEFT_ERR_INVALID_STATE', 'run() needs a lease: call acquire() first');
    const onStore = (state: StoreState) => this.storeChanged(state);
    this.registry.on('state', onStore);
    try {
      await Promise.all([this.keepAliveLoop(signal), this.watchOwnKey(signal)]);
    } finally {
      this.registry.off('state', onStore);
    }
  }

  /**
   * etcd out of reach: the lease stays valid until its TTL runs out, which
   * the log says. etcd back: renew at once instead of at the next scheduled
   * keepalive, so a lease that expired during a long outage is found (and
   * recovered) now.
   */
  private storeChanged(state: StoreState): void {
    if (state === 'connected') {
      this.renewNow.poke();
      return;
    }
    const left = this.ttlRemaining;
    if (this.held && left !== null) this.log.warn(`lease ${describeSubnets(this.held)} stays valid for ${Math.floor(left)} s without etcd`);
  }

  /** Gives the subnet up: revokes the etcd lease (etcd deletes the key). Reservations stay. */
  async release(): Promise<void> {
    if (this.etcdLeaseId) await this.registry.revokeLease(this.etcdLeaseId);
    this.etcdLeaseId = null;
  }

  private async tryAcquire(verdicts: readonly LeaseVerdict[], exclude?: readonly Subnet[]): Promise<Lease | null> {
    const { config, attrs } = this.options;
    const leases = verdicts.flatMap((verdict) => this.occupying(verdict));
    const excluded = (s: Subnet | null | undefined) => (s && exclude?.some((x) => x.equals(s)) ? null : s ?? null);
    const input: AllocationInput = {
      config,
      leases,
      publicIP: attrs.PublicIP,
      publicIPv6: attrs.PublicIPv6,
      previousSubnet: excluded(this.options.previousSubnet),
      previousIPv6Subnet: excluded(this.options.previousIPv6Subnet),
      ...(this.options.randomInt ? { randomInt: this.options.randomInt } : {}),
    };
    let { choice, incompatible } = chooseSubnet(input);
    // Only a new subnet is checked against the node's own networks, which takes a read of its routes.
    if (choice.kind === 'new' && this.options.nodeCollisions) {
      ({ choice, incompatible } = chooseSubnet({ ...input, collides: await this.options.nodeCollisions() }));
    }
    for (const stale of incompatible) {
      this.log.warn(`deleting this node's lease ${describeSubnets(stale)}: it does not fit the network config`);
      await this.registry.deleteSubnet(stale.key, stale.modRevision);
    }
    const value = serializeLeaseAttrs(attrs);
    if (choice.kind === 'reuse') {
      const found = choice.lease;
      if (isReservation(found)) {
        this.log.info(`using reservation ${describeSubnets(found)} for ${publicName(attrs)}`);
        if (found.attrs && serializeLeaseAttrs(found.attrs) === value) return found;
        return (await this.registry.replaceSubnet(found.key, value, '0', found.modRevision)) ? this.reread(found.key) : null;
      }
      const id = await this.ensureEtcdLease();
      this.log.info(`found lease ${describeSubnets(found)} for ${publicName(attrs)}, reusing`);
      if (!(await this.registry.replaceSubnet(found.key, value, id, found.modRevision))) return null;
      if (found.etcdLeaseId !== id) await this.registry.revokeLease(found.etcdLeaseId).catch(() => undefined);
      return this.reread(found.key);
    }
    const id = await this.ensureEtcdLease();
    const key = subnetKey(this.registry.prefix, choice.subnet, choice.ipv6Subnet ?? null);
    if (!(await this.registry.createSubnet(key, value, id))) return null;
    const created = await this.reread(key);
    if (created && config.enableIPv6 && (await this.takenByOlder(created))) {
      // A dual-stack key names both subnets, so its create does not stop another node that chose one of them at the same moment.
      this.log.info(`subnet ${describeSubnets(created)} was chosen by an older lease at the same moment; choosing again`);
      await this.registry.deleteSubnet(created.key, created.modRevision);
      return null;
    }
    this.log.info(`${choice.kind === 'previous' ? 'reusing previous subnet' : 'allocated subnet'} ${describeSubnets(choice)}`);
    return created;
  }

  /** Whether another lease, created before `lease`, holds its IPv4 or its IPv6 subnet. */
  private async takenByOlder(lease: Lease): Promise<boolean> {
    const { kvs } = await this.registry.listSubnets();
    const mine = BigInt(lease.createRevision);
    return kvs.some((kv) => {
      const other = judgeLease(this.registry.prefix, kv, this.options.config).lease;
      if (!other || other.key === lease.key || BigInt(other.createRevision) >= mine) return false;
      const v4 = hasIPv4(lease.subnet) && hasIPv4(other.subnet) && other.subnet.overlaps(lease.subnet);
      const v6 = lease.ipv6Subnet !== null && other.ipv6Subnet !== null && other.ipv6Subnet.overlaps(lease.ipv6Subnet);
      return v4 || v6;
    });
  }

  /** What a key holds for allocation: its lease, a placeholder for a malformed key (warned), or nothing. */
  private occupying(verdict: LeaseVerdict): Lease[] {
    if (!verdict.error) return verdict.lease ? [verdict.lease] : [];
    this.log.warn(`ignoring ${verdict.error.message}`);
    // A malformed key still occupies its subnet: never hand that subnet out.
    const occupied = this.occupiedSubnet(verdict.kv);
    return occupied ? [occupied] : [];
  }

  /** A lease standing for a key whose value is bad but whose subnet part parses: it has no owner, only a subnet. */
  private occupiedSubnet(kv: RawKeyValue): Lease | null {
    let parsed: ReturnType<typeof parseSubnetKey> = null;
    try {
      parsed = parseSubnetKey(this.registry.prefix, kv.key);
    } catch {
      return null; // the key itself is not a subnet: it occupies nothing
    }
    if (!parsed) return null;
    return { ...parsed, attrs: { PublicIP: '', PublicIPv6: null, BackendType: '' }, key: kv.key, etcdLeaseId: kv.lease || '0', modRevision: kv.modRevision, createRevision: kv.createRevision ?? kv.modRevision };
  }

  private async reread(key: string): Promise<Lease | null> {
    const kv = await this.registry.getSubnet(key);
    return kv ? validateLease(this.registry.prefix, kv, this.options.config) : null;
  }

  private async ensureEtcdLease(): Promise<string> {
    if (this.etcdLeaseId) return this.etcdLeaseId;
    const { id, ttl } = await this.registry.grantLease(this.ttl);
    this.etcdLeaseId = id;
    this.expiresAt = Date.now() + ttl * 1000;
    return id;
  }

  private hold(lease: Lease): void {
    const previous = this.held;
    this.held = lease;
    this.setState('held');
    if (previous && previous.key !== lease.key) this.emit('change', lease, previous);
  }

  private setState(next: LeaseState): void {
    if (next === this.currentState) return;
    this.currentState = next;
    this.emit('state', next);
  }

  /** Renews every min(TTL/3, TTL - margin); on failure retries with backoff until renewed or the lease is known gone. */
  private async keepAliveLoop(signal: AbortSignal): Promise<void> {
    const interval = Math.min(this.ttl / 3, this.ttl - this.renewMargin) * 1000;
    const backoff = new Backoff({ initialMs: 500, maxMs: Math.min(60_000, interval) });
    let wait = interval;
    while (!signal.aborted) {
      await this.renewNow.wait(wait, signal);
      if (signal.aborted) return;
      const id = this.etcdLeaseId;
      if (!id) {
        wait = interval;
        continue;
      }
      try {
        const ttl = await this.registry.keepAliveLease(id);
        if (ttl > 0) {
          this.expiresAt = Date.now() + ttl * 1000;
          backoff.reset();
          wait = interval;
          if (this.currentState === 'renewing') this.setState('held');
          this.emit('renewed', ttl);
          continue;
        }
        // etcd no longer knows the lease: it expired or was revoked, and its key went with it.
        if (this.etcdLeaseId === id) this.etcdLeaseId = null;
        this.scheduleRecovery(`etcd lease ${id} expired or was revoked`, signal);
        wait = interval;
      } catch (err) {
        if (this.currentState === 'held') this.setState('renewing');
        wait = backoff.nextDelayMs();
        this.log.warn(`lease renewal failed (retrying in ${Math.round(wait)} ms): ${(err as Error).message}`);
      }
    }
  }

  private async watchOwnKey(signal: AbortSignal): Promise<void> {
    let watchedKey = this.held!.key;
    const controller = new AbortController();
    const stop = () => controller.abort();
    signal.addEventListener('abort', stop, { once: true });
    // Restart the watch when recovery moved us to another key.
    const onChange = (lease: Lease) => {
      if (lease.key !== watchedKey) controller.abort();
    };
    this.on('change', onChange);
    try {
      for await (const update of this.registry.watchSubnets(controller.signal, { exactKey: watchedKey })) {
        this.checkOwnKey(update, signal);
      }
    } finally {
      this.off('change', onChange);
      signal.removeEventListener('abort', stop);
    }
    if (!signal.aborted && this.held && this.held.key !== watchedKey) {
      watchedKey = this.held.key;
      return this.watchOwnKey(signal);
    }
  }

  private checkOwnKey(update: StoreUpdate, signal: AbortSignal): void {
    const held = this.held;
    if (!held) return;
    const kvs = update.type === 'snapshot' ? update.kvs : update.events.map((e) => (e.type === 'delete' ? null : e.kv));
    const last = update.type === 'snapshot' ? (kvs[0] ?? null) : kvs[kvs.length - 1];
    if (last === undefined) return;
    if (last === null || last.key !== held.key) {
      this.scheduleRecovery(`lease key ${held.key} was deleted`, signal);
      return;
    }
    let lease: Lease | null = null;
    try {
      lease = validateLease(this.registry.prefix, last, this.options.config);
    } catch (err) {
      this.log.warn(`own lease key holds an invalid value (${(err as Error).message}); rewriting it`);
    }
    if (!lease || !sameNode(lease.attrs, this.options.attrs)) {
      this.scheduleRecovery(`lease key ${held.key} was overwritten${lease ? ` by ${publicName(lease.attrs)}` : ''}`, signal);
      return;
    }
    if (isReservation(lease) && !isReservation(held)) this.log.info(`lease ${describeSubnets(held)} is now a reservation`);
    this.held = lease;
  }

  /** Serialises recoveries: events that arrive while one runs coalesce into the next check. */
  private scheduleRecovery(reason: string, signal: AbortSignal): void {
    this.recovery = this.recovery.then(() => this.recover(reason, signal)).catch((err) => {
      this.log.error(`lease recovery failed: ${(err as Error).message}`);
    });
  }

  private async recover(reason: string, signal: AbortSignal): Promise<void> {
    const held = this.held;
    if (!held || signal.aborted) return;
    const backoff = new Backoff({ initialMs: 200, maxMs: 5000 });
    while (!signal.aborted) {
      try {
        const kv = await this.registry.getSubnet(held.key);
        const current = kv ? this.occupying(judgeLease(this.registry.prefix, kv, this.options.config))[0] : undefined;
        if (current && sameNode(current.attrs, this.options.attrs) && kv!.value === serializeLeaseAttrs(this.options.attrs)) {
          const leaseAlive = isReservation(current) || current.etcdLeaseId === this.etcdLeaseId;
          if (leaseAlive) {
            this.held = current;
            this.setState('held');
            return; // nothing lost (e.g. the event was our own rewrite)
          }
        }
        this.losses++;
        this.setState('lost');
        this.emit('lost', reason);
        this.log.error(`LEASE LOST: ${reason}; recovering subnet ${describeSubnets(held)}`);
        if (!kv) {
          const id = await this.ensureEtcdLease();
          if (await this.registry.createSubnet(held.key, serializeLeaseAttrs(this.options.attrs), id)) {
            const lease = await this.reread(held.key);
            if (lease) {
              this.hold(lease);
              this.log.warn(`re-created lease ${describeSubnets(held)} after loss`);
              return;
            }
          }
          continue; // someone wrote it meanwhile: look again
        }
        if (current && sameNode(current.attrs, this.options.attrs)) {
          // Our key, but bound to a dead etcd lease or holding stale attrs: rebind it.
          const id = isReservation(current) ? '0' : await this.ensureEtcdLease();
          if (await this.registry.replaceSubnet(held.key, serializeLeaseAttrs(this.options.attrs), id, current.modRevision)) {
            const lease = await this.reread(held.key);
            if (lease) return this.hold(lease);
          }
          continue;
        }
        // Another node holds our old subnet now: take a new one.
        this.log.error(`subnet ${describeSubnets(held)} was taken by another node; acquiring a new subnet`);
        const lease = await this.acquire(signal, held.ipv6Subnet ? [held.subnet, held.ipv6Subnet] : [held.subnet]);
        this.log.warn(`subnet changed from ${describeSubnets(held)} to ${describeSubnets(lease)}`);
        return;
      } catch (err) {
        if (signal.aborted) return;
        if (isWeftError(err, 'WEFT_ERR_ETCD_LEASE_NOT_FOUND')) this.etcdLeaseId = null; // revoked: grant a new one
        this.log.warn(`lease recovery attempt failed: ${(err as Error).message}`);
        await backoff.wait(signal).catch(() => undefined);
      }
    }
  }
}

/** Whether a lease value was written by this node: the same PublicIP and PublicIPv6 (an IPv6-only node's PublicIP is flannel's unset 0.0.0.0). */
export function sameNode(a: Pick<LeaseAttrs, 'PublicIP' | 'PublicIPv6'>, b: Pick<LeaseAttrs, 'PublicIP' | 'PublicIPv6'>): boolean {
  return a.PublicIP === b.PublicIP && (a.PublicIPv6 ?? null) === (b.PublicIPv6 ?? null);
}

/** A node's public address(es) for the log. */
export function publicName(attrs: Pick<LeaseAttrs, 'PublicIP' | 'PublicIPv6'>): string {
  return attrs.PublicIPv6 ? `${attrs.PublicIP === UNSET_PUBLIC_IP ? '' : `${attrs.PublicIP} / `}${attrs.PublicIPv6}` : attrs.PublicIP;
}
