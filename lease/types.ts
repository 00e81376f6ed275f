import type { Subnet } from '../common/subnet.js';

/**
 * Backend-specific data of a lease, under flannel's JSON names. For the vxlan
 * backend `VNI` and `VtepMAC` are validated (a lower-case unicast MAC);
 * other backends' fields are kept as read.
 */
export interface BackendData {
  readonly VNI?: number;
  readonly VtepMAC?: string;
  readonly [field: string]: unknown;
}

/**
 * The value stored under a subnet key: flannel's lease JSON, with its exact
 * field names so that weft and flanneld nodes can share one etcd.
 */
export interface LeaseAttrs {
  /** Underlay (public) IPv4 address of the node: the VXLAN tunnel endpoint. */
  readonly PublicIP: string;
  readonly PublicIPv6: string | null;
  /** `vxlan`, `host-gw`, ...; `''` when the lease omits it (flannel's udp backend). */
  readonly BackendType: string;
  readonly BackendData?: BackendData;
  readonly BackendV6Data?: BackendData;
}

/** A validated subnet lease as read from (or written to) etcd. */
export interface Lease {
  /** The node's IPv4 subnet (the key's first part), e.g. 10.244.3.0/24. */
  readonly subnet: Subnet;
  /** The node's IPv6 subnet for dual-stack keys, else null. */
  readonly ipv6Subnet: Subnet | null;
  readonly attrs: LeaseAttrs;
  /** The full etcd key. */
  readonly key: string;
  /** etcd lease id as a decimal string; `'0'` means a reservation (a key with no TTL). */
  readonly etcdLeaseId: string;
  /** etcd mod_revision of the key when it was read. */
  readonly modRevision: string;
  /** etcd create_revision of the key: of two conflicting leases the older (lower) one wins. */
  readonly createRevision: string;
}

export function isReservation(lease: Pick<Lease, 'etcdLeaseId'>): boolean {
  return lease.etcdLeaseId === '0';
}

/**
 * A change in the set of peer leases, as the backend consumes it.
 * `removed` carries the last known attributes so teardown knows the MAC and
 * public IP; `changed` carries the previous lease too.
 */
export type PeerEvent =
  | { readonly type: 'added'; readonly lease: Lease }
  | { readonly type: 'changed'; readonly lease: Lease; readonly previous: Lease }
  | { readonly type: 'removed'; readonly lease: Lease };

/**
 * One delivery from the lease watcher: the events since the previous batch
 * and the complete set of peers after them. `resync` is true for the first
 * batch and whenever the watcher re-listed etcd (start, compaction, lost
 * watch), i.e. when a consumer should reconcile against `peers` as a whole.
 */
export interface PeerBatch {
  readonly events: readonly PeerEvent[];
  readonly peers: ReadonlyMap<string, Lease>;
  readonly resync: boolean;
}

/**
 * The `Backend` object of the network config, defaulted and validated.
 * Fields a backend does not use are ignored by it.
 */
export interface BackendConfig {
  /** Lower-cased backend type: `vxlan` (the default when `Backend` is absent), `host-gw`, ... */
  readonly type: string;
  /** VXLAN network identifier, default 1. */
  readonly vni: number;
  /** VXLAN UDP port; 0 means the kernel default 8472. */
  readonly port: number;
  /** The UNDERLAY MTU to assume (flannel's meaning); 0 means the underlay interface's MTU. */
  readonly mtu: number;
  readonly gbp: boolean;
  readonly learning: boolean;
  readonly directRouting: boolean;
  /** The object as read, keys as written, for backend options weft does not model. */
  readonly raw: Readonly<Record<string, unknown>>;
}

/** The cluster network config from `<prefix>/config`, defaulted and validated. */
export interface NetworkConfig {
  readonly enableIPv4: boolean;
  readonly enableIPv6: boolean;
  readonly network: Subnet | null;
  readonly subnetLen: number;
  readonly subnetMin: Subnet | null;
  readonly subnetMax: Subnet | null;
  readonly ipv6Network: Subnet | null;
  readonly ipv6SubnetLen: number;
  readonly ipv6SubnetMin: Subnet | null;
  readonly ipv6SubnetMax: Subnet | null;
  readonly enableNFTables: boolean;
  readonly backend: BackendConfig;
}
