/**
 * Simulated peers for the cluster benchmarks: flannel-shaped vxlan leases
 * written straight into etcd (weftd cannot tell them from real nodes).
 * Peer i (i >= 1) owns 10.<1 + (i >> 8)>.<i & 255>.0/24, so peers never
 * collide with the subnets weftd allocates itself (10.0.x.0/24 first), and
 * sits at PublicIP 198.19.<i >> 8>.<i & 255>, off the underlay segment.
 */
import { WeftError } from '../common/errors.js';

export const PREFIX = '/coreos.com/network';
/** A /8 holds 65 536 /24 subnets: room for 5000 peers plus churn. */
export const BENCH_NETWORK_CONFIG = '{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan"}}';
export const DIRECT_ROUTING_CONFIG = '{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan","DirectRouting":true}}';
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

/** Peers first..last inclusive. */
export function peerRange(first: number, last: number): PeerLease[] {
  const out: PeerLease[] = [];
  for (let i = first; i <= last; i++) out.push(peerLease(i));
  return out;
}

/** The etcd key of a subnet like 10.0.5.0/24. */
export function subnetKeyOf(subnet: string): string {
  return `${PREFIX}/subnets/${subnet.replace('/', '-')}`;
}
