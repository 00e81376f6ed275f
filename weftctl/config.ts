/**
 * `weftctl config get|set|validate`: the cluster network config at
 * `<prefix>/config`. Nothing reaches etcd that weftd would refuse: `set`
 * runs flannel's parsing rules (lease/config.ts) first.
 */
import { WeftError, isWeftError } from '../common/errors.js';
import { parseNetworkConfig, vxlanPort } from '../lease/config.js';
import { configKey } from '../lease/keyspace.js';
import type { Registry } from '../lease/registry.js';
import type { NetworkConfig } from '../lease/types.js';
import { table, type Report } from './format.js';

/** The config after defaults, as weftd will use it. */
export function effectiveConfig(c: NetworkConfig): Record<string, unknown> {
  const s = (x: { toString(): string } | null) => (x ? x.toString() : null);
  return {
    Network: s(c.network),
    SubnetLen: c.subnetLen,
    SubnetMin: c.subnetMin?.ip ?? null,
    SubnetMax: c.subnetMax?.ip ?? null,
    EnableIPv6: c.enableIPv6,
    ...(c.enableIPv6 ? { IPv6Network: s(c.ipv6Network), IPv6SubnetLen: c.ipv6SubnetLen } : {}),
    Backend: { Type: c.backend.type, VNI: c.backend.vni, Port: vxlanPort(c.backend), MTU: c.backend.mtu || null, DirectRouting: c.backend.directRouting },
  };
}

function configTable(c: NetworkConfig): string {
  const e = effectiveConfig(c);
  const backend = e.Backend as Record<string, unknown>;
  const rows = Object.entries(e)
    .filter(([k]) => k !== 'Backend')
    .map(([k, v]) => [k, String(v)]);
  for (const [k, v] of Object.entries(backend)) rows.push([`Backend.${k}`, v === null ? '(underlay MTU)' : String(v)]);
  return table(['FIELD', 'VALUE'], rows);
}

export async function getConfig(registry: Registry): Promise<Report> {
  const key = configKey(registry.prefix);
  const raw = await registry.readNetworkConfigText();
  if (raw === null) return { json: { key, raw: null, error: 'missing' }, text: `no network config at ${key}`, exitCode: 1 };
  try {
    const c = parseNetworkConfig(raw);
    return { json: { key, raw: JSON.parse(raw) as unknown, effective: effectiveConfig(c) }, text: `${key}\n${raw.trim()}\n\n${configTable(c)}`, exitCode: 0 };
  } catch (err) {
    return { json: { key, raw, error: (err as Error).message }, text: `${key}\n${raw.trim()}\n\nINVALID: ${(err as Error).message}`, exitCode: 1 };
  }
}

export function validateConfig(text: string, source: string): Report {
  try {
    const c = parseNetworkConfig(text);
    return { json: { source, valid: true, effective: effectiveConfig(c) }, text: `${source}: valid\n\n${configTable(c)}`, exitCode: 0 };
  } catch (err) {
    return { json: { source, valid: false, error: (err as Error).message }, text: `${source}: ${(err as Error).message}`, exitCode: 1 };
  }
}

/** Validates, then writes; an invalid config never reaches etcd. */
export async function setConfig(registry: Registry, text: string, source: string): Promise<Report> {
  let c: NetworkConfig;
  try {
    c = await registry.writeNetworkConfig(text);
  } catch (err) {
    if (isWeftError(err, 'WEFT_ERR_CONFIG_INVALID')) throw new WeftError('WEFT_ERR_CONFIG_INVALID', `${source}: ${err.message}; nothing written`);
    throw err;
  }
  const key = configKey(registry.prefix);
  return { json: { key, written: JSON.parse(text) as unknown, effective: effectiveConfig(c) }, text: `wrote ${key}\n\n${configTable(c)}`, exitCode: 0 };
}
