/**
 * The nftables engine against the real nft and kernel, inside a test network
 * namespace (never the root one): the table made, a rule deleted by hand
 * found and restored, an option switched off, cleanup; and through it all
 * the namespace's other tables untouched.
 */
import { expect } from 'chai';
import { Subnet } from '../common/subnet.js';
import { NftablesEngine, nftRunner, removeNftTables } from '../kernel/nftables.js';
import { Netns, cleanupLeftovers, teardownAll } from './harness/netns.js';

const spec = { network: Subnet.parse('10.244.0.0/16'), subnet: Subnet.parse('10.244.3.0/24'), ipMasq: true, forwardRules: true };

describe('nftables engine with the real nft, in a namespace @real', function () {
  this.timeout(30_000);
  let ns: Netns;
  const nft = (...args: string[]) => ns.exec('nft', ...args);
  const table = () => nft('list', 'table', 'ip', 'flannel-ipv4');
  /** Someone else's table, which weft must leave as it is. */
  const OTHER = 'table inet weft-test-other {\n\tchain input {\n\t\ttype filter hook input priority filter; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n';

  before(async () => {
    await cleanupLeftovers();
    ns = await Netns.create('nft');
    await ns.exec('sh', '-c', `printf '%s' '${OTHER}' | nft -f -`);
  });
  after(async () => {
    await ns?.delete();
    await teardownAll();
  });

  it("creates flannel's table with its two base chains and the rules, and nothing else", async () => {
    const engine = new NftablesEngine({ runner: nftRunner(ns.name) });
    expect(await engine.ensure(spec)).to.equal(true);
    const listing = await table();
    expect(listing).to.include('chain postrtg {').and.include('type nat hook postrouting priority srcnat; policy accept;');
    expect(listing).to.include('chain forward {').and.include('type filter hook forward priority filter; policy accept;');
    for (const rule of [
      'meta mark & 0x00004000 == 0x00004000 return',
      'ip saddr 10.244.3.0/24 ip daddr 10.244.0.0/16 return',
      'ip saddr 10.244.0.0/16 ip daddr 10.244.3.0/24 return',
      'ip saddr != 10.244.0.0/16 ip daddr 10.244.3.0/24 return',
      'ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random',
      'ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random',
      'ip saddr 10.244.0.0/16 accept',
      'ip daddr 10.244.0.0/16 accept',
    ]) {
      expect(listing).to.include(`\t\t${rule}\n`);
    }
    expect(await nft('list', 'tables')).to.equal('table inet weft-test-other\ntable ip flannel-ipv4\n');
    expect(await nft('list', 'table', 'inet', 'weft-test-other')).to.equal(OTHER);
    expect(await engine.ensure(spec), 'in place: nothing applied').to.equal(false);
  });

  it('finds a rule deleted by hand and restores it in one transaction, leaving the other table alone', async () => {
    const engine = new NftablesEngine({ runner: nftRunner(ns.name) });
    await engine.ensure(spec);
    const before = await table();
    const handles = await nft('-a', 'list', 'chain', 'ip', 'flannel-ipv4', 'postrtg');
    const handle = /masquerade fully-random # handle (\d+)/.exec(handles)![1]!;
    await nft('delete', 'rule', 'ip', 'flannel-ipv4', 'postrtg', 'handle', handle);
    expect(await table()).to.not.equal(before);
    expect(await engine.ensure(spec)).to.equal(true);
    expect(await table()).to.equal(before);
    await nft('delete', 'chain', 'ip', 'flannel-ipv4', 'forward');
    expect(await engine.ensure(spec)).to.equal(true);
    expect(await table()).to.equal(before);
    await nft('delete', 'table', 'ip', 'flannel-ipv4');
    expect(await engine.ensure(spec)).to.equal(true);
    expect(await table()).to.equal(before);
    expect(await nft('list', 'table', 'inet', 'weft-test-other')).to.equal(OTHER);
  });

  it('drops the masquerade chain when --ip-masq is off, and the table when no rule is wanted', async () => {
    const engine = new NftablesEngine({ runner: nftRunner(ns.name) });
    await engine.ensure({ ...spec, ipMasq: false });
    const listing = await table();
    expect(listing).to.include('chain forward');
    expect(listing).to.not.include('postrtg');
    expect(await engine.ensure({ ...spec, ipMasq: false, forwardRules: false })).to.equal(true);
    expect(await nft('list', 'tables')).to.equal('table inet weft-test-other\n');
  });

  it("cleanup removes flannel's IPv4 and IPv6 tables, and only those", async () => {
    await new NftablesEngine({ runner: nftRunner(ns.name) }).ensure(spec);
    await new NftablesEngine({ runner: nftRunner(ns.name) }).ensure({ network: Subnet.parse('fd00:10::/56'), subnet: Subnet.parse('fd00:10:0:3::/64'), ipMasq: true, forwardRules: true });
    expect(await nft('list', 'tables')).to.equal('table inet weft-test-other\ntable ip flannel-ipv4\ntable ip6 flannel-ipv6\n');
    expect(await removeNftTables(nftRunner(ns.name))).to.equal(true);
    expect(await nft('list', 'tables')).to.equal('table inet weft-test-other\n');
    expect(await removeNftTables(nftRunner(ns.name))).to.equal(false);
    expect(await nft('list', 'table', 'inet', 'weft-test-other')).to.equal(OTHER);
  });
});
