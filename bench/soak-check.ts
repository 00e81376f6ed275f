/**
 * The chaos soak's invariants, as pure functions over what it read: the leases
 * in etcd, a node's kernel dump, the pings' lost sequence numbers and the
 * windows in which a fault may cost packets.
 *
 * The desired state of a node is computed here independently of weftd's code
 * paths (only the lease value's validation is shared, so a malformed lease is
 * malformed for both): every valid lease is a peer unless it carries the
 * node's own PublicIP, overlaps one of the node's own networks, has a PublicIP
 * a node must never encapsulate to, or loses a VtepMAC / PublicIP conflict to
 * an older live lease (lower etcd create revision).
 */
import { Subnet } from '../common/subnet.js';
import { validateLease, type RawKeyValue } from '../lease/lease-value.js';
import type { NetworkConfig } from '../lease/types.js';

/** A key of the subnets prefix as listed, with its create revision. */
export interface ListedKey extends RawKeyValue {
  readonly createRevision: string;
}

/** A valid peer as a node should program it. */
export interface Peer {
  readonly key: string;
  readonly subnet: string;
  readonly publicIP: string;
  readonly mac: string;
  readonly createRevision: bigint;
  /** Held by an etcd lease (a node's, or a live lease written by the soak); not a reservation. */
  readonly live: boolean;
}

/** Every valid vxlan lease in the listing (malformed ones are what weftd skips too). */
export function validPeers(prefix: string, kvs: readonly ListedKey[], config: NetworkConfig): Peer[] {
  const out: Peer[] = [];
  for (const kv of kvs) {
    let lease;
    try {
      lease = validateLease(prefix, kv, config);
    } catch {
      continue;
    }
    if (!lease || lease.attrs.BackendType !== 'vxlan') continue;
    const mac = typeof lease.attrs.BackendData?.VtepMAC === 'string' ? lease.attrs.BackendData.VtepMAC.toLowerCase() : '';
    if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(mac) || (parseInt(mac.slice(0, 2), 16) & 1) === 1) continue;
    out.push({ key: kv.key, subnet: lease.subnet.toString(), publicIP: lease.attrs.PublicIP, mac, createRevision: BigInt(kv.createRevision), live: kv.lease !== '0' && kv.lease !== '' });
  }
  return out;
}

/** Keys that lose a VtepMAC or PublicIP conflict: every lease but the oldest of each group. */
export function conflictLosers(peers: readonly Peer[]): Set<string> {
  const losers = new Set<string>();
  for (const field of ['mac', 'publicIP'] as const) {
    const groups = new Map<string, Peer[]>();
    for (const p of peers) groups.set(p[field], [...(groups.get(p[field]) ?? []), p]);
    for (const group of groups.values()) {
      if (group.length < 2) continue;
      const oldest = group.reduce((a, b) => (b.createRevision < a.createRevision ? b : a));
      for (const p of group) if (p !== oldest) losers.add(p.key);
    }
  }
  return losers;
}

const LINK_LOCAL = Subnet.parse('169.254.0.0/16');

/** A PublicIP no node may encapsulate to: inside the overlay, link-local (loopback, multicast, 0/8 are malformed already). */
export function insanePublicIP(ip: string, network: Subnet | null): boolean {
  const host = Subnet.parse(`${ip}/32`);
  return (network !== null && network.contains(host)) || LINK_LOCAL.contains(host);
}

/** What a node is and owns, for its desired state. */
export interface NodeView {
  readonly publicIP: string;
  /** The node's own lease subnet (never a peer of itself). */
  readonly ownSubnet: string | null;
  /** Networks of the node's own routes weft does not own (connected, and the like). */
  readonly ownNetworks: readonly string[];
}

/** The peers `node` should program, by subnet. */
export function desiredPeers(peers: readonly Peer[], node: NodeView, network: Subnet | null): Map<string, Peer> {
  const losers = conflictLosers(peers.filter((p) => p.live));
  const own = node.ownNetworks.map((n) => Subnet.parse(n));
  const out = new Map<string, Peer>();
  for (const p of peers) {
    if (p.publicIP === node.publicIP || p.subnet === node.ownSubnet) continue;
    if (losers.has(p.key)) continue;
    if (insanePublicIP(p.publicIP, network)) continue;
    const s = Subnet.parse(p.subnet);
    if (own.some((o) => o.overlaps(s))) continue;
    out.set(p.subnet, p);
  }
  return out;
}

/** A node's weft-owned kernel entries on the vxlan device, as dumped. */
export interface KernelView {
  /** Route destination -> gateway. */
  readonly routes: ReadonlyMap<string, string>;
  /** Neighbour IP -> lladdr. */
  readonly neighs: ReadonlyMap<string, string>;
  /** `mac>dst` of every FDB entry with a destination. */
  readonly fdb: ReadonlySet<string>;
}

/** How the kernel differs from the desired peers: one line per entry, empty when in sync. */
export function kernelDiff(desired: ReadonlyMap<string, Peer>, k: KernelView): string[] {
  const out: string[] = [];
  const wantRoutes = new Map<string, string>();
  const wantNeighs = new Map<string, string>();
  const wantFdb = new Set<string>();
  for (const p of desired.values()) {
    const gw = p.subnet.split('/')[0]!;
    wantRoutes.set(p.subnet, gw);
    wantNeighs.set(gw, p.mac);
    wantFdb.add(`${p.mac}>${p.publicIP}`);
  }
  for (const [dst, gw] of wantRoutes) if (k.routes.get(dst) !== gw) out.push(`route ${dst} via ${gw}: ${k.routes.has(dst) ? `via ${k.routes.get(dst)}` : 'missing'}`);
  for (const dst of k.routes.keys()) if (!wantRoutes.has(dst)) out.push(`route ${dst}: stale`);
  for (const [ip, mac] of wantNeighs) if (k.neighs.get(ip) !== mac) out.push(`neigh ${ip} ${mac}: ${k.neighs.has(ip) ? k.neighs.get(ip)! : 'missing'}`);
  for (const ip of k.neighs.keys()) if (!wantNeighs.has(ip)) out.push(`neigh ${ip}: stale`);
  for (const f of wantFdb) if (!k.fdb.has(f)) out.push(`fdb ${f}: missing`);
  for (const f of k.fdb) if (!wantFdb.has(f)) out.push(`fdb ${f}: stale`);
  return out;
}

/** Pairs of valid leases whose subnets overlap (the allocator must never produce one). */
export function overlappingLeases(peers: readonly Peer[]): [string, string][] {
  const out: [string, string][] = [];
  const subnets = peers.map((p) => [p.key, Subnet.parse(p.subnet)] as const);
  for (let i = 0; i < subnets.length; i++) {
    for (let j = i + 1; j < subnets.length; j++) {
      if (subnets[i]![1].overlaps(subnets[j]![1])) out.push([subnets[i]![0], subnets[j]![0]]);
    }
  }
  return out;
}

/** A time span in which pings of some host pairs may be lost, because a fault cuts their path. */
export interface LossWindow {
  readonly kind: string;
  readonly start: number;
  /** Infinity while the fault lasts. */
  end: number;
  /** Host pairs `a-b` (a < b) whose pings may be lost; or every pair with one of `hosts`. */
  readonly pairs: ReadonlySet<string>;
  readonly hosts: ReadonlySet<number>;
}

export const pairKey = (a: number, b: number): string => (a < b ? `${a}-${b}` : `${b}-${a}`);

/** A ping lost between two hosts' pods, at the time it was sent. */
export interface LostPing {
  readonly a: number;
  readonly b: number;
  readonly at: number;
}

/** Grace after a window's end: packets sent just before the repair may still be dropped. */
export const LOSS_GRACE_MS = 500;

/** The fault kind a lost ping is charged to, or null: a loss no fault explains, an invariant violation. */
export function causeOf(lost: LostPing, windows: readonly LossWindow[]): string | null {
  for (const w of windows) {
    if (lost.at < w.start - LOSS_GRACE_MS || lost.at > w.end + LOSS_GRACE_MS) continue;
    if (w.pairs.has(pairKey(lost.a, lost.b)) || w.hosts.has(lost.a) || w.hosts.has(lost.b)) return w.kind;
  }
  return null;
}

/**
 * Send times of lost sequence numbers, interpolated between the replies
 * around them (a reply comes back well under a millisecond after its request
 * here, so a reply's time is its request's): `replies` maps seq -> time.
 */
export function lostSendTimes(replies: ReadonlyMap<number, number>, sent: number, startedAt: number, intervalMs: number): { seq: number; at: number }[] {
  const seqs = [...replies.keys()].sort((x, y) => x - y);
  const out: { seq: number; at: number }[] = [];
  let k = 0;
  for (let seq = 1; seq <= sent; seq++) {
    if (replies.has(seq)) continue;
    while (k < seqs.length && seqs[k]! < seq) k++;
    const before = k > 0 ? seqs[k - 1]! : null;
    const after = k < seqs.length ? seqs[k]! : null;
    let at: number;
    if (before !== null && after !== null) at = replies.get(before)! + ((replies.get(after)! - replies.get(before)!) * (seq - before)) / (after - before);
    else if (before !== null) at = replies.get(before)! + (seq - before) * intervalMs;
    else if (after !== null) at = replies.get(after)! - (after - seq) * intervalMs;
    else at = startedAt + (seq - 1) * intervalMs;
    out.push({ seq, at });
  }
  return out;
}
