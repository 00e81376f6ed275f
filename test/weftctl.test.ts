/**
 * weftctl against a real three-host cluster in namespaces. Each host runs
 * weftd with peer probing every second; weftctl runs inside a host namespace
 * with that host's weftd.yaml, as an operator would run it on the node.
 *   h1: healthy.
 *   h2: --iptables-forward-rules=false, and later FORWARD policy DROP and a
 *       VXLAN port block (INPUT drop of udp 8472).
 *   h3: --resync-interval 3600, and its kernel monitor (weftd's child
 *       process) frozen while a test makes drift by hand, so the drift stays
 *       for diff and doctor to find (weftd repairs drift as soon as the kernel
 *       reports it, or on its next full pass).
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster, type WeftNode } from './harness/cluster.js';
import { eventually } from './harness/netns.js';

const WEFTCTL = fileURLToPath(new URL('../bin/weftctl.cjs', import.meta.url));
const PREFIX = '/coreos.com/network';

interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs weftctl inside the node's namespace with its weftd.yaml; never throws on a non-zero exit. */
function ctl(node: WeftNode, ...args: string[]): Promise<CtlResult> {
  return ctlRaw(node, '--config', node.configFile, ...FORM, ...args);
}

/**
 * Flannel's route form (a gateway per route), for weftd and weftctl alike: the
 * entry counts and diff lines below are written for it. The nexthop form has
 * its own real test (backend-nexthops-real.test.ts).
 */
const FORM = ['--route-nexthops', 'off'];

async function ctlRaw(node: WeftNode, ...args: string[]): Promise<CtlResult> {
  try {
    const stdout = await node.ns.exec('node', WEFTCTL, ...args);
    return { code: 0, stdout, stderr: '' };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : -1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

async function ctlJson<T>(node: WeftNode, ...args: string[]): Promise<T> {
  const r = await ctl(node, ...args, '--output', 'json');
  if (!r.stdout.trim()) throw new Error(`weftctl ${args.join(' ')} printed nothing (exit ${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

interface CheckJson {
  name: string;
  verdict: string;
  detail: string;
  fix: string | null;
}

const verdictOf = (checks: CheckJson[], prefix: string) => checks.find((c) => c.name.startsWith(prefix))!;

/**
 * Runs `fn` with the node's kernel monitor (weftd's one child, weft-listener)
 * stopped, so weftd hears of no kernel change and hand-made drift stays; it
 * catches up when the monitor continues.
 */
async function withMonitorFrozen(node: WeftNode, fn: () => Promise<void>): Promise<void> {
  const { stdout } = await promisify(execFile)('pgrep', ['-x', '-P', String(node.pid), 'weft-listener']);
  const monitor = Number(stdout.trim());
  process.kill(monitor, 'SIGSTOP');
  try {
    await fn();
  } finally {
    process.kill(monitor, 'SIGCONT');
  }
}

describe('weftctl on a three-host cluster @real', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  let h1: WeftNode, h2: WeftNode, h3: WeftNode;

  before(async () => {
    cluster = await Cluster.create({ hosts: 3 });
    [h1, h2, h3] = [cluster.node(1), cluster.node(2), cluster.node(3)];
    h1.start(['--probe-interval', '1', ...FORM]);
    h2.start(['--probe-interval', '1', '--iptables-forward-rules=false', ...FORM]);
    h3.start(['--probe-interval', '1', '--resync-interval', '3600', ...FORM]);
    await Promise.all(cluster.nodes.map((n) => n.waitReady(60_000)));
  });

  after(async () => {
    await cluster?.destroy();
  });

  it('config get shows the stored config and its defaults; validate and set refuse an invalid one', async () => {
    const got = await ctl(h1, 'config', 'get');
    expect(got.code).to.equal(0);
    expect(got.stdout).to.contain('"Network":"10.244.0.0/16"').and.to.match(/SubnetLen\s+24/).and.to.match(/Backend.Type\s+vxlan/);

    const bad = join(cluster.dir, 'bad-config.json');
    writeFileSync(bad, '{"Network":"10.244.0.0/16","SubnetLen":31}');
    const validated = await ctl(h1, 'config', 'validate', bad);
    expect(validated.code).to.equal(1);
    expect(validated.stdout).to.contain('SubnetLen');
    const refused = await ctl(h1, 'config', 'set', bad);
    expect(refused.code).to.equal(1);
    expect(refused.stderr).to.contain('nothing written');
    expect((await ctlJson<{ raw: { SubnetLen?: number } }>(h1, 'config', 'get')).raw.SubnetLen).to.equal(undefined);

    const good = join(cluster.dir, 'good-config.json');
    writeFileSync(good, '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
    expect((await ctl(h1, 'config', 'set', good)).code).to.equal(0);
  });

  it('leases lists every node with TTL, reservations as such and malformed keys without failing; reserve and release', async () => {
    await cluster.writeKeys([{ key: `${PREFIX}/subnets/10.244.250.0-24`, value: '{"PublicIP":"not-an-ip"}' }]);
    const reserved = await ctl(h1, 'reserve', '10.244.251.0/24', '--public-ip', '198.18.0.77', '--vtep-mac', '02:00:00:00:00:77');
    expect(reserved.code, reserved.stderr).to.equal(0);
    const taken = await ctl(h1, 'reserve', '10.244.251.0/24', '--public-ip', '198.18.0.78');
    expect(taken.code).to.equal(1);
    expect(taken.stderr).to.contain('already taken');

    const listing = await ctl(h1, 'leases');
    expect(listing.code).to.equal(0);
    const line = (subnet: string) => listing.stdout.split('\n').find((l) => l.startsWith(subnet + ' '))!;
    expect(line('10.244.251.0/24')).to.match(/198\.18\.0\.77\s+02:00:00:00:00:77\s+vxlan\s+reservation/);
    expect(line('10.244.250.0/24')).to.contain('malformed: PublicIP');
    const rows = (await ctlJson<{ leases: { publicIP: string | null; ttlSeconds: number | null; reservation: boolean }[] }>(h1, 'leases')).leases;
    for (const node of [h1, h2, h3]) {
      const row = rows.find((r) => r.publicIP === node.ip)!;
      expect(row.reservation).to.equal(false);
      expect(row.ttlSeconds).to.be.within(86_000, 86_400);
    }

    const live = rows.find((r) => r.publicIP === h3.ip) as unknown as { subnet: string };
    const refused = await ctl(h1, 'release', live.subnet);
    expect(refused.code).to.equal(2);
    expect(refused.stderr).to.contain('live lease');
    expect((await ctl(h1, 'release', '10.244.251.0/24')).code).to.equal(0);
    await cluster.writeKeys([{ key: `${PREFIX}/subnets/10.244.250.0-24`, value: null }]);
    expect((await ctl(h1, 'leases')).stdout).to.not.contain('10.244.251.0/24');
  });

  it('status shows lease, device, peers, reconcile and healthy peers from weftd and the kernel', async () => {
    await eventually(async () => (await ctlJson<{ status: { probes: { peers: unknown[] } } }>(h1, 'status')).status.probes.peers.length === 2, 10_000, 'two probed peers');
    const r = await ctl(h1, 'status');
    expect(r.code, r.stdout).to.equal(0);
    expect(r.stdout).to.match(/^weftd\s+ready/m);
    expect(r.stdout).to.match(/^lease\s+10\.244\.\d+\.0\/24, public IP 198\.18\.0\.1, TTL/m);
    expect(r.stdout).to.match(/^device\s+flannel\.1 mtu 1450; kernel: mtu 1450, up, 2 neighbours, 2 fdb entries/m);
    expect(r.stdout).to.match(/^peers\s+2 known, 6 kernel entries programmed/m);
    expect(r.stdout).to.match(/^etcd\s+connected/m);
    expect(r.stdout.match(/reachable over underlay and overlay/g)).to.have.length(2);
  });

  it('diff is clean on a healthy node and names missing, wrong and stale entries on a drifted one', async () => {
    const clean = await ctl(h1, 'diff');
    expect(clean.code, clean.stdout + clean.stderr).to.equal(0);
    expect(clean.stdout).to.contain('2 peers, 6 desired entries: kernel in sync');

    const subnetOf = (n: WeftNode) => n.subnetEnv().FLANNEL_SUBNET!.replace(/\.1\//, '.0/');
    const s1 = subnetOf(h1);
    const s2 = subnetOf(h2);
    // h3 keeps drift while its monitor is frozen (and until its hourly full pass).
    const h2Mac = (await h2.ns.ipJson<{ address: string }[]>('link', 'show', 'flannel.1'))[0]!.address;
    await withMonitorFrozen(h3, async () => {
      await h3.ns.ip('route', 'del', s1);
      await h3.ns.ip('neigh', 'replace', s2.split('/')[0]!, 'dev', 'flannel.1', 'lladdr', '02:00:00:00:00:99', 'nud', 'permanent');
      await h3.ns.ip('route', 'add', '10.244.252.0/24', 'via', '10.244.252.0', 'dev', 'flannel.1', 'onlink', 'proto', '0x57');
      try {
        const drift = await ctl(h3, 'diff');
        expect(drift.code).to.equal(1);
        const lines = drift.stdout.split('\n');
        expect(lines.find((l) => l.startsWith('missing') && l.includes(s1))).to.match(/route\s+\S+ via \S+ dev flannel\.1 onlink/);
        expect(lines.find((l) => l.startsWith('wrong') && l.includes(s2))).to.contain('neigh').and.to.contain('lladdr 02:00:00:00:00:99');
        expect(lines.find((l) => l.startsWith('stale'))).to.contain('10.244.252.0/24 via 10.244.252.0 dev flannel.1 onlink');
        const json = await ctlJson<{ lines: { status: string }[] }>(h3, 'diff');
        expect(json.lines.map((l) => l.status).sort()).to.deep.equal(['missing', 'stale', 'wrong']);
      } finally {
        // Undo the drift by hand, so diff's verdict below is about weft's view, not a repair race.
        await h3.ns.ip('route', 'replace', s1, 'via', s1.split('/')[0]!, 'dev', 'flannel.1', 'onlink', 'proto', '0x57');
        await h3.ns.ip('neigh', 'replace', s2.split('/')[0]!, 'dev', 'flannel.1', 'lladdr', h2Mac, 'nud', 'permanent');
        await h3.ns.ip('route', 'del', '10.244.252.0/24');
      }
    });
    expect((await ctl(h3, 'diff')).code).to.equal(0);
  });

  it('doctor passes a healthy node', async () => {
    await eventually(async () => (await ctl(h1, 'status')).code === 0, 10_000, 'every peer healthy from h1');
    const r = await ctl(h1, 'doctor');
    const checks = (await ctlJson<{ checks: CheckJson[] }>(h1, 'doctor')).checks;
    expect(checks.filter((c) => c.verdict === 'fail'), r.stdout).to.deep.equal([]);
    expect(r.code).to.equal(0);
    expect(verdictOf(checks, 'ip_forward').verdict).to.equal('ok');
    expect(verdictOf(checks, 'FORWARD policy').verdict).to.equal('ok');
    expect(verdictOf(checks, 'MTU').detail).to.contain('flannel.1 mtu 1450 = underlay 1500 - 50, same as 2 probed peers');
    expect(verdictOf(checks, 'VXLAN port').detail).to.contain('2 probed peers answer');
    expect(verdictOf(checks, 'duplicate public IPs').verdict).to.equal('ok');
    expect(verdictOf(checks, 'clock skew').verdict).to.equal('ok');
  });

  it('doctor fails FORWARD policy DROP without accept rules, and not when weft\'s rules are there', async () => {
    for (const n of [h1, h2]) await n.ns.exec('iptables', '-P', 'FORWARD', 'DROP');
    try {
      const broken = verdictOf((await ctlJson<{ checks: CheckJson[] }>(h2, 'doctor')).checks, 'FORWARD policy');
      expect(broken.verdict).to.equal('fail');
      expect(broken.detail).to.contain('policy DROP and no FLANNEL-FWD accept rules for 10.244.0.0/16');
      expect(broken.fix).to.contain('--iptables-forward-rules=true');
      const covered = verdictOf((await ctlJson<{ checks: CheckJson[] }>(h1, 'doctor')).checks, 'FORWARD policy');
      expect(covered.verdict).to.equal('ok');
      expect(covered.detail).to.contain('FLANNEL-FWD accepts 10.244.0.0/16');
    } finally {
      for (const n of [h1, h2]) await n.ns.exec('iptables', '-P', 'FORWARD', 'ACCEPT');
    }
  });

  it('doctor fails a device MTU that does not match FLANNEL_MTU; diff shows the repair', async () => {
    // The kernel caps a vxlan device at its underlay's MTU - 50, so the reachable mistake is too small.
    await withMonitorFrozen(h3, async () => {
      await h3.ns.ip('link', 'set', 'dev', 'flannel.1', 'mtu', '1400');
      try {
        const mtu = verdictOf((await ctlJson<{ checks: CheckJson[] }>(h3, 'doctor')).checks, 'MTU');
        expect(mtu.verdict).to.equal('fail');
        expect(mtu.detail).to.contain('flannel.1 mtu 1400 but containers were given FLANNEL_MTU=1450');
        expect(mtu.fix).to.contain('ip link set dev flannel.1 mtu 1450');
        expect((await ctl(h3, 'diff')).stdout).to.contain('ip link set dev flannel.1 mtu 1450');
      } finally {
        await h3.ns.ip('link', 'set', 'dev', 'flannel.1', 'mtu', '1450');
      }
    });
  });

  it('a blocked VXLAN port is reported as "underlay OK but overlay blocked" by status, metrics and doctor', async () => {
    await h2.ns.exec('iptables', '-I', 'INPUT', '-p', 'udp', '--dport', '8472', '-j', 'DROP');
    try {
      const h2Subnet = h2.subnetEnv().FLANNEL_SUBNET!.replace(/\.1\//, '.0/');
      await eventually(async () => (await ctl(h1, 'status')).stdout.includes('underlay OK but overlay blocked'), 10_000, 'overlay blocked diagnosis');
      const status = await ctl(h1, 'status');
      expect(status.code).to.equal(1);
      const row = status.stdout.split('\n').find((l) => l.startsWith(h2Subnet))!;
      expect(row).to.match(/198\.18\.0\.2\s+ok [\d.]+ ms\s+no answer\s+1450\s+underlay OK but overlay blocked/);

      expect(await h1.metric(`weft_peer_reachable{peer="${h2Subnet}",public_ip="198.18.0.2",path="overlay",family="4"}`)).to.equal(0);
      expect(await h1.metric(`weft_peer_reachable{peer="${h2Subnet}",public_ip="198.18.0.2",path="underlay",family="4"}`)).to.equal(1);

      const vxlan = verdictOf((await ctlJson<{ checks: CheckJson[] }>(h1, 'doctor')).checks, 'VXLAN port');
      expect(vxlan.verdict).to.equal('fail');
      expect(vxlan.detail).to.contain(`underlay OK but overlay blocked to ${h2Subnet} (198.18.0.2)`);
      expect(vxlan.fix).to.contain('allow UDP 8472');
    } finally {
      await h2.ns.exec('iptables', '-D', 'INPUT', '-p', 'udp', '--dport', '8472', '-j', 'DROP');
    }
    await eventually(async () => (await ctl(h1, 'status')).code === 0, 10_000, 'peers healthy again');
  });

  it('docker-opts writes Docker options from the node\'s subnet file', async () => {
    const out = join(h1.dir, 'docker_opts.env');
    const r = await ctlRaw(h1, 'docker-opts', '-f', h1.subnetFile, '-d', out);
    expect(r.code, r.stderr).to.equal(0);
    const { readFileSync } = await import('node:fs');
    expect(readFileSync(out, 'utf8')).to.match(/^DOCKER_OPTS=" --bip=10\.244\.\d+\.1\/24 --ip-masq=true --mtu=1450"$/m);
  });
});
