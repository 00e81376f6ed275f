/**
 * Files the plugin and its installer replace in place: a reader (the runtime
 * scanning its CNI directories, a DEL after a crash) sees the old file or the
 * new one, never half of one, and what a call wrote survives a crash after it
 * returned. Each is made as a temp file in the same directory, synced, renamed
 * over the target, then the directory is synced (the rename is durable only
 * once the directory is).
 */
import { closeSync, fchmodSync, fsyncSync, openSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';

/** Writes `data` to `path` through `temp` with `mode` (whatever the umask). On failure `temp` is gone and the error is the cause. */
export function writeDurably(path: string, temp: string, data: string | Buffer, mode: number): void {
  replaceDurably(path, temp, () => {
    const fd = openSync(temp, 'w', mode);
    try {
      fchmodSync(fd, mode);
      writeFileSync(fd, data);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  });
}

/** Makes `path` a symlink to `target` through `temp`, the same way. */
export function linkDurably(path: string, temp: string, target: string): void {
  replaceDurably(path, temp, () => {
    rmSync(temp, { force: true });
    symlinkSync(target, temp);
  });
}

function replaceDurably(path: string, temp: string, make: () => void): void {
  try {
    make();
    renameSync(temp, path);
    syncDirectory(dirname(path));
  } catch (err) {
    removeQuietly(temp);
    throw err;
  }
}

function syncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Removes `path` if it is there; a failure here means the directory itself is the problem, which the caller reports. */
function removeQuietly(path: string): void {
  try {
    rmSync(path, { force: true });
  } catch {
    // see above
  }
}
