/**
 * Last-resort cleanup for tests and benchmarks. A process 'exit' handler runs
 * on a normal exit and on process.exit(), but not when a signal ends the
 * process: a run interrupted with Ctrl-C used to leave its etcd, its weftds and
 * its namespaces behind. The first registration therefore also turns SIGINT,
 * SIGTERM and SIGHUP into an exit with the shell's status for that signal
 * (128 + its number), which runs every handler registered here, unless the
 * program listens for that signal itself: then it is in charge (the demo's
 * --keep waits for Ctrl-C and tears down in order), and only a second signal,
 * once its own listener is gone, exits here.
 */
import { rmSync } from 'node:fs';
import { constants } from 'node:os';

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
let signalsHandled = false;

export function atExit(cleanup: () => void): void {
  process.on('exit', cleanup);
  if (signalsHandled) return;
  signalsHandled = true;
  for (const signal of SIGNALS) {
    process.on(signal, () => {
      if (process.listenerCount(signal) === 1) process.exit(128 + constants.signals[signal]);
    });
  }
}

const tempDirs = new Set<string>();

/**
 * Removes `dir` (a temporary directory of this run) at exit, whether or not
 * the run removed it itself: etcd data, cluster and PKI directories used to
 * pile up in /tmp, from interrupted runs and from helpers with no teardown.
 * Registered after the harnesses' process kills, so it runs after them.
 */
export function removeAtExit(dir: string): void {
  if (tempDirs.size === 0) atExit(removeTempDirs);
  tempDirs.add(dir);
}

function removeTempDirs(): void {
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}
