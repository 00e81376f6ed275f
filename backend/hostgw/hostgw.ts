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
 */
import type { Logger } from '../../common/log.js';
import type { Subnet } from '../../common/subnet.js';
import type { Lease } from '../../lease/types.js';
import type { Backend, BackendBuild, BackendNetwork, BackendRegistration } from '../backend.js';
import { RTPROT_WEFT, type Kernel, type Route } from '../../kernel/kernel.js';
import { registerPeerNetwork } from '../peer-network.js';
import { nexthopId, nexthopSupport, type NexthopSupport } from '../nexthops.js';
import type { Entry, Ownership, Programmer } from '../reconciler.js';
import { onSegment, readSegments } from '../../kernel/underlay.js';

export class HostGwBackend implements Backend {
  readonly type = 'host-gw';

  async build(reg: BackendRegistration, kernel: Kernel, network: Subnet): Promise<BackendBuild> {
    const underlay = await readSegments(kernel, reg.iface.name);
    const nexthops = await nexthopSupport(kernel, reg.routeNexthops, reg.log);
    return {
      programmer: new HostGwProgrammer(kernel, reg.iface.name, network, reg.log, nexthops),
      device: null,
      leaseAttrs: { BackendType: 'host-gw' },
      mtu: reg.iface.mtu || underlay.link.mtu,
    };
  }

  register(reg: BackendRegistration): Promise<BackendNetwork> {
    return registerPeerNetwork(reg, (kernel, network) => this.build(reg, kernel, network));
  }
}

export class HostGwProgrammer implements Programmer {
  private underlayIndex = 0;
  private segments: readonly Subnet[] = [];
  private ownSubnet: Subnet | null = null;
  private readonly warned = new Map<string, string>();

  constructor(
    private readonly kernel: Kernel,
    private readonly underlayName: string,
    private readonly network: Subnet,
    private readonly log: Logger,
    private readonly nexthops: NexthopSupport = { kernel: false, use: false },
  ) {}

  async configure(ownLease: Lease): Promise<void> {
    this.ownSubnet = ownLease.subnet;
  }

  async refresh(): Promise<{ ownership: Ownership; rebuilt: boolean }> {
    const underlay = await readSegments(this.kernel, this.underlayName);
    this.underlayIndex = underlay.link.index;
    this.segments = underlay.segments;
    const network = this.network;
    return {
      rebuilt: false,
      ownership: {
        neighIfindex: null,
        fdbIfindex: null,
        nexthops: this.nexthops.kernel,
        // The kernel drops the routes of an underlay that goes down, without a notification.
        links: [{ index: underlay.link.index, name: underlay.link.name, up: underlay.link.up, mtu: null }],
        ownsRoute: (r: Route) => r.proto === RTPROT_WEFT && network.contains(r.dst.slice(0, r.dst.indexOf('/'))),
      },
    };
  }

  entriesBasis(): string {
    return `${this.underlayIndex} ${this.ownSubnet ?? '-'} ${this.nexthops.use} ${this.segments.join(',')}`;
  }

  entriesFor(lease: Lease): readonly Entry[] | null {
    const key = lease.subnet.toString();
    if (this.ownSubnet && lease.subnet.equals(this.ownSubnet)) return null;
    if (lease.attrs.BackendType !== 'host-gw') return this.skip(key, `backend type "${lease.attrs.BackendType}" is not host-gw`);
    if (lease.subnet.family !== 4) return this.skip(key, 'not an IPv4 subnet');
    const P = lease.attrs.PublicIP;
    if (!onSegment(this.segments, P)) return this.skip(key, `public IP ${P} is not on ${this.underlayName}'s segment`);
    this.warned.delete(key);
    const id = this.nexthops.use ? nexthopId(this.network, lease.subnet) : null;
    if (id !== null) {
      return [
        { kind: 'nexthop', id, gw: P, oif: this.underlayIndex, onlink: false },
        { kind: 'route', dst: key, gw: null, oif: 0, onlink: false, nhid: id },
      ];
    }
    return [{ kind: 'route', dst: key, gw: P, oif: this.underlayIndex, onlink: false }];
  }

  private skip(key: string, why: string): null {
    if (this.warned.get(key) !== why) {
      this.warned.set(key, why);
      this.log.warn(`skipping peer lease ${key}: ${why}`);
    }
    return null;
  }
}
