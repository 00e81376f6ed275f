/**
 * The harness's last-resort cleanup: a test or benchmark run stopped with
 * Ctrl-C must not leave its namespaces or the processes it started in them.
 * A worker (this file, run with WORKER_FLAG) creates a namespace, starts a
 * long `sleep` in it, makes a temporary directory and reports all three; the
 * test sends it SIGINT, as a terminal's Ctrl-C would (or lets it exit without
 * tearing down), and checks that all three are gone.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { tempDir } from './harness/at-exit.js';
import { Netns, cleanupLeftovers, listNamespaces } from './harness/netns.js';

const SELF = fileURLToPath(import.meta.url);
const WORKER_FLAG = '--at-exit-worker';

interface WorkerReport {
  namespace: string;
  sleepPid: number;
  tempDir: string;
}

/** Worker side: a namespace with a process in it and a temporary directory, then waits to be interrupted (or exits, `exit`). */
async function worker(mode: string | undefined): Promise<void> {
  const ns = await Netns.create('atexit');
  const sleeper = ns.spawn('sleep', ['600']);
  await once(sleeper, 'spawn');
  const dir = tempDir('weft-atexit-');
  writeFileSync(join(dir, 'data'), 'x');
  const report: WorkerReport = { namespace: ns.name, sleepPid: sleeper.pid ?? 0, tempDir: dir };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  if (mode === 'exit') process.exit(0);
  if (mode === 'own-handler') {
    // A program that handles Ctrl-C itself (as the demo's --keep does) tears down on its own terms.
    process.once('SIGINT', () => {
      process.stdout.write('tearing down\n');
      setTimeout(() => process.exit(0), 50);
    });
  }
  setInterval(() => undefined, 60_000); // stays up until a signal ends it
}

/** Starts a worker and waits for its report. */
async function startWorker(mode: 'wait' | 'exit' | 'own-handler') {
  const child = spawn(process.execPath, [SELF, WORKER_FLAG, mode], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
  const lines: string[] = [];
  const reader = createInterface({ input: child.stdout! });
  const [line] = (await once(reader, 'line')) as [string];
  reader.on('line', (l) => lines.push(l));
  return { child, exited, report: JSON.parse(line) as WorkerReport, output: lines };
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
  worker(process.argv[3]).catch((err: Error) => {
    process.stderr.write(`${err.stack ?? err.message}\n`);
    process.exit(1);
  });
} else {
  describe('test harness cleanup at exit and on interrupt @real', function () {
    this.timeout(20_000);
    before(async () => {
      await cleanupLeftovers();
    });

    it('SIGINT deletes the run’s namespaces, kills what it started in them and removes its temporary directories, exiting 130', async () => {
      const { child, exited, report } = await startWorker('wait');
      expect(await listNamespaces()).to.include(report.namespace);
      expect(running(report.sleepPid), 'sleep running before the interrupt').to.equal(true);
      expect(existsSync(report.tempDir)).to.equal(true);

      child.kill('SIGINT');
      const [code, signal] = await exited;
      expect({ code, signal }).to.deep.equal({ code: 130, signal: null });
      expect(await listNamespaces()).to.not.include(report.namespace);
      expect(running(report.sleepPid), 'sleep killed').to.equal(false);
      expect(existsSync(report.tempDir), 'temporary directory removed').to.equal(false);
    });

    it('a program with its own SIGINT handler runs it instead of exiting at once, and still leaves nothing', async () => {
      const { child, exited, report, output } = await startWorker('own-handler');
      child.kill('SIGINT');
      const [code, signal] = await exited;
      expect({ code, signal }).to.deep.equal({ code: 0, signal: null });
      expect(output).to.deep.equal(['tearing down']);
      expect(await listNamespaces()).to.not.include(report.namespace);
      expect(running(report.sleepPid), 'sleep killed').to.equal(false);
      expect(existsSync(report.tempDir), 'temporary directory removed').to.equal(false);
    });

    it('a run that exits without tearing down leaves nothing either', async () => {
      const { exited, report } = await startWorker('exit');
      const [code] = await exited;
      expect(code).to.equal(0);
      expect(await listNamespaces()).to.not.include(report.namespace);
      expect(running(report.sleepPid), 'sleep killed').to.equal(false);
      expect(existsSync(report.tempDir), 'temporary directory removed').to.equal(false);
    });
  });
}
