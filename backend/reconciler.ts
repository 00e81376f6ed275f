/**
 * Keeps the kernel's per-peer entries equal to what the peer leases ask for,
 * in the manner of Calico Felix's route table: the desired state comes from
 * the peer map, changed peers go into a dirty set, and one `apply()` turns the
 * difference into idempotent kernel ops. A failed op leaves its peer dirty for
 * the next pass; nothing retries in place.
 *
 * Two kinds of pass:
 * - delta (after lease events): only dirty peers, against what weft last
 *   programmed for them; a handful of ops, sent at once.
 * - full (start, resync, periodic, device rebuilt): dumps the entries weft
 *   owns (neighbours and FDB on its device, routes its `Programmer` claims)
 *   and diffs them against every peer. This removes entries of peers that
 *   vanished while weftd was down and repairs drift.
 *
 * Ops go out in flannel's order: deletions route -> neighbour -> FDB, then
 * neighbour, FDB and nexthop additions, then (second round trip) routes, only
 * for peers whose neighbour, FDB and nexthop are in place so the kernel never
 * ARPs for `S.0`. Nexthop deletions go last (third round trip): deleting a
 * nexthop takes its routes along, so a route moving off it is rewritten first.
 *
 * Route forms: a peer route either carries its own gateway or goes through a
 * nexthop object (`nhid`, see nexthops.ts). Both are `route <dst>` to the
 * diff, so a route of the other form is rewritten by one replace, which the
 * kernel makes atomically: adopting flanneld's routes loses no packet. A
 * peer whose nexthop id another owner holds gets its route with the gateway
 * folded back in (`foldNexthops`).
 *
 * Drift: `driftOf` judges a kernel notification against what weft wants
 * (updated as each pass is planned, before its ops go out), so the kernel's
 * echoes of weft's own changes match and only a contradiction asks for a
 * full pass. Each judgement is a map lookup.
 */
import type { Logger } from '../common/log.js';
import type { Lease } from '../lease/types.js';
import { leaseCollision, type NodeNetworks } from './node-networks.js';
import { slotOf } from '../lease/keyspace.js';
import type { Subnet } from '../common/subnet.js';
import { RTPROT_WEFT, describeOp, type Family, showNexthopTarget, type ChangeOp, type Fdb, type Kernel, type KernelChange, type KernelOp, type Link, type Neigh, type Nexthop, type Route } from '../kernel/kernel.js';

/** One kernel entry weft programs for a peer. */
export type Entry =
  | { readonly kind: 'neigh'; readonly ifindex: number; readonly ip: string; readonly mac: string }
  | { readonly kind: 'fdb'; readonly ifindex: number; readonly mac: string; readonly dst: string }
  /** With `nhid` (non-zero) the route goes through that nexthop, and gw, oif and onlink are null, 0 and false. */
  | { readonly kind: 'route'; readonly dst: string; readonly gw: string | null; readonly oif: number; readonly onlink: boolean; readonly nhid?: number }
  | { readonly kind: 'nexthop'; readonly id: number; readonly gw: string | null; readonly oif: number; readonly onlink: boolean };

/** A link weft's entries depend on, as a full pass leaves it. */
export interface WatchedLink {
  readonly index: number;
  readonly name: string;
  /** Admin state weft keeps (its device) or found (the underlay, whose routes vanish while it is down). */
  readonly up: boolean;
  /** The MTU weft keeps, or null when it leaves the MTU alone. */
  readonly mtu: number | null;
}

/** The slice of kernel state that is weft's, as of the last refresh. */
export interface Ownership {
  /** Devices whose permanent neighbours of a family are all weft's (vxlan: one device per family), none for host-gw. */
  readonly neighDevices: readonly { readonly ifindex: number; readonly family: Family }[];
  /** Devices whose FDB entries are all weft's. */
  readonly fdbDevices: readonly number[];
  /** The families whose main-table routes a full pass reads: the overlay's. */
  readonly routeFamilies: readonly Family[];
  ownsRoute(route: Route): boolean;
  /**
   * The kernel has nexthop objects: a full pass dumps them, weft's (its
   * protocol) are held entries and the others' ids are taken.
   */
  readonly nexthops?: boolean;
  /** Links whose deletion or change (see WatchedLink) a full pass repairs. */
  readonly links?: readonly WatchedLink[];
}

/** What a backend tells the reconciler: how a lease maps to entries, and what it owns. */
export interface Programmer {
  /**
   * Brings the backend's own state up to date before a full pass (device
   * present and compatible, underlay addresses) and says what weft owns.
   * `rebuilt` is true when the device was (re)created, so nothing weft
   * programmed before survives.
   */
  refresh(): Promise<{ ownership: Ownership; rebuilt: boolean }>;
  /** The entries for one peer lease in programming order, or null to skip the lease. */
  entriesFor(lease: Lease): readonly Entry[] | null;
  /**
   * Everything besides the lease that `entriesFor` reads (device and underlay
   * indexes, underlay segments, own subnet), as one string; read after
   * `refresh`. While it and the peers stay the same, a full pass reuses the
   * desired entries of the previous one instead of building 3 per peer again.
   */
  entriesBasis?(): string;
}

export interface ApplyReport {
  readonly full: boolean;
  readonly ops: number;
  readonly failed: number;
}

/** Identity of an entry the way the kernel keys it. */
export function entryKey(e: Entry): string {
  switch (e.kind) {
    case 'neigh':
      return `neigh ${e.ifindex} ${e.ip}`;
    case 'fdb':
      return `fdb ${e.ifindex} ${e.mac}`;
    case 'route':
      return `route ${e.dst}`;
    case 'nexthop':
      return `nexthop ${e.id}`;
  }
}

export function sameEntry(a: Entry, b: Entry): boolean {
  if (a.kind === 'neigh' && b.kind === 'neigh') return a.ifindex === b.ifindex && a.ip === b.ip && a.mac === b.mac;
  if (a.kind === 'fdb' && b.kind === 'fdb') return a.ifindex === b.ifindex && a.mac === b.mac && a.dst === b.dst;
  if (a.kind === 'route' && b.kind === 'route') {
    if ((a.nhid ?? 0) !== (b.nhid ?? 0)) return false;
    return a.dst === b.dst && (a.nhid ? true : a.gw === b.gw && a.oif === b.oif && a.onlink === b.onlink);
  }
  if (a.kind === 'nexthop' && b.kind === 'nexthop') return a.id === b.id && a.gw === b.gw && a.oif === b.oif && a.onlink === b.onlink;
  return false;
}

/** A desired entry and the peer (subnet key) it serves. */
export interface Owned {
  readonly peer: string;
  readonly entry: Entry;
}

export interface Plan {
  /** Entries to remove, any order (ops() orders them). */
  readonly deletes: readonly Entry[];
  /** Entries to (re)write. */
  readonly sets: readonly Owned[];
}

/**
 * The heart of a full pass: what to delete (held, not desired) and what to
 * write (desired, missing or different). Held entries are fed in one at a
 * time, as a dump reads them, so a pass keeps only what it will delete.
 * Of two held entries with one key, the later one counts.
 */
export class FullDiff {
  private readonly deletes: Entry[] = [];
  private readonly inPlace = new Set<Owned>();

  constructor(private readonly desired: ReadonlyMap<string, Owned>) {}

  /** One entry the kernel holds of weft's. */
  held(entry: Entry): void {
    const owned = this.desired.get(entryKey(entry));
    if (!owned) this.deletes.push(entry);
    else if (sameEntry(entry, owned.entry)) this.inPlace.add(owned);
    else this.inPlace.delete(owned);
  }

  plan(): Plan {
    const sets: Owned[] = [];
    // Usually everything is in place, and there is nothing to look for.
    if (this.inPlace.size < this.desired.size) {
      this.desired.forEach((owned) => {
        if (!this.inPlace.has(owned)) sets.push(owned);
      });
    }
    return { deletes: this.deletes, sets };
  }
}

/** FullDiff over a whole map of held entries. */
export function planFull(desired: ReadonlyMap<string, Owned>, actual: ReadonlyMap<string, Entry>): Plan {
  const diff = new FullDiff(desired);
  for (const entry of actual.values()) diff.held(entry);
  return diff.plan();
}

const DELETE_ORDER = { route: 0, neigh: 1, fdb: 2, nexthop: 3 } as const;

function deleteOp(e: Entry): KernelOp {
  switch (e.kind) {
    case 'route':
      return { op: 'routeDel', route: e.nhid ? { dst: e.dst, nhid: e.nhid } : { dst: e.dst, gw: e.gw, oif: e.oif } };
    case 'nexthop':
      return { op: 'nexthopDel', nexthop: { id: e.id } };
    case 'neigh':
      return { op: 'neighDel', neigh: { ifindex: e.ifindex, ip: e.ip } };
    case 'fdb':
      return { op: 'fdbDel', fdb: { ifindex: e.ifindex, mac: e.mac, dst: e.dst } };
  }
}

function setOp(e: Entry): KernelOp {
  switch (e.kind) {
    case 'route':
      if (e.nhid) return { op: 'routeReplace', route: { dst: e.dst, gw: null, oif: 0, onlink: false, nhid: e.nhid } };
      return { op: 'routeReplace', route: { dst: e.dst, gw: e.gw, oif: e.oif, onlink: e.onlink } };
    case 'nexthop':
      return { op: 'nexthopReplace', nexthop: { id: e.id, gw: e.gw, oif: e.oif, onlink: e.onlink } };
    case 'neigh':
      return { op: 'neighSet', neigh: { ifindex: e.ifindex, ip: e.ip, mac: e.mac } };
    case 'fdb':
      return { op: 'fdbReplace', fdb: { ifindex: e.ifindex, mac: e.mac, dst: e.dst } };
  }
}

/** Deletion ops in flannel's removal order: routes, then neighbours, then FDB (then nexthops, which the reconciler sends after the routes are written). */
export function deleteOps(deletes: readonly Entry[]): KernelOp[] {
  return [...deletes].sort((a, b) => DELETE_ORDER[a.kind] - DELETE_ORDER[b.kind]).map(deleteOp);
}

/**
 * A peer's entries with each nexthop whose id `taken` says another owner
 * holds folded back into the routes through it: the route gets the
 * nexthop's gateway, device and onlink flag, and the nexthop goes. The same
 * entries when nothing is taken.
 */
export function foldNexthops(entries: readonly Entry[], taken: (id: number) => boolean): readonly Entry[] {
  let folded: Map<number, Entry & { kind: 'nexthop' }> | null = null;
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i] as Entry;
    if (e.kind === 'nexthop' && taken(e.id)) (folded ??= new Map()).set(e.id, e);
  }
  if (!folded) return entries;
  const out: Entry[] = [];
  for (const e of entries) {
    if (e.kind === 'nexthop' && folded.has(e.id)) continue;
    const nh = e.kind === 'route' && e.nhid ? folded.get(e.nhid) : undefined;
    out.push(nh && e.kind === 'route' ? { kind: 'route', dst: e.dst, gw: nh.gw, oif: nh.oif, onlink: nh.onlink } : e);
  }
  return out;
}

/**
 * Every peer's entries, keyed like the kernel keys them: the desired state of
 * a full pass, and of `weftctl diff`. Of two peers claiming one entry the
 * first (in the map's order) keeps it; `onConflict` hears of every other claim.
 */
export function desiredEntries(
  peers: ReadonlyMap<string, Lease>,
  programmer: Pick<Programmer, 'entriesFor'>,
  onConflict: (key: string, peer: string, holder: string) => void = () => undefined,
): Map<string, Owned> {
  const desired = new Map<string, Owned>();
  // forEach and index loops rather than for...of: at start-up this runs unoptimised
  // over every peer, and each iterator step would allocate a result object.
  peers.forEach((lease, peer) => {
    const entries = programmer.entriesFor(lease);
    if (!entries) return;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i] as Entry;
      const key = entryKey(entry);
      const other = desired.get(key);
      if (other && other.peer !== peer) {
        onConflict(key, peer, other.peer);
        continue;
      }
      desired.set(key, { peer, entry });
    }
  });
  return desired;
}

/**
 * Visits what the kernel holds of weft's, as the dumps read it: permanent
 * neighbours and FDB entries on its devices, the routes it owns, and, where
 * the kernel has them, the nexthops with its protocol (`foreignNexthop` hears
 * of the others, whose ids are taken).
 */
export async function eachOwned(
  kernel: Kernel,
  ownership: Ownership,
  visit: (held: Entry) => void,
  foreign?: (route: Route) => void,
  foreignNexthop?: (nh: Nexthop) => void,
): Promise<void> {
  const route = (r: Route): void => {
    if (!ownership.ownsRoute(r)) foreign?.(r);
    // The kernel may report the nexthop's gateway beside the nhid (nexthop_compat_mode); the nhid is what counts.
    else if (r.nhid) visit({ kind: 'route', dst: r.dst, gw: null, oif: 0, onlink: false, nhid: r.nhid });
    else visit({ kind: 'route', dst: r.dst, gw: r.gw, oif: r.oif, onlink: r.onlink });
  };
  await Promise.all([
    ...ownership.neighDevices.map((d) =>
      kernel.neighEach(
        d.ifindex,
        (n) => {
          // Learned (non-permanent) neighbours are the kernel's business, not weft's.
          if (n.permanent) visit({ kind: 'neigh', ifindex: n.ifindex, ip: n.ip, mac: n.mac });
        },
        d.family,
      ),
    ),
    ...ownership.fdbDevices.map((ifindex) => kernel.fdbEach(ifindex, (f) => visit({ kind: 'fdb', ifindex: f.ifindex, mac: f.mac, dst: f.dst }))),
    ...ownership.routeFamilies.map((family) => kernel.routeEach(route, family)),
    ownership.nexthops
      ? kernel.nexthopEach((nh) => {
          if (nh.proto === RTPROT_WEFT) visit({ kind: 'nexthop', id: nh.id, gw: nh.gw, oif: nh.oif, onlink: nh.onlink });
          else foreignNexthop?.(nh);
        })
      : null,
  ]);
}

/** What the kernel holds of weft's, keyed like the kernel keys it (see eachOwned). */
export async function dumpOwned(kernel: Kernel, ownership: Ownership): Promise<Map<string, Entry>> {
  const actual = new Map<string, Entry>();
  await eachOwned(kernel, ownership, (e) => actual.set(entryKey(e), e));
  return actual;
}

/** Whether a link notification shows a watched link deleted or changed in what weft keeps. */
export function linkDrift(watched: readonly WatchedLink[], op: ChangeOp, link: Link): string | null {
  const w = watched.find((l) => l.index === link.index);
  if (!w) return null;
  if (op === 'del') return `link ${w.name} deleted outside weft`;
  if (link.name !== w.name) return `link ${w.name} renamed to ${link.name} outside weft`;
  if (link.up !== w.up) return `link ${w.name} set ${link.up ? 'up' : 'down'} outside weft`;
  if (w.mtu !== null && link.mtu !== w.mtu) return `link ${w.name} mtu set to ${link.mtu} outside weft`;
  return null;
}

function sameRoute(e: Entry & { kind: 'route' }, r: Route): boolean {
  if (e.nhid || r.nhid) return e.nhid === r.nhid;
  return e.gw === r.gw && e.oif === r.oif && e.onlink === r.onlink;
}

function showRoute(r: Route): string {
  if (r.nhid) return `nhid ${r.nhid} proto ${r.proto}`;
  return `${r.gw ? `via ${r.gw} ` : ''}dev #${r.oif}${r.onlink ? ' onlink' : ''} proto ${r.proto}`;
}

function sameNexthop(e: Entry & { kind: 'nexthop' }, nh: Nexthop): boolean {
  return !nh.blackhole && e.gw === nh.gw && e.oif === nh.oif && e.onlink === nh.onlink;
}

function sameBasis(a: { peersVersion: number; deltaPasses: number; programmer: string }, b: typeof a): boolean {
  return a.peersVersion === b.peersVersion && a.deltaPasses === b.deltaPasses && a.programmer === b.programmer;
}

export interface ReconcilerOptions {
  readonly kernel: Kernel;
  readonly programmer: Programmer;
  readonly log: Logger;
  /** The node's own networks: a peer whose subnet collides with them is skipped here (see NodeNetworks). */
  readonly nodeNetworks?: NodeNetworks;
}

/** A peer lease skipped on this node because its subnet collides with the node's own networks. */
export interface LocalCollision {
  readonly peer: string;
  /** The lease's etcd key. */
  readonly key: string;
  /** The node's entry it collides with (`route 198.18.0.0/24 dev #2 proto 2`). */
  readonly entry: string;
}

export class Reconciler {
  private readonly kernel: Kernel;
  private readonly programmer: Programmer;
  private readonly log: Logger;
  private readonly nodeNetworks: NodeNetworks | null;
  /** Peers skipped for colliding with the node's own networks, as of the last judgement of each. */
  private readonly collisions = new Map<string, LocalCollision>();
  /** What was last warned about each colliding peer (key and entry), so that every pass does not warn again. */
  private readonly warnedCollisions = new Map<string, string>();
  /** Bumped whenever the node's own networks change in a way that may matter. */
  private networksVersion = 0;
  /** `entriesFor` behind the collision check: what every pass asks for a peer's entries. */
  private readonly guarded: Pick<Programmer, 'entriesFor'>;
  private peers: ReadonlyMap<string, Lease> = new Map();
  private readonly dirty = new Set<string>();
  /** Leases of peers removed since the last pass: fallback when nothing was programmed for them. */
  private readonly removed = new Map<string, Lease>();
  private fullPending = true;
  /** What weft last wrote successfully, per peer. */
  private programmed = new Map<string, readonly Entry[]>();
  /** Entry key -> peer, over `programmed`. */
  private readonly programmedOwner = new Map<string, string>();
  /** Entry key -> peers whose claim on it lost to another peer's: they take it over when its holder goes. */
  private readonly contested = new Map<string, Set<string>>();
  private ownership: Ownership | null = null;
  /**
   * What weft wants in the kernel: the last full pass's desired entries,
   * changed by each delta as it is planned. Echoes of weft's own ops match it.
   */
  private wanted = new Map<string, Owned>();
  private counters = { fullPasses: 0, deltaPasses: 0, failedOps: 0 };
  /** Bumped by every change of the peer set. */
  private peersVersion = 0;
  /**
   * What the last full pass built `wanted` from. Equal inputs give equal
   * entries, so the next full pass (the periodic safety net, on an idle node)
   * reuses `wanted` instead of rebuilding it: every peer's entries again as
   * old-generation garbage every period, and most of what garbage collection
   * costs an idle weftd.
   */
  private desiredFrom: { peersVersion: number; deltaPasses: number; programmer: string } | null = null;
  /** Ids of nexthops another owner holds (another protocol), as dumps and notifications report them. */
  private readonly foreignNexthops = new Set<number>();
  /** Bumped whenever `foreignNexthops` changes: the desired entries fold differently. */
  private foreignVersion = 0;
  private readonly nexthopTaken = (id: number): boolean => this.foreignNexthops.has(id);

  constructor(options: ReconcilerOptions) {
    this.kernel = options.kernel;
    this.programmer = options.programmer;
    this.log = options.log;
    this.nodeNetworks = options.nodeNetworks ?? null;
    this.guarded = { entriesFor: (lease) => this.entriesIfClear(lease) };
  }

  /** Peers skipped here because their subnet collides with the node's own networks. */
  localCollisions(): LocalCollision[] {
    return [...this.collisions.values()];
  }

  /** The programmer's entries for `lease`, or null when its subnet collides with the node's own networks (warned once). */
  private entriesIfClear(lease: Lease): readonly Entry[] | null {
    const networks = this.nodeNetworks;
    if (networks) {
      const peer = slotOf(lease);
      const hit = leaseCollision(networks, lease);
      if (hit) {
        const said = `${lease.key} ${hit.entry}`;
        if (this.warnedCollisions.get(peer) !== said) {
          this.warnedCollisions.set(peer, said);
          this.log.warn(`skipping lease ${lease.key}: its subnet ${peer} collides with this node's ${hit.entry}`, { key: lease.key, entry: hit.entry });
        }
        this.collisions.set(peer, { peer, key: lease.key, entry: hit.entry });
        return null;
      }
      this.collisions.delete(peer);
      this.warnedCollisions.delete(peer);
    }
    const entries = this.programmer.entriesFor(lease);
    return entries && this.foreignNexthops.size > 0 ? foldNexthops(entries, this.nexthopTaken) : entries;
  }

  /** Replaces the whole peer set (a resync); the next pass is full. */
  setPeers(peers: ReadonlyMap<string, Lease>): void {
    this.peers = peers;
    this.peersVersion++;
    this.fullPending = true;
  }

  /** Takes a delta: the peers named by `changed` are dirty, `peers` is the set after them. */
  update(peers: ReadonlyMap<string, Lease>, changed: Iterable<{ key: string; removed?: Lease }>): void {
    this.peers = peers;
    this.peersVersion++;
    for (const c of changed) {
      this.dirty.add(c.key);
      if (c.removed) this.removed.set(c.key, c.removed);
    }
  }

  /** Asks for a full pass (periodic repair, device gone). */
  requestFull(): void {
    this.fullPending = true;
  }

  stats(): { peers: number; entries: number; fullPasses: number; deltaPasses: number; failedOps: number } {
    return { peers: this.peers.size, entries: this.programmedOwner.size, ...this.counters };
  }

  get pending(): boolean {
    return this.fullPending || this.dirty.size > 0;
  }

  /**
   * What a kernel notification changed that weft wants otherwise, for the
   * log (`route 10.244.3.0/24 deleted outside weft`), or null when it is not
   * drift: an echo of weft's own change, an entry on another device or route
   * weft does not own, or anything while a full pass is still to come (its
   * dump will see it). An overrun is drift: anything may have changed.
   */
  driftOf(change: KernelChange): string | null {
    const ownership = this.ownership;
    const networks = this.networksChange(change, ownership);
    const taken = change.kind === 'nexthop' ? this.noteNexthopOwner(change.op, change.nexthop) : null;
    if (!ownership || this.fullPending) return null;
    if (taken) return taken;
    if (networks) return networks;
    switch (change.kind) {
      case 'addr':
        return null;
      case 'overrun':
        return change.why ?? 'kernel notifications were lost';
      case 'link':
        return linkDrift(ownership.links ?? [], change.op, change.link);
      case 'neigh':
        return ownership.neighDevices.some((d) => d.ifindex === change.neigh.ifindex) ? this.neighDrift(change.op, change.neigh) : null;
      case 'fdb':
        return ownership.fdbDevices.includes(change.fdb.ifindex) ? this.fdbDrift(change.op, change.fdb) : null;
      case 'route':
        return this.routeDrift(ownership, change.op, change.route);
      case 'nexthop':
        return this.nexthopDrift(change.op, change.nexthop);
    }
  }

  /**
   * Keeps the ids other owners hold current from notifications; a foreign
   * nexthop taking an id weft wants asks for a full pass, which folds that
   * peer's nexthop into its route.
   */
  private noteNexthopOwner(op: ChangeOp, nh: Nexthop): string | null {
    if (nh.proto === RTPROT_WEFT) {
      if (op === 'new' && this.foreignNexthops.delete(nh.id)) this.foreignVersion++;
      return null;
    }
    if (op === 'del') {
      if (this.foreignNexthops.delete(nh.id)) this.foreignVersion++;
      return null;
    }
    if (!this.foreignNexthops.has(nh.id)) {
      this.foreignNexthops.add(nh.id);
      this.foreignVersion++;
    }
    return this.wanted.has(`nexthop ${nh.id}`) ? `nexthop id ${nh.id} taken by proto ${nh.proto} outside weft` : null;
  }

  private nexthopDrift(op: ChangeOp, nh: Nexthop): string | null {
    if (nh.proto !== RTPROT_WEFT) return null;
    const want = this.wanted.get(`nexthop ${nh.id}`)?.entry;
    const wanted = want?.kind === 'nexthop' ? want : null;
    if (op === 'del') return wanted ? `nexthop id ${nh.id} deleted outside weft` : null;
    if (wanted) return sameNexthop(wanted, nh) ? null : `nexthop id ${nh.id} changed outside weft (${showNexthopTarget(nh, (i) => `#${i}`)})`;
    return `nexthop id ${nh.id} added outside weft (${showNexthopTarget(nh, (i) => `#${i}`)})`;
  }

  /**
   * Keeps the node's own networks current from notifications: a change that
   * may decide whether a peer collides (see NodeNetworks) asks for a full pass.
   */
  private networksChange(change: KernelChange, ownership: Ownership | null): string | null {
    const networks = this.nodeNetworks;
    if (!networks) return null;
    let what: string;
    let changed: Subnet[];
    if (change.kind === 'overrun') {
      networks.invalidate();
      return null;
    } else if (change.kind === 'link' && change.op === 'del') {
      what = `link ${change.link.name} deleted`;
      changed = networks.forgetLink(change.link.index);
    } else if (change.kind === 'addr') {
      what = `address ${change.addr.cidr} ${change.op === 'del' ? 'removed' : 'added'}`;
      changed = networks.noteAddr(change.op, change.addr);
    } else if (change.kind === 'route' && ownership && this.isNodeRoute(ownership, change.route)) {
      what = `route ${change.route.dst} ${change.op === 'del' ? 'removed' : 'added'}`;
      changed = networks.noteRoute(change.op, change.route);
    } else return null;
    if (changed.length === 0) return null;
    this.networksVersion++;
    // Only a change near a peer's subnet can change a verdict (the node's own subnet is no peer).
    let near = false;
    this.peers.forEach((lease) => {
      if (!near && changed.some((net) => net.overlaps(lease.subnet) || (lease.ipv6Subnet !== null && net.overlaps(lease.ipv6Subnet)))) near = true;
    });
    return near ? `${what} inside a peer's subnet; checking peers against the node's own networks` : null;
  }

  /**
   * A route that is the node's own rather than weft's: not weft's, and not to
   * a prefix weft routes now. Another hand replacing weft's route to a peer
   * is drift, repaired like any other; a route that was there first is the
   * node's, and the peer it collides with is skipped.
   */
  private isNodeRoute(ownership: Ownership, r: Route): boolean {
    return !ownership.ownsRoute(r) && this.wanted.get(`route ${r.dst}`) === undefined;
  }

  private neighDrift(op: ChangeOp, n: Neigh): string | null {
    const want = this.wanted.get(`neigh ${n.ifindex} ${n.ip}`)?.entry;
    const wanted = want?.kind === 'neigh' ? want : null;
    if (op === 'del') return wanted ? `neighbour ${n.ip} deleted outside weft` : null;
    if (wanted) return n.permanent && n.mac === wanted.mac ? null : `neighbour ${n.ip} changed outside weft (lladdr ${n.mac}${n.permanent ? '' : ', not permanent'})`;
    // Learned entries are the kernel's business, as in a full pass.
    return n.permanent ? `neighbour ${n.ip} added outside weft` : null;
  }

  private fdbDrift(op: ChangeOp, f: Fdb): string | null {
    const want = this.wanted.get(`fdb ${f.ifindex} ${f.mac}`)?.entry;
    const wanted = want?.kind === 'fdb' ? want : null;
    // Another remote of the same MAC (`bridge fdb append`) is not weft's entry.
    if (op === 'del') return wanted && wanted.dst === f.dst ? `FDB entry ${f.mac} deleted outside weft` : null;
    if (wanted) return wanted.dst === f.dst ? null : `FDB entry ${f.mac} changed outside weft (dst ${f.dst})`;
    // Learned entries (learning on) come and go with traffic; the periodic pass deals with them.
    return f.permanent ? `FDB entry ${f.mac} added outside weft` : null;
  }

  private routeDrift(ownership: Ownership, op: ChangeOp, r: Route): string | null {
    const want = this.wanted.get(`route ${r.dst}`)?.entry;
    const wanted = want?.kind === 'route' ? want : null;
    // The kernel may hold other routes to the same prefix (another metric); only weft's counts.
    if (op === 'del') return wanted && sameRoute(wanted, r) ? `route ${r.dst} deleted outside weft` : null;
    if (wanted) return sameRoute(wanted, r) && ownership.ownsRoute(r) ? null : `route ${r.dst} changed outside weft (${showRoute(r)})`;
    return ownership.ownsRoute(r) ? `route ${r.dst} added outside weft (${showRoute(r)})` : null;
  }

  /** One pass; failures stay pending for the next one. */
  async apply(): Promise<ApplyReport> {
    if (this.fullPending || !this.ownership) return this.fullPass();
    return this.deltaPass();
  }

  private async fullPass(): Promise<ApplyReport> {
    this.fullPending = false;
    const dirtyBefore = new Set(this.dirty);
    this.dirty.clear();
    this.removed.clear();
    let ownership: Ownership;
    let rebuilt: boolean;
    try {
      const refreshed = await this.programmer.refresh();
      ownership = refreshed.ownership;
      rebuilt = refreshed.rebuilt;
      if (rebuilt) this.forgetProgrammed();
      this.ownership = ownership;
    } catch (err) {
      this.fullPending = true;
      for (const k of dirtyBefore) this.dirty.add(k);
      throw err;
    }

    const networks = this.nodeNetworks;
    if (networks && !networks.isKnown) {
      // Nothing is programmed before the node's own networks are known: a peer route could replace one of them.
      networks.beginRead();
      await Promise.all([
        ...ownership.routeFamilies.map((family) => this.kernel.routeEach((r) => this.isNodeRoute(ownership, r) && networks.readRoute(r), family)),
        this.readAddrs(networks, ownership.routeFamilies),
      ]);
      networks.endRead();
      this.networksVersion++;
    }
    const basis = this.programmer.entriesBasis?.();
    const from =
      basis === undefined ? null : { peersVersion: this.peersVersion, deltaPasses: this.counters.deltaPasses, programmer: `${basis} ${this.networksVersion} ${this.foreignVersion}` };
    const reuse = from !== null && !rebuilt && this.desiredFrom !== null && sameBasis(from, this.desiredFrom);
    const desired = reuse ? this.wanted : this.buildDesired();
    this.wanted = desired;
    this.desiredFrom = from;

    const diff = new FullDiff(desired);
    const foreign = new Set<number>();
    networks?.beginRead();
    await Promise.all([
      eachOwned(
        this.kernel,
        ownership,
        (held) => diff.held(held),
        networks ? (r) => this.isNodeRoute(ownership, r) && networks.readRoute(r) : undefined,
        (nh) => foreign.add(nh.id),
      ),
      networks ? this.readAddrs(networks, ownership.routeFamilies) : null,
    ]);
    if (ownership.nexthops && this.takeForeignNexthops(foreign, desired)) {
      // Nothing is written over another owner's nexthop: the pass starts again, those peers' nexthops folded into their routes.
      networks?.endRead();
      this.fullPending = true;
      for (const k of dirtyBefore) this.dirty.add(k);
      return this.fullPass();
    }
    // What changed unnoticed (lost notifications) is judged in the pass that follows at once.
    if (networks?.endRead()) {
      this.networksVersion++;
      this.fullPending = true;
    }
    const plan = diff.plan();
    const { failedPeers, failedDeletes, ops } = await this.execute(plan);
    // The periodic repair pass usually finds nothing to do: then the bookkeeping already says
    // what the kernel holds, and rebuilding it (every peer's entries) is pure garbage.
    if (!(ops === 0 && failedPeers.size === 0 && (reuse || this.programmedMatches(desired)))) {
      for (const peer of failedPeers) this.dirty.add(peer);
      this.recordProgrammed(desired, failedPeers);
    }
    if (failedDeletes > 0) this.fullPending = true;
    const failed = failedPeers.size + failedDeletes;
    this.counters.fullPasses++;
    this.counters.failedOps += failed;
    if (plan.deletes.length + plan.sets.length > 0 || failed > 0) {
      this.log.info('full reconcile', { peers: this.peers.size, removed: plan.deletes.length, written: plan.sets.length, failed });
    }
    return { full: true, ops, failed };
  }

  /** Replaces the foreign nexthop ids with a dump's; true when one of them is an id `desired` holds. */
  private takeForeignNexthops(ids: ReadonlySet<number>, desired: ReadonlyMap<string, Owned>): boolean {
    let changed = ids.size !== this.foreignNexthops.size;
    for (const id of ids) if (!this.foreignNexthops.has(id)) changed = true;
    if (!changed) return false;
    this.foreignNexthops.clear();
    for (const id of ids) this.foreignNexthops.add(id);
    this.foreignVersion++;
    const clash = [...ids].filter((id) => desired.has(`nexthop ${id}`));
    if (clash.length > 0) this.log.warn('nexthop ids taken by another owner; those peers get routes with their own gateway', { ids: clash.join(',') });
    return clash.length > 0;
  }

  private async readAddrs(networks: NodeNetworks, families: readonly Family[]): Promise<void> {
    const lists = await Promise.all(families.map((family) => this.kernel.addrListAll(family)));
    for (const list of lists) for (const a of list) networks.readAddr(a);
  }

  private buildDesired(): Map<string, Owned> {
    this.contested.clear();
    // Judged again below; peers that left take their collision with them.
    this.collisions.clear();
    for (const peer of this.warnedCollisions.keys()) if (!this.peers.has(peer)) this.warnedCollisions.delete(peer);
    return desiredEntries(this.peers, this.guarded, (key, peer, other) => this.lostClaim(key, peer, other));
  }

  private lostClaim(key: string, peer: string, holder: string): void {
    this.log.warn('two peers claim one kernel entry; keeping the first', { entry: key, peer, other: holder });
    const losers = this.contested.get(key);
    if (losers) losers.add(peer);
    else this.contested.set(key, new Set([peer]));
  }

  /**
   * Applies the dirty peers only. An entry two peers claim follows the full
   * pass's rule: whoever holds it keeps it (a newcomer's claim is skipped with
   * a warning), and when its holder goes or drops it, a peer whose claim lost
   * takes it over in the same pass.
   */
  private async deltaPass(): Promise<ApplyReport> {
    const touched = new Set(this.dirty);
    this.dirty.clear();
    const removedLeases = new Map(this.removed);
    this.removed.clear();

    const before = new Map<string, readonly Entry[]>();
    for (const peer of touched) before.set(peer, this.programmed.get(peer) ?? this.fallbackEntries(removedLeases.get(peer)));
    // Peers that lost a claim on an entry a touched peer held get their chance at it now.
    for (const entries of [...before.values()]) {
      for (const e of entries) {
        for (const loser of this.contested.get(entryKey(e)) ?? []) {
          if (touched.has(loser) || !this.peers.has(loser)) continue;
          touched.add(loser);
          before.set(loser, this.programmed.get(loser) ?? []);
        }
      }
    }

    const claims = new Map<string, readonly Entry[]>();
    for (const peer of touched) {
      const lease = this.peers.get(peer);
      if (!lease) {
        this.collisions.delete(peer);
        this.warnedCollisions.delete(peer);
      }
      claims.set(peer, lease ? (this.guarded.entriesFor(lease) ?? []) : []);
    }
    // Who gets each entry claimed in this delta: a holder outside the delta
    // keeps it, so does a touched holder that still claims it; else the first claimant.
    const winner = new Map<string, string>();
    for (const [peer, entries] of claims) {
      for (const e of entries) {
        const key = entryKey(e);
        const current = winner.get(key);
        const holder = this.programmedOwner.get(key);
        if (holder !== undefined && holder !== peer && !touched.has(holder)) winner.set(key, holder);
        else if (current === undefined || holder === peer) winner.set(key, peer);
      }
    }
    const next = new Map<string, readonly Entry[]>();
    for (const [peer, entries] of claims) {
      const own: Entry[] = [];
      for (const e of entries) {
        const key = entryKey(e);
        const w = winner.get(key) as string;
        if (w === peer) own.push(e);
        else this.lostClaim(key, peer, w);
      }
      next.set(peer, own);
    }

    const deletes: Entry[] = [];
    const sets: Owned[] = [];
    for (const peer of touched) {
      for (const e of before.get(peer) ?? []) {
        const key = entryKey(e);
        const holder = this.programmedOwner.get(key);
        const heldByOther = holder !== undefined && holder !== peer && !touched.has(holder);
        if (!winner.has(key) && !heldByOther) deletes.push(e);
      }
      for (const e of next.get(peer) ?? []) sets.push({ peer, entry: e });
    }
    this.noteWanted(deletes, sets);
    const { failedPeers, failedDeletes, ops } = await this.execute({ deletes, sets });
    for (const peer of touched) {
      if (failedPeers.has(peer)) {
        this.dirty.add(peer);
        continue;
      }
      this.setProgrammed(peer, next.get(peer) ?? []);
    }
    // A failed deletion of a departed peer is left to a full pass, which finds it by dump.
    if (failedDeletes > 0) this.fullPending = true;
    this.counters.deltaPasses++;
    this.counters.failedOps += failedPeers.size + failedDeletes;
    return { full: false, ops, failed: failedPeers.size + failedDeletes };
  }

  /** A delta's effect on what weft wants, recorded before its ops go out so their echoes match. */
  private noteWanted(deletes: readonly Entry[], sets: readonly Owned[]): void {
    for (const e of deletes) this.wanted.delete(entryKey(e));
    for (const s of sets) this.wanted.set(entryKey(s.entry), s);
  }

  private fallbackEntries(lease: Lease | undefined): readonly Entry[] {
    const entries = lease ? (this.programmer.entriesFor(lease) ?? []) : [];
    return this.foreignNexthops.size > 0 ? foldNexthops(entries, this.nexthopTaken) : entries;
  }

  private setProgrammed(peer: string, entries: readonly Entry[]): void {
    for (const e of this.programmed.get(peer) ?? []) {
      const key = entryKey(e);
      if (this.programmedOwner.get(key) === peer) this.programmedOwner.delete(key);
    }
    if (entries.length === 0) {
      this.programmed.delete(peer);
      return;
    }
    this.programmed.set(peer, entries);
    for (const e of entries) this.programmedOwner.set(entryKey(e), peer);
  }

  /** True when the per-peer bookkeeping holds exactly the `desired` entries, each for the same peer. */
  private programmedMatches(desired: ReadonlyMap<string, Owned>): boolean {
    if (this.programmedOwner.size !== desired.size) return false;
    for (const [key, owned] of desired) if (this.programmedOwner.get(key) !== owned.peer) return false;
    return true;
  }

  /**
   * After a full pass: the bookkeeping becomes `desired` less the peers that
   * failed, each entry's owner kept under the desired map's own key string
   * (not a new string per entry).
   */
  private recordProgrammed(desired: ReadonlyMap<string, Owned>, failed: ReadonlySet<string>): void {
    this.programmedOwner.clear();
    const programmed = new Map<string, Entry[]>();
    desired.forEach(({ peer, entry }, key) => {
      if (failed.has(peer)) return;
      const list = programmed.get(peer);
      if (list) list.push(entry);
      else programmed.set(peer, [entry]);
      this.programmedOwner.set(key, peer);
    });
    this.programmed = programmed;
  }

  private forgetProgrammed(): void {
    this.programmed.clear();
    this.programmedOwner.clear();
  }

  /** Sends the plan in two round trips (routes last) and reports failures. */
  private async execute(plan: Plan): Promise<{ failedPeers: Set<string>; failedDeletes: number; ops: number }> {
    const failedPeers = new Set<string>();
    let failedDeletes = 0;
    // Another owner's nexthop is never deleted or overwritten, whatever the bookkeeping says.
    const deletes = plan.deletes.filter((e) => e.kind !== 'nexthop' || !this.foreignNexthops.has(e.id));
    const first: KernelOp[] = deleteOps(deletes.filter((e) => e.kind !== 'nexthop'));
    const firstOwners: Array<string | null> = first.map(() => null);
    const routes: Owned[] = [];
    for (let i = 0; i < plan.sets.length; i++) {
      const s = plan.sets[i] as Owned;
      if (s.entry.kind === 'route') {
        routes.push(s);
        continue;
      }
      if (s.entry.kind === 'nexthop' && this.foreignNexthops.has(s.entry.id)) {
        failedPeers.add(s.peer);
        continue;
      }
      first.push(setOp(s.entry));
      firstOwners.push(s.peer);
    }
    const firstResults = await this.kernel.apply(first);
    firstResults.forEach((errno, i) => {
      if (!errno) return;
      const owner = firstOwners[i];
      const op = first[i] as KernelOp;
      // Deleting what is already gone is success for a reconciler.
      if (owner === null && (errno === 'ENOENT' || errno === 'ESRCH')) return;
      this.log.warn('kernel op failed', { op: describeOp(op), errno });
      if (owner === null || owner === undefined) failedDeletes++;
      else failedPeers.add(owner);
    });

    const second = routes.filter((r) => !failedPeers.has(r.peer));
    const secondResults = await this.kernel.apply(second.map((r) => setOp(r.entry)));
    secondResults.forEach((errno, i) => {
      if (!errno) return;
      const owned = second[i] as Owned;
      this.log.warn('kernel op failed', { op: describeOp(setOp(owned.entry)), errno });
      failedPeers.add(owned.peer);
    });
    for (const r of routes) if (failedPeers.has(r.peer) && !second.includes(r)) this.log.debug('route held back', { peer: r.peer });

    // Last, once no route written above goes through them: a nexthop's deletion takes its routes along.
    const third = deleteOps(deletes.filter((e) => e.kind === 'nexthop'));
    const thirdResults = third.length > 0 ? await this.kernel.apply(third) : [];
    thirdResults.forEach((errno, i) => {
      if (!errno || errno === 'ENOENT') return;
      this.log.warn('kernel op failed', { op: describeOp(third[i] as KernelOp), errno });
      failedDeletes++;
    });
    return { failedPeers, failedDeletes, ops: first.length + second.length + third.length };
  }
}
