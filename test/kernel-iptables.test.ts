import { expect } from 'chai';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NftChange } from '../kernel/kernel.js';
import type { Logger } from '../common/log.js';
import { FakeKernel } from '../kernel/kernel-fake.js';
import { FLANNEL_CHAINS, SAFETY_NET_MS, TrafficRules, familySpecs, iptablesBacking, parseIptablesSave, planRepair, desiredRuleSets, removeTrafficRules, removeTrafficRulesBothFamilies, trafficChains, type IptablesRunner } from '../kernel/iptables.js';
import { WeftError } from '../common/errors.js';
import { Subnet } from '../common/subnet.js';
import { eventually } from './harness/netns.js';

const N = Subnet.parse('10.244.0.0/16');
const S = Subnet.parse('10.244.3.0/24');

/** An iptables stand-in that applies restore payloads to a saved-text model (enough for planning logic). */
class FakeIptables implements IptablesRunner {
  tables = new Map<string, { chains: string[]; lines: string[] }>([
    ['nat', { chains: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'], lines: [] }],
    ['filter', { chains: ['INPUT', 'FORWARD', 'OUTPUT'], lines: [] }],
  ]);
  restores: string[] = [];
  saves = 0;
  /** The header iptables-save prints above each table (which names its backing), or none. */
  header: string | null = null;
  async save(): Promise<string> {
    this.saves++;
    const table = ([t, v]: [string, { chains: string[]; lines: string[] }]) => [...(this.header ? [this.header] : []), `*${t}`, ...v.chains.map((c) => `:${c} - [0:0]`), ...v.lines, 'COMMIT'];
    return [...this.tables].map((e) => table(e).join('\n')).join('\n') + '\n';
  }
  async restore(payload: string): Promise<void> {
    this.restores.push(payload);
    let t: { chains: string[]; lines: string[] } | undefined;
    for (const line of payload.trim().split('\n')) {
      if (line.startsWith('*')) t = this.tables.get(line.slice(1));
      else if (line.startsWith(':')) {
        const chain = line.slice(1).split(' ')[0]!;
        if (!t!.chains.includes(chain)) t!.chains.push(chain);
        t!.lines = t!.lines.filter((l) => !l.startsWith(`-A ${chain} `));
      } else if (line.startsWith('-A ')) t!.lines.push(line);
      else if (line.startsWith('-D ')) {
        const i = t!.lines.indexOf(line.replace(/^-D /, '-A '));
        if (i < 0) throw new Error(`no such rule: ${line}`);
        t!.lines.splice(i, 1);
      } else if (line.startsWith('-F ')) t!.lines = t!.lines.filter((l) => !l.startsWith(`-A ${line.slice(3)} `));
      else if (line.startsWith('-X ')) t!.chains = t!.chains.filter((c) => c !== line.slice(3));
    }
  }
}

describe('iptables rule planning (unit)', () => {
  it('builds flannel\'s exact masquerade and forward rules', async () => {
    const fake = new FakeIptables();
    const rules = new TrafficRules({ network: N, subnet: S, ipMasq: true, forwardRules: true }, { intervalMs: 50, runner: fake });
    expect(await rules.ensure()).to.equal(true);
    const saved = await fake.save();
    expect(saved).to.include(
      [
        '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
        '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s 10.244.3.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.3.0/24 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.3.0/24 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
        '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
      ].join('\n'),
    );
    expect(saved).to.include(
      [
        '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
        '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
        '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
      ].join('\n'),
    );
    expect(await rules.ensure(), 'second pass finds everything in place').to.equal(false);
    expect(fake.restores).to.have.length(1);
  });

  it('repairs a deleted rule and a duplicated jump in one transaction', async () => {
    const fake = new FakeIptables();
    const rules = new TrafficRules({ network: N, subnet: S, ipMasq: true, forwardRules: true }, { intervalMs: 50, runner: fake });
    await rules.ensure();
    const nat = fake.tables.get('nat')!;
    nat.lines.splice(nat.lines.findIndex((l) => l.includes('MASQUERADE')), 1);
    nat.lines.push('-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG');
    expect(await rules.ensure()).to.equal(true);
    expect(fake.restores).to.have.length(2);
    expect(fake.restores[1]).to.not.include('*filter');
    expect(nat.lines.filter((l) => l.startsWith('-A POSTROUTING'))).to.have.length(1);
    expect(nat.lines.filter((l) => l.startsWith('-A FLANNEL-POSTRTG'))).to.have.length(6);
  });

  it('moves to a new subnet, dropping the stale rules, and removes sets switched off', async () => {
    const fake = new FakeIptables();
    const rules = new TrafficRules({ network: N, subnet: S, ipMasq: true, forwardRules: true }, { intervalMs: 50, runner: fake });
    await rules.ensure();
    rules.update({ network: N, subnet: Subnet.parse('10.244.9.0/24'), ipMasq: true, forwardRules: false });
    await rules.ensure();
    const saved = await fake.save();
    expect(saved).to.not.include('10.244.3.0/24');
    expect(saved).to.include('-s 10.244.9.0/24 -d 10.244.0.0/16');
    expect(saved).to.not.include('FLANNEL-FWD');
  });

  it("removes the other mode's rules once, at the first check; a failure is warned and does not hold the rules up", async () => {
    const fake = new FakeIptables();
    const warnings: string[] = [];
    const log = { info: () => undefined, warn: (m: string) => warnings.push(m), error: () => undefined, debug: () => undefined } as unknown as Logger;
    let calls = 0;
    const removeOther = async (): Promise<boolean> => {
      calls++;
      throw new Error('nft: Operation not permitted');
    };
    const rules = new TrafficRules({ network: N, subnet: S, ipMasq: true, forwardRules: true }, { intervalMs: 50, runner: fake, removeOther, log });
    expect(await rules.ensure()).to.equal(true);
    expect(rules.inPlace).to.equal(true);
    await rules.ensure();
    expect(calls).to.equal(1);
    expect(warnings).to.deep.equal(['could not remove the nftables rules of an earlier run: nft: Operation not permitted']);
  });

  it('deletes older rule variants that carry flannel\'s comment', () => {
    const saved = parseIptablesSave('*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE\nCOMMIT\n*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n');
    const payload = planRepair(saved, desiredRuleSets({ network: N, subnet: S, ipMasq: true, forwardRules: false }))!;
    expect(payload).to.include('-D POSTROUTING -s 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE');
  });

  it("names the chains after the etcd prefix: flannel's for the default one, a short stable suffix for any other", () => {
    expect(trafficChains('/coreos.com/network')).to.deep.equal({ masq: 'FLANNEL-POSTRTG', forward: 'FLANNEL-FWD' });
    expect(trafficChains('/coreos.com//network/')).to.equal(FLANNEL_CHAINS);
    const vxlan = trafficChains('/vxlan/network');
    expect(vxlan.masq).to.match(/^FLANNEL-POSTRTG-[0-9A-F]{8}$/);
    expect(vxlan.forward).to.equal(`FLANNEL-FWD-${vxlan.masq.slice(-8)}`);
    expect(vxlan.masq.length).to.be.at.most(28);
    expect(trafficChains('/vxlan/network/')).to.deep.equal(vxlan);
    expect(trafficChains('/hostgw/network').masq).to.not.equal(vxlan.masq);
  });

  it("two daemons on one host (one etcd prefix and network each) keep their rules apart: neither repairs the other's away", async () => {
    const fake = new FakeIptables();
    const M = Subnet.parse('10.50.0.0/16');
    const a = new TrafficRules({ network: N, subnet: S, ipMasq: true, forwardRules: true, chains: trafficChains('/coreos.com/network') }, { intervalMs: 50, runner: fake });
    const b = new TrafficRules({ network: M, subnet: Subnet.parse('10.50.7.0/24'), ipMasq: true, forwardRules: true, chains: trafficChains('/vxlan/network') }, { intervalMs: 50, runner: fake });
    expect(await a.ensure()).to.equal(true);
    expect(await b.ensure()).to.equal(true);
    expect(await a.ensure(), 'a finds its rules in place beside b\'s').to.equal(false);
    expect(await b.ensure(), 'b finds its rules in place beside a\'s').to.equal(false);
    const { masq, forward } = trafficChains('/vxlan/network');
    const saved = await fake.save();
    expect(saved).to.include('-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG\n');
    expect(saved).to.include(`-A POSTROUTING -m comment --comment "flanneld masq" -j ${masq}\n`);
    expect(saved).to.include(`-A ${masq} -s 10.50.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`);
    expect(saved).to.include('-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully');
    expect(saved).to.include(`-A FORWARD -m comment --comment "flanneld forward" -j ${forward}\n`);
    expect(saved).to.include('-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD\n');
    // Switching b's sets off removes b's rules only.
    b.update({ network: M, subnet: Subnet.parse('10.50.7.0/24'), ipMasq: false, forwardRules: false, chains: trafficChains('/vxlan/network') });
    await b.ensure();
    expect(await fake.save()).to.not.include(masq).and.not.include(forward);
    expect(await a.ensure()).to.equal(false);
    // cleanup-iptables removes every daemon's chains.
    b.update({ network: M, subnet: Subnet.parse('10.50.7.0/24'), ipMasq: true, forwardRules: true, chains: trafficChains('/vxlan/network') });
    await b.ensure();
    expect(await removeTrafficRules(fake)).to.equal(true);
    expect(await fake.save()).to.not.include('FLANNEL');
  });

  it("takes over a chain left for its own Network under another name (flanneld with a custom prefix), and nothing else", async () => {
    const fake = new FakeIptables();
    const M = Subnet.parse('10.50.0.0/16');
    // flanneld ran with -etcd-prefix=/kube-centos/network for M, and another daemon serves N.
    const flanneld = new TrafficRules({ network: M, subnet: Subnet.parse('10.50.7.0/24'), ipMasq: true, forwardRules: true }, { intervalMs: 50, runner: fake });
    await flanneld.ensure();
    const other = new TrafficRules({ network: N, subnet: S, ipMasq: true, forwardRules: true, chains: trafficChains('/other/network') }, { intervalMs: 50, runner: fake });
    await other.ensure();
    const weft = new TrafficRules({ network: M, subnet: Subnet.parse('10.50.7.0/24'), ipMasq: true, forwardRules: true, chains: trafficChains('/kube-centos/network') }, { intervalMs: 50, runner: fake });
    expect(await weft.ensure()).to.equal(true);
    const saved = await fake.save();
    expect(saved).to.not.include(':FLANNEL-POSTRTG ').and.not.include('-j FLANNEL-POSTRTG\n').and.not.include(':FLANNEL-FWD ');
    expect(saved).to.include(`-j ${trafficChains('/kube-centos/network').masq}\n`);
    expect(await other.ensure(), "the other network's rules untouched").to.equal(false);
    expect(await weft.ensure()).to.equal(false);
  });

  it('without the iptables tools: in place when no rules are asked for, an error when some are', async () => {
    const missing: IptablesRunner = {
      save: () => Promise.reject(new WeftError('WEFT_ERR_KERNEL', 'iptables-save not found in PATH', { cause: Object.assign(new Error('spawn iptables-save ENOENT'), { code: 'ENOENT' }) })),
      restore: () => Promise.reject(new Error('not reached')),
    };
    const said: string[] = [];
    const log = { info: (m: string) => said.push(m) } as unknown as Logger;
    const off = new TrafficRules({ network: N, subnet: S, ipMasq: false, forwardRules: false }, { intervalMs: 50, runner: missing, log });
    expect(await off.ensure()).to.equal(false);
    expect(off.inPlace).to.equal(true);
    await off.ensure();
    expect(said).to.deep.equal(['iptables tools not found: no rules asked for (--ip-masq and --iptables-forward-rules off), none kept']);
    const on = new TrafficRules({ network: N, subnet: S, ipMasq: false, forwardRules: true }, { intervalMs: 50, runner: missing, log });
    let thrown: unknown;
    await on.ensure().catch((err) => (thrown = err));
    expect((thrown as Error).message).to.equal('iptables-save not found in PATH');
    expect(on.inPlace).to.equal(false);
  });
});

const N6 = Subnet.parse('fd00:10:244::/48');
const S6 = Subnet.parse('fd00:10:244:3::/64');

describe('ip6tables rules for an IPv6 Network (unit)', () => {
  it("dual-stack: flannel's IPv6 set through ip6tables (same chains and comments, ff00::/8), the IPv4 set as before", async () => {
    const v4 = new FakeIptables();
    const v6 = new FakeIptables();
    const rules = new TrafficRules({ network: N, subnet: S, ipv6: { network: N6, subnet: S6 }, ipMasq: true, forwardRules: true }, { intervalMs: 50, runner: v4, runner6: v6 });
    expect(await rules.ensure()).to.equal(true);
    expect(await v4.save()).to.include('-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully').and.not.include('fd00');
    const saved6 = await v6.save();
    expect(saved6).to.include(
      [
        '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
        '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s fd00:10:244:3::/64 -d fd00:10:244::/48 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s fd00:10:244::/48 -d fd00:10:244:3::/64 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG ! -s fd00:10:244::/48 -d fd00:10:244:3::/64 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s fd00:10:244::/48 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
        '-A FLANNEL-POSTRTG ! -s fd00:10:244::/48 -d fd00:10:244::/48 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
      ].join('\n'),
    );
    expect(saved6).to.include(
      [
        '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
        '-A FLANNEL-FWD -s fd00:10:244::/48 -m comment --comment "flanneld forward" -j ACCEPT',
        '-A FLANNEL-FWD -d fd00:10:244::/48 -m comment --comment "flanneld forward" -j ACCEPT',
      ].join('\n'),
    );
    expect(saved6).to.not.include('10.244.');
    expect(await rules.ensure(), 'second pass finds both families in place').to.equal(false);
    expect([v4.restores.length, v6.restores.length]).to.deep.equal([1, 1]);
    // A rule deleted from the IPv6 set alone is repaired there alone.
    const nat6 = v6.tables.get('nat')!;
    nat6.lines.splice(nat6.lines.findIndex((l) => l.includes('ff00::/8')), 1);
    expect(await rules.ensure()).to.equal(true);
    expect([v4.restores.length, v6.restores.length]).to.deep.equal([1, 2]);
    expect(v6.restores[1]).to.not.include('*filter');
  });

  it('--ip-masq-fully-random-disable, a new IPv6 subnet and options switched off apply to the IPv6 set too', async () => {
    const v4 = new FakeIptables();
    const v6 = new FakeIptables();
    const rules = new TrafficRules({ network: N, subnet: S, ipv6: { network: N6, subnet: S6 }, ipMasq: true, forwardRules: true, randomFully: false }, { intervalMs: 50, runner: v4, runner6: v6 });
    await rules.ensure();
    expect(await v6.save()).to.include('! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE\n');
    rules.update({ network: N, subnet: S, ipv6: { network: N6, subnet: Subnet.parse('fd00:10:244:9::/64') }, ipMasq: true, forwardRules: false });
    await rules.ensure();
    const saved6 = await v6.save();
    expect(saved6).to.not.include('fd00:10:244:3::/64').and.not.include('FLANNEL-FWD');
    expect(saved6).to.include('-s fd00:10:244:9::/64 -d fd00:10:244::/48');
  });

  it('IPv6-only: the IPv6 Network as the spec\'s own, through ip6tables alone; IPv4-only never runs ip6tables', async () => {
    const v4 = new FakeIptables();
    const v6 = new FakeIptables();
    const only6 = new TrafficRules({ network: N6, subnet: S6, ipMasq: true, forwardRules: true }, { intervalMs: 50, runner: v4, runner6: v6 });
    expect(await only6.ensure()).to.equal(true);
    expect(v4.saves).to.equal(0);
    expect(await v6.save()).to.include('-A FLANNEL-POSTRTG -s fd00:10:244::/48 ! -d ff00::/8');
    const w4 = new FakeIptables();
    const w6 = new FakeIptables();
    const only4 = new TrafficRules({ network: N, subnet: S, ipMasq: true, forwardRules: true }, { intervalMs: 50, runner: w4, runner6: w6 });
    await only4.ensure();
    await only4.ensure();
    expect([w4.saves, w6.saves]).to.deep.equal([2, 0]);
  });

  it('familySpecs splits a dual-stack spec into one spec per family, options kept', () => {
    const chains = trafficChains('/vxlan/network');
    const specs = familySpecs({ network: N, subnet: S, ipv6: { network: N6, subnet: S6 }, ipMasq: true, forwardRules: false, randomFully: false, chains });
    expect(specs.map((x) => [x.network.toString(), x.subnet.toString(), x.ipv6 ?? null])).to.deep.equal([
      ['10.244.0.0/16', '10.244.3.0/24', null],
      ['fd00:10:244::/48', 'fd00:10:244:3::/64', null],
    ]);
    for (const x of specs) expect(x).to.include({ ipMasq: true, forwardRules: false, randomFully: false, chains });
    expect(familySpecs({ network: N, subnet: S, ipMasq: true, forwardRules: true })).to.have.length(1);
  });

  it('cleanup removes the IPv4 and the IPv6 chains; without ip6tables there are no IPv6 rules to remove', async () => {
    const v4 = new FakeIptables();
    const v6 = new FakeIptables();
    await new TrafficRules({ network: N6, subnet: S6, ipMasq: true, forwardRules: true }, { intervalMs: 50, runner: v4, runner6: v6 }).ensure();
    expect(await removeTrafficRulesBothFamilies(undefined, [v4, v6])).to.equal(true);
    expect(await v6.save()).to.not.include('FLANNEL');
    expect(await removeTrafficRulesBothFamilies(undefined, [v4, v6])).to.equal(false);
    const missing: IptablesRunner = {
      save: () => Promise.reject(new WeftError('WEFT_ERR_KERNEL', 'ip6tables-save not found in PATH', { cause: Object.assign(new Error('spawn ip6tables-save ENOENT'), { code: 'ENOENT' }) })),
      restore: () => Promise.reject(new Error('not reached')),
    };
    await new TrafficRules({ network: N, subnet: S, ipMasq: true, forwardRules: true }, { intervalMs: 50, runner: v4 }).ensure();
    expect(await removeTrafficRulesBothFamilies(undefined, [v4, missing])).to.equal(true);
    expect(await v4.save()).to.not.include('FLANNEL');
  });
});

/** A kernel stand-in that only reports nf_tables changes: what `follow` subscribes to. */
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

const NFT_HEADER = '# Generated by iptables-nft-save v1.8.9 (nf_tables) on Wed Nov 25 05:00:00 2026';
const LEGACY_HEADER = '# Generated by iptables-save v1.8.9 (legacy) on Wed Nov 25 05:00:00 2026';

describe('iptables checks: when they run (unit)', () => {
  const spec = { network: N, subnet: S, ipMasq: true, forwardRules: true };

  it('names the backing from iptables-save\'s header; no header (no table) is not known', () => {
    expect(iptablesBacking(`${NFT_HEADER}\n*nat\nCOMMIT\n`)).to.equal('nf_tables');
    expect(iptablesBacking(`${LEGACY_HEADER}\n*nat\nCOMMIT\n`)).to.equal('legacy');
    expect(iptablesBacking('# Generated by iptables-save v1.6.1 on Mon Jan  1 00:00:00 2018\n*nat\nCOMMIT\n')).to.equal('legacy');
    expect(iptablesBacking('')).to.equal(null);
  });

  it('with nf_tables and changes reported: checks at each reported change, otherwise only every SAFETY_NET_MS', async () => {
    const fake = new FakeIptables();
    fake.header = NFT_HEADER;
    const keeper = new TrafficRules(spec, { intervalMs: 50, runner: fake });
    const kernel = new ReportingKernel();
    const ac = new AbortController();
    const running = keeper.run(ac.signal);
    try {
      await eventually(async () => keeper.inPlace, 2000, 'rules installed');
      expect(keeper.periodMs(), 'polled until changes are reported').to.equal(50);
      keeper.follow(kernel, ac.signal);
      expect(keeper.periodMs()).to.equal(SAFETY_NET_MS);
      // follow() checks once (rules may have changed while nobody listened), then the checks stop.
      await sleep(300);
      const saves = fake.saves;
      await sleep(400);
      expect(fake.saves, 'no check without a reported change').to.equal(saves);

      fake.tables.get('nat')!.lines = [];
      kernel.report({ kind: 'newgen' });
      kernel.report({ kind: 'newgen' });
      await eventually(async () => fake.tables.get('nat')!.lines.length > 0, 2000, 'masquerade rules restored');
      expect(fake.saves - saves, 'a burst of reports is one check').to.equal(1);
      expect(keeper.repairs).to.equal(2);

      // A lost report counts as a change.
      fake.tables.get('filter')!.lines = [];
      kernel.report({ kind: 'overrun' });
      await eventually(async () => fake.tables.get('filter')!.lines.length > 0, 2000, 'forward rules restored');
    } finally {
      ac.abort();
      await running;
    }
    expect(kernel.listeners.size, 'unsubscribed on abort').to.equal(0);
  });

  it('follows the kernel port\'s nf_tables subscription with no backend running, and only it', async () => {
    const fake = new FakeIptables();
    fake.header = NFT_HEADER;
    // A period no test waits for: only reported changes bring a check.
    const keeper = new TrafficRules(spec, { intervalMs: 3_600_000, runner: fake });
    const kernel = new FakeKernel();
    const ac = new AbortController();
    const running = keeper.run(ac.signal);
    try {
      await eventually(async () => keeper.inPlace, 2000, 'rules installed');
      keeper.follow(kernel, ac.signal);
      expect(kernel.listening, 'the keeper alone subscribed').to.equal(true);
      await sleep(300);
      const saves = fake.saves;
      fake.tables.get('nat')!.lines = [];
      kernel.nftReport();
      await eventually(async () => fake.tables.get('nat')!.lines.length > 0, 2000, 'masquerade rules restored');
      expect(fake.saves - saves).to.equal(1);
      // Kernel object changes and their overruns are not the keeper's.
      fake.tables.get('filter')!.lines = [];
      kernel.addLink({ name: 'eth0' });
      kernel.overrun();
      await sleep(300);
      expect(fake.tables.get('filter')!.lines).to.deep.equal([]);
      expect(fake.saves - saves).to.equal(1);
    } finally {
      ac.abort();
      await running;
    }
    expect(kernel.listening, 'unsubscribed on abort').to.equal(false);
  });

  it('when the listener cannot subscribe to nf_tables: says so once and goes back to checking every period', async () => {
    const fake = new FakeIptables();
    fake.header = NFT_HEADER;
    const warnings: string[] = [];
    const log = { info: () => undefined, warn: (m: string) => warnings.push(m), error: () => undefined, debug: () => undefined } as unknown as Logger;
    const keeper = new TrafficRules(spec, { intervalMs: 50, runner: fake, log });
    const kernel = new ReportingKernel();
    const ac = new AbortController();
    const running = keeper.run(ac.signal);
    try {
      await eventually(async () => keeper.inPlace, 2000, 'rules installed');
      keeper.follow(kernel, ac.signal);
      expect(keeper.periodMs()).to.equal(SAFETY_NET_MS);
      kernel.report({ kind: 'unwatched', why: 'Operation not permitted' });
      kernel.report({ kind: 'unwatched', why: 'Operation not permitted' });
      expect(keeper.periodMs()).to.equal(50);
      expect(warnings).to.deep.equal(['nf_tables ruleset changes are not reported (Operation not permitted); iptables rules are checked every 0.05 s']);
      // Unreported changes are found by the period's checks.
      fake.tables.get('nat')!.lines = [];
      await eventually(async () => fake.tables.get('nat')!.lines.length > 0, 2000, 'masquerade rules restored');
    } finally {
      ac.abort();
      await running;
    }
  });

  it('with legacy iptables (which reports nothing): keeps checking every period', async () => {
    const fake = new FakeIptables();
    fake.header = LEGACY_HEADER;
    const keeper = new TrafficRules(spec, { intervalMs: 50, runner: fake });
    const ac = new AbortController();
    const running = keeper.run(ac.signal);
    try {
      await eventually(async () => keeper.inPlace, 2000, 'rules installed');
      keeper.follow(new ReportingKernel(), ac.signal);
      expect(keeper.periodMs()).to.equal(50);
      const saves = fake.saves;
      fake.tables.get('nat')!.lines = [];
      await eventually(async () => fake.tables.get('nat')!.lines.length > 0, 2000, 'restored by the periodic check');
      expect(fake.saves).to.be.above(saves);
    } finally {
      ac.abort();
      await running;
    }
  });
});
