/**
 * The subnet file as the runtimes' side reads it: every variable flannel's
 * CNI plugin uses, parsed by its rules. The writer and weftd's own reader
 * are in subnet-file.ts; this reader stays apart from them because the CNI
 * plugin loads it on every pod's start: it needs no dotenv (whose loading
 * loads node:crypto) and no write-file-atomic, only the address math.
 */
import { readFileSync } from 'node:fs';
import { WeftError } from '../common/errors.js';
import { Subnet } from '../common/subnet.js';

export interface SubnetEnv {
  /** FLANNEL_NETWORK: a comma-separated list (a MultiClusterCIDR legacy), de-duplicated, in file order. */
  readonly networks: readonly Subnet[];
  /** FLANNEL_SUBNET as a network (`10.244.3.1/24` -> `10.244.3.0/24`). */
  readonly subnet: Subnet | null;
  readonly ipv6Networks: readonly Subnet[];
  readonly ipv6Subnet: Subnet | null;
  readonly mtu: number;
  /** FLANNEL_IPMASQ: true only for the text `true`, as flannel reads it. */
  readonly ipMasq: boolean;
}

/**
 * `KEY=VALUE` lines; the last of a key wins. flannel's plugin splits each
 * line at its first `=` and takes the rest as it is; this also skips blank
 * and `#` lines and an `export ` prefix, and unquotes a quoted value, so a
 * hand-written file reads as weftd's own reader (dotenv) would read it.
 */
export function parseEnvLines(text: string): Map<string, string> {
  const vars = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim().replace(/^export\s+/, '');
    if (line === '' || line.startsWith('#')) continue;
    const eq = line.indexOf('=');
    if (eq <= 0) continue;
    let value = line.slice(eq + 1).trim();
    if (value.length >= 2 && (value[0] === '"' || value[0] === "'") && value.endsWith(value[0])) value = value.slice(1, -1);
    vars.set(line.slice(0, eq).trim(), value);
  }
  return vars;
}

/**
 * Parses a subnet file's text by flannel's CNI plugin's rules: it needs a
 * network and a subnet (IPv4, IPv6 or both), FLANNEL_MTU and FLANNEL_IPMASQ.
 * Throws WEFT_ERR_SUBNET_FILE_INVALID naming `file` and what is missing or
 * does not parse.
 */
export function parseSubnetEnv(text: string, file: string): SubnetEnv {
  const vars = parseEnvLines(text);
  const bad = (what: string, cause?: unknown) =>
    new WeftError('WEFT_ERR_SUBNET_FILE_INVALID', `subnet file ${file}: ${what}`, cause === undefined ? undefined : { cause });
  const cidrs = (name: string, family: 4 | 6): Subnet[] => {
    const value = vars.get(name);
    if (value === undefined) return [];
    const out: Subnet[] = [];
    for (const cidr of value.split(',')) {
      let sn: Subnet;
      try {
        sn = Subnet.parse(cidr.trim());
      } catch (err) {
        throw bad(`${name}=${value}: ${(err as Error).message}`, err);
      }
      if (sn.family !== family) throw bad(`${name}=${value}: not an IPv${family} network`);
      if (!out.some((o) => o.equals(sn))) out.push(sn);
    }
    return out;
  };
  const networks = cidrs('FLANNEL_NETWORK', 4);
  const ipv6Networks = cidrs('FLANNEL_IPV6_NETWORK', 6);
  const subnets = cidrs('FLANNEL_SUBNET', 4);
  const ipv6Subnets = cidrs('FLANNEL_IPV6_SUBNET', 6);
  if (subnets.length > 1) throw bad(`FLANNEL_SUBNET=${vars.get('FLANNEL_SUBNET')}: one subnet expected`);
  if (ipv6Subnets.length > 1) throw bad(`FLANNEL_IPV6_SUBNET=${vars.get('FLANNEL_IPV6_SUBNET')}: one subnet expected`);
  const missing: string[] = [];
  if (networks.length === 0 && ipv6Networks.length === 0) missing.push('FLANNEL_NETWORK (or FLANNEL_IPV6_NETWORK)');
  if (subnets.length === 0 && ipv6Subnets.length === 0) missing.push('FLANNEL_SUBNET (or FLANNEL_IPV6_SUBNET)');
  const mtuText = vars.get('FLANNEL_MTU');
  if (mtuText === undefined) missing.push('FLANNEL_MTU');
  if (!vars.has('FLANNEL_IPMASQ')) missing.push('FLANNEL_IPMASQ');
  if (missing.length > 0) throw bad(`missing ${missing.join(', ')}`);
  const mtu = Number(mtuText);
  if (!/^\d+$/.test(mtuText!) || mtu > 0xffffffff) throw bad(`FLANNEL_MTU=${mtuText}: not a whole number`);
  return { networks, subnet: subnets[0] ?? null, ipv6Networks, ipv6Subnet: ipv6Subnets[0] ?? null, mtu, ipMasq: vars.get('FLANNEL_IPMASQ') === 'true' };
}

/**
 * Reads and parses the subnet file at `path`. A missing file is
 * WEFT_ERR_SUBNET_FILE_MISSING: weftd writes it once it holds a lease, so
 * until then there is nothing to read (flannel's most-reported error).
 */
export function readSubnetEnv(path: string): SubnetEnv {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new WeftError('WEFT_ERR_SUBNET_FILE_MISSING', `subnet file ${path} does not exist: weftd writes it once it holds a lease for this node (is weftd running?)`, { cause: err });
    }
    throw new WeftError('WEFT_ERR_SUBNET_FILE_INVALID', `subnet file ${path} cannot be read: ${(err as Error).message}`, { cause: err });
  }
  return parseSubnetEnv(text, path);
}
