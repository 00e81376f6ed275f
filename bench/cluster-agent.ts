/**
 * The benchmark's hand inside etcd's namespace (etcd on the underlay is not
 * reachable from the root namespace): writes and deletes simulated peer
 * leases, times etcd's own prefix listing, reads etcd's /metrics and drives
 * the churn load. Controlled over IPC by bench/cluster.ts:
 *   ip netns exec <etcd ns> node cluster-agent.js ENDPOINT
 */
import { Etcd3 } from 'etcd3';
import { dualPeerLease, peerLease, peerRange, PREFIX } from './cluster-leases.js';
import { serve } from './cluster-rpc.js';
import { median, now } from './cluster-stats.js';

const endpoint = process.argv[2]!;
const client = new Etcd3({ hosts: [endpoint] });
const WINDOW = 200;

interface KeyOp {
  readonly key: string;
  readonly value: string | null;
}

function write(op: KeyOp): Promise<unknown> {
  return op.value === null ? client.delete().key(op.key).exec() : client.put(op.key).value(op.value).exec();
}

/** Writes ops `WINDOW` at a time; returns the elapsed ms. */
async function bulk(ops: readonly KeyOp[]): Promise<number> {
  const t0 = now();
  for (let i = 0; i < ops.length; i += WINDOW) await Promise.all(ops.slice(i, i + WINDOW).map(write));
  return now() - t0;
}

/** grpc counters from etcd's Prometheus endpoint, by method. */
async function grpcCounters(): Promise<Record<string, number>> {
  const text = await (await fetch(`${endpoint}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^grpc_server_msg_received_total\{([^}]*)\} (\S+)$/gm)) {
    const method = /grpc_method="([^"]+)"/.exec(m[1]!)?.[1] ?? '?';
    out[method] = (out[method] ?? 0) + Number(m[2]);
  }
  return out;
}

/**
 * Churn: every 1000/rate ms one new peer joins (put) and one random live
 * peer leaves (delete), for `seconds`. Writes are not awaited one by one, so
 * a slow etcd shows up as lag, not as a lower rate.
 */
async function churn(a: { live: number[]; firstNew: number; rate: number; seconds: number }): Promise<{ puts: number; deletes: number; maxLagMs: number; live: number[] }> {
  const live = [...a.live];
  const period = 1000 / a.rate;
  const total = Math.round(a.rate * a.seconds);
  const inflight = new Set<Promise<unknown>>();
  const t0 = now();
  let next = a.firstNew;
  let maxLag = 0;
  for (let k = 0; k < total; k++) {
    const due = t0 + k * period;
    const wait = due - now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    maxLag = Math.max(maxLag, now() - due);
    const joiner = peerLease(next++);
    const victim = live.splice(Math.floor(Math.random() * live.length), 1)[0]!;
    live.push(joiner.index);
    for (const op of [{ key: joiner.key, value: joiner.value }, { key: peerLease(victim).key, value: null }]) {
      const p = write(op).finally(() => inflight.delete(p));
      inflight.add(p);
    }
    if (inflight.size > 400) await Promise.race(inflight);
  }
  await Promise.all(inflight);
  return { puts: total, deletes: total, maxLagMs: maxLag, live };
}

serve(
  {
    version: async () => ((await (await fetch(`${endpoint}/version`)).json()) as { etcdserver: string }).etcdserver,
    put: (a: { key: string; value: string }) => client.put(a.key).value(a.value).exec().then(() => undefined),
    fill: (a: { first: number; last: number; dual?: boolean }) => bulk(peerRange(a.first, a.last, a.dual).map((p) => ({ key: p.key, value: p.value }))),
    remove: (a: { indices: number[]; dual?: boolean }) => bulk(a.indices.map((i) => ({ key: (a.dual ? dualPeerLease : peerLease)(i).key, value: null }))),
    removeKeys: (a: { keys: string[] }) => bulk(a.keys.map((key) => ({ key, value: null }))),
    /** Issues every op at once; returns the time each was issued (ms, machine clock). */
    burst: async (a: { ops: KeyOp[] }) => {
      const issued: number[] = [];
      await Promise.all(
        a.ops.map((op) => {
          issued.push(now());
          return write(op);
        }),
      );
      return issued;
    },
    /** etcd's own listing of the subnets prefix through the same client library weft uses: median ms of `runs`. */
    list: async (a: { runs: number }) => {
      const times: number[] = [];
      let count = 0;
      for (let r = 0; r < a.runs; r++) {
        const t0 = now();
        const kvs = await client.getAll().prefix(`${PREFIX}/subnets/`).keys();
        times.push(now() - t0);
        count = kvs.length;
      }
      return { ms: median(times), count };
    },
    keys: () => client.getAll().prefix(`${PREFIX}/subnets/`).strings(),
    grpc: grpcCounters,
    churn,
  },
  () => client.close(),
);
