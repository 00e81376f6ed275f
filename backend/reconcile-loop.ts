/**
 * Drives a Reconciler: one pass at a time, a new pass as soon as work arrives
 * (coalescing whatever came in meanwhile), a full pass every
 * `resyncIntervalMs` to repair drift, and a backoff-timed retry when a pass
 * left failures. Nothing here waits in a loop: retries are timers, so the
 * event loop stays free (the netlink socket must never be starved).
 */
import { Backoff } from '../common/backoff.js';
import type { Logger } from '../common/log.js';
import type { ReconcilePass } from './backend.js';
import type { Reconciler } from './reconciler.js';

export const DEFAULT_RESYNC_INTERVAL_MS = 10_000;

export interface ReconcileLoopOptions {
  readonly reconciler: Reconciler;
  readonly log: Logger;
  /** Period of the full repair pass; default 10 s. */
  readonly resyncIntervalMs?: number;
  /** Told about every pass (metrics). */
  readonly onPass?: (pass: ReconcilePass) => void;
}

export class ReconcileLoop {
  /** Resolves once the first full pass has run (all peers attempted). */
  readonly ready: Promise<void>;
  private markReady!: () => void;
  private readonly reconciler: Reconciler;
  private readonly log: Logger;
  private readonly resyncIntervalMs: number;
  private readonly onPass: ((pass: ReconcilePass) => void) | undefined;
  private readonly backoff = new Backoff({ initialMs: 100, maxMs: 10_000 });
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
    this.ready = new Promise((resolve) => (this.markReady = resolve));
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
    if (this.periodic) clearInterval(this.periodic);
    if (this.retry) clearTimeout(this.retry);
    this.periodic = this.retry = null;
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
        this.onPass?.({ full: report.full, seconds: Number(process.hrtime.bigint() - t0) / 1e9, ops: report.ops, failed: report.failed });
        if (report.full && !this.isReady) {
          this.isReady = true;
          this.markReady();
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
