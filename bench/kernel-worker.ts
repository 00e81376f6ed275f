/**
 * Benchmark worker, run inside a fresh network namespace by bench/kernel.ts:
 * registers the vxlan backend over the real kernel, then times
 *   program: a resync with N peers, from delivery until its pass has put all 3N entries in (4N with nexthops);
 *   event:   single 'added' events (median and p99 of batch -> programmed);
 *   remove:  a resync with no peers, until every entry is gone.
 * Prints one JSON line.
 */
import { silentLogger } from '../common/log.js';
import { Subnet } from '../common/subnet.js';
import type { Lease, PeerBatch } from '../lease/types.js';
import { network, peer } from './kernel-fixtures.js';
import { NetlinkKernel } from '../kernel/kernel-netlink.js';
import { PeerNetwork } from '../backend/peer-network.js';
import { VxlanBackend } from '../backend/vxlan/vxlan.js';

const N = Number(process.argv[2] ?? 1000);
/** --route-nexthops: `off` (flannel's onlink routes) or `on` (a nexthop per peer, routes by nhid). */
const ROUTE_NEXTHOPS = process.argv[3] === 'on' ? 'on' : 'off';
const EVENTS = 100;

async function main(): Promise<void> {
  const kernel = new NetlinkKernel();
  const net = (await new VxlanBackend().register({
    publicIP: '198.18.0.1', iface: { name: 'eth0', mtu: 1500 }, network, log: silentLogger(), kernel, resyncIntervalMs: 3_600_000, routeNexthops: ROUTE_NEXTHOPS,
  })) as PeerNetwork;
  const own: Lease = { ...peer(0), subnet: Subnet.parse('10.99.0.0/24'), key: '10.99.0.0/24' };
  await net.configure(own);
  const leases = Array.from({ length: N }, (_, i) => peer(i));
  const all = new Map(leases.map((l) => [l.subnet.toString(), l]));

  const batch = async (b: PeerBatch): Promise<number> => {
    const t = performance.now();
    await net.take(b);
    await net.settled();
    return performance.now() - t;
  };
  // Start-up's pass, until take() resolves. Once it is done the loop starts its kernel listener (a child
  // process) and runs a second full pass over what happened meanwhile (ReconcileLoop.listen); that is not
  // programming, so it is waited out untimed.
  const t0 = performance.now();
  await net.take({ events: [], peers: all, resync: true });
  const programMs = performance.now() - t0;
  await net.settled();
  const programmed = net.stats().entries;

  const latencies: number[] = [];
  const grown = new Map(all);
  for (let i = 0; i < EVENTS; i++) {
    const l = peer(N + i);
    grown.set(l.subnet.toString(), l);
    latencies.push(await batch({ events: [{ type: 'added', lease: l }], peers: grown, resync: false }));
  }
  for (let i = 0; i < EVENTS; i++) {
    const l = peer(N + i);
    grown.delete(l.subnet.toString());
    await batch({ events: [{ type: 'removed', lease: l }], peers: grown, resync: false });
  }

  const removeMs = await batch({ events: [], peers: new Map(), resync: true });
  const left = (await kernel.neighList((await kernel.linkByName('flannel.1'))!.index)).length;
  latencies.sort((a, b) => a - b);
  await net.close();
  await kernel.close();
  process.stdout.write(
    JSON.stringify({
      n: N, programMs, removeMs, programmed, left,
      eventMedianMs: latencies[Math.floor(latencies.length / 2)], eventP99Ms: latencies[Math.floor(latencies.length * 0.99)],
    }) + '\n',
  );
}

main().catch((err) => {
  process.stderr.write(`${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
