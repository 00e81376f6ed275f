/**
 * Fixtures of the dual-stack and IPv6-only lease tests: the three kinds of
 * network config, and lease values of node `n` as flannel writes them
 * (underlay 198.18.0.n and 2001:2::n, the benchmarking ranges; overlay
 * 10.244.0.0/16 and fd00:10:244::/48).
 */
import { parseNetworkConfig } from '../../lease/config.js';
import type { RawKeyValue } from '../../lease/lease-value.js';

export const P = '/coreos.com/network';
export const dual = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/48"}');
export const v6only = parseNetworkConfig('{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/48"}');
export const v4only = parseNetworkConfig('{"Network":"10.244.0.0/16"}');
export const mac = (n: number): string => `0e:2a:00:00:00:${n.toString(16).padStart(2, '0')}`;
export const mac6 = (n: number): string => `0e:2b:00:00:00:${n.toString(16).padStart(2, '0')}`;

/** A dual-stack vxlan value of node `n`; `extra` overrides fields. */
export const dualValue = (n: number, extra: Partial<Record<string, unknown>> = {}): string =>
  JSON.stringify({ PublicIP: `198.18.0.${n}`, PublicIPv6: `2001:2::${n}`, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac(n) }, BackendV6Data: { VNI: 1, VtepMAC: mac6(n) }, ...extra });

/** An IPv6-only vxlan value of node `n`, with flannel's unset PublicIP and BackendV6Data alone. */
export const v6Value = (n: number, extra: Partial<Record<string, unknown>> = {}): string =>
  JSON.stringify({ PublicIP: '0.0.0.0', PublicIPv6: `2001:2::${n}`, BackendType: 'vxlan', BackendV6Data: { VNI: 1, VtepMAC: mac6(n) }, ...extra });

/** A key/value under P's subnets, created (and last modified) at revision `created`, on etcd lease `lease`. */
export const kv = (name: string, value: string, created = '5', lease = '9'): RawKeyValue => ({ key: `${P}/subnets/${name}`, value, lease, modRevision: created, createRevision: created });
