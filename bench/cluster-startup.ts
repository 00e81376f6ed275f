/**
 * Start-up at scale, footprint and etcd load (issue 7, items 1, 4, 6), one
 * fresh host per size N: N simulated peer leases are in etcd; weftd starts
 * in the host namespace; the observer beside it polls /readyz (ready = lease
 * held and every peer programmed). Next to it, in the same run: etcd's own
 * listing of the leases and iproute2 batches programming the same entries.
 * After readiness weftd is left idle and measured: RSS, CPU, and the etcd
 * requests it makes (etcd's grpc counters).
 */
import type { WeftNode } from '../test/harness/cluster.js';
import { HEALTHZ_PORT } from '../test/harness/cluster.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { readFileSync } from 'node:fs';
import { ipBatchProgramMs } from './cluster-baseline.js';
import { startPhases, type BenchCluster } from './cluster-env.js';
import type { Rpc } from './cluster-rpc.js';
import { childrenOf, cpuPercent, median, privateMB, procSample } from './cluster-stats.js';

export interface StartupResult {
  readonly n: number;
  readonly etcdListMs: number;
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
  readonly routes: number;
}

export interface FootprintResult {
  readonly n: number;
  readonly rssMB: number;
  readonly peakRssMB: number;
  readonly idleCpuPercent: number;
  /** weftd's kernel-listener child (backend/netlink/monitor.ts): its RSS and CPU over the same window. */
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
  readonly baselineRuns: number;
  readonly settleS: number;
  readonly idleWindowS: number;
  /**
   * A second idle window right after the first (0: none). The first, from the
   * end of the settle time, can hold V8's one-off collections after start-up
   * (its memory reducer, 30-50 s after start, ~0.3 s of CPU at 5000 peers);
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

/** Brings weftd up on `node` with peers 1..n in etcd and measures it. `during` runs after the idle window, with weftd still up. */
export async function startupStep(
  bc: BenchCluster,
  node: WeftNode,
  n: number,
  o: StartupOptions,
  during?: (observer: Rpc) => Promise<void>,
): Promise<SizeStep> {
  if (n > 0) await bc.agent.call('fill', { first: 1, last: n });
  const list = await bc.agent.call<{ ms: number; count: number }>('list', { runs: 5 });
  if (list.count !== n) throw new Error(`etcd holds ${list.count} leases, expected ${n}`);
  const batch: number[] = [];
  for (let r = 0; r < o.baselineRuns; r++) batch.push(await ipBatchProgramMs(n, `${n}r${r}`));

  const observer = bc.observer(node);
  try {
    await observer.call('counts');
    const t0 = bc.startWeftd(node, [], o.env);
    // /readyz, polled like a readiness probe, confirms readiness; the clock stops at weftd's own log
    // timestamp of turning ready (ms resolution). Polled every few ms instead, the probe itself took
    // 30-40 ms of weftd's CPU at 5000 peers, and a slower poll would round the figure up.
    const confirmedAt = await observer.call<number | null>('readyWait', { port: HEALTHZ_PORT, timeoutMs: 120_000, intervalMs: 100 });
    if (confirmedAt === null) throw new Error(`weftd not ready: ${node.logTail()}`);
    const atReady = procSample(node.pid!);
    const phases = startPhases(readFileSync(node.logFile, 'utf8'));
    const readyAt = phases.ready ?? confirmedAt;
    const routes = (await node.ns.ip('route', 'show', 'dev', 'flannel.1')).trim().split('\n').filter(Boolean).length;
    if (routes !== n) throw new Error(`ready with ${routes} of ${n} routes`);
    const first = phases.firstLog ?? t0;
    const startup: StartupResult = {
      n,
      etcdListMs: list.ms,
      ipBatchMs: median(batch),
      totalMs: readyAt - t0,
      nodeStartMs: first - t0,
      initMs: (phases.lease ?? first) - first,
      programMs: readyAt - (phases.lease ?? first),
      cpuSecondsToReady: atReady.cpuSeconds,
      routes,
    };

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
    return { startup, footprint };
  } finally {
    await observer.close();
    await bc.stopWeftd(node);
  }
}
