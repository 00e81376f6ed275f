/**
 * `npm run bench [-- --quick] [-- --only startup,convergence,churn,dataplane,cni,dualstack] [-- --sizes 0,5000] [-- --cpu-prof DIR]`:
 * the cluster benchmarks, and the CNI plugin's (bench/cni.ts, which writes
 * bench/results/cni[-quick].json of its own), and the dual-stack one
 * (bench/cluster-dualstack.ts, bench/results/dualstack[-quick].json). The measured weftd runs in a host
 * namespace on the test underlay, etcd in its own namespace; simulated peers
 * are leases the agent writes into etcd. Every table carries its baseline
 * measured in the same run. Results go to stdout (Markdown tables) and to
 * bench/results/cluster[-quick].json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { teardownAll } from '../test/harness/netns.js';
import { CNI_ROUNDS, cniBench, printCni, writeCniResults, type CniResults } from './cni.js';
import { churn, type ChurnResult } from './cluster-churn.js';
import { convergence, type ConvergenceRow } from './cluster-convergence.js';
import { dataplane, type PathResult } from './cluster-dataplane.js';
import { DUALSTACK_PARAMS, dualStackBench, printDualStack, writeDualStackResults, type DualStackResults } from './cluster-dualstack.js';
import { BenchCluster } from './cluster-env.js';
import { peerLease } from './cluster-leases.js';
import { startupStep, type SizeStep } from './cluster-startup.js';
import { fmt, machine, machineLine, table, type Machine } from './cluster-stats.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const onlyArg = argv[argv.indexOf('--only') + 1];
const only = argv.includes('--only') && onlyArg ? new Set(onlyArg.split(',')) : null;
const profDir = argv.includes('--cpu-prof') ? argv[argv.indexOf('--cpu-prof') + 1] : undefined;
const want = (name: string): boolean => !only || only.has(name);

const sizesArg = argv.includes('--sizes') ? argv[argv.indexOf('--sizes') + 1] : undefined;
const SIZES = sizesArg ? sizesArg.split(',').map(Number) : [0, 100, 1000, 5000];
const CONVERGENCE_BASE = 1000;
const P = quick
  ? { startupRuns: 1, settleS: 2, idleWindowS: 5, singles: 50, bursts: 2, churnS: 10, dpRuns: 1, dpSeconds: 3, pings: 50 }
  : { startupRuns: 5, settleS: 30, idleWindowS: 60, singles: 200, bursts: 5, churnS: 60, dpRuns: 5, dpSeconds: 5, pings: 200 };
const PROF_HOOK = fileURLToPath(new URL('./cluster-prof-hook.js', import.meta.url));
// A run of some parts or sizes writes a file of its own, so it never replaces the last whole run's tables.
const partial = only !== null || sizesArg !== undefined;
const RESULTS = fileURLToPath(new URL(`../../bench/results/cluster${quick ? '-quick' : ''}${partial ? '-partial' : ''}.json`, import.meta.url));

interface Results {
  machine?: Machine;
  mode: 'quick' | 'full';
  date: string;
  sizes: SizeStep[];
  convergence?: ConvergenceRow[];
  churn?: ChurnResult;
  dataplane?: PathResult[];
}

const ms = (x: number): string => fmt(x, x < 10 ? 2 : 0);

function print(r: Results): void {
  if (r.machine) console.log(`\n${machineLine(r.machine)} Mode: ${r.mode}.`);
  if (r.sizes.length) {
    const runs = r.sizes[0]?.startup.runs.length ?? 0;
    console.log(
      `\nStart-up: weftd spawn -> ready (every peer programmed; its log timestamp, confirmed on /readyz); limit = etcd list + ip/bridge -batch of the same entries, run just before each start-up; ${runs} such pair${runs === 1 ? '' : 's'} per N, each weftd on a fresh host: medians, and total/limit = median of the pairs' ratios`,
    );
    console.log(
      table(
        ['N', 'etcd list ms', 'ip+bridge -batch ms', 'limit ms', 'weftd total ms', 'Node start ms', 'init ms', 'list+program ms', 'total/limit', 'pair ratios', '(total-Node)/limit', 'CPU s'],
        r.sizes.map(({ startup: s }) => [
          String(s.n), ms(s.etcdListMs), ms(s.ipBatchMs), ms(s.etcdListMs + s.ipBatchMs), ms(s.totalMs), ms(s.nodeStartMs), ms(s.initMs), ms(s.programMs),
          fmt(s.ratio, 2), `${fmt(Math.min(...s.pairRatios), 2)}-${fmt(Math.max(...s.pairRatios), 2)}`, fmt(s.ratioWithoutNode, 2), fmt(s.cpuSecondsToReady, 2),
        ]),
      ),
    );
    console.log('\nFootprint and etcd load: weftd idle after start-up (production periods: full resync 60 s; iptables checked on nf_tables changes and every 60 s); next window: the window after, at the largest N only');
    console.log(
      table(
        ['N', 'RSS MB', 'peak RSS MB', 'idle CPU % of a core', 'listener RSS MB', 'listener CPU %', 'weftd + listener MB', 'window s', 'next window: idle CPU %', 'next window: RSS MB', 'etcd requests/min', 'by method'],
        r.sizes.map(({ footprint: f }) => [
          String(f.n), fmt(f.rssMB), fmt(f.peakRssMB), fmt(f.idleCpuPercent, 2), fmt(f.listenerRssMB), fmt(f.listenerCpuPercent, 2), fmt(f.totalMB),
          fmt(f.windowS, 0), f.steady ? fmt(f.steady.cpuPercent, 2) : '-', f.steady ? fmt(f.steady.rssMB) : '-', fmt(f.etcdPerMinute, 1),
          Object.entries(f.etcdByMethod).map(([m, v]) => `${m} ${fmt(v, 1)}`).join(', ') || '-',
        ]),
      ),
    );
  }
  if (r.convergence) {
    console.log(`\nConvergence with ${CONVERGENCE_BASE} peers programmed: etcd write issued -> route+neighbour+FDB present/gone in the kernel, vs. etcd watch (write -> event), ms`);
    console.log(
      table(
        ['event', 'n', 'weft p50', 'weft p99', 'weft max', 'etcd watch p50', 'etcd watch p99', 'etcd watch max', 'p99 gap', 'timeouts', 'burst done'],
        r.convergence.map((c) => [c.kind, String(c.weft.n), ms(c.weft.p50), ms(c.weft.p99), ms(c.weft.max), ms(c.etcdWatch.p50), ms(c.etcdWatch.p99), ms(c.etcdWatch.max), ms(c.p99GapMs), String(c.timeouts), c.burstCompleteMs !== undefined ? ms(c.burstCompleteMs) : '-']),
      ),
    );
  }
  if (r.churn) {
    const c = r.churn;
    console.log(`\nChurn on ${CONVERGENCE_BASE} peers: ${c.rate} joins + ${c.rate} leaves per second for ${c.seconds} s`);
    console.log(
      table(
        ['writes', 'writer max lag ms', 'weftd CPU % of a core', 'weftd CPU s', 'kernel = leases after ms', 'leases', 'missing', 'extra'],
        [[String(c.puts + c.deletes), ms(c.writerMaxLagMs), fmt(c.weftdCpuPercent, 1), fmt(c.weftdCpuSeconds, 2), c.matchedAfterMs === null ? 'never (30 s)' : `<= ${ms(c.matchedAfterMs)}`, String(c.leases), String(c.missing), String(c.extra)]],
      ),
    );
  }
  if (r.dataplane) {
    console.log('\nData plane: iperf3 TCP and ping across hosts; raw = host to host over the underlay veth, interleaved in the same phase; ratio = median over the pairs of a path run and the raw run just before it');
    console.log(
      table(
        ['path', 'Gbit/s', 'raw underlay Gbit/s', 'ratio', 'pair ratios', 'retransmits', 'ping avg ms', 'raw ping avg ms'],
        r.dataplane.map((d) => [
          d.path, fmt(d.gbitsMedian, 2), fmt(d.rawGbitsMedian, 2), fmt(d.ratio, 3),
          `${fmt(Math.min(...d.pairRatios), 3)}-${fmt(Math.max(...d.pairRatios), 3)}`, String(d.retransmits), fmt(d.pingAvgMs, 3), fmt(d.rawPingAvgMs, 3),
        ]),
      ),
    );
  }
}

async function main(): Promise<void> {
  const t0 = Date.now();
  const results: Results = { mode: quick ? 'quick' : 'full', date: new Date().toISOString(), sizes: [] };
  let cni: CniResults | undefined;
  let dual: DualStackResults | undefined;

  if (want('cni')) {
    cni = await cniBench({ rounds: CNI_ROUNDS[results.mode], mode: results.mode });
    // Written at once: the CNI results are a file of their own, kept even if a later part fails.
    console.error(`cni done after ${((Date.now() - t0) / 1000).toFixed(0)} s, written to ${writeCniResults(cni)}`);
  }

  if (want('dataplane')) {
    const bc = await BenchCluster.create(2);
    try {
      results.machine ??= machine(await bc.agent.call<string>('version'));
      results.dataplane = await dataplane(bc, { runs: P.dpRuns, seconds: P.dpSeconds, pings: P.pings });
    } finally {
      await bc.destroy();
    }
    console.error(`dataplane done after ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }

  if (want('startup') || want('convergence') || want('churn')) {
    const sizes = want('startup') ? SIZES : [CONVERGENCE_BASE];
    // Every start-up on a host of its own, which never ran weftd.
    const runs = want('startup') ? P.startupRuns : 1;
    const bc = await BenchCluster.create(sizes.length * runs);
    try {
      results.machine ??= machine(await bc.agent.call<string>('version'));
      for (const [k, n] of sizes.entries()) {
        const nodes = Array.from({ length: runs }, (_, r) => bc.node(k * runs + r + 1));
        const node = nodes[runs - 1]!;
        const during =
          n === CONVERGENCE_BASE && (want('convergence') || want('churn'))
            ? async (observer: Parameters<NonNullable<Parameters<typeof startupStep>[4]>>[0]) => {
                if (want('convergence')) results.convergence = await convergence(bc, observer, { singles: P.singles, bursts: P.bursts, burstSize: 100, firstIndex: 10_000 });
                if (want('churn')) results.churn = await churn(bc, node, { base: n, rate: 100, seconds: P.churnS, firstIndex: 20_000 });
              }
            : undefined;
        const env = profDir && n === Math.max(...sizes) ? { NODE_OPTIONS: `--import=${PROF_HOOK}`, WEFT_CPU_PROF_DIR: profDir } : {};
        // The largest N also gets a second idle window (see StartupOptions.steadyWindowS).
        const steadyWindowS = want('startup') && n === Math.max(...sizes) ? P.idleWindowS : 0;
        const step = await startupStep(bc, nodes, n, { settleS: P.settleS, idleWindowS: P.idleWindowS, steadyWindowS, env }, during);
        if (want('startup')) results.sizes.push(step);
        // Back to exactly peers 1..n (churn and convergence wrote others).
        const keys = Object.keys(await bc.agent.call<Record<string, string>>('keys'));
        const base = new Set(Array.from({ length: n }, (_, i) => peerLease(i + 1).key));
        await bc.agent.call('removeKeys', { keys: keys.filter((key) => !base.has(key)) });
        console.error(`N=${n} done after ${((Date.now() - t0) / 1000).toFixed(0)} s`);
      }
    } finally {
      await bc.destroy();
    }
  }

  if (want('dualstack')) {
    const env = profDir ? { NODE_OPTIONS: `--import=${PROF_HOOK}`, WEFT_CPU_PROF_DIR: profDir } : undefined;
    dual = await dualStackBench({ mode: results.mode, ...DUALSTACK_PARAMS[results.mode], ...(env ? { env } : {}) });
    console.error(`dualstack done after ${((Date.now() - t0) / 1000).toFixed(0)} s, written to ${writeDualStackResults(dual)}`);
  }

  print(results);
  if (cni) printCni(cni);
  if (dual) printDualStack(dual);
  mkdirSync(fileURLToPath(new URL('../../bench/results/', import.meta.url)), { recursive: true });
  writeFileSync(RESULTS, JSON.stringify(results, null, 1) + '\n');
  console.log(`\nwritten to bench/results/${RESULTS.split('/').pop()} (${((Date.now() - t0) / 1000).toFixed(0)} s)`);
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => teardownAll());
