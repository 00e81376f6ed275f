import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { CniResults } from '../bench/cni.js';
import {
  cniVerdict, DOC_FILE, dualStackSection, dualStackVerdicts, GOALS, README_FILE, readCniResults, readDualStackResults, readKernelForms, readResults, readSoakResults, renderBenchmarks,
  renderHeadline, soakSection, verdicts, withHeadline, type ClusterResults,
} from '../bench/report.js';
import type { SoakResults } from '../bench/soak-results.js';

/** The repository root: this file runs compiled as dist/test/bench-report.test.js. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const committedResults = (): ClusterResults => readResults(ROOT);
const committedCni = (): CniResults | null => readCniResults(ROOT);
const committedSoak = (): SoakResults | null => readSoakResults(ROOT);
const committedForms = () => readKernelForms(ROOT);
const committedDual = () => readDualStackResults(ROOT);

describe('docs/benchmarks.md and README.md\'s figures: generated from the committed results', () => {
  it('equals what bench/report.ts renders from bench/results/cluster.json, cni.json, soak.json, kernel-forms.json and dualstack.json (run `npm run docs:bench` after a benchmark run)', () => {
    expect(readFileSync(`${ROOT}${DOC_FILE}`, 'utf8')).to.equal(renderBenchmarks(committedResults(), committedCni(), committedSoak(), committedForms(), committedDual()));
  });

  it('README.md quotes the headline figures of the same run', () => {
    const readme = readFileSync(`${ROOT}${README_FILE}`, 'utf8');
    expect(withHeadline(readme, committedResults(), committedCni(), committedDual()), 'README.md keeps its headline block').to.not.equal(null);
    expect(readme).to.equal(withHeadline(readme, committedResults(), committedCni(), committedDual()));
  });

  it('holds no date or clock time, though the results carry their timestamp', () => {
    const results = committedResults() as ClusterResults & { date?: string };
    const cni = committedCni();
    expect(cni, 'bench/results/cni.json is committed').to.not.equal(null);
    const date = '2030-01-02T03:04:05.000Z';
    const soak = committedSoak();
    expect(soak, 'bench/results/soak.json is committed').to.not.equal(null);
    const doc = renderBenchmarks({ ...results, date } as ClusterResults, { ...cni!, date }, { ...soak!, date } as SoakResults);
    expect(doc).to.not.match(/20\d\d-\d\d-\d\d|\b\d{1,2}:\d\d\b/);
    expect(renderHeadline(results, { ...cni!, date })).to.not.match(/20\d\d-\d\d-\d\d|\b\d{1,2}:\d\d\b/);
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

  it('judges the CNI goal from the figures: weft-cni ADD minus bridge ADD against the bare Node start, at its threshold', () => {
    const cni = committedCni()!;
    const at = (weftMs: number): CniResults => ({
      ...cni,
      weftAdd: { ...cni.weftAdd, p50: weftMs },
      bridgeAdd: { ...cni.bridgeAdd, p50: 40 },
      nodeStart: { ...cni.nodeStart, p50: 30 },
    });
    const threshold = 40 + GOALS.cniOwnShareNodeStarts * 30;
    expect(cniVerdict(at(threshold)).met).to.equal(true);
    expect(cniVerdict(at(threshold + 0.01)).met).to.equal(false);
    expect(cniVerdict(at(threshold)).figure).to.match(/^30\.0 ms \(70\.0 − 40\.0\), 1\.00 Node starts$/);
    // The section and the headline carry the verdict the figures give, never a fixed word.
    expect(renderBenchmarks(committedResults(), at(threshold + 0.01))).to.match(/\| missed \|\n\nTimings/);
    expect(renderHeadline(committedResults(), at(threshold))).to.match(/\*\*CNI plugin\*\*.*goal ≤ 1: met\)/);
  });

  it('renders the route forms of the kernel run with their growth, and leaves them out without one', () => {
    const forms = committedForms();
    expect(forms, 'bench/results/kernel-forms.json is committed').to.not.equal(null);
    const doc = renderBenchmarks(committedResults(), committedCni(), committedSoak(), forms);
    expect(doc).to.match(/### Route forms/);
    const [first, last] = [forms!.rows[0]!, forms!.rows[forms!.rows.length - 1]!];
    expect(doc).to.contain(`| ${first.n} → ${last.n} |`);
    expect(doc).to.contain(`×${(last.weftNexthops.programMs / first.weftNexthops.programMs).toFixed(1)}`);
    expect(renderBenchmarks(committedResults(), committedCni(), committedSoak(), null)).to.not.match(/Route forms/);
  });

  it('leaves the CNI section and headline line out when there is no CNI run', () => {
    expect(renderBenchmarks(committedResults(), null)).to.not.match(/## CNI plugin/);
    expect(renderHeadline(committedResults(), null)).to.not.match(/CNI plugin/);
  });

  it('renders the soak\'s faults, pings, violations and replay command, and leaves the section out when there is no soak run', () => {
    const soak = committedSoak()!;
    const section = soakSection(soak);
    expect(section).to.include(`Seed ${soak.seed}`);
    expect(section).to.include(`Replay: \`${soak.replay}\``);
    for (const k of soak.kinds) expect(section).to.include(`| \`${k}\` |`);
    const failed = soakSection({ ...soak, violations: [{ atS: 12.5, invariant: 'weftd-exit', detail: 'weftd on h2 exited: a | b' }] });
    expect(failed).to.match(/Invariant violations: 1\.\n\n\| s \| invariant \| detail \|\n\|---\|---\|---\|\n\| 12\.5 \| weftd-exit \| weftd on h2 exited: a \/ b \|/);
    expect(renderBenchmarks(committedResults(), committedCni(), null)).to.not.match(/## Chaos soak/);
  });

  it('renders the dual-stack run with the IPv4 goals applied to it, judged at their thresholds, and leaves it out without one', () => {
    const dual = committedDual();
    expect(dual, 'bench/results/dualstack.json is committed').to.not.equal(null);
    const withRatio = (ratio: number) => ({ ...dual!, startup: { ...dual!.startup, ratio } });
    const startup = (d: ReturnType<typeof withRatio>) => dualStackVerdicts(d).find((v) => v.goal.startsWith('dual-stack start-up'))!;
    expect(startup(withRatio(GOALS.startupRatio)).met).to.equal(true);
    expect(startup(withRatio(GOALS.startupRatio + 0.01)).met).to.equal(false);
    const withGap = (gap: number) => ({ ...dual!, convergence: dual!.convergence.map((c) => ({ ...c, p99GapMs: gap, timeouts: 0 })) });
    const singles = (d: ReturnType<typeof withGap>) => dualStackVerdicts(d).find((v) => v.goal.startsWith('dual-stack single events'))!;
    expect(singles(withGap(GOALS.p99GapMs)).met).to.equal(true);
    expect(singles(withGap(GOALS.p99GapMs + 0.01)).met).to.equal(false);
    const section = dualStackSection(dual!);
    expect(section).to.include(`| ${dual!.n} |`);
    expect(section).to.include(' add, one at a time |');
    expect(section).to.not.match(/20\d\d-\d\d-\d\d|\b\d{1,2}:\d\d\b/);
    expect(renderHeadline(committedResults(), committedCni(), dual)).to.include(`**Dual-stack** with ${dual!.n} peers`);
    expect(renderBenchmarks(committedResults(), committedCni(), committedSoak(), committedForms(), null)).to.not.match(/## Dual-stack/);
    expect(renderHeadline(committedResults(), committedCni(), null)).to.not.match(/Dual-stack/);
  });
});
