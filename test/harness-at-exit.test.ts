/**
 * The harness's last-resort cleanup: a test or benchmark run stopped with
 * Ctrl-C must not leave its namespaces or the processes it started in them.
 * A worker (this file, run with WORKER_FLAG) creates a namespace, starts a
 * long `sleep` in it and reports both; the test sends it SIGINT, as a
 * terminal's Ctrl-C would, and checks that both are gone.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Netns, cleanupLeftovers, listNamespaces } from './harness/netns.js';

const SELF = fileURLToPath(import.meta.url);
const WORKER_FLAG = '--at-exit-worker';

interface WorkerReport {
  namespace: string;
  sleepPid: number;
}

/** Worker side: a namespace with a process in it, then waits to be interrupted. */
async function worker(): Promise<void> {
  const ns = await Netns.create('atexit');
  const sleeper = ns.spawn('sleep', ['600']);
  await once(sleeper, 'spawn');
  const report: WorkerReport = { namespace: ns.name, sleepPid: sleeper.pid ?? 0 };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  setInterval(() => undefined, 60_000); // stays up until a signal ends it
}

/** Running, as opposed to gone or a zombie (its new parent reaps it in its own time). */
function running(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'latin1'));
  } catch {
    return false;
  }
}

if (process.argv[2] === WORKER_FLAG) {
  worker().catch((err: Error) => {
    process.stderr.write(`${err.stack ?? err.message}\n`);
    process.exit(1);
  });
} else {
  describe('test harness cleanup on interrupt @real', function () {
    this.timeout(20_000);
    before(async () => {
      await cleanupLeftovers();
    });

    it('SIGINT deletes the run’s namespaces and kills what it started in them, exiting 130', async () => {
      const child = spawn(process.execPath, [SELF, WORKER_FLAG], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
      const report = JSON.parse(line) as WorkerReport;
      expect(await listNamespaces()).to.include(report.namespace);
      expect(running(report.sleepPid), 'sleep running before the interrupt').to.equal(true);

      child.kill('SIGINT');
      const [code, signal] = await exited;
      expect({ code, signal }).to.deep.equal({ code: 130, signal: null });
      expect(await listNamespaces()).to.not.include(report.namespace);
      expect(running(report.sleepPid), 'sleep killed').to.equal(false);
    });
  });
}
