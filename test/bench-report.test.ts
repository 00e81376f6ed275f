import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { DOC_FILE, GOALS, README_FILE, readResults, renderBenchmarks, verdicts, withHeadline, type ClusterResults } from '../bench/report.js';

/** The repository root: this file runs compiled as dist/test/bench-report.test.js. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const committedResults = (): ClusterResults => readResults(ROOT);

describe('docs/benchmarks.md and README.md\'s figures: generated from the committed results', () => {
  it('equals what bench/report.ts renders from bench/results/cluster.json (run `npm run docs:bench` after a benchmark run)', () => {
    expect(readFileSync(`${ROOT}${DOC_FILE}`, 'utf8')).to.equal(renderBenchmarks(committedResults()));
  });

  it('README.md quotes the headline figures of the same run', () => {
    const readme = readFileSync(`${ROOT}${README_FILE}`, 'utf8');
    expect(withHeadline(readme, committedResults()), 'README.md keeps its headline block').to.not.equal(null);
    expect(readme).to.equal(withHeadline(readme, committedResults()));
  });

  it('holds no date or clock time, though the results carry their timestamp', () => {
    const results = committedResults() as ClusterResults & { date?: string };
    const doc = renderBenchmarks({ ...results, date: '2030-01-02T03:04:05.000Z' } as ClusterResults);
    expect(doc).to.not.match(/20\d\d-\d\d-\d\d|\b\d{1,2}:\d\d\b/);
  });

  it('judges each goal from the figures: the start-up verdict follows the ratio across the threshold', () => {
    const results = committedResults();
    const big = results.sizes[results.sizes.length - 1]!;
    const withRatio = (ratio: number): ClusterResults => ({
      ...results,
      sizes: [...results.sizes.slice(0, -1), { ...big, startup: { ...big.startup, ratio } }],
    });
    const startup = (r: ClusterResults) => verdicts(r).find((v) => v.goal.startsWith('start-up'))!;
    expect(startup(withRatio(GOALS.startupRatio)).met).to.equal(true);
    expect(startup(withRatio(GOALS.startupRatio + 0.01)).met).to.equal(false);
  });
});
