/**
 * Request/response over a Node IPC channel between the benchmark and its
 * helper processes (the etcd agent and the host observer), which run inside
 * namespaces. A helper calls `serve(handlers)`; the benchmark wraps the child
 * in `Rpc`.
 */
import { WeftError } from '../common/errors.js';
import type { ChildProcess } from 'node:child_process';

interface Request {
  readonly id: number;
  readonly op: string;
  readonly args: unknown;
}

interface Response {
  readonly id: number;
  readonly ok: boolean;
  readonly value?: unknown;
  readonly error?: string;
}

export class Rpc {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private readonly ready: Promise<void>;

  constructor(readonly child: ChildProcess, readonly name: string) {
    let markReady!: () => void;
    let failReady!: (e: Error) => void;
    this.ready = new Promise((resolve, reject) => ((markReady = resolve), (failReady = reject)));
    child.on('message', (msg: Response | 'ready') => {
      if (msg === 'ready') return markReady();
      const p = this.pending.get(msg.id);
      if (!p) return;
      this.pending.delete(msg.id);
      if (msg.ok) p.resolve(msg.value);
      else p.reject(new WeftError('WEFT_ERR_HARNESS', `${name}: ${msg.error}`));
    });
    child.once('exit', (code) => {
      const err = new WeftError('WEFT_ERR_HARNESS', `${name} exited (${code})`);
      failReady(err);
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    });
  }

  async call<T>(op: string, args: unknown = {}): Promise<T> {
    await this.ready;
    return new Promise<T>((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, op, args } satisfies Request);
    });
  }

  /** Asks the helper to exit and waits (SIGKILL by PID after 3 s). */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.call('exit').catch(() => undefined);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
  }
}

export type Handlers = Record<string, (args: never) => unknown>;

/** Runs inside a helper: answers requests with `handlers[op](args)`. */
export function serve(handlers: Handlers, onExit: () => Promise<void> | void = () => undefined): void {
  const send = (r: Response): void => void process.send?.(r);
  process.on('message', (msg: Request) => {
    if (msg.op === 'exit') {
      Promise.resolve(onExit()).finally(() => process.exit(0));
      return;
    }
    const handler = handlers[msg.op];
    if (!handler) return send({ id: msg.id, ok: false, error: `unknown op ${msg.op}` });
    Promise.resolve()
      .then(() => handler(msg.args as never))
      .then(
        (value) => send({ id: msg.id, ok: true, value }),
        (err: unknown) => send({ id: msg.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
      );
  });
  process.on('disconnect', () => process.exit(0));
  process.send?.('ready');
}
