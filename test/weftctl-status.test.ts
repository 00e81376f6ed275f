import { expect } from 'chai';
import type { NodeStatus, PeerHealth } from '../daemon/status.js';
import { probeMethodText, statusReport, type KernelView } from '../weftctl/status.js';

const NOW = Date.parse('2026-01-01T00:00:10Z');
const peer: PeerHealth = {
  family: 4,
  subnet: '10.244.3.0/24',
  publicIP: '198.18.0.3',
  underlay: { ok: true, rttMs: 0.31 },
  overlay: { ok: true, rttMs: 0.42 },
  mtu: null,
  verdict: 'ok',
  diagnosis: 'reachable over underlay and overlay',
  checkedAt: '2026-01-01T00:00:09Z',
};

function node(probes: NodeStatus['probes']): NodeStatus {
  return {
    ready: true,
    notReadyReason: '',
    lease: null,
    leaseState: 'held',
    network: '10.244.0.0/16',
    ipv6Network: null,
    backend: null,
    underlay: null,
    peers: 1,
    entriesProgrammed: 3,
    lastReconcile: null,
    etcd: 'connected',
    etcdUnreachable: null,
    iptables: null,
    probes,
    refused: [],
    ownLeaseConflict: null,
  };
}
const kernel: KernelView = { device: null, ipForward: '1' };

describe('weftctl status', () => {
  it('names the probe method, and why not ICMP', () => {
    expect(probeMethodText({ method: 'icmp', fallbackReason: null })).to.equal('ICMP echo');
    expect(probeMethodText({ method: 'udp', fallbackReason: 'raw sockets not allowed (no CAP_NET_RAW)' })).to.equal('UDP echo, answered by weft only: raw sockets not allowed (no CAP_NET_RAW)');
    expect(probeMethodText({ method: null, fallbackReason: null })).to.equal(null);
    expect(probeMethodText({}), 'a weftd from before the method was reported').to.equal(null);
  });

  it('heads the peer-health table with the method and the last round', () => {
    const round = { at: '2026-01-01T00:00:08Z', probed: 1, peers: 1, sampled: false };
    const { text, exitCode } = statusReport('http://127.0.0.1:8471', node({ method: 'icmp', fallbackReason: null, round, peers: [peer] }), kernel, NOW);
    expect(text).to.match(/^peer health \(ICMP echo; last round 2s ago: 1 of 1 peers\)$/m);
    expect(text).to.match(/^10\.244\.3\.0\/24\s+198\.18\.0\.3\s+ok 0\.31 ms\s+ok 0\.42 ms\s+-\s+reachable over underlay and overlay$/m);
    expect(exitCode).to.equal(0);
  });

  it('says the method before any peer is probed, and stays as before without one', () => {
    const udp = statusReport('u', node({ method: 'udp', fallbackReason: 'raw sockets not allowed (no CAP_NET_RAW)', round: null, peers: [] }), kernel, NOW).text;
    expect(udp).to.contain('peer health (UDP echo, answered by weft only: raw sockets not allowed (no CAP_NET_RAW)): no peer probed yet');
    const unsaid = statusReport('u', node({ method: null, fallbackReason: null, round: null, peers: [] }), kernel, NOW).text;
    expect(unsaid).to.contain('\npeer health: no peer probed yet');
    expect(statusReport('u', node(null), kernel, NOW).text).to.contain('peer health: probing off (--probe-interval 0)');
  });

  it('says how long etcd has been out of reach, and that the kernel keeps the peers meanwhile', () => {
    const etcdRow = (s: NodeStatus) => statusReport('u', s, kernel, NOW).text.split('\n').find((l) => l.startsWith('etcd'));
    expect(etcdRow(node(null))).to.equal('etcd       connected');
    const cut = { ...node(null), etcd: 'unreachable', etcdUnreachable: { since: '2026-01-01T00:00:00.000Z', seconds: 75.3 } };
    expect(etcdRow(cut)).to.equal('etcd       UNREACHABLE for 1m15s (since 2026-01-01T00:00:00.000Z); the kernel keeps every peer entry');
    // A node still ready: an outage alone does not fail the report while the lease is valid.
    expect(statusReport('u', cut, kernel, NOW).exitCode).to.equal(0);
  });
});
