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

export function subnetKey(prefix: string, subnet: Subnet, ipv6Subnet: Subnet | null = null): string {
  return subnetsPrefix(prefix) + subnetKeyName(subnet, ipv6Subnet);
}

/** `10.244.3.0-24` or `10.244.3.0-24&fc00:0:0:34::-64`. */
export function subnetKeyName(subnet: Subnet, ipv6Subnet: Subnet | null = null): string {
  const v4 = `${subnet.ip}-${subnet.prefixLength}`;
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
