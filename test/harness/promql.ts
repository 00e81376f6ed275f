/**
 * Metric names in PromQL expressions and in a Prometheus text exposition, so
 * that a test can hold the shipped alert rules and dashboard to the series a
 * live weftd exports. A small scanner, not a PromQL parser: enough for the
 * expressions weft ships (selectors, functions, aggregations with by/without,
 * binary operators with on/ignoring/group_*), and for Grafana's variables.
 */

const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'inf', 'nan', 'atan2']);

/** Every metric name an expression selects, sorted, without repeats. Grafana's `label_values(EXPR, label)` counts as EXPR. */
export function metricNames(expr: string): string[] {
  const text = expr
    .replace(/label_values\s*\(([^,]*),[^)]*\)/g, '$1')
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, '{}')
    .replace(/\[[^\]]*\]/g, '[]')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{?\w+\}?/g, ' ')
    .replace(/(?<![\w:])\d[\w.+-]*/g, ' ');
  const names = new Set<string>();
  for (const m of text.matchAll(/[a-zA-Z_:][\w:]*/g)) {
    const after = text.slice(m.index! + m[0].length).trimStart();
    if (after.startsWith('(') || KEYWORDS.has(m[0].toLowerCase())) continue;
    names.add(m[0]);
  }
  return [...names].sort();
}

/** The sample names of a text exposition (a histogram's `_bucket`, `_sum` and `_count` each count). */
export function exposedNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)[{ ]/.exec(line);
    if (m) names.add(m[1]!);
  }
  return names;
}
