import { expect } from 'chai';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NftChange } from '../kernel/kernel.js';
import { TrafficRules } from '../kernel/iptables.js';
import { NftablesEngine, nftDeleteScript, nftRuleCount, nftTableScript, removeNftTables, type NftRunner } from '../kernel/nftables.js';
import { Subnet } from '../common/subnet.js';
import { isWeftError } from '../common/errors.js';
import { eventually } from './harness/netns.js';

const N = Subnet.parse('10.244.0.0/16');
const S = Subnet.parse('10.244.3.0/24');
const spec = { network: N, subnet: S, ipMasq: true, forwardRules: true };

/**
 * An nft stand-in: applies scripts of the forms weft writes (`table F N`,
 * `delete table F N`, `table F N { ... }`) all or nothing, and lists a table
 * the way nft 1.0 prints it (marks as 0x%08x), which differs from the script.
 */
class FakeNft implements NftRunner {
  tables = new Map<string, string[]>([['inet other', ['\tchain input {', '\t\ttype filter hook input priority filter; policy accept;', '\t\ttcp dport 22 accept', '\t}']]]);
  scripts: string[] = [];
  lists = 0;
  /** Refuse `fully-random` as an old kernel does. */
  noRandomFully = false;
  /** Runs between an apply and the next listing: a change by someone else at the worst moment. */
  afterApply: (() => void) | null = null;

  async listTable(family: string, name: string): Promise<string | null> {
    this.lists++;
    const body = this.tables.get(`${family} ${name}`);
    return body ? [`table ${family} ${name} {`, ...body.map((l) => l.replace(/0x4000/g, '0x00004000')), '}', ''].join('\n') : null;
  }

  async listTables(): Promise<string> {
    return [...this.tables.keys()].map((k) => `table ${k}\n`).join('');
  }

  async apply(script: string): Promise<void> {
    if (this.noRandomFully && script.includes('fully-random')) throw new Error('Error: Could not process rule: Operation not supported');
    this.scripts.push(script);
    const next = new Map(this.tables);
    const lines = script.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!;
      let m: RegExpExecArray | null;
      if ((m = /^table (\S+ \S+) \{$/.exec(line))) {
        const body: string[] = [];
        while (lines[++i] !== '}') body.push(lines[i]!);
        next.set(m[1]!, body);
      } else if ((m = /^delete table (\S+ \S+)$/.exec(line))) {
        if (!next.delete(m[1]!)) throw new Error(`Error: No such file or directory: ${line}`);
      } else if ((m = /^table (\S+ \S+)$/.exec(line))) {
        if (!next.has(m[1]!)) next.set(m[1]!, []);
      } else if (line !== '') throw new Error(`Error: syntax error: ${line}`);
    }
    this.tables = next;
    this.afterApply?.();
    this.afterApply = null;
  }

  rules(): string[] {
    return (this.tables.get('ip flannel-ipv4') ?? []).filter((l) => l.startsWith('\t\t') && !l.includes(' hook '));
  }
}

describe('nftables script (unit)', () => {
  it("builds flannel's table, chains and the iptables rules' meaning, replacing weft's own table in one script", () => {
    expect(nftTableScript(spec)).to.equal(
      [
        'table ip flannel-ipv4',
        'delete table ip flannel-ipv4',
        'table ip flannel-ipv4 {',
        '\tchain postrtg {',
        '\t\ttype nat hook postrouting priority srcnat; policy accept;',
        '\t\tmeta mark & 0x4000 == 0x4000 return',
        '\t\tip saddr 10.244.3.0/24 ip daddr 10.244.0.0/16 return',
        '\t\tip saddr 10.244.0.0/16 ip daddr 10.244.3.0/24 return',
        '\t\tip saddr != 10.244.0.0/16 ip daddr 10.244.3.0/24 return',
        '\t\tip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random',
        '\t\tip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random',
        '\t}',
        '\tchain forward {',
        '\t\ttype filter hook forward priority filter; policy accept;',
        '\t\tip saddr 10.244.0.0/16 accept',
        '\t\tip daddr 10.244.0.0/16 accept',
        '\t}',
        '}',
        '',
      ].join('\n'),
    );
  });

  it('honours --ip-masq, the forward rules option and --ip-masq-fully-random-disable; nothing wanted is no table', () => {
    const masqOnly = nftTableScript({ ...spec, forwardRules: false, randomFully: false })!;
    expect(masqOnly).to.include('chain postrtg').and.not.include('chain forward').and.not.include('fully-random');
    expect(masqOnly).to.include('ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade\n');
    const forwardOnly = nftTableScript({ ...spec, ipMasq: false })!;
    expect(forwardOnly).to.include('chain forward').and.not.include('chain postrtg');
    expect(nftTableScript({ ...spec, ipMasq: false, forwardRules: false })).to.equal(null);
  });

  it('names no table but its own', () => {
    for (const s of [spec, { ...spec, ipMasq: false }, { ...spec, forwardRules: false }]) {
      const tables = nftTableScript(s)!.split('\n').filter((l) => /^(delete )?table /.test(l));
      expect(tables).to.have.length(3);
      for (const t of tables) expect(t).to.match(/^(delete )?table ip flannel-ipv4( \{)?$/);
    }
    expect(nftDeleteScript([{ family: 'ip', name: 'flannel-ipv4' }])).to.equal('table ip flannel-ipv4\ndelete table ip flannel-ipv4\n');
  });

  it('an IPv6 Network goes to ip6 flannel-ipv6, with IPv6 multicast left alone', () => {
    const script = nftTableScript({ network: Subnet.parse('fd00:10::/56'), subnet: Subnet.parse('fd00:10:0:3::/64'), ipMasq: true, forwardRules: true })!;
    expect(script.split('\n').slice(0, 3)).to.deep.equal(['table ip6 flannel-ipv6', 'delete table ip6 flannel-ipv6', 'table ip6 flannel-ipv6 {']);
    expect(script).to.include('ip6 saddr fd00:10::/56 ip6 daddr != ff00::/8 masquerade fully-random');
    expect(script).to.include('ip6 saddr != fd00:10::/56 ip6 daddr fd00:10:0:3::/64 return');
    expect(script).to.include('ip6 daddr fd00:10::/56 accept');
  });

  it('validates every value that reaches nft: a CIDR that is not one, or families that differ, never make a script', () => {
    const forged = (text: string, family: 4 | 6 = 4) => ({ family, toString: () => text }) as unknown as Subnet;
    const bad = [
      { ...spec, network: forged('10.244.0.0/16 accept; delete table ip filter') },
      { ...spec, subnet: forged('10.244.3.0/24\ntable ip filter') },
      { ...spec, subnet: Subnet.parse('fd00::/64') },
      { ...spec, ipMasq: false, network: forged('10.0.0.0/8 }') },
    ];
    for (const [i, s] of bad.entries()) {
      let err: unknown;
      try {
        nftTableScript(s);
      } catch (e) {
        err = e;
      }
      expect(isWeftError(err, 'WEFT_ERR_ADDRESS_INVALID'), `case ${i}: ${String(err)}`).to.equal(true);
    }
  });

  it("counts the rules of nft's listing", () => {
    const listing = [
      'table ip flannel-ipv4 {',
      '\tchain postrtg {',
      '\t\ttype nat hook postrouting priority srcnat; policy accept;',
      '\t\tmeta mark & 0x00004000 == 0x00004000 return',
      '\t}',
      '',
      '\tchain forward {',
      '\t\tcomment "chain to accept flannel traffic"',
      '\t\ttype filter hook forward priority filter; policy accept;',
      '\t\tip saddr 10.244.0.0/16 accept',
      '\t\tip daddr 10.244.0.0/16 accept',
      '\t}',
      '}',
    ].join('\n');
    expect(nftRuleCount(listing)).to.equal(3);
    expect(nftRuleCount(nftTableScript(spec)!), 'the script counts alike').to.equal(8);
  });
});

describe('nftables engine (unit)', () => {
  it('applies once, then only lists while the table is as applied', async () => {
    const nft = new FakeNft();
    const engine = new NftablesEngine({ runner: nft });
    expect(await engine.ensure(spec)).to.equal(true);
    expect(nft.rules()).to.have.length(8);
    expect(await engine.ensure(spec)).to.equal(false);
    expect(await engine.ensure(spec)).to.equal(false);
    expect(nft.scripts).to.have.length(1);
    expect(nft.tables.get('inet other'), 'the other table untouched').to.have.length(4);
  });

  it('re-applies when a rule or the whole table was deleted, or when the spec changed', async () => {
    const nft = new FakeNft();
    const engine = new NftablesEngine({ runner: nft });
    await engine.ensure(spec);
    const body = nft.tables.get('ip flannel-ipv4')!;
    body.splice(body.findIndex((l) => l.includes('masquerade')), 1);
    expect(await engine.ensure(spec)).to.equal(true);
    expect(nft.rules()).to.have.length(8);
    nft.tables.delete('ip flannel-ipv4');
    expect(await engine.ensure(spec)).to.equal(true);
    expect(nft.rules()).to.have.length(8);
    const moved = { ...spec, subnet: Subnet.parse('10.244.9.0/24'), forwardRules: false };
    expect(await engine.ensure(moved)).to.equal(true);
    expect(nft.rules().join('\n')).to.include('10.244.9.0/24').and.not.include('10.244.3.0/24').and.not.include('accept\n');
    expect(nft.rules()).to.have.length(6);
    expect(nft.scripts, 'one apply each').to.have.length(4);
  });

  it('with every rule switched off, deletes its table, and only if there is one', async () => {
    const nft = new FakeNft();
    const engine = new NftablesEngine({ runner: nft });
    await engine.ensure(spec);
    const none = { ...spec, ipMasq: false, forwardRules: false };
    expect(await engine.ensure(none)).to.equal(true);
    expect(nft.tables.has('ip flannel-ipv4')).to.equal(false);
    expect(await engine.ensure(none)).to.equal(false);
    expect(nft.tables.has('inet other')).to.equal(true);
  });

  it('a change made between its apply and its listing is not taken for its own: the next check applies again', async () => {
    const nft = new FakeNft();
    const engine = new NftablesEngine({ runner: nft });
    nft.afterApply = () => nft.tables.get('ip flannel-ipv4')!.splice(3, 1);
    expect(await engine.ensure(spec)).to.equal(true);
    expect(nft.rules()).to.have.length(7);
    expect(await engine.ensure(spec)).to.equal(true);
    expect(nft.rules()).to.have.length(8);
    expect(await engine.ensure(spec)).to.equal(false);
  });

  it('masquerades without fully-random where it is refused, and says so once', async () => {
    const nft = new FakeNft();
    nft.noRandomFully = true;
    const warnings: string[] = [];
    const log = { info: () => undefined, warn: (m: string) => warnings.push(m), error: () => undefined, debug: () => undefined } as never;
    const engine = new NftablesEngine({ runner: nft, log });
    expect(await engine.ensure(spec)).to.equal(true);
    expect(nft.rules().filter((r) => r.includes('masquerade'))).to.deep.equal(['\t\tip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade', '\t\tip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade']);
    expect(await engine.ensure(spec)).to.equal(false);
    nft.tables.delete('ip flannel-ipv4');
    expect(await engine.ensure(spec)).to.equal(true);
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.match(/^nftables: masquerade fully-random refused/);
  });

  it('dual-stack: keeps ip flannel-ipv4 and ip6 flannel-ipv6, each applied only when it differs', async () => {
    const nft = new FakeNft();
    const engine = new NftablesEngine({ runner: nft });
    const dual = { ...spec, ipv6: { network: Subnet.parse('fd00:10:244::/48'), subnet: Subnet.parse('fd00:10:244:3::/64') } };
    expect(await engine.ensure(dual)).to.equal(true);
    expect([...nft.tables.keys()]).to.deep.equal(['inet other', 'ip flannel-ipv4', 'ip6 flannel-ipv6']);
    expect(nft.tables.get('ip6 flannel-ipv6')!.join('\n')).to.include('ip6 saddr fd00:10:244::/48 ip6 daddr != ff00::/8 masquerade fully-random').and.not.include('10.244.');
    expect(nft.tables.get('ip flannel-ipv4')!.join('\n')).to.not.include('fd00');
    expect(await engine.ensure(dual)).to.equal(false);
    expect(nft.scripts).to.have.length(2);
    // The IPv6 table deleted by hand: re-applied alone.
    nft.tables.delete('ip6 flannel-ipv6');
    expect(await engine.ensure(dual)).to.equal(true);
    expect(nft.scripts).to.have.length(3);
    expect(nft.scripts[2]).to.match(/^table ip6 flannel-ipv6\n/).and.not.include('flannel-ipv4');
    expect(await engine.ensure(dual)).to.equal(false);
    // IPv6-only: the IPv6 Network is the spec's own.
    const only6 = new NftablesEngine({ runner: new FakeNft() });
    expect(await only6.ensure({ ...spec, network: dual.ipv6.network, subnet: dual.ipv6.subnet })).to.equal(true);
  });

  it("cleanup removes flannel's tables, IPv4 and IPv6, whoever made them, and nothing else", async () => {
    const nft = new FakeNft();
    expect(await removeNftTables(nft)).to.equal(false);
    expect(nft.scripts, 'nothing to remove, nothing applied').to.deep.equal([]);
    nft.tables.set('ip flannel-ipv4', []);
    nft.tables.set('ip6 flannel-ipv6', []);
    nft.tables.set('ip flannel-ipv4-not', []);
    expect(await removeNftTables(nft)).to.equal(true);
    expect([...nft.tables.keys()]).to.deep.equal(['inet other', 'ip flannel-ipv4-not']);
    expect(nft.scripts).to.have.length(1);
  });
});

/** A kernel stand-in that only reports nf_tables changes. */
class ReportingKernel {
  readonly listeners = new Set<(change: NftChange) => void>();
  nftMonitor(listener: (change: NftChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  report(change: NftChange): void {
    for (const l of this.listeners) l(change);
  }
}

describe('nftables rules kept in place (unit)', () => {
  it('the keeper restores a deleted table at the reported change, removes the other kind first, and reports nftables', async () => {
    const nft = new FakeNft();
    let otherRemovals = 0;
    const keeper = new TrafficRules(spec, {
      intervalMs: 3_600_000,
      engine: new NftablesEngine({ runner: nft }),
      removeOther: async () => {
        otherRemovals++;
        return true;
      },
    });
    expect(keeper.kind).to.equal('nftables');
    const kernel = new ReportingKernel();
    const ac = new AbortController();
    const running = keeper.run(ac.signal);
    try {
      await eventually(async () => keeper.inPlace, 2000, 'rules installed');
      expect(keeper.backing).to.equal('nf_tables');
      keeper.follow(kernel, ac.signal);
      expect(keeper.periodMs(), 'changes are reported: the long period').to.be.above(3_000);
      await sleep(300);
      const lists = nft.lists;
      nft.tables.delete('ip flannel-ipv4');
      kernel.report({ kind: 'newgen' });
      await eventually(async () => nft.tables.has('ip flannel-ipv4'), 2000, 'table restored');
      expect(nft.rules()).to.have.length(8);
      expect(nft.lists - lists, 'one check: one listing before the apply, one after').to.equal(2);
      expect(keeper.repairs).to.equal(2);
      expect(otherRemovals, 'the other kind removed once').to.equal(1);
    } finally {
      ac.abort();
      await running;
    }
  });
});
