/**
 * How much one periodic repair pass costs at N peers with nothing to repair
 * (the idle CPU of a large node): run inside a namespace with an underlay
 * eth0, `node dist/bench/kernel-fullpass.js N PASSES`. Prints ms per pass.
 */
import { silentLogger } from '../common/log.js';
import { Subnet } from '../lease/subnet.js';
import { NetlinkKernel } from '../backend/kernel-netlink.js';
import type { PeerNetwork } from '../backend/peer-network.js';
import { VxlanBackend } from '../backend/vxlan/vxlan.js';
import { network, peer } from './kernel-fixtures.js';

const N = Number(process.argv[2] ?? 5000);
const PASSES = Number(process.argv[3] ?? 10);

const kernel = new NetlinkKernel();
const net = (await new VxlanBackend().register({ publicIP: '198.18.0.1', iface: { name: 'eth0', mtu: 1500 }, network, log: silentLogger(), kernel, resyncIntervalMs: 3_600_000 })) as PeerNetwork;
await net.configure({ ...peer(0), subnet: Subnet.parse('10.99.0.0/24'), key: '10.99.0.0/24' });
const peers = new Map(Array.from({ length: N }, (_, i) => peer(i)).map((l) => [l.subnet.toString(), l]));
await net.take({ events: [], peers, resync: true });
const times: number[] = [];
for (let i = 0; i < PASSES; i++) {
  const t = performance.now();
  await net.take({ events: [], peers, resync: true }); // a resync is a full pass: dump, diff, nothing to write
  times.push(performance.now() - t);
}
times.sort((a, b) => a - b);
console.log(JSON.stringify({ peers: N, entries: net.stats().entries, passMsMedian: Number(times[Math.floor(times.length / 2)]!.toFixed(1)) }));
await net.close();
await kernel.close();
