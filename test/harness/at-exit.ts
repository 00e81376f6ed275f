/**
 * Last-resort cleanup for tests and benchmarks. A process 'exit' handler runs
 * on a normal exit and on process.exit(), but not when a signal ends the
 * process: a run interrupted with Ctrl-C used to leave its etcd, its weftds and
 * its namespaces behind. So SIGINT, SIGTERM and SIGHUP become an exit with the
 * shell's status for that signal (128 + its number), which runs the cleanups
 * registered here, unless the program listens for that signal itself: then it
 * is in charge (the demo's --keep waits for Ctrl-C and tears down in order),
 * and only a second signal, once its own listener is gone, exits here.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
const cleanups: Array<() => void> = [];
const tempDirs = new Set<string>();
let installed = false;

/** Runs `cleanup` when the process exits (kills of processes the run started, namespace deletion). */
export function atExit(cleanup: () => void): void {
  install();
  cleanups.push(cleanup);
}

/**
 * Removes `dir` (a temporary directory of this run) at exit, after every
 * atExit cleanup, whether or not the run removed it itself: etcd data,
 * cluster and PKI directories used to pile up in /tmp, from interrupted runs
 * and from helpers with no teardown.
 */
export function removeAtExit(dir: string): void {
  install();
  tempDirs.add(dir);
}

/** A fresh directory under the system's temporary directory, named `prefix` + random, removed at exit at the latest. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  removeAtExit(dir);
  return dir;
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', runAll);
  for (const signal of SIGNALS) {
    process.on(signal, () => {
      if (process.listenerCount(signal) === 1) process.exit(128 + constants.signals[signal]);
    });
  }
}

function runAll(): void {
  // Processes first (they may still write into the directories), then the directories.
  for (const cleanup of cleanups.splice(0)) {
    try {
      cleanup();
    } catch {
      // the next cleanup still runs
    }
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}
