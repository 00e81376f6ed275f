import { WeftError } from '../common/errors.js';
import { Subnet } from '../common/subnet.js';
import { isReservation, type Lease, type NetworkConfig } from './types.js';

/** How many free subnets, counted from SubnetMin, the random choice is made among (flannel's rule). */
export const CANDIDATE_WINDOW = 100;

export type SubnetChoice =
  /** This node already holds a compatible lease (same PublicIP): keep using it. */
  | { readonly kind: 'reuse'; readonly lease: Lease }
  /** The subnet from the node's previous subnet file is free: take it again. */
  | { readonly kind: 'previous'; readonly subnet: Subnet }
  /** A free subnet chosen at random among the first CANDIDATE_WINDOW free ones. */
  | { readonly kind: 'new'; readonly subnet: Subnet };

export interface AllocationInput {
  readonly config: NetworkConfig;
  /** Every valid lease and reservation currently in etcd. */
  readonly leases: readonly Lease[];
  readonly publicIP: string;
  readonly previousSubnet?: Subnet | null;
  /** Uniform random integer in [0, n); injectable for tests. */
  readonly randomInt?: (n: number) => number;
  /**
   * What of this node's own networks a subnet would collide with, or null.
   * A new subnet is never chosen among colliding ones. This node's own lease
   * and its previous subnet are exempt: its own bridge lies in them.
   */
  readonly collides?: (s: Subnet) => string | null;
}

export interface AllocationResult {
  readonly choice: SubnetChoice;
  /** Leased keys of this node that no longer fit the config; the caller deletes them (flannel does the same). */
  readonly incompatible: readonly Lease[];
}

/**
 * Chooses this node's subnet, in flannel's order: reuse own lease by
 * PublicIP, else the previous subnet if free, else random among the first
 * 100 free. Pure: the caller does the etcd work. Throws
 * WEFT_ERR_RANGE_EXHAUSTED when no subnet is free.
 */
export function chooseSubnet(input: AllocationInput): AllocationResult {
  const { config, leases, publicIP } = input;
  const network = config.network;
  if (!network || !config.subnetMin || !config.subnetMax) {
    throw new WeftError('WEFT_ERR_CONFIG_INVALID', 'invalid network config: Network: IPv4 is required to lease a subnet');
  }
  const inRange = (s: Subnet) =>
    s.prefixLength === config.subnetLen && s.value >= config.subnetMin!.value && s.value <= config.subnetMax!.value;

  // Own keys: reservations first (an operator's decision outranks a previous lease).
  const own = leases.filter((l) => l.attrs.PublicIP === publicIP).sort((a, b) => Number(isReservation(b)) - Number(isReservation(a)));
  const incompatible: Lease[] = [];
  for (const lease of own) {
    const fits = isReservation(lease)
      ? network.contains(lease.subnet) && lease.subnet.prefixLength === config.subnetLen
      : inRange(lease.subnet);
    if (fits) return { choice: { kind: 'reuse', lease }, incompatible };
    if (!isReservation(lease)) incompatible.push(lease);
  }

  const occupying = leases.filter((l) => !incompatible.includes(l));
  // Keys of SubnetLen are looked up exactly; any other length (a malformed key) by overlap.
  const taken = new Set(occupying.filter((l) => l.subnet.prefixLength === config.subnetLen).map((l) => l.subnet.toString()));
  const odd = occupying.filter((l) => l.subnet.prefixLength !== config.subnetLen).map((l) => l.subnet);
  const isTaken = (s: Subnet) => taken.has(s.toString()) || odd.some((o) => o.overlaps(s));
  const prev = input.previousSubnet;
  if (prev && inRange(prev) && !isTaken(prev)) {
    return { choice: { kind: 'previous', subnet: prev }, incompatible };
  }

  const free: Subnet[] = [];
  let colliding = 0;
  let firstCollision: string | null = null;
  let scanned = 0;
  for (let s = config.subnetMin; s.value <= config.subnetMax.value && free.length < CANDIDATE_WINDOW; s = s.next()) {
    scanned++;
    if (isTaken(s)) continue;
    const collision = input.collides?.(s) ?? null;
    if (collision === null) free.push(s);
    else {
      colliding++;
      firstCollision ??= `${s} collides with this node's ${collision}`;
    }
  }
  if (free.length === 0 && colliding === scanned) {
    throw new WeftError(
      'WEFT_ERR_CONFIG_INVALID',
      `invalid network config: every /${config.subnetLen} subnet from ${config.subnetMin.ip} to ${config.subnetMax.ip} of ${network} collides with this node's own networks (${firstCollision}); the Network must not cover the hosts' networks`,
    );
  }
  if (free.length === 0) {
    throw new WeftError(
      'WEFT_ERR_RANGE_EXHAUSTED',
      `no free subnet: all /${config.subnetLen} subnets from ${config.subnetMin.ip} to ${config.subnetMax.ip} of ${network} are leased or reserved${colliding > 0 ? ` or collide with this node's own networks (${firstCollision}, and ${colliding - 1} more)` : ''}`,
    );
  }
  const pick = (input.randomInt ?? defaultRandomInt)(free.length);
  return { choice: { kind: 'new', subnet: free[pick]! }, incompatible };
}

function defaultRandomInt(n: number): number {
  return Math.floor(Math.random() * n);
}
