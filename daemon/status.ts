/**
 * The status contract: the `/status` document a running weftd serves and the
 * peer-health records inside it. weftctl reads a node through these types and
 * nothing else of daemon/; a change here is a change of weft's interface.
 */

import type { RefusalReason as LeaseRefusalReason } from '../lease/admission.js';

export const STATUS_PATH = '/status';

/** The `/status` document: what `weftctl status` and `weftctl doctor` read from a running weftd. */
export interface NodeStatus {
  readonly ready: boolean;
  readonly notReadyReason: string;
  /** `subnet` is `0.0.0.0/0` in an IPv6-only network (flannel's empty IPv4 part); `ipv6Subnet` / `publicIPv6` are null without IPv6. */
  readonly lease: {
    readonly subnet: string;
    readonly ipv6Subnet: string | null;
    readonly publicIP: string;
    readonly publicIPv6: string | null;
    readonly etcdLeaseId: string;
    readonly ttlRemainingSeconds: number | null;
  } | null;
  readonly leaseState: string;
  readonly network: string | null;
  /** The IPv6Network, null without IPv6. */
  readonly ipv6Network: string | null;
  /** `devices`: every overlay device, one per family (`flannel.1`, `flannel-v6.1`). */
  readonly backend: { readonly type: string; readonly device: string | null; readonly devices: readonly string[]; readonly mtu: number; readonly vxlanPort: number | null } | null;
  readonly underlay: { readonly name: string; readonly mtu: number; readonly publicIP: string; readonly publicIPv6: string | null } | null;
  readonly peers: number;
  readonly entriesProgrammed: number;
  readonly lastReconcile: { readonly at: string; readonly full: boolean; readonly seconds: number; readonly failed: number } | null;
  readonly etcd: string;
  /** While etcd is out of reach: since when (ISO time) and for how long; null while connected. */
  readonly etcdUnreachable: { readonly since: string; readonly seconds: number } | null;
  /** The traffic rules keeper: `mode` iptables or nftables (EnableNFTables); `backing` as iptables-save names it (null before any table exists); the current wait between checks. */
  readonly iptables: { readonly mode: 'iptables' | 'nftables'; readonly inPlace: boolean; readonly backing: 'nf_tables' | 'legacy' | null; readonly checkPeriodSeconds: number; readonly repairs: number } | null;
  readonly probes: {
    /** The echo peers are probed with (null until probing starts); `fallbackReason` says why not ICMP. */
    readonly method: ProbeMethod | null;
    readonly fallbackReason: string | null;
    readonly round: ProbeRound | null;
    readonly peers: readonly PeerHealth[];
  } | null;
  /** Valid leases this node does not program, and why. */
  readonly refused: readonly RefusedLease[];
  /** An older lease that advertises this node's PublicIP or VtepMAC: other nodes program it instead of this one. */
  readonly ownLeaseConflict: RefusedLease | null;
}

/**
 * Why a valid lease is not programmed: its PublicIP cannot be a tunnel
 * endpoint, its subnet holds another node's PublicIP, an older lease advertises its VtepMAC or PublicIP (refused on
 * every node alike), or its subnet collides with this node's own addresses or
 * routes (this node only).
 */
export type RefusalReason = LeaseRefusalReason | 'collides-with-node';

export const REFUSAL_REASONS: readonly RefusalReason[] = ['public-ip', 'covers-public-ip', 'duplicate-mac', 'duplicate-public-ip', 'collides-with-node'];

export interface RefusedLease {
  /** The lease's etcd key. */
  readonly key: string;
  readonly subnet: string;
  readonly reason: RefusalReason;
  readonly detail: string;
  /** etcd key of the older lease that won (duplicates only). */
  readonly winner: string | null;
}

/**
 * `icmp`: ICMP echo through a raw socket, which every node answers, flanneld's
 * included. `udp`: weft's own UDP echo, answered by weftd only; the fallback
 * where raw sockets are not allowed (no CAP_NET_RAW).
 */
export type ProbeMethod = 'icmp' | 'udp';

/** One path's outcome in the last probe of a peer. */
export interface PathResult {
  readonly ok: boolean;
  /** Round-trip time in ms when answered. */
  readonly rttMs: number | null;
}

/** What a peer's probes say, in operator terms. */
export type PeerVerdict = 'ok' | 'overlay-blocked' | 'underlay-filtered' | 'unreachable';

/**
 * One family's probes of one peer: a dual-stack peer has two records, one
 * per family, each with that family's subnet and public IP.
 */
export interface PeerHealth {
  /** 4: ICMP / UDP over IPv4; 6: ICMPv6 / UDP over IPv6. */
  readonly family: 4 | 6;
  /** The peer's subnet of this family, `10.244.3.0/24` or `fd00:10:244:3::/64`. */
  readonly subnet: string;
  /** The peer's public IP of this family (its PublicIP, or PublicIPv6 for family 6). */
  readonly publicIP: string;
  readonly underlay: PathResult;
  readonly overlay: PathResult;
  /** The overlay MTU the peer reported, null when it did not answer. */
  readonly mtu: number | null;
  readonly verdict: PeerVerdict;
  readonly diagnosis: string;
  /** ISO time of the probe. */
  readonly checkedAt: string;
}

/** Summary of the last round, for /status and metrics. `probed` and `peers` count peers (leases), whatever their families. */
export interface ProbeRound {
  readonly at: string;
  readonly probed: number;
  readonly peers: number;
  readonly sampled: boolean;
}
