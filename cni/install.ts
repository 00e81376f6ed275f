/**
 * Installing weft-cni on a node (`weftctl cni install`): the plugin into the
 * runtime's CNI bin directory under the name the conflist uses, then the
 * conflist into its conf directory. Each lands atomically (temp file in the
 * same directory, fsync, rename): a runtime reading the directories at any
 * moment sees the old file or the new one, never half of one, and never a
 * conflist naming a plugin that is not there yet.
 *
 * The conflist is the same on every node: weft's plugin reads the node's
 * subnet from the subnet file when a pod is added, so nothing per node is
 * written here (unlike a hand-made bridge conflist with the node's subnet).
 */
import { mkdirSync, readFileSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_SUBNET_FILE } from '../common/defaults.js';
import { WeftError } from '../common/errors.js';
import { linkDurably, writeDurably } from './durable.js';

/** The names the plugin is installed under: its own, or flannel's (an existing flannel conflist then works unchanged). */
export const PLUGIN_NAMES = ['weft', 'flannel'] as const;
export type PluginName = (typeof PLUGIN_NAMES)[number];

/** The conflist's cniVersion unless told otherwise: what Debian 12's plugins (containernetworking-plugins 1.1) speak. */
export const DEFAULT_CONFLIST_VERSION = '1.0.0';

export interface InstallOptions {
  readonly binDir: string;
  readonly confDir: string;
  readonly name: PluginName;
  /** The plugin to install; default: dist/bin/weft-cni.cjs of this installation. */
  readonly source?: string;
  /** A symlink to the source (it then follows upgrades in place) instead of a copy. */
  readonly link?: boolean;
  /** weftd's --subnet-file, when it is not the default. */
  readonly subnetFile?: string;
  readonly cniVersion?: string;
}

export interface Installed {
  readonly plugin: string;
  readonly conflist: string;
  readonly source: string;
  readonly link: boolean;
}

/** dist/bin/weft-cni.cjs beside this module's build (dist/cni/install.js) or bundle (dist/bin/weftctl-bundle.cjs). */
export function defaultPluginSource(): string {
  return fileURLToPath(new URL('../bin/weft-cni.cjs', import.meta.url));
}

/**
 * The conflist: weft's plugin with kube-flannel's delegate settings (pods
 * reach each other through the bridge and everything else through the
 * gateway), then portmap for hostPort. As flannel's: network name `cbr0`
 * when installed as `flannel`, so host-local's reservations carry over.
 */
export function conflist(o: Pick<InstallOptions, 'name' | 'subnetFile' | 'cniVersion'>): Record<string, unknown> {
  const plugin: Record<string, unknown> = { type: o.name };
  if (o.subnetFile && o.subnetFile !== DEFAULT_SUBNET_FILE) plugin.subnetFile = o.subnetFile;
  plugin.delegate = { hairpinMode: true, isDefaultGateway: true };
  return {
    name: o.name === 'flannel' ? 'cbr0' : 'weft',
    cniVersion: o.cniVersion ?? DEFAULT_CONFLIST_VERSION,
    plugins: [plugin, { type: 'portmap', capabilities: { portMappings: true } }],
  };
}

/** The conflist's file name: `10-<name>.conflist`, first in the directory's order as kube-flannel's is. */
export function conflistName(name: PluginName): string {
  return `10-${name}.conflist`;
}

function ioError(what: string, err: unknown): WeftError {
  return new WeftError('WEFT_ERR_CNI_IO', `${what}: ${(err as Error).message}`, { cause: err });
}

/** Writes `data` to `dir/base` durably (see durable.ts), making `dir` first. */
function writeAtomic(dir: string, base: string, data: string | Buffer, mode: number): string {
  const path = join(dir, base);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    writeDurably(path, join(dir, `.${base}.tmp-${process.pid}`), data, mode);
  } catch (err) {
    throw ioError(`cannot write ${path}`, err);
  }
  return path;
}

function linkAtomic(dir: string, base: string, target: string): string {
  const path = join(dir, base);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    linkDurably(path, join(dir, `.${base}.tmp-${process.pid}`), target);
  } catch (err) {
    throw ioError(`cannot link ${path} to ${target}`, err);
  }
  return path;
}

/** Installs the plugin, then the conflist. */
export function install(o: InstallOptions): Installed {
  if (!(PLUGIN_NAMES as readonly string[]).includes(o.name)) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', `invalid option --name: "${o.name}" (one of ${PLUGIN_NAMES.join(', ')})`);
  }
  const given = o.source ?? defaultPluginSource();
  let source: string;
  let code: Buffer;
  try {
    source = realpathSync(given);
    code = readFileSync(source);
  } catch (err) {
    throw ioError(`cannot read the plugin ${given} (built by npm run build)`, err);
  }
  if (!code.subarray(0, 2).equals(Buffer.from('#!'))) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', `${source} is not an executable script: not weft-cni`);
  }
  const link = o.link === true;
  const plugin = link ? linkAtomic(o.binDir, o.name, source) : writeAtomic(o.binDir, o.name, code, 0o755);
  const text = `${JSON.stringify(conflist(o), null, 2)}\n`;
  const list = writeAtomic(o.confDir, conflistName(o.name), text, 0o644);
  return { plugin, conflist: list, source, link };
}

/** Removes a temp file after a failure, which stays the error to report. */
