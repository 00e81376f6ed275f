import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { SoakResults } from '../bench/soak-results.js';
import { tempDir } from './harness/at-exit.js';

const SOAK = fileURLToPath(new URL('../bench/soak.js', import.meta.url));
/** A fixed seed: a failure here replays with `npm run soak -- --seconds 60 --seed 19 --exclude ...`. */
const SEED = 19;
/**
 * Kinds weft does not survive yet, each with why; take a kind out of this list once it passes. Empty: the last
 * one, compact (etcd3 threw from its stream handler on a response for a watch cancelled after a compaction, and
 * weftd exited), passes since the etcd client drops such responses.
 */
export const SOAK_EXCLUDED: string[] = [];

describe('chaos soak: 60 s of seeded faults on five hosts and a 3-member etcd, no invariant violated @real', function () {
  this.timeout(240_000);
  let child: ChildProcess | null = null;
  after(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
  });

  it(`seed ${SEED}: every fault kind weft handles, pings lost only where a fault's bound allows, kernels equal the leases within 2 s of quiet`, async () => {
    const out = join(tempDir('weft-soak-'), 'soak.json');
    const args = [SOAK, '--seconds', '60', '--seed', String(SEED), ...(SOAK_EXCLUDED.length > 0 ? ['--exclude', SOAK_EXCLUDED.join(',')] : []), '--out', out];
    let output = '';
    const code = await new Promise<number | null>((resolve) => {
      child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      child.once('exit', resolve);
    });
    const results = JSON.parse(readFileSync(out, 'utf8')) as SoakResults;
    const summary = output.slice(output.indexOf('| '));
    console.log(summary.replace(/^/gm, '      '));
    expect(results.violations, output.slice(-4000)).to.deep.equal([]);
    expect(code).to.equal(0);
    expect(results.seed).to.equal(SEED);
    expect(results.excluded).to.have.members(SOAK_EXCLUDED);
    expect(results.faults.reduce((n, f) => n + f.injected, 0), 'faults injected').to.be.at.least(8);
    expect(results.pings.sent, 'pings sent').to.be.above(3000);
    expect(results.pings.unexplained).to.equal(0);
    expect(results.quiet.checks).to.be.at.least(3);
  });
});
