/**
 * Simulated peers for the cluster benchmarks: flannel-shaped vxlan leases
 * written straight into etcd (weftd cannot tell them from real nodes).
 * Peer i (i >= 1) owns 10.<1 + (i >> 8)>.<i & 255>.0/24, so peers never
 * collide with the subnets weftd allocates itself (10.0.x.0/24 first), and
 * sits at PublicIP 198.19.<i >> 8>.<i & 255>, off the underlay segment.
 * A dual-stack peer i adds fd00:10:244:<hex(0x100 + i)>::/64 (the same slot
 * of its /48 as its /24 of the /8), PublicIPv6 2001:2:0:1::<hex(i)>, off the
 * IPv6 underlay segment 2001:2::/64, and a VTEP MAC of its own for
 * flannel-v6.<VNI>.
 */
import { WeftError } from '../common/errors.js';

export const PREFIX = '/coreos.com/network';
/** A /8 holds 65 536 /24 subnets: room for 5000 peers plus churn. */
export const BENCH_NETWORK_CONFIG = '{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan"}}';
export const DIRECT_ROUTING_CONFIG = '{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan","DirectRouting":true}}';
/** The dual-stack benchmark's network: the same IPv4 Network, and a /48 of /64s (65 536 of them) for IPv6. */
export const DUAL_STACK_NETWORK_CONFIG =
  '{"Network":"10.0.0.0/8","SubnetLen":24,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/48","IPv6SubnetLen":64,"Backend":{"Type":"vxlan"}}';
export const MAX_PEER_INDEX = 0xefff;

export interface PeerLease {
  readonly index: number;
  /** e.g. 10.1.5.0/24 */
  readonly subnet: string;
  /** The etcd key, e.g. /coreos.com/network/subnets/10.1.5.0-24 */
  readonly key: string;
  readonly value: string;
  readonly mac: string;
  readonly publicIP: string;
  /** A dual-stack peer's IPv6 side (its entries go to flannel-v6.1). */
  readonly v6?: {
    /** e.g. fd00:10:244:105::/64 */
    readonly subnet: string;
    readonly mac: string;
    readonly publicIP: string;
  };
}

const hex = (n: number): string => n.toString(16).padStart(2, '0');

export function peerLease(index: number): PeerLease {
  if (!Number.isInteger(index) || index < 1 || index > MAX_PEER_INDEX) throw new WeftError('WEFT_ERR_HARNESS', `peer index ${index} out of range`);
  const net = `10.${1 + (index >> 8)}.${index & 255}.0`;
  const mac = `0e:2a:00:${hex((index >> 16) & 255)}:${hex((index >> 8) & 255)}:${hex(index & 255)}`;
  const publicIP = `198.19.${index >> 8}.${index & 255}`;
  return {
    index,
    subnet: `${net}/24`,
    key: `${PREFIX}/subnets/${net}-24`,
    // flannel's exact serialisation (field order and all).
    value: JSON.stringify({ PublicIP: publicIP, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } }),
    mac,
    publicIP,
  };
}

/** Peer `index` of a dual-stack network: the IPv4 lease above plus an IPv6 subnet, PublicIPv6 and BackendV6Data. */
export function dualPeerLease(index: number): PeerLease {
  const v4 = peerLease(index);
  const net6 = `fd00:10:244:${(0x100 + index).toString(16)}::`;
  const mac6 = `0e:2b:00:${hex((index >> 16) & 255)}:${hex((index >> 8) & 255)}:${hex(index & 255)}`;
  const publicIPv6 = `2001:2:0:1::${index.toString(16)}`;
  return {
    ...v4,
    key: subnetKeyOf(v4.subnet, `${net6}/64`),
    value: JSON.stringify({
      PublicIP: v4.publicIP,
      PublicIPv6: publicIPv6,
      BackendType: 'vxlan',
      BackendData: { VNI: 1, VtepMAC: v4.mac },
      BackendV6Data: { VNI: 1, VtepMAC: mac6 },
    }),
    v6: { subnet: `${net6}/64`, mac: mac6, publicIP: publicIPv6 },
  };
}

/** Peers first..last inclusive (dual-stack ones with `dual`). */
export function peerRange(first: number, last: number, dual = false): PeerLease[] {
  const out: PeerLease[] = [];
  for (let i = first; i <= last; i++) out.push(dual ? dualPeerLease(i) : peerLease(i));
  return out;
}

/** The etcd key of a subnet like 10.0.5.0/24, with its IPv6 subnet (fd00:10:244:5::/64) in a dual-stack network. */
export function subnetKeyOf(subnet: string, ipv6Subnet?: string): string {
  return `${PREFIX}/subnets/${subnet.replace('/', '-')}${ipv6Subnet ? `&${ipv6Subnet.replace('/', '-')}` : ''}`;
}
