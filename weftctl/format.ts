/** How weftctl prints: aligned text tables for people, JSON for scripts. */

export type OutputFormat = 'table' | 'json';

/** A subcommand's result: the same data as JSON and as text, and the exit code it implies. */
export interface Report {
  readonly json: unknown;
  readonly text: string;
  readonly exitCode: number;
}

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

export function render(report: Report, format: OutputFormat): string {
  return format === 'json' ? JSON.stringify(report.json, null, 2) : report.text;
}

/** `1h02m03s`, `45s`: a TTL as people read it. */
export function formatSeconds(total: number): string {
  const s = Math.max(0, Math.round(total));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  if (h > 0) return `${h}h${String(m).padStart(2, '0')}m${String(sec).padStart(2, '0')}s`;
  if (m > 0) return `${m}m${String(sec).padStart(2, '0')}s`;
  return `${sec}s`;
}
