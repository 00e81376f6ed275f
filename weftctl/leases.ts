/**
 * `weftctl leases`, `reserve`, `release`: the subnet keys in etcd as an
 * operator reads them. Every key is shown, malformed ones with the reason
 * weftd skips them; a key without an etcd lease is a reservation (flannel's
 * convention), with a TTL otherwise.
 */
import { WeftError, isWeftError } from '../common/errors.js';
import { NO_IPV4_SUBNET, describeSubnets, parseSubnetKey, slotOf, subnetKey } from '../lease/keyspace.js';
import { PeerAdmission, type RefusalReason } from '../lease/admission.js';
import { UNSET_PUBLIC_IP, parseLeaseAttrs, serializeLeaseAttrs, validateLease, type RawKeyValue } from '../lease/lease-value.js';
import type { Registry } from '../lease/registry.js';
import { Subnet, canonicalIPv4, canonicalIPv6 } from '../common/subnet.js';
import type { LeaseAttrs, NetworkConfig } from '../lease/types.js';
import { formatSeconds, table, type Report } from './format.js';

export interface LeaseRow {
  readonly key: string;
  /** `10.244.3.0/24` (an IPv6-only lease: its IPv6 subnet), or the key's last part when it is not a subnet key. */
  readonly subnet: string;
  /** The key's IPv6 subnet, or null. */
  readonly ipv6Subnet: string | null;
  readonly publicIP: string | null;
  readonly publicIPv6: string | null;
  readonly vtepMac: string | null;
  readonly backend: string | null;
  /** etcd lease id, `'0'` for a reservation. */
  readonly etcdLeaseId: string;
  /** Seconds left on the etcd lease; null for a reservation or when etcd did not say. */
  readonly ttlSeconds: number | null;
  readonly reservation: boolean;
  /** Why weftd skips this key, or null. */
  readonly malformed: string | null;
  /** Why every node refuses this valid lease (an older lease with its VtepMAC or PublicIP, an unusable PublicIP), or null. */
  readonly refused: { readonly reason: RefusalReason; readonly detail: string; readonly winner: string | null } | null;
}

/** One key as a row; never throws (a bad key or value becomes `malformed`). */
export function describeLease(prefix: string, kv: RawKeyValue, config: NetworkConfig | null, ttls: ReadonlyMap<string, number>): LeaseRow {
  const etcdLeaseId = kv.lease || '0';
  const reservation = etcdLeaseId === '0';
  const base = { key: kv.key, etcdLeaseId, reservation, ttlSeconds: reservation ? null : (ttls.get(etcdLeaseId) ?? null) };
  const name = kv.key.slice(kv.key.lastIndexOf('/') + 1);
  try {
    let subnets: { subnet: Subnet; ipv6Subnet: Subnet | null };
    let attrs: LeaseAttrs;
    if (config) {
      const lease = validateLease(prefix, kv, config);
      if (!lease) throw new WeftError('WEFT_ERR_LEASE_MALFORMED', 'not a subnet key');
      subnets = lease;
      attrs = lease.attrs;
    } else {
      const parsed = parseSubnetKey(prefix, kv.key);
      if (!parsed) throw new WeftError('WEFT_ERR_LEASE_MALFORMED', 'not a subnet key');
      subnets = parsed;
      attrs = parseLeaseAttrs(kv.value);
    }
    const mac = attrs.BackendData?.VtepMAC;
    return {
      ...base,
      subnet: slotOf(subnets),
      ipv6Subnet: subnets.ipv6Subnet?.toString() ?? null,
      publicIP: attrs.PublicIP === UNSET_PUBLIC_IP ? null : attrs.PublicIP,
      publicIPv6: attrs.PublicIPv6,
      vtepMac: typeof mac === 'string' ? mac : null,
      backend: attrs.BackendType || null,
      malformed: null,
      refused: null,
    };
  } catch (err) {
    const reason = (err as Error).message.replace(/^malformed lease "[^"]*": /, '');
    return { ...base, subnet: name.replace(/-(\d+)$/, '/$1'), ipv6Subnet: null, publicIP: null, publicIPv6: null, vtepMac: null, backend: null, malformed: reason, refused: null };
  }
}

/**
 * The rows with the verdicts weftd reaches on every node (lease/admission.ts):
 * a valid lease an older one beats on VtepMAC or PublicIP, or whose PublicIP
 * cannot be a tunnel endpoint, is marked refused.
 */
export function judgeRows(prefix: string, kvs: readonly RawKeyValue[], rows: readonly LeaseRow[], config: NetworkConfig | null): LeaseRow[] {
  if (!config) return [...rows];
  const admission = new PeerAdmission({ config, ownLease: () => null, ownPublicIP: '' });
  const affected = new Set<string>();
  kvs.forEach((kv, i) => {
    if (rows[i]?.malformed !== null) return;
    const lease = validateLease(prefix, kv, config);
    if (lease) admission.put(slotOf(lease), lease, affected);
  });
  return rows.map((row) => {
    const verdict = row.malformed === null ? admission.judge(row.subnet) : null;
    return verdict ? { ...row, refused: { reason: verdict.reason, detail: verdict.detail, winner: verdict.winner } } : row;
  });
}

/** Seconds left per etcd lease id (one TimeToLive call per distinct lease, a few at a time). */
export async function leaseTtls(registry: Registry, ids: Iterable<string>): Promise<Map<string, number>> {
  const unique = [...new Set(ids)].filter((id) => id !== '0');
  const ttls = new Map<string, number>();
  for (let i = 0; i < unique.length; i += 32) {
    await Promise.all(
      unique.slice(i, i + 32).map(async (id) => {
        const ttl = await registry.leaseTimeToLive(id).catch(() => -1);
        if (ttl >= 0) ttls.set(id, ttl);
      }),
    );
  }
  return ttls;
}

export async function readLeaseRows(registry: Registry): Promise<{ rows: LeaseRow[]; config: NetworkConfig | null; configError: string | null }> {
  let config: NetworkConfig | null = null;
  let configError: string | null = null;
  try {
    config = await registry.readNetworkConfig();
  } catch (err) {
    if (isWeftError(err, 'WEFT_ERR_STORE_UNAVAILABLE')) throw err;
    configError = (err as Error).message;
  }
  const { kvs } = await registry.listSubnets();
  const ttls = await leaseTtls(registry, kvs.map((kv) => kv.lease || '0'));
  return { rows: judgeRows(registry.prefix, kvs, kvs.map((kv) => describeLease(registry.prefix, kv, config, ttls)), config), config, configError };
}

export function leasesReport(rows: readonly LeaseRow[], configError: string | null): Report {
  const refused = rows.some((r) => r.refused);
  // The IPv6 columns only where a key carries an IPv6 subnet: an IPv4 cluster's table stays as it was.
  const v6 = rows.some((r) => r.ipv6Subnet !== null);
  const text = table(
    ['SUBNET', ...(v6 ? ['IPV6 SUBNET'] : []), 'PUBLIC IP', ...(v6 ? ['PUBLIC IPV6'] : []), 'VTEP MAC', 'BACKEND', 'TTL', ...(refused ? ['REFUSED'] : [])],
    rows.map((r) =>
      r.malformed
        ? [r.subnet, ...(v6 ? ['-'] : []), '-', ...(v6 ? ['-'] : []), '-', '-', `malformed: ${r.malformed}`, ...(refused ? ['-'] : [])]
        : [
            r.subnet === r.ipv6Subnet ? '-' : r.subnet,
            ...(v6 ? [r.ipv6Subnet ?? '-'] : []),
            r.publicIP ?? '-',
            ...(v6 ? [r.publicIPv6 ?? '-'] : []),
            r.vtepMac ?? '-',
            r.backend ?? '-',
            r.reservation ? 'reservation' : r.ttlSeconds === null ? 'expired' : formatSeconds(r.ttlSeconds),
            ...(refused ? [r.refused ? `${r.refused.reason}: ${r.refused.detail}` : '-'] : []),
          ],
    ),
  );
  const note = configError ? `\n(network config unreadable, keys checked without it: ${configError})` : '';
  return { json: { leases: rows, configError }, text: (rows.length === 0 ? 'no leases' : text) + note, exitCode: 0 };
}

/** The IPv6 side of a reservation, for a network with IPv6. */
export interface ReservationV6 {
  readonly ipv6Subnet?: string;
  readonly publicIPv6?: string;
  /** The VTEP MAC of the node's IPv6 device (vxlan: BackendV6Data). */
  readonly vtepMacV6?: string;
}

/**
 * flannel's JSON for a reservation: PublicIP, and with a VTEP MAC the vxlan
 * backend data, so peers can program the node before its weftd starts. With
 * IPv6: PublicIPv6 and BackendV6Data likewise; an IPv6-only node's PublicIP is
 * flannel's unset 0.0.0.0.
 */
export function reservationValue(publicIP: string | undefined, vtepMac: string | undefined, config: NetworkConfig, v6: ReservationV6 = {}): string {
  const ip = publicIP === undefined && !config.enableIPv4 ? UNSET_PUBLIC_IP : canonicalIPv4(publicIP ?? '');
  if (!ip) throw new WeftError('WEFT_ERR_OPTION_INVALID', `invalid option --public-ip: "${publicIP ?? ''}" is not an IPv4 address`);
  let ip6: string | null = null;
  if (v6.publicIPv6 !== undefined) {
    ip6 = canonicalIPv6(v6.publicIPv6);
    if (!ip6) throw new WeftError('WEFT_ERR_OPTION_INVALID', `invalid option --public-ipv6: "${v6.publicIPv6}" is not an IPv6 address`);
  }
  const data = (mac: string) => ({ VNI: config.backend.vni, VtepMAC: mac.toLowerCase() });
  const attrs: LeaseAttrs = vtepMac
    ? { PublicIP: ip, PublicIPv6: ip6, BackendType: 'vxlan', BackendData: data(vtepMac), ...(v6.vtepMacV6 ? { BackendV6Data: data(v6.vtepMacV6) } : {}) }
    : { PublicIP: ip, PublicIPv6: ip6, BackendType: '' };
  const text = serializeLeaseAttrs(attrs);
  parseLeaseAttrs(text); // same checks weftd applies when it reads the key (unicast MAC, usable IP)
  return text;
}

/** Checks a subnet argument against the network config (its IPv6Network for `family` 6); returns the canonical subnet. */
export function reservableSubnet(text: string, config: NetworkConfig, family: 4 | 6 = 4): Subnet {
  let subnet: Subnet;
  try {
    subnet = Subnet.parseCanonical(text.replace(/-(\d+)$/, '/$1'));
  } catch (err) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', `"${text}" is not a subnet with host bits clear: ${(err as Error).message}`);
  }
  const [network, len, name] = family === 4 ? [config.network, config.subnetLen, 'Network'] : [config.ipv6Network, config.ipv6SubnetLen, 'IPv6Network'];
  if (!network || !network.contains(subnet) || subnet.prefixLength !== len) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', `${subnet} is not a /${len} inside ${name} ${network}`);
  }
  return subnet;
}

/**
 * The subnets a reservation's key carries: SUBNET (the IPv6 one in an
 * IPv6-only network) and, in a dual-stack network, --ipv6-subnet.
 */
function reservationSubnets(subnetText: string, config: NetworkConfig, v6: ReservationV6): { subnet: Subnet | null; ipv6Subnet: Subnet | null } {
  if (!config.enableIPv4) return { subnet: null, ipv6Subnet: reservableSubnet(subnetText, config, 6) };
  const subnet = reservableSubnet(subnetText, config);
  if (!config.enableIPv6) return { subnet, ipv6Subnet: null };
  if (!v6.ipv6Subnet) throw new WeftError('WEFT_ERR_OPTION_INVALID', 'invalid option --ipv6-subnet: the network is dual-stack, so a reservation needs an IPv6 subnet too');
  return { subnet, ipv6Subnet: reservableSubnet(v6.ipv6Subnet, config, 6) };
}

export async function reserve(registry: Registry, subnetText: string, publicIP: string | undefined, vtepMac: string | undefined, v6: ReservationV6 = {}): Promise<Report> {
  const config = await registry.readNetworkConfig();
  const { subnet, ipv6Subnet } = reservationSubnets(subnetText, config, v6);
  const key = subnetKey(registry.prefix, subnet, ipv6Subnet);
  const shown = describeSubnets({ subnet: subnet ?? NO_IPV4_SUBNET, ipv6Subnet });
  let value: string;
  try {
    value = reservationValue(publicIP, vtepMac, config, v6);
    // The checks weftd applies to the key and value together (per family: PublicIPv6, BackendV6Data).
    validateLease(registry.prefix, { key, value, lease: '0', modRevision: '0' }, config);
  } catch (err) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', `invalid reservation: ${(err as Error).message.replace(/^malformed lease "[^"]*": /, '')}`);
  }
  if (!(await registry.createSubnet(key, value, '0'))) {
    const held = await registry.getSubnet(key);
    throw new WeftError('WEFT_ERR_LEASE_CONFLICT', `${shown} is already taken (${held ? held.value : 'key exists'}); release it first`);
  }
  const attrs = parseLeaseAttrs(value);
  const who = [attrs.PublicIP === UNSET_PUBLIC_IP ? null : attrs.PublicIP, attrs.PublicIPv6].filter((x) => x !== null).join(' / ');
  return { json: { reserved: subnet?.toString() ?? ipv6Subnet!.toString(), ...(ipv6Subnet ? { ipv6Subnet: ipv6Subnet.toString() } : {}), key, value }, text: `reserved ${shown} for ${who} (${key})`, exitCode: 0 };
}

/**
 * The key of SUBNET: the IPv4-only key when it exists, else the key whose
 * IPv4 subnet (an IPv6-only network: IPv6 subnet) it is, found in the listing.
 */
async function keyOfSubnet(registry: Registry, subnet: Subnet): Promise<RawKeyValue | null> {
  if (subnet.family === 4) {
    const kv = await registry.getSubnet(subnetKey(registry.prefix, subnet));
    if (kv) return kv;
  }
  const { kvs } = await registry.listSubnets();
  return (
    kvs.find((kv) => {
      try {
        const parsed = parseSubnetKey(registry.prefix, kv.key);
        return !!parsed && (subnet.family === 4 ? parsed.subnet.equals(subnet) : !!parsed.ipv6Subnet?.equals(subnet));
      } catch {
        return false;
      }
    }) ?? null
  );
}

/** Deletes a reservation; a live lease (on an etcd lease) only with `force`, since its node would re-create it. */
export async function release(registry: Registry, subnetText: string, force: boolean): Promise<Report> {
  const config = await registry.readNetworkConfig();
  const subnet = reservableSubnet(subnetText, config, config.enableIPv4 ? 4 : 6);
  const kv = await keyOfSubnet(registry, subnet);
  if (!kv) throw new WeftError('WEFT_ERR_OPTION_INVALID', `${subnet} is neither reserved nor leased`);
  const key = kv.key;
  if ((kv.lease || '0') !== '0' && !force) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', `${subnet} is a live lease (etcd lease ${kv.lease}), not a reservation; its weftd would re-create it. Use --force to delete it anyway`);
  }
  if (!(await registry.deleteSubnet(key, kv.modRevision))) throw new WeftError('WEFT_ERR_LEASE_CONFLICT', `${key} changed while releasing it; try again`);
  return { json: { released: subnet.toString(), key }, text: `released ${subnet} (${key})`, exitCode: 0 };
}
