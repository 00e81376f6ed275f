import { posix } from 'node:path';
import { WeftError } from '../common/errors.js';
import { Subnet } from '../common/subnet.js';

/**
 * flannel's etcd keyspace: `<prefix>/config` and
 * `<prefix>/subnets/10.244.3.0-24[&fc00:0:0:34::-64]`.
 * Keys are joined like Go's path.Join (duplicate and trailing slashes collapse).
 */
export function configKey(prefix: string): string {
  return posix.join('/', prefix, 'config');
}

const subnetsPrefixes = new Map<string, string>();

/** The watch/list prefix, WITH the trailing slash so `subnetsX` never matches. Remembered: every lease key read is checked against it. */
export function subnetsPrefix(prefix: string): string {
  let joined = subnetsPrefixes.get(prefix);
  if (joined === undefined) subnetsPrefixes.set(prefix, (joined = posix.join('/', prefix, 'subnets') + '/'));
  return joined;
}

/**
 * The IPv4 part of an IPv6-only lease: flannel's empty IP4Net, which its key
 * encoding writes as `0.0.0.0-0` (so the key reads `0.0.0.0-0&fd00:10:244:3::-64`).
 * A lease's `subnet` holds it when the lease has no IPv4 subnet.
 */
export const NO_IPV4_SUBNET = Subnet.parse('0.0.0.0/0');

/** Whether `subnet` (a lease's IPv4 part) is a subnet, not the IPv6-only placeholder NO_IPV4_SUBNET. */
export function hasIPv4(subnet: Subnet): boolean {
  return subnet.prefixLength !== 0;
}

/**
 * The name a lease goes by in peer maps and logs: its IPv4 subnet, or for an
 * IPv6-only lease its IPv6 subnet (flannel's sameSubnet compares the family the
 * lease has).
 */
export function slotOf(lease: { readonly subnet: Subnet; readonly ipv6Subnet: Subnet | null }): string {
  return hasIPv4(lease.subnet) || !lease.ipv6Subnet ? lease.subnet.toString() : lease.ipv6Subnet.toString();
}

/** A lease's subnets for logs and messages: `10.244.3.0/24`, `10.244.3.0/24 + fd00:10:244:3::/64` or `fd00:10:244:3::/64`. */
export function describeSubnets(lease: { readonly subnet: Subnet; readonly ipv6Subnet?: Subnet | null }): string {
  const v6 = lease.ipv6Subnet ?? null;
  if (!hasIPv4(lease.subnet)) return v6 ? v6.toString() : lease.subnet.toString();
  return v6 ? `${lease.subnet} + ${v6}` : lease.subnet.toString();
}

/** `subnet` null (or NO_IPV4_SUBNET) with an IPv6 subnet gives the IPv6-only key. */
export function subnetKey(prefix: string, subnet: Subnet | null, ipv6Subnet: Subnet | null = null): string {
  return subnetsPrefix(prefix) + subnetKeyName(subnet, ipv6Subnet);
}

/** `10.244.3.0-24`, `10.244.3.0-24&fc00:0:0:34::-64`, or IPv6-only `0.0.0.0-0&fc00:0:0:34::-64`. */
export function subnetKeyName(subnet: Subnet | null, ipv6Subnet: Subnet | null = null): string {
  const v4sn = subnet ?? NO_IPV4_SUBNET;
  if (!hasIPv4(v4sn) && !ipv6Subnet) throw new WeftError('WEFT_ERR_ADDRESS_INVALID', 'a subnet key needs an IPv4 or an IPv6 subnet');
  const v4 = `${v4sn.ip}-${v4sn.prefixLength}`;
  return ipv6Subnet ? `${v4}&${ipv6Subnet.ip}-${ipv6Subnet.prefixLength}` : v4;
}

// Anchored at both ends, unlike flannel's, and requiring canonical (masked) networks below.
const KEY_NAME = /^(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})-(\d{1,2})(?:&([0-9a-f:]{2,39})-(\d{1,3}))?$/;

/**
 * Parses a key under the subnets prefix. Returns null for keys that are not
 * subnet keys; throws WEFT_ERR_LEASE_MALFORMED for a subnet key that is
 * malformed (host bits set, invalid address).
 */
export function parseSubnetKey(prefix: string, key: string): { subnet: Subnet; ipv6Subnet: Subnet | null } | null {
  const base = subnetsPrefix(prefix);
  if (!key.startsWith(base)) return null;
  const m = KEY_NAME.exec(key.slice(base.length));
  if (!m) return null;
  const subnet = canonical(`${m[1]}/${m[2]}`);
  if (subnet.family !== 4) throw malformed(`not an IPv4 subnet: ${m[1]}/${m[2]}`);
  const ipv6Subnet = m[3] ? canonical(`${m[3]}/${m[4]}`) : null;
  if (ipv6Subnet && (ipv6Subnet.family !== 6 || ipv6Subnet.ip !== m[3])) {
    throw malformed(`IPv6 part "${m[3]}-${m[4]}" is not a canonical IPv6 network`);
  }
  if (!hasIPv4(subnet) && !ipv6Subnet) throw malformed('0.0.0.0-0 (no IPv4 subnet) without an IPv6 part');
  if (ipv6Subnet && ipv6Subnet.prefixLength === 0) throw malformed(`IPv6 part "${m[3]}-${m[4]}" is not a subnet`);
  return { subnet, ipv6Subnet };
}

/** A key's network part: an address that does not parse makes the key malformed (same text). */
function canonical(cidr: string): Subnet {
  try {
    return Subnet.parseCanonical(cidr);
  } catch (err) {
    throw malformed((err as Error).message, err);
  }
}

function malformed(reason: string, cause?: unknown): WeftError {
  return new WeftError('WEFT_ERR_LEASE_MALFORMED', reason, cause === undefined ? undefined : { cause });
}
