import { WeftError, isWeftError } from '../common/errors.js';
import { field, isPlainObject, jsonType } from './json-fields.js';
import { hasIPv4, parseSubnetKey } from './keyspace.js';
import { canonicalMac, isUnicastMac } from '../common/mac.js';
import { Subnet, canonicalIPv4, canonicalIPv6 } from '../common/subnet.js';
import type { Listing } from './registry.js';
import type { BackendData, Lease, LeaseAttrs, NetworkConfig } from './types.js';

/**
 * Validation of lease keys and values read from etcd. Everything in etcd is
 * untrusted: a value reaches the backend (and so the kernel) only after it
 * passed these checks.
 */

/** A flannel lease value is a short JSON object; anything far larger is not a lease. */
export const MAX_LEASE_VALUE_BYTES = 4096;

const BACKEND_TYPE = /^[A-Za-z0-9][A-Za-z0-9-]{0,31}$/;

/**
 * Parses flannel's lease JSON (case-insensitive keys). Throws
 * WEFT_ERR_LEASE_MALFORMED with the reason (validateLease adds the key).
 */
export function parseLeaseAttrs(text: string): LeaseAttrs {
  if (Buffer.byteLength(text) > MAX_LEASE_VALUE_BYTES) throw bad(`value is larger than ${MAX_LEASE_VALUE_BYTES} bytes`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw bad(`value is not valid JSON (${(err as Error).message})`);
  }
  if (!isPlainObject(doc)) throw bad(`value must be a JSON object, got ${jsonType(doc)}`);

  const v6Raw = field(doc, 'PublicIPv6');
  let PublicIPv6: string | null = null;
  if (v6Raw !== undefined && v6Raw !== null) {
    PublicIPv6 = typeof v6Raw === 'string' ? canonicalIPv6(v6Raw) : null;
    if (PublicIPv6 === null) throw bad(`PublicIPv6 ${JSON.stringify(String(v6Raw).slice(0, 64))} is not an IPv6 address`);
    if (!isUsableUnicastV6(PublicIPv6)) throw bad(`PublicIPv6 ${PublicIPv6} is not a usable unicast address`);
  }

  const publicIPRaw = field(doc, 'PublicIP');
  if (typeof publicIPRaw !== 'string') throw bad(`PublicIP must be an IPv4 address string, got ${jsonType(publicIPRaw)}`);
  const PublicIP = canonicalIPv4(publicIPRaw);
  if (PublicIP === null) throw bad(`PublicIP ${JSON.stringify(publicIPRaw.slice(0, 64))} is not an IPv4 address`);
  // flannel writes "0.0.0.0" for an unset PublicIP: a node of an IPv6-only network, known by its PublicIPv6.
  if (!isUsableUnicast(PublicIP) && !(PublicIP === UNSET_PUBLIC_IP && PublicIPv6 !== null)) {
    throw bad(`PublicIP ${PublicIP} is not a usable unicast address`);
  }

  const typeRaw = field(doc, 'BackendType');
  if (typeRaw !== undefined && typeRaw !== null && (typeof typeRaw !== 'string' || (typeRaw !== '' && !BACKEND_TYPE.test(typeRaw)))) {
    throw bad(`BackendType ${JSON.stringify(String(typeRaw).slice(0, 64))} is not a backend name`);
  }
  const BackendType = typeof typeRaw === 'string' ? typeRaw : '';

  const attrs: { -readonly [K in keyof LeaseAttrs]: LeaseAttrs[K] } = { PublicIP, PublicIPv6, BackendType };
  const data = parseBackendData(field(doc, 'BackendData'), BackendType, 'BackendData');
  if (data) attrs.BackendData = data;
  const v6data = parseBackendData(field(doc, 'BackendV6Data'), BackendType, 'BackendV6Data');
  if (v6data) attrs.BackendV6Data = v6data;
  // flannel's vxlan nodes of an IPv6-only network publish BackendV6Data alone; which family needs which is validateLease's.
  if (BackendType === 'vxlan' && !data && !v6data) throw bad('vxlan lease without BackendData');
  return attrs;
}

function parseBackendData(raw: unknown, backendType: string, name: string): BackendData | undefined {
  if (raw === undefined || raw === null) return undefined;
  if (!isPlainObject(raw)) throw bad(`${name} must be an object, got ${jsonType(raw)}`);
  if (backendType !== 'vxlan') return raw;

  const vni = field(raw, 'VNI');
  if (typeof vni !== 'number' || !Number.isInteger(vni) || vni < 0 || vni > 0xffffff) {
    throw bad(`${name}.VNI must be an integer 0..16777215, got ${JSON.stringify(vni)?.slice(0, 32)}`);
  }
  const macRaw = field(raw, 'VtepMAC');
  const mac = typeof macRaw === 'string' ? canonicalMac(macRaw) : null;
  if (mac === null) throw bad(`${name}.VtepMAC ${JSON.stringify(macRaw)?.slice(0, 40)} is not a MAC address`);
  if (!isUnicastMac(mac)) throw bad(`${name}.VtepMAC ${mac} is not a unicast MAC address`);
  return { VNI: vni, VtepMAC: mac };
}

/** flannel's PublicIP when the node has none (an IPv6-only node). */
export const UNSET_PUBLIC_IP = '0.0.0.0';

// ::/127 (unspecified, loopback), IPv4-mapped, multicast: never a tunnel endpoint. Link-local is refused by admission.
const UNUSABLE_V6 = ['::/127', '::ffff:0:0/96', 'ff00::/8'].map((cidr) => Subnet.parse(cidr));

function isUsableUnicastV6(ip: string): boolean {
  return !UNUSABLE_V6.some((sn) => sn.contains(ip));
}

function isUsableUnicast(ip: string): boolean {
  const first = Number(ip.split('.')[0]);
  // 0.0.0.0/8 (unspecified, flannel's "unset"), 127/8 loopback, 224/4 multicast and 240/4 reserved/broadcast
  return first !== 0 && first !== 127 && first < 224;
}

/** flannel's JSON for a lease value: field order and null PublicIPv6 as flanneld writes them. */
export function serializeLeaseAttrs(attrs: LeaseAttrs): string {
  const out: Record<string, unknown> = { PublicIP: attrs.PublicIP, PublicIPv6: attrs.PublicIPv6 ?? null };
  if (attrs.BackendType) out.BackendType = attrs.BackendType;
  if (attrs.BackendData) out.BackendData = attrs.BackendData;
  if (attrs.BackendV6Data) out.BackendV6Data = attrs.BackendV6Data;
  return JSON.stringify(out);
}

/** Deep equality of two validated lease values (as flannel would publish them). */
export function sameAttrs(a: LeaseAttrs, b: LeaseAttrs): boolean {
  return serializeLeaseAttrs(a) === serializeLeaseAttrs(b);
}

/** A key/value as the registry reads it from etcd. */
export interface RawKeyValue {
  readonly key: string;
  readonly value: string;
  readonly lease: string;
  readonly modRevision: string;
  /** etcd create_revision: which of two keys is older. Absent in a delete event. */
  readonly createRevision?: string;
}


/** One key's verdict: its lease (null: not a subnet key), or the WEFT_ERR_LEASE_MALFORMED error saying why it is none. */
export type LeaseVerdict =
  | { readonly kv: RawKeyValue; readonly lease: Lease | null; readonly error: null }
  | { readonly kv: RawKeyValue; readonly lease: null; readonly error: WeftError };

/** validateLease() as a value: a malformed key gives a verdict with its error instead of throwing. */
export function judgeLease(prefix: string, kv: RawKeyValue, config: NetworkConfig): LeaseVerdict {
  try {
    return { kv, lease: validateLease(prefix, kv, config), error: null };
  } catch (err) {
    if (!isWeftError(err, 'WEFT_ERR_LEASE_MALFORMED')) throw err;
    return { kv, lease: null, error: err };
  }
}

/**
 * A listing whose keys were judged once, against `prefix` and `config`: lease
 * acquisition reads and judges every key, and hands the result to the peer
 * watch, which starts from it instead of judging every key a second time.
 * Like the listing, it is handed over: the watch empties `verdicts` once it
 * has taken them.
 */
export interface ValidatedListing extends Listing {
  readonly prefix: string;
  readonly config: NetworkConfig;
  /** One per key of `kvs`, in the same order. */
  readonly verdicts: LeaseVerdict[];
}

/**
 * Validates one subnet key/value against the network config. Returns null
 * for keys that are not subnet keys at all; throws WEFT_ERR_LEASE_MALFORMED,
 * naming the key, for a subnet key whose key or value is invalid.
 */
export function validateLease(prefix: string, kv: RawKeyValue, config: NetworkConfig): Lease | null {
  let parsed: ReturnType<typeof parseSubnetKey>;
  try {
    parsed = parseSubnetKey(prefix, kv.key);
  } catch (err) {
    throw malformed(kv.key, (err as Error).message, err);
  }
  if (!parsed) return null;
  const { subnet, ipv6Subnet } = parsed;
  if (config.network) {
    if (!config.network.contains(subnet)) {
      throw malformed(kv.key, hasIPv4(subnet) ? `subnet ${subnet} is outside Network ${config.network}` : `no IPv4 subnet, and Network ${config.network} is IPv4`);
    }
    if (subnet.prefixLength !== config.subnetLen) {
      throw malformed(kv.key, `subnet ${subnet} has prefix length ${subnet.prefixLength}, SubnetLen is ${config.subnetLen}`);
    }
  } else if (config.enableIPv6 && !ipv6Subnet) {
    throw malformed(kv.key, `no IPv6 subnet, and the network is IPv6-only`);
  }
  const v6 = config.enableIPv6 && ipv6Subnet !== null;
  if (v6 && config.ipv6Network) {
    if (!config.ipv6Network.contains(ipv6Subnet) || ipv6Subnet.prefixLength !== config.ipv6SubnetLen) {
      throw malformed(kv.key, `IPv6 subnet ${ipv6Subnet} does not fit IPv6Network ${config.ipv6Network} with IPv6SubnetLen ${config.ipv6SubnetLen}`);
    }
  }
  let attrs: LeaseAttrs;
  try {
    attrs = parseLeaseAttrs(kv.value);
  } catch (err) {
    throw malformed(kv.key, (err as Error).message, err);
  }
  // Each family the network uses needs its tunnel endpoint and, for vxlan, its VTEP.
  if (config.network && attrs.PublicIP === UNSET_PUBLIC_IP) throw malformed(kv.key, `PublicIP ${UNSET_PUBLIC_IP} is not a usable unicast address`);
  if (config.network && attrs.BackendType === 'vxlan' && !attrs.BackendData) throw malformed(kv.key, 'vxlan lease without BackendData');
  if (v6 && attrs.PublicIPv6 === null) throw malformed(kv.key, `IPv6 subnet ${ipv6Subnet} without a PublicIPv6`);
  if (v6 && attrs.BackendType === 'vxlan' && !attrs.BackendV6Data) throw malformed(kv.key, `vxlan lease with IPv6 subnet ${ipv6Subnet} without BackendV6Data`);
  return { subnet, ipv6Subnet, attrs, key: kv.key, etcdLeaseId: kv.lease || '0', modRevision: kv.modRevision, createRevision: kv.createRevision ?? kv.modRevision };
}

function malformed(key: string, reason: string, cause?: unknown): WeftError {
  return new WeftError('WEFT_ERR_LEASE_MALFORMED', `malformed lease ${JSON.stringify(key.slice(0, 200))}: ${reason}`, cause === undefined ? undefined : { cause });
}

/** A lease value's own fault, before validateLease names the key. */
function bad(reason: string): WeftError {
  return new WeftError('WEFT_ERR_LEASE_MALFORMED', reason);
}
