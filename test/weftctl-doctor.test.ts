/** weftctl's pure parts: lease rows, reservations, the diff, doctor verdicts, tables. */
import { expect } from 'chai';
import { parseNetworkConfig } from '../lease/config.js';
import type { Entry, Owned } from '../backend/reconciler.js';
import { entryKey } from '../backend/reconciler.js';
import { Subnet } from '../common/subnet.js';
import {
  checkClock,
  checkDuplicatePublicIPs,
  checkForward,
  checkGcThresh,
  checkIpForward,
  checkMtu,
  checkVxlanPort,
  forwardPolicy,
} from '../weftctl/doctor.js';
import { diagnose } from '../daemon/probe.js';
import type { PeerHealth } from '../daemon/status.js';
import { diffEntries } from '../weftctl/diff.js';
import { formatSeconds, table } from '../weftctl/format.js';
import { describeLease, reservableSubnet, reservationValue, type LeaseRow } from '../weftctl/leases.js';

const PREFIX = '/coreos.com/network';
const config = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","VNI":1}}');
const kv = (name: string, value: string, lease = '0') => ({ key: `${PREFIX}/subnets/${name}`, value, lease, modRevision: '5' });

describe('weftctl leases', () => {
  it('describes a leased key with its TTL and a reservation as such', () => {
    const value = '{"PublicIP":"198.18.0.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"3a:fd:8c:79:b0:44"}}';
    const leased = describeLease(PREFIX, kv('10.244.3.0-24', value, '7587'), config, new Map([['7587', 3600]]));
    expect(leased).to.include({ subnet: '10.244.3.0/24', publicIP: '198.18.0.1', vtepMac: '3a:fd:8c:79:b0:44', backend: 'vxlan', ttlSeconds: 3600, reservation: false, malformed: null });
    const reserved = describeLease(PREFIX, kv('10.244.4.0-24', '{"PublicIP":"198.18.0.9"}'), config, new Map());
    expect(reserved).to.include({ reservation: true, ttlSeconds: null, publicIP: '198.18.0.9', backend: null });
  });

  it('shows malformed keys and values with the reason instead of failing', () => {
    expect(describeLease(PREFIX, kv('10.244.3.0-24', '{nope'), config, new Map()).malformed).to.match(/not valid JSON/);
    expect(describeLease(PREFIX, kv('10.244.3.7-24', '{"PublicIP":"198.18.0.1"}'), config, new Map())).to.include({ subnet: '10.244.3.7/24' });
    expect(describeLease(PREFIX, kv('10.244.3.7-24', '{"PublicIP":"198.18.0.1"}'), config, new Map()).malformed).to.be.a('string');
    expect(describeLease(PREFIX, kv('10.9.3.0-24', '{"PublicIP":"198.18.0.1"}'), config, new Map()).malformed).to.contain('outside Network');
    expect(describeLease(PREFIX, kv('10.244.3.0-24', '{"PublicIP":"198.18.0.1"}'), null, new Map()).malformed).to.equal(null);
  });

  it('writes flannel\'s reservation JSON and refuses what weftd would skip', () => {
    expect(reservationValue('198.18.0.5', undefined, config)).to.equal('{"PublicIP":"198.18.0.5","PublicIPv6":null}');
    expect(JSON.parse(reservationValue('198.18.0.5', '02:AA:00:00:00:01', config))).to.deep.equal({
      PublicIP: '198.18.0.5', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '02:aa:00:00:00:01' },
    });
    expect(() => reservationValue('198.18.0.5', '01:00:00:00:00:01', config)).to.throw(/not a unicast MAC/);
    expect(() => reservationValue('127.0.0.1', undefined, config)).to.throw(/usable unicast/);
    expect(reservableSubnet('10.244.9.0-24', config).toString()).to.equal('10.244.9.0/24');
    expect(() => reservableSubnet('10.244.9.1/24', config)).to.throw(/host bits/);
    expect(() => reservableSubnet('10.245.9.0/24', config)).to.throw(/inside Network/);
  });
});

describe('weftctl diff', () => {
  const neigh = (ip: string, mac: string): Entry => ({ kind: 'neigh', ifindex: 5, ip, mac });
  const route = (dst: string): Entry => ({ kind: 'route', dst, gw: dst.split('/')[0]!, oif: 5, onlink: true });
  const dev = () => 'flannel.1';

  it('sorts entries into missing, wrong and stale, and nothing when in sync', () => {
    const wanted: Owned[] = [
      { peer: '10.244.3.0/24', entry: neigh('10.244.3.0', '02:00:00:00:00:03') },
      { peer: '10.244.3.0/24', entry: route('10.244.3.0/24') },
      { peer: '10.244.4.0/24', entry: neigh('10.244.4.0', '02:00:00:00:00:04') },
    ];
    const desired = new Map(wanted.map((o) => [entryKey(o.entry), o]));
    const held = [neigh('10.244.3.0', '02:00:00:00:00:03'), neigh('10.244.4.0', '02:00:00:00:00:ff'), route('10.244.9.0/24')];
    const lines = diffEntries(desired, new Map(held.map((e) => [entryKey(e), e])), dev);
    expect(lines).to.deep.equal([
      { status: 'missing', peer: '10.244.3.0/24', kind: 'route', want: '10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink', held: null },
      { status: 'wrong', peer: '10.244.4.0/24', kind: 'neigh', want: '10.244.4.0 dev flannel.1 lladdr 02:00:00:00:00:04 PERMANENT', held: '10.244.4.0 dev flannel.1 lladdr 02:00:00:00:00:ff PERMANENT' },
      { status: 'stale', peer: null, kind: 'route', want: null, held: '10.244.9.0/24 via 10.244.9.0 dev flannel.1 onlink' },
    ]);
    const inSync = new Map(wanted.map((o) => [entryKey(o.entry), o.entry]));
    expect(diffEntries(desired, inSync, dev)).to.deep.equal([]);
  });
});

describe('weftctl doctor checks', () => {
  const network = Subnet.parse('10.244.0.0/16');
  const withRules = [
    '*filter',
    ':INPUT ACCEPT [0:0]',
    ':FORWARD DROP [0:0]',
    ':FLANNEL-FWD - [0:0]',
    '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
    '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
    '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
    'COMMIT',
  ].join('\n');

  it('ip_forward', () => {
    expect(checkIpForward('1').verdict).to.equal('ok');
    expect(checkIpForward('0')).to.include({ verdict: 'fail' });
    expect(checkIpForward(null).verdict).to.equal('skip');
  });

  it('FORWARD policy DROP is fine with weft\'s accept rules and fails without them', () => {
    expect(forwardPolicy(withRules)).to.equal('DROP');
    expect(checkForward(withRules, network).verdict).to.equal('ok');
    const bare = '*filter\n:FORWARD DROP [0:0]\nCOMMIT\n';
    const c = checkForward(bare, network);
    expect(c.verdict).to.equal('fail');
    expect(c.fix).to.contain('--iptables-forward-rules=true');
    expect(checkForward('*filter\n:FORWARD ACCEPT [0:0]\nCOMMIT\n', network).verdict).to.equal('ok');
    // Rules for another Network do not count.
    expect(checkForward(withRules, Subnet.parse('10.1.0.0/16')).verdict).to.equal('fail');
    expect(checkForward(null, network, 'iptables-save: not found').detail).to.equal('cannot check: iptables-save: not found');
  });

  it('MTU: against the underlay, FLANNEL_MTU and the peers', () => {
    const base = { device: { name: 'flannel.1', mtu: 1450 }, underlay: { name: 'eth0', mtu: 1500 }, weftdMtu: 1450, overhead: 50, peerMtus: [] };
    expect(checkMtu(base).verdict).to.equal('ok');
    expect(checkMtu({ ...base, underlay: { name: 'eth0', mtu: 1400 } })).to.include({ verdict: 'fail' });
    const small = checkMtu({ ...base, device: { name: 'flannel.1', mtu: 1400 } });
    expect(small.verdict).to.equal('fail');
    expect(small.fix).to.contain('mtu 1450');
    expect(checkMtu({ ...base, peerMtus: [{ peer: '10.244.3.0/24', mtu: 8950 }] }).verdict).to.equal('warn');
    expect(checkMtu({ ...base, device: null }).verdict).to.equal('fail');
  });

  it('gc_thresh3 only matters before Linux 4.20', () => {
    expect(checkGcThresh(1024, 5000, '6.1.0-18-amd64').verdict).to.equal('ok');
    expect(checkGcThresh(1024, 5000, '4.19.0').verdict).to.equal('fail');
    expect(checkGcThresh(1024, 900, '4.19.0').verdict).to.equal('warn');
    expect(checkGcThresh(1024, 100, '4.19.0').verdict).to.equal('ok');
  });

  it('VXLAN port from peer health', () => {
    const health = (subnet: string, u: boolean, o: boolean): PeerHealth => ({
      subnet, publicIP: '198.18.0.2', underlay: { ok: u, rttMs: u ? 0.3 : null }, overlay: { ok: o, rttMs: o ? 0.4 : null }, mtu: 1450, ...diagnose(u, o), checkedAt: '',
    });
    expect(checkVxlanPort([health('10.244.3.0/24', true, true)], 8472, '').verdict).to.equal('ok');
    const blocked = checkVxlanPort([health('10.244.3.0/24', true, false)], 8472, '');
    expect(blocked).to.include({ verdict: 'fail', detail: 'underlay OK but overlay blocked to 10.244.3.0/24 (198.18.0.2)' });
    expect(checkVxlanPort([health('10.244.3.0/24', false, false)], 8472, '').verdict).to.equal('warn');
    expect(checkVxlanPort(null, 8472, 'weftd not reachable').detail).to.equal('cannot check: weftd not reachable');
  });

  it('duplicate public IPs across leases', () => {
    const row = (subnet: string, publicIP: string) => ({ subnet, publicIP }) as LeaseRow;
    expect(checkDuplicatePublicIPs([row('10.244.1.0/24', '198.18.0.1'), row('10.244.2.0/24', '198.18.0.2')], '').verdict).to.equal('ok');
    const dup = checkDuplicatePublicIPs([row('10.244.1.0/24', '198.18.0.1'), row('10.244.2.0/24', '198.18.0.1')], '');
    expect(dup.verdict).to.equal('fail');
    expect(dup.detail).to.contain('198.18.0.1 holds 10.244.1.0/24, 10.244.2.0/24');
  });

  it('clock skew from an uncertainty interval', () => {
    expect(checkClock({ min: -0.4, max: 0.7 }, '').verdict).to.equal('ok');
    expect(checkClock({ min: 4, max: 5.1 }, '')).to.include({ verdict: 'warn' });
    expect(checkClock({ min: -100, max: -98.9 }, '').detail).to.contain('ahead of');
    expect(checkClock(null, 'no Date header').verdict).to.equal('skip');
  });
});

describe('weftctl output', () => {
  it('aligns table columns and formats TTLs', () => {
    expect(table(['A', 'BB'], [['xyz', '1'], ['q', '22']])).to.equal('A    BB\nxyz  1\nq    22');
    expect([formatSeconds(45), formatSeconds(125), formatSeconds(86_399)]).to.deep.equal(['45s', '2m05s', '23h59m59s']);
  });
});
