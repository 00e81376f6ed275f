/** Small numeric and formatting helpers shared by the cluster benchmarks. */
import { readFileSync } from 'node:fs';
import { release } from 'node:os';

/** Wall-clock milliseconds with sub-ms resolution, comparable across processes on this machine. */
export function now(): number {
  return performance.timeOrigin + performance.now();
}

export function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

export const median = (xs: readonly number[]): number => quantile(xs, 0.5);

export interface Summary {
  readonly n: number;
  readonly p50: number;
  readonly p99: number;
  readonly max: number;
}

export function summarize(xs: readonly number[]): Summary {
  return { n: xs.length, p50: quantile(xs, 0.5), p99: quantile(xs, 0.99), max: xs.length ? Math.max(...xs) : NaN };
}

export function fmt(x: number, digits = 1): string {
  return Number.isFinite(x) ? x.toFixed(digits) : '-';
}

/** A Markdown table with right-aligned columns. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => '| ' + cells.map((c, i) => c.padStart(widths[i]!)).join(' | ') + ' |';
  return [line(header), '|' + widths.map((w) => '-'.repeat(w + 1) + ':').join('|') + '|', ...rows.map(line)].join('\n');
}

export interface Machine {
  readonly cores: number;
  readonly kernel: string;
  readonly node: string;
  readonly etcd: string;
}

export function machine(etcdVersion: string): Machine {
  const cores = readFileSync('/proc/cpuinfo', 'utf8').split('\n').filter((l) => l.startsWith('processor')).length;
  return { cores, kernel: release(), node: process.version, etcd: etcdVersion };
}

export function machineLine(m: Machine): string {
  return `Machine: ${m.cores} cores, kernel ${m.kernel}, Node ${m.node.replace(/^v/, '')}, etcd ${m.etcd}.`;
}

const CLK_TCK = 100;

/** CPU seconds (user + system) and resident memory of a process, from /proc. */
export interface ProcSample {
  readonly at: number;
  readonly cpuSeconds: number;
  readonly rssMB: number;
  readonly hwmMB: number;
}

export function procSample(pid: number): ProcSample {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may contain spaces) start at ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(f[11]) + Number(f[12])) / CLK_TCK;
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? NaN);
  return { at: now(), cpuSeconds, rssMB: kb('VmRSS') / 1024, hwmMB: kb('VmHWM') / 1024 };
}

/** The pids of a process's children (weftd's kernel listener). */
export function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** Memory only this process holds (private clean + dirty pages), in MB: what it adds next to a process sharing its binary. */
export function privateMB(pid: number): number {
  const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(rollup)?.[1] ?? NaN);
  return (kb('Private_Clean') + kb('Private_Dirty')) / 1024;
}

/** Share of one core used between two samples, in percent. */
export function cpuPercent(a: ProcSample, b: ProcSample): number {
  return ((b.cpuSeconds - a.cpuSeconds) / ((b.at - a.at) / 1000)) * 100;
}
