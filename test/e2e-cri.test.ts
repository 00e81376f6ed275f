import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { Subnet } from '../common/subnet.js';
import { Cluster, type WeftNode } from './harness/cluster.js';
import { ContainerdHost, stockCniPlugins, type CriPod } from './harness/containerd.js';
import { CriError } from './harness/cri.js';
import { BUSYBOX_IMAGE, DockerHost } from './harness/docker.js';

const execFileP = promisify(execFile);
const WEFTCTL = fileURLToPath(new URL('../bin/weftctl.cjs', import.meta.url));
/** Where kube-flannel's conflist, unchanged, has the plugin read the node's lease. */
const SUBNET_ENV = '/run/flannel/subnet.env';
/** The network name of flannel's conflist, which host-local keys its reservations by. */
const NETWORK = 'cbr0';
/** kube-flannel's stock conflist (its manifest's cni-conf.json), verbatim. */
const KUBE_FLANNEL_CONFLIST = {
  name: 'cbr0',
  cniVersion: '0.3.1',
  plugins: [
    { type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true } },
    { type: 'portmap', capabilities: { portMappings: true } },
  ],
};
/** h1..h3 run containerd's CRI with weft's plugin installed as `flannel`; h4 runs Docker with weft's options. */
const CRI_HOSTS = 3;

/** The veths in a host's namespace: one per attached pod. */
async function veths(node: WeftNode): Promise<string[]> {
  const links = await node.ns.ipJson<{ ifname: string }[]>('link', 'show', 'type', 'veth');
  return links.map((l) => l.ifname).sort();
}

/** Files in a directory of a containerd host, or none when it does not exist yet. */
function entries(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir).sort() : [];
}

/** What a pod attachment leaves on its host: the veths, host-local's IP reservations, weft-cni's saved delegate configs. */
async function footprint(node: WeftNode, host: ContainerdHost): Promise<{ veths: string[]; reservations: string[]; saved: string[] }> {
  const reservations = entries(host.hostPath(`/var/lib/cni/networks/${NETWORK}`)).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f));
  return { veths: await veths(node), reservations, saved: entries(host.hostPath('/var/lib/cni/flannel')) };
}

async function ping(from: CriPod, ip: string): Promise<boolean> {
  return from.exec('ping', '-c', '1', '-W', '2', ip).then(
    () => true,
    () => false,
  );
}

describe('end to end: Kubernetes pods through weft-cni under containerd\'s CRI, three hosts and a Docker host @real', function () {
  this.timeout(300_000);
  let cluster: Cluster;
  const hosts: ContainerdHost[] = [];
  let docker: DockerHost;
  /** Two pods per CRI host, by host index 0..2. */
  const pods: CriPod[][] = [];

  const startWeftd = (n: WeftNode) => n.start(['--ip-masq']);

  before(async () => {
    cluster = await Cluster.create({ hosts: CRI_HOSTS + 1 });
    for (const n of cluster.nodes.slice(0, CRI_HOSTS)) {
      const host = await ContainerdHost.start({ netns: n.ns, dir: join(cluster.dir, `c${n.index}`), cniPlugins: stockCniPlugins(['bridge', 'host-local', 'loopback', 'portmap']) });
      hosts.push(host);
      // As an operator would: the plugin under flannel's name and the conflist, with the default subnet file path,
      // which weftd on this host writes (containerd and its plugins see this host's own /run).
      await execFileP(WEFTCTL, ['cni', 'install', '--bin-dir', host.cniBinDir, '--conf-dir', host.cniConfDir, '--name', 'flannel']);
      n.useSubnetFile(host.hostPath(SUBNET_ENV));
    }
    for (const h of hosts) await h.waitNetworkReady();
  });

  after(async () => {
    await Promise.all(hosts.map((h) => h.stop()));
    await docker?.stop();
    await cluster?.destroy();
  });

  it('a pod started before weftd has written the subnet file fails with a clear error, and starts once weftd is up', async () => {
    const err = await hosts[0]!.runPod('early').then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).to.be.instanceOf(CriError);
    const message = (err as CriError).message;
    expect(message).to.include(SUBNET_ENV);
    expect(message).to.match(/weftd/);
    expect((await footprint(cluster.node(1), hosts[0]!)).saved, 'nothing saved for the failed pod').to.deep.equal([]);

    for (const n of cluster.nodes) startWeftd(n);
    await Promise.all(cluster.nodes.map((n) => n.waitReady(60_000)));
    const pod = await hosts[0]!.runPod('early');
    expect(Subnet.parse(cluster.node(1).subnetEnv().FLANNEL_SUBNET!).contains(pod.ip)).to.equal(true);
    await pod.remove();
  });

  it('three hosts x two pods: each pod has an IP of its host\'s lease, and every pod pings every other', async () => {
    for (const [i, host] of hosts.entries()) pods.push(await Promise.all([host.runPod(`p${i + 1}a`), host.runPod(`p${i + 1}b`)]));
    for (const [i, n] of cluster.nodes.slice(0, CRI_HOSTS).entries()) {
      const lease = Subnet.parse(n.subnetEnv().FLANNEL_SUBNET!);
      for (const p of pods[i]!) expect(lease.contains(p.ip), `${p.name} ${p.ip} in ${lease}`).to.equal(true);
    }
    const all = pods.flat();
    const failed: string[] = [];
    await Promise.all(
      all.map(async (from) => {
        for (const to of all) if (to !== from && !(await ping(from, to.ip))) failed.push(`${from.name} -> ${to.name} (${to.ip})`);
      }),
    );
    expect(failed).to.deep.equal([]);
  });

  it('a TCP peer on another host sees the pod IP the CRI reports (no NAT inside the overlay, with --ip-masq on)', async () => {
    const [client] = pods[0]!;
    const [server] = pods[1]!;
    const listener = server!.spawn(process.execPath, ['-e', "require('net').createServer((s) => s.end(s.remoteAddress)).listen(8080)"]);
    try {
      let seen = '';
      for (let attempt = 0; attempt < 50 && !seen; attempt++) {
        seen = await client!
          .exec(process.execPath, '-e', `const s = require('net').connect(8080, '${server!.ip}'); s.on('data', (d) => process.stdout.write(d)); s.on('error', () => process.exit(1));`)
          .catch(() => '');
        if (!seen) await new Promise((r) => setTimeout(r, 100));
      }
      expect(seen.replace(/^::ffff:/, '')).to.equal(client!.ip);
    } finally {
      listener.kill();
    }
  });

  it('stopping and removing a pod frees its IP, its veth and its saved config; 50 pods created and removed leave nothing', async () => {
    const node = cluster.node(2);
    const host = hosts[1]!;
    const before = await footprint(node, host);
    expect(before.reservations).to.have.length(2);
    expect(before.saved).to.have.length(2);

    const [, second] = pods[1]!;
    await second!.remove();
    const after = await footprint(node, host);
    expect(after.reservations).to.deep.equal(before.reservations.filter((ip) => ip !== second!.ip));
    expect(after.veths).to.have.length(before.veths.length - 1);
    expect(after.saved).to.have.length(1);

    for (let batch = 0; batch < 5; batch++) {
      const created = await Promise.all(Array.from({ length: 10 }, (_, i) => host.runPod(`churn-${batch}-${i}`)));
      expect(new Set(created.map((p) => p.ip)).size, 'distinct IPs').to.equal(10);
      await Promise.all(created.map((p) => p.remove()));
    }
    expect(await footprint(node, host)).to.deep.equal(after);
  });

  it('weftd restarted while pods are being created: no pod fails', async () => {
    const node = cluster.node(3);
    const host = hosts[2]!;
    const creating = Promise.all(Array.from({ length: 10 }, (_, i) => host.runPod(`restart-${i}`)));
    await node.stop('SIGTERM');
    startWeftd(node);
    const created = await creating;
    await node.waitReady(60_000);
    const lease = Subnet.parse(node.subnetEnv().FLANNEL_SUBNET!);
    for (const p of created) expect(lease.contains(p.ip), p.name).to.equal(true);
    expect(await ping(created[0]!, pods[0]![0]!.ip), 'a new pod reaches a pod on h1').to.equal(true);
    await Promise.all(created.map((p) => p.remove()));
  });

  it('a mixed cluster: a Docker host (--bip from weft\'s options) and the CRI hosts reach each other\'s containers', async () => {
    const n = cluster.node(CRI_HOSTS + 1);
    const out = join(n.dir, 'docker_opts.env');
    await n.ns.exec(WEFTCTL, 'docker-opts', '-f', n.subnetFile, '-d', out);
    const opts = /^DOCKER_OPTS="(.*)"$/m.exec(readFileSync(out, 'utf8'))![1]!.trim().split(' ');
    docker = await DockerHost.start(n.ns.name, join(cluster.dir, `d${n.index}`), opts);
    await docker.docker('run', '-d', '--name', 'c4', BUSYBOX_IMAGE, 'sleep', '3600');
    const containerIP = await docker.containerIP('c4');
    const pod = pods[0]![0]!;
    expect(await ping(pod, containerIP), 'pod on h1 -> container on h4').to.equal(true);
    const back = await docker.docker('exec', 'c4', 'ping', '-c', '1', '-W', '2', pod.ip);
    expect(back, 'container on h4 -> pod on h1').to.match(/1 packets received/);
  });

  it('kube-flannel\'s own conflist (cniVersion 0.3.1), unchanged, works with weft\'s plugin installed as flannel', async () => {
    const host = hosts[1]!;
    host.writeCniConfig('10-flannel.conflist', KUBE_FLANNEL_CONFLIST);
    // containerd reloads a changed conflist on its own: a pod is attached with it once the delegate config weft-cni
    // saved for the pod carries the conflist's version.
    const savedVersion = (p: CriPod) => (JSON.parse(readFileSync(join(host.hostPath('/var/lib/cni/flannel'), `${p.id}@eth0`), 'utf8')) as { cniVersion: string }).cniVersion;
    let pod = await host.runPod('kube-flannel-conf');
    for (let attempt = 0; savedVersion(pod) !== '0.3.1' && attempt < 20; attempt++) {
      await pod.remove();
      await new Promise((r) => setTimeout(r, 100));
      pod = await host.runPod('kube-flannel-conf');
    }
    expect(savedVersion(pod)).to.equal('0.3.1');
    expect(Subnet.parse(cluster.node(2).subnetEnv().FLANNEL_SUBNET!).contains(pod.ip)).to.equal(true);
    expect(await ping(pod, pods[0]![0]!.ip), 'to a pod on h1').to.equal(true);
    await pod.remove();
  });
});
