/**
 * The address families an overlay carries, and how a lease reads in each.
 *
 * A dual-stack lease is one key with two subnets, and one value with a
 * public address and backend data per family (`PublicIP` / `BackendData` for
 * IPv4, `PublicIPv6` / `BackendV6Data` for IPv6). The backends program each
 * family the network config enables from that family's part of the lease, the
 * same way: a plane is one family's Network, and everything a backend needs to
 * tell the families apart is here.
 */
import type { Subnet } from '../common/subnet.js';
import type { Family } from '../kernel/kernel.js';
import { hasIPv4 } from '../lease/keyspace.js';
import { UNSET_PUBLIC_IP } from '../lease/lease-value.js';
import type { BackendData, Lease, LeaseAttrs, NetworkConfig } from '../lease/types.js';

/** One family of the overlay: its Network (`Network` or `IPv6Network`). */
export interface Plane {
  readonly family: Family;
  readonly network: Subnet;
}

/** The planes the config enables, IPv4 first. */
export function planesOf(config: Pick<NetworkConfig, 'enableIPv4' | 'network' | 'enableIPv6' | 'ipv6Network'>): Plane[] {
  const planes: Plane[] = [];
  if (config.enableIPv4 && config.network) planes.push({ family: 4, network: config.network });
  if (config.enableIPv6 && config.ipv6Network) planes.push({ family: 6, network: config.ipv6Network });
  return planes;
}

/** The lease's subnet of `family`, or null when the lease has none. */
export function subnetOf(lease: Pick<Lease, 'subnet' | 'ipv6Subnet'>, family: Family): Subnet | null {
  if (family === 6) return lease.ipv6Subnet;
  return hasIPv4(lease.subnet) ? lease.subnet : null;
}

/** The node's public (underlay) address of `family` as the lease advertises it, or null (flannel's unset `0.0.0.0`, a null PublicIPv6). */
export function publicIPOf(attrs: Pick<LeaseAttrs, 'PublicIP' | 'PublicIPv6'>, family: Family): string | null {
  if (family === 6) return attrs.PublicIPv6 || null;
  return attrs.PublicIP && attrs.PublicIP !== UNSET_PUBLIC_IP ? attrs.PublicIP : null;
}

/** The backend data of `family`: BackendData for IPv4, BackendV6Data for IPv6. */
export function backendDataOf(attrs: Pick<LeaseAttrs, 'BackendData' | 'BackendV6Data'>, family: Family): BackendData | undefined {
  return family === 6 ? attrs.BackendV6Data : attrs.BackendData;
}

/** `IPv4` / `IPv6`, for messages. */
export function familyName(family: Family): string {
  return family === 6 ? 'IPv6' : 'IPv4';
}
