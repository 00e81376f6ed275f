import { WeftError } from '../common/errors.js';
import { Subnet } from '../common/subnet.js';
import { NO_IPV4_SUBNET, hasIPv4 } from './keyspace.js';
import { isReservation, type Lease, type NetworkConfig } from './types.js';

/** How many free subnets, counted from SubnetMin, the random choice is made among (flannel's rule). */
export const CANDIDATE_WINDOW = 100;

export type SubnetChoice =
  /** This node already holds a compatible lease (same PublicIP; same PublicIPv6 in an IPv6-only network): keep using it. */
  | { readonly kind: 'reuse'; readonly lease: Lease }
  /**
   * The subnets from the node's previous subnet file (or from its own lease
   * that no longer fits) are free: take them again. `subnet` is
   * NO_IPV4_SUBNET in an IPv6-only network; `ipv6Subnet` is there when the
   * network enables IPv6.
   */
  | { readonly kind: 'previous'; readonly subnet: Subnet; readonly ipv6Subnet?: Subnet }
  /** Free subnets chosen at random among the first CANDIDATE_WINDOW free ones of each family (a previous one kept where free). */
  | { readonly kind: 'new'; readonly subnet: Subnet; readonly ipv6Subnet?: Subnet };

export interface AllocationInput {
  readonly config: NetworkConfig;
  /** Every valid lease and reservation currently in etcd. */
  readonly leases: readonly Lease[];
  readonly publicIP: string;
  /** This node's PublicIPv6: how an IPv6-only network finds its own lease. */
  readonly publicIPv6?: string | null;
  readonly previousSubnet?: Subnet | null;
  readonly previousIPv6Subnet?: Subnet | null;
  /** Uniform random integer in [0, n); injectable for tests. */
  readonly randomInt?: (n: number) => number;
  /**
   * What of this node's own networks a subnet would collide with, or null.
   * A new subnet is never chosen among colliding ones. This node's own lease
   * and its previous subnet are exempt: its own bridge lies in them.
   * (IPv4 subnets only: the node's IPv6 networks are not read yet.)
   */
  readonly collides?: (s: Subnet) => string | null;
}

export interface AllocationResult {
  readonly choice: SubnetChoice;
  /** Leased keys of this node that no longer fit the config; the caller deletes them (flannel does the same). */
  readonly incompatible: readonly Lease[];
}

/** One address family's lease range, as the config gives it. */
interface FamilyRange {
  readonly family: 4 | 6;
  readonly network: Subnet;
  readonly len: number;
  readonly min: Subnet;
  readonly max: Subnet;
}

function rangeOf(config: NetworkConfig, family: 4 | 6): FamilyRange | null {
  const [enabled, network, len, min, max] =
    family === 4
      ? [config.enableIPv4, config.network, config.subnetLen, config.subnetMin, config.subnetMax]
      : [config.enableIPv6, config.ipv6Network, config.ipv6SubnetLen, config.ipv6SubnetMin, config.ipv6SubnetMax];
  if (!enabled) return null;
  if (!network || !min || !max) {
    const name = family === 4 ? 'Network' : 'IPv6Network';
    throw new WeftError('WEFT_ERR_CONFIG_INVALID', `invalid network config: ${name}: required to lease an IPv${family} subnet`);
  }
  return { family, network, len, min, max };
}

const inRange = (r: FamilyRange, s: Subnet) => s.family === r.family && s.prefixLength === r.len && s.value >= r.min.value && s.value <= r.max.value;
const fitsReservation = (r: FamilyRange, s: Subnet) => r.network.contains(s) && s.prefixLength === r.len;

/**
 * Chooses this node's subnets, in flannel's order: reuse own lease by
 * PublicIP (PublicIPv6 in an IPv6-only network), else the previous subnets
 * if free, else random among the first 100 free, for each family the
 * network enables. Pure: the caller does the etcd work. Throws
 * WEFT_ERR_RANGE_EXHAUSTED when no subnet is free.
 *
 * One difference from flannel, which re-draws both subnets when either does
 * not fit: each family is judged on its own, so enabling IPv6 on a running
 * cluster keeps every node's IPv4 subnet and only adds an IPv6 one.
 */
export function chooseSubnet(input: AllocationInput): AllocationResult {
  const { config, leases } = input;
  const r4 = rangeOf(config, 4);
  const r6 = rangeOf(config, 6);
  if (!r4 && !r6) throw new WeftError('WEFT_ERR_CONFIG_INVALID', 'invalid network config: EnableIPv4: at least one of EnableIPv4 and EnableIPv6 must be true');
  const v4Fits = (l: Lease, fits: (r: FamilyRange, s: Subnet) => boolean) => (r4 ? fits(r4, l.subnet) : !hasIPv4(l.subnet));
  // Like flannel, a lease with an IPv6 part in a network without IPv6 does not fit; a reservation's IPv6 part then does not matter.
  const v6Fits = (l: Lease, fits: (r: FamilyRange, s: Subnet) => boolean) => (r6 ? l.ipv6Subnet !== null && fits(r6, l.ipv6Subnet) : l.ipv6Subnet === null || isReservation(l));
  const fits = (l: Lease) => (isReservation(l) ? v4Fits(l, fitsReservation) && v6Fits(l, fitsReservation) : v4Fits(l, inRange) && v6Fits(l, inRange));

  // Own keys: reservations first (an operator's decision outranks a previous lease).
  const isOwn = r4 ? (l: Lease) => l.attrs.PublicIP === input.publicIP : (l: Lease) => !!input.publicIPv6 && l.attrs.PublicIPv6 === input.publicIPv6;
  const own = leases.filter(isOwn).sort((a, b) => Number(isReservation(b)) - Number(isReservation(a)));
  const incompatible: Lease[] = [];
  for (const lease of own) {
    if (fits(lease)) return { choice: { kind: 'reuse', lease }, incompatible };
    if (!isReservation(lease)) incompatible.push(lease);
  }

  const occupying = leases.filter((l) => !incompatible.includes(l));
  // A family's part of an own lease that no longer fits as a whole is this node's to keep (see above).
  const kept = (get: (l: Lease) => Subnet | null) => incompatible.map(get).find((s): s is Subnet => s !== null) ?? null;
  const random = input.randomInt ?? defaultRandomInt;
  const pick4 = r4 ? pickFamily(r4, occupying.filter((l) => hasIPv4(l.subnet)).map((l) => l.subnet), input.previousSubnet ?? kept((l) => (hasIPv4(l.subnet) ? l.subnet : null)), random, input.collides) : null;
  const pick6 = r6 ? pickFamily(r6, occupying.flatMap((l) => (l.ipv6Subnet ? [l.ipv6Subnet] : [])), input.previousIPv6Subnet ?? kept((l) => l.ipv6Subnet), random) : null;
  const previous = (pick4?.previous ?? true) && (pick6?.previous ?? true);
  const subnet = pick4?.subnet ?? NO_IPV4_SUBNET;
  const choice: SubnetChoice = pick6 ? { kind: previous ? 'previous' : 'new', subnet, ipv6Subnet: pick6.subnet } : { kind: previous ? 'previous' : 'new', subnet };
  return { choice, incompatible };
}

/** One family's subnet: the previous one if in range and free, else a random one of the first CANDIDATE_WINDOW free. */
function pickFamily(
  r: FamilyRange,
  occupied: readonly Subnet[],
  prev: Subnet | null,
  random: (n: number) => number,
  collides?: (s: Subnet) => string | null,
): { subnet: Subnet; previous: boolean } {
  // Keys of SubnetLen are looked up exactly; any other length (a malformed key) by overlap.
  const taken = new Set(occupied.filter((s) => s.prefixLength === r.len).map((s) => s.toString()));
  const odd = occupied.filter((s) => s.prefixLength !== r.len);
  const isTaken = (s: Subnet) => taken.has(s.toString()) || odd.some((o) => o.overlaps(s));
  if (prev && inRange(r, prev) && !isTaken(prev)) return { subnet: prev, previous: true };

  const what = `${r.family === 6 ? 'IPv6 ' : ''}subnet`;
  const free: Subnet[] = [];
  let colliding = 0;
  let firstCollision: string | null = null;
  let scanned = 0;
  // Stepping stops at SubnetMax before asking for a next subnet: the last one of the address space has none.
  for (let s = r.min; free.length < CANDIDATE_WINDOW; s = s.next()) {
    scanned++;
    if (!isTaken(s)) {
      const collision = collides?.(s) ?? null;
      if (collision === null) free.push(s);
      else {
        colliding++;
        firstCollision ??= `${s} collides with this node's ${collision}`;
      }
    }
    if (s.value >= r.max.value) break;
  }
  if (free.length === 0 && colliding === scanned) {
    throw new WeftError(
      'WEFT_ERR_CONFIG_INVALID',
      `invalid network config: every /${r.len} subnet from ${r.min.ip} to ${r.max.ip} of ${r.network} collides with this node's own networks (${firstCollision}); the Network must not cover the hosts' networks`,
    );
  }
  if (free.length === 0) {
    throw new WeftError(
      'WEFT_ERR_RANGE_EXHAUSTED',
      `no free ${what}: all /${r.len} subnets from ${r.min.ip} to ${r.max.ip} of ${r.network} are leased or reserved${colliding > 0 ? ` or collide with this node's own networks (${firstCollision}, and ${colliding - 1} more)` : ''}`,
    );
  }
  return { subnet: free[random(free.length)]!, previous: false };
}

function defaultRandomInt(n: number): number {
  return Math.floor(Math.random() * n);
}
