/**
 * `npm run bench:kernel [-- --quick] [-- --forms-only]`: weft's start-up
 * programming and removal of N vxlan peers (3 entries each) next to
 * `ip -batch` + `bridge -batch` doing the same entries, each in a fresh
 * network namespace, in one run. Ratio = weft / iproute2 (<= 1.0 means weft
 * is at least as fast).
 *
 * Then the route forms at 5,000 and 20,000 peers (1,000 and 5,000 quick):
 * `ip -batch` with flannel's onlink routes, `ip -batch` with a nexthop per
 * peer and routes by nhid (backend/nexthops.ts), and weft programming each
 * form (--route-nexthops off / on), all in one run. A full run writes them to
 * bench/results/kernel-forms.json, which `npm run docs:bench` renders.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { release } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Netns, cleanupLeftovers, standaloneHost, teardownAll } from '../test/harness/netns.js';
import { KERNEL_FORMS_FILE } from './report.js';

const quick = process.argv.includes('--quick');
const formsOnly = process.argv.includes('--forms-only');
const SIZES = formsOnly ? [] : quick ? [100, 1000] : [100, 1000, 5000];
const FORM_SIZES = quick ? [1000, 5000] : [5000, 20000];
const REPEATS = 3;
const WORKER = fileURLToPath(new URL('./kernel-worker.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Median program and remove times of one way of programming N peers. */
export interface FormTiming {
  readonly programMs: number;
  readonly removeMs: number;
}

/** What a full run writes to KERNEL_FORMS_FILE, bench/report.ts's (its `date` field is not read). */
export interface KernelFormsResults {
  readonly machine: { readonly cores: number; readonly kernel: string; readonly node: string; readonly iproute2: string };
  readonly repeats: number;
  readonly rows: ReadonlyArray<{
    readonly n: number;
    readonly ipOnlink: FormTiming;
    readonly ipNexthops: FormTiming;
    readonly weftOnlink: FormTiming;
    readonly weftNexthops: FormTiming;
  }>;
}

interface WeftResult {
  n: number;
  programMs: number;
  removeMs: number;
  programmed: number;
  left: number;
  eventMedianMs: number;
  eventP99Ms: number;
}

function hex(n: number): string {
  return n.toString(16).padStart(2, '0');
}

type Form = 'onlink' | 'nexthop';

/**
 * The same entries the worker programs, as iproute2 batch lines: routes with
 * their own gateway (flannel's), or through a nexthop per peer with the id
 * weft gives it (its index in 10.0.0.0/8).
 */
function batchLines(n: number, form: Form = 'onlink'): { ipAdd: string[]; bridgeAdd: string[]; ipDel: string[]; bridgeDel: string[] } {
  const ipAdd: string[] = [], bridgeAdd: string[] = [], ipDel: string[] = [], bridgeDel: string[] = [];
  for (let i = 0; i < n; i++) {
    const s0 = `10.${100 + (i >> 8)}.${i & 255}.0`;
    const mac = `0a:01:00:${hex((i >> 16) & 255)}:${hex((i >> 8) & 255)}:${hex(i & 255)}`;
    const pip = `198.18.${1 + (i >> 8)}.${i & 255}`;
    ipAdd.push(`neigh replace ${s0} dev flannel.1 lladdr ${mac} nud permanent`);
    bridgeAdd.push(`fdb replace ${mac} dev flannel.1 dst ${pip} self permanent`);
    ipDel.push(form === 'onlink' ? `route del ${s0}/24 via ${s0} dev flannel.1` : `route del ${s0}/24`);
    ipDel.push(`neigh del ${s0} dev flannel.1`);
    bridgeDel.push(`fdb del ${mac} dev flannel.1 self`);
  }
  // Routes last, after every neighbour (and nexthop), as flannel orders them; nexthops go after their routes.
  if (form === 'nexthop') for (let i = 0; i < n; i++) ipAdd.push(`nexthop replace id ${nexthopIdOf(i)} via 10.${100 + (i >> 8)}.${i & 255}.0 dev flannel.1 onlink proto 0x57`);
  for (let i = 0; i < n; i++) {
    const s0 = `10.${100 + (i >> 8)}.${i & 255}.0`;
    ipAdd.push(form === 'onlink' ? `route replace ${s0}/24 via ${s0} dev flannel.1 onlink proto 0x57` : `route replace ${s0}/24 nhid ${nexthopIdOf(i)} proto 0x57`);
  }
  if (form === 'nexthop') for (let i = 0; i < n; i++) ipDel.push(`nexthop del id ${nexthopIdOf(i)}`);
  return { ipAdd, bridgeAdd, ipDel, bridgeDel };
}

/** Peer i's subnet 10.(100 + i/256).(i%256).0/24 as its index in 10.0.0.0/8, weft's nexthop id for it. */
function nexthopIdOf(i: number): number {
  return ((100 + (i >> 8)) << 8) | (i & 255);
}

function runIn(ns: Netns, cmd: string, args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('ip', ['netns', 'exec', ns.name, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited ${code}: ${err.slice(0, 300)}`))));
    child.stdin.end(input ?? '');
  });
}

async function timeIt(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

async function iproute2Run(n: number, rep: number, form: Form = 'onlink'): Promise<{ programMs: number; removeMs: number }> {
  const ns = await standaloneHost(`bi${form[0]}${n}r${rep}`, '198.18.0.1/16');
  try {
    await ns.ip('link', 'add', 'flannel.1', 'address', '0a:00:00:00:00:01', 'mtu', '1450', 'type', 'vxlan', 'id', '1', 'local', '198.18.0.1', 'dev', 'eth0', 'nolearning', 'dstport', '8472');
    await ns.ip('link', 'set', 'flannel.1', 'up');
    const l = batchLines(n, form);
    const programMs = await timeIt(async () => {
      await runIn(ns, 'ip', ['-force', '-batch', '-'], l.ipAdd.join('\n') + '\n');
      await runIn(ns, 'bridge', ['-force', '-batch', '-'], l.bridgeAdd.join('\n') + '\n');
    });
    const count = (await ns.ip('neigh', 'show', 'dev', 'flannel.1')).trim().split('\n').filter(Boolean).length;
    if (count !== n) throw new Error(`iproute2 programmed ${count} of ${n} neighbours`);
    const routes = (await ns.ip('route', 'show', 'proto', '0x57')).trim().split('\n').filter((line) => (form === 'nexthop') === line.includes(' nhid ')).length;
    if (routes !== n) throw new Error(`iproute2 programmed ${routes} of ${n} ${form} routes`);
    const removeMs = await timeIt(async () => {
      await runIn(ns, 'ip', ['-force', '-batch', '-'], l.ipDel.join('\n') + '\n');
      await runIn(ns, 'bridge', ['-force', '-batch', '-'], l.bridgeDel.join('\n') + '\n');
    });
    return { programMs, removeMs };
  } finally {
    await ns.delete();
  }
}

async function weftRun(n: number, rep: number, form: Form = 'onlink'): Promise<WeftResult> {
  const ns = await standaloneHost(`bw${form[0]}${n}r${rep}`, '198.18.0.1/16');
  try {
    const out = await runIn(ns, process.execPath, [WORKER, String(n), form === 'nexthop' ? 'on' : 'off']);
    const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as WeftResult;
    const perPeer = form === 'nexthop' ? 4 : 3;
    if (r.programmed !== perPeer * n || r.left !== 0) throw new Error(`weft programmed ${r.programmed} entries, ${r.left} neighbours left`);
    return r;
  } finally {
    await ns.delete();
  }
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const ms = (x: number): string => x.toFixed(0).padStart(6);

async function main(): Promise<void> {
  await cleanupLeftovers();
  const cpus = readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('processor')).length;
  console.log(`kernel ${release()}, ${cpus} cores, node ${process.version}; median of ${REPEATS} runs, each in a fresh namespace\n`);
  if (SIZES.length > 0) await formsTable(SIZES);
  const rows = await routeFormsTable();
  if (!quick) {
    const iproute2 = execFileSync('ip', ['-V'], { encoding: 'utf8' }).trim().replace(/^.*iproute2-([^,\s]+).*$/s, '$1');
    const results: KernelFormsResults & { date: string } = {
      date: new Date().toISOString(),
      machine: { cores: cpus, kernel: release(), node: process.version, iproute2 },
      repeats: REPEATS,
      rows,
    };
    writeFileSync(`${ROOT}${KERNEL_FORMS_FILE}`, JSON.stringify(results, null, 2) + '\n');
    console.log(`\nwritten ${KERNEL_FORMS_FILE}; npm run docs:bench renders it`);
  }
}

async function formsTable(sizes: readonly number[]): Promise<void> {
  console.log('|     N | weft program ms | ip+bridge -batch ms | ratio | weft remove ms | ip+bridge -batch ms | ratio | event median / p99 ms |');
  console.log('|------:|----------------:|--------------------:|------:|---------------:|--------------------:|------:|----------------------:|');
  for (const n of sizes) {
    const weft: WeftResult[] = [];
    const base: Array<{ programMs: number; removeMs: number }> = [];
    for (let rep = 0; rep < REPEATS; rep++) {
      // Interleave so both see the same machine load.
      base.push(await iproute2Run(n, rep));
      weft.push(await weftRun(n, rep));
    }
    const wp = median(weft.map((r) => r.programMs));
    const bp = median(base.map((r) => r.programMs));
    const wr = median(weft.map((r) => r.removeMs));
    const br = median(base.map((r) => r.removeMs));
    const em = median(weft.map((r) => r.eventMedianMs));
    const ep = median(weft.map((r) => r.eventP99Ms));
    console.log(`| ${String(n).padStart(5)} | ${ms(wp).padStart(15)} | ${ms(bp).padStart(19)} | ${(wp / bp).toFixed(2).padStart(5)} | ${ms(wr).padStart(14)} | ${ms(br).padStart(19)} | ${(wr / br).toFixed(2).padStart(5)} | ${`${em.toFixed(2)} / ${ep.toFixed(2)}`.padStart(21)} |`);
  }
}

/**
 * Start-up programming of every entry (neighbour, FDB entry, then nexthop and
 * route or route alone) in both forms, by `ip -batch` + `bridge -batch` and
 * by weft, interleaved so that all four see the same machine load.
 */
async function routeFormsTable(): Promise<KernelFormsResults['rows'][number][]> {
  const rows: KernelFormsResults['rows'][number][] = [];
  console.log('\nRoute forms: program (remove) ms, median of 3; ratios against ip -batch of the same form');
  console.log('|     N | ip+bridge onlink | ip+bridge nexthops | weft onlink | weft nexthops | weft/ip onlink | weft/ip nexthops | nexthops/onlink (weft) |');
  console.log('|------:|-----------------:|-------------------:|------------:|--------------:|---------------:|-----------------:|-----------------------:|');
  for (const n of FORM_SIZES) {
    const ipOnlink: Array<{ programMs: number; removeMs: number }> = [];
    const ipNexthop: Array<{ programMs: number; removeMs: number }> = [];
    const weftOnlink: WeftResult[] = [];
    const weftNexthop: WeftResult[] = [];
    for (let rep = 0; rep < REPEATS; rep++) {
      ipOnlink.push(await iproute2Run(n, rep, 'onlink'));
      ipNexthop.push(await iproute2Run(n, rep, 'nexthop'));
      weftOnlink.push(await weftRun(n, rep, 'onlink'));
      weftNexthop.push(await weftRun(n, rep, 'nexthop'));
    }
    const timing = (rs: FormTiming[]): FormTiming => ({ programMs: median(rs.map((r) => r.programMs)), removeMs: median(rs.map((r) => r.removeMs)) });
    rows.push({ n, ipOnlink: timing(ipOnlink), ipNexthops: timing(ipNexthop), weftOnlink: timing(weftOnlink), weftNexthops: timing(weftNexthop) });
    const cell = (rs: Array<{ programMs: number; removeMs: number }>): string => `${ms(median(rs.map((r) => r.programMs))).trim()} (${ms(median(rs.map((r) => r.removeMs))).trim()})`;
    const prog = (rs: Array<{ programMs: number }>): number => median(rs.map((r) => r.programMs));
    console.log(
      `| ${String(n).padStart(5)} | ${cell(ipOnlink).padStart(16)} | ${cell(ipNexthop).padStart(18)} | ${cell(weftOnlink).padStart(11)} | ${cell(weftNexthop).padStart(13)} | ` +
        `${(prog(weftOnlink) / prog(ipOnlink)).toFixed(2).padStart(14)} | ${(prog(weftNexthop) / prog(ipNexthop)).toFixed(2).padStart(16)} | ${(prog(weftNexthop) / prog(weftOnlink)).toFixed(2).padStart(22)} |`,
    );
  }
  return rows;
}

main()
  .catch((err) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => teardownAll());
