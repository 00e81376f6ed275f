/**
 * The node's own networks as far as a peer lease could collide with them:
 * its addresses, and the main-table routes weft does not own (connected,
 * default, other protocols), kept only where they overlap one of the
 * overlay's Networks (IPv4 and IPv6), since every lease lies inside them.
 *
 * A peer subnet S collides with
 * - an address of the node inside S (the node would route its own address
 *   away), or
 * - a foreign route to S or to a part of S (`route replace S` would take it
 *   over, or the lease claims addresses the node reaches otherwise), or
 * - a device route (no gateway) that contains S: a directly attached network
 *   that S would carve a piece out of. A route via a gateway that contains S
 *   (the default route, a corporate 10.0.0.0/8) is what every overlay route
 *   is more specific than, and a default route through a device is a
 *   catch-all too: neither collides.
 */
import { Subnet } from '../common/subnet.js';
import type { AddrInfo, ChangeOp, Family, Route } from '../kernel/kernel.js';
import type { Lease } from '../lease/types.js';
import { publicIPOf, subnetOf } from './families.js';

export interface Collision {
  /** iproute2-like description of the node's entry, `route 198.18.0.0/24 dev #2 proto 2`. */
  readonly entry: string;
}

interface Held {
  readonly net: Subnet;
  /** A route's gateway, else null. */
  readonly gw: string | null;
  /** The route's output device or the address's link. */
  readonly oif: number;
  /** Device route: a directly attached network. */
  readonly attached: boolean;
  /** An address (host) rather than a route. */
  readonly address: boolean;
  readonly text: string;
}

function describeRoute(r: Route): string {
  return `route ${r.dst}${r.gw ? ` via ${r.gw}` : ''} dev #${r.oif} proto ${r.proto}`;
}

export class NodeNetworks {
  /** Key (`route DST OIF GW` / `addr CIDR IF`) -> entry; only entries overlapping Network. */
  private held = new Map<string, Held>();
  private next: Map<string, Held> | null = null;
  /** True once a complete read (routes and addresses) went in. */
  private known = false;

  /** `networks`: the overlay's Networks, IPv4's and (dual-stack, IPv6-only) IPv6's. */
  constructor(private readonly networks: readonly Subnet[]) {}

  /** Whether a complete read has gone in (a pass must read before it trusts collisionWith). */
  get isKnown(): boolean {
    return this.known;
  }

  /** Forgets what is known, e.g. after notifications were lost. */
  invalidate(): void {
    this.known = false;
  }

  /**
   * The first collision of subnet `s` with the node's own networks, or null.
   * A route to exactly `s` via one of `gateways` is the route weft would
   * write itself (flanneld's, for a node weft adopts): not a collision.
   */
  collisionWith(s: Subnet, gateways: readonly string[] = []): Collision | null {
    for (const h of this.held.values()) {
      if (!h.address && h.gw !== null && h.net.equals(s) && gateways.includes(h.gw)) continue;
      if (h.address ? s.contains(h.net) : s.contains(h.net) || (h.attached && h.net.prefixLength > 0 && h.net.contains(s))) {
        return { entry: h.text };
      }
    }
    return null;
  }

  /** Starts a complete read; routes and addresses go in through `readRoute` / `readAddr`, then `endRead`. */
  beginRead(): void {
    this.next = new Map();
  }

  readRoute(r: Route): void {
    if (this.next) this.put(this.next, r);
  }

  readAddr(a: AddrInfo): void {
    if (this.next) this.putAddr(this.next, a);
  }

  /** Ends a complete read; true when what collides may have changed. */
  endRead(): boolean {
    const next = this.next;
    if (!next) return false;
    this.next = null;
    const changed = !this.known || !sameMeaning(this.held, next);
    this.held = next;
    this.known = true;
    return changed;
  }

  /**
   * A foreign route notification. Returns the networks whose collisions it
   * may have changed (empty when nothing changed but a link index).
   */
  noteRoute(op: ChangeOp, r: Route): Subnet[] {
    return this.note(op === 'del' ? routeKey(r) : null, (into) => this.put(into, r));
  }

  /** An address notification; returns what noteRoute returns. */
  noteAddr(op: ChangeOp, a: AddrInfo): Subnet[] {
    return this.note(op === 'del' ? addrKey(a) : null, (into) => this.putAddr(into, a));
  }

  /** A link was deleted: IPv4 drops its routes without a notification each. Returns what noteRoute returns. */
  forgetLink(index: number): Subnet[] {
    const before = new Map(this.held);
    for (const [key, h] of this.held) if (h.oif === index) this.held.delete(key);
    return changedNets(before, this.held);
  }

  /** Deletes `deleted`, or adds through `add`. */
  private note(deleted: string | null, add: (into: Map<string, Held>) => boolean): Subnet[] {
    const before = new Map(this.held);
    const touched = deleted === null ? add(this.held) : this.held.delete(deleted);
    return touched ? changedNets(before, this.held) : [];
  }

  private put(into: Map<string, Held>, r: Route): boolean {
    const net = Subnet.parse(r.dst);
    if (!this.networks.some((n) => net.overlaps(n))) return false;
    const key = routeKey(r);
    if (into.has(key)) return false;
    into.set(key, { net, gw: r.gw, oif: r.oif, attached: r.gw === null, address: false, text: describeRoute(r) });
    return true;
  }

  private putAddr(into: Map<string, Held>, a: AddrInfo): boolean {
    const ip = a.cidr.split('/')[0] as string;
    const network = this.networks.find((n) => n.contains(ip));
    if (!network) return false;
    const key = addrKey(a);
    if (into.has(key)) return false;
    into.set(key, { net: Subnet.parse(`${ip}/${network.bits}`), gw: null, oif: a.ifindex, attached: false, address: true, text: `address ${a.cidr} on link #${a.ifindex}` });
    return true;
  }
}

const FAMILIES: readonly Family[] = [4, 6];

/**
 * The first collision of a lease's subnets (either family) with the node's
 * own networks. The route weft itself would write (via the peer's public
 * address or its subnet's first address) does not count.
 */
export function leaseCollision(networks: NodeNetworks, lease: Lease): Collision | null {
  for (const family of FAMILIES) {
    const subnet = subnetOf(lease, family);
    if (!subnet) continue;
    const publicIP = publicIPOf(lease.attrs, family);
    const hit = networks.collisionWith(subnet, publicIP ? [publicIP, subnet.ip] : [subnet.ip]);
    if (hit) return hit;
  }
  return null;
}

function routeKey(r: Route): string {
  return `route ${r.dst} ${r.oif} ${r.gw ?? '-'}`;
}

function addrKey(a: AddrInfo): string {
  return `addr ${a.cidr} ${a.ifindex}`;
}

/** What an entry means for collisions: a device rebuilt under a new index changes nothing. */
function meaning(h: Held): string {
  return `${h.address ? 'addr' : 'route'} ${h.net} ${h.gw ?? '-'} ${h.attached}`;
}

/** The networks of entries whose meaning is in one map and not (as often) in the other. */
function changedNets(a: ReadonlyMap<string, Held>, b: ReadonlyMap<string, Held>): Subnet[] {
  const count = new Map<string, { net: Subnet; n: number }>();
  const add = (h: Held, d: number) => {
    const m = meaning(h);
    const c = count.get(m);
    if (c) c.n += d;
    else count.set(m, { net: h.net, n: d });
  };
  for (const h of a.values()) add(h, 1);
  for (const h of b.values()) add(h, -1);
  return [...count.values()].filter((c) => c.n !== 0).map((c) => c.net);
}

function sameMeaning(a: ReadonlyMap<string, Held>, b: ReadonlyMap<string, Held>): boolean {
  return changedNets(a, b).length === 0;
}
