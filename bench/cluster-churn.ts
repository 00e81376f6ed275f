/**
 * Churn: peers join and leave at `rate` per second each
 * (the agent writes one put and one delete every 1000/rate ms) for `seconds`.
 * Afterwards the node's kernel must equal the leases in etcd exactly: the
 * route, neighbour and FDB entry of every lease and nothing else. Reports
 * weftd's CPU during the churn and how long after the last write the kernel
 * matched.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { WeftNode } from '../test/harness/cluster.js';
import type { BenchCluster } from './cluster-env.js';
import { cpuPercent, now, procSample } from './cluster-stats.js';

export interface ChurnResult {
  readonly rate: number;
  readonly seconds: number;
  readonly puts: number;
  readonly deletes: number;
  readonly writerMaxLagMs: number;
  readonly weftdCpuPercent: number;
  readonly weftdCpuSeconds: number;
  /** Last write acknowledged -> kernel equals leases (ms); null if it never did within the timeout. */
  readonly matchedAfterMs: number | null;
  readonly leases: number;
  readonly missing: number;
  readonly extra: number;
}

interface Diff {
  readonly leases: number;
  readonly missing: number;
  readonly extra: number;
}

/** Compares the node's kernel with the peer leases in etcd (the node's own lease excluded). */
async function kernelVsLeases(bc: BenchCluster, node: WeftNode): Promise<Diff> {
  const kvs = await bc.agent.call<Record<string, string>>('keys');
  const want = { routes: new Set<string>(), neighs: new Set<string>(), fdbs: new Set<string>() };
  for (const [key, value] of Object.entries(kvs)) {
    const v = JSON.parse(value) as { PublicIP: string; BackendData: { VtepMAC: string } };
    if (v.PublicIP === node.ip) continue;
    const subnet = key.slice(key.lastIndexOf('/') + 1).replace('-', '/');
    want.routes.add(subnet);
    want.neighs.add(subnet.split('/')[0]!);
    want.fdbs.add(`${v.BackendData.VtepMAC}>${v.PublicIP}`);
  }
  const routes = (await node.ns.ipJson<{ dst: string }[]>('route', 'show', 'dev', 'flannel.1')).map((r) => r.dst);
  const neighs = (await node.ns.ipJson<{ dst: string }[]>('neigh', 'show', 'dev', 'flannel.1')).map((n) => n.dst);
  const fdbs = (await node.ns.bridgeJson<{ mac: string; dst?: string }[]>('fdb', 'show', 'dev', 'flannel.1')).filter((f) => f.dst).map((f) => `${f.mac}>${f.dst}`);
  let missing = 0, extra = 0;
  const cmp = (have: string[], wanted: Set<string>): void => {
    const h = new Set(have);
    for (const w of wanted) if (!h.has(w)) missing++;
    for (const x of h) if (!wanted.has(x)) extra++;
  };
  cmp(routes, want.routes);
  cmp(neighs, want.neighs);
  cmp(fdbs, want.fdbs);
  return { leases: want.routes.size, missing, extra };
}

export async function churn(bc: BenchCluster, node: WeftNode, o: { base: number; rate: number; seconds: number; firstIndex: number }): Promise<ChurnResult> {
  const live = Array.from({ length: o.base }, (_, i) => i + 1);
  const a = procSample(node.pid!);
  const r = await bc.agent.call<{ puts: number; deletes: number; maxLagMs: number }>('churn', { live, firstNew: o.firstIndex, rate: o.rate, seconds: o.seconds });
  const doneAt = now();
  const b = procSample(node.pid!);
  let diff = await kernelVsLeases(bc, node);
  let matchedAfterMs: number | null = null;
  for (const deadline = doneAt + 30_000; now() < deadline; diff = await kernelVsLeases(bc, node)) {
    if (diff.missing === 0 && diff.extra === 0) {
      matchedAfterMs = now() - doneAt;
      break;
    }
    await sleep(100);
  }
  return {
    rate: o.rate, seconds: o.seconds, puts: r.puts, deletes: r.deletes, writerMaxLagMs: r.maxLagMs,
    weftdCpuPercent: cpuPercent(a, b), weftdCpuSeconds: b.cpuSeconds - a.cpuSeconds,
    matchedAfterMs, ...diff,
  };
}
