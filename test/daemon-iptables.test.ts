import { expect } from 'chai';
import { TrafficRules, parseIptablesSave, planRepair, desiredRuleSets, type IptablesRunner } from '../daemon/iptables.js';
import { Subnet } from '../lease/subnet.js';

const N = Subnet.parse('10.244.0.0/16');
const S = Subnet.parse('10.244.3.0/24');

/** An iptables stand-in that applies restore payloads to a saved-text model (enough for planning logic). */
class FakeIptables implements IptablesRunner {
  tables = new Map<string, { chains: string[]; lines: string[] }>([
    ['nat', { chains: ['PREROUTING', 'INPUT', 'OUTPUT', 'POSTROUTING'], lines: [] }],
    ['filter', { chains: ['INPUT', 'FORWARD', 'OUTPUT'], lines: [] }],
  ]);
  restores: string[] = [];
  async save(): Promise<string> {
    return [...this.tables].map(([t, v]) => [`*${t}`, ...v.chains.map((c) => `:${c} - [0:0]`), ...v.lines, 'COMMIT'].join('\n')).join('\n') + '\n';
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
    const rules = new TrafficRules({ network: N, subnet: S, ipMasq: true, forwardRules: true }, fake);
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
    const rules = new TrafficRules({ network: N, subnet: S, ipMasq: true, forwardRules: true }, fake);
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
    const rules = new TrafficRules({ network: N, subnet: S, ipMasq: true, forwardRules: true }, fake);
    await rules.ensure();
    rules.update({ network: N, subnet: Subnet.parse('10.244.9.0/24'), ipMasq: true, forwardRules: false });
    await rules.ensure();
    const saved = await fake.save();
    expect(saved).to.not.include('10.244.3.0/24');
    expect(saved).to.include('-s 10.244.9.0/24 -d 10.244.0.0/16');
    expect(saved).to.not.include('FLANNEL-FWD');
  });

  it('deletes older rule variants that carry flannel\'s comment', () => {
    const saved = parseIptablesSave('*nat\n:POSTROUTING ACCEPT [0:0]\n-A POSTROUTING -s 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE\nCOMMIT\n*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n');
    const payload = planRepair(saved, desiredRuleSets({ network: N, subnet: S, ipMasq: true, forwardRules: false }))!;
    expect(payload).to.include('-D POSTROUTING -s 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE');
  });
});
