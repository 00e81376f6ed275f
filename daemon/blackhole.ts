import { isKernelErrno, type Kernel } from '../kernel/kernel.js';
import { runPeriodically } from '../common/periodic.js';
import type { Logger } from '../common/log.js';
import type { Subnet } from '../common/subnet.js';

/**
 * flanneld's --ip-blackhole-route: a blackhole route for each of the node's
 * own subnets (IPv4, IPv6), so that traffic to its addresses that no local route takes (the
 * bridge down or not made yet) is dropped here instead of leaving by the
 * default route. flanneld adds it at the prefix's default metric, where it
 * either fails (a bridge route is there: EEXIST) or shadows the bridge route
 * that comes later; weft's sits at the highest metric, below every other
 * route to the prefix. Re-applied every period (flanneld's --iptables-resync),
 * moved when the lease changes.
 */
export class BlackholeKeeper {
  /** The node's subnets, one per family its lease has. */
  private subnets: readonly Subnet[] = [];

  constructor(
    private readonly kernel: Pick<Kernel, 'blackholeReplace' | 'blackholeDel'>,
    private readonly log: Logger,
  ) {}

  /** Puts a blackhole on each of `subnets` (the lease's IPv4 and IPv6 subnets), removing those of a previous lease. */
  async set(subnets: readonly Subnet[]): Promise<void> {
    const previous = this.subnets;
    this.subnets = subnets;
    for (const old of previous) {
      if (subnets.some((s) => s.equals(old))) continue;
      await this.kernel.blackholeDel(old.toString()).catch((err: unknown) => {
        if (!isKernelErrno(err, 'ESRCH')) throw err;
      });
    }
    for (const subnet of subnets) await this.kernel.blackholeReplace(subnet.toString());
  }

  run(intervalMs: number, signal: AbortSignal): Promise<void> {
    return runPeriodically(
      intervalMs,
      signal,
      async () => {
        for (const subnet of this.subnets) await this.kernel.blackholeReplace(subnet.toString());
      },
      (err) => this.log.error(`blackhole route check failed: ${err.message}`),
    );
  }
}
