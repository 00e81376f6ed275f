/**
 * vxlan backend.
 *
 * What is programmed per peer (subnet S, VTEP MAC M, public IP P), in
 * flannel's order so the kernel never ARPs for S.0:
 *   1. `ip neigh replace S.0 dev flannel.N lladdr M nud permanent`
 *   2. `bridge fdb replace M dev flannel.N dst P self permanent`
 *   3. `ip route replace S via S.0 dev flannel.N onlink`
 * Removal goes route, neighbour, FDB. A peer whose MAC changed loses its old
 * FDB entry (flannel leaks it). With DirectRouting, a peer whose P lies in one
 * of the underlay's connected subnets gets only `ip route replace S via P dev
 * <underlay>`, and no encapsulation.
 *
 * Where the kernel has nexthop objects (--route-nexthops, backend/nexthops.ts)
 * the route's gateway becomes a nexthop of its own, programmed before the
 * route and removed after it: `ip nexthop replace id N via S.0 dev flannel.N
 * onlink proto 0x57`, then `ip route replace S nhid N proto 0x57` (DirectRouting:
 * `id N via P dev <underlay>`). Flannel's per-route gateways make the kernel's
 * programming quadratic in the peers; routes by nhid keep it linear.
 *
 * Why static entries: flannel dropped L2/L3-miss upcalls in v0.9 because a
 * userspace round trip on the first packet is slow and lossy; three entries
 * per peer make the data path independent of the daemon.
 *
 * Cost: three kernel entries and three rtnetlink messages per peer, so a
 * start-up's work grows linearly with the peers (docs/benchmarks.md). A full
 * repair pass dumps the device's neighbours and FDB and the main table; it
 * runs when the kernel reports drift (an entry or the device deleted or
 * changed outside weft) and, as a safety net, every --resync-interval.
 *
 * Own state: the device is `flannel.<VNI>` with `<own subnet>.0/32`, MTU =
 * underlay MTU - 50 (70 over IPv6), nolearning, and a MAC kept in the state
 * directory so it survives reboots.
 */
import { isIPv6 } from 'node:net';
import { WeftError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { Subnet } from '../../common/subnet.js';
import { vxlanPort } from '../../lease/config.js';
import type { Lease } from '../../lease/types.js';
import type { Backend, BackendBuild, BackendNetwork, BackendRegistration } from '../backend.js';
import { RTPROT_KERNEL, RTPROT_WEFT, type Kernel, type Link, type Route, type VxlanLinkSpec } from '../../kernel/kernel.js';
import { registerPeerNetwork } from '../peer-network.js';
import { nexthopId, nexthopSupport, type NexthopSupport } from '../nexthops.js';
import type { Entry, Ownership, Programmer } from '../reconciler.js';
import { onSegment, readSegments } from '../../kernel/underlay.js';
import { configureDevice, ensureVxlanDevice } from './device.js';
import { randomUUID } from 'node:crypto';
import { isUnicastMac } from '../../common/mac.js';
import { deriveVtepMac, loadVtepMac, saveVtepMac } from './mac.js';

/** Outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14). */
export const VXLAN_OVERHEAD_V4 = 50;
/** Same over an IPv6 underlay (outer header 40). */
export const VXLAN_OVERHEAD_V6 = 70;

/** Device MTU for an underlay MTU and tunnel family. */
export function vxlanMtu(underlayMtu: number, publicIP: string): number {
  return underlayMtu - (isIPv6(publicIP) ? VXLAN_OVERHEAD_V6 : VXLAN_OVERHEAD_V4);
}

export class VxlanBackend implements Backend {
  readonly type = 'vxlan';

  async build(reg: BackendRegistration, kernel: Kernel, network: Subnet): Promise<BackendBuild> {
    const programmer = await VxlanProgrammer.create(kernel, reg, network);
    const leaseAttrs = { BackendType: 'vxlan', BackendData: { VNI: reg.network.backend.vni, VtepMAC: programmer.mac } };
    return { programmer, device: programmer.device, leaseAttrs, mtu: programmer.mtu };
  }

  register(reg: BackendRegistration): Promise<BackendNetwork> {
    return registerPeerNetwork(reg, (kernel, network) => this.build(reg, kernel, network));
  }
}

/** Device upkeep and the lease -> entries mapping for the vxlan backend. */
export class VxlanProgrammer implements Programmer {
  private link: Link;
  private underlayIndex: number;
  private segments: readonly Subnet[] = [];
  private ownSubnet: Subnet | null = null;
  /** Peer key -> reason it was skipped, so each reason is logged once. */
  private readonly warned = new Map<string, string>();

  private constructor(
    private readonly kernel: Kernel,
    private readonly spec: VxlanLinkSpec,
    private readonly underlayName: string,
    private readonly network: Subnet,
    private readonly directRouting: boolean,
    private readonly log: Logger,
    ensured: Link,
    private readonly nexthops: NexthopSupport,
  ) {
    this.link = ensured;
    this.underlayIndex = spec.underlayIndex;
  }

  static async create(kernel: Kernel, reg: BackendRegistration, network: Subnet): Promise<VxlanProgrammer> {
    const cfg = reg.network.backend;
    const underlay = await readSegments(kernel, reg.iface.name);
    const name = reg.deviceName ?? `flannel.${cfg.vni}`;
    const mtu = vxlanMtu(cfg.mtu > 0 ? cfg.mtu : reg.iface.mtu || underlay.link.mtu, reg.publicIP);
    const stored = reg.stateDir ? await loadVtepMac(reg.stateDir, name) : null;
    const spec: VxlanLinkSpec = {
      name,
      mac: stored ?? deriveVtepMac(`${reg.publicIP}/${cfg.vni}`),
      mtu,
      vni: cfg.vni,
      port: vxlanPort(cfg),
      local: reg.publicIP,
      underlayIndex: underlay.link.index,
      learning: cfg.learning,
      gbp: cfg.gbp,
    };
    let { link } = await ensureVxlanDevice(kernel, spec, reg.log);
    const holder = await reg.macTakenBy?.(link.mac);
    if (holder) {
      // A cloned VM or state directory: the older lease keeps the MAC, this node takes another.
      const fresh = deriveVtepMac(`${reg.publicIP}/${cfg.vni}/${randomUUID()}`);
      reg.log.warn(`VTEP MAC ${link.mac} is already advertised by the older lease ${holder}; taking the new MAC ${fresh}`, { holder });
      await kernel.linkDel(link.index);
      ({ link } = await ensureVxlanDevice(kernel, { ...spec, mac: fresh }, reg.log));
    }
    // An adopted device keeps its MAC: that is what peers already have.
    const nexthops = await nexthopSupport(kernel, reg.routeNexthops, reg.log);
    const programmer = new VxlanProgrammer(kernel, { ...spec, mac: link.mac }, reg.iface.name, network, cfg.directRouting, reg.log, link, nexthops);
    programmer.segments = underlay.segments;
    if (reg.stateDir && link.mac !== stored && isUnicastMac(link.mac)) await saveVtepMac(reg.stateDir, name, link.mac);
    return programmer;
  }

  /** The VTEP MAC advertised in the lease. */
  /** The device's name, `flannel.<VNI>` unless configured otherwise. */
  get device(): string {
    return this.spec.name;
  }

  get mac(): string {
    return this.spec.mac;
  }

  get mtu(): number {
    return this.spec.mtu;
  }

  async configure(ownLease: Lease): Promise<void> {
    this.ownSubnet = ownLease.subnet;
    await configureDevice(this.kernel, this.link, ownLease.subnet, this.network, this.log);
    this.link = { ...this.link, up: true };
  }

  async refresh(): Promise<{ ownership: Ownership; rebuilt: boolean }> {
    const underlay = await readSegments(this.kernel, this.underlayName);
    this.underlayIndex = underlay.link.index;
    this.segments = underlay.segments;
    const current = await this.kernel.linkByName(this.spec.name);
    if (!current || current.index !== this.link.index || current.kind !== 'vxlan') {
      this.log.warn(`${this.spec.name} is gone or was replaced; rebuilding it and replaying all peers`);
    }
    const ensured = await ensureVxlanDevice(this.kernel, { ...this.spec, underlayIndex: underlay.link.index }, this.log);
    const rebuilt = ensured.created || ensured.link.index !== this.link.index;
    this.link = ensured.link;
    if (rebuilt || !this.link.up) {
      if (this.ownSubnet) {
        await configureDevice(this.kernel, this.link, this.ownSubnet, this.network, this.log);
        this.link = { ...this.link, up: true };
      }
    }
    if (ensured.link.mac !== this.spec.mac) {
      // Only when someone changed the MAC under us; peers still use the advertised one.
      throw new WeftError('WEFT_ERR_KERNEL', `${this.spec.name}'s mac address wanted: ${this.spec.mac}, but got: ${ensured.link.mac}`);
    }
    const device = this.link.index;
    const network = this.network;
    return {
      rebuilt,
      ownership: {
        neighIfindex: device,
        fdbIfindex: device,
        nexthops: this.nexthops.kernel,
        links: [
          { index: device, name: this.spec.name, up: this.link.up, mtu: this.spec.mtu },
          { index: underlay.link.index, name: underlay.link.name, up: underlay.link.up, mtu: null },
        ],
        ownsRoute: (r: Route) => {
          const slash = r.dst.indexOf('/');
          return (
            network.contains(r.dst.slice(0, slash)) &&
            Number(r.dst.slice(slash + 1)) >= network.prefixLength &&
            (r.proto === RTPROT_WEFT || (r.oif === device && r.proto !== RTPROT_KERNEL))
          );
        },
      },
    };
  }

  entriesBasis(): string {
    return `${this.link.index} ${this.underlayIndex} ${this.ownSubnet ?? '-'} ${this.directRouting} ${this.nexthops.use} ${this.segments.join(',')}`;
  }

  entriesFor(lease: Lease): readonly Entry[] | null {
    const key = lease.subnet.toString();
    if (this.ownSubnet && lease.subnet.equals(this.ownSubnet)) return null;
    const attrs = lease.attrs;
    if (attrs.BackendType !== 'vxlan') return this.skip(key, `backend type "${attrs.BackendType}" is not vxlan`);
    const mac = typeof attrs.BackendData?.VtepMAC === 'string' ? attrs.BackendData.VtepMAC.toLowerCase() : '';
    if (!isUnicastMac(mac)) return this.skip(key, 'lease has no valid VtepMAC');
    if (!lease.subnet.ip || lease.subnet.family !== 4) return this.skip(key, 'not an IPv4 subnet');
    this.warned.delete(key);
    const S = lease.subnet.toString();
    const S0 = lease.subnet.ip;
    const P = attrs.PublicIP;
    const id = this.nexthops.use ? nexthopId(this.network, lease.subnet) : null;
    if (this.directRouting && onSegment(this.segments, P)) {
      if (id !== null) {
        return [
          { kind: 'nexthop', id, gw: P, oif: this.underlayIndex, onlink: false },
          { kind: 'route', dst: S, gw: null, oif: 0, onlink: false, nhid: id },
        ];
      }
      return [{ kind: 'route', dst: S, gw: P, oif: this.underlayIndex, onlink: false }];
    }
    const dev = this.link.index;
    if (id !== null) {
      return [
        { kind: 'neigh', ifindex: dev, ip: S0, mac },
        { kind: 'fdb', ifindex: dev, mac, dst: P },
        { kind: 'nexthop', id, gw: S0, oif: dev, onlink: true },
        { kind: 'route', dst: S, gw: null, oif: 0, onlink: false, nhid: id },
      ];
    }
    return [
      { kind: 'neigh', ifindex: dev, ip: S0, mac },
      { kind: 'fdb', ifindex: dev, mac, dst: P },
      { kind: 'route', dst: S, gw: S0, oif: dev, onlink: true },
    ];
  }

  private skip(key: string, why: string): null {
    if (this.warned.get(key) !== why) {
      this.warned.set(key, why);
      this.log.warn(`skipping peer lease ${key}: ${why}`);
    }
    return null;
  }
}
