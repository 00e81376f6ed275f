/**
 * `weftctl diff`: this node's desired kernel state (every peer lease in
 * etcd, through the backend's own `Programmer.entriesFor`) against what the
 * kernel holds (dumped the way a full reconcile pass does), entry by entry:
 * missing (desired, absent), wrong (present, different) and stale (weft's,
 * no lease wants it). The diff itself is the reconciler's `planFull`.
 */
import { silentLogger } from '../common/log.js';
import { WeftError } from '../common/errors.js';
import { showNexthopTarget, type Kernel } from '../kernel/kernel.js';
import { backendFor, type BackendBuild } from '../backend/backend.js';
import { desiredEntries, dumpOwned, entryKey, planFull, type Entry, type Owned, type Ownership } from '../backend/reconciler.js';
import { NodeNetworks, leaseCollision } from '../backend/node-networks.js';
import { planesOf, type Plane } from '../backend/families.js';
import { describeSubnets, slotOf } from '../lease/keyspace.js';
import { publicName, sameNode } from '../lease/manager.js';
import { listsNexthops, type NexthopSupport } from '../backend/nexthops.js';
import type { RouteNexthopsMode } from '../common/defaults.js';
import { PeerAdmission } from '../lease/admission.js';
import { createBackends } from '../backend/registry.js';
import { validateLease } from '../lease/lease-value.js';
import type { Registry } from '../lease/registry.js';
import type { Lease, NetworkConfig } from '../lease/types.js';
import { DryRunKernel } from './dryrun.js';
import { table, type Report } from './format.js';
import type { Underlay } from '../kernel/underlay.js';

export type DiffStatus = 'missing' | 'wrong' | 'stale';

export interface DiffLine {
  readonly status: DiffStatus;
  /** The peer subnet the entry serves; null for a stale entry. */
  readonly peer: string | null;
  readonly kind: Entry['kind'];
  /** The entry weftd wants, iproute2 style (null when stale). */
  readonly want: string | null;
  /** The entry the kernel holds (null when missing). */
  readonly held: string | null;
}

export interface DiffResult {
  readonly ownSubnet: string;
  readonly peers: number;
  readonly desiredEntries: number;
  readonly lines: readonly DiffLine[];
  /** Device-level changes weftd would make (address, MTU, up), iproute2 style. */
  readonly device: readonly string[];
}

/** An entry as iproute2 prints it, with device names. */
export function showEntry(e: Entry, dev: (ifindex: number) => string): string {
  switch (e.kind) {
    case 'neigh':
      return `${e.ip} dev ${dev(e.ifindex)} lladdr ${e.mac} PERMANENT`;
    case 'fdb':
      return `${e.mac} dev ${dev(e.ifindex)} dst ${e.dst} self permanent`;
    case 'route':
      if (e.nhid) return `${e.dst} nhid ${e.nhid}`;
      return `${e.dst} via ${e.gw ?? '-'} dev ${dev(e.oif)}${e.onlink ? ' onlink' : ''}`;
    case 'nexthop':
      return `id ${e.id} ${showNexthopTarget(e, dev)}`;
  }
}

/** The pure part: desired per peer, actual as dumped, into diff lines. */
export function diffEntries(desired: ReadonlyMap<string, Owned>, actual: ReadonlyMap<string, Entry>, dev: (ifindex: number) => string): DiffLine[] {
  const plan = planFull(desired, actual);
  const lines: DiffLine[] = [];
  for (const s of plan.sets) {
    const held = actual.get(entryKey(s.entry));
    lines.push({ status: held ? 'wrong' : 'missing', peer: s.peer, kind: s.entry.kind, want: showEntry(s.entry, dev), held: held ? showEntry(held, dev) : null });
  }
  for (const e of plan.deletes) lines.push({ status: 'stale', peer: null, kind: e.kind, want: null, held: showEntry(e, dev) });
  return lines;
}

/** The backend's programmer for this node, built as weftd builds it, on `kernel`. */
async function programmerFor(config: NetworkConfig, kernel: Kernel, underlay: Underlay, routeNexthops: NexthopSupport): Promise<BackendBuild['programmer']> {
  const planes = planesOf(config);
  if (planes.length === 0) throw new WeftError('WEFT_ERR_CONFIG_INVALID', 'the network config has neither a Network nor an IPv6Network');
  const backend = backendFor(createBackends(), config.backend.type);
  // No state dir: the device's MAC is adopted as it is, and nothing is written.
  const registration = { publicIP: underlay.publicIP, publicIPv6: underlay.publicIPv6 ?? null, iface: underlay, network: config, log: silentLogger(), routeNexthops };
  const built = await backend.build(registration, kernel, planes);
  return built.programmer;
}

/**
 * Computes the diff for this node (the one whose lease carries the underlay's
 * public addresses, chosen for the config's families) against the kernel of
 * the current network namespace. The route
 * form follows weftd's --route-nexthops; `auto` is judged by whether the
 * kernel lists nexthop objects (weftd's probe would write).
 */
export async function diffNode(
  registry: Registry,
  kernel: Kernel,
  underlayFor: (stack: { v4: boolean; v6: boolean }) => Promise<Underlay>,
  routeNexthops: RouteNexthopsMode = 'off',
): Promise<DiffResult> {
  const config = await registry.readNetworkConfig();
  const underlay = await underlayFor({ v4: config.enableIPv4, v6: config.enableIPv6 });
  const { kvs } = await registry.listSubnets();
  const leases: Lease[] = [];
  for (const kv of kvs) {
    try {
      const lease = validateLease(registry.prefix, kv, config);
      if (lease) leases.push(lease);
    } catch {
      // weftd skips malformed keys; so does its desired state
    }
  }
  const mine = { PublicIP: underlay.publicIP, PublicIPv6: config.enableIPv6 ? (underlay.publicIPv6 ?? null) : null, BackendType: config.backend.type };
  const own = leases.find((l) => sameNode(l.attrs, mine));
  if (!own) throw new WeftError('WEFT_ERR_CONFIG_MISSING', `no lease in etcd carries this node's public address ${publicName(mine)}; is weftd running here?`);

  const dry = new DryRunKernel(kernel);
  const lists = await listsNexthops(kernel);
  const programmer = await programmerFor(config, dry, underlay, { kernel: lists, use: lists && routeNexthops !== 'off' });
  await programmer.configure(own);
  const { ownership } = await programmer.refresh();

  // weftd's rules: admission against the other leases (lease/admission.ts), then the node's own networks.
  const admission = new PeerAdmission({ config, ownLease: () => own, ownPublicIP: underlay.publicIP });
  const candidates = new Set<string>();
  for (const l of leases) if (slotOf(l) !== slotOf(own)) admission.put(slotOf(l), l, candidates);
  const networks = await nodeNetworks(kernel, ownership, planesOf(config));
  const peerLeases = new Map<string, Lease>();
  for (const key of candidates) {
    const lease = admission.get(key) as Lease;
    if (admission.judge(key) === null && leaseCollision(networks, lease) === null) peerLeases.set(key, lease);
  }
  const desired = desiredEntries(peerLeases, programmer);
  const peers = [...peerLeases.values()].filter((l) => programmer.entriesFor(l) !== null).length;
  const names = new Map<number, string>();
  for (const index of new Set([...ownership.neighDevices.map((d) => d.ifindex), ...ownership.fdbDevices, ...[...desired.values()].map((o) => (o.entry.kind === 'route' || o.entry.kind === 'nexthop' ? o.entry.oif : o.entry.ifindex))])) {
    // A route by nhid names no device (0): its nexthop does.
    if (index !== 0) names.set(index, (await kernel.linkGet(index))?.name ?? `#${index}`);
  }
  const actual = await dumpOwned(kernel, ownership);
  for (const e of actual.values()) {
    const index = e.kind === 'route' || e.kind === 'nexthop' ? e.oif : e.ifindex;
    if (index !== 0 && !names.has(index)) names.set(index, (await kernel.linkGet(index))?.name ?? `#${index}`);
  }
  const lines = diffEntries(desired, actual, (i) => names.get(i) ?? `#${i}`);
  return { ownSubnet: describeSubnets(own), peers, desiredEntries: desired.size, lines, device: dry.wouldRun };
}

/**
 * The node's own addresses and routes as the reconciler sees them in steady
 * state. A running weftd repairs another hand's route to a peer's subnet at
 * once, so a foreign route that stays there is the node's, and the peer is
 * skipped.
 */
async function nodeNetworks(kernel: Kernel, ownership: Ownership, planes: readonly Plane[]): Promise<NodeNetworks> {
  const own = new NodeNetworks(planes.map((p) => p.network));
  const devices = new Set(ownership.fdbDevices);
  own.beginRead();
  for (const { family } of planes) {
    for (const r of await kernel.routeList(family)) if (!ownership.ownsRoute(r)) own.readRoute(r);
    for (const a of await kernel.addrListAll(family)) if (!devices.has(a.ifindex)) own.readAddr(a);
  }
  own.endRead();
  return own;
}

export function diffReport(d: DiffResult): Report {
  const head = `node ${d.ownSubnet}: ${d.peers} peers, ${d.desiredEntries} desired entries`;
  if (d.lines.length === 0 && d.device.length === 0) return { json: d, text: `${head}: kernel in sync`, exitCode: 0 };
  const parts = [`${head}: ${d.lines.length} entries differ${d.device.length > 0 ? `, device needs ${d.device.length} changes` : ''}`];
  if (d.device.length > 0) parts.push('', 'device (weftd would run):', ...d.device.map((c) => `  ${c}`));
  if (d.lines.length > 0) {
    parts.push(
      '',
      table(
        ['STATUS', 'PEER', 'KIND', 'WANT', 'HELD'],
        d.lines.map((l) => [l.status, l.peer ?? '-', l.kind, l.want ?? '-', l.held ?? '-']),
      ),
    );
  }
  return { json: d, text: parts.join('\n'), exitCode: 1 };
}
