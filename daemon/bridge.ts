import { ensureSoleNetworkAddress } from '../kernel/addresses.js';
import type { Kernel } from '../kernel/kernel.js';
import { WeftError } from '../common/errors.js';
import { runPeriodically } from '../common/periodic.js';
import type { Logger } from '../common/log.js';
import type { Subnet } from '../common/subnet.js';

export interface BridgeSpec {
  readonly name: string;
  /** The node's IPv4 subnet: the bridge gets its first address, `<subnet>.1/len`, Docker's gateway; null for an IPv6-only config. */
  readonly subnet: Subnet | null;
  /** The cluster Network: other addresses of the bridge inside it are stale (an old lease); null for an IPv6-only config. */
  readonly network: Subnet | null;
  /** The overlay MTU (FLANNEL_MTU). */
  readonly mtu: number;
  /**
   * The node's IPv6 subnet and the IPv6 Network, when the config enables
   * IPv6: the bridge also gets `<subnet6>::1/len`, the gateway of Docker's
   * `--ipv6 --fixed-cidr-v6` (docker-opts).
   */
  readonly ipv6?: { readonly subnet: Subnet; readonly network: Subnet } | null;
}

/**
 * The pre-made bridge for `dockerd --bridge=NAME` (Docker refuses to create
 * a non-default bridge itself): created with `<subnet>.1/len` (and
 * `<subnet6>::1/len` for IPv6) and the overlay MTU, and kept that way, also
 * across a lease change.
 */
export class BridgeKeeper {
  constructor(
    private spec: BridgeSpec,
    private readonly kernel: Kernel,
    private readonly log: Logger,
  ) {}

  update(spec: BridgeSpec): void {
    this.spec = spec;
  }

  /** Brings the bridge to the spec; returns what it changed (empty when all was in place). */
  async ensure(): Promise<string[]> {
    const { name, subnet, network, mtu, ipv6 } = this.spec;
    const changes: string[] = [];
    let link = await this.kernel.linkByName(name);
    if (link && link.kind !== 'bridge') throw new WeftError('WEFT_ERR_KERNEL', `--bridge ${name}: an interface of kind "${link.kind || 'unknown'}" has that name`);
    if (!link) {
      link = await this.kernel.bridgeAdd(name, mtu);
      changes.push('created');
    } else if (link.mtu !== mtu) {
      await this.kernel.linkSetMtu(link.index, mtu);
      changes.push(`mtu ${mtu}`);
    }
    for (const family of [subnet && network ? { subnet, network } : null, ipv6 ?? null]) {
      if (family) changes.push(...(await ensureSoleNetworkAddress(this.kernel, link.index, `${family.subnet.addressAt(1)}/${family.subnet.prefixLength}`, family.network)));
    }
    if (!link.up) {
      await this.kernel.linkSetUp(link.index);
      changes.push('up');
    }
    return changes;
  }

  run(intervalMs: number, signal: AbortSignal): Promise<void> {
    return runPeriodically(
      intervalMs,
      signal,
      async () => {
        const changes = await this.ensure();
        if (changes.length > 0) this.log.warn(`bridge ${this.spec.name} repaired: ${changes.join(', ')}`);
      },
      (err) => this.log.error(`bridge ${this.spec.name} check failed: ${err.message}`),
    );
  }
}
