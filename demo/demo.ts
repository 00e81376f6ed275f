/**
 * The weft demo: a real multi-host cluster on one machine, in network
 * namespaces (nothing touches the root namespace). etcd runs on the underlay,
 * the network config goes into etcd, every host runs weftd from its config
 * file and a real dockerd started with the options weft generated, and a
 * container per host. Prints the ping matrices and each node's lease, then
 * tears everything down (or, with --keep, waits for Ctrl-C first).
 *
 *   node dist/demo/demo.js [--hosts 3] [--keep] [--ip-masq]
 */
import { WeftError } from '../common/errors.js';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';
import { Cluster, WEFTD, type WeftNode } from '../test/harness/cluster.js';
import { BUSYBOX_IMAGE, DockerHost } from '../test/harness/docker.js';

const execFileP = promisify(execFile);
const argv = process.argv.slice(2);
const hosts = Number(argv[argv.indexOf('--hosts') + 1]) > 0 && argv.includes('--hosts') ? Number(argv[argv.indexOf('--hosts') + 1]) : 3;
const keep = argv.includes('--keep');
const ipMasq = argv.includes('--ip-masq');
const t0 = Date.now();
const step = (msg: string) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${msg}`);

interface Member {
  node: WeftNode;
  docker: DockerHost;
  container: string;
  ip: string;
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
    const out = container
      ? await from.docker.docker('exec', from.container, 'ping', '-c', '2', '-W', '1', target)
      : await from.node.ns.exec('ping', '-c', '3', '-i', '0.2', '-W', '1', target);
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

async function main(): Promise<number> {
  step(`creating ${hosts} hosts, a switch and etcd in network namespaces`);
  const cluster = await Cluster.create({ hosts, networkConfig: '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1}}' });
  const members: Member[] = [];
  let failures = 0;
  try {
    step(`network config in etcd: ${(await cluster.etcd.etcdctl('get', '/coreos.com/network/config', '--print-value-only')).trim()}`);
    for (const node of cluster.nodes) node.start(ipMasq ? ['--ip-masq'] : []);
    await Promise.all(cluster.nodes.map((n) => n.waitReady(60_000)));
    step('weftd ready on every host (lease held, peers programmed)');

    for (const node of cluster.nodes) {
      const opts = await dockerOptions(node);
      const docker = await DockerHost.start(node.ns.name, join(cluster.dir, `d${node.index}`), opts);
      const container = `c${node.index}`;
      await docker.docker('run', '-d', '--name', container, BUSYBOX_IMAGE, 'sleep', '3600');
      members.push({ node, docker, container, ip: await docker.containerIP(container) });
      step(`h${node.index}: dockerd ${opts.join(' ')}; container ${container} at ${members.at(-1)!.ip}`);
    }

    const leases = await cluster.etcd.etcdctl('get', '--prefix', '/coreos.com/network/subnets/');
    const lines = leases.trim().split('\n');
    const leaseRows: string[][] = [];
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const v = JSON.parse(lines[i + 1]!) as { PublicIP: string; BackendType: string; BackendData?: { VtepMAC?: string } };
      leaseRows.push([lines[i]!.split('/').pop()!.replace('-', '/'), v.PublicIP, v.BackendType, v.BackendData?.VtepMAC ?? '']);
    }
    table('Leases in etcd (/coreos.com/network/subnets/)', ['subnet', 'public IP', 'backend', 'VTEP MAC'], leaseRows);

    const hostRows: string[][] = [];
    const podRows: string[][] = [];
    for (const from of members) {
      const hostRow = [`h${from.node.index}`];
      const podRow = [`${from.container} (${from.ip})`];
      for (const to of members) {
        const h = from === to ? '-' : await ping(from, false, to.node.ip);
        const p = from === to ? '-' : await ping(from, true, to.ip);
        if (h === 'FAIL' || p === 'FAIL') failures++;
        hostRow.push(h);
        podRow.push(p);
      }
      hostRows.push(hostRow);
      podRows.push(podRow);
    }
    table('Host to host over the underlay (ping, avg RTT)', ['from \\ to', ...members.map((m) => `h${m.node.index}`)], hostRows);
    table('Container to container across hosts over the VXLAN overlay (ping, avg RTT; no NAT)', ['from \\ to', ...members.map((m) => m.container)], podRows);

    for (const m of members) {
      const env = m.node.subnetEnv();
      console.log(`\nh${m.node.index} ${m.node.subnetFile}:\n  ${Object.entries(env).map(([k, v]) => `${k}=${v}`).join('\n  ')}`);
    }
    console.log(`\n${failures === 0 ? 'All pings succeeded.' : `${failures} pings FAILED.`}`);

    if (keep) {
      console.log(`\nThe cluster stays up. Try:\n  ip netns exec ${members[0]!.node.ns.name} ip route\n  ${'/usr/bin/docker'} -H unix://${members[0]!.docker.socket} ps\nPress Ctrl-C to tear it down.`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
    }
  } finally {
    step('tearing down: containers, dockerd, weftd, etcd (by PID), then the namespaces');
    await Promise.all(members.map((m) => m.docker.stop()));
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
