/**
 * The weft demo: a real multi-host cluster on one machine, in network
 * namespaces (nothing touches the root namespace). etcd runs on the underlay,
 * the network config goes into etcd, and every host runs weftd from its config
 * file. The Docker hosts run a real dockerd started with the options weft
 * generated and one container; the Kubernetes-style hosts run containerd's CRI
 * with weft's CNI plugin (installed by `weftctl cni install` under flannel's
 * name) and one pod, created over the CRI as kubelet would. Prints the ping
 * matrices and each node's lease, then tears everything down (or, with
 * --keep, waits for Ctrl-C first). --dual-stack runs the same cluster on a
 * dual-stack underlay (2001:2::N next to 198.18.0.N) with an IPv6Network in
 * the config, and pings over both families.
 *
 *   node dist/demo/demo.js [--hosts 3] [--k8s-hosts 1] [--keep] [--ip-masq] [--dual-stack]
 */
import { WeftError } from '../common/errors.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Cluster, WEFTD, type WeftNode } from '../test/harness/cluster.js';
import { ContainerdHost, stockCniPlugins } from '../test/harness/containerd.js';
import { BUSYBOX_IMAGE, DockerHost } from '../test/harness/docker.js';

const execFileP = promisify(execFile);
const argv = process.argv.slice(2);
/** The value of `--name N` when it is a whole number >= min, else the default. */
function count(name: string, fallback: number, min: number): number {
  const i = argv.indexOf(name);
  const n = i >= 0 ? Number(argv[i + 1]) : NaN;
  return Number.isInteger(n) && n >= min ? n : fallback;
}
const hosts = count('--hosts', 3, 1);
const k8sHosts = count('--k8s-hosts', 1, 0);
const WEFTCTL = fileURLToPath(new URL('../bin/weftctl.cjs', import.meta.url));
const keep = argv.includes('--keep');
const ipMasq = argv.includes('--ip-masq');
const dualStack = argv.includes('--dual-stack');
const NETWORK_CONFIG = dualStack
  ? '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/48","Backend":{"Type":"vxlan","VNI":1}}'
  : '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1}}';
const t0 = Date.now();
const step = (msg: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}`);

/** A host and its one workload: a Docker container or a Kubernetes pod. */
interface Member {
  node: WeftNode;
  /** `c1` for a container, `pod4` for a pod. */
  name: string;
  ip: string;
  /** The workload's IPv6 address (--dual-stack), else null. */
  ip6: string | null;
  /** `ping` (an IPv4 or IPv6 target) from inside the workload's network namespace; resolves with ping's output. */
  ping(target: string): Promise<string>;
  stop(): Promise<void>;
}

/** Reads DOCKER_OPTS from the file `weftd docker-opts` wrote (flannel's mk-docker-opts format). */
async function dockerOptions(node: WeftNode): Promise<string[]> {
  const out = join(node.dir, 'docker_opts.env');
  await node.ns.exec(WEFTD, 'docker-opts', '-f', node.subnetFile, '-d', out, '-c');
  const text = (await import('node:fs')).readFileSync(out, 'utf8');
  const m = /^DOCKER_OPTS="(.*)"$/m.exec(text);
  if (!m) throw new WeftError('WEFT_ERR_HARNESS', `no DOCKER_OPTS in ${out}`);
  return m[1]!.trim().split(/\s+/);
}

/** Pings from a member's container or host; "ok <average RTT> ms" or "FAIL". */
async function ping(from: Member, container: boolean, target: string): Promise<string> {
  try {
    const out = container ? await from.ping(target) : await from.node.ns.exec('ping', '-c', '3', '-i', '0.2', '-W', '1', target);
    const avg = /= [\d.]+\/([\d.]+)\//.exec(out)?.[1];
    return `ok ${avg ?? '?'} ms`;
  } catch {
    return 'FAIL';
  }
}

function table(title: string, header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => '  ' + cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  console.log(`\n${title}`);
  console.log(line(header));
  for (const r of rows) console.log(line(r));
}

/** A pod's global IPv6 address on eth0 (the CNI result's second range), or null when it got none. */
async function podIPv6(pod: { exec(cmd: string, ...args: string[]): Promise<string> }): Promise<string | null> {
  const links = JSON.parse((await pod.exec('ip', '-j', '-6', 'addr', 'show', 'dev', 'eth0', 'scope', 'global')) || '[]') as { addr_info: { local: string }[] }[];
  return links[0]?.addr_info[0]?.local ?? null;
}

async function main(): Promise<number> {
  step(`creating ${hosts} Docker and ${k8sHosts} Kubernetes-style hosts, a switch and etcd in network namespaces`);
  const cluster = await Cluster.create({ hosts: hosts + k8sHosts, networkConfig: NETWORK_CONFIG, ...(dualStack ? { stack: 'dual' as const } : {}) });
  const dockerNodes = cluster.nodes.slice(0, hosts);
  const k8sNodes = cluster.nodes.slice(hosts);
  const members: Member[] = [];
  const runtimes: ContainerdHost[] = [];
  let failures = 0;
  try {
    step(`network config in etcd: ${(await cluster.etcd.etcdctl('get', '/coreos.com/network/config', '--print-value-only')).trim()}`);
    for (const node of k8sNodes) {
      const runtime = await ContainerdHost.start({ netns: node.ns, dir: join(cluster.dir, `k${node.index}`), cniPlugins: stockCniPlugins(['bridge', 'host-local', 'loopback', 'portmap']) });
      runtimes.push(runtime);
      // kube-flannel's conflist reads /run/flannel/subnet.env; the runtime and its plugins see this host's own /run.
      await execFileP(WEFTCTL, ['cni', 'install', '--bin-dir', runtime.cniBinDir, '--conf-dir', runtime.cniConfDir, '--name', 'flannel']);
      node.useSubnetFile(runtime.hostPath('/run/flannel/subnet.env'));
      step(`h${node.index}: containerd (CRI) with weft's CNI plugin installed as "flannel" (weftctl cni install)`);
    }
    for (const node of cluster.nodes) node.start(ipMasq ? ['--ip-masq'] : []);
    await Promise.all(cluster.nodes.map((n) => n.waitReady(60_000)));
    step('weftd ready on every host (lease held, peers programmed)');

    for (const node of dockerNodes) {
      const opts = await dockerOptions(node);
      const docker = await DockerHost.start(node.ns.name, join(cluster.dir, `d${node.index}`), opts);
      const name = `c${node.index}`;
      await docker.docker('run', '-d', '--name', name, BUSYBOX_IMAGE, 'sleep', '3600');
      if (dualStack) await docker.waitBridgeIPv6();
      const ip6 = dualStack ? await docker.containerIPv6(name) : null;
      const ping = (t: string) => docker.docker('exec', name, t.includes(':') ? 'ping6' : 'ping', '-c', '2', '-W', '1', t);
      members.push({ node, name, ip: await docker.containerIP(name), ip6, ping, stop: () => docker.stop() });
      step(`h${node.index}: dockerd ${opts.join(' ')}; container ${name} at ${members.at(-1)!.ip}${ip6 ? ` and ${ip6}` : ''}`);
    }
    for (const [i, node] of k8sNodes.entries()) {
      const pod = await runtimes[i]!.runPod(`pod${node.index}`);
      const ip6 = dualStack ? await podIPv6(pod) : null;
      members.push({ node, name: pod.name, ip: pod.ip, ip6, ping: (t) => pod.exec('ping', '-c', '2', '-W', '1', t), stop: async () => undefined });
      step(`h${node.index}: pod ${pod.name} at ${pod.ip}${ip6 ? ` and ${ip6}` : ''} (RunPodSandbox over the CRI, ${Math.round(pod.runMs)} ms)`);
    }

    const leases = await cluster.etcd.etcdctl('get', '--prefix', '/coreos.com/network/subnets/');
    const lines = leases.trim().split('\n');
    const leaseRows: string[][] = [];
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const v = JSON.parse(lines[i + 1]!) as { PublicIP: string; PublicIPv6?: string | null; BackendType: string; BackendData?: { VtepMAC?: string }; BackendV6Data?: { VtepMAC?: string } };
      const key = lines[i]!.split('/').pop()!;
      if (dualStack) {
        // A dual-stack key names both subnets: 10.244.3.0-24&fd00:10:244:3::-64.
        const subnets = key.split('&').map((s) => s.replace(/-(\d+)$/, '/$1'));
        leaseRows.push([subnets.join(' '), `${v.PublicIP} ${v.PublicIPv6 ?? '-'}`, v.BackendType, `${v.BackendData?.VtepMAC ?? ''} ${v.BackendV6Data?.VtepMAC ?? '-'}`]);
      } else {
        leaseRows.push([key.replace('-', '/'), v.PublicIP, v.BackendType, v.BackendData?.VtepMAC ?? '']);
      }
    }
    table('Leases in etcd (/coreos.com/network/subnets/)', dualStack ? ['subnets', 'public IPs', 'backend', 'VTEP MACs (v4 v6)'] : ['subnet', 'public IP', 'backend', 'VTEP MAC'], leaseRows);

    const families = dualStack ? (['IPv4', 'IPv6'] as const) : (['IPv4'] as const);
    for (const family of families) {
      const v6 = family === 'IPv6';
      const hostRows: string[][] = [];
      const podRows: string[][] = [];
      for (const from of members) {
        const hostRow = [`h${from.node.index}`];
        const podRow = [`${from.name} (${v6 ? from.ip6 : from.ip})`];
        for (const to of members) {
          const h = from === to ? '-' : await ping(from, false, v6 ? to.node.ip6! : to.node.ip);
          const p = from === to ? '-' : to.ip6 === null && v6 ? 'FAIL' : await ping(from, true, v6 ? to.ip6! : to.ip);
          if (h === 'FAIL' || p === 'FAIL') failures++;
          hostRow.push(h);
          podRow.push(p);
        }
        hostRows.push(hostRow);
        podRows.push(podRow);
      }
      const over = dualStack ? `, ${family}` : '';
      table(`Host to host over the underlay${over} (ping, avg RTT)`, ['from \\ to', ...members.map((m) => `h${m.node.index}`)], hostRows);
      table(`Container and pod to each other across hosts over the VXLAN overlay${over} (ping, avg RTT; no NAT)`, ['from \\ to', ...members.map((m) => m.name)], podRows);
    }

    for (const m of members) {
      const env = m.node.subnetEnv();
      console.log(`\nh${m.node.index} ${m.node.subnetFile}:\n  ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join('\n  ')}`);
    }
    console.log(`\n${failures === 0 ? 'All pings succeeded.' : `${failures} pings FAILED.`}`);

    if (keep) {
      console.log(`\nThe cluster stays up. Try:\n  ip netns exec ${members[0]!.node.ns.name} ip route\nPress Ctrl-C to tear it down.`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
    }
  } finally {
    step('tearing down: containers, dockerd, pods, containerd, weftd, etcd (by PID), then the namespaces');
    await Promise.all([...members.map((m) => m.stop()), ...runtimes.map((r) => r.stop())]);
    await cluster.destroy();
    const left = (await execFileP('ip', ['netns', 'list'])).stdout.split('\n').filter((l) => l.includes(cluster.sw.ns.name.replace(/sw$/, '')));
    step(left.length === 0 ? 'done: nothing left behind' : `left behind: ${left.join(', ')}`);
  }
  return failures === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`demo failed: ${(err as Error).stack ?? err}`);
    process.exit(1);
  },
);
