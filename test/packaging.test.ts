/**
 * The shipped weftd (dist/bin/weftd.cjs, built by scripts/bundle.mjs): --version and
 * --help through the bundle, the code cache the build made, and the Node flags
 * and malloc settings its launcher sets. One host: the last two look at a
 * running weftd.
 */
import { expect } from 'chai';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster, WEFTD } from './harness/cluster.js';
import { eventually } from './harness/netns.js';
import type { NodeStatus } from '../daemon/status.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * What examples/weftd.service's ExecStart, installed at this checkout, runs
 * weftd through (the words before dist/bin/weftd.cjs); throws unless it runs
 * this build's weftd.
 */
function unitLauncher(): string[] {
  const unit = readFileSync(`${ROOT}examples/weftd.service`, 'utf8');
  const execStart = /^ExecStart=(.*)$/m.exec(unit)![1]!.replaceAll('/opt/weft/', ROOT).split(/\s+/);
  const at = execStart.indexOf(WEFTD);
  if (at < 0) throw new Error(`the unit's ExecStart does not run ${WEFTD}: ${execStart.join(' ')}`);
  return execStart.slice(0, at);
}

describe('packaging: the shipped weftd @real', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  before(async () => {
    cluster = await Cluster.create({ hosts: 1 });
    cluster.node(1).start();
    await cluster.node(1).waitReady();
  });
  after(async () => cluster?.destroy());

  it('--version prints the version and exits 0 without starting the daemon', async () => {
    const h1 = cluster.node(1);
    const started = Date.now();
    const out = await h1.ns.exec(WEFTD, '--version', '--config', h1.configFile);
    expect(out.trim()).to.equal(JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version);
    expect(Date.now() - started, 'exited at once, no daemon').to.be.below(10_000);
  });

  it('--help lays the options out in columns: yargs\' layout (cliui), which the bundle loads on first use, works', async () => {
    const out = await cluster.node(1).ns.exec(WEFTD, '--help');
    expect(out).to.match(/^usage: weftd /);
    // Each option with its description in a column beside it, wrapped at 80 (no terminal here).
    expect(out).to.match(/^ {2}--resync-interval {2,}seconds between full kernel reconcile passes$/m);
    expect(Math.max(...out.split('\n').map((l) => l.length))).to.be.at.most(80);
  });

  it('the shipped weftd compiles from the code cache the build made, and says so in its first log line', () => {
    const first = readFileSync(cluster.node(1).logFile, 'utf8').split('\n')[0];
    expect(first).to.match(/weftd \S+ starting \(Node v[\d.]+; options read \d+ ms after process start, code cache used\)/);
  });

  it('the shipped weftd runs with its launcher\'s Node flags and malloc settings (scripts/bundle.mjs)', () => {
    const pid = cluster.node(1).pid!;
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    expect(cmdline).to.include('--max-semi-space-size=1');
    expect(environ).to.include.members(['MALLOC_MMAP_THRESHOLD_=131072', 'MALLOC_TRIM_THRESHOLD_=1048576', 'MALLOC_ARENA_MAX=2']);
  });

  it('raw-socket\'s addon, built by npm into node_modules and left out of the bundle, is what the shipped weftd probes with', async () => {
    const bundle = new URL('../bin/weftd-bundle.cjs', import.meta.url);
    // raw-socket's index.js (which requires ./build/Release/raw.node) bundled in would name its SocketWrap.
    expect(readFileSync(bundle, 'latin1')).not.to.contain('SocketWrap');
    const pkg = createRequire(bundle).resolve('raw-socket/package.json');
    expect(existsSync(join(dirname(pkg), 'build', 'Release', 'raw.node')), 'the addon npm ci built').to.equal(true);
    const h1 = cluster.node(1);
    const probes = async () => (JSON.parse((await h1.http('/status')).body) as NodeStatus).probes;
    await eventually(async () => (await probes())?.method != null, 15_000, 'probing started');
    expect(await probes()).to.include({ method: 'icmp', fallbackReason: null });
  });

  // Every documented way: the executable (the README's), `node dist/bin/weftd.cjs` (many units and scripts), and
  // the example systemd unit's ExecStart. Each must end up as the same process: cache used, flags and malloc set.
  for (const [mode, launch] of [
    ['the executable', () => []],
    ['node dist/bin/weftd.cjs', () => [process.execPath]],
    ["examples/weftd.service's ExecStart", unitLauncher],
  ] as const) {
    it(`started as ${mode}: code cache used, Node flags and malloc settings in effect, in the process that was started`, async () => {
      const h1 = cluster.node(1);
      await h1.stop('SIGTERM');
      const from = readFileSync(h1.logFile, 'utf8').length;
      h1.start([], launch());
      const spawned = h1.pid!;
      await h1.waitReady();
      const first = readFileSync(h1.logFile, 'utf8').slice(from).split('\n').find((l) => l.includes(' starting (Node'));
      expect(first).to.match(/code cache used\)$/);
      expect(h1.pid, 'same PID (relaunched in place, not a child)').to.equal(spawned);
      const cmdline = readFileSync(`/proc/${spawned}/cmdline`, 'utf8').split('\0');
      const environ = readFileSync(`/proc/${spawned}/environ`, 'utf8').split('\0');
      expect(cmdline).to.include('--max-semi-space-size=1');
      expect(environ).to.include.members(['MALLOC_MMAP_THRESHOLD_=131072', 'MALLOC_TRIM_THRESHOLD_=1048576', 'MALLOC_ARENA_MAX=2']);
    });
  }
});
