import { expect } from 'chai';
import type { NodeStatus } from '../daemon/status.js';
import { statusReport } from '../weftctl/status.js';

/** A ready node's /status, connected to etcd. */
const healthy: NodeStatus = {
  ready: true,
  notReadyReason: '',
  lease: { subnet: '10.244.1.0/24', publicIP: '198.18.0.1', etcdLeaseId: '7', ttlRemainingSeconds: 86000 },
  leaseState: 'held',
  network: '10.244.0.0/16',
  backend: { type: 'vxlan', device: 'flannel.1', mtu: 1450, vxlanPort: 8472 },
  underlay: { name: 'eth0', mtu: 1500, publicIP: '198.18.0.1' },
  peers: 2,
  entriesProgrammed: 6,
  lastReconcile: null,
  etcd: 'connected',
  etcdUnreachable: null,
  iptables: null,
  probes: null,
};
const kernel = { device: null, ipForward: '1' };
const etcdRow = (s: NodeStatus) => statusReport('http://127.0.0.1:8471', s, kernel).text.split('\n').find((l) => l.startsWith('etcd'));

describe('weftctl status', () => {
  it('says how long etcd has been out of reach, and that the kernel keeps the peers meanwhile', () => {
    expect(etcdRow(healthy)).to.equal('etcd       connected');
    const cut = { ...healthy, etcd: 'unreachable', etcdUnreachable: { since: '2026-01-01T00:00:00.000Z', seconds: 75.3 } };
    expect(etcdRow(cut)).to.equal('etcd       UNREACHABLE for 1m15s (since 2026-01-01T00:00:00.000Z); the kernel keeps every peer entry');
    // A node still ready: an outage alone does not fail the report while the lease is valid.
    expect(statusReport('http://127.0.0.1:8471', cut, kernel).exitCode).to.equal(0);
  });
});
