/**
 * The vxlan device (`flannel.<VNI>`): create, adopt or recreate it, and give
 * it this node's `<subnet>.0/32`. Adoption follows flannel's
 * `vxlanLinksIncompat`: an existing device is kept as-is (MAC included, so
 * peers' entries stay valid) unless type, VNI, port, local address, underlay
 * device or GBP differ; MTU and learning are not part of compatibility.
 */
import type { Logger } from '../../common/log.js';
import type { Subnet } from '../../common/subnet.js';
import { ensureSoleNetworkAddress } from '../../kernel/addresses.js';
import { isKernelErrno, type Kernel, type Link, type VxlanLinkSpec } from '../../kernel/kernel.js';

/** Why `link` cannot serve as the device described by `spec`, or null when it can. */
export function incompatibility(link: Link, spec: VxlanLinkSpec): string | null {
  if (link.kind !== 'vxlan' || !link.vxlan) return `is a ${link.kind || 'non-vxlan'} device`;
  const v = link.vxlan;
  if (v.vni !== spec.vni) return `VNI ${v.vni} != ${spec.vni}`;
  if (v.port > 0 && spec.port > 0 && v.port !== spec.port) return `port ${v.port} != ${spec.port}`;
  if (v.local && v.local !== spec.local) return `local ${v.local} != ${spec.local}`;
  if (v.underlayIndex > 0 && spec.underlayIndex > 0 && v.underlayIndex !== spec.underlayIndex) {
    return `underlay #${v.underlayIndex} != #${spec.underlayIndex}`;
  }
  if (v.gbp !== spec.gbp) return `gbp ${v.gbp} != ${spec.gbp}`;
  return null;
}

export interface EnsuredDevice {
  readonly link: Link;
  /** True when the device was created now: nothing programmed earlier survived. */
  readonly created: boolean;
}

/**
 * Returns the device, adopting a compatible one (its MTU is set to
 * `spec.mtu` if it differs) and recreating an incompatible one.
 */
export async function ensureVxlanDevice(kernel: Kernel, spec: VxlanLinkSpec, log: Logger): Promise<EnsuredDevice> {
  const existing = await kernel.linkByName(spec.name);
  if (existing) {
    const why = incompatibility(existing, spec);
    if (!why) {
      if (existing.mtu !== spec.mtu) {
        log.info(`setting ${spec.name} mtu ${existing.mtu} -> ${spec.mtu}`);
        await kernel.linkSetMtu(existing.index, spec.mtu);
        return { link: { ...existing, mtu: spec.mtu }, created: false };
      }
      return { link: existing, created: false };
    }
    log.warn(`${spec.name} already exists with incompatible configuration (${why}); recreating device`);
    await kernel.linkDel(existing.index);
  }
  try {
    return { link: await kernel.linkAdd(spec), created: true };
  } catch (err) {
    // Someone created it between our lookup and add: take another look once.
    if (!isKernelErrno(err, 'EEXIST')) throw err;
    const raced = await kernel.linkByName(spec.name);
    if (raced && !incompatibility(raced, spec)) return { link: raced, created: false };
    throw err;
  }
}

/**
 * `ip addr add <S.0>/32 dev flannel.N` (IPv6: `<S6::>/128 dev flannel-v6.N`)
 * after removing other addresses inside the cluster Network (a previous
 * lease), then `ip link set up`. A host address: no connected route, no
 * broadcast; it is the source of the node's own traffic to pods elsewhere.
 */
export async function configureDevice(kernel: Kernel, link: Link, ownSubnet: Subnet, network: Subnet, log: Logger): Promise<void> {
  const changes = await ensureSoleNetworkAddress(kernel, link.index, `${ownSubnet.ip}/${ownSubnet.bits}`, network);
  if (changes.length > 0) log.info(`${link.name}: ${changes.join(', ')}`);
  if (!link.up) await kernel.linkSetUp(link.index);
}
