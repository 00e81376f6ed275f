/** The metric-name scanner the Prometheus and Grafana checks rely on: it must find every name and nothing else. */
import { expect } from 'chai';
import { exposedNames, metricNames } from './harness/promql.js';

describe('harness promql: metric names in expressions and expositions', () => {
  const cases: [string, string[]][] = [
    ['up{job="weft"} == 0', ['up']],
    ['weft_ready == 0', ['weft_ready']],
    ['increase(weft_lease_losses_total[15m]) > 0', ['weft_lease_losses_total']],
    ['weft_peer_reachable{path="overlay"} == 0 and ignoring (path) weft_peer_reachable{path="underlay"} == 1', ['weft_peer_reachable']],
    ['weft_lease_ttl_remaining_seconds < 3600 and on (instance, job) weft_lease_state{state="renewing"} == 1', ['weft_lease_state', 'weft_lease_ttl_remaining_seconds']],
    ['histogram_quantile(0.99, sum by (instance, job, le) (rate(weft_event_programmed_latency_seconds_bucket[10m]))) > 0.25', ['weft_event_programmed_latency_seconds_bucket']],
    ['weft_peers < on (job) group_left () max by (job) (weft_peers)', ['weft_peers']],
    ['max without (path) (weft_peer_reachable) == 0', ['weft_peer_reachable']],
    ['sum(rate(a_total[5m])) by (instance) / ignoring(x) group_right(y) b_total offset 1h', ['a_total', 'b_total']],
    ['count(weft_ready{job=~"$job", instance=~"$instance"} == 0) or vector(0)', ['weft_ready']],
    ['rate(weft_reconcile_errors_total{instance=~"${instance}"}[$__rate_interval]) * 1e3 + 0x10', ['weft_reconcile_errors_total']],
    ['label_values(weft_ready{job=~"$job"}, instance)', ['weft_ready']],
    ['{__name__="weft_ready"}', []],
  ];
  for (const [expr, names] of cases) {
    it(expr, () => {
      expect(metricNames(expr)).to.deep.equal(names);
    });
  }

  it('takes the sample names of an exposition, histogram parts included, and skips comments', () => {
    const text = [
      '# HELP weft_ready 1 when ready',
      '# TYPE weft_ready gauge',
      'weft_ready 1',
      'weft_lease_state{state="held"} 1',
      'weft_reconcile_duration_seconds_bucket{le="0.001",kind="full"} 3',
      'weft_reconcile_duration_seconds_sum{kind="full"} 0.002',
      'weft_reconcile_duration_seconds_count{kind="full"} 3',
      '',
    ].join('\n');
    expect([...exposedNames(text)].sort()).to.deep.equal([
      'weft_lease_state',
      'weft_ready',
      'weft_reconcile_duration_seconds_bucket',
      'weft_reconcile_duration_seconds_count',
      'weft_reconcile_duration_seconds_sum',
    ]);
  });
});
