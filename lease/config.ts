import { VXLAN_DEFAULT_PORT } from '../common/defaults.js';
import { WeftError } from '../common/errors.js';
import { field, isPlainObject, jsonType } from './json-fields.js';
import { Subnet } from '../common/subnet.js';
import type { BackendConfig, NetworkConfig } from './types.js';

/**
 * Parses and validates the cluster network config (`<prefix>/config`) the way
 * flanneld does (pkg/subnet/config.go): case-insensitive keys, masked CIDRs,
 * SubnetLen defaults and bounds, SubnetMin/SubnetMax defaults and alignment.
 * One deliberate difference: a missing `Backend` (or `Backend.Type`) means
 * `vxlan`, flannel's documented default, not `udp`.
 *
 * Throws one WeftError (WEFT_ERR_CONFIG_INVALID) naming the field and the rule.
 */
export function parseNetworkConfig(text: string): NetworkConfig {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalid('(document)', `not valid JSON: ${(err as Error).message}`);
  }
  if (!isPlainObject(doc)) throw invalid('(document)', `must be a JSON object, got ${jsonType(doc)}`);

  const enableIPv4 = optionalBool(doc, 'EnableIPv4') ?? true;
  const enableIPv6 = optionalBool(doc, 'EnableIPv6') ?? false;
  if (!enableIPv4 && !enableIPv6) throw invalid('EnableIPv4', 'at least one of EnableIPv4 and EnableIPv6 must be true');

  const v4 = enableIPv4 ? familyRange(doc, 4) : null;
  const v6 = enableIPv6 ? familyRange(doc, 6) : null;

  return {
    enableIPv4,
    enableIPv6,
    network: v4?.network ?? null,
    subnetLen: v4?.subnetLen ?? 0,
    subnetMin: v4?.subnetMin ?? null,
    subnetMax: v4?.subnetMax ?? null,
    ipv6Network: v6?.network ?? null,
    ipv6SubnetLen: v6?.subnetLen ?? 0,
    ipv6SubnetMin: v6?.subnetMin ?? null,
    ipv6SubnetMax: v6?.subnetMax ?? null,
    enableNFTables: optionalBool(doc, 'EnableNFTables') ?? false,
    backend: parseBackend(field(doc, 'Backend')),
  };
}

interface FamilyRange {
  network: Subnet;
  subnetLen: number;
  subnetMin: Subnet;
  subnetMax: Subnet;
}

/** Field names and limits per address family, as flannel names them. */
const FAMILY = {
  4: { prefix: '', bits: 32, defaultLen: 24, maxLen: 30, minNetworkForDefault: 28 },
  6: { prefix: 'IPv6', bits: 128, defaultLen: 64, maxLen: 126, minNetworkForDefault: 124 },
} as const;

function familyRange(doc: Record<string, unknown>, family: 4 | 6): FamilyRange {
  const f = FAMILY[family];
  const networkField = `${f.prefix}Network`;
  const lenField = `${f.prefix}SubnetLen`;
  const raw = field(doc, networkField);
  if (raw === undefined || raw === null || raw === '') {
    throw invalid(networkField, `required when Enable${family === 4 ? 'IPv4' : 'IPv6'} is true: please define a correct ${networkField} parameter`);
  }
  if (typeof raw !== 'string') throw invalid(networkField, `must be a CIDR string, got ${jsonType(raw)}`);
  let network: Subnet;
  try {
    network = Subnet.parse(raw);
  } catch (err) {
    throw invalid(networkField, (err as Error).message);
  }
  if (network.family !== family) throw invalid(networkField, `must be an IPv${family} CIDR, got "${raw}"`);

  let subnetLen = optionalUint(doc, lenField) ?? 0;
  if (subnetLen === 0) {
    if (network.prefixLength <= f.defaultLen - 2) subnetLen = f.defaultLen;
    else if (network.prefixLength <= f.minNetworkForDefault) subnetLen = network.prefixLength + 2;
    else {
      throw invalid(networkField, `network is too small: the minimum useful prefix is /${f.minNetworkForDefault} (got /${network.prefixLength})`);
    }
  } else {
    if (subnetLen > f.maxLen) throw invalid(lenField, `must be at most ${f.maxLen} (got ${subnetLen})`);
    if (subnetLen < network.prefixLength + 2) {
      throw invalid(lenField, `must be at least ${networkField} prefix + 2 = ${network.prefixLength + 2}, so the network holds four subnets (got ${subnetLen})`);
    }
  }

  const first = Subnet.of(family, network.value, subnetLen);
  const subnetMin = boundary(doc, `${f.prefix}SubnetMin`, network, subnetLen) ?? first.next();
  const subnetMax =
    boundary(doc, `${f.prefix}SubnetMax`, network, subnetLen) ??
    Subnet.of(family, network.lastValue - first.size + 1n, subnetLen);
  if (subnetMin.value > subnetMax.value) {
    throw invalid(`${f.prefix}SubnetMin`, `must not be above ${f.prefix}SubnetMax (${subnetMin.ip} > ${subnetMax.ip})`);
  }
  return { network, subnetLen, subnetMin, subnetMax };
}

/** SubnetMin / SubnetMax: an address inside Network on a SubnetLen boundary. */
function boundary(doc: Record<string, unknown>, name: string, network: Subnet, subnetLen: number): Subnet | null {
  const raw = field(doc, name);
  if (raw === undefined || raw === null || raw === '') return null;
  if (typeof raw !== 'string') throw invalid(name, `must be an IP address string, got ${jsonType(raw)}`);
  let sn: Subnet;
  try {
    sn = Subnet.parse(`${raw}/${subnetLen}`);
  } catch {
    throw invalid(name, `"${raw}" is not an IPv${network.family} address`);
  }
  const prefix = FAMILY[network.family].prefix;
  if (sn.family !== network.family || !network.contains(raw)) {
    throw invalid(name, `${raw} is not inside ${prefix}Network ${network}`);
  }
  if (sn.ip !== canonical(raw, network.family)) throw invalid(name, `${raw} is not on a ${prefix}SubnetLen (/${subnetLen}) boundary`);
  return sn;
}

function canonical(ip: string, family: 4 | 6): string {
  return Subnet.parse(`${ip}/${family === 4 ? 32 : 128}`).ip;
}

const BACKEND_TYPE = /^[a-z0-9][a-z0-9-]{0,31}$/;

/** The VXLAN UDP port a backend config means: `Port` 0 (or none) is the kernel's default. */
export function vxlanPort(backend: Pick<BackendConfig, 'port'>): number {
  return backend.port > 0 ? backend.port : VXLAN_DEFAULT_PORT;
}

function parseBackend(raw: unknown): BackendConfig {
  if (raw === undefined || raw === null) raw = {};
  if (!isPlainObject(raw)) throw invalid('Backend', `must be a JSON object, got ${jsonType(raw)}`);
  const typeRaw = field(raw, 'Type');
  if (typeRaw !== undefined && typeof typeRaw !== 'string') throw invalid('Backend.Type', `must be a string, got ${jsonType(typeRaw)}`);
  const type = (typeRaw === undefined || typeRaw === '' ? 'vxlan' : typeRaw).toLowerCase();
  if (!BACKEND_TYPE.test(type)) throw invalid('Backend.Type', `"${type}" is not a backend name`);

  const vni = optionalUint(raw, 'VNI', 'Backend.VNI') ?? 1;
  if (vni > 0xffffff) throw invalid('Backend.VNI', `must be between 0 and 16777215 (got ${vni})`);
  const port = optionalUint(raw, 'Port', 'Backend.Port') ?? 0;
  if (port > 65535) throw invalid('Backend.Port', `must be between 0 and 65535 (got ${port})`);
  const mtu = optionalUint(raw, 'MTU', 'Backend.MTU') ?? 0;
  if (mtu !== 0 && (mtu < 576 || mtu > 65535)) throw invalid('Backend.MTU', `must be 0 (use the interface MTU) or between 576 and 65535 (got ${mtu})`);
  return {
    type,
    vni,
    port,
    mtu,
    gbp: optionalBool(raw, 'GBP', 'Backend.GBP') ?? false,
    learning: optionalBool(raw, 'Learning', 'Backend.Learning') ?? false,
    directRouting: optionalBool(raw, 'DirectRouting', 'Backend.DirectRouting') ?? false,
    raw,
  };
}

function optionalBool(obj: Record<string, unknown>, name: string, label = name): boolean | undefined {
  const v = field(obj, name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'boolean') throw invalid(label, `must be true or false, got ${jsonType(v)} ${JSON.stringify(v)}`);
  return v;
}

function optionalUint(obj: Record<string, unknown>, name: string, label = name): number | undefined {
  const v = field(obj, name);
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw invalid(label, `must be a non-negative integer, got ${jsonType(v)} ${JSON.stringify(v)}`);
  }
  return v;
}

function invalid(fieldName: string, rule: string): WeftError {
  const err = new WeftError('WEFT_ERR_CONFIG_INVALID', `invalid network config: ${fieldName}: ${rule}`);
  return Object.assign(err, { field: fieldName });
}
