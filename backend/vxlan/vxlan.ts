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
 *
 * IPv6 (EnableIPv6): a second device of its own, `flannel-v6.<VNI>`, over the
 * IPv6 underlay (local = the node's PublicIPv6, MTU = underlay MTU - 70,
 * accept_ra 0, its own kept MAC, advertised in BackendV6Data), with
 * `<own IPv6 subnet>::/128`, and per peer the same three entries in IPv6: an
 * NDP neighbour `S6:: lladdr M6`, the FDB entry `M6 dst P6` and the route `S6
 * via S6:: dev flannel-v6.N onlink` (or through a nexthop). flannel keeps
 * the families on separate devices, so a mixed cluster interoperates. The
 * MTU containers get is the smaller of the devices': an IPv6 packet from a
 * pod must fit the IPv6 device too.
 */
import { isIPv6 } from 'node:net';
import { WeftError } from '../../common/errors.js';
import type { Logger } from '../../common/log.js';
import type { Subnet } from '../../common/subnet.js';
import { vxlanPort } from '../../lease/config.js';
import { slotOf } from '../../lease/keyspace.js';
import type { Lease } from '../../lease/types.js';
import type { Backend, BackendBuild, BackendLeaseAttrs, BackendNetwork, BackendRegistration } from '../backend.js';
import { RTPROT_KERNEL, RTPROT_WEFT, type Family, type Kernel, type Link, type Route, type VxlanLinkSpec } from '../../kernel/kernel.js';
import { backendDataOf, familyName, publicIPOf, subnetOf, type Plane } from '../families.js';
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

  async build(reg: BackendRegistration, kernel: Kernel, planes: readonly Plane[]): Promise<BackendBuild> {
    const programmer = await VxlanProgrammer.create(kernel, reg, planes);
    const vni = reg.network.backend.vni;
    const leaseAttrs: { -readonly [K in keyof BackendLeaseAttrs]: BackendLeaseAttrs[K] } = { BackendType: 'vxlan' };
    for (const vtep of programmer.vteps) {
      if (vtep.family === 4) leaseAttrs.BackendData = { VNI: vni, VtepMAC: vtep.spec.mac };
      else leaseAttrs.BackendV6Data = { VNI: vni, VtepMAC: vtep.spec.mac };
    }
    return { programmer, device: programmer.device, devices: programmer.vteps.map((v) => v.spec.name), leaseAttrs, mtu: programmer.mtu };
  }

  register(reg: BackendRegistration): Promise<BackendNetwork> {
    return registerPeerNetwork(reg, (kernel, planes) => this.build(reg, kernel, planes));
  }
}

/** The device name of a family's VTEP: `flannel.<VNI>`, `flannel-v6.<VNI>` (flannel's names), or the configured IPv4 name. */
export function vtepName(family: Family, vni: number, configured?: string): string {
  if (family === 6) return `flannel-v6.${vni}`;
  return configured ?? `flannel.${vni}`;
}

/** One family's VTEP: its device, what it was created from, and this node's subnet on it. */
export interface Vtep {
  readonly family: Family;
  readonly network: Subnet;
  /** What the device is (re)created from; `mac` is the advertised MAC. */
  readonly spec: VxlanLinkSpec;
  link: Link;
  ownSubnet: Subnet | null;
}

/** Device upkeep and the lease -> entries mapping for the vxlan backend, over one device per family. */
export class VxlanProgrammer implements Programmer {
  private underlayIndex: number;
  private segments: readonly Subnet[] = [];
  /** Peer key -> reason it was skipped, so each reason is logged once. */
  private readonly warned = new Map<string, string>();

  private constructor(
    private readonly kernel: Kernel,
    readonly vteps: readonly Vtep[],
    private readonly underlayName: string,
    underlayIndex: number,
    private readonly directRouting: boolean,
    private readonly log: Logger,
    private readonly nexthops: NexthopSupport,
  ) {
    this.underlayIndex = underlayIndex;
  }

  static async create(kernel: Kernel, reg: BackendRegistration, planes: readonly Plane[]): Promise<VxlanProgrammer> {
    const cfg = reg.network.backend;
    const families = planes.map((p) => p.family);
    const underlay = await readSegments(kernel, reg.iface.name, families);
    const vteps: Vtep[] = [];
    for (const plane of planes) vteps.push(await ensureVtep(kernel, reg, plane, underlay.link));
    const nexthops = await nexthopSupport(kernel, reg.routeNexthops, reg.log);
    const programmer = new VxlanProgrammer(kernel, vteps, reg.iface.name, underlay.link.index, cfg.directRouting, reg.log, nexthops);
    programmer.segments = underlay.segments;
    return programmer;
  }

  /** The IPv4 device's name (`flannel.<VNI>` unless configured otherwise), else the IPv6 one's. */
  get device(): string {
    return (this.vteps[0] as Vtep).spec.name;
  }

  /** The IPv4 VTEP MAC advertised in the lease (BackendData), else the IPv6 one (BackendV6Data). */
  get mac(): string {
    return (this.vteps[0] as Vtep).spec.mac;
  }

  /** What containers should use: the smallest device MTU, so a packet of either family fits its device. */
  get mtu(): number {
    return Math.min(...this.vteps.map((v) => v.spec.mtu));
  }

  async configure(ownLease: Lease): Promise<void> {
    for (const vtep of this.vteps) {
      const own = subnetOf(ownLease, vtep.family);
      if (!own) throw new WeftError('WEFT_ERR_CONFIG_INVALID', `the own lease ${ownLease.key} has no ${familyName(vtep.family)} subnet for ${vtep.spec.name}`);
      vtep.ownSubnet = own;
      await configureDevice(this.kernel, vtep.link, own, vtep.network, this.log);
      vtep.link = { ...vtep.link, up: true };
    }
  }

  async refresh(): Promise<{ ownership: Ownership; rebuilt: boolean }> {
    const underlay = await readSegments(this.kernel, this.underlayName, this.vteps.map((v) => v.family));
    this.underlayIndex = underlay.link.index;
    this.segments = underlay.segments;
    let rebuilt = false;
    for (const vtep of this.vteps) {
      if (await this.refreshVtep(vtep, underlay.link.index)) rebuilt = true;
    }
    const vteps = this.vteps;
    return {
      rebuilt,
      ownership: {
        neighDevices: vteps.map((v) => ({ ifindex: v.link.index, family: v.family })),
        fdbDevices: vteps.map((v) => v.link.index),
        routeFamilies: vteps.map((v) => v.family),
        nexthops: this.nexthops.kernel,
        links: [
          ...vteps.map((v) => ({ index: v.link.index, name: v.spec.name, up: v.link.up, mtu: v.spec.mtu })),
          { index: underlay.link.index, name: underlay.link.name, up: underlay.link.up, mtu: null },
        ],
        ownsRoute: (r: Route) => {
          const slash = r.dst.indexOf('/');
          const dst = r.dst.slice(0, slash);
          const len = Number(r.dst.slice(slash + 1));
          for (let i = 0; i < vteps.length; i++) {
            const v = vteps[i] as Vtep;
            if (v.network.contains(dst) && len >= v.network.prefixLength) return r.proto === RTPROT_WEFT || (r.oif === v.link.index && r.proto !== RTPROT_KERNEL);
          }
          return false;
        },
      },
    };
  }

  /** Ensures one device is there, compatible, addressed and up; true when it was (re)created. */
  private async refreshVtep(vtep: Vtep, underlayIndex: number): Promise<boolean> {
    const name = vtep.spec.name;
    const current = await this.kernel.linkByName(name);
    if (!current || current.index !== vtep.link.index || current.kind !== 'vxlan') {
      this.log.warn(`${name} is gone or was replaced; rebuilding it and replaying all peers`);
    }
    const ensured = await ensureVxlanDevice(this.kernel, { ...vtep.spec, underlayIndex }, this.log);
    const rebuilt = ensured.created || ensured.link.index !== vtep.link.index;
    vtep.link = ensured.link;
    if (ensured.created && vtep.family === 6) await acceptRaOff(this.kernel, name, this.log);
    if ((rebuilt || !vtep.link.up) && vtep.ownSubnet) {
      await configureDevice(this.kernel, vtep.link, vtep.ownSubnet, vtep.network, this.log);
      vtep.link = { ...vtep.link, up: true };
    }
    if (ensured.link.mac !== vtep.spec.mac) {
      // Only when someone changed the MAC under us; peers still use the advertised one.
      throw new WeftError('WEFT_ERR_KERNEL', `${name}'s mac address wanted: ${vtep.spec.mac}, but got: ${ensured.link.mac}`);
    }
    return rebuilt;
  }

  entriesBasis(): string {
    const devices = this.vteps.map((v) => `${v.link.index}:${v.ownSubnet ?? '-'}`).join(' ');
    return `${devices} ${this.underlayIndex} ${this.directRouting} ${this.nexthops.use} ${this.segments.join(',')}`;
  }

  entriesFor(lease: Lease): readonly Entry[] | null {
    const key = slotOf(lease);
    const attrs = lease.attrs;
    if (attrs.BackendType !== 'vxlan') return this.skip(key, `backend type "${attrs.BackendType}" is not vxlan`);
    let entries: Entry[] | null = null;
    const skipped: string[] = [];
    for (const vtep of this.vteps) {
      const subnet = subnetOf(lease, vtep.family);
      if (vtep.ownSubnet && subnet?.equals(vtep.ownSubnet)) return null;
      const got = this.familyEntries(lease, vtep, subnet);
      if (typeof got === 'string') skipped.push(got);
      else (entries ??= []).push(...got);
    }
    // A family the lease cannot be programmed in is skipped alone: its other family still works.
    if (skipped.length > 0) this.skip(key, skipped.join('; '));
    else this.warned.delete(key);
    return entries;
  }

  /** One family's entries for a peer, in programming order, or why there are none. */
  private familyEntries(lease: Lease, vtep: Vtep, subnet: Subnet | null): Entry[] | string {
    const name = familyName(vtep.family);
    if (!subnet) return `no ${name} subnet`;
    const data = backendDataOf(lease.attrs, vtep.family);
    const mac = typeof data?.VtepMAC === 'string' ? data.VtepMAC.toLowerCase() : '';
    const field = vtep.family === 6 ? 'BackendV6Data' : 'BackendData';
    if (!isUnicastMac(mac)) return `lease has no valid ${field}.VtepMAC`;
    const P = publicIPOf(lease.attrs, vtep.family);
    if (!P) return `lease has no ${vtep.family === 6 ? 'PublicIPv6' : 'PublicIP'}`;
    const S = subnet.toString();
    const S0 = subnet.ip;
    const id = this.nexthops.use ? nexthopId(vtep.network, subnet) : null;
    if (this.directRouting && onSegment(this.segments, P)) {
      if (id !== null) {
        return [
          { kind: 'nexthop', id, gw: P, oif: this.underlayIndex, onlink: false },
          { kind: 'route', dst: S, gw: null, oif: 0, onlink: false, nhid: id },
        ];
      }
      return [{ kind: 'route', dst: S, gw: P, oif: this.underlayIndex, onlink: false }];
    }
    const dev = vtep.link.index;
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

/**
 * Creates or adopts one family's device: `flannel.<VNI>` over the node's
 * PublicIP, or `flannel-v6.<VNI>` over its PublicIPv6, with the MAC kept in
 * the state directory (or derived from the address and VNI).
 */
async function ensureVtep(kernel: Kernel, reg: BackendRegistration, plane: Plane, underlay: Link): Promise<Vtep> {
  const cfg = reg.network.backend;
  const family = plane.family;
  const local = family === 6 ? reg.publicIPv6 : reg.publicIP;
  if (!local) throw new WeftError('WEFT_ERR_CONFIG_INVALID', `the vxlan backend needs this node's public ${familyName(family)} address for ${family === 6 ? 'IPv6Network' : 'Network'}`);
  const name = vtepName(family, cfg.vni, reg.deviceName);
  const mtu = vxlanMtu(cfg.mtu > 0 ? cfg.mtu : reg.iface.mtu || underlay.mtu, local);
  const stored = reg.stateDir ? await loadVtepMac(reg.stateDir, name) : null;
  const spec: VxlanLinkSpec = {
    name,
    mac: stored ?? deriveVtepMac(family === 6 ? `${local}/${cfg.vni}/v6` : `${local}/${cfg.vni}`),
    mtu,
    vni: cfg.vni,
    port: vxlanPort(cfg),
    local,
    underlayIndex: underlay.index,
    learning: cfg.learning,
    gbp: cfg.gbp,
  };
  let { link, created } = await ensureVxlanDevice(kernel, spec, reg.log);
  const holder = await reg.macTakenBy?.(link.mac, family);
  if (holder) {
    // A cloned VM or state directory: the older lease keeps the MAC, this node takes another.
    const fresh = deriveVtepMac(`${local}/${cfg.vni}/${randomUUID()}`);
    reg.log.warn(`VTEP MAC ${link.mac} is already advertised by the older lease ${holder}; taking the new MAC ${fresh} for ${name}`, { holder });
    await kernel.linkDel(link.index);
    ({ link, created } = await ensureVxlanDevice(kernel, { ...spec, mac: fresh }, reg.log));
  }
  // A router advertisement on the overlay must not give the node addresses or routes there (flannel does the same).
  if (created && family === 6) await acceptRaOff(kernel, name, reg.log);
  // An adopted device keeps its MAC: that is what peers already have.
  if (reg.stateDir && link.mac !== stored && isUnicastMac(link.mac)) await saveVtepMac(reg.stateDir, name, link.mac);
  return { family, network: plane.network, spec: { ...spec, mac: link.mac }, link, ownSubnet: null };
}

/** `sysctl -w net.ipv6.conf.<dev>.accept_ra=0`; a failure is logged, as flannel ignores it. */
async function acceptRaOff(kernel: Kernel, name: string, log: Logger): Promise<void> {
  try {
    await kernel.sysctlSet(`net/ipv6/conf/${name}/accept_ra`, '0');
  } catch (err) {
    log.warn(`could not turn off accept_ra on ${name}: ${err instanceof Error ? err.message : String(err)}`);
  }
}
