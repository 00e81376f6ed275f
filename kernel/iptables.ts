import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { posix } from 'node:path';
import { promisify } from 'node:util';
import { Wakeup, runPeriodically } from '../common/periodic.js';
import { silentLogger, type Logger } from '../common/log.js';
import type { Subnet } from '../common/subnet.js';
import { WeftError } from '../common/errors.js';
import { DEFAULT_ETCD_PREFIX } from '../common/defaults.js';
import { isToolMissing } from './nftables.js';
import type { Family, NftMonitor } from './kernel.js';

/**
 * flannel's iptables rule sets, byte-identical (chains, order and comments),
 * so flanneld and weft each recognise and clean the other's rules. An IPv6
 * Network gets the same set through ip6tables (flannel's ip6tables rules:
 * the same chains and comments, IPv6 multicast `ff00::/8`). Kept in
 * place by a check that reads the tables with one `iptables-save` and
 * repairs with one `iptables-restore --noflush` transaction, never one exec
 * per rule.
 *
 * When the check runs: every --iptables-resync seconds (flannel's way), or,
 * where the rules live in nf_tables (iptables-nft, which iptables-save names
 * in its header) and the kernel reports ruleset changes (`follow`), at each
 * reported change and every SAFETY_NET_MS besides. Each check forks an
 * iptables-save, which costs a large daemon noticeable CPU: checking only
 * when told keeps weftd's idle CPU low.
 */

/** The check's period when ruleset changes are reported: a net for a change that was never reported. */
export const SAFETY_NET_MS = 60_000;
/** A burst of ruleset changes (Docker or kube-proxy rewriting their chains) is checked once, after this quiet time. */
const CHANGE_SETTLE_MS = 100;

export const MASQ_COMMENT = 'flanneld masq';
export const FORWARD_COMMENT = 'flanneld forward';
const MASQ_CHAIN = 'FLANNEL-POSTRTG';
const FORWARD_CHAIN = 'FLANNEL-FWD';

/** The two chains one daemon keeps its rules in. */
export interface TrafficChains {
  readonly masq: string;
  readonly forward: string;
}

/** flannel's own chain names. */
export const FLANNEL_CHAINS: TrafficChains = { masq: MASQ_CHAIN, forward: FORWARD_CHAIN };

/**
 * The chains of the daemon serving `etcdPrefix`: flannel's names for the
 * default prefix, so that flanneld and weft keep sharing them; for any other,
 * the names with `-` and 8 hex digits of the prefix's SHA-256 (at most 24
 * characters, within iptables' 28). Two daemons on one host (flannel's way to
 * run two networks: one etcd prefix each) thus never flush each other's chain.
 */
export function trafficChains(etcdPrefix: string): TrafficChains {
  // As flannel builds its keys (Go's path.Join): duplicate and trailing slashes do not count.
  const prefix = posix.normalize(etcdPrefix).replace(/(.)\/$/, '$1');
  if (prefix === DEFAULT_ETCD_PREFIX) return FLANNEL_CHAINS;
  const tag = createHash('sha256').update(prefix).digest('hex').slice(0, 8).toUpperCase();
  return { masq: `${MASQ_CHAIN}-${tag}`, forward: `${FORWARD_CHAIN}-${tag}` };
}

interface RuleSet {
  readonly table: 'nat' | 'filter';
  readonly hook: 'POSTROUTING' | 'FORWARD';
  readonly chain: string;
  /** flannel's name of this kind of chain: every daemon's chain of the kind is this, or this and a suffix. */
  readonly family: string;
  readonly comment: string;
  /** Rule specs in `iptables-save` form, without `-A CHAIN`. */
  readonly rules: readonly string[];
  /** The Network the rules are for: a sibling chain whose rules are all for it is a leftover, removed. */
  readonly network?: string;
}

/** One address family's Network and the node's subnet in it. */
export interface FamilyNetwork {
  readonly network: Subnet;
  readonly subnet: Subnet;
}

export interface TrafficRulesSpec {
  /** The Network (IPv4; IPv6 for an IPv6-only config) and the node's subnet in it. */
  readonly network: Subnet;
  readonly subnet: Subnet;
  /**
   * A dual-stack config's IPv6 Network and subnet: the same rules again,
   * through ip6tables (nftables: table ip6 flannel-ipv6). Without it no IPv6
   * rules are read or written.
   */
  readonly ipv6?: FamilyNetwork | null;
  readonly ipMasq: boolean;
  readonly forwardRules: boolean;
  /** Append `--random-fully` to MASQUERADE (iptables ≥ 1.6.2). */
  readonly randomFully?: boolean;
  /** Where the rules live (trafficChains); flannel's chains when absent. */
  readonly chains?: TrafficChains;
}

/** Multicast, which pods send without masquerading, by family. */
const MULTICAST = { 4: '224.0.0.0/4', 6: 'ff00::/8' } as const;

export function masqRuleSet(network: Subnet, subnet: Subnet, randomFully = true, chain = MASQ_CHAIN): RuleSet {
  const c = `-m comment --comment "${MASQ_COMMENT}"`;
  const masq = `-j MASQUERADE${randomFully ? ' --random-fully' : ''}`;
  const [n, s] = [network.toString(), subnet.toString()];
  const multicast = MULTICAST[network.family];
  return {
    table: 'nat',
    hook: 'POSTROUTING',
    chain,
    family: MASQ_CHAIN,
    comment: MASQ_COMMENT,
    network: n,
    rules: [
      `-m mark --mark 0x4000/0x4000 ${c} -j RETURN`, // marked by kube-proxy: it masquerades, avoid double NAT
      `-s ${s} -d ${n} ${c} -j RETURN`, // local pods -> cluster: no NAT
      `-s ${n} -d ${s} ${c} -j RETURN`, // cluster -> local pods: no NAT
      `! -s ${n} -d ${s} ${c} -j RETURN`, // external -> local pods: keep the client's source
      `-s ${n} ! -d ${multicast} ${c} ${masq}`, // pods -> outside the overlay
      `! -s ${n} -d ${n} ${c} ${masq}`, // host -> remote pods
    ],
  };
}

export function forwardRuleSet(network: Subnet, chain = FORWARD_CHAIN): RuleSet {
  const c = `-m comment --comment "${FORWARD_COMMENT}"`;
  return {
    table: 'filter',
    hook: 'FORWARD',
    chain,
    family: FORWARD_CHAIN,
    comment: FORWARD_COMMENT,
    network: network.toString(),
    rules: [`-s ${network} ${c} -j ACCEPT`, `-d ${network} ${c} -j ACCEPT`],
  };
}

function emptyMasq(chain = MASQ_CHAIN, network?: string): RuleSet {
  return { table: 'nat', hook: 'POSTROUTING', chain, family: MASQ_CHAIN, comment: MASQ_COMMENT, rules: [], ...(network ? { network } : {}) };
}

function emptyForward(chain = FORWARD_CHAIN, network?: string): RuleSet {
  return { table: 'filter', hook: 'FORWARD', chain, family: FORWARD_CHAIN, comment: FORWARD_COMMENT, rules: [], ...(network ? { network } : {}) };
}

/**
 * The spec of each address family, one family each: the spec itself (its
 * `network` and `subnet`), then, for dual stack, the same options with the
 * IPv6 Network and subnet.
 */
export function familySpecs(spec: TrafficRulesSpec): TrafficRulesSpec[] {
  const first = { ...spec, ipv6: null };
  return spec.ipv6 ? [first, { ...first, network: spec.ipv6.network, subnet: spec.ipv6.subnet }] : [first];
}

/**
 * The rule sets a spec wants of its `network`'s family (familySpecs splits a
 * dual-stack spec); a disabled set is wanted empty, so switching an option
 * off removes its rules.
 */
export function desiredRuleSets(spec: TrafficRulesSpec): RuleSet[] {
  const chains = spec.chains ?? FLANNEL_CHAINS;
  return [
    spec.ipMasq ? masqRuleSet(spec.network, spec.subnet, spec.randomFully ?? true, chains.masq) : emptyMasq(chains.masq, spec.network.toString()),
    spec.forwardRules ? forwardRuleSet(spec.network, chains.forward) : emptyForward(chains.forward, spec.network.toString()),
  ];
}

/** `iptables-save` output as table -> chain names and `-A` lines. */
interface SavedTable {
  readonly chains: Set<string>;
  readonly lines: string[];
}

export function parseIptablesSave(text: string): Map<string, SavedTable> {
  const tables = new Map<string, SavedTable>();
  let current: SavedTable | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('*')) {
      current = { chains: new Set(), lines: [] };
      tables.set(line.slice(1).trim(), current);
    } else if (current && line.startsWith(':')) current.chains.add(line.slice(1).split(' ')[0]!);
    else if (current && line.startsWith('-A ')) current.lines.push(line);
  }
  return tables;
}

/**
 * The `iptables-restore --noflush` payload that brings the tables from
 * `saved` to `desired`, or null when they already match. Declaring our chain
 * flushes it, so stale rules (an old subnet, an older rule variant) go with it.
 * Another daemon's chain of the same kind (trafficChains) and its jump are
 * left alone, unless every rule in it is for our Network: then it is a
 * leftover of a daemon that served this network before (flanneld, or weft
 * under another etcd prefix), and goes.
 */
export function planRepair(saved: Map<string, SavedTable>, desired: readonly RuleSet[]): string | null {
  const blocks: string[] = [];
  const deleted = new Set<string>();
  for (const set of desired) {
    const table = saved.get(set.table) ?? { chains: new Set<string>(), lines: [] };
    const ours = table.lines.filter((l) => l.startsWith(`-A ${set.chain} `)).map((l) => l.slice(`-A ${set.chain} `.length));
    const jump = jumpRule(set);
    const jumps = table.lines.filter((l) => l === jump).length;
    const siblings = [...table.chains].filter((c) => c !== set.chain && (c === set.family || c.startsWith(`${set.family}-`)));
    const leftovers = siblings.filter((c) => isLeftover(table.lines.filter((l) => l.startsWith(`-A ${c} `)), set));
    const others = new Set(siblings.filter((c) => !leftovers.includes(c)).map((c) => jumpRule({ ...set, chain: c })));
    // Other rules in the hook chain carrying our comment (older variants, a leftover's jump), to be deleted;
    // another daemon's jump is not one of them.
    const strays = table.lines.filter(
      (l) => l.startsWith(`-A ${set.hook} `) && l.includes(`--comment "${set.comment}"`) && l !== jump && !others.has(l) && !deleted.has(`${set.table} ${l}`),
    );
    for (const l of strays) deleted.add(`${set.table} ${l}`);
    const want = set.rules.length > 0;
    const inPlace =
      leftovers.length === 0 &&
      (want
        ? table.chains.has(set.chain) && jumps === 1 && strays.length === 0 && sameList(ours, set.rules)
        : !table.chains.has(set.chain) && jumps === 0 && strays.length === 0);
    if (inPlace) continue;
    const out = [`*${set.table}`];
    for (const l of strays) out.push(l.replace(/^-A /, '-D '));
    for (const c of leftovers) out.push(`-F ${c}`, `-X ${c}`);
    if (want) {
      out.push(`:${set.chain} - [0:0]`);
      for (let i = 1; i < jumps; i++) out.push(jump.replace(/^-A /, '-D '));
      if (jumps === 0) out.push(jump);
      for (const r of set.rules) out.push(`-A ${set.chain} ${r}`);
    } else {
      for (let i = 0; i < jumps; i++) out.push(jump.replace(/^-A /, '-D '));
      if (table.chains.has(set.chain)) out.push(`-F ${set.chain}`, `-X ${set.chain}`);
    }
    out.push('COMMIT');
    blocks.push(out.join('\n'));
  }
  return blocks.length > 0 ? blocks.join('\n') + '\n' : null;
}

function jumpRule(set: Pick<RuleSet, 'hook' | 'comment' | 'chain'>): string {
  return `-A ${set.hook} -m comment --comment "${set.comment}" -j ${set.chain}`;
}

/** A chain whose every rule is for `set`'s Network (kube-proxy's mark rule aside), and which has at least one such rule. */
function isLeftover(lines: readonly string[], set: RuleSet): boolean {
  if (!set.network) return false;
  const forNetwork = (l: string) => l.includes(` ${set.network} `);
  return lines.some(forNetwork) && lines.every((l) => forNetwork(l) || l.includes(' -m mark --mark 0x4000/0x4000 '));
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * One kind of rules TrafficRules keeps in place: iptables (flannel's chains,
 * below) or nftables (flannel's tables, kernel/nftables.ts).
 */
export interface RuleEngine {
  readonly kind: 'iptables' | 'nftables';
  /** What the last check found the rules to be backed by, or null when not known yet. */
  readonly backing: 'nf_tables' | 'legacy' | null;
  /** Reads the kernel's rules and, only when they differ from `spec`, repairs them; true when a repair was applied. */
  ensure(spec: TrafficRulesSpec): Promise<boolean>;
}

/**
 * flannel's iptables chains, read with one iptables-save and repaired with
 * one iptables-restore per family: ip6tables-save and ip6tables-restore for
 * the IPv6 Network, only when the spec has one.
 */
export class IptablesEngine implements RuleEngine {
  readonly kind = 'iptables';
  backing: 'nf_tables' | 'legacy' | null = null;
  constructor(
    private readonly runner: IptablesRunner = iptablesRunner(),
    private readonly runner6: IptablesRunner = iptablesRunner(undefined, 6),
  ) {}

  async ensure(spec: TrafficRulesSpec): Promise<boolean> {
    let repaired = false;
    for (const one of familySpecs(spec)) {
      const runner = one.network.family === 6 ? this.runner6 : this.runner;
      const saved = await runner.save();
      this.backing = iptablesBacking(saved) ?? this.backing;
      const payload = planRepair(parseIptablesSave(saved), desiredRuleSets(one));
      if (payload) await runner.restore(payload);
      repaired ||= payload !== null;
    }
    return repaired;
  }
}

/** How weft runs iptables: injectable so the planning logic is testable without a kernel. */
export interface IptablesRunner {
  save(): Promise<string>;
  restore(payload: string): Promise<void>;
}

const execFileP = promisify(execFile);

/**
 * Runs the system's iptables-save / iptables-restore (ip6tables-save /
 * ip6tables-restore for `family` 6), in the current network namespace, or
 * (for tests) inside `netns` through `ip netns exec`.
 */
export function iptablesRunner(netns?: string, family: Family = 4): IptablesRunner {
  const cmd = (tool: string, args: string[]): [string, string[]] => (netns ? ['ip', ['netns', 'exec', netns, tool, ...args]] : [tool, args]);
  const tool = family === 6 ? 'ip6tables' : 'iptables';
  return {
    async save() {
      const [file, args] = cmd(`${tool}-save`, []);
      try {
        return (await execFileP(file, args, { maxBuffer: 64 << 20 })).stdout;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new WeftError('WEFT_ERR_KERNEL', `${tool}-save not found in PATH`, { cause: err });
        throw new WeftError('WEFT_ERR_KERNEL', `${tool}-save failed: ${(err as Error).message}`, { cause: err });
      }
    },
    restore(payload: string) {
      const [file, args] = cmd(`${tool}-restore`, ['--noflush', '--wait']);
      return new Promise((resolve, reject) => {
        const child = spawn(file, args, { stdio: ['pipe', 'ignore', 'pipe'] });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', (err) => reject(new WeftError('WEFT_ERR_KERNEL', `${tool}-restore failed: ${err.message}`, { cause: err })));
        child.on('close', (code) => (code === 0 ? resolve() : reject(new WeftError('WEFT_ERR_KERNEL', `${tool}-restore failed (${code}): ${stderr.trim()}`))));
        child.stdin.end(payload);
      });
    },
  };
}

/**
 * Keeps flannel's masquerade and forward rules in place: ensure() once, then
 * every `intervalMs` a read of the tables and, only when something differs,
 * one repair transaction. The rule engine says which kind: iptables (here) or
 * nftables (kernel/nftables.ts); when the checks run is the same for both.
 */
export class TrafficRules {
  private spec: TrafficRulesSpec;
  private readonly log: Logger;
  repairs = 0;
  errors = 0;
  /** True once the tables were found, or made, as the current spec wants them. */
  inPlace = false;
  /** What the last check found iptables to be backed by: nf_tables, legacy, or not known yet (empty tables). */
  backing: 'nf_tables' | 'legacy' | null = null;
  /** Ruleset changes are being reported (`follow`). */
  private following = false;
  /** The absence of the iptables tools was logged. */
  private toldMissing = false;
  /** Why the kernel's listener cannot report ruleset changes, once it said so (then the short period stays). */
  private unwatched: string | null = null;
  private readonly wakeup = new Wakeup();
  private readonly engine: RuleEngine;
  /** `--iptables-resync`: the check period while ruleset changes are not reported. */
  private readonly intervalMs: number;
  /** Removes the other kind's rules (left by a run in the other mode), at the first check. */
  private removeOther: (() => Promise<boolean>) | null;

  /**
   * `engine` says which kind of rules (iptables by default, through `runner`,
   * and `runner6` for IPv6); `removeOther`, which only weftd passes, removes the other kind's.
   */
  constructor(
    spec: TrafficRulesSpec,
    options: { intervalMs: number; runner?: IptablesRunner; runner6?: IptablesRunner; engine?: RuleEngine; removeOther?: () => Promise<boolean>; log?: Logger },
  ) {
    this.spec = spec;
    this.intervalMs = options.intervalMs;
    this.engine = options.engine ?? new IptablesEngine(options.runner ?? iptablesRunner(), options.runner6 ?? iptablesRunner(undefined, 6));
    this.removeOther = options.removeOther ?? null;
    this.log = options.log ?? silentLogger();
  }

  /** Which kind of rules this keeper keeps. */
  get kind(): RuleEngine['kind'] {
    return this.engine.kind;
  }

  /**
   * The other kind's rules go beside the first check (they are other tables, so the two do not
   * wait for each other). Tried once: rules left behind do not hold the node's own rules up.
   */
  private async removeOtherOnce(): Promise<void> {
    const remove = this.removeOther;
    if (!remove) return;
    this.removeOther = null;
    const other = this.kind === 'iptables' ? 'nftables' : 'iptables';
    try {
      if (await remove()) this.log.info(`removed the ${other} rules of an earlier run in ${other} mode`);
    } catch (err) {
      this.log.warn(`could not remove the ${other} rules of an earlier run: ${(err as Error).message}`);
    }
  }

  /** Changes the wanted rules (a new lease); the next ensure() moves the tables over. */
  update(spec: TrafficRulesSpec): void {
    this.spec = spec;
    this.inPlace = false;
  }

  /**
   * Checks the tables and repairs them; true when a repair was applied.
   * Without the tools (iptables, or nft), no rules wanted (masquerade and
   * forward rules off) counts as in place: there are none to keep, and none
   * can be left.
   */
  async ensure(): Promise<boolean> {
    const spec = this.spec;
    const removing = this.removeOtherOnce();
    let repaired: boolean;
    try {
      repaired = await this.engine.ensure(spec);
    } catch (err) {
      await removing;
      if (!isToolMissing(err) || spec.ipMasq || spec.forwardRules) throw err;
      if (!this.toldMissing) this.log.info(`${this.kind} tools not found: no rules asked for (--ip-masq and --iptables-forward-rules off), none kept`);
      this.toldMissing = true;
      if (spec === this.spec) this.inPlace = true;
      return false;
    }
    await removing;
    this.backing = this.engine.backing ?? this.backing;
    if (repaired) this.repairs++;
    if (spec === this.spec) this.inPlace = true;
    return repaired;
  }

  /**
   * Checks after every nf_tables ruleset change the kernel reports
   * (`nft monitor`), from now until `signal` aborts; a lost report
   * (`overrun`) counts as a change. The subscription starts the kernel's
   * listener if nothing else has.
   */
  follow(kernel: NftMonitor, signal: AbortSignal): void {
    if (signal.aborted || this.following) return;
    const unsubscribe = kernel.nftMonitor((change) => {
      if (change.kind === 'unwatched') this.notWatched(change.why);
      else this.changed();
    });
    this.following = true;
    // Rules may have changed while nobody listened.
    this.changed();
    signal.addEventListener(
      'abort',
      () => {
        unsubscribe();
        this.following = false;
      },
      { once: true },
    );
  }

  /** The wait before the next check: long only while every change that matters is reported. */
  periodMs(): number {
    return this.changesReported() ? Math.max(this.intervalMs, SAFETY_NET_MS) : this.intervalMs;
  }

  /** Every change that matters is reported: the rules live in nf_tables and the listener watches it. */
  private changesReported(): boolean {
    return this.following && this.unwatched === null && this.backing === 'nf_tables';
  }

  /** The listener cannot subscribe to nf_tables: back to checking every `--iptables-resync`, said once. */
  private notWatched(why: string): void {
    if (this.unwatched !== null) return;
    this.unwatched = why;
    this.log.warn(`nf_tables ruleset changes are not reported (${why}); ${this.kind} rules are checked every ${this.intervalMs / 1000} s`);
    this.changed();
  }

  private changed(): void {
    this.wakeup.poke(CHANGE_SETTLE_MS);
  }

  /** Checks at once, then as `periodMs` and `follow` say; `onInPlace` runs when the rules first match the spec. */
  run(signal: AbortSignal, onInPlace?: () => void): Promise<void> {
    let first = true;
    let told = '';
    return runPeriodically(
      () => this.periodMs(),
      signal,
      async () => {
        const wasInPlace = this.inPlace;
        const repaired = await this.ensure();
        if (repaired && !first) this.log.warn(`${this.kind} rules were missing or stale; restored them`);
        else if (repaired) this.log.info(`${this.kind} rules installed`);
        first = false;
        if (!wasInPlace && this.inPlace) onInPlace?.();
        const period = this.periodMs();
        const what = this.kind === 'iptables' ? `iptables (${this.backing})` : 'nftables';
        const tell = this.changesReported()
          ? `${what}: rules checked at every ruleset change the kernel reports, and every ${period / 1000} s`
          : `${what}: rules checked every ${period / 1000} s`;
        if (this.following && this.backing && tell !== told) {
          told = tell;
          this.log.info(tell);
        }
      },
      (err) => {
        this.errors++;
        this.log.error(`${this.kind} check failed: ${err.message}`);
      },
      this.wakeup,
    );
  }
}

/**
 * Which kernel backend the saved tables came from, as iptables-save's header
 * says (`# Generated by iptables-nft-save v1.8.9 (nf_tables) on ...`), or
 * null when it printed no table at all.
 */
export function iptablesBacking(saved: string): 'nf_tables' | 'legacy' | null {
  const header = /^# Generated by .*$/m.exec(saved)?.[0];
  if (!header) return null;
  return header.includes('(nf_tables)') ? 'nf_tables' : 'legacy';
}

/**
 * Removes the rules and chains weft (or flanneld) added, identified by chain
 * name and comment: every daemon's, or with `only` one daemon's chains.
 */
export async function removeTrafficRules(runner: IptablesRunner = iptablesRunner(), only?: TrafficChains): Promise<boolean> {
  const tables = parseIptablesSave(await runner.save());
  const named = (table: string, family: string) => [...(tables.get(table)?.chains ?? [])].filter((c) => c.startsWith(`${family}-`));
  const sets = only
    ? [emptyMasq(only.masq), emptyForward(only.forward)]
    : [emptyMasq(), emptyForward(), ...named('nat', MASQ_CHAIN).map((c) => emptyMasq(c)), ...named('filter', FORWARD_CHAIN).map((c) => emptyForward(c))];
  // Each set leaves the others' jumps alone, so one plan removes them all.
  const payload = planRepair(tables, sets);
  if (payload) await runner.restore(payload);
  return payload !== null;
}

/**
 * removeTrafficRules for both families: the iptables chains and the
 * ip6tables ones (a dual-stack run's); true when either had any. Without
 * ip6tables there are no IPv6 rules to remove.
 */
export async function removeTrafficRulesBothFamilies(
  only?: TrafficChains,
  runners: readonly [IptablesRunner, IptablesRunner] = [iptablesRunner(), iptablesRunner(undefined, 6)],
): Promise<boolean> {
  const v4 = await removeTrafficRules(runners[0], only);
  const v6 = await removeTrafficRules(runners[1], only).catch((err: unknown) => (isToolMissing(err) ? false : Promise.reject(err)));
  return v4 || v6;
}
