import { Subnet } from '../common/subnet.js';
import type { Lease, NetworkConfig } from './types.js';

/**
 * Which valid peer leases a node may program, judged against each other:
 * the same on every node, because every node reads the same keys.
 *
 * - `public-ip`: the lease's PublicIP cannot be a tunnel endpoint: link-local,
 *   or inside the part of Network that leases are taken from (SubnetMin to
 *   SubnetMax), where encapsulated traffic to it would be routed back into
 *   the overlay. A PublicIP inside Network but outside that range is legal:
 *   hosts on Network's first /24, which the default SubnetMin skips, are a
 *   set-up flannel documents.
 * - `covers-public-ip`: the lease's subnet holds another node's usable
 *   PublicIP (a hand-written key for the hosts' own /24): routing it into the
 *   overlay would cut that node off. The lease is refused, never the node.
 * - `duplicate-mac` / `duplicate-public-ip`: two live leases advertise one
 *   VtepMAC, or one PublicIP. FDB entries are keyed by MAC, so the second
 *   would re-point the first's traffic. The older lease (lower etcd create
 *   revision) wins; the newer is refused. Leases refused for their PublicIP
 *   take part in no conflict, so a bogus lease cannot displace a good one.
 *
 * This node's own lease takes part in the conflicts like any other (other
 * nodes see it as a peer), and a lease that advertises this node's PublicIP is
 * never a peer here, whichever is older.
 */
export type RefusalReason = 'public-ip' | 'covers-public-ip' | 'duplicate-mac' | 'duplicate-public-ip';

export interface Refusal {
  /** The refused lease's etcd key. */
  readonly key: string;
  readonly subnet: string;
  readonly reason: RefusalReason;
  /** One line for the log and weftctl. */
  readonly detail: string;
  /** etcd key of the lease that won the conflict (duplicates only). */
  readonly winner: string | null;
}

/** etcd revisions are decimal strings of up to 64 bits; compared without BigInt on the hot path. */
export function olderRevision(a: string, b: string): boolean {
  return a.length !== b.length ? a.length < b.length : a < b;
}

/** Whether `a` was created before `b`; a tie (one transaction wrote both) goes to the lower key. */
export function createdBefore(a: Pick<Lease, 'createRevision' | 'key'>, b: Pick<Lease, 'createRevision' | 'key'>): boolean {
  if (a.createRevision !== b.createRevision) return olderRevision(a.createRevision, b.createRevision);
  return a.key < b.key;
}

const LINK_LOCAL = Subnet.parse('169.254.0.0/16');

/** Why `ip` cannot be a tunnel endpoint under `config`, ignoring which subnets are held; null when it can. */
export function publicIPProblem(ip: string, config: NetworkConfig): string | null {
  if (LINK_LOCAL.contains(ip)) return `PublicIP ${ip} is link-local`;
  const { network, subnetMin, subnetMax, subnetLen } = config;
  if (network && subnetMin && subnetMax && network.contains(ip)) {
    const holder = Subnet.parse(`${ip}/${subnetLen}`);
    if (holder.value >= subnetMin.value && holder.value <= subnetMax.value) {
      return `PublicIP ${ip} lies inside the range leases are taken from (${subnetMin.ip} to ${subnetMax.ip} of Network ${network})`;
    }
  }
  return null;
}

/**
 * The lease a node joining with `mac` would lose to: an older lease of
 * another PublicIP that advertises the same VtepMAC (older than this node's
 * own lease, if `leases` holds one for `publicIP`). Such a node takes a new
 * MAC rather than join as the loser.
 */
export function olderHolderOfMac(leases: readonly Lease[], mac: string, publicIP: string): Lease | null {
  const own = leases.find((l) => l.attrs.PublicIP === publicIP && macOf(l) === mac) ?? null;
  let holder: Lease | null = null;
  for (const l of leases) {
    if (l.attrs.PublicIP === publicIP || macOf(l) !== mac) continue;
    if (own && !createdBefore(l, own)) continue;
    if (!holder || createdBefore(l, holder)) holder = l;
  }
  return holder;
}

function macOf(lease: Lease): string | null {
  const mac = lease.attrs.BackendData?.VtepMAC;
  return typeof mac === 'string' ? mac : null;
}

function addTo(index: Map<string, Set<string>>, key: string | null, member: string): void {
  if (key === null) return;
  const set = index.get(key);
  if (set) set.add(member);
  else index.set(key, new Set([member]));
}

function removeFrom(index: Map<string, Set<string>>, key: string | null, member: string): void {
  if (key === null) return;
  const set = index.get(key);
  if (!set) return;
  set.delete(member);
  if (set.size === 0) index.delete(key);
}

export interface PeerAdmissionOptions {
  readonly config: NetworkConfig;
  /** This node's lease, or null before it has one. */
  readonly ownLease: () => Lease | null;
  /** This node's PublicIP: a lease advertising it is never a peer. */
  readonly ownPublicIP: string;
}

/**
 * The candidate peer leases (valid, not this node's subnet), indexed by MAC,
 * PublicIP and the subnet their PublicIP falls in, so that one change
 * re-judges only the leases it can affect. Keys are subnet strings, like the
 * watcher's.
 */
export class PeerAdmission {
  private readonly candidates = new Map<string, Lease>();
  private readonly byMac = new Map<string, Set<string>>();
  private readonly byPublicIP = new Map<string, Set<string>>();
  /** Subnet (at SubnetLen) containing a candidate's PublicIP -> those candidates; only PublicIPs inside Network. */
  private readonly byPublicIPSubnet = new Map<string, Set<string>>();

  constructor(private readonly options: PeerAdmissionOptions) {}

  get size(): number {
    return this.candidates.size;
  }

  get(subnetKey: string): Lease | undefined {
    return this.candidates.get(subnetKey);
  }

  /**
   * Adds or replaces a candidate; returns the subnet keys whose verdict may
   * have changed (the lease itself and everyone sharing a MAC, PublicIP or
   * PublicIP subnet with its old or new value).
   */
  put(subnetKey: string, lease: Lease, affected: Set<string>): void {
    const previous = this.candidates.get(subnetKey);
    if (previous) this.unindex(subnetKey, previous, affected);
    this.candidates.set(subnetKey, lease);
    this.index(subnetKey, lease, affected);
    affected.add(subnetKey);
  }

  delete(subnetKey: string, affected: Set<string>): void {
    const previous = this.candidates.get(subnetKey);
    if (!previous) return;
    this.unindex(subnetKey, previous, affected);
    this.candidates.delete(subnetKey);
    affected.add(subnetKey);
  }

  clear(): void {
    this.candidates.clear();
    this.byMac.clear();
    this.byPublicIP.clear();
    this.byPublicIPSubnet.clear();
  }

  /** Every candidate's subnet key. */
  keys(): IterableIterator<string> {
    return this.candidates.keys();
  }

  /** The verdict on one candidate: null when it may be programmed. */
  judge(subnetKey: string): Refusal | null {
    const lease = this.candidates.get(subnetKey);
    if (!lease) return null;
    const insane = this.publicIPRefusal(lease);
    if (insane) return insane;
    const own = this.options.ownLease();
    const ip = lease.attrs.PublicIP;
    if (ip === this.options.ownPublicIP) {
      const ownWins = !own || createdBefore(own, lease);
      return refusal(lease, 'duplicate-public-ip', `advertises this node's PublicIP ${ip}${ownWins ? '' : ' (and is older than this node\'s lease)'}`, own?.key ?? null);
    }
    const ipWinner = this.oldest(this.byPublicIP.get(ip), own && own.attrs.PublicIP === ip ? own : null);
    if (ipWinner !== lease) return refusal(lease, 'duplicate-public-ip', `PublicIP ${ip} is already advertised by the older lease ${ipWinner.key}`, ipWinner.key);
    const mac = macOf(lease);
    if (mac !== null) {
      const macWinner = this.oldest(this.byMac.get(mac), own && macOf(own) === mac ? own : null);
      if (macWinner !== lease) return refusal(lease, 'duplicate-mac', `VtepMAC ${mac} is already advertised by the older lease ${macWinner.key}`, macWinner.key);
    }
    return null;
  }

  /**
   * What a candidate's conflicts say about this node's own lease: the older
   * lease that advertises its PublicIP or VtepMAC, which other nodes program
   * instead of it. Null when the own lease wins every conflict.
   */
  ownLoss(): Refusal | null {
    const own = this.options.ownLease();
    if (!own) return null;
    const ipWinner = this.oldest(this.byPublicIP.get(own.attrs.PublicIP), own);
    if (ipWinner !== own) {
      return refusal(own, 'duplicate-public-ip', `this node's PublicIP ${own.attrs.PublicIP} is already advertised by the older lease ${ipWinner.key}`, ipWinner.key);
    }
    const mac = macOf(own);
    const macWinner = mac === null ? own : this.oldest(this.byMac.get(mac), own);
    if (macWinner !== own) return refusal(own, 'duplicate-mac', `this node's VtepMAC ${mac} is already advertised by the older lease ${macWinner.key}`, macWinner.key);
    return null;
  }

  private publicIPRefusal(lease: Lease): Refusal | null {
    const ip = lease.attrs.PublicIP;
    const problem = publicIPProblem(ip, this.options.config);
    if (problem) return refusal(lease, 'public-ip', problem, null);
    const covered = this.coveredPublicIP(lease);
    if (covered) return refusal(lease, 'covers-public-ip', `its subnet ${lease.subnet} holds the PublicIP ${covered.ip} of ${covered.of}`, null);
    return null;
  }

  /**
   * A usable PublicIP of another node that lies inside `lease`'s subnet:
   * routing that subnet into the overlay would take the node's underlay
   * address with it. Only usable PublicIPs count, so that a bogus lease
   * cannot get a good one refused by pointing its PublicIP into it.
   */
  private coveredPublicIP(lease: Lease): { ip: string; of: string } | null {
    const own = this.options.ownPublicIP;
    if (own && lease.attrs.PublicIP !== own && lease.subnet.contains(own)) return { ip: own, of: 'this node' };
    for (const key of this.byPublicIPSubnet.get(lease.subnet.toString()) ?? []) {
      const other = this.candidates.get(key) as Lease;
      if (other === lease || other.attrs.PublicIP === lease.attrs.PublicIP) continue;
      if (publicIPProblem(other.attrs.PublicIP, this.options.config) === null) return { ip: other.attrs.PublicIP, of: other.key };
    }
    return null;
  }

  /** The SubnetLen subnet of Network that contains `ip`, as a key, or null when `ip` is outside Network. */
  private holderSubnetOf(ip: string): string | null {
    const { network, subnetLen } = this.options.config;
    if (!network || !network.contains(ip)) return null;
    return Subnet.parse(`${ip}/${subnetLen}`).toString();
  }

  /** The oldest sane lease among `members` (subnet keys) and `own`. */
  private oldest(members: ReadonlySet<string> | undefined, own: Lease | null): Lease {
    let best: Lease | null = own;
    if (members) {
      for (const key of members) {
        const lease = this.candidates.get(key) as Lease;
        if (this.publicIPRefusal(lease)) continue;
        if (best === null || createdBefore(lease, best)) best = lease;
      }
    }
    // Only asked for groups that hold a sane lease (the one being judged, or own).
    return best as Lease;
  }

  private index(subnetKey: string, lease: Lease, affected: Set<string>): void {
    this.touch(this.byPublicIP, lease.attrs.PublicIP, subnetKey, affected, addTo);
    this.touch(this.byMac, macOf(lease), subnetKey, affected, addTo);
    this.indexHolder(lease, subnetKey, affected, addTo);
  }

  private unindex(subnetKey: string, lease: Lease, affected: Set<string>): void {
    this.touch(this.byPublicIP, lease.attrs.PublicIP, subnetKey, affected, removeFrom);
    this.touch(this.byMac, macOf(lease), subnetKey, affected, removeFrom);
    this.indexHolder(lease, subnetKey, affected, removeFrom);
  }

  /** A PublicIP inside Network: the lease whose subnet holds it is judged again. */
  private indexHolder(lease: Lease, subnetKey: string, affected: Set<string>, change: typeof addTo): void {
    const holder = this.holderSubnetOf(lease.attrs.PublicIP);
    if (holder === null) return;
    change(this.byPublicIPSubnet, holder, subnetKey);
    affected.add(holder);
  }

  private touch(
    index: Map<string, Set<string>>,
    key: string | null,
    member: string,
    affected: Set<string>,
    change: (index: Map<string, Set<string>>, key: string | null, member: string) => void,
  ): void {
    if (key === null) return;
    change(index, key, member);
    for (const k of index.get(key) ?? []) affected.add(k);
  }
}

function refusal(lease: Lease, reason: RefusalReason, detail: string, winner: string | null): Refusal {
  return { key: lease.key, subnet: lease.subnet.toString(), reason, detail, winner };
}
