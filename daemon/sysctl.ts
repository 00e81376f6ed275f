import { readFile, writeFile } from 'node:fs/promises';

/**
 * Sets a sysctl of the current network namespace through /proc/sys (e.g.
 * `net/ipv4/ip_forward`), only when it differs. Returns the previous value.
 */
export async function ensureSysctl(name: string, value: string): Promise<string> {
  const path = `/proc/sys/${name.replace(/\./g, '/')}`;
  const current = (await readFile(path, 'utf8')).trim();
  if (current !== value) await writeFile(path, value);
  return current;
}

/**
 * Reads a sysctl of the current network namespace by its path under
 * /proc/sys (`net/ipv6/conf/eth0.100/accept_ra`: slashes, so that a device
 * name's dots stay dots); null when the key does not exist.
 */
export async function readSysctlPath(path: string): Promise<string | null> {
  try {
    return (await readFile(`/proc/sys/${path}`, 'utf8')).trim();
  } catch {
    return null;
  }
}

/**
 * The warning for an underlay that takes its IPv6 route from router
 * advertisements (`accept_ra` 1) once IPv6 forwarding is on: the kernel then
 * ignores them (only `accept_ra` 2 accepts them on a router), and the learned
 * default route lapses. null when nothing is amiss.
 */
export function acceptRaWarning(iface: string, acceptRa: string | null): string | null {
  if (acceptRa !== '1') return null;
  return `IPv6 forwarding is on: ${iface} ignores router advertisements with accept_ra=1, so a default route learned from them will lapse; set net.ipv6.conf.${iface}.accept_ra=2 if the host depends on them`;
}
