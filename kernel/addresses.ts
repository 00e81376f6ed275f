import { isKernelErrno, type Addr, type Family, type Kernel } from './kernel.js';
import type { Subnet } from '../common/subnet.js';

/** `ip -4 addr show dev NAME` (`-6` for family 6): the addresses of one link, from the kernel's one address dump. */
export async function addrsOn(kernel: Pick<Kernel, 'addrListAll'>, ifindex: number, family: Family = 4): Promise<Addr[]> {
  return (await kernel.addrListAll(family)).filter((a) => a.ifindex === ifindex).map((a) => ({ ifindex: a.ifindex, cidr: a.cidr }));
}

/**
 * Makes `want` (e.g. `10.244.3.0/32`, `fd00:10:244:3::/128`) the only address of the link inside
 * the cluster `network`: other in-network addresses are a previous lease's
 * and go; addresses outside the network are someone else's and stay. Reads
 * the addresses of the network's family only.
 * Returns what it changed (`removed ...`, `address ...`), empty when in place.
 */
export async function ensureSoleNetworkAddress(kernel: Kernel, ifindex: number, want: string, network: Subnet): Promise<string[]> {
  const changes: string[] = [];
  const addrs = await addrsOn(kernel, ifindex, network.family);
  for (const a of addrs) {
    if (a.cidr !== want && network.contains(a.cidr.split('/')[0] ?? '')) {
      await kernel.addrDel(a);
      changes.push(`removed ${a.cidr}`);
    }
  }
  if (!addrs.some((a) => a.cidr === want)) {
    try {
      await kernel.addrAdd({ ifindex, cidr: want });
      changes.push(`address ${want}`);
    } catch (err) {
      if (!isKernelErrno(err, 'EEXIST')) throw err;
    }
  }
  return changes;
}
