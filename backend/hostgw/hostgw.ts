/**
 * host-gw backend.
 *
 * What is programmed per peer (subnet S, public IP P): one route,
 * `ip route replace S via P dev <underlay> proto 0x57`. The underlay routes
 * plain IP to the peer, which forwards to its containers: no encapsulation,
 * no overhead, full underlay MTU.
 *
 * Why: on a flat L2 network this is the cheapest overlay there is (flannel's
 * recommended backend there). It needs every peer on the same segment; a
 * peer whose P is outside the underlay's connected subnets is skipped with a
 * warning instead of failing on ENETUNREACH forever.
 *
 * Cost: one route per peer. weft's routes carry proto 0x57, which is how a
 * full pass tells them from the administrator's, removes those of departed
 * peers and re-adds deleted ones (flannel's 10 s routeCheck, plus removal).
 * That pass runs when the kernel reports one of them deleted or changed, or
 * the underlay going down or up (which drops routes without a notification).
 *
 * Where the kernel has nexthop objects (--route-nexthops, backend/nexthops.ts)
 * the gateway is a nexthop of its own: `ip nexthop replace id N via P dev
 * <underlay> proto 0x57`, then `ip route replace S nhid N proto 0x57`, so the
 * kernel's cost stays linear in the peers.
 *
 * IPv6 (EnableIPv6): the same route per peer in IPv6, `S6 via P6 dev
 * <underlay>`, P6 being the peer's PublicIPv6 on the underlay's IPv6 segment.
 */
import type { Logger } from '../../common/log.js';
import type { Subnet } from '../../common/subnet.js';
import { slotOf } from '../../lease/keyspace.js';
import type { Lease } from '../../lease/types.js';
import { familyName, publicIPOf, subnetOf, type Plane } from '../families.js';
import type { Backend, BackendBuild, BackendNetwork, BackendRegistration } from '../backend.js';
import { RTPROT_WEFT, type Kernel, type Route } from '../../kernel/kernel.js';
import { registerPeerNetwork } from '../peer-network.js';
import { nexthopId, nexthopSupport, type NexthopSupport } from '../nexthops.js';
import type { Entry, Ownership, Programmer } from '../reconciler.js';
import { onSegment, readSegments } from '../../kernel/underlay.js';

export class HostGwBackend implements Backend {
  readonly type = 'host-gw';

  async build(reg: BackendRegistration, kernel: Kernel, planes: readonly Plane[]): Promise<BackendBuild> {
    const underlay = await readSegments(kernel, reg.iface.name, planes.map((p) => p.family));
    const nexthops = await nexthopSupport(kernel, reg.routeNexthops, reg.log);
    return {
      programmer: new HostGwProgrammer(kernel, reg.iface.name, planes, reg.log, nexthops),
      device: null,
      devices: [],
      leaseAttrs: { BackendType: 'host-gw' },
      mtu: reg.iface.mtu || underlay.link.mtu,
    };
  }

  register(reg: BackendRegistration): Promise<BackendNetwork> {
    return registerPeerNetwork(reg, (kernel, planes) => this.build(reg, kernel, planes));
  }
}

export class HostGwProgrammer implements Programmer {
  private underlayIndex = 0;
  private segments: readonly Subnet[] = [];
  private ownLease: Lease | null = null;
  private readonly warned = new Map<string, string>();

  constructor(
    private readonly kernel: Kernel,
    private readonly underlayName: string,
    private readonly planes: readonly Plane[],
    private readonly log: Logger,
    private readonly nexthops: NexthopSupport = { kernel: false, use: false },
  ) {}

  async configure(ownLease: Lease): Promise<void> {
    this.ownLease = ownLease;
  }

  async refresh(): Promise<{ ownership: Ownership; rebuilt: boolean }> {
    const families = this.planes.map((p) => p.family);
    const underlay = await readSegments(this.kernel, this.underlayName, families);
    this.underlayIndex = underlay.link.index;
    this.segments = underlay.segments;
    const networks = this.planes.map((p) => p.network);
    return {
      rebuilt: false,
      ownership: {
        neighDevices: [],
        fdbDevices: [],
        routeFamilies: families,
        nexthops: this.nexthops.kernel,
        // The kernel drops the routes of an underlay that goes down, without a notification.
        links: [{ index: underlay.link.index, name: underlay.link.name, up: underlay.link.up, mtu: null }],
        ownsRoute: (r: Route) => {
          if (r.proto !== RTPROT_WEFT) return false;
          const dst = r.dst.slice(0, r.dst.indexOf('/'));
          return networks.some((n) => n.contains(dst));
        },
      },
    };
  }

  entriesBasis(): string {
    const own = this.ownLease ? slotOf(this.ownLease) : '-';
    return `${this.underlayIndex} ${own} ${this.nexthops.use} ${this.segments.join(',')}`;
  }

  entriesFor(lease: Lease): readonly Entry[] | null {
    const key = slotOf(lease);
    if (this.ownLease && key === slotOf(this.ownLease)) return null;
    if (lease.attrs.BackendType !== 'host-gw') return this.skip(key, `backend type "${lease.attrs.BackendType}" is not host-gw`);
    let entries: Entry[] | null = null;
    const skipped: string[] = [];
    for (const plane of this.planes) {
      const got = this.familyEntries(lease, plane);
      if (typeof got === 'string') skipped.push(got);
      else (entries ??= []).push(...got);
    }
    // A family the lease cannot be routed in is skipped alone: its other family still works.
    if (skipped.length > 0) this.skip(key, skipped.join('; '));
    else this.warned.delete(key);
    return entries;
  }

  private familyEntries(lease: Lease, plane: Plane): Entry[] | string {
    const subnet = subnetOf(lease, plane.family);
    if (!subnet) return `no ${familyName(plane.family)} subnet`;
    const P = publicIPOf(lease.attrs, plane.family);
    if (!P) return `lease has no ${plane.family === 6 ? 'PublicIPv6' : 'PublicIP'}`;
    if (!onSegment(this.segments, P)) return `public IP ${P} is not on ${this.underlayName}'s segment`;
    const dst = subnet.toString();
    const id = this.nexthops.use ? nexthopId(plane.network, subnet) : null;
    if (id !== null) {
      return [
        { kind: 'nexthop', id, gw: P, oif: this.underlayIndex, onlink: false },
        { kind: 'route', dst, gw: null, oif: 0, onlink: false, nhid: id },
      ];
    }
    return [{ kind: 'route', dst, gw: P, oif: this.underlayIndex, onlink: false }];
  }

  private skip(key: string, why: string): null {
    if (this.warned.get(key) !== why) {
      this.warned.set(key, why);
      this.log.warn(`skipping peer lease ${key}: ${why}`);
    }
    return null;
  }
}
