/**
 * weftd in nftables mode (`"EnableNFTables": true`), as shipped, in a
 * namespace cluster: h1 starts while the network config asks for nftables,
 * h2 after it was switched back, so the two run in different modes (each
 * reads the config at start, as flanneld does). Pod traffic passes both ways
 * keeping its source; traffic leaving the Network (to a host outside it on
 * the underlay) is masqueraded by either node. A table deleted by hand comes
 * back through the kernel's ruleset-change report (--iptables-resync 3600);
 * a node restarted in the other mode removes the old mode's rules; `weftd
 * cleanup` removes either kind.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Cluster, WEFTD, type WeftNode } from './harness/cluster.js';
import { Netns, eventually } from './harness/netns.js';
import { Pod } from './harness/pod.js';
import type { NodeStatus } from '../daemon/status.js';

const WEFTD_ARGS = ['--bridge', 'weft0', '--ip-masq', '--iptables-resync', '3600'];
const CONFIG_KEY = '/coreos.com/network/config';
const config = (nftables: boolean) => JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' }, ...(nftables ? { EnableNFTables: true } : {}) });
const EXT_IP = '198.18.0.200';
const WHOAMI_PORT = 7070;

/** A TCP server that answers every connection with the client's address as it sees it. */
function whoamiServer(ns: Netns): void {
  ns.spawn('node', ['-e', `require('net').createServer((s) => s.end(s.remoteAddress)).listen(${WHOAMI_PORT}, '0.0.0.0')`]);
}

/** The source address `server` sees for a connection from `client`'s namespace. */
async function sourceSeen(client: Netns, server: string): Promise<string> {
  const script = `const s = require('net').connect(${WHOAMI_PORT}, '${server}'); let d = ''; s.on('data', (x) => (d += x)); s.on('end', () => process.stdout.write(d)); s.on('error', (e) => { console.error(e.message); process.exit(1); }); s.setTimeout(3000, () => { console.error('timed out'); process.exit(1); });`;
  let seen = '';
  // The server may still be starting: a few tries.
  await eventually(
    async () => {
      seen = await client.exec('node', '-e', script).catch(() => '');
      return seen !== '';
    },
    15_000,
    `a connection to ${server}`,
  );
  return seen;
}

/** flannel's nftables tables on the node (iptables-nft keeps its own, `ip nat` and `ip filter`, beside them). */
async function nftTables(node: WeftNode): Promise<string[]> {
  return (await node.ns.exec('nft', 'list', 'tables')).split('\n').filter((l) => l.includes('flannel'));
}

async function iptablesChains(node: WeftNode): Promise<string[]> {
  const save = (await node.ns.exec('iptables-save', '-t', 'nat')) + (await node.ns.exec('iptables-save', '-t', 'filter'));
  return [...new Set(save.match(/FLANNEL-[A-Z]+/g) ?? [])].sort();
}

async function status(node: WeftNode): Promise<NodeStatus> {
  return JSON.parse((await node.http('/status')).body) as NodeStatus;
}

describe('nftables mode, mixed with iptables mode in one cluster @real', function () {
  this.timeout(180_000);
  let cluster: Cluster;
  let ext: Netns;
  let pod1: Pod;
  let pod2: Pod;
  const h1 = () => cluster.node(1);
  const h2 = () => cluster.node(2);

  before(async () => {
    cluster = await Cluster.create({ hosts: 2, networkConfig: config(true) });
    ext = await cluster.sw.addHost('ext', `${EXT_IP}/24`);
    whoamiServer(ext);
    h1().start(WEFTD_ARGS);
    await h1().waitReady();
    await cluster.writeKeys([{ key: CONFIG_KEY, value: config(false) }]);
    h2().start(WEFTD_ARGS);
    await h2().waitReady();
    pod1 = await Pod.attach(h1(), 1);
    pod2 = await Pod.attach(h2(), 1);
    whoamiServer(pod1.ns);
    whoamiServer(pod2.ns);
  });
  after(async () => {
    await pod1?.delete();
    await pod2?.delete();
    await ext?.delete();
    await cluster?.destroy();
  });

  it("h1 keeps flannel's nftables table and no iptables chain; h2 the iptables chains and no table", async () => {
    const s1 = await status(h1());
    expect(s1.iptables).to.include({ mode: 'nftables', inPlace: true, backing: 'nf_tables' });
    expect(s1.iptables!.checkPeriodSeconds, 'changes are reported: the safety-net period').to.equal(3600);
    expect(await nftTables(h1())).to.deep.equal(['table ip flannel-ipv4']);
    const subnet = h1().subnetEnv().FLANNEL_SUBNET!.replace('.1/', '.0/');
    const table = await h1().ns.exec('nft', 'list', 'table', 'ip', 'flannel-ipv4');
    expect(table).to.include(`ip saddr ${subnet} ip daddr 10.244.0.0/16 return`);
    expect(table).to.include('ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random');
    expect(table).to.include('ip daddr 10.244.0.0/16 accept');
    expect(await iptablesChains(h1())).to.deep.equal([]);

    expect((await status(h2())).iptables).to.include({ mode: 'iptables', inPlace: true });
    expect(await iptablesChains(h2())).to.deep.equal(['FLANNEL-FWD', 'FLANNEL-POSTRTG']);
    expect(await nftTables(h2())).to.deep.equal([]);
  });

  it('pod traffic between the nodes keeps its source both ways; traffic leaving the Network is masqueraded by either node', async () => {
    expect(await sourceSeen(pod1.ns, pod2.ip), 'nftables node -> iptables node').to.equal(pod1.ip);
    expect(await sourceSeen(pod2.ns, pod1.ip), 'iptables node -> nftables node').to.equal(pod2.ip);
    expect(await sourceSeen(pod1.ns, EXT_IP), 'leaving through the nftables node').to.equal(h1().ip);
    expect(await sourceSeen(pod2.ns, EXT_IP), 'leaving through the iptables node').to.equal(h2().ip);
  });

  it('a table or rule deleted by hand is restored at the reported change', async () => {
    const table = () => h1().ns.exec('nft', 'list', 'table', 'ip', 'flannel-ipv4').catch(() => '');
    const before = await table();
    const repairs = await h1().metric('weft_iptables_repairs_total');
    await h1().ns.exec('nft', 'delete', 'table', 'ip', 'flannel-ipv4');
    await eventually(async () => (await table()) === before, 10_000, 'table restored');
    const handles = await h1().ns.exec('nft', '-a', 'list', 'chain', 'ip', 'flannel-ipv4', 'postrtg');
    const handle = /daddr != 224\.0\.0\.0\/4 masquerade fully-random # handle (\d+)/.exec(handles)![1]!;
    await h1().ns.exec('nft', 'delete', 'rule', 'ip', 'flannel-ipv4', 'postrtg', 'handle', handle);
    await eventually(async () => (await table()) === before, 10_000, 'rule restored');
    expect(await h1().metric('weft_iptables_repairs_total')).to.equal(repairs + 2);
    expect(await sourceSeen(pod1.ns, EXT_IP)).to.equal(h1().ip);
  });

  it("a node restarted in the other mode removes the old mode's rules, and traffic still passes", async () => {
    // h2: iptables -> nftables.
    await h2().stop();
    await cluster.writeKeys([{ key: CONFIG_KEY, value: config(true) }]);
    h2().start(WEFTD_ARGS);
    await h2().waitReady();
    expect((await status(h2())).iptables).to.include({ mode: 'nftables', inPlace: true });
    expect(await iptablesChains(h2())).to.deep.equal([]);
    expect(await nftTables(h2())).to.deep.equal(['table ip flannel-ipv4']);
    // h1: nftables -> iptables.
    await h1().stop();
    await cluster.writeKeys([{ key: CONFIG_KEY, value: config(false) }]);
    h1().start(WEFTD_ARGS);
    await h1().waitReady();
    expect((await status(h1())).iptables).to.include({ mode: 'iptables', inPlace: true });
    expect(await nftTables(h1())).to.deep.equal([]);
    expect(await iptablesChains(h1())).to.deep.equal(['FLANNEL-FWD', 'FLANNEL-POSTRTG']);

    expect(await sourceSeen(pod1.ns, pod2.ip)).to.equal(pod1.ip);
    expect(await sourceSeen(pod2.ns, pod1.ip)).to.equal(pod2.ip);
    expect(await sourceSeen(pod2.ns, EXT_IP)).to.equal(h2().ip);
    expect(await sourceSeen(pod1.ns, EXT_IP)).to.equal(h1().ip);
  });

  it('`weftd cleanup` removes either kind, and says what it removed', async () => {
    await h1().stop();
    await h2().stop();
    // Both kinds on one node, as a node switched modes while weftd was not running.
    await h2().ns.exec('iptables', '-t', 'nat', '-N', 'FLANNEL-POSTRTG');
    // Exits 0 (execFile rejects otherwise); what it removed goes to stderr.
    const cleanup = async (node: WeftNode) => (await promisify(execFile)('ip', ['netns', 'exec', node.ns.name, WEFTD, 'cleanup'])).stderr;
    expect(await cleanup(h2())).to.equal('removed weft/flannel iptables rules\nremoved weft/flannel nftables tables\n');
    expect(await nftTables(h2())).to.deep.equal([]);
    expect(await iptablesChains(h2())).to.deep.equal([]);
    expect(await cleanup(h1())).to.equal('removed weft/flannel iptables rules\nno weft/flannel nftables tables found\n');
    expect(await iptablesChains(h1())).to.deep.equal([]);
    expect(await cleanup(h1())).to.equal('no weft/flannel iptables rules found\nno weft/flannel nftables tables found\n');
  });
});
