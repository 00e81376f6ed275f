/**
 * Runs `fn` now and then every `intervalMs` until `signal` aborts. An error
 * goes to `onError` and the next period comes as usual: a keeper that fails
 * once must keep trying.
 *
 * `intervalMs` may be a function, asked after each run (a keeper that is
 * told of changes can afford a long period). With a `wakeup`, a poke ends the
 * wait early: the next run starts at once, or right after the current one.
 */
export async function runPeriodically(
  intervalMs: number | (() => number),
  signal: AbortSignal,
  fn: () => Promise<void>,
  onError: (err: Error) => void,
  wakeup: Wakeup = new Wakeup(),
): Promise<void> {
  while (!signal.aborted) {
    try {
      await fn();
    } catch (err) {
      onError(err as Error);
    }
    await wakeup.wait(typeof intervalMs === 'number' ? intervalMs : intervalMs(), signal);
  }
}

/**
 * Ends a periodic wait early. A poke while nobody waits is kept (once) for
 * the next wait, so a change reported during a run is not lost.
 */
export class Wakeup {
  private pending = false;
  private wake: (() => void) | null = null;
  private settle: NodeJS.Timeout | null = null;

  /**
   * Wakes the wait now, or `afterMs` from now: pokes that come meanwhile
   * join that one, so a burst of changes ends the wait once, after it.
   */
  poke(afterMs = 0): void {
    if (afterMs > 0) {
      if (this.settle) return;
      this.settle = setTimeout(() => {
        this.settle = null;
        this.poke();
      }, afterMs);
      this.settle.unref();
      return;
    }
    if (this.wake) this.wake();
    else this.pending = true;
  }

  /** Resolves after `ms`, on a poke, or when `signal` aborts, whichever comes first. */
  wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.pending || signal.aborted) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener('abort', done);
        this.wake = null;
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener('abort', done, { once: true });
      this.wake = done;
    });
  }
}
