/**
 * `weftctl status`: this node as weftd reports it (`/status`) next to what
 * the kernel holds, and the peer-health diagnosis per probed peer.
 */
import type { Family, Kernel } from '../kernel/kernel.js';
import type { NodeStatus, ProbeMethod } from '../daemon/status.js';
import { formatSeconds, table, type Report } from './format.js';

/** An overlay device as the kernel holds it. */
export interface DeviceView {
  readonly name: string;
  readonly mtu: number;
  readonly up: boolean;
  readonly neighbours: number;
  readonly fdb: number;
}

/** The kernel's side of the status: the overlay devices as they are now. */
export interface KernelView {
  /** The first of `devices` (the IPv4 one in a dual-stack network), null when it is missing. */
  readonly device: DeviceView | null;
  /** By name, every device weftd reports (`backend.devices`); null for one the kernel does not have. Absent: only `device` was read. */
  readonly devices?: Readonly<Record<string, DeviceView | null>>;
  readonly ipForward: string | null;
  /** net.ipv6.conf.all.forwarding, read when the network has IPv6; absent otherwise. */
  readonly ipv6Forwarding?: string | null;
}

/** The family a VXLAN device carries: `flannel-v6.<VNI>` is flannel's (and weft's) IPv6 device, any other the IPv4 one. */
export function deviceFamily(name: string): Family {
  return /^flannel-v6\.\d+$/.test(name) ? 6 : 4;
}

/** The overlay devices from `/status` (`backend.devices`, or `backend.device` from a weftd before IPv6). */
export function statusDevices(s: NodeStatus): string[] {
  const b = s.backend;
  if (!b) return [];
  return b.devices?.length ? [...b.devices] : b.device ? [b.device] : [];
}

export async function readKernelView(kernel: Kernel, deviceNames: readonly string[], ipForward: string | null, ipv6Forwarding?: string | null): Promise<KernelView> {
  const devices: Record<string, DeviceView | null> = {};
  for (const name of deviceNames) {
    const link = await kernel.linkByName(name);
    if (!link) {
      devices[name] = null;
      continue;
    }
    const [neighs, fdbs] = await Promise.all([kernel.neighList(link.index, deviceFamily(name)), kernel.fdbList(link.index)]);
    devices[name] = { name: link.name, mtu: link.mtu, up: link.up, neighbours: neighs.filter((n) => n.permanent).length, fdb: fdbs.length };
  }
  const first = deviceNames[0];
  return { device: first ? (devices[first] ?? null) : null, devices, ipForward, ...(ipv6Forwarding !== undefined ? { ipv6Forwarding } : {}) };
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

/**
 * The lease's subnets and public addresses: `10.244.3.0/24, public IP P`,
 * dual-stack `10.244.3.0/24 + fd00:10:244:3::/64, public IP P, public IPv6 P6`,
 * IPv6-only without flannel's 0.0.0.0/0 and 0.0.0.0 placeholders.
 */
function leaseText(l: NonNullable<NodeStatus['lease']>): string {
  const v4 = l.subnet !== '0.0.0.0/0';
  const subnets = [v4 ? l.subnet : null, l.ipv6Subnet ?? null].filter(Boolean).join(' + ') || l.subnet;
  const addresses = [v4 || !l.publicIPv6 ? `public IP ${l.publicIP}` : null, l.publicIPv6 ? `public IPv6 ${l.publicIPv6}` : null].filter(Boolean).join(', ');
  return `${subnets}, ${addresses}`;
}

/** The device rows: one per overlay device (`device`, then `device v6` beside an IPv4 one), as weftd names them and the kernel holds them. */
function deviceRows(s: NodeStatus, k: KernelView): [string, string][] {
  if (!s.backend) return [['device', '-']];
  const names = statusDevices(s);
  if (names.length === 0) return [['device', `(${s.backend.type}: no device) mtu ${s.backend.mtu}`]];
  return names.map((name, i) => {
    const held = k.devices ? (k.devices[name] ?? null) : i === 0 ? k.device : null;
    const kernelDev = held ? `kernel: mtu ${held.mtu}, ${held.up ? 'up' : 'DOWN'}, ${held.neighbours} neighbours, ${held.fdb} fdb entries` : 'kernel: MISSING';
    const label = i > 0 && deviceFamily(name) === 6 ? 'device v6' : 'device';
    return [label, `${name} mtu ${s.backend!.mtu}; ${kernelDev}`];
  });
}

export function statusReport(url: string, s: NodeStatus, k: KernelView, now = Date.now()): Report {
  const lease = s.lease
    ? `${leaseText(s.lease)}, ${s.lease.etcdLeaseId === '0' ? 'reservation' : `TTL ${s.lease.ttlRemainingSeconds === null ? '?' : formatSeconds(s.lease.ttlRemainingSeconds)}`} (${s.leaseState})`
    : `none (${s.leaseState})`;
  const network = [s.network, s.ipv6Network ?? null].filter(Boolean).join(' + ') || '-';
  const forwarding = k.ipv6Forwarding !== undefined ? `${k.ipForward ?? '?'}, IPv6 forwarding ${k.ipv6Forwarding ?? '?'}` : (k.ipForward ?? '?');
  const rows: [string, string][] = [
    ['weftd', `${s.ready ? 'ready' : `NOT READY: ${s.notReadyReason}`} (${url})`],
    ['lease', lease],
    ['network', network],
    ...deviceRows(s, k),
    ['underlay', s.underlay ? `${s.underlay.name} mtu ${s.underlay.mtu}` : '-'],
    ['peers', `${s.peers} known, ${s.entriesProgrammed} kernel entries programmed`],
    ['reconcile', s.lastReconcile ? `last ${s.lastReconcile.full ? 'full' : 'delta'} pass ${ago(s.lastReconcile.at, now)}, ${(s.lastReconcile.seconds * 1000).toFixed(1)} ms, ${s.lastReconcile.failed} failed` : 'none yet'],
    ['etcd', s.etcdUnreachable ? `UNREACHABLE for ${formatSeconds(s.etcdUnreachable.seconds)} (since ${s.etcdUnreachable.since}); the kernel keeps every peer entry` : s.etcd],
    ['ip_forward', forwarding],
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
