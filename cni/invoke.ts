/**
 * Running a delegate plugin by the spec's delegation protocol: found by name
 * in the directories of CNI_PATH, run with weft-cni's own environment (the
 * CNI_* variables included) and the config on stdin, its stderr passed
 * through to weft-cni's, its result or error object read from stdout.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, statSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../common/errors.js';
import { CniError } from './errors.js';

/**
 * A plugin name that can only name a file inside a CNI_PATH directory: what
 * the spec allows for `type` (no path separators), held to the characters
 * plugin names use.
 */
const PLUGIN_NAME = /^[A-Za-z0-9][A-Za-z0-9_.+-]*$/;

/** Throws WEFT_ERR_CONFIG_INVALID unless `type` is a plugin name. */
export function validatePluginName(type: string): void {
  if (!PLUGIN_NAME.test(type) || type.length > 255) {
    throw new WeftError('WEFT_ERR_CONFIG_INVALID', `invalid network config: plugin type ${JSON.stringify(type)} is not a plugin name (a letter or digit, then letters, digits, _ . + -)`);
  }
}

/** The executable for plugin `type`: the first `<dir>/<type>` of CNI_PATH that is an executable file. */
export function findPlugin(type: string, cniPath: string | undefined): string {
  validatePluginName(type);
  const dirs = (cniPath ?? '').split(':').filter((d) => d !== '');
  if (dirs.length === 0) throw new WeftError('WEFT_ERR_CNI_ENV', `CNI_PATH is not set: cannot find the delegate plugin "${type}"`);
  for (const dir of dirs) {
    const path = join(dir, type);
    try {
      if (!statSync(path).isFile()) continue;
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  throw new CniError('WEFT_ERR_CNI_DELEGATE', `delegate plugin "${type}" not found in CNI_PATH=${cniPath}`, {
    details: `install the "${type}" plugin (e.g. Debian's containernetworking-plugins) in one of those directories`,
  });
}

/** The environment a delegate runs with: weft-cni's own, with these variables set (or cleared when ''). */
export type DelegateEnv = Readonly<Record<string, string | undefined>>;

/**
 * Runs the plugin at `path` for `command` with `config` on stdin. Returns
 * its stdout (a result for ADD, usually empty otherwise). A failure is a
 * CniError (WEFT_ERR_CNI_DELEGATE) that keeps the delegate's CNI code, msg
 * and details when it printed an error object.
 */
export function invokePlugin(path: string, command: string, config: string, env: DelegateEnv, overrides: DelegateEnv = {}): string {
  const name = path.slice(path.lastIndexOf('/') + 1);
  const child = spawnSync(path, [], {
    input: config,
    env: { ...env, ...overrides, CNI_COMMAND: command },
    stdio: ['pipe', 'pipe', 'inherit'],
    encoding: 'utf8',
    maxBuffer: 16 << 20,
  });
  if (child.error) {
    throw new CniError('WEFT_ERR_CNI_DELEGATE', `cannot run delegate plugin ${path}: ${child.error.message}`, { cause: child.error });
  }
  const stdout = child.stdout ?? '';
  if (child.status === 0) return stdout;
  const reported = parseErrorObject(stdout);
  if (reported) {
    throw new CniError('WEFT_ERR_CNI_DELEGATE', `delegate ${name} ${command} failed: ${reported.msg}`, { details: reported.details, cniCode: reported.code });
  }
  const how = child.signal ? `was killed by ${child.signal}` : `exited with status ${child.status}`;
  throw new CniError('WEFT_ERR_CNI_DELEGATE', `delegate ${name} ${command} ${how}`, { details: stdout.trim().slice(0, 2000) || 'no error object on its stdout' });
}

function parseErrorObject(text: string): { code: number; msg: string; details: string } | null {
  try {
    const e = JSON.parse(text) as Record<string, unknown>;
    if (typeof e !== 'object' || e === null || typeof e.code !== 'number') return null;
    return { code: e.code, msg: typeof e.msg === 'string' ? e.msg : '', details: typeof e.details === 'string' ? e.details : '' };
  } catch {
    return null;
  }
}

/** The spec versions the plugin at `path` supports (its VERSION answer); none if it gives no answer. */
export function pluginVersions(path: string, cniVersion: string, env: DelegateEnv): string[] {
  try {
    const out = JSON.parse(invokePlugin(path, 'VERSION', JSON.stringify({ cniVersion }), env)) as { supportedVersions?: unknown };
    return Array.isArray(out.supportedVersions) ? out.supportedVersions.filter((v): v is string => typeof v === 'string') : [];
  } catch {
    return [];
  }
}

/** Parses an ADD result: it must be a JSON object (printed on as it came). */
export function checkResult(name: string, stdout: string): string {
  try {
    const r = JSON.parse(stdout) as unknown;
    if (typeof r === 'object' && r !== null && !Array.isArray(r)) return stdout.trim();
  } catch {
    // below
  }
  throw new CniError('WEFT_ERR_CNI_DELEGATE', `delegate ${name} ADD printed no result`, { details: stdout.trim().slice(0, 2000) || '(empty stdout)' });
}
