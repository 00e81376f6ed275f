/**
 * Running a program to its end with input on stdin, its stdout collected and
 * its stderr passed through: what `child_process.spawnSync` does, without
 * loading `node:child_process` where Node lets us. That module loads Node's
 * networking and stream modules (net, dgram, stream) as it loads, which is a
 * visible share of a CNI plugin's run, while spawnSync itself only hands its
 * options to Node's `spawn_sync` binding. So this calls the binding directly
 * (through `process.binding`, which Node keeps for this kind of use and
 * which lists `spawn_sync`), with the options spawnSync would build for the
 * same call, and falls back to spawnSync itself where the binding is not
 * offered.
 */

/** How a run ended. `error` is set when the program could not be run (or its output overflowed). */
export interface Completed {
  /** Exit status; null when a signal ended it. */
  readonly status: number | null;
  /** The signal's name (`SIGKILL`), or null. */
  readonly signal: string | null;
  readonly stdout: string;
  readonly error?: Error;
}

/** What a program may print on stdout before it is stopped (with SIGTERM) and the run fails with ENOBUFS. */
export const MAX_OUTPUT = 16 << 20;

const SIGTERM = 15;

interface SpawnSyncBinding {
  spawn(options: object): { status: number | null; signal: string | null; output: Array<Buffer | null> | null; error?: number };
}

function spawnSyncBinding(): SpawnSyncBinding | null {
  try {
    const binding = (process as unknown as { binding(name: string): Partial<SpawnSyncBinding> }).binding('spawn_sync');
    return typeof binding.spawn === 'function' ? (binding as SpawnSyncBinding) : null;
  } catch {
    return null;
  }
}

/** Runs `path` (no arguments) with `env` as its whole environment and `input` on stdin, and waits for its end. */
export function runToCompletion(path: string, input: string, env: Readonly<Record<string, string | undefined>>): Completed {
  const binding = spawnSyncBinding();
  if (!binding) return withChildProcess(path, input, env);
  const envPairs: string[] = [];
  for (const [k, v] of Object.entries(env)) if (v !== undefined) envPairs.push(`${k}=${v}`);
  const r = binding.spawn({
    file: path,
    args: [path],
    envPairs,
    stdio: [
      { type: 'pipe', readable: true, writable: false, input: Buffer.from(input) },
      { type: 'pipe', readable: false, writable: true },
      { type: 'inherit', fd: 2 },
    ],
    detached: false,
    windowsHide: false,
    windowsVerbatimArguments: false,
    killSignal: SIGTERM,
    maxBuffer: MAX_OUTPUT,
    timeout: 0,
  });
  const stdout = r.output?.[1]?.toString('utf8') ?? '';
  if (!r.error) return { status: r.status, signal: r.signal, stdout };
  // A negative errno, as spawnSync reports it: `spawnSync <path> ENOENT`.
  const name = process.getBuiltinModule('node:util').getSystemErrorName(r.error);
  return { status: r.status, signal: r.signal, stdout, error: Object.assign(new Error(`spawnSync ${path} ${name}`), { code: name, errno: r.error, path }) };
}

function withChildProcess(path: string, input: string, env: Readonly<Record<string, string | undefined>>): Completed {
  const { spawnSync } = process.getBuiltinModule('node:child_process');
  const c = spawnSync(path, [], { input, env, stdio: ['pipe', 'pipe', 'inherit'], encoding: 'utf8', maxBuffer: MAX_OUTPUT });
  return { status: c.status, signal: c.signal, stdout: c.stdout ?? '', ...(c.error ? { error: c.error } : {}) };
}
