/**
 * weft-cni's commands (CNI spec 1.1.0), each from the network config on
 * stdin and the CNI_* environment to what the plugin prints on success:
 *
 * - ADD: builds the delegate config from the subnet file, saves it, runs the
 *   delegate's ADD and prints its result. If the delegate fails, its DEL runs
 *   at once, so a failed ADD leaves no address or interface behind.
 * - DEL: runs the delegate's DEL with the saved config, then forgets it.
 *   Nothing saved: the config is rebuilt from the subnet file (if there is
 *   one) and the delegate's DEL still releases the address. A netns that is
 *   already gone is passed on as none. A second DEL succeeds.
 * - CHECK: the saved config must exist, the subnet file must still give the
 *   node the subnet (and MTU) the attachment was made with, then the
 *   delegate's CHECK has the last word.
 * - STATUS: not available (CNI code 50) while the subnet file is missing or
 *   unreadable, and the delegate's STATUS when it speaks CNI 1.1.
 * - GC: the saved configs of this network's attachments that the runtime no
 *   longer lists go through the delegate's DEL (releasing their addresses)
 *   and are removed; then the delegate's GC, when it speaks CNI 1.1.
 * - VERSION: the versions weft-cni speaks.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { WeftError, isWeftError } from '../common/errors.js';
import { readSubnetEnv } from '../lease/subnet-env.js';
import { CURRENT_VERSION, SUPPORTED_VERSIONS, parseNetConf, versionAtLeast, type JsonObject, type NetConf } from './conf.js';
import { buildDelegate, delegateType } from './delegate.js';
import { CniError } from './errors.js';
import { checkResult, findPlugin, invokePlugin, pluginVersions, type DelegateEnv } from './invoke.js';
import { listStates, readState, removeState, saveState, staleAttachments, validateAttachment, type Attachment, type SavedAttachment } from './state.js';

export interface Invocation {
  /** CNI_COMMAND. */
  readonly command: string;
  /** The network config as read from stdin. */
  readonly stdin: string;
  /** The process's environment: the CNI_* parameters, and what a delegate inherits. */
  readonly env: DelegateEnv;
  /** A line for stderr (the runtime's log): what was skipped or given up on. */
  readonly warn: (line: string) => void;
}

export const COMMANDS = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'] as const;

/** Runs the command; returns what goes to stdout ('' for nothing). Failures throw WeftErrors. */
export function runCommand(inv: Invocation): string {
  switch (inv.command) {
    case 'VERSION':
      return version(inv.stdin);
    case 'ADD':
      return add(parseNetConf(inv.stdin), inv);
    case 'DEL':
      return del(parseNetConf(inv.stdin), inv);
    case 'CHECK':
      return check(parseNetConf(inv.stdin), inv);
    case 'STATUS':
      return status(parseNetConf(inv.stdin), inv);
    case 'GC':
      return gc(parseNetConf(inv.stdin), inv);
    case '':
      throw new WeftError('WEFT_ERR_CNI_ENV', `CNI_COMMAND is not set: weft-cni is a CNI plugin, run by a container runtime with CNI_COMMAND=${COMMANDS.join('|')}`);
    default:
      throw new WeftError('WEFT_ERR_CNI_ENV', `CNI_COMMAND=${JSON.stringify(inv.command)} is not a CNI command (${COMMANDS.join(', ')})`);
  }
}

function version(stdin: string): string {
  let cniVersion: unknown;
  try {
    cniVersion = (JSON.parse(stdin) as JsonObject).cniVersion;
  } catch {
    // no config: answer in the current version
  }
  return JSON.stringify({ cniVersion: typeof cniVersion === 'string' ? cniVersion : CURRENT_VERSION, supportedVersions: SUPPORTED_VERSIONS });
}

function attachment(env: DelegateEnv, command: string): Attachment {
  const needs = command === 'DEL' ? ['CNI_CONTAINERID', 'CNI_IFNAME'] : ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'];
  const missing = needs.filter((k) => !env[k]);
  if (missing.length > 0) throw new WeftError('WEFT_ERR_CNI_ENV', `${command} needs ${missing.join(', ')}: not set`);
  const a = { containerID: env.CNI_CONTAINERID!, ifname: env.CNI_IFNAME! };
  validateAttachment(a);
  return a;
}

function label(a: Attachment): string {
  return `container ${a.containerID} interface ${a.ifname}`;
}

function add(conf: NetConf, inv: Invocation): string {
  const a = attachment(inv.env, 'ADD');
  const d = buildDelegate(conf, readSubnetEnv(conf.subnetFile));
  const type = delegateType(d);
  const plugin = findPlugin(type, inv.env.CNI_PATH);
  const text = JSON.stringify(d);
  const saved = saveState(conf.dataDir, a, text);
  try {
    return checkResult(type, invokePlugin(plugin, 'ADD', text, inv.env));
  } catch (err) {
    // The spec's rule for a failed delegate: run its DEL before failing, so nothing is left set up.
    try {
      invokePlugin(plugin, 'DEL', text, inv.env);
      removeState(saved);
    } catch (cleanup) {
      inv.warn(`weft-cni: ADD of ${label(a)} failed and the delegate's DEL after it failed too (the runtime's DEL will retry): ${(cleanup as Error).message}`);
    }
    throw err;
  }
}

/** A saved delegate config, or null when the file does not hold a JSON object. */
function parseSaved(text: string): JsonObject | null {
  try {
    const d = JSON.parse(text) as unknown;
    return typeof d === 'object' && d !== null && !Array.isArray(d) ? (d as JsonObject) : null;
  } catch {
    return null;
  }
}

/** The delegate config with the runtime's prevResult, for the versions that carry one. */
function withPrevResult(d: JsonObject, conf: NetConf): JsonObject {
  const v = typeof d.cniVersion === 'string' ? d.cniVersion : conf.cniVersion;
  return conf.prevResult === undefined || !versionAtLeast(v, '0.4.0') ? d : { ...d, prevResult: conf.prevResult };
}

function del(conf: NetConf, inv: Invocation): string {
  const a = attachment(inv.env, 'DEL');
  const netns = inv.env.CNI_NETNS ?? '';
  // The pod's netns may be gone already (the runtime removed it, the node rebooted): the delegate then only releases.
  const overrides = netns !== '' && !existsSync(netns) ? { CNI_NETNS: '' } : {};
  const saved = readState(conf.dataDir, a);
  let d = saved ? parseSaved(saved.text) : null;
  if (saved && !d) inv.warn(`weft-cni: ${saved.path} is not a JSON object; rebuilding the delegate config from the subnet file`);
  if (!d) {
    try {
      d = buildDelegate(conf, readSubnetEnv(conf.subnetFile));
    } catch (err) {
      if (!isWeftError(err, 'WEFT_ERR_SUBNET_FILE_MISSING') && !isWeftError(err, 'WEFT_ERR_SUBNET_FILE_INVALID')) throw err;
      inv.warn(`weft-cni: DEL of ${label(a)}: no saved delegate config and ${err.message}; nothing to release`);
      if (saved) removeState(saved.path);
      return '';
    }
  }
  const plugin = findPlugin(delegateType(d), inv.env.CNI_PATH);
  invokePlugin(plugin, 'DEL', JSON.stringify(withPrevResult(d, conf)), inv.env, overrides);
  if (saved) removeState(saved.path);
  return '';
}

function rangesOf(d: JsonObject): string {
  const ipam = d.ipam as JsonObject | undefined;
  return JSON.stringify(ipam?.ranges ?? null);
}

function check(conf: NetConf, inv: Invocation): string {
  if (!versionAtLeast(conf.cniVersion, '0.4.0')) {
    throw new WeftError('WEFT_ERR_CNI_VERSION', `CHECK needs cniVersion 0.4.0 or later; the network config has ${conf.cniVersion}`);
  }
  const a = attachment(inv.env, 'CHECK');
  const saved = readState(conf.dataDir, a);
  if (!saved) {
    throw new CniError('WEFT_ERR_CNI_CHECK', `no saved delegate config for ${label(a)} in ${conf.dataDir}`, {
      details: 'ADD saves one before it runs the delegate and DEL removes it: this attachment was not added, or was deleted',
    });
  }
  const d = parseSaved(saved.text);
  if (!d) throw new CniError('WEFT_ERR_CNI_CHECK', `${saved.path} is not a JSON object`);
  const expected = buildDelegate(conf, readSubnetEnv(conf.subnetFile));
  if (rangesOf(d) !== rangesOf(expected)) {
    throw new CniError('WEFT_ERR_CNI_CHECK', `the node's subnet changed: ${label(a)} was added with ranges ${rangesOf(d)}, ${conf.subnetFile} now gives ${rangesOf(expected)}`, {
      details: 'the pod\'s address is outside this node\'s lease: weftd could not keep its subnet; the pod needs to be recreated',
    });
  }
  if (d.mtu !== expected.mtu) {
    throw new CniError('WEFT_ERR_CNI_CHECK', `the overlay MTU changed: ${label(a)} was added with MTU ${String(d.mtu)}, ${conf.subnetFile} now gives ${String(expected.mtu)}`);
  }
  const plugin = findPlugin(delegateType(d), inv.env.CNI_PATH);
  invokePlugin(plugin, 'CHECK', JSON.stringify(withPrevResult(d, conf)), inv.env);
  return '';
}

/** Whether the delegate takes 1.1 commands (STATUS, GC): only for a 1.1.0 config, and a plugin that says it speaks 1.1.0. */
function speaks11(plugin: string, conf: NetConf, env: DelegateEnv): boolean {
  return versionAtLeast(conf.cniVersion, '1.1.0') && pluginVersions(plugin, conf.cniVersion, env).includes('1.1.0');
}

function status(conf: NetConf, inv: Invocation): string {
  const d = buildDelegate(conf, readSubnetEnv(conf.subnetFile));
  if (!inv.env.CNI_PATH) return '';
  const plugin = findPlugin(delegateType(d), inv.env.CNI_PATH);
  if (speaks11(plugin, conf, inv.env)) invokePlugin(plugin, 'STATUS', JSON.stringify(d), inv.env);
  return '';
}

function gc(conf: NetConf, inv: Invocation): string {
  if (!conf.validAttachments) throw new WeftError('WEFT_ERR_CONFIG_INVALID', 'invalid network config: GC needs "cni.dev/valid-attachments"');
  const { saved, temps } = listStates(conf.dataDir);
  const configs = new Map<string, JsonObject | null>();
  const networkOf = (s: SavedAttachment): string | null => {
    let d: JsonObject | null = null;
    try {
      d = parseSaved(readFileSync(s.path, 'utf8'));
    } catch {
      // unreadable: not ours to judge
    }
    configs.set(s.path, d);
    return d && typeof d.name === 'string' ? d.name : null;
  };
  const stale = staleAttachments(saved, conf.validAttachments, conf.name, networkOf);
  const failures: string[] = [];
  for (const s of stale) {
    const d = configs.get(s.path)!;
    try {
      const plugin = findPlugin(delegateType(d), inv.env.CNI_PATH);
      // flannel's files carry no interface name; Kubernetes runtimes name the pod's eth0.
      invokePlugin(plugin, 'DEL', JSON.stringify(d), inv.env, { CNI_CONTAINERID: s.containerID, CNI_IFNAME: s.ifname ?? 'eth0', CNI_NETNS: '' });
      removeState(s.path);
    } catch (err) {
      failures.push(`${s.path}: ${(err as Error).message}`);
    }
  }
  // GC runs while no ADD or DEL does (the spec's rule for runtimes): a temp file now is one a crashed ADD left.
  for (const t of temps) rmSync(t, { force: true });
  if (versionAtLeast(conf.cniVersion, '1.1.0')) {
    try {
      const d = buildDelegate(conf, readSubnetEnv(conf.subnetFile));
      const plugin = findPlugin(delegateType(d), inv.env.CNI_PATH);
      if (speaks11(plugin, conf, inv.env)) invokePlugin(plugin, 'GC', JSON.stringify({ ...d, 'cni.dev/valid-attachments': conf.validAttachments }), inv.env);
    } catch (err) {
      if (isWeftError(err, 'WEFT_ERR_SUBNET_FILE_MISSING')) inv.warn(`weft-cni: GC: ${err.message}; the delegate's GC is skipped`);
      else failures.push(`delegate GC: ${(err as Error).message}`);
    }
  }
  if (failures.length > 0) {
    throw new CniError('WEFT_ERR_CNI_DELEGATE', `GC could not clean up everything (${failures.length} failure${failures.length === 1 ? '' : 's'}; ${stale.length} stale attachment${stale.length === 1 ? '' : 's'} found)`, { details: failures.join('; ') });
  }
  return '';
}
