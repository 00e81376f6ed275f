/**
 * The kernel limit for a start-up: `ip -force -batch` + `bridge -force
 * -batch` programming the same N peers' entries (neighbour, FDB, onlink
 * route) onto a fresh flannel.1 in a fresh namespace, as bench/kernel.ts does.
 * Dual-stack peers add the same three in IPv6 onto flannel-v6.1 (NDP
 * neighbour, FDB entry with an IPv6 dst, onlink route), in the same batches.
 */
import { WeftError } from '../common/errors.js';
import { spawn } from 'node:child_process';
import { standaloneHost, type Netns } from '../test/harness/netns.js';
import { peerRange, type PeerLease } from './cluster-leases.js';
import { now } from './cluster-stats.js';

function runIn(ns: Netns, cmd: string, args: string[], input: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns.name, cmd, ...args], { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new WeftError('WEFT_ERR_HARNESS', `${cmd} exited ${code}: ${err.slice(0, 300)}`))));
    child.stdin.end(input);
  });
}

/**
 * Routes on `device` in its family's main table, less those the kernel adds
 * for the device's own addresses (in IPv6: fe80::/64, and the /128 of its
 * own subnet's address).
 */
export async function routesOn(ns: Netns, device: string, v6: boolean): Promise<number> {
  const out = await ns.ip(...(v6 ? ['-6'] : []), 'route', 'show', 'dev', device);
  return out.trim().split('\n').filter((l) => l && !/ proto kernel /.test(l)).length;
}

/** ms to program peers 1..n with iproute2 batches (spawns included, as for weftd); `dual`: dual-stack peers, both families. */
export async function ipBatchProgramMs(n: number, tag: string, dual = false): Promise<number> {
  const ns = await standaloneHost(`kb${tag}`, '198.18.0.1/16');
  try {
    await ns.ip('link', 'add', 'flannel.1', 'address', '0a:00:00:00:00:01', 'mtu', '1450', 'type', 'vxlan', 'id', '1', 'local', '198.18.0.1', 'dev', 'eth0', 'nolearning', 'dstport', '8472');
    await ns.ip('link', 'set', 'flannel.1', 'up');
    if (dual) {
      await ns.ip('addr', 'add', '2001:2::1/64', 'dev', 'eth0', 'nodad');
      await ns.ip('link', 'add', 'flannel-v6.1', 'address', '0a:00:00:00:00:02', 'mtu', '1430', 'type', 'vxlan', 'id', '1', 'local', '2001:2::1', 'dev', 'eth0', 'nolearning', 'dstport', '8472');
      await ns.ip('link', 'set', 'flannel-v6.1', 'up');
    }
    const peers = peerRange(1, n, dual);
    const v6 = peers.flatMap((p): NonNullable<PeerLease['v6']>[] => (p.v6 ? [p.v6] : []));
    const ip = [
      ...peers.map((p) => `neigh replace ${p.subnet.split('/')[0]} dev flannel.1 lladdr ${p.mac} nud permanent`),
      ...v6.map((p) => `neigh replace ${p.subnet.split('/')[0]} dev flannel-v6.1 lladdr ${p.mac} nud permanent`),
      ...peers.map((p) => `route replace ${p.subnet} via ${p.subnet.split('/')[0]} dev flannel.1 onlink proto 0x57`),
      ...v6.map((p) => `route replace ${p.subnet} via ${p.subnet.split('/')[0]} dev flannel-v6.1 onlink proto 0x57`),
    ];
    const bridge = [
      ...peers.map((p) => `fdb replace ${p.mac} dev flannel.1 dst ${p.publicIP} self permanent`),
      ...v6.map((p) => `fdb replace ${p.mac} dev flannel-v6.1 dst ${p.publicIP} self permanent`),
    ];
    const t0 = now();
    if (n > 0) {
      await runIn(ns, 'bridge', ['-force', '-batch', '-'], bridge.join('\n') + '\n');
      await runIn(ns, 'ip', ['-force', '-batch', '-'], ip.join('\n') + '\n');
    }
    const ms = now() - t0;
    const routes = await routesOn(ns, 'flannel.1', false);
    if (routes !== n) throw new WeftError('WEFT_ERR_HARNESS', `ip -batch programmed ${routes} of ${n} routes`);
    const routes6 = dual ? await routesOn(ns, 'flannel-v6.1', true) : 0;
    if (routes6 !== v6.length) throw new WeftError('WEFT_ERR_HARNESS', `ip -batch programmed ${routes6} of ${v6.length} IPv6 routes`);
    return ms;
  } finally {
    await ns.delete();
  }
}
