/** What a wait gives when the signal ended it. */
export const ABORTED: unique symbol = Symbol('aborted');

/**
 * `promise`'s outcome, or ABORTED as soon as `signal` aborts, whichever comes
 * first, for a one-off wait: it listens to the signal only while it waits.
 * A loop of waits takes an AbortGate instead.
 */
export function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | typeof ABORTED> {
  const gate = new AbortGate(signal);
  return gate.wait(promise).finally(() => gate.close());
}

/**
 * Ends a loop's waits when `signal` aborts: one listener on the signal for all
 * of them, and each wait a promise of its own. Why not either of the obvious:
 * - racing every wait against one "aborted" promise made up front leaves a
 *   reaction on that promise per race, and it settles only at shutdown: memory
 *   that grows with every wait for as long as the loop runs (a batch per lease
 *   event, for a daemon's lifetime);
 * - a listener per wait (added, then removed, per batch) is CPU spent on
 *   every batch, which shows under lease churn.
 * For waits one after another; close() when the loop ends.
 */
export class AbortGate {
  private wake: (() => void) | null = null;
  private readonly onAbort = (): void => this.wake?.();

  constructor(private readonly signal: AbortSignal) {
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  wait<T>(promise: Promise<T>): Promise<T | typeof ABORTED> {
    if (this.signal.aborted) return Promise.resolve(ABORTED);
    return new Promise((resolve, reject) => {
      this.wake = () => resolve(ABORTED);
      promise.then(resolve, reject);
    });
  }

  close(): void {
    this.signal.removeEventListener('abort', this.onAbort);
    this.wake = null;
  }
}
