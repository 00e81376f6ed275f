/**
 * The shipped monitoring examples against real parts.
 *  - examples/prometheus: `promtool check` on the rules and the scrape config,
 *    and the rules' own unit tests (`promtool test rules`).
 *  - A real Prometheus in its own namespace on the cluster's underlay scrapes
 *    three weftd (h1..h3, probing their peers every second) every second and
 *    evaluates the shipped rules every second, from a copy whose only change
 *    is a `for` of a few seconds. Healthy, no rule errs and no alert is
 *    pending or firing. When h2 drops incoming UDP 8472 (iptables in h2's
 *    namespace), WeftOverlayBlocked fires for exactly the pairs across h2,
 *    in both directions, and for no other pair; it clears when the rule goes.
 *    A newer lease that advertises h1's VTEP MAC is refused on all three
 *    nodes: WeftLeaseRefusedDuplicate fires once for the job, nothing else
 *    but the info-level WeftMalformedLease fires (h1's own lease is the
 *    older), and it clears when the key goes.
 *  - Every metric name in the rules and in examples/grafana's dashboard is
 *    one the live weftd export (`up` aside: Prometheus makes it), every
 *    metric weftd exports has a panel, and every dashboard query runs.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { Cluster, HEALTHZ_PORT, type WeftNode } from './harness/cluster.js';
import { eventually, type Netns } from './harness/netns.js';
import { PrometheusServer, type PromAlert } from './harness/prometheus.js';
import { exposedNames, metricNames } from './harness/promql.js';

const EXAMPLES = fileURLToPath(new URL('../../examples/', import.meta.url));
const RULES = join(EXAMPLES, 'prometheus', 'weft-alerts.yml');
const DASHBOARD = join(EXAMPLES, 'grafana', 'weft-dashboard.json');
/** Series Prometheus makes itself for every target, not weftd. */
const PROMETHEUS_OWN = new Set(['up']);

interface RuleFile {
  groups: { name: string; rules: { alert: string; expr: string; for?: string }[] }[];
}

interface Panel {
  title: string;
  type: string;
  targets?: { expr: string }[];
}

interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; query?: { query?: string } | string }[] };
}

const rules = (): RuleFile => YAML.parse(readFileSync(RULES, 'utf8')) as RuleFile;
const dashboard = (): Dashboard => JSON.parse(readFileSync(DASHBOARD, 'utf8')) as Dashboard;

/** Every PromQL expression of the dashboard: panel targets and variable queries. */
function dashboardExprs(d: Dashboard): { title: string; expr: string }[] {
  const panels = d.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ title: p.title, expr: t.expr })));
  const variables = d.templating.list.flatMap((v) => {
    const q = typeof v.query === 'string' ? v.query : v.query?.query;
    return q && q.includes('(') ? [{ title: `variable ${v.name}`, expr: q }] : [];
  });
  return [...panels, ...variables];
}

/** A dashboard query as Grafana would send it here: the job, every node, a range of ten scrapes. */
function substitute(expr: string): string {
  return expr.replaceAll('$__rate_interval', '10s').replaceAll('$job', 'weft').replaceAll('$instance', '.+');
}

/** The metric family a sample name belongs to (a histogram's parts count as the histogram). */
const family = (name: string) => name.replace(/_(bucket|sum|count)$/, '');

describe('examples/prometheus: the shipped rules pass promtool @real', () => {
  const promtool = (...args: string[]) => promisify(execFile)('promtool', args, { cwd: join(EXAMPLES, 'prometheus') });

  it('promtool check rules and check config accept the rules and the scrape config', async () => {
    expect((await promtool('check', 'rules', 'weft-alerts.yml')).stdout).to.match(/SUCCESS: \d+ rules found/);
    expect((await promtool('check', 'config', 'prometheus.yml')).stdout).to.contain('is valid prometheus config file syntax');
  });

  it('promtool test rules passes the rules\' unit tests, which cover every alert', async () => {
    const { stdout } = await promtool('test', 'rules', 'weft-alerts.test.yml');
    expect(stdout).to.contain('SUCCESS');
    const tests = YAML.parse(readFileSync(join(EXAMPLES, 'prometheus', 'weft-alerts.test.yml'), 'utf8')) as {
      tests: { alert_rule_test: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const firedInTests = new Set(tests.tests.flatMap((t) => t.alert_rule_test.filter((a) => a.exp_alerts.length > 0).map((a) => a.alertname)));
    const alerts = rules().groups.flatMap((g) => g.rules.map((r) => r.alert));
    expect(alerts.filter((a) => !firedInTests.has(a))).to.deep.equal([]);
  });
});

describe('Prometheus scraping a three-host cluster: alerts and dashboard @real', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  let promNs: Netns;
  let prom: PrometheusServer;
  let h1: WeftNode, h2: WeftNode, h3: WeftNode;
  /** The `peer` label of each host's lease: its subnet. */
  const subnetOf = (n: WeftNode) => n.subnetEnv().FLANNEL_SUBNET!.replace(/\.1\/24$/, '.0/24');
  const instanceOf = (n: WeftNode) => `${n.ip}:${HEALTHZ_PORT}`;
  const blockVxlan = ['INPUT', '-p', 'udp', '--dport', '8472', '-j', 'DROP'];

  before(async () => {
    cluster = await Cluster.create({ hosts: 3 });
    [h1, h2, h3] = [cluster.node(1), cluster.node(2), cluster.node(3)];
    // /metrics on every address of the host's namespace, so that Prometheus reaches it over the underlay.
    for (const n of cluster.nodes) n.start(['--probe-interval', '1', '--healthz-ip', '0.0.0.0']);
    await Promise.all(cluster.nodes.map((n) => n.waitReady(60_000)));

    const dir = join(cluster.dir, 'prometheus');
    promNs = await cluster.sw.addHost('prom', '198.18.0.240/24');
    const shipped = rules();
    // The shipped expressions verbatim; only the waits shrink, so that alerts fire within seconds.
    for (const g of shipped.groups) for (const r of g.rules) if (r.for) r.for = '3s';
    const config = {
      global: { scrape_interval: '1s', scrape_timeout: '1s', evaluation_interval: '1s' },
      rule_files: ['weft-alerts.yml'],
      scrape_configs: [{ job_name: 'weft', static_configs: [{ targets: cluster.nodes.map(instanceOf) }] }],
    };
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'weft-alerts.yml'), YAML.stringify(shipped));
    writeFileSync(join(dir, 'prometheus.yml'), YAML.stringify(config));
    prom = await PrometheusServer.start(promNs, dir, join(dir, 'prometheus.yml'));
  });

  after(async () => {
    await h2?.ns.exec('iptables', '-D', ...blockVxlan).catch(() => undefined);
    await prom?.stop();
    await promNs?.delete();
    await cluster?.destroy();
  });

  it('every metric the alert rules and the dashboard name is exported by a live weftd, and every exported metric has a panel', async () => {
    const exported = new Set<string>();
    for (const n of cluster.nodes) for (const name of exposedNames((await n.http('/metrics')).body)) exported.add(name);

    const ruleExprs = rules().groups.flatMap((g) => g.rules.map((r) => ({ title: r.alert, expr: r.expr })));
    const dashExprs = dashboardExprs(dashboard());
    const unknown: string[] = [];
    for (const { title, expr } of [...ruleExprs, ...dashExprs]) {
      const names = metricNames(expr);
      expect(names, `${title}: ${expr}`).to.not.be.empty;
      for (const name of names) if (!exported.has(name) && !PROMETHEUS_OWN.has(name)) unknown.push(`${title}: ${name}`);
    }
    expect(unknown).to.deep.equal([]);

    const shown = new Set(dashExprs.flatMap(({ expr }) => metricNames(expr)).map(family));
    expect([...new Set([...exported].map(family))].filter((f) => !shown.has(f))).to.deep.equal([]);
  });

  it('Prometheus scrapes the three weftd and evaluates every rule without error; a healthy cluster has no alert', async () => {
    await eventually(async () => (await prom.query('up{job="weft"} == 1')).result.length === 3, 20_000, 'three weftd targets up');
    // Each host probes its two peers on both paths: 12 answered probes once every round has run.
    await eventually(async () => (await prom.query('weft_peer_reachable == 1')).result.length === 12, 20_000, 'every probe answered');
    await sleep(4000); // past the 3 s `for` of every rule, a few evaluations on the full data
    const groups = (await prom.api<{ groups: { rules: { name: string; health: string; lastError?: string }[] }[] }>('rules')).groups;
    const evaluated = groups.flatMap((g) => g.rules);
    expect(evaluated.map((r) => r.name)).to.have.members(rules().groups.flatMap((g) => g.rules.map((r) => r.alert)));
    expect(evaluated.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).to.deep.equal([]);
    expect((await prom.alerts()).map((a) => `${a.labels.alertname} ${a.state} ${a.labels.instance}`)).to.deep.equal([]);
  });

  it('every dashboard query runs; all but the overlay-blocked table return data', async () => {
    const queries = dashboardExprs(dashboard()).filter((e) => !e.title.startsWith('variable'));
    const answers = await prom.queryAll(queries.map((q) => substitute(q.expr)));
    expect(queries.filter((_, i) => answers[i]!.result.length === 0).map((q) => q.title)).to.deep.equal(['Overlay blocked (underlay OK, overlay not)']);
  });

  it('WeftOverlayBlocked fires for every pair across a host that drops UDP 8472, in both directions, and for no other', async () => {
    const t0 = Date.now();
    await h2.ns.exec('iptables', '-I', ...blockVxlan);
    const expected = [
      [h1, h2],
      [h3, h2],
      [h2, h1],
      [h2, h3],
    ]
      .map(([from, to]) => `${instanceOf(from!)} -> ${subnetOf(to!)} (${to!.ip})`)
      .sort();
    const pairs = (alerts: PromAlert[]) =>
      alerts
        .filter((a) => a.labels.alertname === 'WeftOverlayBlocked' && a.state === 'firing')
        .map((a) => `${a.labels.instance} -> ${a.labels.peer} (${a.labels.public_ip})`)
        .sort();
    let firing: PromAlert[] = [];
    await eventually(
      async () => {
        firing = await prom.alerts();
        return pairs(firing).length >= expected.length;
      },
      30_000,
      'WeftOverlayBlocked firing for the four pairs across h2',
    );
    const firedAfterMs = Date.now() - t0;
    expect(pairs(firing)).to.deep.equal(expected);
    // The underlay still answers: nothing else fires (the peers are not unreachable).
    expect(firing.filter((a) => a.state === 'firing' && a.labels.alertname !== 'WeftOverlayBlocked').map((a) => a.labels.alertname)).to.deep.equal([]);
    const blocked = firing.find((a) => a.labels.instance === instanceOf(h1))!;
    expect(blocked.labels.severity).to.equal('critical');
    expect(blocked.annotations.summary).to.equal(`${instanceOf(h1)} reaches peer ${subnetOf(h2)} (${h2.ip}) on the underlay but not through VXLAN`);
    expect(blocked.annotations.runbook).to.contain('weftctl doctor');

    // The dashboard's overlay-blocked table shows the same pairs.
    const table = dashboard().panels.find((p) => p.title.startsWith('Overlay blocked'))!;
    const rows = (await prom.query(substitute(table.targets![0]!.expr))).result.map((r) => `${r.metric.instance} -> ${r.metric.peer} (${r.metric.public_ip})`);
    expect(rows.sort()).to.deep.equal(expected);

    await h2.ns.exec('iptables', '-D', ...blockVxlan);
    await eventually(async () => pairs(await prom.alerts()).length === 0, 30_000, 'WeftOverlayBlocked cleared after the block went');
    // Not a limit of the test, a record of it: how long the alert took with 1 s probes, scrapes and evaluations.
    console.log(`      WeftOverlayBlocked firing ${firedAfterMs} ms after the block; cleared ${Date.now() - t0 - firedAfterMs} ms later`);
  });

  it('WeftLeaseRefusedDuplicate fires once for the job when a newer lease advertises a node\'s VTEP MAC, and clears when the key goes', async () => {
    const mac = (await h1.ns.ipJson<{ address: string }[]>('link', 'show', 'flannel.1'))[0]!.address;
    // A reservation written after h1's lease, so the newer of the two: every node programs h1's and refuses this one.
    const key = '/coreos.com/network/subnets/10.244.230.0-24';
    const value = JSON.stringify({ PublicIP: '198.18.0.99', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
    await cluster.writeKeys([{ key, value }]);
    const firing = async () => (await prom.alerts()).filter((a) => a.state === 'firing');
    let alerts: PromAlert[] = [];
    await eventually(async () => (alerts = await firing()).some((a) => a.labels.alertname === 'WeftLeaseRefusedDuplicate'), 30_000, 'WeftLeaseRefusedDuplicate firing');
    // A refused valid lease is no malformed one: weft_leases_skipped_total does not count it.
    expect(alerts.filter((a) => a.labels.alertname === 'WeftMalformedLease')).to.deep.equal([]);
    expect(alerts.map((a) => a.labels)).to.deep.equal([{ alertname: 'WeftLeaseRefusedDuplicate', job: 'weft', reason: 'duplicate-mac', severity: 'critical' }]);
    expect(alerts[0]!.annotations.summary).to.equal('1 lease(s) of job weft refused on every node: duplicate-mac');
    expect(alerts[0]!.annotations.runbook).to.contain('weftctl leases').and.to.contain('weftctl doctor');
    const refusing = (await prom.query('weft_leases_refused{reason="duplicate-mac"} == 1')).result.map((r) => r.metric.instance).sort();
    expect(refusing).to.deep.equal(cluster.nodes.map(instanceOf).sort());
    expect((await prom.query('weft_own_lease_conflict == 1')).result).to.deep.equal([]);

    await cluster.writeKeys([{ key, value: null }]);
    await eventually(async () => (await firing()).length === 0, 30_000, 'WeftLeaseRefusedDuplicate cleared after the key went');
  });
});
