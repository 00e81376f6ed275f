/**
 * Start-up at scale, footprint and etcd load for a
 * size N: N simulated peer leases are in etcd; weftd starts in a fresh host
 * namespace; the observer beside it polls /readyz (ready = lease held and
 * every peer programmed). Next to it: etcd's own listing of the leases, and
 * iproute2 batches programming the same entries, run just before each
 * start-up. A start-up varies a good deal from one to the next on a shared
 * machine, and so does the baseline, so a size is measured as several pairs
 * (baseline, then weftd on a fresh host) and judged by the median of the
 * pairs' ratios, as the data plane is. The last start-up's weftd is then
 * left idle and measured: RSS, CPU, and the etcd requests it makes (etcd's
 * grpc counters).
 */
import { WeftError } from '../common/errors.js';
import type { WeftNode } from '../test/harness/cluster.js';
import { HEALTHZ_PORT } from '../test/harness/cluster.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import { ipBatchProgramMs, routesOn } from './cluster-baseline.js';
import { startPhases, type BenchCluster } from './cluster-env.js';
import type { Rpc } from './cluster-rpc.js';
import { childrenOf, cpuPercent, median, privateMB, procSample } from './cluster-stats.js';

/** One start-up: spawn -> ready, and the baseline run just before it. */
export interface StartupRun {
  /** `ip -batch` + `bridge -batch` programming the same entries, run just before this start-up. */
  readonly ipBatchMs: number;
  /** spawn -> weftd turning ready (its log timestamp of the moment /readyz starts to answer 200) */
  readonly totalMs: number;
  /** spawn -> weftd's first log line (Node start-up and module loading) */
  readonly nodeStartMs: number;
  /** first log line -> lease held (config, device, lease, subnet file, iptables) */
  readonly initMs: number;
  /** lease held -> ready (list, validate, program every peer) */
  readonly programMs: number;
  readonly cpuSecondsToReady: number;
}

/** A size's start-ups: each field of StartupRun as the median over the runs, and the runs themselves. */
export interface StartupResult extends StartupRun {
  readonly n: number;
  /** etcd's own listing of the leases (median of 5). */
  readonly etcdListMs: number;
  /** Each run's total over its limit (etcd list + its own baseline run). */
  readonly pairRatios: number[];
  /** Median of pairRatios: the start-up goal's figure. */
  readonly ratio: number;
  /** The same without Node's start: (total - Node start) / limit, median over the runs. */
  readonly ratioWithoutNode: number;
  readonly runs: StartupRun[];
}

export interface FootprintResult {
  readonly n: number;
  readonly rssMB: number;
  readonly peakRssMB: number;
  readonly idleCpuPercent: number;
  /** weftd's kernel-listener child (kernel/netlink/monitor.ts): its RSS and CPU over the same window. */
  readonly listenerRssMB: number;
  readonly listenerCpuPercent: number;
  /** weftd's RSS plus the listener's private memory: what the two hold together (the Node binary's pages once). */
  readonly totalMB: number;
  readonly windowS: number;
  /** etcd grpc messages received per minute while weftd was idle, total and by method. */
  readonly etcdPerMinute: number;
  readonly etcdByMethod: Record<string, number>;
  /** The window after that one, when asked for (StartupOptions.steadyWindowS); null otherwise. */
  readonly steady: { readonly cpuPercent: number; readonly rssMB: number; readonly windowS: number } | null;
}

export interface SizeStep {
  readonly startup: StartupResult;
  readonly footprint: FootprintResult;
}

export interface StartupOptions {
  readonly settleS: number;
  readonly idleWindowS: number;
  /**
   * A second idle window right after the first (0: none). The first, from the
   * end of the settle time, can hold V8's one-off collections after start-up
   * (its memory reducer, some tens of seconds after start);
   * the second shows idle as it stays.
   */
  readonly steadyWindowS?: number;
  readonly env?: NodeJS.ProcessEnv;
}

async function steadyWindow(pid: number, from: ReturnType<typeof procSample>, seconds: number): Promise<FootprintResult['steady']> {
  await sleep(seconds * 1000);
  const to = procSample(pid);
  return { cpuPercent: cpuPercent(from, to), rssMB: to.rssMB, windowS: (to.at - from.at) / 1000 };
}

/**
 * Starts weftd on `node` (a host that never ran one) and waits for ready; the
 * observer confirms it on /readyz. `dual`: the peers are dual-stack, and
 * flannel-v6.1 must hold their n IPv6 routes too.
 */
export async function startOnce(bc: BenchCluster, node: WeftNode, observer: Rpc, n: number, ipBatchMs: number, env?: NodeJS.ProcessEnv, dual = false): Promise<StartupRun> {
  await observer.call('counts');
  const t0 = bc.startWeftd(node, [], env);
  // /readyz, polled like a readiness probe, confirms readiness; the clock stops at weftd's own log
  // timestamp of turning ready (ms resolution). Polled every few ms instead, the probe itself would
  // take a share of the CPU it measures, and a slower poll would round the figure up.
  const confirmedAt = await observer.call<number | null>('readyWait', { port: HEALTHZ_PORT, timeoutMs: 120_000, intervalMs: 100 });
  if (confirmedAt === null) throw new WeftError('WEFT_ERR_HARNESS', `weftd not ready: ${node.logTail()}`);
  const atReady = procSample(node.pid!);
  const phases = startPhases(readFileSync(node.logFile, 'utf8'));
  const readyAt = phases.ready ?? confirmedAt;
  const routes = await routesOn(node.ns, 'flannel.1', false);
  if (routes !== n) throw new WeftError('WEFT_ERR_HARNESS', `ready with ${routes} of ${n} routes`);
  const routes6 = dual ? await routesOn(node.ns, 'flannel-v6.1', true) : n;
  if (routes6 !== n) throw new WeftError('WEFT_ERR_HARNESS', `ready with ${routes6} of ${n} IPv6 routes`);
  const first = phases.firstLog ?? t0;
  return {
    ipBatchMs,
    totalMs: readyAt - t0,
    nodeStartMs: first - t0,
    initMs: (phases.lease ?? first) - first,
    programMs: readyAt - (phases.lease ?? first),
    cpuSecondsToReady: atReady.cpuSeconds,
  };
}

/** A size's start-up result from its runs: medians, and the pairs' ratios over etcd's listing plus each run's baseline. */
export function summarizeStartup(n: number, etcdListMs: number, runs: StartupRun[]): StartupResult {
  const mid = (f: (r: StartupRun) => number): number => median(runs.map(f));
  const limit = (r: StartupRun): number => etcdListMs + r.ipBatchMs;
  const pairRatios = runs.map((r) => r.totalMs / limit(r));
  return {
    n,
    etcdListMs,
    ipBatchMs: mid((r) => r.ipBatchMs),
    totalMs: mid((r) => r.totalMs),
    nodeStartMs: mid((r) => r.nodeStartMs),
    initMs: mid((r) => r.initMs),
    programMs: mid((r) => r.programMs),
    cpuSecondsToReady: mid((r) => r.cpuSecondsToReady),
    pairRatios,
    ratio: median(pairRatios),
    ratioWithoutNode: mid((r) => (r.totalMs - r.nodeStartMs) / limit(r)),
    runs,
  };
}

/**
 * Brings weftd up with peers 1..n in etcd, once per host of `nodes` (one
 * pair each: the baseline, then the start-up), and measures the last one
 * idle. Every weftd but the last is stopped once ready (its own lease
 * deleted, so the next sees exactly the peers). `during` runs after the idle
 * window, with the last weftd still up.
 */
export async function startupStep(
  bc: BenchCluster,
  nodes: readonly WeftNode[],
  n: number,
  o: StartupOptions,
  during?: (observer: Rpc) => Promise<void>,
): Promise<SizeStep> {
  if (n > 0) await bc.agent.call('fill', { first: 1, last: n });
  const list = await bc.agent.call<{ ms: number; count: number }>('list', { runs: 5 });
  if (list.count !== n) throw new WeftError('WEFT_ERR_HARNESS', `etcd holds ${list.count} leases, expected ${n}`);
  const runs: StartupRun[] = [];
  for (const [r, node] of nodes.entries()) {
    const ipBatchMs = await ipBatchProgramMs(n, `${n}r${r}`);
    const last = r === nodes.length - 1;
    const observer = bc.observer(node);
    try {
      // Profiling (env) is for the run that stays up.
      runs.push(await startOnce(bc, node, observer, n, ipBatchMs, last ? o.env : undefined));
      if (last) return { startup: summarizeStartup(n, list.ms, runs), footprint: await idleFootprint(bc, node, n, o, observer, during) };
    } finally {
      await observer.close();
      await bc.stopWeftd(node);
    }
  }
  throw new WeftError('WEFT_ERR_HARNESS', 'startupStep needs at least one host');
}

/** weftd on `node`, ready, left idle: RSS, CPU and etcd requests over the window(s). */
async function idleFootprint(bc: BenchCluster, node: WeftNode, n: number, o: StartupOptions, observer: Rpc, during?: (observer: Rpc) => Promise<void>): Promise<FootprintResult> {
  await sleep(o.settleS * 1000);
  const grpc0 = await bc.agent.call<Record<string, number>>('grpc');
  const children = childrenOf(node.pid!);
  const a = procSample(node.pid!);
  const childA = children.map(procSample);
  await sleep(o.idleWindowS * 1000);
  const b = procSample(node.pid!);
  const childB = children.map(procSample);
  const grpc1 = await bc.agent.call<Record<string, number>>('grpc');
  const minutes = (b.at - a.at) / 60_000;
  const byMethod: Record<string, number> = {};
  for (const [m, v] of Object.entries(grpc1)) {
    const d = v - (grpc0[m] ?? 0);
    if (d > 0) byMethod[m] = d / minutes;
  }
  const footprint: FootprintResult = {
    n,
    rssMB: b.rssMB,
    peakRssMB: b.hwmMB,
    idleCpuPercent: cpuPercent(a, b),
    listenerRssMB: childB.reduce((sum, c) => sum + c.rssMB, 0),
    listenerCpuPercent: childB.reduce((sum, c, i) => sum + cpuPercent(childA[i]!, c), 0),
    totalMB: b.rssMB + children.reduce((sum, pid) => sum + privateMB(pid), 0),
    windowS: (b.at - a.at) / 1000,
    etcdPerMinute: Object.values(byMethod).reduce((s, v) => s + v, 0),
    etcdByMethod: byMethod,
    steady: o.steadyWindowS ? await steadyWindow(node.pid!, b, o.steadyWindowS) : null,
  };
  if (during) await during(observer);
  return footprint;
}
