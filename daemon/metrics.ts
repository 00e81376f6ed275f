import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { REFUSAL_REASONS, type PeerHealth, type RefusalReason } from './status.js';

/** What the metrics read at scrape time; each source is owned by its module. */
export interface MetricSources {
  leaseTtlRemaining(): number | null;
  leaseState(): string;
  leaseLosses(): number;
  peers(): number;
  watchResyncs(): number;
  leasesSkipped(): number;
  etcdConnected(): boolean;
  /** Seconds etcd has been out of reach; 0 while connected. */
  etcdUnreachableSeconds?(): number;
  entriesProgrammed(): number;
  iptablesRepairs(): number;
  /** Kernel notifications that contradicted what weft wants (the backend's `driftEvents`). */
  kernelDriftEvents(): number;
  ready(): boolean;
  /** Valid leases not programmed here, by reason. */
  refusedLeases(): readonly { readonly reason: RefusalReason }[];
  /** True when an older lease advertises this node's PublicIP or VtepMAC. */
  ownLeaseConflict(): boolean;
  /**
   * Peer-health results (one per peer and family): the last round's targets (bounded, labelled by peer) and every
   * known result, and the families probed; null when probing is off.
   */
  peerHealth?(): { readonly lastRound: readonly PeerHealth[]; readonly all: readonly PeerHealth[]; readonly families?: readonly (4 | 6)[] } | null;
}

const PROBE_PATHS = ['underlay', 'overlay'] as const;

/** A peer-health record's `family` label: "4" or "6" (a record without one is from IPv4 probing). */
function familyLabel(h: PeerHealth): string {
  return String(h.family ?? 4);
}

export const LEASE_STATES = ['acquiring', 'held', 'renewing', 'lost'] as const;

/**
 * weft's Prometheus metrics (names prefixed `weft_`). Gauges and totals are
 * read from their owners at scrape time; the two histograms are observed by
 * the daemon as work happens.
 */
export class WeftMetrics {
  readonly registry = new Registry();
  readonly reconcileDuration: Histogram;
  readonly reconcileErrors: Counter;
  readonly eventLatency: Histogram;

  constructor(sources: MetricSources) {
    const r = this.registry;
    const gauge = (name: string, help: string, read: () => number | null) =>
      new Gauge({
        name,
        help,
        registers: [r],
        collect() {
          const v = read();
          if (v !== null) this.set(v);
        },
      });
    // Totals kept by their owners as plain numbers, exposed as Prometheus counters (the delta is added at scrape).
    const total = (name: string, help: string, read: () => number) => {
      let seen = 0;
      new Counter({
        name,
        help,
        registers: [r],
        collect() {
          const v = read();
          if (v > seen) this.inc(v - seen);
          seen = Math.max(seen, v);
        },
      });
    };
    // The usual process series, read at scrape time only. Not prom-client's collectDefaultMetrics: its GC
    // observer runs on every young-generation collection (frequent under churn with weftd's small young
    // generation) and pays for each through a deprecated accessor.
    const memory = () => process.memoryUsage();
    gauge('process_resident_memory_bytes', 'Resident memory size in bytes', () => memory().rss);
    gauge('nodejs_heap_size_used_bytes', 'V8 heap in use, in bytes', () => memory().heapUsed);
    gauge('nodejs_heap_size_total_bytes', 'V8 heap reserved, in bytes', () => memory().heapTotal);
    total('process_cpu_seconds_total', 'User and system CPU time spent, in seconds', () => {
      const { user, system } = process.cpuUsage();
      return (user + system) / 1e6;
    });
    gauge('weft_lease_ttl_remaining_seconds', 'Seconds until this node\'s etcd lease expires if never renewed again (absent for reservations)', () => sources.leaseTtlRemaining());
    new Gauge({
      name: 'weft_lease_state',
      help: 'State of this node\'s lease: 1 for the current state',
      labelNames: ['state'],
      registers: [r],
      collect() {
        for (const s of LEASE_STATES) this.set({ state: s }, sources.leaseState() === s ? 1 : 0);
      },
    });
    total('weft_lease_losses_total', 'Times this node\'s lease was found deleted, revoked or expired while running', () => sources.leaseLosses());
    gauge('weft_peers', 'Peer leases known (valid, excluding this node)', () => sources.peers());
    total('weft_watch_resyncs_total', 'Times the lease watch re-listed etcd (compaction, cancelled watch)', () => sources.watchResyncs());
    total('weft_leases_skipped_total', 'Malformed lease values skipped', () => sources.leasesSkipped());
    gauge('weft_etcd_connected', '1 when the last etcd call succeeded and the watch is alive', () => (sources.etcdConnected() ? 1 : 0));
    gauge('weft_etcd_unreachable_seconds', 'How long etcd has been out of reach (0 while connected)', () => sources.etcdUnreachableSeconds?.() ?? 0);
    gauge('weft_kernel_entries_programmed', 'Kernel entries (neighbours, FDB entries, routes) weft holds for its peers', () => sources.entriesProgrammed());
    total('weft_iptables_repairs_total', 'Times the iptables rules had to be restored', () => sources.iptablesRepairs());
    total('weft_kernel_drift_events_total', 'Kernel notifications that showed weft\'s entries or device changed outside weft (each burst starts one repair pass)', () => sources.kernelDriftEvents());
    gauge('weft_ready', '1 when the lease is held and the first full reconcile is done', () => (sources.ready() ? 1 : 0));
    new Gauge({
      name: 'weft_leases_refused',
      help: 'Valid leases this node does not program, by reason (public-ip, covers-public-ip, duplicate-mac, duplicate-public-ip, collides-with-node)',
      labelNames: ['reason'],
      registers: [r],
      collect() {
        const counts = new Map<string, number>(REFUSAL_REASONS.map((reason) => [reason, 0]));
        for (const x of sources.refusedLeases()) counts.set(x.reason, (counts.get(x.reason) ?? 0) + 1);
        for (const [reason, n] of counts) this.set({ reason }, n);
      },
    });
    gauge('weft_own_lease_conflict', "1 when an older lease advertises this node's PublicIP or VtepMAC, so other nodes program that lease instead of this one", () => (sources.ownLeaseConflict() ? 1 : 0));
    // Per-peer series only for the last round's targets (at most twice --probe-sample peers, each in up to two
    // families), reset at every scrape. `family` is "4" or "6": a dual-stack peer has a series of each, with that
    // family's subnet as `peer` and its public address as `public_ip`.
    new Gauge({
      name: 'weft_peer_reachable',
      help: 'Whether the peer answered the last probe on this path in this family (last round\'s peers only)',
      labelNames: ['peer', 'public_ip', 'path', 'family'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of sources.peerHealth?.()?.lastRound ?? []) {
          for (const path of PROBE_PATHS) this.set({ peer: h.subnet, public_ip: h.publicIP, path, family: familyLabel(h) }, h[path].ok ? 1 : 0);
        }
      },
    });
    new Gauge({
      name: 'weft_peer_rtt_seconds',
      help: 'Round-trip time of the last answered probe on this path in this family (last round\'s peers only)',
      labelNames: ['peer', 'public_ip', 'path', 'family'],
      registers: [r],
      collect() {
        this.reset();
        for (const h of sources.peerHealth?.()?.lastRound ?? []) {
          for (const path of PROBE_PATHS) {
            const rtt = h[path].rttMs;
            if (rtt !== null) this.set({ peer: h.subnet, public_ip: h.publicIP, path, family: familyLabel(h) }, rtt / 1000);
          }
        }
      },
    });
    new Gauge({
      name: 'weft_peers_unreachable',
      help: 'Peers whose last probe on this path in this family went unanswered (all probed peers); sum by (path) for both families',
      labelNames: ['path', 'family'],
      registers: [r],
      collect() {
        this.reset();
        const health = sources.peerHealth?.() ?? null;
        const all = health?.all ?? [];
        // Every family probed has its series, 0 included; without that list, IPv4 and the families seen.
        const families = new Set((health?.families ?? [4, ...all.map((h) => h.family)]).map(String));
        for (const family of families) {
          const mine = all.filter((h) => familyLabel(h) === family);
          for (const path of PROBE_PATHS) this.set({ path, family }, mine.filter((h) => !h[path].ok).length);
        }
      },
    });
    this.reconcileDuration = new Histogram({
      name: 'weft_reconcile_duration_seconds',
      help: 'Duration of kernel reconcile passes (full: dump and diff; delta: lease events)',
      labelNames: ['kind'],
      buckets: [0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
      registers: [r],
    });
    this.reconcileErrors = new Counter({ name: 'weft_reconcile_errors_total', help: 'Kernel operations that failed (retried on the next pass)', registers: [r] });
    this.eventLatency = new Histogram({
      name: 'weft_event_programmed_latency_seconds',
      help: 'From a lease event reaching weftd to its kernel entries being programmed',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1],
      registers: [r],
    });
  }
}
