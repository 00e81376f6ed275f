import { setTimeout as sleep } from 'node:timers/promises';
import { ExponentialBackoff, type IBackoff } from 'cockatiel';

/**
 * The one retry-delay policy used across weft: exponential with decorrelated
 * jitter (cockatiel's default generator), from `initialMs` up to `maxMs`.
 */
export interface BackoffOptions {
  initialMs?: number;
  maxMs?: number;
}

export class Backoff {
  private readonly factory: ExponentialBackoff<void>;
  private current: IBackoff<void> | undefined;

  constructor(options: BackoffOptions = {}) {
    this.factory = new ExponentialBackoff({
      initialDelay: options.initialMs ?? 100,
      maxDelay: options.maxMs ?? 5000,
    });
  }

  /** Delay before the next attempt; grows with each call until reset(). */
  nextDelayMs(): number {
    this.current = this.current ? this.current.next() : this.factory.next();
    return this.current.duration;
  }

  reset(): void {
    this.current = undefined;
  }

  /** Sleeps for the next delay; rejects with the abort reason if `signal` fires. */
  async wait(signal?: AbortSignal): Promise<void> {
    await sleep(this.nextDelayMs(), undefined, { signal });
  }
}

/** Resolves after `ms`, or rejects when `signal` aborts. */
export function delay(ms: number, signal?: AbortSignal): Promise<void> {
  return sleep(ms, undefined, { signal });
}
