/**
 * The part every peer-programming backend shares: feed lease batches into a
 * Reconciler and let a ReconcileLoop apply them. A backend supplies the
 * Programmer (lease -> kernel entries, device upkeep) and its lease attrs.
 */
import { ABORTED, AbortGate } from '../common/abort.js';
import { WeftError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { Subnet } from '../common/subnet.js';
import type { Lease, PeerBatch } from '../lease/types.js';
import type { BackendBuild, BackendLeaseAttrs, BackendNetwork, BackendRegistration, BackendStats, ReconcilePass } from './backend.js';
import { NetlinkKernel } from '../kernel/kernel-netlink.js';
import type { Kernel } from '../kernel/kernel.js';
import { ReconcileLoop } from './reconcile-loop.js';
import { NodeNetworks } from './node-networks.js';
import { Reconciler, type LocalCollision } from './reconciler.js';
import { planesOf, type Plane } from './families.js';
import { slotOf } from '../lease/keyspace.js';

export interface PeerNetworkOptions extends BackendBuild {
  readonly kernel: Kernel;
  /** The overlay's Networks (IPv4, IPv6): a peer subnet that collides with the node's own networks inside them is skipped. */
  readonly networks?: readonly Subnet[];
  readonly log: Logger;
  readonly resyncIntervalMs?: number;
  readonly onPass?: (pass: ReconcilePass) => void;
  /** Runs after the loop stopped, e.g. to close a kernel port the backend opened. */
  readonly onClose?: () => Promise<void>;
}

export class PeerNetwork implements BackendNetwork {
  readonly leaseAttrs: BackendLeaseAttrs;
  readonly mtu: number;
  readonly device: string | null;
  readonly devices: readonly string[];
  private readonly programmer: PeerNetworkOptions['programmer'];
  private readonly reconciler: Reconciler;
  private readonly loop: ReconcileLoop;
  private readonly onClose: (() => Promise<void>) | undefined;
  private readonly log: Logger;

  constructor(options: PeerNetworkOptions) {
    this.log = options.log;
    this.leaseAttrs = options.leaseAttrs;
    this.mtu = options.mtu;
    this.device = options.device;
    this.devices = options.devices;
    this.programmer = options.programmer;
    this.onClose = options.onClose;
    this.reconciler = new Reconciler({
      kernel: options.kernel,
      programmer: options.programmer,
      log: options.log,
      ...(options.networks ? { nodeNetworks: new NodeNetworks(options.networks) } : {}),
    });
    this.loop = new ReconcileLoop({
      reconciler: this.reconciler,
      log: options.log,
      kernel: options.kernel,
      ...(options.resyncIntervalMs !== undefined ? { resyncIntervalMs: options.resyncIntervalMs } : {}),
      ...(options.onPass ? { onPass: options.onPass } : {}),
    });
  }

  get ready(): Promise<void> {
    return this.loop.ready;
  }

  stats(): BackendStats {
    return { ...this.reconciler.stats(), ...this.loop.stats() };
  }

  localCollisions(): LocalCollision[] {
    return this.reconciler.localCollisions();
  }

  configure(ownLease: Lease): Promise<void> {
    return this.programmer.configure(ownLease);
  }

  async run(batches: AsyncIterable<PeerBatch>, signal: AbortSignal): Promise<void> {
    this.loop.start();
    const iterator = batches[Symbol.asyncIterator]();
    const gate = new AbortGate(signal);
    try {
      for (;;) {
        const next = await gate.wait(iterator.next());
        if (next === ABORTED || next.done) break;
        // Pull the next batch only after this one went through a pass: the
        // watcher coalesces meanwhile, and the caller can time batch -> kernel.
        await this.take(next.value);
      }
    } finally {
      gate.close();
      // Not awaited: an async generator parked in its own await only settles
      // return() after that await, which may be never once we stop pulling.
      iterator.return?.()?.catch(() => undefined);
    }
  }

  /**
   * Hands one batch to the reconciler (a resync replaces the peer set, events
   * mark their peers dirty) and resolves after the pass that includes it.
   */
  take(batch: PeerBatch): Promise<void> {
    this.log.debug('peer batch', { resync: batch.resync, events: batch.events.length, peers: batch.peers.size });
    if (batch.resync) {
      this.reconciler.setPeers(batch.peers);
    } else {
      this.reconciler.update(
        batch.peers,
        batch.events.map((e) => ({ key: slotOf(e.lease), ...(e.type === 'removed' ? { removed: e.lease } : {}) })),
      );
    }
    return this.loop.flush();
  }

  settled(): Promise<void> {
    return this.loop.settled();
  }

  async close(): Promise<void> {
    await this.loop.stop();
    await this.onClose?.();
  }
}

/**
 * What every peer-programming backend's register() does around its own
 * device work: use the caller's kernel port or open (and later close) one,
 * build the programmer, and wrap it in a PeerNetwork with the caller's
 * resync period and pass hook.
 */
export async function registerPeerNetwork(
  reg: BackendRegistration,
  build: (kernel: Kernel, planes: readonly Plane[]) => Promise<BackendBuild>,
): Promise<PeerNetwork> {
  const planes = planesOf(reg.network);
  if (planes.length === 0) {
    throw new WeftError('WEFT_ERR_CONFIG_INVALID', `the ${reg.network.backend.type} backend needs a Network or an IPv6Network`);
  }
  const kernel = reg.kernel ?? new NetlinkKernel();
  const ownsKernel = !reg.kernel;
  try {
    const built = await build(kernel, planes);
    return new PeerNetwork({
      kernel,
      networks: planes.map((p) => p.network),
      ...built,
      log: reg.log,
      ...(reg.resyncIntervalMs !== undefined ? { resyncIntervalMs: reg.resyncIntervalMs } : {}),
      ...(reg.onPass ? { onPass: reg.onPass } : {}),
      ...(ownsKernel ? { onClose: () => kernel.close() } : {}),
    });
  } catch (err) {
    if (ownsKernel) await kernel.close();
    throw err;
  }
}
