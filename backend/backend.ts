/**
 * The backend contract, after flannel's pkg/backend/common.go: a Backend
 * registers a network for this node (creating its device) and hands back a
 * BackendNetwork that advertises lease attributes, reports the MTU for
 * FLANNEL_MTU, and keeps the kernel in line with the peer leases it is fed.
 *
 * Backends are values, put into a map by the caller (daemon/); importing a
 * backend module registers nothing.
 */
import type { LocalCollision } from './reconciler.js';
import { WeftError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { RouteNexthopsMode } from '../common/defaults.js';
import type { Lease, LeaseAttrs, NetworkConfig, PeerBatch } from '../lease/types.js';
import type { Family, Kernel } from '../kernel/kernel.js';
import type { Plane } from './families.js';
import type { Underlay } from '../kernel/underlay.js';
import type { Programmer } from './reconciler.js';
import type { NexthopSupport } from './nexthops.js';

export interface BackendRegistration {
  /** This node's public (underlay) IPv4 address: the VTEP / next hop peers use (flannel's unset `0.0.0.0` in an IPv6-only network). */
  readonly publicIP: string;
  /** This node's public IPv6 address, for the IPv6 device and routes; null or absent when the network has no IPv6. */
  readonly publicIPv6?: string | null;
  /** The underlay interface weftd chose, and its MTU as read then. */
  readonly iface: Pick<Underlay, 'name' | 'mtu'>;
  readonly network: NetworkConfig;
  /** Where a backend keeps state across restarts (the VTEP MAC); optional. */
  readonly stateDir?: string;
  readonly log: Logger;
  /**
   * The kernel port; unit tests pass a FakeKernel. When absent the backend
   * opens a NetlinkKernel on the current network namespace and closes it in close().
   */
  readonly kernel?: Kernel;
  /** Period of the full repair pass (a safety net: drift is repaired as the kernel reports it), default 60 s. */
  readonly resyncIntervalMs?: number;
  /** Called after every reconcile pass, for metrics. */
  readonly onPass?: (pass: ReconcilePass) => void;
  /**
   * Peer routes through nexthop objects (backend/nexthops.ts): `auto` where
   * the kernel has them, `on` or `off` to force, or a form already decided
   * (no probe). Absent: `off`.
   */
  readonly routeNexthops?: RouteNexthopsMode | NexthopSupport;
  /** vxlan: device name, default `flannel.<VNI>`. */
  readonly deviceName?: string;
  /**
   * vxlan: who else advertises `mac`: the key of an older lease of another
   * PublicIP with that VtepMAC (family 6: PublicIPv6 and BackendV6Data), or
   * null. The device then takes a new MAC instead of joining as the loser of
   * that conflict.
   */
  readonly macTakenBy?: (mac: string, family: Family) => Promise<string | null>;
}

/** One reconcile pass as reported to the daemon. */
export interface ReconcilePass {
  /** A full pass (dump + diff) rather than a delta. */
  readonly full: boolean;
  readonly seconds: number;
  /** Kernel ops issued and how many of them failed (they stay dirty for the next pass). */
  readonly ops: number;
  readonly failed: number;
}

/** The backend part of this node's lease. */
export type BackendLeaseAttrs = Pick<LeaseAttrs, 'BackendType' | 'BackendData' | 'BackendV6Data'>;

export interface BackendNetwork {
  /** What goes into this node's lease next to PublicIP. */
  readonly leaseAttrs: BackendLeaseAttrs;
  /** The MTU containers should use (FLANNEL_MTU). */
  readonly mtu: number;
  /** The overlay device weft owns (`flannel.1`; an IPv6-only network's `flannel-v6.1`), or null for a backend without one (host-gw). */
  readonly device: string | null;
  /** Every overlay device weft owns, one per family (`flannel.1`, `flannel-v6.1`); none for host-gw. */
  readonly devices: readonly string[];
  /** Configures the device for the acquired lease (address, up); called before run(). */
  configure(ownLease: Lease): Promise<void>;
  /**
   * Consumes peer batches until they end or `signal` aborts, programming the
   * kernel; resolves when done. The first batch is expected to be a resync.
   */
  run(batches: AsyncIterable<PeerBatch>, signal: AbortSignal): Promise<void>;
  /** Resolves once the first full reconcile has been applied (readiness). */
  readonly ready: Promise<void>;
  /** Counters for metrics and logs. */
  stats(): BackendStats;
  /** Peer leases skipped on this node because their subnet collides with its own addresses or routes. */
  localCollisions(): LocalCollision[];
  /** Resolves when every batch received so far is applied (or its failures are waiting for a retry that then succeeded). */
  settled(): Promise<void>;
  /** Stops programming; leaves kernel state in place for the next start. */
  close(): Promise<void>;
}

export interface BackendStats {
  /** Peers in the last batch. */
  readonly peers: number;
  /** Kernel entries weft believes are programmed (neighbours + FDB + routes). */
  readonly entries: number;
  readonly fullPasses: number;
  readonly deltaPasses: number;
  /** Ops that failed, since start. */
  readonly failedOps: number;
  /** Kernel notifications that contradicted what weft wants (drift), since start. */
  readonly driftEvents: number;
  /** Full passes started to repair reported drift (a burst of drift is one). */
  readonly driftRepairs: number;
}

/** A backend's work for this node: its lease -> entries mapping and device upkeep, and what it advertises. */
export interface BackendBuild {
  readonly programmer: Programmer & { configure(ownLease: Lease): Promise<void> };
  readonly leaseAttrs: BackendLeaseAttrs;
  /** The MTU containers should use (FLANNEL_MTU). */
  readonly mtu: number;
  /** The overlay device weft owns, or null (host-gw). */
  readonly device: string | null;
  /** Every overlay device weft owns, one per family. */
  readonly devices: readonly string[];
}

export interface Backend {
  /** Lower-case type as in the network config, `vxlan`, `host-gw`. */
  readonly type: string;
  /**
   * Builds this node's programmer on `kernel` for the overlay's families (the
   * vxlan devices are ensured there): the part of register() that `weftctl
   * diff` also runs, against a dry-run kernel, so both compute the desired
   * state the same way.
   */
  build(registration: BackendRegistration, kernel: Kernel, planes: readonly Plane[]): Promise<BackendBuild>;
  /** Builds on the registration's kernel and starts the peer network around it. */
  register(registration: BackendRegistration): Promise<BackendNetwork>;
}

/** Looks a backend up by the config's (case-insensitive) type. */
export function backendFor(backends: ReadonlyMap<string, Backend>, type: string): Backend {
  const backend = backends.get(type.toLowerCase());
  if (!backend) {
    const known = [...backends.keys()].join(', ');
    throw new WeftError('WEFT_ERR_CONFIG_INVALID', `unknown backend type "${type}" (known: ${known})`);
  }
  return backend;
}
