/**
 * Convergence: with the base peers programmed, leases are
 * added and removed one at a time and in bursts; for each, the time from the
 * etcd write being issued (agent, etcd's namespace) until the peer's route,
 * neighbour and FDB entry are all present (or all gone) in the node's kernel
 * (observer, host namespace, rtnetlink notifications); for dual-stack peers
 * the same three on flannel-v6.1 as well. The baseline is etcd's
 * watch latency for the same writes: write issued -> the observer's own
 * etcd watch delivers the event. All clocks are the machine's clock.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchCluster } from './cluster-env.js';
import { dualPeerLease, peerLease as singlePeerLease, type PeerLease } from './cluster-leases.js';
import type { Rpc } from './cluster-rpc.js';
import { summarize, type Summary } from './cluster-stats.js';

export interface ConvergenceRow {
  readonly kind: string;
  readonly weft: Summary;
  readonly etcdWatch: Summary;
  /** weft's p99 minus etcd's watch p99 (ms): the goal is <= 2. */
  readonly p99GapMs: number;
  readonly timeouts: number;
  /** For bursts: median time from the first write issued to the last peer programmed. */
  readonly burstCompleteMs?: number;
}

interface Arrival {
  readonly subnet: string;
  readonly kernelAt: number | null;
  readonly etcdAt: number | null;
}

class Samples {
  weft: number[] = [];
  etcd: number[] = [];
  timeouts = 0;
  complete: number[] = [];

  row(kind: string): ConvergenceRow {
    const weft = summarize(this.weft);
    const etcdWatch = summarize(this.etcd);
    return {
      kind, weft, etcdWatch, p99GapMs: weft.p99 - etcdWatch.p99, timeouts: this.timeouts,
      ...(this.complete.length ? { burstCompleteMs: summarize(this.complete).p50 } : {}),
    };
  }
}

/** Writes (present) or deletes (absent) `peers` at once and records each one's latencies. */
async function step(bc: BenchCluster, observer: Rpc, peers: PeerLease[], present: boolean, into: Samples): Promise<void> {
  await observer.call('expect', { peers: peers.map((p) => ({ subnet: p.subnet, mac: p.mac, key: p.key, ...(p.v6 ? { subnet6: p.v6.subnet, mac6: p.v6.mac } : {}) })) });
  const issued = await bc.agent.call<number[]>('burst', { ops: peers.map((p) => ({ key: p.key, value: present ? p.value : null })) });
  const arrivals = await observer.call<Arrival[]>('wait', { subnets: peers.map((p) => p.subnet), present, timeoutMs: 5000 });
  let last = 0;
  arrivals.forEach((a, i) => {
    if (a.kernelAt === null || a.etcdAt === null) return void into.timeouts++;
    into.weft.push(a.kernelAt - issued[i]!);
    into.etcd.push(a.etcdAt - issued[i]!);
    last = Math.max(last, a.kernelAt);
  });
  if (peers.length > 1 && last > 0) into.complete.push(last - Math.min(...issued));
}

export interface ConvergenceOptions {
  readonly singles: number;
  readonly bursts: number;
  readonly burstSize: number;
  /** First simulated peer index used (above the base peers). */
  readonly firstIndex: number;
  /** Dual-stack peers (dualPeerLease), followed on flannel-v6.1 too. */
  readonly dual?: boolean;
}

export async function convergence(bc: BenchCluster, observer: Rpc, o: ConvergenceOptions): Promise<ConvergenceRow[]> {
  await observer.call('watchKernel', { device: 'flannel.1', ...(o.dual ? { device6: 'flannel-v6.1' } : {}) });
  const peerLease = o.dual ? dualPeerLease : singlePeerLease;
  await observer.call('watchEtcd');
  await sleep(200);
  const addOne = new Samples(), delOne = new Samples(), addBurst = new Samples(), delBurst = new Samples();
  const singles = Array.from({ length: o.singles }, (_, j) => peerLease(o.firstIndex + j));
  for (const p of singles) {
    await step(bc, observer, [p], true, addOne);
    await sleep(5 + Math.random() * 10);
  }
  for (const p of singles) {
    await step(bc, observer, [p], false, delOne);
    await sleep(5 + Math.random() * 10);
  }
  for (let b = 0; b < o.bursts; b++) {
    const first = o.firstIndex + o.singles + b * o.burstSize;
    const peers = Array.from({ length: o.burstSize }, (_, j) => peerLease(first + j));
    await step(bc, observer, peers, true, addBurst);
    await sleep(200);
    await step(bc, observer, peers, false, delBurst);
    await sleep(200);
  }
  const singleRows = [addOne.row('add, one at a time'), delOne.row('remove, one at a time')];
  if (o.bursts === 0) return singleRows;
  return [...singleRows, addBurst.row(`add, bursts of ${o.burstSize}`), delBurst.row(`remove, bursts of ${o.burstSize}`)];
}
