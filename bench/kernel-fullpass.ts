/**
 * How much one periodic repair pass costs at N peers with nothing to repair
 * (the idle CPU of a large node), next to a full pass after a resync, which
 * builds every entry again: `node dist/bench/kernel-fullpass.js N PASSES`
 * prints the median ms of each. It creates its own namespace (an underlay
 * eth0 on 198.18.0.1/24), runs itself there and deletes it: started in the
 * machine's own network namespace, the measurement would program the
 * machine's interfaces.
 *
 * `... N ROUNDS --idle-s S` measures instead what the repair pass costs
 * after S seconds of idleness (as weftd's runs every 60 s), next to the same
 * pass a second later (a drift repair: one route deleted by hand), ROUNDS
 * times: wall ms, and the page faults and CPU since the pass before. Node
 * flags given to this script apply to the measured run: weftd's are
 * `--max-semi-space-size=1`.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { PerformanceObserver } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../common/log.js';
import { Subnet } from '../common/subnet.js';
import { NetlinkKernel } from '../kernel/kernel-netlink.js';
import type { PeerNetwork } from '../backend/peer-network.js';
import { VxlanBackend } from '../backend/vxlan/vxlan.js';
import { cleanupLeftovers, standaloneHost, teardownAll } from '../test/harness/netns.js';
import { network, peer } from './kernel-fixtures.js';

/**
 * The outer run makes the namespace and starts the inner run in it, naming
 * it after `--in`; the inner run checks with `ip netns identify` that it is
 * really there before it touches anything.
 */
const inner = process.argv.indexOf('--in');
if (inner < 0) {
  await cleanupLeftovers();
  const ns = await standaloneHost('fp', '198.18.0.1/24');
  try {
    const r = spawnSync('ip', ['netns', 'exec', ns.name, process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2), '--in', ns.name], { stdio: 'inherit' });
    process.exitCode = r.status ?? 1;
  } finally {
    await teardownAll();
  }
  process.exit();
}
const here = spawnSync('ip', ['netns', 'identify', String(process.pid)], { encoding: 'utf8' }).stdout.trim();
if (!here || here !== process.argv[inner + 1]) throw new Error(`not in namespace ${process.argv[inner + 1]} (in "${here}"): refusing to program this one`);

const N = Number(process.argv[2] ?? 5000);
const PASSES = Number(process.argv[3] ?? 10);
const idleAt = process.argv.indexOf('--idle-s');
const IDLE_S = idleAt > 0 ? Number(process.argv[idleAt + 1]) : 0;

/** The periodic safety-net pass, as weftd runs it (`--resync-interval`), every this often here. */
const PERIOD_MS = IDLE_S > 0 ? IDLE_S * 1000 : 300;

/** Full passes as the loop reports them, with what the process spent since the pass before. */
interface PassSample {
  readonly ms: number;
  readonly faults: number;
  readonly cpuMs: number;
}
let lastUsage = process.resourceUsage();
const fullPasses: PassSample[] = [];

const kernel = new NetlinkKernel();
const net = (await new VxlanBackend().register({
  publicIP: '198.18.0.1',
  iface: { name: 'eth0', mtu: 1500 },
  network,
  log: silentLogger(),
  kernel,
  resyncIntervalMs: PERIOD_MS,
  onPass: (pass) => {
    if (!pass.full) return;
    const usage = process.resourceUsage();
    fullPasses.push({
      ms: pass.seconds * 1000,
      faults: usage.minorPageFault - lastUsage.minorPageFault,
      cpuMs: (usage.userCPUTime + usage.systemCPUTime - lastUsage.userCPUTime - lastUsage.systemCPUTime) / 1000,
    });
    lastUsage = usage;
  },
})) as PeerNetwork;
await net.configure({ ...peer(0), subnet: Subnet.parse('10.99.0.0/24'), key: '10.99.0.0/24' });
const peers = new Map(Array.from({ length: N }, (_, i) => peer(i)).map((l) => [l.subnet.toString(), l]));
// The cold pass programs every entry, as at start-up; user vs system CPU splits it into weft's work and the kernel's.
const coldStart = performance.now();
const coldCpu = process.cpuUsage();
await net.take({ events: [], peers, resync: true });
const cold = { ms: performance.now() - coldStart, ...process.cpuUsage(coldCpu) };

/** The backend's reconcile loop with no lease changes coming: only its own passes (periodic, drift repairs). */
function runLoop(): { stop(): Promise<void> } {
  const ac = new AbortController();
  const noBatches: AsyncIterable<never> = { [Symbol.asyncIterator]: () => ({ next: () => new Promise<never>(() => undefined) }) };
  const running = net.run(noBatches, ac.signal);
  return {
    stop: async () => {
      ac.abort();
      await running;
    },
  };
}

/** The full pass of index `count` (counting from the last reset of fullPasses), once the loop has run it. */
async function passAfter(count: number): Promise<PassSample> {
  while (fullPasses.length <= count) await new Promise((r) => setTimeout(r, 20));
  return fullPasses[count]!;
}

/** Resync passes, then periodic passes every PERIOD_MS, each kind's median. */
async function passCosts(): Promise<void> {
  // A resync (the peer set handed over again, as after an etcd re-list) is a full pass that builds everything.
  const resync: number[] = [];
  for (let i = 0; i < PASSES; i++) {
    const t = performance.now();
    await net.take({ events: [], peers, resync: true });
    resync.push(performance.now() - t);
  }

  // The periodic pass on an idle node: nothing changed since the last one.
  const loop = runLoop();
  fullPasses.length = 0;
  // Garbage collection over the periodic passes: what they leave behind for the collector.
  let gcMs = 0;
  let gcFrom = 0;
  const gc = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) if (e.startTime >= gcFrom) gcMs += e.duration;
  });
  gc.observe({ entryTypes: ['gc'] });
  // The first pass after run() starts is the listener's gap pass; measure the ones after it.
  await passAfter(0);
  gcFrom = performance.now();
  await passAfter(PASSES);
  await loop.stop();
  gc.disconnect();

  const median = (xs: number[]) => Number([...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!.toFixed(1));
  console.log(JSON.stringify({
    peers: N,
    entries: net.stats().entries,
    coldPassMs: Math.round(cold.ms),
    coldUserMs: Math.round(cold.user / 1000),
    coldSystemMs: Math.round(cold.system / 1000),
    resyncPassMsMedian: median(resync),
    periodicPassMsMedian: median(fullPasses.slice(1).map((p) => p.ms)),
    periodicGcMsPerPass: Number((gcMs / PASSES).toFixed(1)),
  }));
}

/**
 * The repair pass after IDLE_S seconds of idleness, then the same pass a
 * second later (a hand-deleted route makes it a drift repair), `rounds` times.
 */
async function idleRounds(rounds: number): Promise<void> {
  const loop = runLoop();
  const routes = JSON.parse(execFileSync('ip', ['-j', 'route', 'show', 'dev', 'flannel.1'], { encoding: 'utf8' })) as Array<{ dst: string; gateway: string }>;
  // The first pass after run() starts is the listener's gap pass, right away: not after idleness.
  await passAfter(fullPasses.length);
  const quiet: PassSample[] = [];
  const again: PassSample[] = [];
  for (let round = 0; round < rounds; round++) {
    quiet.push(await passAfter(fullPasses.length));
    await new Promise((r) => setTimeout(r, 1000));
    const route = routes[round % routes.length]!;
    const next = fullPasses.length;
    execFileSync('ip', ['route', 'del', route.dst, 'via', route.gateway, 'dev', 'flannel.1', 'onlink']);
    again.push(await passAfter(next));
  }
  await loop.stop();
  const pick = (xs: PassSample[], k: keyof PassSample) => xs.map((x) => Math.round(x[k]));
  console.log(JSON.stringify({
    peers: N,
    idleS: IDLE_S,
    rounds,
    afterIdle: { passMs: pick(quiet, 'ms'), faults: pick(quiet, 'faults'), cpuMsSincePassBefore: pick(quiet, 'cpuMs') },
    secondLater: { passMs: pick(again, 'ms'), faults: pick(again, 'faults'), cpuMsSincePassBefore: pick(again, 'cpuMs') },
  }));
}

if (IDLE_S > 0) await idleRounds(PASSES);
else await passCosts();
await net.close();
await kernel.close();
