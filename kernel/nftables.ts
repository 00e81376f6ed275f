import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { silentLogger, type Logger } from '../common/log.js';
import type { Subnet } from '../common/subnet.js';
import { WeftError } from '../common/errors.js';
import { familySpecs, type RuleEngine, type TrafficRulesSpec } from './iptables.js';

/**
 * flannel's nftables mode (`"EnableNFTables": true`): native tables
 * `ip flannel-ipv4` and `ip6 flannel-ipv6`, each with chain `postrtg` (type
 * nat, hook postrouting, priority srcnat) for masquerading and chain `forward`
 * (type filter, hook forward, priority filter) accepting the Network: the
 * table and chain names flanneld uses, so either daemon takes over, or
 * cleans up, the other's table.
 *
 * Applied as one `nft -f -` transaction that creates, deletes and re-creates
 * weft's own table and names no other: the rules are replaced atomically and
 * nothing else in the ruleset is touched.
 *
 * Kept in place like the iptables rules (TrafficRules runs the checks: at
 * every nf_tables change the kernel reports): a check lists the table
 * (`nft list table`) and compares it with the listing nft printed right after
 * weft's last apply. Comparing nft's own rendering with itself needs no parser
 * of nft's output, which differs between nft versions (`0x4000` is printed
 * `0x00004000`).
 *
 * The rules are flannel's iptables rules (kernel/iptables.ts) in nft syntax.
 * flanneld's own nftables rules differ in two places, where weft follows the
 * iptables rules instead: the kube-proxy mark is matched as a bit
 * (`meta mark & 0x4000 == 0x4000`, iptables' `--mark 0x4000/0x4000`; flanneld's
 * `meta mark 0x4000` misses a mark with other bits set), and "external to
 * local pods: keep the source" is `saddr != N daddr S` (flanneld writes
 * `saddr != S daddr N`, which returns before host-to-remote-pod traffic can be
 * masqueraded). The rules are node-local, so nodes in either mode, weft's or
 * flanneld's, mix in one cluster.
 */

export const NFT_TABLES = { 4: 'flannel-ipv4', 6: 'flannel-ipv6' } as const;
const NFT_FAMILY = { 4: 'ip', 6: 'ip6' } as const;
const MULTICAST = { 4: '224.0.0.0/4', 6: 'ff00::/8' } as const;
export const NFT_MASQ_CHAIN = 'postrtg';
export const NFT_FORWARD_CHAIN = 'forward';

type NftFamily = 'ip' | 'ip6';

/** A CIDR as it may appear in an nft script: what Subnet prints, checked again, since it comes from etcd. */
function nftCidr(sn: Subnet, family: 4 | 6, what: string): string {
  const text = sn.toString();
  const ok = family === 4 ? /^(\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/.test(text) : /^[0-9a-f:.]+\/\d{1,3}$/.test(text) && text.includes(':');
  if (sn.family !== family || !ok) throw new WeftError('WEFT_ERR_ADDRESS_INVALID', `nftables: ${what} "${text}" is not an IPv${family} CIDR`);
  return text;
}

/** The masquerade rules of `postrtg`, in order (flannel's iptables masqRules). */
export function nftMasqRules(network: Subnet, subnet: Subnet, randomFully = true): string[] {
  const family = network.family;
  const ip = NFT_FAMILY[family];
  const n = nftCidr(network, family, 'Network');
  const s = nftCidr(subnet, family, 'subnet');
  const masq = randomFully ? 'masquerade fully-random' : 'masquerade';
  return [
    'meta mark & 0x4000 == 0x4000 return', // marked by kube-proxy: it masquerades, avoid double NAT
    `${ip} saddr ${s} ${ip} daddr ${n} return`, // local pods -> cluster: no NAT
    `${ip} saddr ${n} ${ip} daddr ${s} return`, // cluster -> local pods: no NAT
    `${ip} saddr != ${n} ${ip} daddr ${s} return`, // external -> local pods: keep the client's source
    `${ip} saddr ${n} ${ip} daddr != ${MULTICAST[family]} ${masq}`, // pods -> outside the overlay
    `${ip} saddr != ${n} ${ip} daddr ${n} ${masq}`, // host -> remote pods
  ];
}

/** The accept rules of `forward` (flannel's FLANNEL-FWD). */
export function nftForwardRules(network: Subnet): string[] {
  const ip = NFT_FAMILY[network.family];
  const n = nftCidr(network, network.family, 'Network');
  return [`${ip} saddr ${n} accept`, `${ip} daddr ${n} accept`];
}

/** The table a spec's rules live in: `flannel-ipv4` or `flannel-ipv6`, by the Network's family. */
export function nftTableOf(spec: Pick<TrafficRulesSpec, 'network'>): { family: NftFamily; name: string } {
  return { family: NFT_FAMILY[spec.network.family], name: NFT_TABLES[spec.network.family] };
}

/**
 * The `nft -f` script that replaces weft's table with the one `spec` wants,
 * in one transaction: `table` first, so that `delete table` also works when
 * there is none, then the table as a whole. Null when the spec wants no rule
 * at all (see nftDeleteScript).
 */
export function nftTableScript(spec: TrafficRulesSpec, randomFully = spec.randomFully ?? true): string | null {
  if (spec.network.family !== spec.subnet.family) {
    throw new WeftError('WEFT_ERR_ADDRESS_INVALID', `nftables: Network ${spec.network} and subnet ${spec.subnet} are of different families`);
  }
  if (!spec.ipMasq && !spec.forwardRules) return null;
  const { family, name } = nftTableOf(spec);
  const chain = (chainName: string, base: string, rules: readonly string[]) => [`\tchain ${chainName} {`, `\t\t${base}`, ...rules.map((r) => `\t\t${r}`), '\t}'];
  return [
    `table ${family} ${name}`,
    `delete table ${family} ${name}`,
    `table ${family} ${name} {`,
    ...(spec.ipMasq ? chain(NFT_MASQ_CHAIN, 'type nat hook postrouting priority srcnat; policy accept;', nftMasqRules(spec.network, spec.subnet, randomFully)) : []),
    ...(spec.forwardRules ? chain(NFT_FORWARD_CHAIN, 'type filter hook forward priority filter; policy accept;', nftForwardRules(spec.network)) : []),
    '}',
    '',
  ].join('\n');
}

/** The script that deletes the given tables, whether or not they exist. */
export function nftDeleteScript(tables: readonly { family: NftFamily; name: string }[]): string {
  return tables.map(({ family, name }) => `table ${family} ${name}\ndelete table ${family} ${name}\n`).join('');
}

/** Rules in an `nft list table` listing, or in weft's script: every line that is not a table or chain line, a chain's base line, a comment or a brace. */
export function nftRuleCount(listing: string): number {
  return listing
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && l !== '}' && !/^(table|delete|chain|type|comment|policy) /.test(l)).length;
}

/** How weft runs nft: injectable so the keeping logic is testable without a kernel. */
export interface NftRunner {
  /** `nft list table FAMILY NAME`, or null when there is no such table. */
  listTable(family: NftFamily, name: string): Promise<string | null>;
  /** `nft list tables`: one `table FAMILY NAME` line per table. */
  listTables(): Promise<string>;
  /** `nft -f -`: the whole script as one transaction. */
  apply(script: string): Promise<void>;
}

const execFileP = promisify(execFile);

/** True when the error says the tool itself was not found (not installed). */
export function isToolMissing(err: unknown): boolean {
  const cause = (err as { cause?: { code?: unknown } } | null)?.cause;
  return (err as { code?: unknown } | null)?.code === 'ENOENT' || cause?.code === 'ENOENT';
}

function nftFailed(what: string, err: unknown, stderr = ''): WeftError {
  const detail = isToolMissing(err) ? 'nft not found (install the nftables package)' : stderr.trim() || (err as Error).message;
  return new WeftError('WEFT_ERR_KERNEL', `nft ${what} failed: ${detail}`, { cause: err });
}

/**
 * Runs the system's nft in the current network namespace, or (for tests)
 * inside `netns` through `ip netns exec`.
 */
export function nftRunner(netns?: string): NftRunner {
  const cmd = (args: string[]): [string, string[]] => (netns ? ['ip', ['netns', 'exec', netns, 'nft', ...args]] : ['nft', args]);
  const list = async (args: string[]): Promise<string> => {
    const [file, argv] = cmd(args);
    try {
      return (await execFileP(file, argv, { maxBuffer: 64 << 20 })).stdout;
    } catch (err) {
      throw nftFailed(args.join(' '), err, (err as { stderr?: string }).stderr);
    }
  };
  return {
    async listTable(family, name) {
      if (!/^ip6?$/.test(family) || !/^[A-Za-z][A-Za-z0-9_.-]*$/.test(name)) throw new WeftError('WEFT_ERR_INVALID_STATE', `nftables: bad table ${family} ${name}`);
      try {
        return await list(['list', 'table', family, name]);
      } catch (err) {
        if (/Error: No such file or directory/.test((err as Error).message)) return null; // nft: no such table
        throw err;
      }
    },
    listTables: () => list(['list', 'tables']),
    apply(script) {
      const [file, args] = cmd(['-f', '-']);
      return new Promise((resolve, reject) => {
        const child = spawn(file, args, { stdio: ['pipe', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.stdin.on('error', () => undefined); // the exit status says how it went
        child.on('error', (err) => reject(nftFailed('-f', err)));
        child.on('close', (code) => (code === 0 ? resolve() : reject(nftFailed(`-f (exit ${code})`, new Error(`exit ${code}`), stderr))));
        child.stdin.end(script);
      });
    },
  };
}

/**
 * The nftables rule engine for TrafficRules: repairs by re-applying the whole
 * table, when the table differs from what nft listed after weft's last apply.
 * A dual-stack spec keeps two tables, `ip flannel-ipv4` and `ip6 flannel-ipv6`, each on its own.
 */
export class NftablesEngine implements RuleEngine {
  readonly kind = 'nftables';
  readonly backing = 'nf_tables';
  private readonly runner: NftRunner;
  private readonly log: Logger;
  /** Per table name: the last script applied and nft's listing of the table right after it. */
  private readonly applied = new Map<string, { script: string; listing: string }>();
  /** `masquerade fully-random` works here, until an apply shows it does not (kernels before 5.0, old nft). */
  private randomFully = true;

  constructor(options: { runner?: NftRunner; log?: Logger } = {}) {
    this.runner = options.runner ?? nftRunner();
    this.log = options.log ?? silentLogger();
  }

  async ensure(spec: TrafficRulesSpec): Promise<boolean> {
    let repaired = false;
    for (const one of familySpecs(spec)) repaired = (await this.ensureTable(one)) || repaired;
    return repaired;
  }

  /** Brings the table of the spec's family (one family: familySpecs) to the spec. */
  private async ensureTable(spec: TrafficRulesSpec): Promise<boolean> {
    const table = nftTableOf(spec);
    const script = nftTableScript(spec, (spec.randomFully ?? true) && this.randomFully);
    const listing = await this.runner.listTable(table.family, table.name);
    const applied = this.applied.get(table.name);
    if (script === null) {
      this.applied.delete(table.name);
      if (listing === null) return false;
      await this.runner.apply(nftDeleteScript([table]));
      return true;
    }
    if (listing !== null && applied?.script === script && applied.listing === listing) return false;
    const done = await this.apply(spec, script);
    const after = await this.runner.listTable(table.family, table.name);
    // A change made between the apply and the listing would otherwise be taken as weft's own: then the
    // listing is not trusted and the next check applies again (the kernel reports that change).
    const expected = nftRuleCount(done);
    if (after !== null && nftRuleCount(after) === expected) this.applied.set(table.name, { script: done, listing: after });
    else this.applied.delete(table.name);
    return true;
  }

  /** Applies `script`; without `fully-random` when the kernel or nft refuses it. Returns the script applied. */
  private async apply(spec: TrafficRulesSpec, script: string): Promise<string> {
    try {
      await this.runner.apply(script);
      return script;
    } catch (err) {
      if (!script.includes('fully-random')) throw err;
      const plain = nftTableScript(spec, false)!;
      await this.runner.apply(plain);
      this.randomFully = false;
      this.log.warn(`nftables: masquerade fully-random refused (${(err as Error).message}); masquerading without it`);
      return plain;
    }
  }
}

/** Removes flannel's nftables tables (`flannel-ipv4`, `flannel-ipv6`), weft's or flanneld's; true when there were any. */
export async function removeNftTables(runner: NftRunner = nftRunner()): Promise<boolean> {
  const present = new Set((await runner.listTables()).split('\n').map((l) => l.trim()));
  const tables = ([4, 6] as const).map((f) => ({ family: NFT_FAMILY[f], name: NFT_TABLES[f] })).filter((t) => present.has(`table ${t.family} ${t.name}`));
  if (tables.length === 0) return false;
  await runner.apply(nftDeleteScript(tables));
  return true;
}
