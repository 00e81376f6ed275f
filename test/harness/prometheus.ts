/**
 * A real Prometheus (Debian's `prometheus` binary) inside a test namespace,
 * with its own configuration and storage under a test directory, listening
 * on that namespace's 127.0.0.1 only. Queries run from inside the namespace.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Netns } from './netns.js';

export const PROMETHEUS_PORT = 9090;

/** One alert as /api/v1/alerts lists it. */
export interface PromAlert {
  labels: Record<string, string>;
  annotations: Record<string, string>;
  state: 'pending' | 'firing';
}

/** An instant query's answer. */
export interface QueryResult {
  resultType: string;
  result: { metric: Record<string, string>; value: [number, string] }[];
}

export class PrometheusServer {
  private constructor(
    private readonly ns: Netns,
    private readonly proc: ChildProcess,
    readonly dir: string,
  ) {}

  /** Starts Prometheus in `ns` with `configFile` (rule files relative to it), storage and log in `dir`, and waits for /-/ready. */
  static async start(ns: Netns, dir: string, configFile: string, timeoutMs = 30_000): Promise<PrometheusServer> {
    mkdirSync(dir, { recursive: true });
    const log = openSync(join(dir, 'prometheus.log'), 'a');
    const proc = ns.spawn('prometheus', [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${PROMETHEUS_PORT}`,
      '--storage.tsdb.retention.time=1h',
    ]);
    const append = (d: Buffer) => {
      try {
        writeSync(log, d);
      } catch {
        /* log closed: the process is gone */
      }
    };
    proc.stdout?.on('data', append);
    proc.stderr?.on('data', append);
    proc.once('exit', () => closeSync(log));
    const server = new PrometheusServer(ns, proc, dir);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) throw new Error(`prometheus exited (${proc.exitCode ?? proc.signalCode}): ${server.logTail()}`);
      if ((await server.get('/-/ready').catch(() => ({ status: 0 }))).status === 200) return server;
      if (Date.now() > deadline) throw new Error(`prometheus not ready after ${timeoutMs} ms: ${server.logTail()}`);
      await sleep(200);
    }
  }

  /** GET on Prometheus' HTTP endpoint, from inside its namespace. */
  async get(path: string): Promise<{ status: number; body: string }> {
    return (await this.getAll([path]))[0]!;
  }

  /** GETs on several paths from one process inside the namespace (a process per request costs more than the request). */
  async getAll(paths: readonly string[]): Promise<{ status: number; body: string }[]> {
    const urls = paths.map((p) => `http://127.0.0.1:${PROMETHEUS_PORT}${p}`);
    const script = `Promise.all(${JSON.stringify(urls)}.map(u=>fetch(u).then(async r=>({status:r.status,body:await r.text()}),e=>({status:0,body:String(e)})))).then(a=>process.stdout.write(JSON.stringify(a)))`;
    return JSON.parse(await this.ns.exec('node', '-e', script)) as { status: number; body: string }[];
  }

  /** GET on an /api/v1 path; returns `data`, or throws with Prometheus' error. */
  async api<T>(path: string): Promise<T> {
    return (await this.apiAll<T>([path]))[0]!;
  }

  /** api() for several paths at once. */
  async apiAll<T>(paths: readonly string[]): Promise<T[]> {
    const answers = await this.getAll(paths.map((p) => `/api/v1/${p}`));
    return answers.map(({ status, body }, i) => {
      let parsed: { status?: string; data?: T; error?: string };
      try {
        parsed = JSON.parse(body) as typeof parsed;
      } catch {
        throw new Error(`prometheus /api/v1/${paths[i]}: HTTP ${status}: ${body.slice(0, 200)}`);
      }
      if (parsed.status !== 'success') throw new Error(`prometheus /api/v1/${paths[i]}: ${parsed.error ?? `HTTP ${status}`}`);
      return parsed.data as T;
    });
  }

  /** An instant query's vector result. */
  async query(expr: string): Promise<QueryResult> {
    return (await this.queryAll([expr]))[0]!;
  }

  /** Instant queries, each answered in order; throws on the first Prometheus refuses. */
  queryAll(exprs: readonly string[]): Promise<QueryResult[]> {
    return this.apiAll<QueryResult>(exprs.map((e) => `query?query=${encodeURIComponent(e)}`));
  }

  async alerts(): Promise<PromAlert[]> {
    return (await this.api<{ alerts: PromAlert[] }>('alerts')).alerts;
  }

  /** SIGTERM by PID (Prometheus flushes and exits), SIGKILL after `timeoutMs`. */
  async stop(timeoutMs = 10_000): Promise<void> {
    const proc = this.proc;
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }

  logTail(lines = 10): string {
    try {
      return readFileSync(join(this.dir, 'prometheus.log'), 'utf8').trim().split('\n').slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}
