/**
 * The chaos soak's fault kinds and its seeded schedule (pure: no I/O).
 *
 * The schedule is a sequence of rounds. A round starts one to three faults at
 * seeded offsets, each on its own host, waits until every one has ended (the
 * daemon restarted, the member back, the link up, the bad lease removed), then
 * the cluster is quiet and is checked. Every choice (kinds, targets as slots in
 * the round's list of live hosts, offsets, durations, variants) comes from the
 * seed, so the same seed replays the same faults in the same order on the same
 * hosts; only the machine's timing differs from run to run.
 */
import { WeftError } from '../common/errors.js';

/** What a fault may cost the pings, stated per kind and enforced by the soak. */
export type LossBound =
  /** No ping between pods whose hosts are up may be lost. */
  | 'none'
  /** Pings on the named host pair may be lost until the repair is seen (plus a grace for packets in flight). */
  | 'pair-until-repaired'
  /** Pings of every pair with the target host may be lost until the repair is seen. */
  | 'host-until-repaired';

export interface FaultKind {
  readonly name: string;
  readonly what: string;
  readonly bound: LossBound;
  /** Touches a host (one fault per host at a time); else the cluster's etcd. */
  readonly host: boolean;
}

/** Every fault the soak injects, in the order of its table. */
export const FAULT_KINDS: readonly FaultKind[] = [
  { name: 'weftd-kill', what: 'weftd SIGKILLed, restarted after 0-2 s', bound: 'none', host: true },
  { name: 'etcd-kill', what: 'an etcd follower SIGKILLed, restarted after 1-5 s', bound: 'none', host: false },
  { name: 'etcd-leader-kill', what: 'the etcd leader SIGKILLed, restarted after 1-5 s', bound: 'none', host: false },
  { name: 'compact', what: 'etcd history compacted to the current revision', bound: 'none', host: false },
  { name: 'lease-delete', what: "a node's own lease key deleted by hand", bound: 'host-until-repaired', host: true },
  { name: 'route-del', what: 'the route to one peer deleted by hand', bound: 'pair-until-repaired', host: true },
  { name: 'neigh-del', what: 'the neighbour entry of one peer deleted by hand', bound: 'pair-until-repaired', host: true },
  { name: 'fdb-del', what: 'the FDB entry of one peer deleted by hand', bound: 'pair-until-repaired', host: true },
  { name: 'chain-del', what: "one of weft's iptables chains (masquerade or forward) deleted with its jump", bound: 'none', host: true },
  { name: 'device-del', what: 'the vxlan device deleted by hand', bound: 'host-until-repaired', host: true },
  { name: 'link-flap', what: 'the underlay link down for 0.5-3 s', bound: 'host-until-repaired', host: true },
  { name: 'partition', what: "every packet between one node and etcd dropped inside the node's namespace for 5-30 s", bound: 'none', host: true },
  { name: 'node-replace', what: 'a node leaves for good (weftd stopped, lease released, host gone) and a new one joins', bound: 'none', host: true },
  { name: 'lease-malformed', what: 'malformed leases (bad JSON, address, MAC, prefix, outside Network) written, removed after 1-5 s', bound: 'none', host: false },
  { name: 'lease-overlap', what: "a lease whose subnet is the hosts' LAN /24, written, removed after 1-5 s", bound: 'none', host: false },
  { name: 'lease-bad-publicip', what: 'a lease with a PublicIP inside Network or link-local, written, removed after 1-5 s', bound: 'none', host: false },
  { name: 'lease-conflict-mac', what: "a newer live lease advertising a node's VtepMAC, written, removed after 1-5 s", bound: 'none', host: true },
  { name: 'lease-conflict-ip', what: "a newer live lease advertising a node's PublicIP, written, removed after 1-5 s", bound: 'none', host: true },
];

export const KIND_NAMES: readonly string[] = FAULT_KINDS.map((k) => k.name);

export function kindOf(name: string): FaultKind {
  const k = FAULT_KINDS.find((f) => f.name === name);
  if (!k) throw new WeftError('WEFT_ERR_OPTION_INVALID', `unknown fault kind "${name}"; kinds: ${KIND_NAMES.join(', ')}`);
  return k;
}

/** The kinds to inject: `--faults a,b` (default: all) minus `--exclude c,d`; unknown names are an error. */
export function selectKinds(faults: readonly string[] | null, exclude: readonly string[] = []): string[] {
  for (const name of [...(faults ?? []), ...exclude]) kindOf(name);
  const chosen = KIND_NAMES.filter((n) => (faults === null || faults.includes(n)) && !exclude.includes(n));
  if (chosen.length === 0) throw new WeftError('WEFT_ERR_OPTION_INVALID', 'no fault kind left to inject');
  return chosen;
}

/** mulberry32: a small, fast, seedable PRNG (32-bit state), enough for a schedule. */
export class Rng {
  private state: number;
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [lo, hi]. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
}

export interface PlannedFault {
  readonly kind: string;
  /** Offset from the round's start, ms. */
  readonly atMs: number;
  /** The target host's index (h<N>) for a host fault, else null. */
  readonly host: number | null;
  /** A second host: the peer whose entry is deleted (route-del, neigh-del, fdb-del); else null. */
  readonly peer: number | null;
  /** How long the fault lasts where it has a length (down time, partition, lease written), ms. */
  readonly durationMs: number;
  /** Which variant, where a kind has several (which chain, which bad address); a free seeded number. */
  readonly variant: number;
}

/** Duration ranges per kind, ms (kinds without one get 0). */
const DURATIONS: Record<string, readonly [number, number]> = {
  'weftd-kill': [0, 2000],
  'etcd-kill': [1000, 5000],
  'etcd-leader-kill': [1000, 5000],
  'link-flap': [500, 3000],
  partition: [5000, 30000],
  'node-replace': [1000, 3000],
  'lease-malformed': [1000, 5000],
  'lease-overlap': [1000, 5000],
  'lease-bad-publicip': [1000, 5000],
  'lease-conflict-mac': [1000, 5000],
  'lease-conflict-ip': [1000, 5000],
};

/** Kinds that take the cluster's etcd out of service in part: at most one per round, so a quorum always stands. */
const ETCD_DOWN = new Set(['etcd-kill', 'etcd-leader-kill']);
/** Kinds that need a second host (the peer). */
const NEEDS_PEER = new Set(['route-del', 'neigh-del', 'fdb-del']);

/**
 * One round: 1-3 faults of the selected kinds, each host fault on a host of
 * its own (`live`: the hosts up at the round's start, h<N> indices), at most
 * one etcd member down and at most one node replaced.
 */
export function planRound(rng: Rng, kinds: readonly string[], live: readonly number[]): PlannedFault[] {
  const count = rng.int(1, 3);
  const free = [...live];
  const out: PlannedFault[] = [];
  let etcdDown = false;
  let replaced = false;
  for (let i = 0; i < count; i++) {
    const kind = rng.pick(kinds);
    const atMs = rng.int(0, 3000);
    const [lo, hi] = DURATIONS[kind] ?? [0, 0];
    const durationMs = rng.int(lo, hi);
    const variant = rng.int(0, 1 << 16);
    const hostSlot = rng.next();
    const peerSlot = rng.next();
    if (ETCD_DOWN.has(kind)) {
      if (etcdDown) continue;
      etcdDown = true;
    }
    if (kind === 'node-replace') {
      if (replaced) continue;
      replaced = true;
    }
    let host: number | null = null;
    let peer: number | null = null;
    if (kindOf(kind).host) {
      if (free.length === 0) continue;
      host = free.splice(Math.floor(hostSlot * free.length), 1)[0]!;
      if (NEEDS_PEER.has(kind)) {
        const others = live.filter((h) => h !== host);
        peer = others[Math.floor(peerSlot * others.length)] ?? null;
        if (peer === null) continue;
      }
    }
    out.push({ kind, atMs, host, peer, durationMs, variant });
  }
  return out.sort((a, b) => a.atMs - b.atMs);
}
