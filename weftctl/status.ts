/**
 * `weftctl status`: this node as weftd reports it (`/status`) next to what
 * the kernel holds, and the peer-health diagnosis per probed peer.
 */
import type { Kernel } from '../kernel/kernel.js';
import type { NodeStatus, ProbeMethod } from '../daemon/status.js';
import { formatSeconds, table, type Report } from './format.js';

/** The kernel's side of the status: the overlay device as it is now. */
export interface KernelView {
  readonly device: { readonly name: string; readonly mtu: number; readonly up: boolean; readonly neighbours: number; readonly fdb: number } | null;
  readonly ipForward: string | null;
}

export async function readKernelView(kernel: Kernel, deviceName: string | null, ipForward: string | null): Promise<KernelView> {
  const link = deviceName ? await kernel.linkByName(deviceName) : null;
  if (!link) return { device: null, ipForward };
  const [neighs, fdbs] = await Promise.all([kernel.neighList(link.index), kernel.fdbList(link.index)]);
  return { device: { name: link.name, mtu: link.mtu, up: link.up, neighbours: neighs.filter((n) => n.permanent).length, fdb: fdbs.length }, ipForward };
}

function ago(iso: string, now: number): string {
  return `${formatSeconds((now - Date.parse(iso)) / 1000)} ago`;
}

/** How weftd probes its peers, in a few words (null from a weftd that does not say). */
export function probeMethodText(p: { readonly method?: ProbeMethod | null; readonly fallbackReason?: string | null }): string | null {
  if (p.method === 'icmp') return 'ICMP echo';
  if (p.method === 'udp') return `UDP echo, answered by weft only${p.fallbackReason ? `: ${p.fallbackReason}` : ''}`;
  return null;
}

export function statusReport(url: string, s: NodeStatus, k: KernelView, now = Date.now()): Report {
  const lease = s.lease
    ? `${s.lease.subnet}, public IP ${s.lease.publicIP}, ${s.lease.etcdLeaseId === '0' ? 'reservation' : `TTL ${s.lease.ttlRemainingSeconds === null ? '?' : formatSeconds(s.lease.ttlRemainingSeconds)}`} (${s.leaseState})`
    : `none (${s.leaseState})`;
  const dev = s.backend?.device ?? null;
  const kernelDev = k.device
    ? `kernel: mtu ${k.device.mtu}, ${k.device.up ? 'up' : 'DOWN'}, ${k.device.neighbours} neighbours, ${k.device.fdb} fdb entries`
    : dev ? 'kernel: MISSING' : '';
  const rows: [string, string][] = [
    ['weftd', `${s.ready ? 'ready' : `NOT READY: ${s.notReadyReason}`} (${url})`],
    ['lease', lease],
    ['network', s.network ?? '-'],
    ['device', s.backend ? `${dev ?? `(${s.backend.type}: no device)`} mtu ${s.backend.mtu}${kernelDev ? `; ${kernelDev}` : ''}` : '-'],
    ['underlay', s.underlay ? `${s.underlay.name} mtu ${s.underlay.mtu}` : '-'],
    ['peers', `${s.peers} known, ${s.entriesProgrammed} kernel entries programmed`],
    ['reconcile', s.lastReconcile ? `last ${s.lastReconcile.full ? 'full' : 'delta'} pass ${ago(s.lastReconcile.at, now)}, ${(s.lastReconcile.seconds * 1000).toFixed(1)} ms, ${s.lastReconcile.failed} failed` : 'none yet'],
    ['etcd', s.etcdUnreachable ? `UNREACHABLE for ${formatSeconds(s.etcdUnreachable.seconds)} (since ${s.etcdUnreachable.since}); the kernel keeps every peer entry` : s.etcd],
    ['ip_forward', k.ipForward ?? '?'],
  ];
  const parts = [rows.map(([a, b]) => `${a.padEnd(11)}${b}`).join('\n')];
  const method = s.probes ? probeMethodText(s.probes) : null;
  if (!s.probes) parts.push('', 'peer health: probing off (--probe-interval 0)');
  else if (s.probes.peers.length === 0) parts.push('', `peer health${method ? ` (${method})` : ''}: no peer probed yet`);
  else {
    const r = s.probes.round;
    const rtt = (ms: number | null) => (ms === null ? 'no answer' : `ok ${ms.toFixed(2)} ms`);
    const about = [method, r && `last round ${ago(r.at, now)}: ${r.probed} of ${r.peers} peers${r.sampled ? ', sampled' : ''}`].filter(Boolean).join('; ');
    parts.push(
      '',
      `peer health${about ? ` (${about})` : ''}`,
      table(
        ['PEER', 'PUBLIC IP', 'UNDERLAY', 'OVERLAY', 'MTU', 'DIAGNOSIS'],
        s.probes.peers.map((p) => [p.subnet, p.publicIP, rtt(p.underlay.rttMs), rtt(p.overlay.rttMs), p.mtu === null ? '-' : String(p.mtu), p.diagnosis]),
      ),
    );
  }
  const unhealthy = s.probes?.peers.filter((p) => p.verdict !== 'ok').length ?? 0;
  return { json: { url, status: s, kernel: k }, text: parts.join('\n'), exitCode: s.ready && unhealthy === 0 ? 0 : 1 };
}
