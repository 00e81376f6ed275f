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
