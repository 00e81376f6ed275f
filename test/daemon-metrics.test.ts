/** weftd's metrics (daemon/metrics.ts): the peer-health series and their `family` label. */
import { expect } from 'chai';
import { WeftMetrics, type MetricSources } from '../daemon/metrics.js';
import { diagnose } from '../daemon/probe.js';
import type { PeerHealth } from '../daemon/status.js';

function health(family: 4 | 6, subnet: string, publicIP: string, underlay: boolean, overlay: boolean): PeerHealth {
  return {
    family,
    subnet,
    publicIP,
    underlay: { ok: underlay, rttMs: underlay ? 0.5 : null },
    overlay: { ok: overlay, rttMs: overlay ? 0.25 : null },
    mtu: null,
    ...diagnose(underlay, overlay),
    checkedAt: '',
  };
}

function sources(peerHealth: MetricSources['peerHealth']): MetricSources {
  return {
    leaseTtlRemaining: () => null,
    leaseState: () => 'held',
    leaseLosses: () => 0,
    peers: () => 0,
    watchResyncs: () => 0,
    leasesSkipped: () => 0,
    etcdConnected: () => true,
    entriesProgrammed: () => 0,
    iptablesRepairs: () => 0,
    kernelDriftEvents: () => 0,
    ready: () => true,
    refusedLeases: () => [],
    ownLeaseConflict: () => false,
    peerHealth,
  };
}

/** The exposition lines of `name` (without HELP and TYPE). */
async function series(metrics: WeftMetrics, name: string): Promise<string[]> {
  const text = await metrics.registry.metrics();
  return text.split('\n').filter((l) => l.startsWith(`${name}{`) || l.startsWith(`${name} `));
}

describe('weftd metrics: peer health per family', () => {
  const v4 = health(4, '10.244.3.0/24', '198.18.0.3', true, true);
  const v6 = health(6, 'fd00:10:244:3::/64', '2001:2::3', true, false);

  it('labels each peer series with its family, the family\'s subnet as peer and its public address', async () => {
    const m = new WeftMetrics(sources(() => ({ lastRound: [v4, v6], all: [v4, v6], families: [4, 6] })));
    expect(await series(m, 'weft_peer_reachable')).to.deep.equal([
      'weft_peer_reachable{peer="10.244.3.0/24",public_ip="198.18.0.3",path="underlay",family="4"} 1',
      'weft_peer_reachable{peer="10.244.3.0/24",public_ip="198.18.0.3",path="overlay",family="4"} 1',
      'weft_peer_reachable{peer="fd00:10:244:3::/64",public_ip="2001:2::3",path="underlay",family="6"} 1',
      'weft_peer_reachable{peer="fd00:10:244:3::/64",public_ip="2001:2::3",path="overlay",family="6"} 0',
    ]);
    expect(await series(m, 'weft_peer_rtt_seconds')).to.deep.equal([
      'weft_peer_rtt_seconds{peer="10.244.3.0/24",public_ip="198.18.0.3",path="underlay",family="4"} 0.0005',
      'weft_peer_rtt_seconds{peer="10.244.3.0/24",public_ip="198.18.0.3",path="overlay",family="4"} 0.00025',
      'weft_peer_rtt_seconds{peer="fd00:10:244:3::/64",public_ip="2001:2::3",path="underlay",family="6"} 0.0005',
    ]);
  });

  it('counts unanswered peers per path and family, with a 0 series for each family probed', async () => {
    const m = new WeftMetrics(sources(() => ({ lastRound: [], all: [v4, v6], families: [4, 6] })));
    expect(await series(m, 'weft_peers_unreachable')).to.deep.equal([
      'weft_peers_unreachable{path="underlay",family="4"} 0',
      'weft_peers_unreachable{path="overlay",family="4"} 0',
      'weft_peers_unreachable{path="underlay",family="6"} 0',
      'weft_peers_unreachable{path="overlay",family="6"} 1',
    ]);
  });

  it('an IPv4 network keeps its series as before, with family="4"; probing off still says 0 unreachable', async () => {
    const m = new WeftMetrics(sources(() => ({ lastRound: [v4], all: [v4], families: [4] })));
    expect(await series(m, 'weft_peers_unreachable')).to.deep.equal(['weft_peers_unreachable{path="underlay",family="4"} 0', 'weft_peers_unreachable{path="overlay",family="4"} 0']);
    const off = new WeftMetrics(sources(() => null));
    expect(await series(off, 'weft_peers_unreachable')).to.deep.equal(['weft_peers_unreachable{path="underlay",family="4"} 0', 'weft_peers_unreachable{path="overlay",family="4"} 0']);
    expect(await series(off, 'weft_peer_reachable')).to.deep.equal([]);
  });

  it('an IPv6-only network has no IPv4 series', async () => {
    const m = new WeftMetrics(sources(() => ({ lastRound: [v6], all: [v6], families: [6] })));
    expect((await series(m, 'weft_peers_unreachable')).every((l) => l.includes('family="6"'))).to.equal(true);
    expect((await series(m, 'weft_peer_reachable')).every((l) => l.includes('family="6"'))).to.equal(true);
  });
});
