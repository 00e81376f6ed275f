import { expect } from 'chai';
import type { NodeStatus, PeerHealth } from '../daemon/status.js';
import { deviceFamily, probeMethodText, statusDevices, statusReport, type KernelView } from '../weftctl/status.js';

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

  describe('dual-stack and IPv6-only', () => {
    const lease = { subnet: '10.244.3.0/24', ipv6Subnet: 'fd00:10:244:3::/64', publicIP: '198.18.0.3', publicIPv6: '2001:2::3', etcdLeaseId: '7', ttlRemainingSeconds: 3600 };
    const backend = { type: 'vxlan', device: 'flannel.1', devices: ['flannel.1', 'flannel-v6.1'], mtu: 1430, vxlanPort: 8472 };
    const dev = (name: string, mtu: number) => ({ name, mtu, up: true, neighbours: 2, fdb: 2 });
    const row = (text: string, label: string) => text.split('\n').filter((l) => l.startsWith(`${label} `));

    it('shows both subnets and public addresses, both networks, a row per device and IPv6 forwarding', () => {
      const s: NodeStatus = { ...node(null), lease, ipv6Network: 'fd00:10:244::/48', backend };
      const k: KernelView = { device: dev('flannel.1', 1450), devices: { 'flannel.1': dev('flannel.1', 1450), 'flannel-v6.1': dev('flannel-v6.1', 1430) }, ipForward: '1', ipv6Forwarding: '1' };
      const text = statusReport('u', s, k, NOW).text;
      expect(row(text, 'lease')).to.deep.equal(['lease      10.244.3.0/24 + fd00:10:244:3::/64, public IP 198.18.0.3, public IPv6 2001:2::3, TTL 1h00m00s (held)']);
      expect(row(text, 'network')).to.deep.equal(['network    10.244.0.0/16 + fd00:10:244::/48']);
      expect(row(text, 'device')).to.deep.equal([
        'device     flannel.1 mtu 1430; kernel: mtu 1450, up, 2 neighbours, 2 fdb entries',
        'device v6  flannel-v6.1 mtu 1430; kernel: mtu 1430, up, 2 neighbours, 2 fdb entries',
      ]);
      expect(row(text, 'ip_forward')).to.deep.equal(['ip_forward 1, IPv6 forwarding 1']);
      const gone = statusReport('u', s, { ...k, devices: { 'flannel.1': dev('flannel.1', 1450), 'flannel-v6.1': null } }, NOW).text;
      expect(row(gone, 'device')[1]).to.equal('device v6  flannel-v6.1 mtu 1430; kernel: MISSING');
    });

    it('an IPv6-only node shows no 0.0.0.0/0 placeholder subnet or unset 0.0.0.0 public IP', () => {
      const v6only = { ...lease, subnet: '0.0.0.0/0', publicIP: '0.0.0.0', etcdLeaseId: '0' };
      const s: NodeStatus = { ...node(null), lease: v6only, network: null, ipv6Network: 'fd00:10:244::/48', backend: { ...backend, device: 'flannel-v6.1', devices: ['flannel-v6.1'] } };
      const text = statusReport('u', s, { device: dev('flannel-v6.1', 1430), devices: { 'flannel-v6.1': dev('flannel-v6.1', 1430) }, ipForward: '0', ipv6Forwarding: '1' }, NOW).text;
      expect(row(text, 'lease')).to.deep.equal(['lease      fd00:10:244:3::/64, public IPv6 2001:2::3, reservation (held)']);
      expect(row(text, 'network')).to.deep.equal(['network    fd00:10:244::/48']);
      expect(row(text, 'device')).to.deep.equal(['device     flannel-v6.1 mtu 1430; kernel: mtu 1430, up, 2 neighbours, 2 fdb entries']);
    });

    it('an IPv4 node reads as before', () => {
      const s: NodeStatus = { ...node(null), lease: { ...lease, ipv6Subnet: null, publicIPv6: null }, backend: { ...backend, mtu: 1450, devices: ['flannel.1'] } };
      const text = statusReport('u', s, { device: dev('flannel.1', 1450), ipForward: '1' }, NOW).text;
      expect(row(text, 'lease')).to.deep.equal(['lease      10.244.3.0/24, public IP 198.18.0.3, TTL 1h00m00s (held)']);
      expect(row(text, 'device')).to.deep.equal(['device     flannel.1 mtu 1450; kernel: mtu 1450, up, 2 neighbours, 2 fdb entries']);
      expect(row(text, 'ip_forward')).to.deep.equal(['ip_forward 1']);
    });

    it('lists one peer-health row per family, each with that family\'s subnet and address', () => {
      const v6: PeerHealth = { ...peer, family: 6, subnet: 'fd00:10:244:3::/64', publicIP: '2001:2::3' };
      const round = { at: '2026-01-01T00:00:08Z', probed: 1, peers: 1, sampled: false };
      const text = statusReport('u', node({ method: 'icmp', fallbackReason: null, round, peers: [peer, v6] }), kernel, NOW).text;
      expect(text).to.match(/^10\.244\.3\.0\/24\s+198\.18\.0\.3\s+ok 0\.31 ms/m);
      expect(text).to.match(/^fd00:10:244:3::\/64\s+2001:2::3\s+ok 0\.31 ms\s+ok 0\.42 ms\s+-\s+reachable over underlay and overlay$/m);
    });

    it('knows the devices and their families from /status, a weftd before IPv6 included', () => {
      expect(deviceFamily('flannel-v6.1')).to.equal(6);
      expect(deviceFamily('flannel.1')).to.equal(4);
      expect(deviceFamily('weft0')).to.equal(4);
      expect(statusDevices({ ...node(null), backend })).to.deep.equal(['flannel.1', 'flannel-v6.1']);
      const old = { type: 'vxlan', device: 'flannel.1', mtu: 1450, vxlanPort: 8472 } as unknown as NodeStatus['backend'];
      expect(statusDevices({ ...node(null), backend: old })).to.deep.equal(['flannel.1']);
      expect(statusDevices({ ...node(null), backend: { ...backend, type: 'host-gw', device: null, devices: [] } })).to.deep.equal([]);
    });
  });
});
