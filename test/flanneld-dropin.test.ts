/**
 * weftd as a drop-in for flanneld in etcd mode, against real etcd and
 * namespaces: started with flannel's documented command lines and a flanneld
 * unit's ExecStart (only the binary and the file paths changed), the
 * iptables tools needed only when rules are asked for, and two daemons on one
 * host (flannel's way to run two networks) keeping their rules apart.
 */
import { expect } from 'chai';
import { mkdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Cluster, ETCD_IP, HEALTHZ_PORT, WEFTD, WeftNode } from './harness/cluster.js';
import { makeTestPki, type TestPki } from './harness/certs.js';
import { eventually } from './harness/netns.js';
import { trafficChains } from '../kernel/iptables.js';

const ENDPOINT = `http://${ETCD_IP}:2379`;
const VXLAN_CONFIG = '{"Network":"10.50.0.0/16","Backend":{"Type":"vxlan","VNI":2}}';

/** What a unit's Environment= lines add so that the test can watch the daemon: the health endpoint, and state kept in the test's directory. */
function watchable(n: WeftNode, port = HEALTHZ_PORT): NodeJS.ProcessEnv {
  return { FLANNELD_HEALTHZ_IP: '127.0.0.1', FLANNELD_HEALTHZ_PORT: String(port), WEFTD_STATE_DIR: join(n.dir, 'state') };
}

/**
 * The command line systemd runs for a unit's ExecStart: continuation lines
 * joined, `${VAR}` and `$VAR` taken from its Environment= lines, split at
 * whitespace (the units here quote nothing), without the binary.
 */
export function execStartArgs(unit: string): string[] {
  const joined = unit.replace(/\\\n/g, ' ');
  const env = new Map<string, string>();
  for (const m of joined.matchAll(/^Environment=(\w+)=(.*)$/gm)) env.set(m[1]!, m[2]!.trim());
  const line = /^ExecStart=(.*)$/m.exec(joined)?.[1];
  if (!line) throw new Error('no ExecStart');
  const expanded = line.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => env.get((a ?? b)!) ?? '');
  return expanded.trim().split(/\s+/).slice(1);
}

/** GET on a health endpoint inside the host's namespace: the status, 0 when nothing answers. */
async function readyz(n: WeftNode, port: number): Promise<number> {
  const script = `fetch('http://127.0.0.1:${port}/readyz').then(r=>process.stdout.write(String(r.status)),()=>process.stdout.write('0'))`;
  return Number(await n.ns.exec('node', '-e', script));
}

async function metricAt(n: WeftNode, port: number, name: string): Promise<number> {
  const script = `fetch('http://127.0.0.1:${port}/metrics').then(async r=>process.stdout.write(await r.text()))`;
  const line = (await n.ns.exec('node', '-e', script)).split('\n').find((l) => l.startsWith(name + ' '));
  if (!line) throw new Error(`no metric ${name}`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('flanneld drop-in: flannel command lines, optional iptables, two networks on one host @real', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  before(async () => {
    cluster = await Cluster.create({ hosts: 2 });
    await cluster.etcd.etcdctl('put', '/vxlan/network/config', VXLAN_CONFIG);
  });
  after(async () => cluster?.destroy());

  it("starts with flannel's documented multi-network command line (Documentation/running.md) and FLANNELD_* variables", async () => {
    const h1 = cluster.node(1);
    // flanneld -subnet-file /vxlan.env -etcd-prefix=/vxlan/network, the subnet file moved into the test's directory.
    h1.startWith(['-subnet-file', join(h1.dir, 'vxlan.env'), '-etcd-prefix=/vxlan/network'], {
      FLANNELD_ETCD_ENDPOINTS: ENDPOINT,
      FLANNELD_IFACE: 'eth0',
      FLANNELD_IP_BLACKHOLE_ROUTE: 'true',
      ...watchable(h1),
    });
    await h1.waitReady();
    h1.useSubnetFile(join(h1.dir, 'vxlan.env'));
    const env = h1.subnetEnv();
    expect(env.FLANNEL_NETWORK).to.equal('10.50.0.0/16');
    expect(env.FLANNEL_SUBNET).to.match(/^10\.50\.\d+\.1\/24$/);
    const key = `/vxlan/network/subnets/${env.FLANNEL_SUBNET!.replace(/\.1\/24$/, '.0-24')}`;
    expect(await cluster.etcd.etcdctl('get', key, '--print-value-only')).to.include('"PublicIP":"198.18.0.1"');
    expect(await h1.ns.ipJson<unknown[]>('link', 'show', 'flannel.2')).to.have.length(1);
    // --ip-blackhole-route: below every other route to the subnet, so a bridge carrying it is still reached.
    const subnet = env.FLANNEL_SUBNET!.replace(/\.1\/24$/, '.0/24');
    expect((await h1.ns.exec('ip', 'route', 'show', 'type', 'blackhole')).trim()).to.equal(`blackhole ${subnet} proto 87 metric 4294967295`);
    await h1.ns.exec('ip', 'link', 'add', 'cni0', 'type', 'bridge');
    await h1.ns.exec('ip', 'addr', 'add', env.FLANNEL_SUBNET!, 'dev', 'cni0');
    await h1.ns.exec('ip', 'link', 'set', 'cni0', 'up');
    const pod = subnet.replace(/\.0\/24$/, '.7');
    expect(await h1.ns.exec('ip', 'route', 'get', pod)).to.match(new RegExp(`^${pod.replace(/\./g, '\\.')} dev cni0 `));
    await h1.ns.exec('ip', 'link', 'set', 'cni0', 'down');
    await h1.ns.exec('ip', 'route', 'get', pod).then(
      () => expect.fail('the bridge down: the subnet is blackholed'),
      (err: { stderr: string }) => expect(err.stderr).to.match(/Invalid argument/),
    );
    await h1.ns.exec('ip', 'link', 'del', 'cni0');
    await h1.stop();
  });

  it('turns ready on a host without the iptables tools when masquerade and forward rules are off, and says what is missing when they are on', async () => {
    const h1 = cluster.node(1);
    // A PATH with node (weftd's interpreter) and ip (the harness's netns exec), and no iptables.
    const bin = join(h1.dir, 'bin-without-iptables');
    mkdirSync(bin, { recursive: true });
    symlinkSync('/usr/bin/node', join(bin, 'node'));
    symlinkSync('/usr/sbin/ip', join(bin, 'ip'));
    const env = { PATH: bin, FLANNELD_ETCD_ENDPOINTS: ENDPOINT, FLANNELD_IFACE: 'eth0', FLANNELD_SUBNET_FILE: join(h1.dir, 'no-iptables.env'), ...watchable(h1) };
    h1.startWith(['-iptables-forward-rules=false'], env);
    await h1.waitReady();
    expect(h1.logTail(50)).to.include('iptables tools not found: no rules asked for');
    await h1.stop();

    h1.startWith(['-ip-masq'], env);
    await eventually(async () => /iptables check failed: iptables-save not found in PATH/.test(h1.logTail(50)), 15_000, 'the missing tool named');
    const r = await h1.http('/readyz');
    expect(r.status).to.equal(503);
    expect(r.body).to.match(/installing iptables rules/);
    await h1.stop();
  });

  it('two weftd on one host, each with its own etcd prefix, network, VXLAN device and subnet file, keep both rule sets in place', async () => {
    const h2 = cluster.node(2);
    // The default network, as the cluster's hosts run it (config file), masquerading.
    h2.start(['--ip-masq']);
    // The second network, started the documented way, with its own health and probe ports.
    const second = new WeftNode(h2.ns, h2.ip, 2, join(cluster.dir, 'second'), h2.etcdEndpoints);
    second.startWith(['-subnet-file', join(second.dir, 'vxlan.env'), '-etcd-prefix=/vxlan/network', '-ip-masq', '-iptables-resync=1', '--probe-port=8474'], {
      FLANNELD_ETCD_ENDPOINTS: ENDPOINT,
      FLANNELD_IFACE: 'eth0',
      ...watchable(second, 8481),
    });
    try {
      await h2.waitReady();
      await eventually(async () => (await readyz(second, 8481)) === 200, 30_000, 'the second daemon ready');
      const chains = trafficChains('/vxlan/network');
      // Several checks of each daemon (every second): neither repairs the other's rules away.
      await sleep(4000);
      expect(await h2.metric('weft_iptables_repairs_total'), 'first daemon: installed once').to.equal(1);
      expect(await metricAt(second, 8481, 'weft_iptables_repairs_total'), 'second daemon: installed once').to.equal(1);
      const nat = await h2.ns.exec('iptables-save', '-t', 'nat');
      const filter = await h2.ns.exec('iptables-save', '-t', 'filter');
      expect(nat).to.include('-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG\n');
      expect(nat).to.include('-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully');
      expect(nat).to.include(`-A POSTROUTING -m comment --comment "flanneld masq" -j ${chains.masq}\n`);
      expect(nat).to.include(`-A ${chains.masq} -s 10.50.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully`);
      expect(filter).to.include('-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT');
      expect(filter).to.include(`-A ${chains.forward} -s 10.50.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT`);
      expect(await h2.ns.ipJson<unknown[]>('link', 'show', 'flannel.1')).to.have.length(1);
      expect(await h2.ns.ipJson<unknown[]>('link', 'show', 'flannel.2')).to.have.length(1);
    } finally {
      await second.stop();
      await h2.stop();
    }
  });
});

describe('flanneld drop-in: a flanneld unit over etcd with client certificates @real', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  let pki: TestPki;
  before(async () => {
    pki = await makeTestPki([ETCD_IP]);
    cluster = await Cluster.create({
      hosts: 1,
      etcdTls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.caCert, clientCertAuth: true, clientCertFile: pki.clientCert, clientKeyFile: pki.clientKey },
    });
    await cluster.etcd.etcdctl('put', '/kube-centos/network/config', '{"Network":"10.60.0.0/16","SubnetLen":24,"Backend":{"Type":"vxlan"}}');
  });
  after(async () => cluster?.destroy());

  /** A flanneld unit as distributions and install guides ship it; only the certificate paths point into the test's PKI. */
  const unit = (caLine: string) => `[Unit]
Description=Flanneld overlay address etcd agent
After=network.target
After=network-online.target
Wants=network-online.target
After=etcd.service
Before=docker.service

[Service]
Type=notify
Environment=ETCD_ENDPOINTS=https://${ETCD_IP}:2379
Environment=FLANNEL_ETCD_PREFIX=/kube-centos/network
ExecStart=/usr/local/bin/flanneld \\
  ${caLine}-etcd-certfile=${pki.clientCert} \\
  -etcd-keyfile=${pki.clientKey} \\
  -etcd-endpoints=\${ETCD_ENDPOINTS} \\
  -etcd-prefix=\${FLANNEL_ETCD_PREFIX} \\
  -iface=eth0 \\
  -ip-masq
ExecStartPost=/usr/local/bin/mk-docker-opts.sh -k DOCKER_NETWORK_OPTIONS -d /run/flannel/docker
Restart=always
RestartSec=5

[Install]
WantedBy=multi-user.target
RequiredBy=docker.service
`;

  it("starts from the unit's full ExecStart line and serves its network", async () => {
    const h1 = cluster.node(1);
    const args = execStartArgs(unit(`-etcd-cafile=${pki.caCert} \\\n  `));
    expect(args.slice(0, 2)).to.deep.equal([`-etcd-cafile=${pki.caCert}`, `-etcd-certfile=${pki.clientCert}`]);
    expect(args).to.include('-etcd-prefix=/kube-centos/network').and.include(`-etcd-endpoints=https://${ETCD_IP}:2379`);
    h1.startWith(args, { FLANNELD_SUBNET_FILE: join(h1.dir, 'subnet.env'), ...watchable(h1) });
    await h1.waitReady();
    expect(h1.subnetEnv().FLANNEL_NETWORK).to.equal('10.60.0.0/16');
    expect(h1.subnetEnv().FLANNEL_IPMASQ).to.equal('true');
    const nat = await h1.ns.exec('iptables-save', '-t', 'nat');
    expect(nat).to.include(`-A ${trafficChains('/kube-centos/network').masq} -s 10.60.0.0/16 ! -d 224.0.0.0/4`);
    await h1.stop();
  });

  it('with a client certificate and no -etcd-cafile, trusts the system roots as flanneld does; roots without etcd\'s CA fail, never in plain text', async () => {
    const h1 = cluster.node(1);
    const args = [...execStartArgs(unit('')), '-v=2', `--iface-can-reach=${ETCD_IP}`, '-public-ipv6', 'fd00::1'];
    expect(args.some((a) => a.startsWith('-etcd-cafile'))).to.equal(false);
    const env = { FLANNELD_SUBNET_FILE: join(h1.dir, 'subnet.env'), ...watchable(h1) };
    h1.startWith(args, { ...env, SSL_CERT_FILE: pki.caCert });
    await h1.waitReady();
    const log = h1.logTail(100);
    expect(log).to.include('--public-ipv6 fd00::1 has no effect: the network config does not enable IPv6');
    expect(log).to.match(/underlay eth0 \(198\.18\.0\.1,/);
    await h1.stop();

    h1.startWith(args, { ...env, SSL_CERT_FILE: pki.rogueCaCert });
    await eventually(async () => /unable to verify the first certificate/.test(h1.logTail(20)), 15_000, 'certificate error logged');
    expect((await h1.http('/readyz')).status).to.equal(503);
    await h1.stop();
  });

  it('refuses the Kubernetes subnet manager with the reason, and an unknown flag by its name (exit 2)', async () => {
    const h1 = cluster.node(1);
    for (const [extra, pattern] of [
      ['--kube-subnet-mgr', /--kube-subnet-mgr: weft keeps its subnet leases in etcd only/],
      ['-logtostderr', /Unknown argument: -logtostderr/],
    ] as const) {
      try {
        await h1.ns.exec('/usr/bin/env', `FLANNELD_SUBNET_FILE=${join(h1.dir, 'x.env')}`, WEFTD, ...execStartArgs(unit('')), extra);
        expect.fail(`${extra}: should exit 2`);
      } catch (err) {
        expect((err as { code: number }).code, extra).to.equal(2);
        expect((err as { stderr: string }).stderr, extra).to.match(pattern);
      }
    }
  });
});
