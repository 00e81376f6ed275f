/** What unlessAborted() gives when the signal ended the wait. */
export const ABORTED: unique symbol = Symbol('aborted');

/**
 * `promise`'s outcome, or ABORTED as soon as `signal` aborts, whichever comes
 * first. Each call listens to the signal only while it waits. Why not race
 * against one "aborted" promise made up front: every Promise.race leaves a
 * reaction on each input still pending, and a promise that settles only at
 * shutdown keeps them all, about 300 bytes per wait for as long as the loop
 * runs (a batch per lease event, for a daemon's lifetime).
 */
export function unlessAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | typeof ABORTED> {
  if (signal.aborted) return Promise.resolve(ABORTED);
  return new Promise((resolve, reject) => {
    const onAbort = (): void => resolve(ABORTED);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
