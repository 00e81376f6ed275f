/**
 * `npm run bench:cni [-- --quick]`, and phase `cni` of `npm run bench`: what
 * weft's CNI plugin adds to a pod's start. weft-cni's ADD and DEL are timed
 * next to the bare `bridge` plugin doing the same attachment with the very
 * delegate config weft-cni hands it, and next to a bare `node -e 0`, all
 * three spawned alike by one helper inside the host namespace
 * (bench/cni-runner.ts), interleaved round by round so that the machine's
 * drift weighs on each the same. Results go to stdout and to
 * bench/results/cni[-quick].json, which bench/report.ts renders.
 *
 * The host is a namespace of its own with the subnet file, weft-cni's
 * dataDir and host-local's store in a temporary directory; each attachment
 * gets a fresh pod namespace. Namespaces, helper and directory go at the
 * end, and at exit on Ctrl-C (test/harness/at-exit.ts).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, release } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { conflist, install } from '../cni/install.js';
import { parseNetConf } from '../cni/conf.js';
import { buildDelegate } from '../cni/delegate.js';
import { WeftError } from '../common/errors.js';
import { Subnet } from '../common/subnet.js';
import { readSubnetEnv } from '../lease/subnet-env.js';
import { tempDir } from '../test/harness/at-exit.js';
import { Netns, teardownAll } from '../test/harness/netns.js';
import type { RunRequest, RunResult } from './cni-runner.js';
import { Rpc } from './cluster-rpc.js';
import { quantile } from './cluster-stats.js';
import { cniTable, cniVerdict, CNI_RESULTS_FILE } from './report.js';

const RUNNER = fileURLToPath(new URL('./cni-runner.js', import.meta.url));
const DEBIAN_PLUGINS = '/usr/lib/cni';
/** flannel's subnet file as weftd writes it for a node holding 10.244.5.0/24. */
const SUBNET_FILE_TEXT = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n';
const NODE_SUBNET = Subnet.parse('10.244.5.0/24');
/** The network name of kube-flannel's conflist (cni/install.ts writes it for `flannel`): host-local's store directory. */
const NETWORK = 'cbr0';

/** Rounds per mode: with 100, p99 is the second slowest of each column. */
export const CNI_ROUNDS = { quick: 15, full: 100 } as const;

/** One column: every sample in round order (ms), its median and p99. */
export interface CniTiming {
  readonly samples: readonly number[];
  readonly p50: number;
  readonly p99: number;
}

export interface CniMachine {
  readonly cores: number;
  readonly kernel: string;
  readonly node: string;
  /** The delegate plugins' Debian package and version. */
  readonly plugins: string;
}

/** What the CNI phase writes to bench/results/cni[-quick].json. */
export interface CniResults {
  readonly mode: 'quick' | 'full';
  readonly date?: string;
  readonly machine: CniMachine;
  /** The 1-minute load average when the phase started and when it ended. */
  readonly load: { readonly before: number; readonly after: number };
  readonly rounds: number;
  /** The file system under the temporary directory (weft-cni's dataDir: its fsync is part of an ADD). */
  readonly stateFs: string;
  readonly weftAdd: CniTiming;
  readonly weftDel: CniTiming;
  readonly bridgeAdd: CniTiming;
  readonly bridgeDel: CniTiming;
  readonly nodeStart: CniTiming;
}

function timing(samples: readonly number[]): CniTiming {
  return { samples: samples.map((x) => Math.round(x * 1000) / 1000), p50: quantile(samples, 0.5), p99: quantile(samples, 0.99) };
}

function harness(message: string): WeftError {
  return new WeftError('WEFT_ERR_HARNESS', `cni bench: ${message}`);
}

function commandOutput(cmd: string, args: string[], fallback: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() || fallback;
  } catch {
    return fallback;
  }
}

function cniMachine(): CniMachine {
  const cores = readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('processor')).length;
  const plugins = commandOutput('dpkg-query', ['-W', '-f', '${Package} ${Version}', 'containernetworking-plugins'], 'unknown');
  return { cores, kernel: release(), node: process.version, plugins };
}

/** The address an ADD result gives the pod; throws unless it is a pod address of the node's subnet. */
function podAddress(who: string, stdout: string): string {
  let address: unknown;
  try {
    address = (JSON.parse(stdout) as { ips?: Array<{ address?: unknown }> }).ips?.[0]?.address;
  } catch {
    // below
  }
  const [ip, len] = typeof address === 'string' ? address.split('/') : [];
  const host = ip ? Number(ip.split('.')[3]) : NaN;
  if (!ip || len !== String(NODE_SUBNET.prefixLength) || !NODE_SUBNET.contains(ip) || host < 2 || host > 254) {
    throw harness(`${who} returned no pod address in ${NODE_SUBNET}: ${stdout.trim().slice(0, 500)}`);
  }
  return ip;
}

/**
 * Measures `rounds` rounds (plus one uncounted round first, which warms the
 * page cache and checks that the bare bridge gets weft-cni's delegate config).
 */
export async function cniBench(o: { rounds: number; mode: 'quick' | 'full' }): Promise<CniResults> {
  if (!existsSync(join(DEBIAN_PLUGINS, 'bridge')) || !existsSync(join(DEBIAN_PLUGINS, 'host-local'))) {
    throw harness(`${DEBIAN_PLUGINS}/bridge or host-local missing: apt-get install containernetworking-plugins`);
  }
  const loadBefore = loadavg()[0]!;
  const dir = tempDir('weft-cni-bench-');
  const binDir = join(dir, 'opt/cni/bin');
  const subnetFile = join(dir, 'run/flannel/subnet.env');
  const dataDir = join(dir, 'var/lib/cni/flannel');
  const ipamDir = join(dir, 'var/lib/cni/networks');
  mkdirSync(join(dir, 'run/flannel'), { recursive: true });
  writeFileSync(subnetFile, SUBNET_FILE_TEXT);
  // As `weftctl cni install --name flannel` installs it on a node: a copy of dist/bin/weft-cni.cjs.
  const plugin = install({ binDir, confDir: join(dir, 'etc/cni/net.d'), name: 'flannel' }).plugin;
  const list = conflist({ name: 'flannel' });
  // The first plugin of that conflist as a runtime hands it over, with this run's paths (never the machine's /var/lib/cni).
  const netConf = JSON.stringify({
    cniVersion: list.cniVersion,
    name: list.name,
    ...(list.plugins as Array<Record<string, unknown>>)[0],
    subnetFile,
    dataDir,
    ipam: { dataDir: ipamDir },
  });
  if (list.name !== NETWORK) throw harness(`the flannel conflist names its network ${String(list.name)}, not ${NETWORK}`);
  const delegateConf = JSON.stringify(buildDelegate(parseNetConf(netConf), readSubnetEnv(subnetFile)));

  const host = await Netns.create('cnih');
  const runner = new Rpc(host.spawn(process.execPath, [RUNNER], { ipc: true }), 'cni runner');
  const pods: Netns[] = [];
  const basicEnv = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' };
  const run = async (what: string, r: RunRequest): Promise<RunResult> => {
    const res = await runner.call<RunResult>('run', r);
    if (res.status !== 0) throw harness(`${what} exited with ${res.status}: ${(res.stdout + res.stderr).trim().slice(0, 1000)}`);
    return res;
  };
  const t = { weftAdd: [] as number[], weftDel: [] as number[], bridgeAdd: [] as number[], bridgeDel: [] as number[], nodeStart: [] as number[] };

  /** ADD then DEL of one attachment in a fresh pod namespace, by weft-cni (as `flannel`) or by the bare bridge. */
  const attach = async (kind: 'weft' | 'bridge', round: number): Promise<{ add: number; del: number }> => {
    const pod = await Netns.create(`cnp${round < 0 ? 'w' : round}${kind[0]}`);
    pods.push(pod);
    const id = `${kind}-${round < 0 ? 'warm' : round}`;
    const env = {
      ...basicEnv,
      CNI_PATH: kind === 'weft' ? `${binDir}:${DEBIAN_PLUGINS}` : DEBIAN_PLUGINS,
      CNI_CONTAINERID: id,
      CNI_NETNS: `/var/run/netns/${pod.name}`,
      CNI_IFNAME: 'eth0',
    };
    const cmd = kind === 'weft' ? plugin : join(DEBIAN_PLUGINS, 'bridge');
    const stdin = kind === 'weft' ? netConf : delegateConf;
    const add = await run(`${kind} ADD ${id}`, { cmd, args: [], env: { ...env, CNI_COMMAND: 'ADD' }, stdin });
    podAddress(`${kind} ADD ${id}`, add.stdout);
    if (kind === 'weft' && round < 0) {
      const saved = readFileSync(join(dataDir, `${id}@eth0`), 'utf8');
      if (saved !== delegateConf) throw harness(`weft-cni saved another delegate config than cni/delegate.ts builds:\n${saved}\n${delegateConf}`);
    }
    const del = await run(`${kind} DEL ${id}`, { cmd, args: [], env: { ...env, CNI_COMMAND: 'DEL' }, stdin });
    await pod.delete();
    pods.splice(pods.indexOf(pod), 1);
    return { add: add.ms, del: del.ms };
  };
  const nodeStart = async (): Promise<number> => (await run('node -e 0', { cmd: process.execPath, args: ['-e', '0'], env: basicEnv, stdin: '' })).ms;

  try {
    const order = ['weft', 'bridge', 'node'] as const;
    for (let round = -1; round < o.rounds; round++) {
      // The order rotates, so no column always runs first (or right after another).
      for (let k = 0; k < order.length; k++) {
        const what = order[(k + Math.max(round, 0)) % order.length]!;
        if (what === 'node') {
          const ms = await nodeStart();
          if (round >= 0) t.nodeStart.push(ms);
        } else {
          const { add, del } = await attach(what, round);
          if (round >= 0) {
            t[`${what}Add`].push(add);
            t[`${what}Del`].push(del);
          }
        }
      }
    }
    const store = join(ipamDir, NETWORK);
    const reserved = existsSync(store) ? readdirSync(store).filter((f) => /^\d+\.\d+\.\d+\.\d+$/.test(f)) : [];
    const veths = (await host.ipJson<Array<{ ifname: string }>>('link', 'show', 'type', 'veth')).map((l) => l.ifname);
    const saved = existsSync(dataDir) ? readdirSync(dataDir) : [];
    if (reserved.length + veths.length + saved.length > 0) {
      throw harness(`left behind after every DEL: reservations [${reserved.join(', ')}], veths [${veths.join(', ')}], saved configs [${saved.join(', ')}]`);
    }
  } finally {
    await runner.close();
    for (const pod of pods) await pod.delete();
    await host.delete();
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    mode: o.mode,
    date: new Date().toISOString(),
    machine: cniMachine(),
    load: { before: loadBefore, after: loadavg()[0]! },
    rounds: o.rounds,
    stateFs: commandOutput('findmnt', ['-n', '-o', 'FSTYPE', '-T', resolve(dir, '..')], 'unknown'),
    weftAdd: timing(t.weftAdd),
    weftDel: timing(t.weftDel),
    bridgeAdd: timing(t.bridgeAdd),
    bridgeDel: timing(t.bridgeDel),
    nodeStart: timing(t.nodeStart),
  };
}

/** The results file of a mode: bench/results/cni.json for a full run, cni-quick.json for a quick one. */
export function cniResultsFile(mode: 'quick' | 'full'): string {
  return mode === 'full' ? CNI_RESULTS_FILE : CNI_RESULTS_FILE.replace(/\.json$/, '-quick.json');
}

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Writes the results file of the run's mode; returns its path from the repository root. */
export function writeCniResults(r: CniResults): string {
  const file = cniResultsFile(r.mode);
  mkdirSync(resolve(ROOT, 'bench/results'), { recursive: true });
  writeFileSync(resolve(ROOT, file), JSON.stringify(r, null, 1) + '\n');
  return file;
}

/** Prints the table and the verdict. */
export function printCni(r: CniResults): void {
  const v = cniVerdict(r);
  console.log(`\nCNI plugin: ${r.rounds} rounds, each one weft-cni ADD+DEL, one bare bridge ADD+DEL and one node -e 0, in rotating order; 1-min load ${r.load.before.toFixed(2)} -> ${r.load.after.toFixed(2)}`);
  console.log(cniTable(r));
  console.log(`${v.goal}: ${v.figure}; baseline ${v.baseline}: ${v.met ? 'met' : 'missed'}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const quick = process.argv.includes('--quick');
  const mode = quick ? 'quick' : 'full';
  cniBench({ rounds: CNI_ROUNDS[mode], mode })
    .then((r) => {
      printCni(r);
      console.log(`\nwritten to ${writeCniResults(r)}`);
    })
    .catch((err) => {
      console.error(err);
      process.exitCode = 1;
    })
    .finally(() => teardownAll());
}
