/**
 * `npm run docs:bench`: writes docs/benchmarks.md, and the headline figures in
 * README.md, from the last whole cluster run, bench/results/cluster.json, and
 * the last full CNI run, bench/results/cni.json (written by `npm run bench:cni`
 * and by a full `npm run bench`; its section is left out when the file is
 * absent), the last chaos soak, bench/results/soak.json (`npm run soak`;
 * likewise left out when absent), and the last full kernel run's route forms,
 * bench/results/kernel-forms.json (written by `npm run bench:kernel`; likewise
 * optional), and the last full dual-stack run, bench/results/dualstack.json
 * (`npm run bench -- --only dualstack` and a whole run; likewise optional). The method is stable text and lives here; every figure comes from the JSON, so
 * the documents cannot drift from the results (test/bench-report.test.ts
 * renders the committed JSON and compares it with the committed documents
 * byte for byte).
 *
 * The goals are those the benchmarks were built to judge;
 * each verdict is computed from the run, never written by hand. The run's
 * timestamp is left out on purpose: history lives in git.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { CniResults } from './cni.js';
import type { KernelFormsResults } from './kernel.js';
import type { ChurnResult } from './cluster-churn.js';
import type { ConvergenceRow } from './cluster-convergence.js';
import type { DualStackResults } from './cluster-dualstack.js';
import type { PathResult } from './cluster-dataplane.js';
import type { SizeStep } from './cluster-startup.js';
import { fmt, machineLine, table, type Machine } from './cluster-stats.js';
import { FAULT_KINDS } from './soak-schedule.js';
import type { SoakResults } from './soak-results.js';

/** What bench/cluster.ts writes (its `date` field is not read). */
export interface ClusterResults {
  readonly mode: 'quick' | 'full';
  readonly machine?: Machine;
  readonly sizes: readonly SizeStep[];
  readonly convergence?: readonly ConvergenceRow[];
  readonly churn?: ChurnResult;
  readonly dataplane?: readonly PathResult[];
}

/** Where the results are and where the documents go, relative to the repository root. */
export const RESULTS_FILE = 'bench/results/cluster.json';
export const CNI_RESULTS_FILE = 'bench/results/cni.json';
export const SOAK_RESULTS_FILE = 'bench/results/soak.json';
export const KERNEL_FORMS_FILE = 'bench/results/kernel-forms.json';
export const DUALSTACK_RESULTS_FILE = 'bench/results/dualstack.json';
export const DOC_FILE = 'docs/benchmarks.md';
export const README_FILE = 'README.md';

/** The goals' thresholds: the one place they are written. */
export const GOALS = {
  /** Start-up at the largest N over its limit (etcd list + ip/bridge -batch), median of the pairs. */
  startupRatio: 1.2,
  /** weft's convergence p99 minus etcd's watch p99, ms, for single events. */
  p99GapMs: 2,
  /** The same for bursts of 100 lease changes. */
  burstP99GapMs: 10,
  /** Memory at the largest N, MB: weftd and the processes it starts (its listener) together, in the idle window. */
  rssMB: 80,
  /** Idle CPU, percent of a core, at every N and in every window. */
  idleCpuPercent: 1,
  /** Pod-to-pod throughput over the raw underlay's. */
  overlayRatio: 0.9,
  directRoutingRatio: 0.98,
  /** weft-cni's own share of a pod's ADD (its median minus the bare bridge's), in bare Node starts (`node -e 0`, median). */
  cniOwnShareNodeStarts: 1,
} as const;

export interface Verdict {
  readonly goal: string;
  readonly figure: string;
  readonly baseline: string;
  readonly met: boolean;
}

/** A Markdown table of text cells, left-aligned and unpadded (figures go through `table`, right-aligned). */
function textTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]): string => `| ${cells.join(' | ')} |`;
  return [line(header), `|${header.map(() => '---').join('|')}|`, ...rows.map(line)].join('\n');
}

const ms = (x: number): string => fmt(x, x < 10 ? 2 : 0);
const range = (xs: readonly number[], digits: number): string => `${fmt(Math.min(...xs), digits)}-${fmt(Math.max(...xs), digits)}`;
const slash = (xs: readonly string[]): string => xs.join(' / ');

/** The size the start-up and footprint goals are judged at: 5000 peers, or the largest size measured. */
function judgedSize(r: ClusterResults): SizeStep | undefined {
  return r.sizes.find((s) => s.startup.n === 5000) ?? r.sizes[r.sizes.length - 1];
}

/** Every goal of the cluster benchmark, judged on this run; goals whose part did not run are left out. */
export function verdicts(r: ClusterResults): Verdict[] {
  const out: Verdict[] = [];
  const big = judgedSize(r);
  if (big) {
    const s = big.startup;
    const limit = s.etcdListMs + s.ipBatchMs;
    out.push({
      goal: `start-up at ${s.n} peers ≤ ${GOALS.startupRatio} × (etcd list + \`ip\`/\`bridge -batch\`)`,
      figure: `${ms(s.totalMs)} ms, ${fmt(s.ratio, 2)} × (pairs ${range(s.pairRatios, 2)}); ${fmt(s.ratioWithoutNode, 2)} × without Node's start (${ms(s.nodeStartMs)} ms)`,
      baseline: `limit ${ms(limit)} ms (etcd list ${ms(s.etcdListMs)} + \`ip\`/\`bridge -batch\` ${ms(s.ipBatchMs)})`,
      met: s.ratio <= GOALS.startupRatio,
    });
  }
  const conv = r.convergence ?? [];
  const gapGoal = (label: string, rows: readonly ConvergenceRow[], gapMs: number): void => {
    if (rows.length === 0) return;
    out.push({
      goal: `${label}: weft's p99 within ${gapMs} ms of etcd's watch p99`,
      figure: `${slash(rows.map((c) => `+${ms(c.p99GapMs)}`))} ms (${slash(rows.map((c) => c.kind.split(',')[0]!))})`,
      baseline: `etcd watch p99 ${slash(rows.map((c) => ms(c.etcdWatch.p99)))} ms`,
      met: rows.every((c) => c.p99GapMs <= gapMs && c.timeouts === 0),
    });
  };
  gapGoal('single events', conv.filter((c) => c.burstCompleteMs === undefined), GOALS.p99GapMs);
  gapGoal('bursts of 100', conv.filter((c) => c.burstCompleteMs !== undefined), GOALS.burstP99GapMs);
  if (big) {
    const f = big.footprint;
    out.push({
      goal: `weftd and its listener at ${f.n} peers ≤ ${GOALS.rssMB} MB together`,
      figure: `${fmt(f.totalMB)} MB (weftd ${fmt(f.rssMB)} MB RSS, ${fmt(f.steady?.rssMB ?? f.rssMB)} MB in the next window; listener ${fmt(f.listenerRssMB)} MB RSS)`,
      baseline: '-',
      met: f.totalMB <= GOALS.rssMB,
    });
  }
  if (r.sizes.length > 0) {
    const fps = r.sizes.map((s) => s.footprint);
    const cpu = fps.flatMap((f) => [f.idleCpuPercent, ...(f.steady ? [f.steady.cpuPercent] : [])]);
    const steady = fps.filter((f) => f.steady);
    out.push({
      goal: `idle CPU < ${GOALS.idleCpuPercent} % of a core`,
      figure:
        `${slash(fps.map((f) => fmt(f.idleCpuPercent, 2)))} % at ${slash(fps.map((f) => String(f.n)))} peers` +
        steady.map((f) => ` (${fmt(f.steady!.cpuPercent, 2)} % at ${f.n} in the next window)`).join(''),
      baseline: '-',
      met: cpu.every((x) => x < GOALS.idleCpuPercent),
    });
  }
  if (r.churn) {
    const c = r.churn;
    out.push({
      goal: 'churn: afterwards the kernel equals the leases',
      figure: `${c.missing} missing, ${c.extra} extra, ${c.matchedAfterMs === null ? 'never matched' : `matched within ${ms(c.matchedAfterMs)} ms`}; weftd ${fmt(c.weftdCpuPercent, 1)} % of a core`,
      baseline: '-',
      met: c.missing === 0 && c.extra === 0 && c.matchedAfterMs !== null,
    });
  }
  const dp = r.dataplane ?? [];
  if (dp.length > 0) {
    const want = (p: PathResult): number => (/DirectRouting/.test(p.path) ? GOALS.directRoutingRatio : GOALS.overlayRatio);
    out.push({
      goal: `data plane: overlay ≥ ${GOALS.overlayRatio * 100} %, DirectRouting ≥ ${GOALS.directRoutingRatio * 100} % of the raw underlay`,
      figure: dp.map((p) => `${p.path.replace(/^pod to pod, /, '')} ${fmt(p.ratio, 3)} (pairs ${range(p.pairRatios, 3)})`).join('; '),
      baseline: `raw ${slash(dp.map((p) => fmt(p.rawGbitsMedian, 2)))} Gbit/s`,
      met: dp.every((p) => p.ratio >= want(p)),
    });
  }
  if (r.sizes.length > 1) {
    const fps = r.sizes.map((s) => s.footprint);
    const rates = fps.map((f) => f.etcdPerMinute);
    out.push({
      goal: 'etcd requests per minute, idle, do not grow with N',
      figure: rates.every((x) => x === 0) ? '0 at every N' : `${slash(rates.map((x) => fmt(x, 1)))} at ${slash(fps.map((f) => String(f.n)))} peers`,
      baseline: '-',
      // Within one request a minute: a window counts whole requests over its own length, so equal rates differ in the noise.
      met: rates[rates.length - 1]! <= rates[0]! + 1,
    });
  }
  return out;
}

const ms1 = (x: number): string => fmt(x, 1);

/** The dual-stack run's goals: the IPv4 start-up and single-event goals, applied to dual-stack peers and their limit. */
export function dualStackVerdicts(d: DualStackResults): Verdict[] {
  const s = d.startup;
  const out: Verdict[] = [
    {
      goal: `dual-stack start-up at ${s.n} peers ≤ ${GOALS.startupRatio} × (etcd list + \`ip\`/\`bridge -batch\` of both families)`,
      figure: `${ms(s.totalMs)} ms, ${fmt(s.ratio, 2)} × (pairs ${range(s.pairRatios, 2)}); ${fmt(s.ratioWithoutNode, 2)} × without Node's start (${ms(s.nodeStartMs)} ms)`,
      baseline: `limit ${ms(s.etcdListMs + s.ipBatchMs)} ms (etcd list ${ms(s.etcdListMs)} + \`ip\`/\`bridge -batch\` ${ms(s.ipBatchMs)})`,
      met: s.ratio <= GOALS.startupRatio,
    },
  ];
  const rows = d.convergence;
  if (rows.length > 0) {
    out.push({
      goal: `dual-stack single events at ${d.n} peers: weft's p99 within ${GOALS.p99GapMs} ms of etcd's watch p99`,
      figure: `${slash(rows.map((c) => `+${ms(c.p99GapMs)}`))} ms (${slash(rows.map((c) => c.kind.split(',')[0]!))})`,
      baseline: `etcd watch p99 ${slash(rows.map((c) => ms(c.etcdWatch.p99)))} ms`,
      met: rows.every((c) => c.p99GapMs <= GOALS.p99GapMs && c.timeouts === 0),
    });
  }
  return out;
}

/** weft-cni's own share of an ADD: its median minus the bare bridge's, ms. */
export function cniOwnShareMs(c: CniResults): number {
  return c.weftAdd.p50 - c.bridgeAdd.p50;
}

/** The CNI goal, judged on this run. */
export function cniVerdict(c: CniResults): Verdict {
  const share = cniOwnShareMs(c);
  const node = c.nodeStart.p50;
  const starts = GOALS.cniOwnShareNodeStarts;
  return {
    goal: `weft-cni's own share of an ADD (weft-cni − bare bridge, medians) ≤ ${starts === 1 ? 'one bare Node start' : `${starts} bare Node starts`}`,
    figure: `${ms1(share)} ms (${ms1(c.weftAdd.p50)} − ${ms1(c.bridgeAdd.p50)}), ${fmt(share / node, 2)} Node starts`,
    baseline: `\`node -e 0\` ${ms1(node)} ms`,
    met: share <= starts * node,
  };
}

/** The CNI run's timings: one row per program and command, then weft-cni's share of each command. */
export function cniTable(c: CniResults): string {
  const row = (name: string, t: CniResults['weftAdd']): string[] => [name, String(t.samples.length), ms1(t.p50), ms1(t.p99), ms1(Math.max(...t.samples))];
  return table(
    ['run', 'n', 'median ms', 'p99 ms', 'max ms'],
    [
      row('weft-cni ADD', c.weftAdd),
      row('bridge ADD', c.bridgeAdd),
      row('weft-cni DEL', c.weftDel),
      row('bridge DEL', c.bridgeDel),
      row('node -e 0', c.nodeStart),
      ['weft-cni − bridge, ADD', '-', ms1(cniOwnShareMs(c)), '-', '-'],
      ['weft-cni − bridge, DEL', '-', ms1(c.weftDel.p50 - c.bridgeDel.p50), '-', '-'],
    ],
  );
}

function goalsTable(r: ClusterResults): string {
  return textTable(
    ['goal', 'this run', 'baseline (same run)', 'verdict'],
    verdicts(r).map((v) => [v.goal, v.figure, v.baseline, v.met ? 'met' : 'missed']),
  );
}

function startupTable(r: ClusterResults): string {
  return table(
    ['N', 'etcd list ms', 'ip+bridge -batch ms', 'limit ms', 'weftd total ms', 'Node start ms', 'init ms', 'list+program ms', 'total/limit', 'pair ratios', '(total-Node)/limit', 'CPU s'],
    r.sizes.map(({ startup: s }) => [
      String(s.n), ms(s.etcdListMs), ms(s.ipBatchMs), ms(s.etcdListMs + s.ipBatchMs), ms(s.totalMs), ms(s.nodeStartMs), ms(s.initMs), ms(s.programMs),
      fmt(s.ratio, 2), range(s.pairRatios, 2), fmt(s.ratioWithoutNode, 2), fmt(s.cpuSecondsToReady, 2),
    ]),
  );
}

function footprintTable(r: ClusterResults): string {
  const byMethod = r.sizes.some(({ footprint: f }) => Object.keys(f.etcdByMethod).length > 0);
  return table(
    [
      'N', 'RSS MB', 'peak RSS MB', 'idle CPU % of a core', 'listener RSS MB', 'listener CPU %', 'weftd + listener MB', 'window s',
      'next window: idle CPU %', 'next window: RSS MB', 'etcd requests/min', ...(byMethod ? ['by method'] : []),
    ],
    r.sizes.map(({ footprint: f }) => [
      String(f.n), fmt(f.rssMB), fmt(f.peakRssMB), fmt(f.idleCpuPercent, 2), fmt(f.listenerRssMB), fmt(f.listenerCpuPercent, 2), fmt(f.totalMB),
      fmt(f.windowS, 0), f.steady ? fmt(f.steady.cpuPercent, 2) : '-', f.steady ? fmt(f.steady.rssMB) : '-', fmt(f.etcdPerMinute, 1),
      ...(byMethod ? [Object.entries(f.etcdByMethod).map(([m, v]) => `${m} ${fmt(v, 1)}`).join(', ') || '-'] : []),
    ]),
  );
}

function convergenceTable(rows: readonly ConvergenceRow[]): string {
  return table(
    ['event', 'n', 'weft p50', 'weft p99', 'weft max', 'etcd watch p50', 'etcd watch p99', 'etcd watch max', 'p99 gap', 'timeouts', 'burst done'],
    rows.map((c) => [
      c.kind, String(c.weft.n), ms(c.weft.p50), ms(c.weft.p99), ms(c.weft.max), ms(c.etcdWatch.p50), ms(c.etcdWatch.p99), ms(c.etcdWatch.max),
      ms(c.p99GapMs), String(c.timeouts), c.burstCompleteMs !== undefined ? ms(c.burstCompleteMs) : '-',
    ]),
  );
}

function churnTable(c: ChurnResult): string {
  return table(
    ['writes', 'writer max lag ms', 'weftd CPU % of a core', 'weftd CPU s', 'kernel = leases after ms', 'leases', 'missing', 'extra'],
    [[
      String(c.puts + c.deletes), ms(c.writerMaxLagMs), fmt(c.weftdCpuPercent, 1), fmt(c.weftdCpuSeconds, 2),
      c.matchedAfterMs === null ? 'never (30 s)' : `<= ${ms(c.matchedAfterMs)}`, String(c.leases), String(c.missing), String(c.extra),
    ]],
  );
}

function dataplaneTable(rows: readonly PathResult[]): string {
  return table(
    ['path', 'Gbit/s', 'raw underlay Gbit/s', 'ratio', 'pair ratios', 'retransmits', 'ping avg ms', 'raw ping avg ms'],
    rows.map((d) => [
      d.path, fmt(d.gbitsMedian, 2), fmt(d.rawGbitsMedian, 2), fmt(d.ratio, 3), range(d.pairRatios, 3), String(d.retransmits),
      fmt(d.pingAvgMs, 3), fmt(d.rawPingAvgMs, 3),
    ]),
  );
}

const plural = (n: number, one: string, many = `${one}s`): string => `${n} ${n === 1 ? one : many}`;

/** Which sample p99 is among n (cluster-stats' quantile: the ceil(0.99 n)-th smallest). */
function p99Rank(n: number): string {
  const k = n - Math.ceil(0.99 * n) + 1;
  return k === 1 ? 'the slowest' : k === 2 ? 'the second slowest' : k === 3 ? 'the third slowest' : `the ${k}th slowest`;
}

/** The CNI plugin's section of docs/benchmarks.md: method, goal, timings. */
function cniSection(c: CniResults): string {
  const m = c.machine;
  const v = cniVerdict(c);
  return [
    '## CNI plugin (`npm run bench:cni`)',
    '',
    'A pod\'s start waits for its CNI plugin, so weft-cni is timed the way a container runtime runs it, next to the',
    'plugin that does the work under it and next to the least any Node program pays. A host namespace of the',
    'benchmark\'s own holds a subnet file in flannel\'s format (`FLANNEL_NETWORK=10.244.0.0/16`,',
    '`FLANNEL_SUBNET=10.244.5.1/24`, `FLANNEL_MTU=1450`, `FLANNEL_IPMASQ=false`) in a temporary directory, with',
    'weft-cni\'s `dataDir` and host-local\'s store beside it. A helper process inside that namespace',
    '(`bench/cni-runner.ts`) spawns each program directly, as containerd does, with the `CNI_*` variables in its',
    'environment and the config on its stdin, and times it from the spawn until it has exited and its output is read:',
    '',
    '- *weft-cni*: `dist/bin/weft-cni.cjs` installed as `flannel` the way `weftctl cni install --name flannel` does',
    '  (a copy in a CNI bin directory), given the first plugin of the conflist that installs (kube-flannel\'s',
    '  delegate settings) with the benchmark\'s paths. ADD reads the subnet file, saves the delegate config (written',
    '  and fsynced) and runs Debian\'s `bridge`, which runs `host-local`; DEL reads the saved config back, runs',
    '  `bridge`\'s DEL and removes the file.',
    '- *bridge*: Debian\'s `bridge` plugin run bare with exactly the delegate config weft-cni saves (checked against',
    '  the file weft-cni saved in the first, uncounted round), so it does the same kernel work: veth, bridge, address,',
    '  routes, the IP masquerade rule.',
    '- *`node -e 0`*: a bare Node start, spawned the same way.',
    '',
    'Each ADD attaches a fresh pod namespace and its DEL detaches it. A round runs one of each (a plugin\'s ADD, then',
    'its DEL) in an order that rotates from round to round, so the machine\'s drift weighs on every column alike; a',
    'first round warms the caches and is not counted. *weft-cni − bridge* is the difference of the medians: what weft',
    'adds to a pod\'s start (Node\'s start, loading the plugin, reading the subnet file, saving the delegate config,',
    `spawning \`bridge\`). With ${plural(c.rounds, 'round')}, p99 is ${p99Rank(c.rounds)}. The run fails unless every ADD`,
    'returned an address in the node\'s subnet and, afterwards, no address reservation, veth or saved delegate config is',
    'left.',
    '',
    `Results: \`${CNI_RESULTS_FILE}\`. Machine: ${m.cores} cores, kernel ${m.kernel}, Node ${m.node.replace(/^v/, '')}, ${m.plugins}. ` +
      `Mode: ${c.mode}; ${plural(c.rounds, 'round')}; load average (1 min) ${fmt(c.load.before, 2)} before, ${fmt(c.load.after, 2)} after; ` +
      `the temporary directory on ${c.stateFs}.`,
    '',
    `Goal (\`GOALS\` in \`bench/report.ts\`), computed from the run:`,
    '',
    textTable(['goal', 'this run', 'baseline (same run)', 'verdict'], [[v.goal, v.figure, v.baseline, v.met ? 'met' : 'missed']]),
    '',
    'Timings (ms):',
    '',
    cniTable(c),
  ].join('\n');
}

/** The dual-stack run's section of docs/benchmarks.md: method, goals, start-up and convergence. */
export function dualStackSection(d: DualStackResults): string {
  const s = d.startup;
  const singles = d.convergence[0]?.weft.n ?? 0;
  return [
    '## Dual-stack (`npm run bench -- --only dualstack`)',
    '',
    'The start-up and single-event convergence above, with dual-stack peers, as a network with `EnableIPv6` has them.',
    'The simulated leases have an IPv4 and an IPv6 subnet each (keys like `10.1.5.0-24&fd00:10:244:105::-64`, in a',
    'Network `10.0.0.0/8` of /24s and an IPv6Network `fd00:10:244::/48` of /64s), a PublicIP and a PublicIPv6',
    '(`198.19.x.y` and `2001:2:0:1::i`, off both underlay segments) and a VTEP MAC per family (BackendData and',
    'BackendV6Data). The measured weftd runs on a host with `2001:2::N/64` next to `198.18.0.N/24` on its underlay and',
    'programs six entries per peer: neighbour, FDB entry and route on `flannel.1`, and an NDP neighbour, an FDB entry',
    'with an IPv6 `dst` and a route on `flannel-v6.1` (routes through nexthop objects where the kernel has them, as in',
    'the IPv4 run). A whole `npm run bench` runs this part too.',
    '',
    '**Start-up** is measured as the IPv4 start-up is, in pairs, each weftd on a fresh host, and weftd is ready only',
    'with N routes on each device. The *limit* is etcd\'s listing of the N leases (median of five) plus `ip -batch` +',
    '`bridge -batch` programming the same 6N entries, twice the IPv4 run\'s, in a fresh namespace with both devices,',
    'with flannel\'s onlink routes in both families (the form the IPv4 limit uses). The goal is the IPv4 start-up goal',
    'applied to dual-stack: weft within the same factor of its limit.',
    '',
    '**Convergence**, with the N peers programmed: leases are added and removed one at a time, and the clock runs from',
    'the etcd write being issued until all six entries are present (or all gone) in the node\'s kernel, next to the',
    `observer's own etcd watch of the same writes; with ${singles} events each way, p99 is ${p99Rank(singles)}. The goal is the IPv4 one.`,
    '',
    `Results: \`${DUALSTACK_RESULTS_FILE}\`. ${machineLine(d.machine)} Mode: ${d.mode}; ${d.n} peers, ${plural(s.runs.length, 'pair')}; ` +
      `load average (1 min) ${fmt(d.load.before, 2)} before, ${fmt(d.load.after, 2)} after.`,
    '',
    'Goals (`GOALS` in `bench/report.ts`), computed from the run:',
    '',
    textTable(['goal', 'this run', 'baseline (same run)', 'verdict'], dualStackVerdicts(d).map((v) => [v.goal, v.figure, v.baseline, v.met ? 'met' : 'missed'])),
    '',
    'Start-up:',
    '',
    startupTable({ mode: d.mode, sizes: [{ startup: s } as SizeStep] }),
    '',
    'Convergence (ms):',
    '',
    convergenceTable(d.convergence),
  ].join('\n');
}

const BOUND_TEXT: Record<string, string> = {
  none: 'nothing',
  'pair-until-repaired': 'that pair, until repaired',
  'host-until-repaired': "the host's pairs, until repaired",
};

/** The chaos soak's section of docs/benchmarks.md: method, then the run's faults, pings and violations. */
export function soakSection(s: SoakResults): string {
  const ran = s.faults.filter((f) => s.kinds.includes(f.kind));
  const what = new Map(FAULT_KINDS.map((k) => [k.name, k.what]));
  const q = s.quiet;
  return [
    '## Chaos soak (`npm run soak`)',
    '',
    'The fault tests prove one fault at a time; the soak gives them in sequence and overlapping. Five hosts run weftd',
    '(as shipped, with the production periods: a full resync every 60 s, iptables checked on nf_tables changes and every',
    '5 s) against a 3-member etcd, each with a pod on `--bridge weft0`; the pods of every pair of hosts ping each other',
    'every 100 ms. Each host also has a second LAN, 10.244.0.0/24, inside the pod Network and below SubnetMin (the',
    'classic mistake of a pod network that covers the hosts\' LAN). A seeded schedule (`bench/soak-schedule.ts`) runs',
    'rounds of one to three faults, each on a host of its own, at most one etcd member down at a time; once every fault',
    'of a round has ended (daemon restarted, member back, link up, lease removed), the round is quiet and is checked.',
    'The same seed replays the same faults on the same hosts; `--faults` and `--exclude` choose the kinds.',
    '',
    'Invariants, checked all along: no two valid leases overlap; no weftd exits but those the soak killed; no host loses',
    'a connected route of its own; every hand-made breakage is repaired within its limit; within 2 s of a round going',
    'quiet, every host\'s route, neighbour and FDB entries on `flannel.1` equal those its peers\' leases call for',
    '(`bench/soak-check.ts`: every valid lease except the node\'s own, one over the node\'s own networks, one with a',
    'PublicIP inside the overlay or link-local, and the newer of two live leases with the same VtepMAC or PublicIP),',
    'and weft\'s iptables chains are in place; at the end `weftctl diff` agrees on every host. A lease the soak writes',
    'that no node may take is looked for in every kernel while it is held. A ping may be lost only inside the window of',
    'a fault whose bound allows it (the table\'s *pings may be lost on*), up to 0.5 s after the repair was seen (for a',
    'link flap: the link up again and 1 s for ARP); any other loss is a violation.',
    '',
    `Results: \`${SOAK_RESULTS_FILE}\`. ${machineLine(s.machine)} Seed ${s.seed}, ${s.seconds} s of schedule (${s.ranSeconds} s with set-up and checks), ` +
      `${plural(s.hosts, 'host')}, ${plural(s.rounds, 'round')}.` +
      (s.excluded.length ? ` Left out: ${s.excluded.map((k) => `\`${k}\``).join(', ')}.` : ' Every fault kind.'),
    '',
    textTable(
      ['fault', 'what', 'injected', 'pings may be lost on', 'pings lost'],
      ran.map((f) => [`\`${f.kind}\``, what.get(f.kind) ?? '-', String(f.injected), BOUND_TEXT[f.bound] ?? f.bound, String(f.lost)]),
    ),
    '',
    `Pings: ${s.pings.sent} sent, ${s.pings.lost} lost, ${s.pings.unexplained} of them outside every fault's window. ` +
      `Quiet checks: ${q.checks}` +
      (q.p50Ms !== null && q.maxMs !== null ? `; every kernel equalled the leases ${fmt(q.p50Ms, 0)} ms (median) and at most ${fmt(q.maxMs, 0)} ms after the round went quiet (limit ${fmt(q.limitMs, 0)} ms).` : '.'),
    '',
    s.violations.length === 0
      ? 'Invariant violations: none.'
      : [`Invariant violations: ${s.violations.length}.`, '', textTable(['s', 'invariant', 'detail'], s.violations.map((v) => [fmt(v.atS, 1), v.invariant, v.detail.replace(/\|/g, '/')]))].join('\n'),
    '',
    `Replay: \`${s.replay}\`.`,
  ].join('\n');
}

/**
 * The route forms of a full kernel run: both ways of programming N vxlan
 * peers, by iproute2 and by weft, and how each grows from the smallest N to
 * the largest.
 */
function kernelFormsSection(k: KernelFormsResults): string {
  const m = k.machine;
  const cell = (t: { programMs: number; removeMs: number }): string => `${fmt(t.programMs, 0)} / ${fmt(t.removeMs, 0)}`;
  const rows = k.rows.map((r) => [
    String(r.n),
    cell(r.ipOnlink),
    cell(r.ipNexthops),
    cell(r.weftOnlink),
    cell(r.weftNexthops),
    fmt(r.weftOnlink.programMs / r.ipOnlink.programMs, 2),
    fmt(r.weftNexthops.programMs / r.ipNexthops.programMs, 2),
    fmt(r.weftNexthops.programMs / r.ipOnlink.programMs, 2),
  ]);
  const first = k.rows[0];
  const last = k.rows[k.rows.length - 1];
  if (first && last && last !== first) {
    const grow = (pick: (r: KernelFormsResults['rows'][number]) => { programMs: number }): string => `×${fmt(pick(last).programMs / pick(first).programMs, 1)}`;
    rows.push([
      `${first.n} → ${last.n}`,
      grow((r) => r.ipOnlink),
      grow((r) => r.ipNexthops),
      grow((r) => r.weftOnlink),
      grow((r) => r.weftNexthops),
      '-',
      '-',
      '-',
    ]);
  }
  return [
    '### Route forms',
    '',
    'The same N vxlan peers (neighbour, FDB entry, route) programmed with flannel\'s routes, each with its own gateway',
    '(`S via S.0 dev flannel.1 onlink`), and through a nexthop object per peer with the route by id (`ip nexthop replace',
    'id N via S.0 dev flannel.1 onlink`, then `S nhid N`; weft\'s `--route-nexthops on`, see docs/architecture.md): by',
    '`ip -force -batch` + `bridge -force -batch`, and by weft (the start-up resync as above, `--route-nexthops off` and',
    '`on`), the four interleaved in one run, each in a fresh namespace; medians of ' + `${k.repeats}. Cells are program / remove ms; the`,
    'ratios are of programming, against `ip -batch` of the same form, and (last column) weft with nexthops against',
    '`ip -batch` with flannel\'s routes. The last row is how each grows from the smallest N to the largest.',
    '',
    `Results: \`${KERNEL_FORMS_FILE}\`. Machine: ${m.cores} cores, kernel ${m.kernel}, Node ${m.node.replace(/^v/, '')}, iproute2 ${m.iproute2}.`,
    '',
    textTable(['N', 'ip -batch, onlink', 'ip -batch, nexthops', 'weft, onlink', 'weft, nexthops', 'weft/ip onlink', 'weft/ip nexthops', 'weft nexthops / ip onlink'], rows),
  ].join('\n');
}

/** docs/benchmarks.md for a cluster run (and a CNI run, a chaos soak and a kernel run's route forms, when there are): the method, then the runs' goals and tables. */
export function renderBenchmarks(
  r: ClusterResults,
  cni: CniResults | null = null,
  soak: SoakResults | null = null,
  forms: KernelFormsResults | null = null,
  dual: DualStackResults | null = null,
): string {
  const parts: string[] = [];
  const add = (...lines: string[]): void => {
    parts.push(lines.join('\n'));
  };
  const pairs = r.sizes[0]?.startup.runs.length ?? 0;
  const sizes = r.sizes.map((s) => String(s.startup.n));
  const largest = r.sizes[r.sizes.length - 1]?.footprint;
  const window = largest ? fmt(largest.windowS, 0) : '-';

  add(
    '# weft benchmarks',
    '',
    `<!-- Generated by bench/report.ts from ${[RESULTS_FILE, ...(cni ? [CNI_RESULTS_FILE] : []), ...(soak ? [SOAK_RESULTS_FILE] : []), ...(forms ? [KERNEL_FORMS_FILE] : []), ...(dual ? [DUALSTACK_RESULTS_FILE] : [])].join(', ').replace(/, ([^,]*)$/, ' and $1')}: run \`npm run docs:bench\` after a benchmark run; do not edit by hand. -->`,
    '',
    'How weft is measured and what the last whole run of the cluster benchmark found. Every figure sits next to a',
    'baseline measured in the same run on the same machine: absolute figures on a small shared VM move by a fifth and',
    'more from one run to the next, and so do the baselines, so compare each row with its own baseline.',
  );
  add(
    '## The benchmarks',
    '',
    textTable(
      ['command', 'what it measures', 'results'],
      [
        ['`npm run bench`', 'the cluster benchmark: start-up at scale, idle footprint and etcd load, convergence, churn, data plane; and the CNI plugin', `\`${RESULTS_FILE}\`, \`${CNI_RESULTS_FILE}\`, this document`],
        ['`npm run bench -- --quick`', 'the same, shortened (one pair per N, 5 s windows, 15 CNI rounds): a check that the benchmark works', '`bench/results/cluster-quick.json`, `bench/results/cni-quick.json` (not reported here)'],
        ['`npm run bench -- --only startup,convergence,churn,dataplane,cni`, `-- --sizes 0,5000`', 'some parts or sizes', '`bench/results/cluster[-quick]-partial.json` (ignored by git; never replaces a whole run); the `cni` part writes its own file as below'],
        ['`npm run bench:cni` (`-- --quick`: 15 rounds)', "the CNI plugin alone: weft-cni's ADD and DEL next to the bare `bridge` plugin and a bare Node start", `\`${CNI_RESULTS_FILE}\` (\`bench/results/cni-quick.json\`), this document`],
        ['`npm run bench:kernel` (`-- --quick`: N = 100, 1000; `-- --forms-only`)', "weft's kernel programming and removal against `ip -batch` + `bridge -batch`; both route forms at 5,000 and 20,000 peers (quick: 1,000 and 5,000)", `the route forms: \`${KERNEL_FORMS_FILE}\` (not on \`--quick\`), this document; the rest printed only`],
        ['`npm run bench:lease` (`-- --quick`: up to 1000 leases)', "weft's lease snapshot and subnet acquisition against etcd's own listing", 'printed only'],
        ['`node dist/bench/kernel-fullpass.js N PASSES [--idle-s S]`', 'one full repair pass at N peers (idle, after a resync, or after S s of idleness)', 'printed only'],
        ['`npm run soak -- --seconds S --seed N`', 'the chaos soak: seeded faults on five hosts and a 3-member etcd under pod-to-pod pings, with invariants', `\`${SOAK_RESULTS_FILE}\` (\`--out FILE\` elsewhere), this document`],
        ['`npm run docs:bench`', 'regenerates this document from the JSON', '`docs/benchmarks.md`'],
      ],
    ),
    '',
    'The npm scripts build first. The benchmarks run as root, on a machine set up by `bash scripts/install-deps.sh`. The',
    'cluster, CNI and kernel benchmarks work in network namespaces of their own (named `wft<pid>b-*`) and delete them',
    'afterwards, also when stopped with Ctrl-C; the lease benchmark starts its etcd on 127.0.0.1. None changes the',
    'machine\'s own network namespace. A full cluster run takes about 11 minutes, plus under a minute for',
    'the CNI part, and a quick one about 3.',
  );

  add(
    '## Cluster benchmark: how it runs',
    '',
    'The measured weftd runs in a host namespace on the test underlay, and etcd runs in its own namespace (the topology',
    'of the tests). Simulated peers are flannel-shaped leases that a helper in etcd\'s namespace writes straight into',
    'etcd (`bench/cluster-agent.ts`). A helper beside weftd (`bench/cluster-observer.ts`) polls `/readyz`, follows the',
    'kernel through rtnetlink notifications, and runs its own etcd watch as a baseline. weftd is started the way it',
    'ships (`dist/bin/weftd.cjs`, with its Node flags and code cache) and with the production periods: a full resync',
    'every 60 s, iptables checked on nf_tables changes and every 60 s.',
    '',
    '**Start-up.** The clock runs from spawning weftd until it turns ready, which happens only once every peer is',
    'programmed (checked: N routes on `flannel.1`). The end is weftd\'s own log timestamp of turning ready (`ready: lease',
    'held and peers programmed`, the moment `/readyz` starts to answer 200); the observer confirms it on `/readyz`, polled',
    'every 100 ms like a readiness probe. The *limit* is etcd\'s own prefix listing of the N leases plus `ip -batch` +',
    '`bridge -batch` programming the same 3N entries in a fresh namespace. Each N is measured as pairs: the `ip -batch`',
    'baseline, then a weftd start-up on a host that never ran one. Each pair\'s ratio is its start-up over its own limit',
    '(etcd\'s listing, median of five, plus that pair\'s baseline); *total/limit* is the median of the pairs\' ratios,',
    '*pair ratios* their spread, and the other columns are medians. The phases come from weftd\'s log timestamps:',
    '*Node start* is spawn to the first log line (Node, loading the bundle from its code cache, reading the options);',
    '*init* is the network config, the underlay, the device and the lease (acquired from a listing of every lease);',
    '*list+program* is lease held to ready: every peer of that listing programmed, and the iptables rules in place.',
    '',
    '**Footprint and etcd load.** After start-up weftd is left idle: it settles 30 s, then is measured over a 60 s',
    'window, one full resync period. At the largest N a second window follows (*next window*): the first can hold V8\'s',
    'one-off collections after start-up, the second shows idle as it stays. RSS and peak RSS come from',
    '`/proc/<pid>/status`; CPU is utime + stime from `/proc/<pid>/stat`. The *listener* is weftd\'s kernel-notification',
    'child process (`weft-listener`, a small C program); *weftd + listener* is weftd\'s RSS plus the listener\'s private',
    'memory, what the two hold together. etcd requests are the growth of etcd\'s',
    '`grpc_server_msg_received_total` over the window.',
    '',
    '**Convergence**, with 1000 peers programmed. The clock runs from the etcd write being issued until the peer\'s route,',
    'neighbour and FDB entry are all present (or all gone) in the node\'s kernel. The baseline is etcd\'s watch: the same',
    'write until the observer\'s own watch (the same `etcd3` client) delivers the event. The *p99 gap* is weft\'s p99 minus',
    `the watch's p99; with 200 events, p99 is ${p99Rank(200)}. *Burst done* is the median time from the first write of`,
    'a burst until its last peer is programmed.',
    '',
    '**Churn**, on 1000 peers: peers join and leave at a steady rate; afterwards the node\'s kernel is compared with the',
    'leases in etcd (the route, neighbour and FDB entry of every lease, and nothing else).',
    '',
    '**Data plane.** iperf3 TCP runs pod to pod across two hosts (a pod is a namespace on weftd\'s `--bridge weft0`), over',
    'the VXLAN overlay and then with DirectRouting. Each path run follows a run on the raw underlay (host to host over the',
    'veth) in the same phase; each run lasts 5 s. Gbit/s are medians; the *ratio* is the median of the',
    'pairs\' ratios (each run over the raw run just before it, so the machine\'s drift between pairs cancels out), and',
    '*pair ratios* shows their spread. The ping figure is the average RTT of 200 pings.',
  );

  const runLine = [
    r.machine ? machineLine(r.machine) : 'Machine: not recorded.',
    `Mode: ${r.mode}; start-up at ${sizes.join(', ')} peers, ${plural(pairs, 'pair')} each; idle windows of ${window} s.`,
  ];
  add('## The last whole run', '', `Results: \`${RESULTS_FILE}\`. ${runLine.join(' ')}`);
  add(
    '### Goals',
    '',
    'Each verdict is computed from the run by `bench/report.ts` (`GOALS`). A goal is met only in every row it covers:',
    'the idle CPU goal in every idle window, the memory goal in the idle window after start-up (weftd and its listener',
    'together), the convergence goals for adds and removes alike (and with no timeout), the etcd goal when the idle',
    'request rate at the largest N is no higher than at the smallest (within one request a minute, the counting step of',
    'a window).',
    '',
    goalsTable(r),
  );
  if (r.sizes.length > 0) {
    add('### Start-up', '', startupTable(r));
    add('### Footprint and etcd load', '', footprintTable(r));
  }
  if (r.convergence) add('### Convergence (ms)', '', convergenceTable(r.convergence));
  if (r.churn) add(`### Churn: ${r.churn.rate} joins and ${r.churn.rate} leaves per second for ${r.churn.seconds} s`, '', churnTable(r.churn));
  if (r.dataplane) {
    const runs = r.dataplane[0]?.gbits.length ?? 0;
    add(`### Data plane (${plural(runs, 'pair')} per path)`, '', dataplaneTable(r.dataplane));
  }

  if (dual) add(dualStackSection(dual));
  if (cni) add(cniSection(cni));
  if (soak) add(soakSection(soak));
  add(
    '## Kernel programming (`npm run bench:kernel`)',
    '',
    'weft\'s start-up programming of N vxlan peers (a resync of N peers until its pass has put all 3N entries in: neighbour,',
    'FDB entry and route each) and their removal (a resync with no peers), next to `ip -force -batch` and',
    '`bridge -force -batch` doing the same entries, each in a fresh namespace, interleaved in one run; medians of 3. *Event* is one',
    '`added` lease batch until programmed (median and p99 of 100). A ratio below 1 means weft is faster than iproute2. It',
    'prints this table and keeps no results of it, so its figures are not here; run it on the machine in question. The',
    'route forms below are kept from its last full run.',
    '',
    'At thousands of peers most of the pass is the kernel\'s own work, and iproute2 pays it too: the kernel keeps one',
    '`fib_info` per distinct gateway and looks a new one up in a hash that leaves the gateway out, so each onlink route',
    'via its peer\'s `.0` is compared with the earlier ones (`perf` shows `fib_create_info` and its `memcmp`). Routes through',
    'nexthop objects leave that comparison out (below).',
  );
  if (forms) add(kernelFormsSection(forms));
  add(
    '## Lease layer (`npm run bench:lease`)',
    '',
    'Starts a real etcd on 127.0.0.1, writes N flannel-shaped peer leases, and measures, as the median of 5 runs: the',
    '*baseline*, etcd\'s own prefix listing through the same client; weft\'s first snapshot (list, validate every value and',
    'build the peer cache); and weft\'s acquisition of a subnet among N leases. Ratios are against the baseline of the',
    'same run. It prints its table and writes no results file.',
  );
  return parts.join('\n\n') + '\n';
}

/** Where README.md's headline figures sit: between these two lines, rewritten by `npm run docs:bench`. */
export const HEADLINE_START = '<!-- headline: generated by bench/report.ts (npm run docs:bench) -->';
export const HEADLINE_END = '<!-- /headline -->';

/** A few figures of the run for README.md, with the goals' tally; the rest is in docs/benchmarks.md. */
export function renderHeadline(r: ClusterResults, cni: CniResults | null = null, dual: DualStackResults | null = null): string {
  const lines: string[] = [];
  const big = judgedSize(r);
  if (big) {
    const s = big.startup;
    const f = big.footprint;
    lines.push(
      `- **Start-up** with ${s.n} peers: ready (every peer programmed) ${ms(s.totalMs)} ms after spawn, ${fmt(s.ratio, 2)} × what etcd's own listing ` +
        `plus \`ip\`/\`bridge -batch\` take for the same entries (${ms(s.etcdListMs + s.ipBatchMs)} ms).`,
      `- **Idle** with ${f.n} peers: ${fmt(f.rssMB)} MB RSS, ${fmt(f.idleCpuPercent, 2)} % of a core, ${fmt(f.etcdPerMinute, 0)} etcd requests per minute.`,
    );
  }
  const singles = (r.convergence ?? []).filter((c) => c.burstCompleteMs === undefined);
  if (singles.length > 0) {
    lines.push(
      `- **Convergence**: a single lease change is in the kernel at p99 ${slash(singles.map((c) => ms(c.weft.p99)))} ms (${slash(singles.map((c) => c.kind.split(',')[0]!))}), ` +
        `${slash(singles.map((c) => ms(c.p99GapMs)))} ms behind etcd's own watch.`,
    );
  }
  if (dual) {
    const s = dual.startup;
    const singles = dual.convergence;
    lines.push(
      `- **Dual-stack** with ${s.n} peers (six entries each): ready ${ms(s.totalMs)} ms after spawn, ${fmt(s.ratio, 2)} × etcd's listing plus \`ip\`/\`bridge -batch\` ` +
        `of both families (${ms(s.etcdListMs + s.ipBatchMs)} ms; goal ≤ ${GOALS.startupRatio}: ${s.ratio <= GOALS.startupRatio ? 'met' : 'missed'})` +
        (singles.length ? `; a single change at p99 ${slash(singles.map((c) => ms(c.weft.p99)))} ms (${slash(singles.map((c) => c.kind.split(',')[0]!))}).` : '.'),
    );
  }
  const overlay = (r.dataplane ?? []).find((p) => /VXLAN/.test(p.path));
  if (overlay) {
    lines.push(`- **Data plane**: pod to pod over VXLAN ${fmt(overlay.gbitsMedian, 2)} Gbit/s, ${fmt(overlay.ratio, 3)} of the raw underlay (${fmt(overlay.rawGbitsMedian, 2)} Gbit/s).`);
  }
  if (cni) {
    const v = cniVerdict(cni);
    lines.push(
      `- **CNI plugin**: weft-cni attaches a pod in ${ms1(cni.weftAdd.p50)} ms (median; p99 ${ms1(cni.weftAdd.p99)}), the bare \`bridge\` plugin with the same config in ` +
        `${ms1(cni.bridgeAdd.p50)} ms; weft's own share, ${ms1(cniOwnShareMs(cni))} ms, is ${fmt(cniOwnShareMs(cni) / cni.nodeStart.p50, 2)} × a bare Node start ` +
        `(${ms1(cni.nodeStart.p50)} ms; goal ≤ ${GOALS.cniOwnShareNodeStarts}: ${v.met ? 'met' : 'missed'}).`,
    );
  }
  const v = verdicts(r);
  const missed = v.filter((x) => !x.met);
  lines.push(
    `- **Goals**: ${v.length - missed.length} of ${v.length} met` + (missed.length ? `; missed: ${missed.map((x) => x.goal.split(':')[0]!.replace(/ ≤.*/, '')).join('; ')}.` : '.'),
  );
  if (r.machine) lines.push(`- ${machineLine(r.machine)}`);
  return lines.join('\n');
}

/** `readme` with the headline figures between the markers replaced by this run's; null when the markers are missing. */
export function withHeadline(readme: string, r: ClusterResults, cni: CniResults | null = null, dual: DualStackResults | null = null): string | null {
  const start = readme.indexOf(HEADLINE_START);
  const end = readme.indexOf(HEADLINE_END);
  if (start < 0 || end < start) return null;
  return readme.slice(0, start + HEADLINE_START.length) + '\n' + renderHeadline(r, cni, dual) + '\n' + readme.slice(end);
}

/** The repository root: this file runs compiled as dist/bench/report.js. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** The last whole run's results, as committed. */
export function readResults(root: string = ROOT): ClusterResults {
  return JSON.parse(readFileSync(resolve(root, RESULTS_FILE), 'utf8')) as ClusterResults;
}

/** The last full kernel run's route forms, as committed; null when there is none. */
export function readKernelForms(root: string = ROOT): KernelFormsResults | null {
  const file = resolve(root, KERNEL_FORMS_FILE);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as KernelFormsResults) : null;
}

/** The last full CNI run's results, as committed; null when there is none. */
export function readCniResults(root: string = ROOT): CniResults | null {
  const file = resolve(root, CNI_RESULTS_FILE);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as CniResults) : null;
}

/** The last full dual-stack run's results, as committed; null when there is none. */
export function readDualStackResults(root: string = ROOT): DualStackResults | null {
  const file = resolve(root, DUALSTACK_RESULTS_FILE);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as DualStackResults) : null;
}

/** The last soak's results, as committed; null when there is none. */
export function readSoakResults(root: string = ROOT): SoakResults | null {
  const file = resolve(root, SOAK_RESULTS_FILE);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as SoakResults) : null;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const results = readResults();
  const cni = readCniResults();
  const forms = readKernelForms();
  const dual = readDualStackResults();
  mkdirSync(dirname(resolve(ROOT, DOC_FILE)), { recursive: true });
  writeFileSync(resolve(ROOT, DOC_FILE), renderBenchmarks(results, cni, readSoakResults(), forms, dual));
  const readme = withHeadline(readFileSync(resolve(ROOT, README_FILE), 'utf8'), results, cni, dual);
  if (readme === null) {
    console.error(`written ${DOC_FILE}; ${README_FILE} has no "${HEADLINE_START}" ... "${HEADLINE_END}" block for the headline figures`);
    process.exitCode = 1;
  } else {
    writeFileSync(resolve(ROOT, README_FILE), readme);
    console.log(`written ${DOC_FILE} and the headline figures in ${README_FILE} from ${RESULTS_FILE}${cni ? ` and ${CNI_RESULTS_FILE}` : ''}${forms ? ` and ${KERNEL_FORMS_FILE}` : ''}${dual ? ` and ${DUALSTACK_RESULTS_FILE}` : ''}`);
  }
}
