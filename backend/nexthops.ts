/**
 * Peer routes through nexthop objects (`ip nexthop`, kernel >= 5.3).
 *
 * A route with a gateway of its own (`S via S.0 dev flannel.1 onlink`) needs
 * a `fib_info` per gateway, and the kernel finds an existing one through a
 * hash that leaves the gateway out, so each new peer route is compared with
 * every earlier one: programming grows with the square of the peers. A route
 * by `nhid` finds its `fib_info` by the nexthop's id, so the same peers cost a
 * nexthop and a route each, in linear time (docs/benchmarks.md). Per peer the
 * backends then program `ip nexthop replace id N via G dev D [onlink] proto
 * 0x57` before `ip route replace S nhid N proto 0x57`.
 *
 * Ids are derived from the peer's subnet (its index in the Network), so they
 * are the same on every start and on every node. Ids are global to the
 * network namespace: weft owns only nexthops with its protocol, and a peer
 * whose id another owner holds gets a route with its own gateway instead (the
 * reconciler folds the nexthop back into the route, see `foldNexthops`).
 */
import { WeftError } from '../common/errors.js';
import type { RouteNexthopsMode } from '../common/defaults.js';
import type { Logger } from '../common/log.js';
import { parseIPv4, type Subnet } from '../common/subnet.js';
import { NEXTHOP_MIN_KERNEL, RTPROT_WEFT, isKernelErrno, type Kernel } from '../kernel/kernel.js';

/** What start-up found: whether the kernel has nexthop objects, and whether peer routes go through them. */
export interface NexthopSupport {
  /** The kernel dumps nexthop objects: a full pass reads them, and removes weft's that are not wanted. */
  readonly kernel: boolean;
  /** Peer routes are programmed by `nhid`. */
  readonly use: boolean;
}

/** Where the probe's id search starts: far above the ids peers get, which stay below the subnet count. */
const PROBE_ID = 0x57000000;

/**
 * Decides the route form at start: `off` never programs nexthops (but still
 * reads them where the kernel has them, so a node that used them goes back
 * to plain routes); `auto` uses them when a dump and a probe nexthop (a
 * blackhole, created and deleted) succeed; `on` fails without them.
 */
export async function detectNexthops(kernel: Kernel, mode: RouteNexthopsMode, log: Logger): Promise<NexthopSupport> {
  const taken = new Set<number>();
  let why: string | null = null;
  let listed = false;
  try {
    await kernel.nexthopEach((nh) => taken.add(nh.id));
    listed = true;
  } catch (err) {
    why = `the kernel does not list nexthop objects (${describe(err)})`;
  }
  if (why === null && mode !== 'off') {
    let id = PROBE_ID;
    while (taken.has(id)) id++;
    try {
      await kernel.nexthopReplace({ id, gw: null, oif: 0, onlink: false, blackhole: true });
      await kernel.nexthopDel({ id });
    } catch (err) {
      why = `the kernel refused a nexthop object (${describe(err)})`;
    }
  }
  if (mode === 'on' && why !== null) {
    throw new WeftError('WEFT_ERR_KERNEL', `--route-nexthops on: ${why}; nexthop objects need Linux ${NEXTHOP_MIN_KERNEL} or later`);
  }
  const support = { kernel: listed, use: mode !== 'off' && why === null };
  if (mode === 'auto' && !support.use) log.info(`peer routes carry their own gateway: ${why}`);
  else if (support.use) log.info('peer routes go through nexthop objects (ip nexthop, proto 0x57)');
  return support;
}

/** The registration's choice: a decided form as it is (weftctl's dry run decides by reading alone), else detectNexthops' verdict on the mode, `off` when none. */
export function nexthopSupport(kernel: Kernel, choice: RouteNexthopsMode | NexthopSupport | undefined, log: Logger): Promise<NexthopSupport> {
  if (typeof choice === 'object') return Promise.resolve(choice);
  return detectNexthops(kernel, choice ?? 'off', log);
}

/** Whether the kernel lists nexthop objects: detectNexthops without the probe, for a caller that must not write. */
export async function listsNexthops(kernel: Kernel): Promise<boolean> {
  try {
    await kernel.nexthopEach(() => undefined);
    return true;
  } catch {
    return false;
  }
}

function describe(err: unknown): string {
  if (isKernelErrno(err, 'EOPNOTSUPP')) return 'EOPNOTSUPP';
  return err instanceof Error ? err.message : String(err);
}

/**
 * The nexthop id of a peer subnet: its index among the Network's subnets of
 * its length (`10.244.3.0/24` in 10.244.0.0/16 is 3). Id 0 means "let the
 * kernel choose", so the subnet at index 0 takes the first index past the
 * last one instead. IPv6 subnets (in the IPv6Network) take the upper half of
 * the u32 ids, so the two families never share one: IPv4 ids stay at or
 * below 2^31, IPv6 ids are 2^31 plus the index. Null for a subnet outside the
 * Network or an index too large for its half.
 */
export function nexthopId(network: Subnet, subnet: Subnet): number | null {
  if (network.family !== subnet.family || subnet.prefixLength < network.prefixLength) return null;
  if (!network.contains(subnet)) return null;
  const bits = subnet.prefixLength - network.prefixLength;
  if (network.family === 4) {
    if (bits > 31) return null;
    const offset = ((parseIPv4(subnet.ip) as number) - (parseIPv4(network.ip) as number)) >>> 0;
    const index = subnet.prefixLength === 32 ? offset : Math.floor(offset / 2 ** (32 - subnet.prefixLength));
    return index === 0 ? 2 ** bits : index;
  }
  if (bits > 30) return null;
  const index = Number((subnet.value - network.value) >> BigInt(128 - subnet.prefixLength));
  return IPV6_NEXTHOP_IDS + (index === 0 ? 2 ** bits : index);
}

/** Where IPv6 peers' nexthop ids start: above every IPv4 peer's. */
export const IPV6_NEXTHOP_IDS = 2 ** 31;

/** Whether a nexthop is weft's: it carries weft's protocol, like its routes. */
export function ownsNexthop(nh: { proto: number }): boolean {
  return nh.proto === RTPROT_WEFT;
}
