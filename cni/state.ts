/**
 * The delegate config saved per attachment in dataDir, written before the
 * delegate's ADD runs and read by DEL: DEL must release what ADD set up even
 * when the subnet file has changed or gone since.
 *
 * One file per attachment (container ID + interface name, the spec's key),
 * named `<containerID>@<ifname>` (a container ID has no `@`, so the name
 * splits back unambiguously for GC). flannel's plugin named its files
 * `<containerID>` alone; DEL and GC read those too, so a node moving from
 * flannel's plugin to weft's still releases the pods flannel's plugin added.
 * Written atomically (temp file, fsync, rename, fsync of the directory),
 * mode 0600 in a 0700 directory, as flannel does.
 */
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { WeftError } from '../common/errors.js';
import { writeDurably } from './durable.js';

/** An attachment: the spec's (CNI_CONTAINERID, CNI_IFNAME). */
export interface Attachment {
  readonly containerID: string;
  readonly ifname: string;
}

/** A saved file found in dataDir. `ifname` is null for a file flannel's plugin wrote. */
export interface SavedAttachment {
  readonly containerID: string;
  readonly ifname: string | null;
  readonly path: string;
}

/** Spec: a container ID starts with an alphanumeric, then alphanumerics, `_`, `.`, `-`. */
const CONTAINER_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** Linux's rule for interface names (dev_valid_name), printable ASCII only: at most 15 bytes, no `/`, `:` or space, not `.` or `..`. */
const IFNAME = /^[!-.0-9;-~]{1,15}$/;

const TEMP_PREFIX = '.tmp-';

/** Throws WEFT_ERR_CNI_ENV naming the variable when the container ID or interface name is not valid. */
export function validateAttachment(a: Attachment): void {
  if (!CONTAINER_ID.test(a.containerID) || a.containerID.length > 1024) {
    throw new WeftError('WEFT_ERR_CNI_ENV', `CNI_CONTAINERID=${JSON.stringify(a.containerID)} is not a container ID (a letter or digit, then letters, digits, _ . -)`);
  }
  if (!IFNAME.test(a.ifname) || a.ifname === '.' || a.ifname === '..') {
    throw new WeftError('WEFT_ERR_CNI_ENV', `CNI_IFNAME=${JSON.stringify(a.ifname)} is not an interface name (1-15 printable characters, no / : or space)`);
  }
}

/** The saved file's path for `a` (validated first: no name from the environment reaches a path unchecked). */
export function statePath(dataDir: string, a: Attachment): string {
  validateAttachment(a);
  return join(dataDir, `${a.containerID}@${a.ifname}`);
}

function ioError(what: string, err: unknown): WeftError {
  return new WeftError('WEFT_ERR_CNI_IO', `${what}: ${(err as Error).message}`, { cause: err });
}

/** Saves `text` as the attachment's delegate config; on return it is on disk. */
export function saveState(dataDir: string, a: Attachment, text: string): string {
  const path = statePath(dataDir, a);
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    writeDurably(path, join(dataDir, `${TEMP_PREFIX}${a.containerID}@${a.ifname}.${process.pid}`), text, 0o600);
  } catch (err) {
    throw ioError(`cannot save the delegate config in ${dataDir}`, err);
  }
  return path;
}

/**
 * The attachment's saved delegate config, or null when there is none. Falls
 * back to flannel's file name (`<containerID>`) when weft's is absent.
 */
export function readState(dataDir: string, a: Attachment): { path: string; text: string } | null {
  for (const path of [statePath(dataDir, a), join(dataDir, a.containerID)]) {
    try {
      return { path, text: readFileSync(path, 'utf8') };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR' || code === 'EISDIR') continue;
      throw ioError(`cannot read the saved delegate config ${path}`, err);
    }
  }
  return null;
}

export function removeState(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch (err) {
    throw ioError(`cannot remove the saved delegate config ${path}`, err);
  }
}

/** Every saved file in `dataDir` (none if it does not exist), and the temp files a crashed write left. */
export function listStates(dataDir: string): { saved: SavedAttachment[]; temps: string[] } {
  let names: string[];
  try {
    names = readdirSync(dataDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { saved: [], temps: [] };
    throw ioError(`cannot list ${dataDir}`, err);
  }
  const saved: SavedAttachment[] = [];
  const temps: string[] = [];
  for (const name of names) {
    if (name.startsWith(TEMP_PREFIX)) {
      temps.push(join(dataDir, name));
      continue;
    }
    const at = name.indexOf('@');
    const containerID = at < 0 ? name : name.slice(0, at);
    const ifname = at < 0 ? null : name.slice(at + 1);
    if (!CONTAINER_ID.test(containerID) || (ifname !== null && !IFNAME.test(ifname))) continue;
    saved.push({ containerID, ifname, path: join(dataDir, name) });
  }
  return { saved, temps };
}

/**
 * GC's choice: the saved attachments of network `network` that the runtime
 * no longer lists. `networkOf` says which network a saved file belongs to
 * (its delegate config's name; null when unreadable): dataDir may be shared
 * by several networks, and GC of one must not touch another's. A file of
 * flannel's (no interface name) is still in use while its container ID is.
 */
export function staleAttachments(
  saved: readonly SavedAttachment[],
  valid: readonly Attachment[],
  network: string,
  networkOf: (s: SavedAttachment) => string | null,
): SavedAttachment[] {
  const keys = new Set(valid.map((a) => `${a.containerID}@${a.ifname}`));
  const containers = new Set(valid.map((a) => a.containerID));
  return saved.filter((s) => {
    if (networkOf(s) !== network) return false;
    return s.ifname === null ? !containers.has(s.containerID) : !keys.has(`${s.containerID}@${s.ifname}`);
  });
}

/** Removes a temp file after a failure, which stays the error to report. */
