import type { ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import type { WeftNode } from './cluster.js';
import { Netns } from './netns.js';

/**
 * A "pod": a network namespace with eth0, a veth whose host end is a port of
 * the node's bridge (the one weftd made with `--bridge`), addressed from the
 * node's subnet with the gateway <subnet>.1 as default route: what the CNI
 * bridge plugin does, without the plugin.
 */
export class Pod {
  private constructor(
    readonly ns: Netns,
    readonly ip: string,
  ) {}

  /** Attaches pod number `n` (address <subnet>.(10+n)) to `node`'s bridge. */
  static async attach(node: WeftNode, n: number, bridge = 'weft0'): Promise<Pod> {
    const env = node.subnetEnv();
    const [gw, len] = env.FLANNEL_SUBNET!.split('/') as [string, string];
    const ip = gw.replace(/\.1$/, `.${10 + n}`);
    const ns = await Netns.create(`h${node.index}p${n}`);
    const hostEnd = `vp${n}`;
    await node.ns.ip('link', 'add', hostEnd, 'mtu', env.FLANNEL_MTU!, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name);
    await node.ns.ip('link', 'set', hostEnd, 'master', bridge, 'up');
    await ns.ip('addr', 'add', `${ip}/${len}`, 'dev', 'eth0');
    await ns.ip('link', 'set', 'eth0', 'up');
    await ns.ip('route', 'add', 'default', 'via', gw);
    return new Pod(ns, ip);
  }

  /** A pod on each of two nodes, returned once traffic flows between them (three replies). */
  static async pair(a: WeftNode, b: WeftNode): Promise<[Pod, Pod]> {
    const pods: [Pod, Pod] = [await Pod.attach(a, 1), await Pod.attach(b, 1)];
    const warmup = pods[0].ping(pods[1].ip);
    await warmup.waitReplies(3);
    await warmup.stop();
    return pods;
  }

  /** Starts a continuous ping (every `intervalMs`) to `target` from inside the pod. */
  ping(target: string, intervalMs = 50): PingStream {
    return new PingStream(this.ns.spawn('ping', ['-n', '-i', String(intervalMs / 1000), '-W', '1', target]), intervalMs);
  }

  async delete(): Promise<void> {
    await this.ns.delete();
  }
}

export interface PingResult {
  /** Echo requests sent, not counting the last second (replies may still be in flight when stopped). */
  readonly sent: number;
  readonly lost: number;
  /** icmp_seq numbers that got no reply. */
  readonly lostSeqs: number[];
}

/** A running ping; stop() reports which sequence numbers never got a reply. */
export class PingStream {
  private out = '';
  constructor(
    private readonly proc: ChildProcess,
    private readonly intervalMs: number,
  ) {
    proc.stdout?.on('data', (d: Buffer) => (this.out += d.toString()));
  }

  /** Replies received so far. */
  get replies(): number {
    return (this.out.match(/icmp_seq=/g) ?? []).length;
  }

  /** Waits until `n` more replies arrived (traffic flows), or throws after `timeoutMs`. */
  async waitReplies(n: number, timeoutMs = 10_000): Promise<void> {
    const target = this.replies + n;
    const deadline = Date.now() + timeoutMs;
    while (this.replies < target) {
      if (Date.now() > deadline) throw new Error(`ping: no traffic (${this.replies} replies so far)`);
      await sleep(20);
    }
  }

  async stop(): Promise<PingResult> {
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGINT');
    await exited;
    const received = new Set([...this.out.matchAll(/icmp_seq=(\d+)/g)].map((m) => Number(m[1])));
    const transmitted = Number(/(\d+) packets transmitted/.exec(this.out)?.[1] ?? 0);
    const settled = Math.max(0, transmitted - Math.ceil(1000 / this.intervalMs));
    const lostSeqs: number[] = [];
    for (let seq = 1; seq <= settled; seq++) if (!received.has(seq)) lostSeqs.push(seq);
    return { sent: settled, lost: lostSeqs.length, lostSeqs };
  }
}
