/**
 * `npm run soak -- --seconds S --seed N [--faults a,b] [--exclude c,d] [--out FILE]`:
 * the chaos soak. Five hosts with a pod each, a ping between the pods of every
 * pair of hosts, a 3-member etcd; a seeded schedule of faults (soak-schedule.ts)
 * in rounds, each round followed by a quiet check. Invariants, checked all
 * along:
 *   - no two valid leases overlap;
 *   - no weftd exits but those the soak killed or stopped;
 *   - the hosts' own routes (underlay, LAN) are never taken over;
 *   - every repair a fault waits for comes within its limit;
 *   - within 2 s of a round going quiet, every kernel equals its desired
 *     state (soak-check.ts), weft's iptables chains are in place, and at the
 *     end `weftctl diff` agrees on every host;
 *   - a ping is lost only inside the window of a fault whose bound allows it.
 * Prints a table (faults by kind, pings sent and lost by cause, violations,
 * the seed to replay) and writes the results as JSON (default
 * bench/results/soak.json, rendered into docs/benchmarks.md by bench/report.ts).
 * Exits 1 on any violation. Everything runs in namespaces of its own
 * (wft<pid>b-*), removed at exit.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../common/errors.js';
import { teardownAll } from '../test/harness/netns.js';
import { fmt, machine, median, table } from './cluster-stats.js';
import { causeOf, lostSendTimes, overlappingLeases, type LossWindow } from './soak-check.js';
import { SoakCluster } from './soak-cluster.js';
import { Faults } from './soak-faults.js';
import { FAULT_KINDS, KIND_NAMES, Rng, planRound, selectKinds } from './soak-schedule.js';
import type { SoakResults } from './soak-results.js';

const WEFTCTL = fileURLToPath(new URL('../bin/weftctl.cjs', import.meta.url));
/** Every kernel must equal its desired state this soon after a round goes quiet. */
export const QUIET_LIMIT_MS = 2000;
/** How long a late convergence is still waited for, to say whether it came at all. */
const LATE_LIMIT_MS = 10_000;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const list = (s: string | undefined): string[] | null => (s === undefined ? null : s.split(',').map((x) => x.trim()).filter(Boolean));

/** A whole number from `--name`, at least `min`. */
function count(name: string, fallback: number, min: number): number {
  const text = arg(name);
  const n = text === undefined ? fallback : Number(text);
  if (!Number.isSafeInteger(n) || n < min) throw new WeftError('WEFT_ERR_OPTION_INVALID', `${name}: must be a whole number of at least ${min}, got ${JSON.stringify(text)}`);
  return n;
}

function options() {
  try {
    const faultsArg = list(arg('--faults'));
    const excludeArg = list(arg('--exclude')) ?? [];
    return {
      seconds: count('--seconds', 60, 1),
      seed: count('--seed', Math.floor(Math.random() * 1e9), 0),
      hostCount: count('--hosts', 5, 2),
      out: resolve(arg('--out') ?? fileURLToPath(new URL('../../bench/results/soak.json', import.meta.url))),
      faultsArg,
      excludeArg,
      kinds: selectKinds(faultsArg, excludeArg),
    };
  } catch (err) {
    console.error(`soak: ${(err as Error).message}`);
    process.exit(2);
  }
}
const { seconds, seed, hostCount, out, faultsArg, excludeArg, kinds } = options();
const replay = `npm run soak -- --seconds ${seconds} --seed ${seed}${faultsArg ? ` --faults ${faultsArg.join(',')}` : ''}${excludeArg.length ? ` --exclude ${excludeArg.join(',')}` : ''}`;

const t0 = Date.now();
const at = (t = Date.now()): number => (t - t0) / 1000;
const violations: { atS: number; invariant: string; detail: string }[] = [];
const windows: LossWindow[] = [];
const injected = new Map<string, number>();
const converge: number[] = [];
const log = (msg: string): void => console.log(`[${fmt(at(), 1).padStart(6)} s] ${msg}`);

function violation(invariant: string, detail: string): void {
  violations.push({ atS: Number(fmt(at(), 1)), invariant, detail });
  log(`VIOLATION ${invariant}: ${detail}`);
}

async function main(): Promise<number> {
  console.log(`soak: seed ${seed}, ${seconds} s, faults ${kinds.join(',')}`);
  const soak = await SoakCluster.create(hostCount);
  try {
    return await run(soak);
  } finally {
    await soak.destroy().catch(() => undefined);
    await teardownAll();
  }
}

async function run(soak: SoakCluster): Promise<number> {
  log(`cluster up: ${soak.live().map((i) => `h${i} ${soak.host(i).subnet()}`).join(', ')}`);
  for (const a of soak.live()) for (const b of soak.live()) if (a < b) soak.startPing(a, b);
  const faults = new Faults(soak, { violation, window: (w) => (windows.push(w), w) });
  let stop = false;
  const monitor = monitorLoop(soak, () => stop);

  const rng = new Rng(seed);
  const start = Date.now();
  let rounds = 0;
  while (Date.now() - start < seconds * 1000) {
    const plan = planRound(rng, kinds, soak.live());
    rounds++;
    log(`round ${rounds}: ${plan.map((f) => `${f.kind}${f.host !== null ? ` h${f.host}` : ''}${f.peer !== null ? `->h${f.peer}` : ''} at +${f.atMs} ms${f.durationMs ? ` for ${f.durationMs} ms` : ''}`).join(', ')}`);
    await Promise.all(
      plan.map(async (f) => {
        await sleep(f.atMs);
        injected.set(f.kind, (injected.get(f.kind) ?? 0) + 1);
        await faults.run(f).catch((err: Error) => violation('harness', `${f.kind}: ${err.message}`));
      }),
    );
    await quietCheck(soak);
  }
  await sleep(1000);
  await finalDiff(soak);
  stop = true;
  await monitor;
  await soak.stopAllPings();
  return report(soak, rounds);
}

/** Once every fault of a round has ended: all kernels equal their desired state within QUIET_LIMIT_MS. */
async function quietCheck(soak: SoakCluster): Promise<void> {
  const quiet = Date.now();
  let last: string[] = [];
  for (;;) {
    last = [];
    try {
      const kvs = await soak.list();
      for (const h of soak.hosts.values()) for (const line of await soak.diff(h, kvs)) last.push(`h${h.index}: ${line}`);
    } catch (err) {
      last.push(`check failed: ${(err as Error).message}`);
    }
    const ms = Date.now() - quiet;
    if (last.length === 0) {
      converge.push(ms);
      log(`quiet: every kernel equals the leases ${ms} ms after the round ended`);
      if (ms > QUIET_LIMIT_MS) violation('converge', `kernels equal the leases ${ms} ms after the round went quiet (limit ${QUIET_LIMIT_MS} ms)`);
      return;
    }
    if (ms > LATE_LIMIT_MS) {
      violation('converge', `kernels still differ ${ms} ms after the round went quiet: ${last.slice(0, 6).join('; ')}${last.length > 6 ? ` (+${last.length - 6})` : ''}`);
      return;
    }
    await sleep(100);
  }
}

/** `weftctl diff` on every host: weft's own view of its kernel against the leases agrees with the soak's. */
async function finalDiff(soak: SoakCluster): Promise<void> {
  for (const h of soak.hosts.values()) {
    try {
      await h.ns.exec(process.execPath, WEFTCTL, '--config', h.node.configFile, 'diff');
    } catch (err) {
      violation('weftctl-diff', `h${h.index}: ${((err as { stdout?: string }).stdout ?? (err as Error).message).trim().split('\n').slice(0, 4).join(' | ')}`);
    }
  }
}

/** Continuous invariants: weftd exits, overlapping leases, the hosts' LAN route. */
async function monitorLoop(soak: SoakCluster, done: () => boolean): Promise<void> {
  let tick = 0;
  const seenOverlap = new Set<string>();
  const seenRoute = new Set<string>();
  while (!done()) {
    for (const h of soak.hosts.values()) {
      if (!h.expectDown && !h.node.running && !h.exitReported) {
        h.exitReported = true;
        const tail = h.node.logTail(60);
        const cause = tail.split('\n').find((l) => /Error|error|WEFT_ERR|throw/.test(l)) ?? tail.split('\n').pop() ?? '';
        violation('weftd-exit', `weftd on h${h.index} exited: ${cause.trim().slice(0, 400)}`);
        console.log(tail.replace(/^/gm, `  h${h.index} | `));
      }
    }
    if (tick++ % 4 === 0) {
      try {
        for (const [a, b] of overlappingLeases(soak.peers(await soak.list()))) {
          if (!seenOverlap.has(`${a} ${b}`)) violation('lease-overlap', `${a} overlaps ${b}`);
          seenOverlap.add(`${a} ${b}`);
        }
      } catch {
        // etcd briefly without a leader: the next tick reads again
      }
      for (const h of [...soak.hosts.values()]) {
        const missing = await h.missingOwnRoutes(false).catch(() => []);
        for (const r of missing) {
          if (!seenRoute.has(`${h.index} ${r}`)) violation('own-route', `h${h.index}: connected route ${r} gone`);
          seenRoute.add(`${h.index} ${r}`);
        }
      }
    }
    await sleep(250);
  }
}

function report(soak: SoakCluster, rounds: number): number {
  let sent = 0;
  const lostBy = new Map<string, number>();
  const unexplained = new Map<string, number[]>();
  for (const { ping, counted } of soak.stopped) {
    sent += counted;
    for (const lost of lostSendTimes(ping.replies, counted, ping.startedAt, ping.intervalMs)) {
      const cause = causeOf({ a: ping.a, b: ping.b, at: lost.at }, windows);
      if (cause) lostBy.set(cause, (lostBy.get(cause) ?? 0) + 1);
      else unexplained.set(`h${ping.a}-h${ping.b}`, [...(unexplained.get(`h${ping.a}-h${ping.b}`) ?? []), lost.at]);
    }
  }
  for (const [pair, times] of unexplained) {
    violations.push({
      atS: Number(fmt(at(times[0]!), 1)),
      invariant: 'ping-loss',
      detail: `${pair}: ${times.length} pings lost at ${fmt(at(times[0]!), 1)}-${fmt(at(times[times.length - 1]!), 1)} s with no fault allowing it`,
    });
  }
  const lostTotal = [...lostBy.values()].reduce((a, b) => a + b, 0) + [...unexplained.values()].reduce((a, b) => a + b.length, 0);
  const results: SoakResults = {
    seed,
    seconds,
    ranSeconds: Math.round(at()),
    hosts: hostCount,
    kinds,
    excluded: KIND_NAMES.filter((k) => !kinds.includes(k)),
    machine: machine(/Version:\s*(\S+)/.exec(execFileSync('etcd', ['--version'], { encoding: 'utf8' }))?.[1] ?? '?'),
    rounds,
    quiet: { checks: converge.length, p50Ms: converge.length ? median(converge) : null, maxMs: converge.length ? Math.max(...converge) : null, limitMs: QUIET_LIMIT_MS },
    faults: FAULT_KINDS.map((k) => ({ kind: k.name, injected: injected.get(k.name) ?? 0, bound: k.bound, lost: lostBy.get(k.name) ?? 0 })),
    pings: { sent, lost: lostTotal, unexplained: [...unexplained.values()].reduce((a, b) => a + b.length, 0) },
    violations: [...violations].sort((a, b) => a.atS - b.atS),
    replay,
  };
  console.log('');
  console.log(
    table(
      ['fault', 'injected', 'may lose', 'pings lost'],
      results.faults.filter((f) => kinds.includes(f.kind)).map((f) => [f.kind, String(f.injected), f.bound === 'none' ? 'nothing' : f.bound, String(f.lost)]),
    ),
  );
  console.log('');
  console.log(
    `pings: ${sent} sent, ${lostTotal} lost (${results.pings.unexplained} with no fault allowing it); ${rounds} rounds, quiet checks ${converge.length}` +
      (converge.length ? `, converged p50 ${fmt(results.quiet.p50Ms!, 0)} ms, max ${fmt(results.quiet.maxMs!, 0)} ms (limit ${QUIET_LIMIT_MS})` : ''),
  );
  console.log(`invariant violations: ${results.violations.length}`);
  for (const v of results.violations) console.log(`  ${fmt(v.atS, 1)} s ${v.invariant}: ${v.detail}`);
  console.log(`seed ${seed}; replay: ${replay}`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify({ ...results, date: new Date().toISOString() }, null, 2) + '\n');
  console.log(`results: ${out}`);
  return results.violations.length === 0 ? 0 : 1;
}

process.exitCode = await main().catch((err: Error) => {
  console.error(`soak failed: ${err.stack ?? err.message}`);
  return 2;
});
process.exit();
