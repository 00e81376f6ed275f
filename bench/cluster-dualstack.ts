/**
 * Dual-stack at scale (`npm run bench -- --only dualstack`, and part of a
 * whole run): N dual-stack peer leases (`10.1.5.0-24&fd00:10:244:105::-64`,
 * PublicIP and PublicIPv6, BackendData and BackendV6Data) are in etcd; weftd
 * starts on a host with an IPv6 underlay address next to its IPv4 one and
 * programs six entries per peer, three on flannel.1 and three on
 * flannel-v6.1. Start-up is measured as the IPv4 start-up is (pairs of the
 * baseline and a start-up on a fresh host, judged by the median of the
 * pairs' ratios), against the same limit for twice the entries: etcd's
 * listing plus `ip -batch` + `bridge -batch` programming both families. The
 * last weftd then stays up for single-event convergence at N peers against
 * etcd's watch. Results: bench/results/dualstack[-quick].json.
 */
import { writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { WeftError } from '../common/errors.js';
import { ipBatchProgramMs } from './cluster-baseline.js';
import { convergence, type ConvergenceRow } from './cluster-convergence.js';
import { BenchCluster } from './cluster-env.js';
import { DUAL_STACK_NETWORK_CONFIG } from './cluster-leases.js';
import { startOnce, summarizeStartup, type StartupResult, type StartupRun } from './cluster-startup.js';
import { fmt, machine, machineLine, table, type Machine } from './cluster-stats.js';

export interface DualStackResults {
  readonly mode: 'quick' | 'full';
  readonly date: string;
  readonly machine: Machine;
  /** Load average (1 min) when the part began and when it ended: the machine is shared. */
  readonly load: { readonly before: number; readonly after: number };
  /** N dual-stack peers: 2N routes, 2N neighbours and 2N FDB entries. */
  readonly n: number;
  /** As the IPv4 start-up's, with ipBatchMs programming both families. */
  readonly startup: StartupResult;
  /** Single events at N peers: add and remove, one at a time. */
  readonly convergence: ConvergenceRow[];
}

export interface DualStackOptions {
  readonly mode: 'quick' | 'full';
  readonly n: number;
  readonly pairs: number;
  readonly singles: number;
  /** First peer index of the convergence events (above the base peers). */
  readonly firstIndex: number;
  /** Environment of the last start-up's weftd (the CPU profile hook with --cpu-prof). */
  readonly env?: NodeJS.ProcessEnv;
}

export const DUALSTACK_PARAMS: Readonly<Record<'quick' | 'full', Omit<DualStackOptions, 'mode'>>> = {
  quick: { n: 1000, pairs: 1, singles: 50, firstIndex: 10_000 },
  full: { n: 5000, pairs: 5, singles: 200, firstIndex: 10_000 },
};

export async function dualStackBench(o: DualStackOptions): Promise<DualStackResults> {
  const before = loadavg()[0]!;
  // Each start-up on a host of its own, which never ran weftd.
  const bc = await BenchCluster.create(o.pairs, DUAL_STACK_NETWORK_CONFIG, 'dual');
  try {
    const m = machine(await bc.agent.call<string>('version'));
    await bc.agent.call('fill', { first: 1, last: o.n, dual: true });
    const list = await bc.agent.call<{ ms: number; count: number }>('list', { runs: 5 });
    if (list.count !== o.n) throw new WeftError('WEFT_ERR_HARNESS', `etcd holds ${list.count} leases, expected ${o.n}`);
    const runs: StartupRun[] = [];
    let rows: ConvergenceRow[] = [];
    for (let r = 1; r <= o.pairs; r++) {
      const node = bc.node(r);
      const ipBatchMs = await ipBatchProgramMs(o.n, `d${o.n}r${r}`, true);
      const observer = bc.observer(node);
      try {
        runs.push(await startOnce(bc, node, observer, o.n, ipBatchMs, r === o.pairs ? o.env : undefined, true));
        if (r === o.pairs) rows = await convergence(bc, observer, { singles: o.singles, bursts: 0, burstSize: 0, firstIndex: o.firstIndex, dual: true });
      } finally {
        await observer.close();
        await bc.stopWeftd(node);
      }
    }
    return {
      mode: o.mode, date: new Date().toISOString(), machine: m, load: { before, after: loadavg()[0]! }, n: o.n,
      startup: summarizeStartup(o.n, list.ms, runs), convergence: rows,
    };
  } finally {
    await bc.destroy();
  }
}

const ms = (x: number): string => fmt(x, x < 10 ? 2 : 0);

export function printDualStack(d: DualStackResults): void {
  const s = d.startup;
  console.log(`\nDual-stack, ${d.n} peers (6 entries each): start-up against etcd list + ip/bridge -batch of both families; ${s.runs.length} pair${s.runs.length === 1 ? '' : 's'}; ${machineLine(d.machine)} Load ${fmt(d.load.before, 2)} -> ${fmt(d.load.after, 2)}.`);
  console.log(
    table(
      ['N', 'etcd list ms', 'ip+bridge -batch ms', 'limit ms', 'weftd total ms', 'Node start ms', 'init ms', 'list+program ms', 'total/limit', 'pair ratios', 'CPU s'],
      [[
        String(d.n), ms(s.etcdListMs), ms(s.ipBatchMs), ms(s.etcdListMs + s.ipBatchMs), ms(s.totalMs), ms(s.nodeStartMs), ms(s.initMs), ms(s.programMs),
        fmt(s.ratio, 2), `${fmt(Math.min(...s.pairRatios), 2)}-${fmt(Math.max(...s.pairRatios), 2)}`, fmt(s.cpuSecondsToReady, 2),
      ]],
    ),
  );
  console.log(
    table(
      ['event', 'n', 'weft p50', 'weft p99', 'weft max', 'etcd watch p50', 'etcd watch p99', 'p99 gap', 'timeouts'],
      d.convergence.map((c) => [c.kind, String(c.weft.n), ms(c.weft.p50), ms(c.weft.p99), ms(c.weft.max), ms(c.etcdWatch.p50), ms(c.etcdWatch.p99), ms(c.p99GapMs), String(c.timeouts)]),
    ),
  );
}

/** Writes bench/results/dualstack[-quick].json; returns its path. */
export function writeDualStackResults(d: DualStackResults): string {
  const file = fileURLToPath(new URL(`../../bench/results/dualstack${d.mode === 'quick' ? '-quick' : ''}.json`, import.meta.url));
  writeFileSync(file, JSON.stringify(d, null, 1) + '\n');
  return file;
}
