/**
 * The CNI benchmark's hand inside the host namespace: spawns a program the
 * way a container runtime runs a CNI plugin (directly, from a process
 * already in the host's namespace, the CNI_* variables in its environment
 * and the config on stdin) and times it from spawn to exit. Every column of
 * the table goes through here, so each pays the same spawn cost and none
 * pays `ip netns exec`. Controlled over IPC by bench/cni.ts:
 *   ip netns exec <host ns> node cni-runner.js
 */
import { spawn } from 'node:child_process';
import { serve } from './cluster-rpc.js';

export interface RunRequest {
  readonly cmd: string;
  readonly args: readonly string[];
  /** The child's whole environment. */
  readonly env: Record<string, string>;
  readonly stdin: string;
}

export interface RunResult {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
  /** Spawn until the child exited and its output was read, ms. */
  readonly ms: number;
}

function run(r: RunRequest): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(r.cmd, r.args as string[], { env: r.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', reject);
    child.on('close', (status, signal) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      resolve({ status: status ?? (signal ? -1 : 0), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), ms });
    });
    child.stdin.end(r.stdin);
  });
}

serve({ run: (r: RunRequest) => run(r) });
