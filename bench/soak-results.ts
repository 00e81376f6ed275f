/** What `npm run soak` writes (bench/results/soak.json) and bench/report.ts renders; its `date` field is not read. */
import type { Machine } from './cluster-stats.js';
import type { LossBound } from './soak-schedule.js';

export interface SoakResults {
  readonly seed: number;
  /** The schedule's length asked for, s (the last round may run past it). */
  readonly seconds: number;
  /** Set-up, schedule and checks, s. */
  readonly ranSeconds: number;
  readonly hosts: number;
  /** The fault kinds injected, and those left out (--faults / --exclude). */
  readonly kinds: readonly string[];
  readonly excluded: readonly string[];
  readonly machine: Machine;
  readonly rounds: number;
  /** Time from a round going quiet until every kernel equalled its desired state. */
  readonly quiet: { readonly checks: number; readonly p50Ms: number | null; readonly maxMs: number | null; readonly limitMs: number };
  readonly faults: readonly { readonly kind: string; readonly injected: number; readonly bound: LossBound; readonly lost: number }[];
  readonly pings: { readonly sent: number; readonly lost: number; readonly unexplained: number };
  readonly violations: readonly { readonly atS: number; readonly invariant: string; readonly detail: string }[];
  /** The command that replays the schedule. */
  readonly replay: string;
}
