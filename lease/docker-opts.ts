import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import yargs from 'yargs';
import writeFileAtomic from 'write-file-atomic';
import { WeftError } from '../common/errors.js';
import { Subnet } from '../common/subnet.js';
import { DEFAULT_SUBNET_FILE } from '../common/defaults.js';
import { parseSubnetFile, type SubnetFileVars } from './subnet-file.js';

/**
 * weft's equivalent of flannel's mk-docker-opts.sh: the same flags and the
 * same output file, turning the subnet file into dockerd options.
 */
export interface DockerOptsArgs {
  /** -f: the subnet file to read. */
  readonly subnetFile: string;
  /** -d: the file to write. */
  readonly outFile: string;
  /** -i: one DOCKER_OPT_* variable per option. */
  readonly individual: boolean;
  /** -c: the combined variable. Neither -i nor -c means both. */
  readonly combined: boolean;
  /** -k: name of the combined variable. */
  readonly key: string;
  /** -m: leave out --ip-masq (for old Docker). */
  readonly noIpMasq: boolean;
  /** --bridge: Docker uses this pre-made bridge (`--bridge=NAME`) instead of `--bip`. */
  readonly bridge?: string;
  /** Existing value of the combined variable, prepended like the script does. */
  readonly existing?: string;
}

export const DOCKER_OPTS_DEFAULTS = { subnetFile: DEFAULT_SUBNET_FILE, outFile: '/run/docker_opts.env', key: 'DOCKER_OPTS' } as const;

/**
 * The output file's text for the given subnet file variables. Throws WEFT_ERR_OPTION_INVALID on bad input.
 * flannel's script knows IPv4 only; with FLANNEL_IPV6_SUBNET, weft adds
 * DOCKER_OPT_IPV6 (`--ipv6 --fixed-cidr-v6=` the node's IPv6 subnet), and an
 * IPv6-only file gives no `--bip`.
 */
export function formatDockerOpts(vars: SubnetFileVars, args: DockerOptsArgs): string {
  const subnet = vars.FLANNEL_SUBNET;
  const mtu = vars.FLANNEL_MTU;
  const v6 = vars.FLANNEL_IPV6_SUBNET ? ipv6Network(vars.FLANNEL_IPV6_SUBNET, args.subnetFile) : null;
  if (!subnet && !v6) throw new WeftError('WEFT_ERR_OPTION_INVALID', `${args.subnetFile} has no FLANNEL_SUBNET (or FLANNEL_IPV6_SUBNET)`);
  if (!mtu || !/^\d+$/.test(mtu)) throw new WeftError('WEFT_ERR_OPTION_INVALID', `${args.subnetFile} has no valid FLANNEL_MTU`);
  const opts: [string, string][] = [];
  if (args.bridge) opts.push(['BRIDGE', `--bridge=${args.bridge}`]);
  else if (subnet) opts.push(['BIP', `--bip=${subnet}`]);
  if (v6) opts.push(['IPV6', `--ipv6 --fixed-cidr-v6=${v6}`]);
  if (!args.noIpMasq) {
    // Inverted on purpose: when weft masquerades (FLANNEL_IPMASQ=true), Docker must not.
    if (vars.FLANNEL_IPMASQ === 'true') opts.push(['IPMASQ', '--ip-masq=false']);
    else if (vars.FLANNEL_IPMASQ === 'false') opts.push(['IPMASQ', '--ip-masq=true']);
    else throw new WeftError('WEFT_ERR_OPTION_INVALID', `${args.subnetFile}: FLANNEL_IPMASQ must be true or false (got ${JSON.stringify(vars.FLANNEL_IPMASQ ?? '')})`);
  }
  opts.push(['MTU', `--mtu=${mtu}`]);
  opts.sort(([a], [b]) => (a < b ? -1 : 1)); // the script emits them in `set` (alphabetical) order

  const both = !args.individual && !args.combined;
  const lines: string[] = [];
  if (args.individual || both) for (const [name, value] of opts) lines.push(`DOCKER_OPT_${name}="${value}"`);
  if (args.combined || both) lines.push(`${args.key}="${args.existing ?? ''} ${opts.map(([, v]) => v).join(' ')}"`);
  return lines.join('\n') + '\n';
}

/** FLANNEL_IPV6_SUBNET (`fd00:10:244:3::1/64`) as the network Docker's --fixed-cidr-v6 takes. */
function ipv6Network(text: string, file: string): Subnet {
  let sn: Subnet | null = null;
  try {
    sn = Subnet.parse(text.trim());
  } catch {
    // worded below
  }
  if (!sn || sn.family !== 6) throw new WeftError('WEFT_ERR_OPTION_INVALID', `${file}: FLANNEL_IPV6_SUBNET=${text} is not an IPv6 subnet`);
  return sn;
}

const execFileP = promisify(execFile);

/**
 * Runs docker-opts: reads the subnet file, writes the options file, then,
 * like the script, refuses (exit 1) when the routing table already routes
 * the node's subnet via a gateway.
 */
export async function runDockerOpts(args: DockerOptsArgs): Promise<{ exitCode: number; message?: string }> {
  let text: string;
  try {
    text = await readFile(args.subnetFile, 'utf8');
  } catch (err) {
    return { exitCode: 1, message: `cannot read ${args.subnetFile}: ${(err as NodeJS.ErrnoException).code}` };
  }
  const vars = parseSubnetFile(text);
  let out: string;
  try {
    out = formatDockerOpts(vars, args);
  } catch (err) {
    return { exitCode: 1, message: (err as Error).message };
  }
  await writeFileAtomic(args.outFile, out, { mode: 0o644 });
  for (const [family, cidr] of [['-4', vars.FLANNEL_SUBNET], ['-6', vars.FLANNEL_IPV6_SUBNET]] as const) {
    if (!cidr) continue;
    const network = Subnet.parse(cidr).toString();
    const { stdout } = await execFileP('ip', [family, 'route', 'show', network]).catch(() => ({ stdout: '' }));
    if (stdout.split('\n').some((l) => l.startsWith(`${network} via `))) {
      return { exitCode: 1, message: `Your routing table already contains the subnet: ${network}` };
    }
  }
  return { exitCode: 0 };
}

/**
 * The `docker-opts` command line (`weftd docker-opts`, `weftctl docker-opts`):
 * mk-docker-opts.sh's flags. Returns the exit code; messages go to stderr.
 */
export async function dockerOptsCommand(argv: string[], scriptName: string): Promise<number> {
  const a = await yargs(argv)
    .scriptName(scriptName)
    .usage(`${scriptName} docker-opts [-f subnet.env] [-d out.env] [-i] [-c] [-k KEY] [-m] [--bridge NAME]`)
    .option('f', { type: 'string', default: DOCKER_OPTS_DEFAULTS.subnetFile, describe: 'subnet file to read' })
    .option('d', { type: 'string', default: DOCKER_OPTS_DEFAULTS.outFile, describe: 'file to write' })
    .option('i', { type: 'boolean', default: false, describe: 'one DOCKER_OPT_* variable per option' })
    .option('c', { type: 'boolean', default: false, describe: 'the combined variable' })
    .option('k', { type: 'string', default: DOCKER_OPTS_DEFAULTS.key, describe: 'name of the combined variable' })
    .option('m', { type: 'boolean', default: false, describe: 'leave out --ip-masq' })
    .option('bridge', { type: 'string', describe: 'use this pre-made bridge (weftd --bridge) instead of --bip' })
    .strict()
    .exitProcess(false)
    .fail((msg, err) => {
      throw err ?? new WeftError('WEFT_ERR_OPTION_INVALID', msg);
    })
    .parse();
  const result = await runDockerOpts({ subnetFile: a.f, outFile: a.d, individual: a.i, combined: a.c, key: a.k, noIpMasq: a.m, bridge: a.bridge, existing: process.env[a.k] });
  if (result.message) console.error(result.message);
  return result.exitCode;
}
