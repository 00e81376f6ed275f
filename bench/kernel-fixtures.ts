/**
 * What the kernel benchmarks program: N simulated vxlan peers in 10.100.0.0/14
 * and a network config for them, the same in every kernel benchmark.
 */
import { Subnet } from '../common/subnet.js';
import type { Lease, NetworkConfig } from '../lease/types.js';

export function peer(i: number): Lease {
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  const subnet = Subnet.parse(`10.${100 + (i >> 8)}.${i & 255}.0/24`);
  return {
    subnet,
    ipv6Subnet: null,
    attrs: { PublicIP: `198.18.${1 + (i >> 8)}.${i & 255}`, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: `0a:01:00:${hex((i >> 16) & 255)}:${hex((i >> 8) & 255)}:${hex(i & 255)}` } },
    key: subnet.toString(),
    etcdLeaseId: '1',
    modRevision: '1',
    createRevision: '1',
  };
}

export const network: NetworkConfig = {
  enableIPv4: true, enableIPv6: false, network: Subnet.parse('10.0.0.0/8'), subnetLen: 24,
  subnetMin: null, subnetMax: null, ipv6Network: null, ipv6SubnetLen: 0, ipv6SubnetMin: null, ipv6SubnetMax: null,
  enableNFTables: false,
  backend: { type: 'vxlan', vni: 1, port: 0, mtu: 0, gbp: false, learning: false, directRouting: false, raw: {} },
};
