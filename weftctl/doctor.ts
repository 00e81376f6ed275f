/**
 * `weftctl doctor`: the node-level faults that break an overlay while weftd
 * itself looks healthy, each with a verdict and the fix. The checks are pure
 * functions of facts; `gatherFacts` reads those facts from the kernel,
 * iptables, etcd and weftd's `/status` of the current network namespace.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { promisify } from 'node:util';
import type { Kernel } from '../kernel/kernel.js';
import { VXLAN_OVERHEAD_V4, VXLAN_OVERHEAD_V6 } from '../backend/vxlan/vxlan.js';
import { WeftError } from '../common/errors.js';
import { Subnet } from '../common/subnet.js';
import type { NodeStatus } from '../daemon/status.js';
import { FLANNEL_CHAINS, forwardRuleSet, trafficChains } from '../kernel/iptables.js';
import type { WeftdOptions } from '../common/options.js';
import type { PeerHealth, ProbeMethod } from '../daemon/status.js';
import type { LeaseRow } from './leases.js';
import type { Report } from './format.js';
import { deviceFamily, statusDevices } from './status.js';
import { VXLAN_DEFAULT_PORT } from '../common/defaults.js';

export type Verdict = 'ok' | 'warn' | 'fail' | 'skip';

export interface Check {
  readonly name: string;
  readonly verdict: Verdict;
  readonly detail: string;
  /** What to do about a warn or fail. */
  readonly fix: string | null;
}

const ok = (name: string, detail: string): Check => ({ name, verdict: 'ok', detail, fix: null });
const skip = (name: string, why: string): Check => ({ name, verdict: 'skip', detail: `cannot check: ${why}`, fix: null });

/**
 * Forwarding in each family the network carries: `value` is
 * net.ipv4.ip_forward, `ipv6` net.ipv6.conf.all.forwarding (null: unreadable;
 * undefined: the family is not carried, so not checked).
 */
export function checkIpForward(value: string | null | undefined, ipv6?: string | null): Check {
  const name = 'ip_forward';
  const sysctls = [
    ...(value !== undefined ? [{ key: 'net.ipv4.ip_forward', value }] : []),
    ...(ipv6 !== undefined ? [{ key: 'net.ipv6.conf.all.forwarding', value: ipv6 }] : []),
  ];
  const off = sysctls.filter((x) => x.value !== null && x.value !== '1');
  if (off.length > 0) {
    return {
      name,
      verdict: 'fail',
      detail: `${off.map((x) => `${x.key}=${x.value}`).join(', ')}: this node does not route between containers and the overlay${off.length < sysctls.length || sysctls.length === 1 ? '' : ' in either family'}`,
      fix: `${off.map((x) => `sysctl -w ${x.key}=1`).join('; ')} (weftd sets it at start; something reset it since)`,
    };
  }
  const unreadable = sysctls.filter((x) => x.value === null);
  if (unreadable.length === sysctls.length) return skip(name, `${unreadable.map((x) => `/proc/sys/${x.key.replace(/\./g, '/')}`).join(', ')} unreadable`);
  return ok(name, sysctls.map((x) => `${x.key}=${x.value ?? '?'}`).join(', '));
}

/** FORWARD policy of the filter table in `iptables-save` text, e.g. `DROP`. */
export function forwardPolicy(save: string): string | null {
  const filter = save.split(/^\*/m).find((t) => t.startsWith('filter'));
  return filter ? (/^:FORWARD (\S+)/m.exec(filter)?.[1] ?? null) : null;
}

/** Whether weft's (flannel's) FLANNEL-FWD accept rules for `network` are in place and jumped to, in `chain` (trafficChains). */
export function hasForwardAccept(save: string, network: Subnet, chain = FLANNEL_CHAINS.forward): boolean {
  const set = forwardRuleSet(network, chain);
  const lines = new Set(save.split('\n').map((l) => l.trim()));
  return lines.has(`-A FORWARD -m comment --comment "${set.comment}" -j ${set.chain}`) && set.rules.every((r) => lines.has(`-A ${set.chain} ${r}`));
}

export function checkForward(save: string | null, network: Subnet | null, error = 'iptables-save failed', chain = FLANNEL_CHAINS.forward): Check {
  const name = 'FORWARD policy';
  if (save === null) return skip(name, error);
  const policy = forwardPolicy(save) ?? 'ACCEPT';
  const rules = network !== null && hasForwardAccept(save, network, chain);
  if (policy === 'ACCEPT') return ok(name, `policy ACCEPT${rules ? `, ${chain} accept rules in place` : ''}`);
  if (rules) return ok(name, `policy ${policy}, ${chain} accepts ${network} in both directions`);
  return {
    name,
    verdict: 'fail',
    detail: `policy ${policy} and no ${chain} accept rules for ${network ?? 'the Network'}: overlay traffic forwarded through this node is dropped`,
    fix: 'run weftd with --iptables-forward-rules=true (the default), or iptables -P FORWARD ACCEPT',
  };
}

export function checkBrNetfilter(callIptables: string | null): Check {
  const name = 'br_netfilter';
  if (callIptables === null) return ok(name, 'not loaded: bridged container traffic bypasses iptables (kube-proxy and NetworkPolicy need it: modprobe br_netfilter)');
  if (callIptables === '1') return ok(name, 'loaded, bridge-nf-call-iptables=1: bridged traffic passes the FORWARD chain');
  return { name, verdict: 'warn', detail: 'loaded but bridge-nf-call-iptables=0: iptables rules never see bridged container traffic', fix: 'sysctl -w net.bridge.bridge-nf-call-iptables=1' };
}

/** An overlay device for the MTU check: `mtu` null when the kernel does not have it; `overhead` that of its underlay family (50 IPv4, 70 IPv6). */
export interface DeviceMtu {
  readonly name: string;
  readonly mtu: number | null;
  readonly overhead: number;
}

export interface MtuFacts {
  /** Every overlay device weftd reports, one per family (none known: empty). */
  readonly devices: readonly DeviceMtu[];
  readonly underlay: { readonly name: string; readonly mtu: number } | null;
  /** The MTU weftd gives containers (FLANNEL_MTU, the smallest device's), from /status. */
  readonly weftdMtu: number | null;
  /** Overlay MTUs peers reported in their probe answers. */
  readonly peerMtus: readonly { readonly peer: string; readonly mtu: number }[];
}

/**
 * The container MTU must fit each device: a device fails when its MTU is below
 * FLANNEL_MTU (containers' full-size packets do not fit) or above the underlay
 * MTU less its encapsulation overhead (encapsulated packets do not fit). With
 * two devices the larger one's MTU above FLANNEL_MTU is expected.
 */
export function checkMtu(f: MtuFacts): Check {
  const name = 'MTU';
  const missing = f.devices.filter((d) => d.mtu === null);
  if (f.devices.length === 0 || missing.length > 0) {
    const which = missing.length > 0 ? `the overlay device ${missing.map((d) => d.name).join(', ')} does not exist` : 'the overlay device does not exist';
    return { name, verdict: 'fail', detail: which, fix: 'start (or restart) weftd; it creates the device' };
  }
  const devices = f.devices as readonly (DeviceMtu & { mtu: number })[];
  const fix = (d: DeviceMtu, mtu: number) => `ip link set dev ${d.name} mtu ${mtu} (a running weftd resets it as soon as the kernel reports the change)`;
  for (const d of devices) {
    if (f.underlay && d.mtu > f.underlay.mtu - d.overhead) {
      return { name, verdict: 'fail', detail: `${d.name} mtu ${d.mtu} > underlay ${f.underlay.name} mtu ${f.underlay.mtu} - ${d.overhead}: encapsulated full-size packets are dropped`, fix: fix(d, f.underlay.mtu - d.overhead) };
    }
  }
  for (const d of devices) {
    if (f.weftdMtu !== null && d.mtu < f.weftdMtu) {
      return {
        name,
        verdict: 'fail',
        detail: `${d.name} mtu ${d.mtu} but containers were given FLANNEL_MTU=${f.weftdMtu}: their full-size packets do not fit`,
        fix: fix(d, f.underlay ? f.underlay.mtu - d.overhead : f.weftdMtu),
      };
    }
  }
  const here = f.weftdMtu ?? Math.min(...devices.map((d) => d.mtu));
  const odd = f.peerMtus.filter((p) => p.mtu !== here);
  if (odd.length > 0) {
    const list = odd.slice(0, 5).map((p) => `${p.peer} ${p.mtu}`).join(', ');
    return { name, verdict: 'warn', detail: `peers use a different overlay MTU (${list}; here ${here}): large packets fail in one direction`, fix: 'give every node the same underlay MTU, or set Backend.MTU in the network config' };
  }
  const peers = f.peerMtus.length > 0 ? `, same as ${f.peerMtus.length} probed peers` : '';
  const each = devices.map((d) => `${d.name} mtu ${d.mtu} = underlay ${f.underlay?.mtu ?? '?'} - ${d.overhead}`).join(', ');
  const containers = devices.length > 1 && f.weftdMtu !== null ? `; containers get ${f.weftdMtu}` : '';
  return ok(name, `${each}${containers}${peers}`);
}

/** Since Linux 4.20 permanent neighbours are outside neighbour GC accounting. */
export function permanentNeighboursExempt(kernelRelease: string): boolean {
  const [major = 0, minor = 0] = kernelRelease.split(/[.-]/).map(Number);
  return major > 4 || (major === 4 && minor >= 20);
}

export function checkGcThresh(gcThresh3: number | null, peers: number, kernelRelease: string): Check {
  const name = 'neighbour gc_thresh3';
  if (gcThresh3 === null) return skip(name, 'net.ipv4.neigh.default.gc_thresh3 is not visible here (it is global: read it in the root network namespace)');
  if (permanentNeighboursExempt(kernelRelease) || peers < gcThresh3 * 0.8) return ok(name, `gc_thresh3 ${gcThresh3}, ${peers} peers${permanentNeighboursExempt(kernelRelease) ? ' (kernel ≥ 4.20: weft\'s permanent entries do not count)' : ''}`);
  return {
    name,
    verdict: peers >= gcThresh3 ? 'fail' : 'warn',
    detail: `gc_thresh3 ${gcThresh3} for ${peers} peers on kernel ${kernelRelease}: neighbour entries are dropped or refused ("neighbour table overflow")`,
    fix: `sysctl -w net.ipv4.neigh.default.gc_thresh3=${Math.max(4096, peers * 4)}`,
  };
}

/** `method`: the echo weftd probes with (ICMP is answered by every node, weft's UDP echo only by weftd). */
export function checkVxlanPort(probes: readonly PeerHealth[] | null, port: number, why: string, method: ProbeMethod | null = 'udp'): Check {
  const name = `VXLAN port (UDP ${port})`;
  if (probes === null) return skip(name, why);
  if (probes.length === 0) return skip(name, 'no peer probed yet');
  const blocked = probes.filter((p) => p.verdict === 'overlay-blocked');
  const silent = probes.filter((p) => p.verdict === 'unreachable');
  const list = (ps: readonly PeerHealth[]) => ps.slice(0, 5).map((p) => `${p.subnet} (${p.publicIP})`).join(', ') + (ps.length > 5 ? `, +${ps.length - 5} more` : '');
  if (blocked.length > 0) {
    return { name, verdict: 'fail', detail: `underlay OK but overlay blocked to ${list(blocked)}`, fix: `allow UDP ${port} between the nodes' public IPs in both directions (iptables INPUT/OUTPUT on both ends, firewalls, security groups)` };
  }
  if (silent.length > 0) {
    const fix =
      method === 'icmp'
        ? 'check that the node is up and that ICMP echo is allowed between the nodes (public IPs and VXLAN devices)'
        : 'check that the node is up and runs weftd (flanneld has no probe responder; weftd with CAP_NET_RAW probes with ICMP, which it answers) and that the probe port is open';
    return { name, verdict: 'warn', detail: `no answer at all from ${list(silent)}`, fix };
  }
  return ok(name, `${probes.length} probed peers answer over the overlay`);
}

/** Duplicates of PublicIP, and of PublicIPv6 (an IPv6-only lease's unset PublicIP is no address). */
export function checkDuplicatePublicIPs(rows: readonly LeaseRow[] | null, why: string): Check {
  const name = 'duplicate public IPs';
  if (rows === null) return skip(name, why);
  const byIp = new Map<string, string[]>();
  for (const r of rows) {
    for (const ip of [r.publicIP, r.publicIPv6 ?? null]) if (ip) byIp.set(ip, [...(byIp.get(ip) ?? []), r.subnet]);
  }
  const dups = [...byIp].filter(([, subnets]) => subnets.length > 1);
  if (dups.length === 0) return ok(name, `${byIp.size} leases, each with its own public IP`);
  return {
    name,
    verdict: 'fail',
    detail: dups.map(([ip, subnets]) => `${ip} holds ${subnets.join(', ')}`).join('; ') + ': peers program only one of them',
    fix: 'release the stale subnet (weftctl release SUBNET --force) or give each node its own --public-ip',
  };
}

const REFUSAL_FIX: Record<string, string> = {
  'duplicate-mac':
    "the newer lease's node shares a VTEP MAC with an older one (a cloned VM or state directory): restart weftd on that node, which then takes a new MAC, or weftctl release its subnet if it is stale",
  'duplicate-public-ip': 'two leases name one PublicIP: give each node its own --public-ip, or weftctl release SUBNET --force the stale one',
  'public-ip': "a lease's PublicIP is inside the pod network or link-local: set the node's --public-ip (or --iface) to its underlay address, or release the key",
  'covers-public-ip': "a lease's subnet holds a node's underlay address (the Network covers the hosts' LAN): delete that key (etcdctl del KEY) and keep SubnetMin past the hosts' addresses",
};

/** Leases every node refuses (lease/admission.ts), with the fix. */
export function checkRefusedLeases(rows: readonly LeaseRow[] | null, why: string): Check {
  const name = 'lease conflicts';
  if (rows === null) return skip(name, why);
  const refused = rows.filter((r) => r.refused);
  if (refused.length === 0) return ok(name, 'no lease shares a VtepMAC or PublicIP with an older one, every PublicIP is usable');
  const reasons = [...new Set(refused.map((r) => r.refused!.reason))];
  return {
    name,
    verdict: 'fail',
    detail: refused.map((r) => `${r.subnet} refused on every node: ${r.refused!.detail}`).join('; '),
    fix: reasons.map((r) => REFUSAL_FIX[r]).join('; '),
  };
}

/** Leases this node skips because they collide with its own addresses or routes, and a conflict its own lease loses. */
export function checkNodeCollisions(status: NodeStatus | null, why: string): Check {
  const name = 'leases vs this node';
  if (!status) return skip(name, why);
  const collisions = (status.refused ?? []).filter((r) => r.reason === 'collides-with-node');
  const own = status.ownLeaseConflict ?? null;
  if (collisions.length === 0 && !own) return ok(name, "no lease collides with this node's addresses or routes");
  const details = collisions.map((c) => `${c.subnet} skipped: ${c.detail}`);
  if (own) details.push(`this node loses to an older lease: ${own.detail}`);
  const fixes: string[] = [];
  if (collisions.length > 0) {
    fixes.push("the pod Network overlaps this node's own networks: shrink Network or raise SubnetMin past the hosts' LAN, or weftctl reserve the colliding subnets so no node leases them");
  }
  if (own) fixes.push(REFUSAL_FIX[own.reason] ?? 'see the log');
  return { name, verdict: 'fail', detail: details.join('; '), fix: fixes.join('; ') };
}

/**
 * `skew` is the interval local time could be off from etcd's by, derived
 * from etcd's HTTP Date header (one-second resolution) and the request's
 * round trip.
 */
export function checkClock(skew: { min: number; max: number } | null, why: string): Check {
  const name = 'clock skew vs etcd';
  if (skew === null) return skip(name, why);
  const off = skew.min > 0 ? skew.min : skew.max < 0 ? -skew.max : 0;
  if (off <= 1) return ok(name, 'within 1 s of etcd');
  return { name, verdict: off > 30 ? 'fail' : 'warn', detail: `local clock about ${off.toFixed(1)} s ${skew.min > 0 ? 'behind' : 'ahead of'} etcd: TLS validity and log correlation suffer`, fix: 'synchronise the clock with NTP (chronyd, systemd-timesyncd)' };
}

// ---------------------------------------------------------------- gathering facts

const execFileP = promisify(execFile);

async function readSysctl(name: string): Promise<string | null> {
  return readFile(`/proc/sys/${name.replace(/\./g, '/')}`, 'utf8').then((s) => s.trim(), () => null);
}

/** etcd's clock through the Date header of its HTTP `/version` (same port as gRPC). */
export async function etcdClockSkew(o: WeftdOptions): Promise<{ min: number; max: number }> {
  const url = new URL('/version', o.etcdEndpoints[0]);
  const t0 = Date.now();
  const date = await new Promise<string>((resolve, reject) => {
    const tls = url.protocol === 'https:';
    const options = tls
      ? { ca: o.etcdCafile ? readFileSync(o.etcdCafile) : undefined, cert: o.etcdCertfile ? readFileSync(o.etcdCertfile) : undefined, key: o.etcdKeyfile ? readFileSync(o.etcdKeyfile) : undefined, timeout: 3000 }
      : { timeout: 3000 };
    const req = (tls ? httpsGet : httpGet)(url, options, (res) => {
      res.resume();
      const d = res.headers.date;
      if (d) resolve(d);
      else reject(new WeftError('WEFT_ERR_STORE_UNAVAILABLE', 'etcd sent no Date header'));
    });
    req.on('timeout', () => req.destroy(new WeftError('WEFT_ERR_STORE_UNAVAILABLE', 'timed out')));
    req.on('error', reject);
  });
  const t1 = Date.now();
  const server = Date.parse(date);
  // The server stamped some instant in [t0, t1] with a time in [server, server + 1 s).
  return { min: (server - t1) / 1000, max: (server + 1000 - t0) / 1000 };
}

export interface DoctorInputs {
  readonly options: WeftdOptions;
  readonly kernel: Kernel;
  readonly status: { status: NodeStatus } | { error: string };
  readonly leases: { rows: LeaseRow[]; network: Subnet | null } | { error: string };
}

export async function runChecks(inputs: DoctorInputs): Promise<Check[]> {
  const { options, kernel } = inputs;
  const status = 'status' in inputs.status ? inputs.status.status : null;
  const statusWhy = 'error' in inputs.status ? inputs.status.error : '';
  const leases = 'rows' in inputs.leases ? inputs.leases : null;
  const network = leases?.network ?? (status?.network ? Subnet.parse(status.network) : null);

  let save: string | null = null;
  let saveError = '';
  try {
    save = (await execFileP('iptables-save', ['-t', 'filter'])).stdout;
  } catch (err) {
    saveError = `iptables-save: ${(err as Error).message.split('\n')[0]}`;
  }
  const devices: DeviceMtu[] = [];
  for (const name of status ? statusDevices(status) : []) {
    const link = await kernel.linkByName(name);
    devices.push({ name, mtu: link?.mtu ?? null, overhead: deviceFamily(name) === 6 ? VXLAN_OVERHEAD_V6 : VXLAN_OVERHEAD_V4 });
  }
  const underlayName = status?.underlay?.name ?? null;
  const underlay = underlayName ? await kernel.linkByName(underlayName) : null;
  const probes = status?.probes?.peers ?? null;
  // The families the network carries; without weftd's word, IPv4 as before.
  const carriesIPv4 = !status || status.network !== null || !status.ipv6Network;
  const carriesIPv6 = !!status?.ipv6Network;
  const [ipForward, ipv6Forwarding, callIptables, gc3] = await Promise.all([
    carriesIPv4 ? readSysctl('net.ipv4.ip_forward') : undefined,
    carriesIPv6 ? readSysctl('net.ipv6.conf.all.forwarding') : undefined,
    readSysctl('net.bridge.bridge-nf-call-iptables'),
    readSysctl('net.ipv4.neigh.default.gc_thresh3'),
  ]);
  let skew: { min: number; max: number } | null = null;
  let skewWhy = '';
  try {
    skew = await etcdClockSkew(options);
  } catch (err) {
    skewWhy = `etcd's time unavailable (${(err as Error).message})`;
  }
  const checks: Check[] = [
    checkIpForward(ipForward, ipv6Forwarding),
    checkForward(save, network, saveError, trafficChains(options.etcdPrefix).forward),
    checkBrNetfilter(callIptables),
  ];
  if (status?.backend?.type === 'vxlan' || !status) {
    checks.push(
      status
        ? checkMtu({
            devices,
            underlay: underlay ? { name: underlay.name, mtu: underlay.mtu } : null,
            weftdMtu: status.backend?.mtu ?? null,
            peerMtus: (probes ?? []).filter((p) => p.mtu !== null).map((p) => ({ peer: p.subnet, mtu: p.mtu! })),
          })
        : skip('MTU', `device unknown: ${statusWhy}`),
    );
  }
  checks.push(
    checkGcThresh(gc3 === null ? null : Number(gc3), status?.peers ?? leases?.rows.length ?? 0, release()),
    checkVxlanPort(status ? probes : null, status?.backend?.vxlanPort ?? VXLAN_DEFAULT_PORT, status ? 'probing is off (--probe-interval 0)' : statusWhy, status?.probes?.method ?? null),
    checkDuplicatePublicIPs(leases?.rows ?? null, 'error' in inputs.leases ? inputs.leases.error : ''),
    checkRefusedLeases(leases?.rows ?? null, 'error' in inputs.leases ? inputs.leases.error : ''),
    checkNodeCollisions(status, statusWhy),
    checkClock(skew, skewWhy),
  );
  return checks;
}

export function doctorReport(checks: readonly Check[]): Report {
  const failed = checks.filter((c) => c.verdict === 'fail').length;
  const warned = checks.filter((c) => c.verdict === 'warn').length;
  const text = checks.map((c) => `${c.verdict.toUpperCase().padEnd(4)}  ${c.name}: ${c.detail}${c.fix ? `\n      fix: ${c.fix}` : ''}`).join('\n');
  const summary = `\n\n${checks.length} checks: ${failed} failed, ${warned} warnings`;
  return { json: { checks, failed, warned }, text: text + summary, exitCode: failed > 0 ? 1 : 0 };
}
