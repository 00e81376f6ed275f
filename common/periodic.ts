import { delay } from './backoff.js';

/**
 * Runs `fn` now and then every `intervalMs` until `signal` aborts. An error
 * goes to `onError` and the next period comes as usual: a keeper that fails
 * once must keep trying.
 */
export async function runPeriodically(intervalMs: number, signal: AbortSignal, fn: () => Promise<void>, onError: (err: Error) => void): Promise<void> {
  while (!signal.aborted) {
    try {
      await fn();
    } catch (err) {
      onError(err as Error);
    }
    await delay(intervalMs, signal).catch(() => undefined);
  }
}
