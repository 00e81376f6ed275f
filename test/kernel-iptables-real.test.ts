/**
 * The iptables engine against the real iptables and ip6tables, inside a test
 * network namespace (never the root one): flannel's IPv4 and IPv6 sets
 * installed in one restore each, found in place by the next check (the tools
 * print the rules as weft plans them, IPv6 addresses included), a rule
 * deleted by hand restored, and cleanup of both families.
 */
import { expect } from 'chai';
import { Subnet } from '../common/subnet.js';
import { IptablesEngine, iptablesRunner, removeTrafficRulesBothFamilies, type TrafficRulesSpec } from '../kernel/iptables.js';
import { Netns, cleanupLeftovers, teardownAll } from './harness/netns.js';

const dual: TrafficRulesSpec = {
  network: Subnet.parse('10.244.0.0/16'),
  subnet: Subnet.parse('10.244.3.0/24'),
  ipv6: { network: Subnet.parse('fd00:10:244::/48'), subnet: Subnet.parse('fd00:10:244:3::/64') },
  ipMasq: true,
  forwardRules: true,
};

describe('iptables engine with the real iptables and ip6tables, in a namespace @real', function () {
  this.timeout(30_000);
  let ns: Netns;
  const save6 = async () => (await ns.exec('ip6tables-save', '-t', 'nat')) + (await ns.exec('ip6tables-save', '-t', 'filter'));
  const engine = () => new IptablesEngine(iptablesRunner(ns.name), iptablesRunner(ns.name, 6));

  before(async () => {
    await cleanupLeftovers();
    ns = await Netns.create('ipt6');
  });
  after(async () => {
    await ns?.delete();
    await teardownAll();
  });

  it("installs flannel's IPv6 set with ip6tables beside the IPv4 one, and finds both in place", async () => {
    const e = engine();
    expect(await e.ensure(dual)).to.equal(true);
    const saved6 = await save6();
    for (const rule of [
      '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
      '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
      '-A FLANNEL-POSTRTG -s fd00:10:244:3::/64 -d fd00:10:244::/48 -m comment --comment "flanneld masq" -j RETURN',
      '-A FLANNEL-POSTRTG ! -s fd00:10:244::/48 -d fd00:10:244:3::/64 -m comment --comment "flanneld masq" -j RETURN',
      '-A FLANNEL-POSTRTG -s fd00:10:244::/48 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
      '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
      '-A FLANNEL-FWD -d fd00:10:244::/48 -m comment --comment "flanneld forward" -j ACCEPT',
    ]) {
      expect(saved6).to.include(`${rule}\n`);
    }
    expect(saved6).to.not.include('10.244.');
    expect(await ns.exec('iptables-save', '-t', 'nat')).to.include('-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully\n').and.not.include('fd00');
    expect(await e.ensure(dual), 'in place: nothing applied').to.equal(false);
    expect(await engine().ensure(dual), 'a fresh engine (a restart) finds them in place too').to.equal(false);
  });

  it('restores an IPv6 rule deleted by hand', async () => {
    const e = engine();
    await e.ensure(dual);
    await ns.exec('ip6tables', '-t', 'nat', '-D', 'FLANNEL-POSTRTG', '-s', 'fd00:10:244::/48', '!', '-d', 'ff00::/8', '-m', 'comment', '--comment', 'flanneld masq', '-j', 'MASQUERADE', '--random-fully');
    expect(await save6()).to.not.include('ff00::/8');
    expect(await e.ensure(dual)).to.equal(true);
    expect(await save6()).to.include('! -d ff00::/8');
    expect(await e.ensure(dual)).to.equal(false);
  });

  it('cleanup removes the chains of both families', async () => {
    await engine().ensure(dual);
    expect(await removeTrafficRulesBothFamilies(undefined, [iptablesRunner(ns.name), iptablesRunner(ns.name, 6)])).to.equal(true);
    expect(await save6()).to.not.include('FLANNEL');
    expect(await ns.exec('iptables-save')).to.not.include('FLANNEL');
  });
});
