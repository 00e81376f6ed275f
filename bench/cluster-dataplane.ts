/**
 * Data plane: two hosts run weftd with `--bridge weft0`;
 * each has a pod (a namespace with a veth into weft0, <subnet>.2, default
 * route via <subnet>.1, the overlay MTU). iperf3 TCP throughput and ping RTT
 * pod-to-pod across hosts over the VXLAN overlay, then with DirectRouting,
 * each next to the raw underlay (host to host over the veth) measured in the
 * same phase, runs interleaved.
 */
import { WeftError } from '../common/errors.js';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WeftNode } from '../test/harness/cluster.js';
import { Netns } from '../test/harness/netns.js';
import type { BenchCluster } from './cluster-env.js';
import { DIRECT_ROUTING_CONFIG, PREFIX } from './cluster-leases.js';
import { median } from './cluster-stats.js';

export interface PathResult {
  readonly path: string;
  readonly gbits: number[];
  readonly gbitsMedian: number;
  readonly retransmits: number;
  /** The raw-underlay runs, each just before the path's run of the same index. */
  readonly rawGbits: number[];
  readonly rawGbitsMedian: number;
  /** Each path run over the raw run just before it: the machine's drift between pairs cancels out. */
  readonly pairRatios: number[];
  /** Median of pairRatios. */
  readonly ratio: number;
  readonly pingAvgMs: number;
  readonly rawPingAvgMs: number;
}

interface Pod {
  readonly ns: Netns;
  readonly ip: string;
}

async function addPod(node: WeftNode): Promise<Pod> {
  const env = node.subnetEnv();
  const [gw, len] = env['FLANNEL_SUBNET']!.split('/') as [string, string];
  const ip = gw.replace(/\.1$/, '.2');
  const ns = await Netns.create(`pod${node.index}`);
  await node.ns.ip('link', 'add', 'vpod', 'mtu', env['FLANNEL_MTU']!, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name);
  await node.ns.ip('link', 'set', 'vpod', 'master', 'weft0', 'up');
  await ns.ip('link', 'set', 'eth0', 'mtu', env['FLANNEL_MTU']!, 'up');
  await ns.ip('addr', 'add', `${ip}/${len}`, 'dev', 'eth0');
  await ns.ip('route', 'add', 'default', 'via', gw);
  return { ns, ip };
}

/** One iperf3 TCP run from `client` to `server` (listening on `ip`); Gbit/s received and retransmits. */
async function iperf(server: Netns, client: Netns, ip: string, seconds: number): Promise<{ gbits: number; retransmits: number }> {
  const srv = server.spawn('iperf3', ['-s', '-1', '-B', ip, '-p', '5201']);
  try {
    await sleep(300);
    const out = JSON.parse(await client.exec('iperf3', '-c', ip, '-p', '5201', '-t', String(seconds), '-J')) as {
      end: { sum_received: { bits_per_second: number }; sum_sent: { retransmits?: number } };
    };
    return { gbits: out.end.sum_received.bits_per_second / 1e9, retransmits: out.end.sum_sent.retransmits ?? 0 };
  } finally {
    if (srv.exitCode === null) srv.kill('SIGTERM');
  }
}

async function pingAvg(from: Netns, ip: string, count: number): Promise<number> {
  const out = await from.exec('ping', '-c', String(count), '-i', '0.01', '-q', ip);
  const m = /= [\d.]+\/([\d.]+)\//.exec(out);
  if (!m || !/ 0% packet loss/.test(out)) throw new WeftError('WEFT_ERR_HARNESS', `ping ${ip} failed: ${out}`);
  return Number(m[1]);
}

async function measure(path: string, runs: number, raw: () => Promise<{ gbits: number; retransmits: number }>, over: () => Promise<{ gbits: number; retransmits: number }>, pings: { raw: () => Promise<number>; over: () => Promise<number> }): Promise<PathResult> {
  const rawRuns: number[] = [];
  const overRuns: number[] = [];
  let retransmits = 0;
  for (let r = 0; r < runs; r++) {
    rawRuns.push((await raw()).gbits);
    const o = await over();
    overRuns.push(o.gbits);
    retransmits += o.retransmits;
  }
  const pairRatios = overRuns.map((g, i) => g / rawRuns[i]!);
  return {
    path,
    gbits: overRuns,
    gbitsMedian: median(overRuns),
    retransmits,
    rawGbits: rawRuns,
    rawGbitsMedian: median(rawRuns),
    pairRatios,
    ratio: median(pairRatios),
    pingAvgMs: await pings.over(),
    rawPingAvgMs: await pings.raw(),
  };
}

export async function dataplane(bc: BenchCluster, o: { runs: number; seconds: number; pings: number }): Promise<PathResult[]> {
  const [h1, h2] = [bc.node(1), bc.node(2)];
  const start = async (): Promise<void> => {
    for (const n of [h1, h2]) bc.startWeftd(n, ['--bridge', 'weft0']);
    await Promise.all([h1.waitReady(60_000), h2.waitReady(60_000)]);
  };
  await start();
  const [p1, p2] = [await addPod(h1), await addPod(h2)];
  await pingAvg(p1.ns, p2.ip, 3); // the path works before anything is timed
  const raw = () => iperf(h2.ns, h1.ns, h2.ip, o.seconds);
  const over = () => iperf(p2.ns, p1.ns, p2.ip, o.seconds);
  const pings = { raw: () => pingAvg(h1.ns, h2.ip, o.pings), over: () => pingAvg(p1.ns, p2.ip, o.pings) };
  const results = [await measure('pod to pod, VXLAN overlay', o.runs, raw, over, pings)];

  // DirectRouting: the peers share the underlay segment, so weft routes via the peer's public IP.
  await bc.cluster.etcd.etcdctl('put', `${PREFIX}/config`, DIRECT_ROUTING_CONFIG);
  for (const n of [h1, h2]) await n.stop('SIGTERM', 5000);
  await start();
  const route = await h1.ns.ipJson<{ gateway?: string; dev: string }[]>('route', 'get', p2.ip);
  if (route[0]?.gateway !== h2.ip) throw new WeftError('WEFT_ERR_HARNESS', `DirectRouting not in effect on h1: ${JSON.stringify(route)}`);
  results.push(await measure('pod to pod, DirectRouting', o.runs, raw, over, pings));
  await p1.ns.delete();
  await p2.ns.delete();
  for (const n of [h1, h2]) await n.stop('SIGTERM', 5000);
  return results;
}
