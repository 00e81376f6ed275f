/**
 * `weftctl leases`, `reserve`, `release`: the subnet keys in etcd as an
 * operator reads them. Every key is shown, malformed ones with the reason
 * weftd skips them; a key without an etcd lease is a reservation (flannel's
 * convention), with a TTL otherwise.
 */
import { WeftError, isWeftError } from '../common/errors.js';
import { parseSubnetKey, subnetKey } from '../lease/keyspace.js';
import { PeerAdmission, type RefusalReason } from '../lease/admission.js';
import { parseLeaseAttrs, serializeLeaseAttrs, validateLease, type RawKeyValue } from '../lease/lease-value.js';
import type { Registry } from '../lease/registry.js';
import { Subnet, canonicalIPv4 } from '../common/subnet.js';
import type { LeaseAttrs, NetworkConfig } from '../lease/types.js';
import { formatSeconds, table, type Report } from './format.js';

export interface LeaseRow {
  readonly key: string;
  /** `10.244.3.0/24`, or the key's last part when it is not a subnet key. */
  readonly subnet: string;
  readonly publicIP: string | null;
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
    let subnet: string;
    let attrs: LeaseAttrs;
    if (config) {
      const lease = validateLease(prefix, kv, config);
      if (!lease) throw new WeftError('WEFT_ERR_LEASE_MALFORMED', 'not a subnet key');
      subnet = lease.subnet.toString();
      attrs = lease.attrs;
    } else {
      const parsed = parseSubnetKey(prefix, kv.key);
      if (!parsed) throw new WeftError('WEFT_ERR_LEASE_MALFORMED', 'not a subnet key');
      subnet = parsed.subnet.toString();
      attrs = parseLeaseAttrs(kv.value);
    }
    const mac = attrs.BackendData?.VtepMAC;
    return { ...base, subnet, publicIP: attrs.PublicIP, vtepMac: typeof mac === 'string' ? mac : null, backend: attrs.BackendType || null, malformed: null, refused: null };
  } catch (err) {
    const reason = (err as Error).message.replace(/^malformed lease "[^"]*": /, '');
    return { ...base, subnet: name.replace(/-(\d+)$/, '/$1'), publicIP: null, vtepMac: null, backend: null, malformed: reason, refused: null };
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
    if (lease) admission.put(lease.subnet.toString(), lease, affected);
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
  const text = table(
    ['SUBNET', 'PUBLIC IP', 'VTEP MAC', 'BACKEND', 'TTL', ...(refused ? ['REFUSED'] : [])],
    rows.map((r) =>
      r.malformed
        ? [r.subnet, '-', '-', '-', `malformed: ${r.malformed}`, ...(refused ? ['-'] : [])]
        : [
            r.subnet,
            r.publicIP ?? '-',
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

/**
 * flannel's JSON for a reservation: PublicIP, and with a VTEP MAC the vxlan
 * backend data, so peers can program the node before its weftd starts.
 */
export function reservationValue(publicIP: string, vtepMac: string | undefined, config: NetworkConfig): string {
  const ip = canonicalIPv4(publicIP);
  if (!ip) throw new WeftError('WEFT_ERR_OPTION_INVALID', `invalid option --public-ip: "${publicIP}" is not an IPv4 address`);
  const attrs: LeaseAttrs = vtepMac
    ? { PublicIP: ip, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: config.backend.vni, VtepMAC: vtepMac.toLowerCase() } }
    : { PublicIP: ip, PublicIPv6: null, BackendType: '' };
  const text = serializeLeaseAttrs(attrs);
  parseLeaseAttrs(text); // same checks weftd applies when it reads the key (unicast MAC, usable IP)
  return text;
}

/** Checks a subnet argument against the network config; returns the canonical subnet. */
export function reservableSubnet(text: string, config: NetworkConfig): Subnet {
  let subnet: Subnet;
  try {
    subnet = Subnet.parseCanonical(text.replace(/-(\d+)$/, '/$1'));
  } catch (err) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', `"${text}" is not a subnet with host bits clear: ${(err as Error).message}`);
  }
  if (!config.network || !config.network.contains(subnet) || subnet.prefixLength !== config.subnetLen) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', `${subnet} is not a /${config.subnetLen} inside Network ${config.network}`);
  }
  return subnet;
}

export async function reserve(registry: Registry, subnetText: string, publicIP: string, vtepMac: string | undefined): Promise<Report> {
  const config = await registry.readNetworkConfig();
  const subnet = reservableSubnet(subnetText, config);
  const key = subnetKey(registry.prefix, subnet);
  let value: string;
  try {
    value = reservationValue(publicIP, vtepMac, config);
  } catch (err) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', `invalid reservation: ${(err as Error).message}`);
  }
  if (!(await registry.createSubnet(key, value, '0'))) {
    const held = await registry.getSubnet(key);
    throw new WeftError('WEFT_ERR_LEASE_CONFLICT', `${subnet} is already taken (${held ? held.value : 'key exists'}); release it first`);
  }
  return { json: { reserved: subnet.toString(), key, value }, text: `reserved ${subnet} for ${canonicalIPv4(publicIP)} (${key})`, exitCode: 0 };
}

/** Deletes a reservation; a live lease (on an etcd lease) only with `force`, since its node would re-create it. */
export async function release(registry: Registry, subnetText: string, force: boolean): Promise<Report> {
  const config = await registry.readNetworkConfig();
  const subnet = reservableSubnet(subnetText, config);
  const key = subnetKey(registry.prefix, subnet);
  const kv = await registry.getSubnet(key);
  if (!kv) throw new WeftError('WEFT_ERR_OPTION_INVALID', `${subnet} is neither reserved nor leased`);
  if ((kv.lease || '0') !== '0' && !force) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', `${subnet} is a live lease (etcd lease ${kv.lease}), not a reservation; its weftd would re-create it. Use --force to delete it anyway`);
  }
  if (!(await registry.deleteSubnet(key, kv.modRevision))) throw new WeftError('WEFT_ERR_LEASE_CONFLICT', `${key} changed while releasing it; try again`);
  return { json: { released: subnet.toString(), key }, text: `released ${subnet} (${key})`, exitCode: 0 };
}
