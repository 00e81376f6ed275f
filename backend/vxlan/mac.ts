/**
 * The VTEP MAC must survive restarts and reboots: peers hold it in their
 * neighbour and FDB entries, and a new MAC after a reboot (flannel in etcd
 * mode) leaves them with stale entries until the lease event arrives.
 * weft keeps the MAC in `<stateDir>/<device>.mac`; without a state directory
 * it derives one deterministically from the public IP and VNI.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { isUnicastMac } from '../../common/mac.js';

/** A locally administered unicast MAC from a seed: bit 0x02 set, bit 0x01 (multicast) clear. */
export function deriveVtepMac(seed: string): string {
  const b = createHash('sha256').update(`weft-vtep:${seed}`).digest().subarray(0, 6);
  b[0] = ((b[0] as number) & 0xfe) | 0x02;
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(':');
}

function macFile(stateDir: string, device: string): string {
  return join(stateDir, `${device}.mac`);
}

/** The stored MAC for `device`, or null when none (or an unusable one) is stored. */
export async function loadVtepMac(stateDir: string, device: string): Promise<string | null> {
  try {
    const mac = (await readFile(macFile(stateDir, device), 'utf8')).trim().toLowerCase();
    return isUnicastMac(mac) ? mac : null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Stores the MAC atomically (temp file, fsync, rename), mode 0644; the state directory is 0755. */
export async function saveVtepMac(stateDir: string, device: string, mac: string): Promise<void> {
  await mkdir(stateDir, { recursive: true, mode: 0o755 });
  await writeFileAtomic(macFile(stateDir, device), `${mac}\n`, { mode: 0o644, fsync: true });
}
