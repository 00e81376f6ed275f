/**
 * Facts about the underlay interface that backends need: its ifindex (which
 * changes if the interface is recreated) and its connected IPv4 subnets, which
 * decide whether a peer is on the same L2 segment (DirectRouting, host-gw).
 */
import { WeftError } from '../common/errors.js';
import { Subnet } from '../common/subnet.js';
import { addrsOn } from '../kernel/addresses.js';
import type { Kernel, Link } from '../kernel/kernel.js';

export interface UnderlayState {
  readonly link: Link;
  /** Connected subnets of the interface (its addresses' prefixes, /32s excluded). */
  readonly segments: readonly Subnet[];
}

export async function readUnderlay(kernel: Kernel, name: string): Promise<UnderlayState> {
  const link = await kernel.linkByName(name);
  if (!link) throw new WeftError('WEFT_ERR_KERNEL', `underlay interface ${name} not found`);
  const addrs = await addrsOn(kernel, link.index);
  const segments = addrs.map((a) => Subnet.parse(a.cidr)).filter((s) => s.prefixLength < 32);
  return { link, segments };
}

/** True when `ip` lies in one of the connected subnets: reachable without a router. */
export function onSegment(segments: readonly Subnet[], ip: string): boolean {
  return segments.some((s) => s.contains(ip));
}
