import { isKernelErrno, type Kernel } from '../kernel/kernel.js';
import { runPeriodically } from '../common/periodic.js';
import type { Logger } from '../common/log.js';
import type { Subnet } from '../common/subnet.js';

/**
 * flanneld's --ip-blackhole-route: a blackhole route for the node's own
 * subnet, so that traffic to its addresses that no local route takes (the
 * bridge down or not made yet) is dropped here instead of leaving by the
 * default route. flanneld adds it at the prefix's default metric, where it
 * either fails (a bridge route is there: EEXIST) or shadows the bridge route
 * that comes later; weft's sits at the highest metric, below every other
 * route to the prefix. Re-applied every period (flanneld's --iptables-resync),
 * moved when the lease changes.
 */
export class BlackholeKeeper {
  private subnet: Subnet | null = null;

  constructor(
    private readonly kernel: Pick<Kernel, 'blackholeReplace' | 'blackholeDel'>,
    private readonly log: Logger,
  ) {}

  /** Puts the blackhole on `subnet`, removing the one of a previous lease. */
  async set(subnet: Subnet): Promise<void> {
    const previous = this.subnet;
    this.subnet = subnet;
    if (previous && !previous.equals(subnet)) {
      await this.kernel.blackholeDel(previous.toString()).catch((err: unknown) => {
        if (!isKernelErrno(err, 'ESRCH')) throw err;
      });
    }
    await this.kernel.blackholeReplace(subnet.toString());
  }

  run(intervalMs: number, signal: AbortSignal): Promise<void> {
    return runPeriodically(
      intervalMs,
      signal,
      async () => {
        if (this.subnet) await this.kernel.blackholeReplace(this.subnet.toString());
      },
      (err) => this.log.error(`blackhole route check failed: ${err.message}`),
    );
  }
}
