import { Subnet } from '../common/subnet.js';
import { hasIPv4, slotOf } from './keyspace.js';
import { UNSET_PUBLIC_IP } from './lease-value.js';
import type { Lease, NetworkConfig } from './types.js';

/**
 * Which valid peer leases a node may program, judged against each other:
 * the same on every node, because every node reads the same keys.
 *
 * In a network with IPv6, the same rules apply to PublicIPv6 (against
 * IPv6Network's range) and BackendV6Data.VtepMAC, under the same reasons;
 * flannel's unset PublicIP 0.0.0.0 of IPv6-only nodes takes part in none.
 *
 * - `public-ip`: the lease's PublicIP cannot be a tunnel endpoint: link-local,
 *   or inside the part of Network that leases are taken from (SubnetMin to
 *   SubnetMax), where encapsulated traffic to it would be routed back into
 *   the overlay. A PublicIP inside Network but outside that range is legal:
 *   hosts on Network's first /24, which the default SubnetMin skips, are a
 *   set-up flannel documents.
 * - `covers-public-ip`: the lease's subnet holds another node's usable
 *   PublicIP (a hand-written key for the hosts' own /24), or its IPv6 subnet
 *   another node's usable PublicIPv6: routing it into the overlay would cut
 *   that node off. The lease is refused, never the node.
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

const LINK_LOCAL_V6 = Subnet.parse('fe80::/10');

/** Why `ip` cannot be an IPv6 tunnel endpoint under `config` (the PublicIP rules, for IPv6Network); null when it can. */
export function publicIPv6Problem(ip: string, config: NetworkConfig): string | null {
  if (LINK_LOCAL_V6.contains(ip)) return `PublicIPv6 ${ip} is link-local`;
  const { ipv6Network: network, ipv6SubnetMin: min, ipv6SubnetMax: max, ipv6SubnetLen: len } = config;
  if (network && min && max && network.contains(ip)) {
    const holder = Subnet.parse(`${ip}/${len}`);
    if (holder.value >= min.value && holder.value <= max.value) {
      return `PublicIPv6 ${ip} lies inside the range leases are taken from (${min.ip} to ${max.ip} of IPv6Network ${network})`;
    }
  }
  return null;
}

/**
 * The lease a node joining with `mac` would lose to: an older lease of
 * another PublicIP that advertises the same VtepMAC (for `family` 6: another
 * PublicIPv6 advertising it in BackendV6Data) (older than this node's
 * own lease, if `leases` holds one for `publicIP`). Such a node takes a new
 * MAC rather than join as the loser.
 */
export function olderHolderOfMac(leases: readonly Lease[], mac: string, publicIP: string, family: 4 | 6 = 4): Lease | null {
  // The IPv6 device's MAC is BackendV6Data's, and its node is known by PublicIPv6.
  const macIn = family === 6 ? macV6Of : macOf;
  const ipOf = family === 6 ? (l: Lease) => l.attrs.PublicIPv6 : (l: Lease) => l.attrs.PublicIP;
  const own = leases.find((l) => ipOf(l) === publicIP && macIn(l) === mac) ?? null;
  let holder: Lease | null = null;
  for (const l of leases) {
    if (ipOf(l) === publicIP || macIn(l) !== mac) continue;
    if (own && !createdBefore(l, own)) continue;
    if (!holder || createdBefore(l, holder)) holder = l;
  }
  return holder;
}

function macOf(lease: Lease): string | null {
  const mac = lease.attrs.BackendData?.VtepMAC;
  return typeof mac === 'string' ? mac : null;
}

function macV6Of(lease: Lease): string | null {
  const mac = lease.attrs.BackendV6Data?.VtepMAC;
  return typeof mac === 'string' ? mac : null;
}

/** PublicIP as an identity: flannel's unset 0.0.0.0 (every IPv6-only node's) identifies nobody. */
function publicIPOf(lease: Lease): string | null {
  return lease.attrs.PublicIP === UNSET_PUBLIC_IP || lease.attrs.PublicIP === '' ? null : lease.attrs.PublicIP;
}

/**
 * One thing two live leases must not share, with its index (value -> subnet
 * keys of the candidates advertising it). `own`: this node's value, which a
 * peer must not advertise at all (the IP identities).
 */
interface Identity {
  readonly label: string;
  readonly reason: RefusalReason;
  readonly of: (lease: Lease) => string | null;
  readonly own: string | null;
  readonly index: MultiIndex;
}

/**
 * Value -> the subnet keys of the candidates that have it. Nearly every value
 * has one candidate (a PublicIP, a MAC), so one is held as the key string
 * itself and a Set is made only for two or more: a Set per peer and per
 * identity was a share of a large node's memory.
 */
class MultiIndex {
  private readonly map = new Map<string, string | Set<string>>();

  add(key: string | null, member: string): void {
    if (key === null) return;
    const held = this.map.get(key);
    if (held === undefined) this.map.set(key, member);
    else if (typeof held !== 'string') held.add(member);
    else if (held !== member) this.map.set(key, new Set([held, member]));
  }

  delete(key: string | null, member: string): void {
    if (key === null) return;
    const held = this.map.get(key);
    if (held === undefined) return;
    if (typeof held === 'string') {
      if (held === member) this.map.delete(key);
      return;
    }
    held.delete(member);
    if (held.size === 1) this.map.set(key, held.values().next().value as string);
  }

  /** The members under `key`, none when it has none. */
  members(key: string): Iterable<string> {
    const held = this.map.get(key);
    if (held === undefined) return [];
    return typeof held === 'string' ? [held] : held;
  }

  clear(): void {
    this.map.clear();
  }
}

export interface PeerAdmissionOptions {
  readonly config: NetworkConfig;
  /** This node's lease, or null before it has one. */
  readonly ownLease: () => Lease | null;
  /** This node's PublicIP: a lease advertising it is never a peer. */
  readonly ownPublicIP: string;
  /** This node's PublicIPv6 (an IPv6 network): likewise. */
  readonly ownPublicIPv6?: string | null;
}

/**
 * The candidate peer leases (valid, not this node's subnet), indexed by MAC,
 * PublicIP and the subnet their PublicIP falls in, so that one change
 * re-judges only the leases it can affect. Keys are subnet strings, like the
 * watcher's.
 */
export class PeerAdmission {
  private readonly candidates = new Map<string, Lease>();
  /** PublicIP, PublicIPv6 (IPv6 networks), VtepMAC, BackendV6Data.VtepMAC (IPv6 networks), judged in this order. */
  private readonly identities: readonly Identity[];
  /** Subnet (at SubnetLen) containing a candidate's PublicIP -> those candidates; only PublicIPs inside Network. */
  private readonly byPublicIPSubnet = new MultiIndex();
  /** The same for PublicIPv6: subnet (at IPv6SubnetLen) of IPv6Network containing it -> those candidates. */
  private readonly byPublicIPv6Subnet = new MultiIndex();
  /** IPv6 subnet -> the candidates holding it: a lease's slot is its IPv4 subnet, so a PublicIPv6's holder is found here. */
  private readonly byIPv6Subnet = new MultiIndex();

  constructor(private readonly options: PeerAdmissionOptions) {
    const ownIP = options.ownPublicIP && options.ownPublicIP !== UNSET_PUBLIC_IP ? options.ownPublicIP : null;
    const v6 = options.config.enableIPv6;
    const identity = (label: string, reason: RefusalReason, of: (lease: Lease) => string | null, own: string | null): Identity => ({ label, reason, of, own, index: new MultiIndex() });
    this.identities = [
      identity('PublicIP', 'duplicate-public-ip', publicIPOf, ownIP),
      ...(v6 ? [identity('PublicIPv6', 'duplicate-public-ip', (l) => l.attrs.PublicIPv6, options.ownPublicIPv6 ?? null)] : []),
      identity('VtepMAC', 'duplicate-mac', macOf, null),
      ...(v6 ? [identity('BackendV6Data.VtepMAC', 'duplicate-mac', macV6Of, null)] : []),
    ];
  }

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
    for (const id of this.identities) id.index.clear();
    this.byPublicIPSubnet.clear();
    this.byPublicIPv6Subnet.clear();
    this.byIPv6Subnet.clear();
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
    for (const id of this.identities) {
      const value = id.of(lease);
      if (value === null) continue;
      if (value === id.own) {
        const ownWins = !own || createdBefore(own, lease);
        return refusal(lease, id.reason, `advertises this node's ${id.label} ${value}${ownWins ? '' : ' (and is older than this node\'s lease)'}`, own?.key ?? null);
      }
      const winner = this.oldest(id.index.members(value), own && id.of(own) === value ? own : null);
      if (winner !== lease) return refusal(lease, id.reason, `${id.label} ${value} is already advertised by the older lease ${winner.key}`, winner.key);
    }
    return null;
  }

  /**
   * What a candidate's conflicts say about this node's own lease: the older
   * lease that advertises its PublicIP or VtepMAC (or their IPv6
   * counterparts), which other nodes program instead of it. Null when the own
   * lease wins every conflict.
   */
  ownLoss(): Refusal | null {
    const own = this.options.ownLease();
    if (!own) return null;
    for (const id of this.identities) {
      const value = id.of(own);
      if (value === null) continue;
      const winner = this.oldest(id.index.members(value), own);
      if (winner !== own) return refusal(own, id.reason, `this node's ${id.label} ${value} is already advertised by the older lease ${winner.key}`, winner.key);
    }
    return null;
  }

  private publicIPRefusal(lease: Lease): Refusal | null {
    const { config } = this.options;
    const ip = publicIPOf(lease);
    const problem = ip === null ? null : publicIPProblem(ip, config);
    if (problem) return refusal(lease, 'public-ip', problem, null);
    const ip6 = config.enableIPv6 ? lease.attrs.PublicIPv6 : null;
    const problem6 = ip6 ? publicIPv6Problem(ip6, config) : null;
    if (problem6) return refusal(lease, 'public-ip', problem6, null);
    const covered = this.coveredPublicIP(lease);
    if (covered) return refusal(lease, 'covers-public-ip', `its subnet ${covered.subnet} holds the ${covered.label} ${covered.ip} of ${covered.of}`, null);
    return null;
  }

  /**
   * A usable PublicIP of another node that lies inside `lease`'s subnet:
   * routing that subnet into the overlay would take the node's underlay
   * address with it. Only usable PublicIPs count, so that a bogus lease
   * cannot get a good one refused by pointing its PublicIP into it.
   */
  private coveredPublicIP(lease: Lease): { ip: string; of: string; label: string; subnet: Subnet } | null {
    const own6 = this.options.ownPublicIPv6;
    const subnet6 = this.options.config.enableIPv6 ? lease.ipv6Subnet : null;
    if (subnet6) {
      if (own6 && lease.attrs.PublicIPv6 !== own6 && subnet6.contains(own6)) return { ip: own6, of: 'this node', label: 'PublicIPv6', subnet: subnet6 };
      for (const key of this.byPublicIPv6Subnet.members(subnet6.toString())) {
        const other = this.candidates.get(key) as Lease;
        const ip6 = other.attrs.PublicIPv6 as string;
        if (other === lease || ip6 === lease.attrs.PublicIPv6) continue;
        if (publicIPv6Problem(ip6, this.options.config) === null) return { ip: ip6, of: other.key, label: 'PublicIPv6', subnet: subnet6 };
      }
    }
    if (!hasIPv4(lease.subnet)) return null; // NO_IPV4_SUBNET would contain every address
    const own = this.options.ownPublicIP;
    if (own && lease.attrs.PublicIP !== own && lease.subnet.contains(own)) return { ip: own, of: 'this node', label: 'PublicIP', subnet: lease.subnet };
    for (const key of this.byPublicIPSubnet.members(lease.subnet.toString())) {
      const other = this.candidates.get(key) as Lease;
      if (other === lease || other.attrs.PublicIP === lease.attrs.PublicIP) continue;
      if (publicIPProblem(other.attrs.PublicIP, this.options.config) === null) return { ip: other.attrs.PublicIP, of: other.key, label: 'PublicIP', subnet: lease.subnet };
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
  private oldest(members: Iterable<string>, own: Lease | null): Lease {
    let best: Lease | null = own;
    for (const key of members) {
      const lease = this.candidates.get(key) as Lease;
      if (this.publicIPRefusal(lease)) continue;
      if (best === null || createdBefore(lease, best)) best = lease;
    }
    // Only asked for groups that hold a sane lease (the one being judged, or own).
    return best as Lease;
  }

  private index(subnetKey: string, lease: Lease, affected: Set<string>): void {
    for (const id of this.identities) this.touch(id.index, id.of(lease), subnetKey, affected, 'add');
    this.indexHolder(lease, subnetKey, affected, 'add');
  }

  private unindex(subnetKey: string, lease: Lease, affected: Set<string>): void {
    for (const id of this.identities) this.touch(id.index, id.of(lease), subnetKey, affected, 'delete');
    this.indexHolder(lease, subnetKey, affected, 'delete');
  }

  /** A PublicIP inside Network (or PublicIPv6 inside IPv6Network): the lease whose subnet holds it is judged again. */
  private indexHolder(lease: Lease, subnetKey: string, affected: Set<string>, change: 'add' | 'delete'): void {
    const ip = publicIPOf(lease);
    const holder = ip === null ? null : this.holderSubnetOf(ip);
    if (holder !== null) {
      this.byPublicIPSubnet[change](holder, subnetKey);
      affected.add(holder);
    }
    if (!this.options.config.enableIPv6) return;
    if (lease.ipv6Subnet) this.byIPv6Subnet[change](lease.ipv6Subnet.toString(), subnetKey);
    const holder6 = lease.attrs.PublicIPv6 ? this.holderSubnetOfV6(lease.attrs.PublicIPv6) : null;
    if (holder6 === null) return;
    this.byPublicIPv6Subnet[change](holder6, subnetKey);
    for (const k of this.byIPv6Subnet.members(holder6)) affected.add(k);
  }

  /** The IPv6SubnetLen subnet of IPv6Network that contains `ip`, as a key, or null when `ip` is outside IPv6Network. */
  private holderSubnetOfV6(ip: string): string | null {
    const { ipv6Network: network, ipv6SubnetLen: len } = this.options.config;
    if (!network || !network.contains(ip)) return null;
    return Subnet.parse(`${ip}/${len}`).toString();
  }

  private touch(index: MultiIndex, key: string | null, member: string, affected: Set<string>, change: 'add' | 'delete'): void {
    if (key === null) return;
    index[change](key, member);
    for (const k of index.members(key)) affected.add(k);
  }
}

function refusal(lease: Lease, reason: RefusalReason, detail: string, winner: string | null): Refusal {
  return { key: lease.key, subnet: slotOf(lease), reason, detail, winner };
}
