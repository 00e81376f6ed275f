/**
 * The plugin's network config (what the runtime passes on stdin): flannel's
 * CNI plugin's NetConf, unchanged, so a conflist written for flannel works
 * as it is. Its own keys:
 *
 *   subnetFile     the subnet file weftd writes (default /run/flannel/subnet.env)
 *   dataDir        where the delegate config of each attachment is saved (default /var/lib/cni/flannel)
 *   delegate       keys for the delegate config (type default bridge); not `name` nor `ipam`
 *   ipam           the delegate's ipam; weft fills in ranges and routes
 *   runtimeConfig  copied into the delegate config
 *
 * and the protocol's (cniVersion, name, type, prevResult, the GC list).
 */
import { DEFAULT_SUBNET_FILE } from '../common/defaults.js';
import { WeftError } from '../common/errors.js';
import type { Attachment } from './state.js';

/** The spec versions weft-cni speaks, oldest first (VERSION lists them). */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;

/** The newest: what a VERSION answer or an error before any config was read carries. */
export const CURRENT_VERSION = '1.1.0';

/** flannel's CNI plugin's default dataDir. */
export const DEFAULT_DATA_DIR = '/var/lib/cni/flannel';

export type JsonObject = Record<string, unknown>;

export interface NetConf {
  readonly cniVersion: string;
  /** The network name: the delegate's name too, and host-local's store directory. */
  readonly name: string;
  /** This plugin's name in the conflist (`weft`, `flannel`, ...). */
  readonly type: string;
  readonly subnetFile: string;
  readonly dataDir: string;
  readonly delegate: JsonObject | null;
  readonly ipam: JsonObject | null;
  readonly runtimeConfig: JsonObject | null;
  /** The previous result (CHECK, DEL), passed on to the delegate. */
  readonly prevResult: unknown;
  /** GC: the attachments the runtime still holds (`cni.dev/valid-attachments`). */
  readonly validAttachments: readonly Attachment[] | null;
}

/** Spec: a network name starts with an alphanumeric, then alphanumerics, `_`, `.`, `-`. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

function invalid(message: string): WeftError {
  return new WeftError('WEFT_ERR_CONFIG_INVALID', `invalid network config: ${message}`);
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `a` >= `b`, both `x.y.z`. */
export function versionAtLeast(a: string, b: string): boolean {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

/** Parses the stdin text into a JSON object, or WEFT_ERR_CNI_DECODE. */
export function decodeConfig(text: string): JsonObject {
  if (text.trim() === '') throw new WeftError('WEFT_ERR_CNI_DECODE', 'no network config on stdin');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new WeftError('WEFT_ERR_CNI_DECODE', `network config on stdin is not JSON: ${(err as Error).message}`, { cause: err });
  }
  if (!isObject(value)) throw new WeftError('WEFT_ERR_CNI_DECODE', 'network config on stdin is not a JSON object');
  return value;
}

/** The config's cniVersion if it has a string one (for an error object's version), else null. */
export function peekVersion(text: string): string | null {
  try {
    const v = (JSON.parse(text) as JsonObject).cniVersion;
    return typeof v === 'string' && (SUPPORTED_VERSIONS as readonly string[]).includes(v) ? v : null;
  } catch {
    return null;
  }
}

function optionalObject(raw: JsonObject, key: string): JsonObject | null {
  const v = raw[key];
  if (v === undefined || v === null) return null;
  if (!isObject(v)) throw invalid(`"${key}" must be an object`);
  return v;
}

function optionalPath(raw: JsonObject, key: string, fallback: string): string {
  const v = raw[key];
  if (v === undefined || v === '') return fallback;
  if (typeof v !== 'string' || v.includes('\0')) throw invalid(`"${key}" must be a path`);
  return v;
}

/**
 * Parses and checks the config. flannel's rules for `delegate`: an object
 * whose `type`, if any, is a string, with no `name` (the network's) and no
 * `ipam` (built from the subnet file and the top-level `ipam`).
 */
export function parseNetConf(text: string): NetConf {
  const raw = decodeConfig(text);
  const cniVersion = raw.cniVersion;
  if (typeof cniVersion !== 'string' || cniVersion === '') {
    throw new WeftError('WEFT_ERR_CNI_VERSION', `network config has no cniVersion: weft-cni supports ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(cniVersion)) {
    throw new WeftError('WEFT_ERR_CNI_VERSION', `cniVersion "${cniVersion}" is not supported: weft-cni supports ${SUPPORTED_VERSIONS.join(', ')}`);
  }
  const name = raw.name;
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw invalid(`"name" must be a network name (a letter or digit, then letters, digits, _ . -), not ${JSON.stringify(name)}`);
  }
  const delegate = optionalObject(raw, 'delegate');
  if (delegate) {
    if ('type' in delegate && typeof delegate.type !== 'string') throw invalid('"delegate", if present, must have a string "type"');
    if ('name' in delegate) throw invalid('"delegate" must not have a "name": it is the network\'s name');
    if ('ipam' in delegate) throw invalid('"delegate" must not have an "ipam": it is built from the subnet file and the top-level "ipam"');
    if (delegate.type !== undefined && delegate.type === raw.type) throw invalid(`"delegate.type" must name another plugin than this one ("${raw.type}")`);
  }
  const ipam = optionalObject(raw, 'ipam');
  if (ipam) {
    if ('type' in ipam && typeof ipam.type !== 'string') throw invalid('"ipam.type" must be a string');
    if ('routes' in ipam && (!Array.isArray(ipam.routes) || !ipam.routes.every((r) => isObject(r) && typeof r.dst === 'string'))) {
      throw invalid('"ipam.routes" must be a list of routes, each with a "dst"');
    }
  }
  return {
    cniVersion,
    name,
    type: typeof raw.type === 'string' ? raw.type : '',
    subnetFile: optionalPath(raw, 'subnetFile', DEFAULT_SUBNET_FILE),
    dataDir: optionalPath(raw, 'dataDir', DEFAULT_DATA_DIR),
    delegate,
    ipam,
    runtimeConfig: optionalObject(raw, 'runtimeConfig'),
    prevResult: raw.prevResult,
    validAttachments: parseValidAttachments(raw),
  };
}

/**
 * GC's list of attachments still in use. The spec names it
 * `cni.dev/valid-attachments`; libcni also sets `cni.dev/attachments`, the
 * spelling of an earlier draft: either, or both, are read.
 */
function parseValidAttachments(raw: JsonObject): Attachment[] | null {
  const lists = ['cni.dev/valid-attachments', 'cni.dev/attachments'].map((k) => [k, raw[k]] as const).filter(([, v]) => v !== undefined);
  if (lists.length === 0) return null;
  const out: Attachment[] = [];
  for (const [key, list] of lists) {
    if (!Array.isArray(list)) throw invalid(`"${key}" must be a list`);
    for (const a of list) {
      if (!isObject(a) || typeof a.containerID !== 'string' || typeof a.ifname !== 'string') {
        throw invalid(`"${key}" entries must be {"containerID": ..., "ifname": ...}, not ${JSON.stringify(a)}`);
      }
      out.push({ containerID: a.containerID, ifname: a.ifname });
    }
  }
  return out;
}
