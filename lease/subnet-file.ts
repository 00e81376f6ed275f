import { chmod, mkdir, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parse as parseEnv } from 'dotenv';
import writeFileAtomic from 'write-file-atomic';
import { Subnet } from '../common/subnet.js';

/** What the subnet file carries: flannel's four (or six, dual-stack) variables. */
export interface SubnetFileContents {
  readonly network: Subnet | null;
  /** The node's subnet; written as its first address, e.g. 10.244.3.1/24. */
  readonly subnet: Subnet | null;
  readonly ipv6Network?: Subnet | null;
  readonly ipv6Subnet?: Subnet | null;
  readonly mtu: number;
  readonly ipMasq: boolean;
}

/**
 * flannel's exact subnet.env text: one KEY=VALUE per line, no quotes (the
 * flannel CNI plugin does not unquote), in flannel's order.
 */
export function formatSubnetFile(c: SubnetFileContents): string {
  const lines: string[] = [];
  if (c.network && c.subnet) {
    lines.push(`FLANNEL_NETWORK=${c.network}`, `FLANNEL_SUBNET=${c.subnet.addressAt(1)}/${c.subnet.prefixLength}`);
  }
  if (c.ipv6Network && c.ipv6Subnet) {
    lines.push(`FLANNEL_IPV6_NETWORK=${c.ipv6Network}`, `FLANNEL_IPV6_SUBNET=${c.ipv6Subnet.addressAt(1)}/${c.ipv6Subnet.prefixLength}`);
  }
  lines.push(`FLANNEL_MTU=${c.mtu}`, `FLANNEL_IPMASQ=${c.ipMasq ? 'true' : 'false'}`);
  return lines.join('\n') + '\n';
}

/** Writes the subnet file atomically (temp file + rename), mode 0644 whatever the umask; creates the directory (0755). */
export async function writeSubnetFile(path: string, c: SubnetFileContents): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  await writeFileAtomic(path, formatSubnetFile(c), { mode: 0o644, fsync: true });
  await chmod(path, 0o644);
}

/**
 * Parsed variables of a subnet file (tolerates quotes and comments, like flanneld's reader).
 * The CNI plugin reads the file with subnet-env.ts instead: flannel's CNI plugin's rules, without dotenv.
 */
export interface SubnetFileVars {
  readonly [name: string]: string;
}

export function parseSubnetFile(text: string): SubnetFileVars {
  return parseEnv(text);
}

/** What a previous run's subnet file says it leased, each null when absent or unreadable. */
export interface PreviousSubnets {
  readonly subnet: Subnet | null;
  readonly network: Subnet | null;
  readonly ipv6Subnet: Subnet | null;
  readonly ipv6Network: Subnet | null;
}

/**
 * The subnets a previous run leased, from FLANNEL_SUBNET and
 * FLANNEL_IPV6_SUBNET (`10.244.3.1/24` -> `10.244.3.0/24`), with the networks
 * they were leased from; null where the file is absent or holds none.
 */
export async function readPreviousSubnet(path: string): Promise<PreviousSubnets> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch {
    return { subnet: null, network: null, ipv6Subnet: null, ipv6Network: null };
  }
  const vars = parseSubnetFile(text);
  return {
    subnet: parseOrNull(vars.FLANNEL_SUBNET, 4),
    network: parseOrNull(vars.FLANNEL_NETWORK?.split(',')[0], 4),
    ipv6Subnet: parseOrNull(vars.FLANNEL_IPV6_SUBNET, 6),
    ipv6Network: parseOrNull(vars.FLANNEL_IPV6_NETWORK?.split(',')[0], 6),
  };
}

function parseOrNull(cidr: string | undefined, family: 4 | 6): Subnet | null {
  if (!cidr) return null;
  try {
    const sn = Subnet.parse(cidr.trim());
    return sn.family === family ? sn : null;
  } catch {
    return null;
  }
}
