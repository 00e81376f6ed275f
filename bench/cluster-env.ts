/**
 * The benchmark cluster: the test topology (switch, etcd on the underlay,
 * host namespaces) from test/harness/cluster.ts, plus the agent in etcd's
 * namespace and helpers to run the weftd under test and its observer.
 */
import { fileURLToPath } from 'node:url';
import { Subnet } from '../common/subnet.js';
import { Cluster, ETCD_IP, type Stack, type WeftNode } from '../test/harness/cluster.js';
import { BENCH_NETWORK_CONFIG, subnetKeyOf } from './cluster-leases.js';
import { Rpc } from './cluster-rpc.js';
import { now } from './cluster-stats.js';

const AGENT = fileURLToPath(new URL('./cluster-agent.js', import.meta.url));
const OBSERVER = fileURLToPath(new URL('./cluster-observer.js', import.meta.url));
export const ETCD_ENDPOINT = `http://${ETCD_IP}:2379`;

/** weftd's production periods (the test harness's config file uses 1 s for both). */
export const PRODUCTION_ARGS = ['--resync-interval', '60', '--iptables-resync', '5'];

export class BenchCluster {
  private constructor(
    readonly cluster: Cluster,
    readonly agent: Rpc,
  ) {}

  /** `stack` 'dual' gives every host 2001:2::N/64 next to 198.18.0.N/24 (etcd stays on IPv4). */
  static async create(hosts: number, networkConfig = BENCH_NETWORK_CONFIG, stack: Stack = 'v4'): Promise<BenchCluster> {
    const cluster = await Cluster.create({ hosts, networkConfig, stack });
    const agent = new Rpc(cluster.etcdNs.spawn(process.execPath, [AGENT, ETCD_ENDPOINT], { ipc: true }), 'agent');
    return new BenchCluster(cluster, agent);
  }

  node(i: number): WeftNode {
    return this.cluster.node(i);
  }

  /** An observer process inside `node`'s namespace. */
  observer(node: WeftNode): Rpc {
    return new Rpc(node.ns.spawn(process.execPath, [OBSERVER, ETCD_ENDPOINT], { ipc: true }), `observer h${node.index}`);
  }

  /** Starts weftd with production periods (plus `extra`); returns the time of the spawn. */
  startWeftd(node: WeftNode, extra: readonly string[] = [], env: NodeJS.ProcessEnv = {}): number {
    const saved = { ...process.env };
    // WeftNode.start spawns with this process's environment; NODE_OPTIONS carries --cpu-prof when profiling.
    Object.assign(process.env, env);
    try {
      const t0 = now();
      node.start([...PRODUCTION_ARGS, ...extra]);
      return t0;
    } finally {
      for (const k of Object.keys(env)) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  }

  /** Stops weftd (SIGTERM) and deletes its own lease, so the next node sees exactly the simulated peers. */
  async stopWeftd(node: WeftNode): Promise<void> {
    let subnet: string | undefined;
    let ipv6Subnet: string | undefined;
    try {
      const env = node.subnetEnv();
      const sn = env['FLANNEL_SUBNET']; // e.g. 10.0.5.1/24
      if (sn) subnet = sn.replace(/\.\d+\//, '.0/');
      const sn6 = env['FLANNEL_IPV6_SUBNET']; // e.g. fd00:10:244:5::1/64
      if (sn6) ipv6Subnet = Subnet.parse(sn6).toString();
    } catch {
      /* never wrote its subnet file */
    }
    await node.stop('SIGTERM', 5000);
    if (subnet) await this.agent.call('removeKeys', { keys: [subnetKeyOf(subnet, ipv6Subnet)] });
  }

  async destroy(): Promise<void> {
    await this.agent.close().catch(() => undefined);
    await this.cluster.destroy();
  }
}

/** Timestamps (ms) of weftd's start-up phases, from its text log. */
export interface StartPhases {
  readonly firstLog: number | null;
  readonly underlay: number | null;
  readonly lease: number | null;
  /** weftd turning ready: the moment /readyz starts to answer 200. */
  readonly ready: number | null;
}

export function startPhases(log: string): StartPhases {
  const at = (re: RegExp): number | null => {
    for (const line of log.split('\n')) {
      if (re.test(line)) {
        const t = Date.parse(line.split(' ')[0] ?? '');
        return Number.isFinite(t) ? t : null;
      }
    }
    return null;
  };
  return { firstLog: at(/ info /), underlay: at(/ info underlay /), lease: at(/ info holding lease /), ready: at(/ info ready: lease held and peers programmed/) };
}
