/**
 * Drives a Reconciler: one pass at a time, a new pass as soon as work arrives
 * (coalescing whatever came in meanwhile), a full pass as soon as the kernel
 * reports drift (a burst of notifications gathered into one), a full pass
 * every `resyncIntervalMs` as a safety net, and a backoff-timed retry when a
 * pass left failures. Nothing here waits in a loop: retries are timers, so
 * the event loop stays free (the netlink socket must never be starved).
 */
import { Backoff } from '../common/backoff.js';
import { WEFTD_DEFAULTS } from '../common/defaults.js';
import type { Logger } from '../common/log.js';
import type { ReconcilePass } from './backend.js';
import type { Kernel, KernelChange } from '../kernel/kernel.js';
import type { Reconciler } from './reconciler.js';

const DEFAULT_RESYNC_INTERVAL_MS = WEFTD_DEFAULTS['resync-interval'] * 1000;
/** How long drift notifications are gathered before the repair pass: a burst becomes one pass. */
const DRIFT_DEBOUNCE_MS = 50;
/** At most one drift log line per this period, so a flapping entry cannot flood the log. */
const DRIFT_LOG_INTERVAL_MS = 10_000;

export interface ReconcileLoopOptions {
  readonly reconciler: Reconciler;
  readonly log: Logger;
  /** Period of the full repair pass; default DEFAULT_RESYNC_INTERVAL_MS. */
  readonly resyncIntervalMs?: number;
  /** Told about every pass (metrics). */
  readonly onPass?: (pass: ReconcilePass) => void;
  /** Where kernel notifications come from; without it only the periodic pass repairs drift. */
  readonly kernel?: Pick<Kernel, 'monitor'>;
}

export class ReconcileLoop {
  /** Resolves once the first full pass has run (all peers attempted). */
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private readonly reconciler: Reconciler;
  private readonly log: Logger;
  private readonly resyncIntervalMs: number;
  private readonly onPass: ((pass: ReconcilePass) => void) | undefined;
  private readonly kernel: Pick<Kernel, 'monitor'> | undefined;
  private readonly backoff = new Backoff({ initialMs: 100, maxMs: 10_000 });
  private unsubscribe: (() => void) | null = null;
  private driftTimer: NodeJS.Timeout | null = null;
  /** The burst being gathered: its first drift and how many notifications it holds. */
  private burst: { first: string; count: number } | null = null;
  private readonly driftLog: DriftLog;
  private driftCounters = { driftEvents: 0, driftRepairs: 0 };
  private running = false;
  private again = false;
  private stopped = false;
  private periodic: NodeJS.Timeout | null = null;
  private retry: NodeJS.Timeout | null = null;
  private idleWaiters: Array<() => void> = [];
  private passWaiters: Array<() => void> = [];
  private isReady = false;
  private current: Promise<void> = Promise.resolve();

  constructor(options: ReconcileLoopOptions) {
    this.reconciler = options.reconciler;
    this.log = options.log;
    this.resyncIntervalMs = options.resyncIntervalMs ?? DEFAULT_RESYNC_INTERVAL_MS;
    this.onPass = options.onPass;
    this.kernel = options.kernel;
    this.driftLog = new DriftLog(this.log);
    this.ready = new Promise((resolve) => (this.markReady = resolve));
  }

  /**
   * Listens for drift; true when it starts listening now. Called once the
   * first full pass is done rather than before it: programming every peer at
   * start-up would otherwise send the listener an echo per entry, a start-up
   * cost that grows with the peers, and nothing is drift before that
   * pass anyway. The caller follows it with a full pass, which covers changes
   * made while nobody listened (the pass's reads wait for the listener).
   */
  listen(): boolean {
    if (this.unsubscribe || this.stopped || !this.kernel) return false;
    this.unsubscribe = this.kernel.monitor((change) => this.onKernelChange(change));
    return true;
  }

  /** Starts the periodic full pass. */
  start(): void {
    if (this.periodic || this.stopped) return;
    this.periodic = setInterval(() => {
      this.reconciler.requestFull();
      this.kick();
    }, this.resyncIntervalMs);
    this.periodic.unref();
  }

  /** Notifications judged drift, and the full passes they started. */
  stats(): { driftEvents: number; driftRepairs: number } {
    return { ...this.driftCounters };
  }

  /** Runs a pass now, or right after the one in progress. */
  kick(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    this.current = this.drain();
  }

  /** Resolves after the next pass that starts from now has finished (successfully or not). */
  flush(): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise((resolve) => {
      this.passWaiters.push(resolve);
      this.kick();
    });
  }

  /** Resolves when no pass runs and no work is pending (failures included: it waits for their retry). */
  settled(): Promise<void> {
    if (!this.running && !this.reconciler.pending) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops timers and waits for the pass in progress. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.unsubscribe?.();
    this.unsubscribe = null;
    if (this.periodic) clearInterval(this.periodic);
    if (this.retry) clearTimeout(this.retry);
    if (this.driftTimer) clearTimeout(this.driftTimer);
    this.periodic = this.retry = this.driftTimer = null;
    await this.current;
    for (const w of this.idleWaiters.splice(0)) w();
    for (const w of this.passWaiters.splice(0)) w();
  }

  private async drain(): Promise<void> {
    let failed = false;
    do {
      this.again = false;
      const waiters = this.passWaiters.splice(0);
      const t0 = process.hrtime.bigint();
      try {
        const report = await this.reconciler.apply();
        const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
        this.onPass?.({ full: report.full, seconds, ops: report.ops, failed: report.failed });
        this.log.debug('reconcile pass', { full: report.full, ms: Math.round(seconds * 1e4) / 10, ops: report.ops, failed: report.failed });
        if (report.full && !this.isReady) {
          this.isReady = true;
          this.markReady();
          // Readiness is announced first: starting the listener (a child process) holds the event loop a while.
          await new Promise((resolve) => setImmediate(resolve));
          if (this.listen()) {
            this.reconciler.requestFull();
            this.again = true;
          }
        }
        failed = report.failed > 0;
      } catch (err) {
        failed = true;
        this.log.warn('reconcile pass failed', { error: err instanceof Error ? err.message : String(err) });
      }
      for (const w of waiters) w();
    } while ((this.again || (this.reconciler.pending && !failed)) && !this.stopped);
    this.running = false;
    if (failed && !this.stopped) this.scheduleRetry();
    else this.backoff.reset();
    if (!this.reconciler.pending) for (const w of this.idleWaiters.splice(0)) w();
  }

  /** Gathers drift for a moment, then asks for one full pass for the whole burst. */
  private onKernelChange(change: KernelChange): void {
    if (this.stopped) return;
    const drift = this.reconciler.driftOf(change);
    if (drift === null) return;
    this.driftCounters.driftEvents++;
    if (this.burst) this.burst.count++;
    else this.burst = { first: drift, count: 1 };
    if (this.driftTimer) return;
    this.driftTimer = setTimeout(() => this.repairDrift(), DRIFT_DEBOUNCE_MS);
    this.driftTimer.unref();
  }

  private repairDrift(): void {
    this.driftTimer = null;
    const burst = this.burst;
    this.burst = null;
    if (!burst || this.stopped) return;
    this.driftCounters.driftRepairs++;
    this.driftLog.repairing(burst.first, burst.count - 1);
    this.reconciler.requestFull();
    this.kick();
  }

  private scheduleRetry(): void {
    if (this.retry) return;
    const delay = this.backoff.nextDelayMs();
    this.retry = setTimeout(() => {
      this.retry = null;
      this.kick();
    }, delay);
    this.retry.unref();
  }
}

/** One info line per drift repair, at most one per DRIFT_LOG_INTERVAL_MS; the rest are counted into the next. */
class DriftLog {
  private lastAt = -Infinity;
  private unlogged = 0;

  constructor(private readonly log: Logger) {}

  repairing(first: string, more: number): void {
    const now = Date.now();
    if (now - this.lastAt < DRIFT_LOG_INTERVAL_MS) {
      this.unlogged++;
      return;
    }
    this.lastAt = now;
    const also = more > 0 ? ` (and ${more} more change${more === 1 ? '' : 's'})` : '';
    const since = this.unlogged > 0 ? { unloggedRepairs: this.unlogged } : {};
    this.unlogged = 0;
    this.log.info(`${first}${also}; repairing`, since);
  }
}
