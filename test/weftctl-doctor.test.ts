/** weftctl doctor's verdicts (weftctl/doctor.ts), each check on its own inputs. */
import { expect } from 'chai';
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
import type { LeaseRow } from '../weftctl/leases.js';

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
    const base = { devices: [{ name: 'flannel.1', mtu: 1450, overhead: 50 }], underlay: { name: 'eth0', mtu: 1500 }, weftdMtu: 1450, peerMtus: [] };
    expect(checkMtu(base).verdict).to.equal('ok');
    expect(checkMtu({ ...base, underlay: { name: 'eth0', mtu: 1400 } })).to.include({ verdict: 'fail' });
    const small = checkMtu({ ...base, devices: [{ name: 'flannel.1', mtu: 1400, overhead: 50 }] });
    expect(small.verdict).to.equal('fail');
    expect(small.fix).to.contain('mtu 1450');
    expect(checkMtu({ ...base, peerMtus: [{ peer: '10.244.3.0/24', mtu: 8950 }] }).verdict).to.equal('warn');
    expect(checkMtu({ ...base, devices: [] }).verdict).to.equal('fail');
  });

  it('MTU with two devices: FLANNEL_MTU must fit each, and each must fit the underlay less its own overhead', () => {
    const v4 = { name: 'flannel.1', mtu: 1450, overhead: 50 };
    const v6 = { name: 'flannel-v6.1', mtu: 1430, overhead: 70 };
    const dual = { devices: [v4, v6], underlay: { name: 'eth0', mtu: 1500 }, weftdMtu: 1430, peerMtus: [{ peer: '10.244.3.0/24', mtu: 1430 }] };
    const fine = checkMtu(dual);
    expect(fine.verdict, 'the IPv4 device above FLANNEL_MTU is expected').to.equal('ok');
    expect(fine.detail).to.equal('flannel.1 mtu 1450 = underlay 1500 - 50, flannel-v6.1 mtu 1430 = underlay 1500 - 70; containers get 1430, same as 1 probed peers');
    const v6TooBig = checkMtu({ ...dual, devices: [v4, { ...v6, mtu: 1450 }] });
    expect(v6TooBig).to.include({ verdict: 'fail', detail: 'flannel-v6.1 mtu 1450 > underlay eth0 mtu 1500 - 70: encapsulated full-size packets are dropped' });
    expect(v6TooBig.fix).to.contain('ip link set dev flannel-v6.1 mtu 1430');
    const v4BelowContainers = checkMtu({ ...dual, devices: [{ ...v4, mtu: 1400 }, v6] });
    expect(v4BelowContainers).to.include({ verdict: 'fail', detail: 'flannel.1 mtu 1400 but containers were given FLANNEL_MTU=1430: their full-size packets do not fit' });
    expect(v4BelowContainers.fix).to.contain('ip link set dev flannel.1 mtu 1450');
    const gone = checkMtu({ ...dual, devices: [v4, { ...v6, mtu: null }] });
    expect(gone).to.include({ verdict: 'fail', detail: 'the overlay device flannel-v6.1 does not exist' });
    expect(checkMtu({ ...dual, peerMtus: [{ peer: 'fd00:10:244:3::/64', mtu: 1450 }] }).detail).to.contain('here 1430');
  });

  it('ip_forward: IPv6 forwarding too when the network carries IPv6, and only it in an IPv6-only network', () => {
    expect(checkIpForward('1', '1')).to.include({ verdict: 'ok', detail: 'net.ipv4.ip_forward=1, net.ipv6.conf.all.forwarding=1' });
    const v6off = checkIpForward('1', '0');
    expect(v6off).to.include({ verdict: 'fail', detail: 'net.ipv6.conf.all.forwarding=0: this node does not route between containers and the overlay' });
    expect(v6off.fix).to.equal('sysctl -w net.ipv6.conf.all.forwarding=1 (weftd sets it at start; something reset it since)');
    expect(checkIpForward('0', '0').fix).to.equal('sysctl -w net.ipv4.ip_forward=1; sysctl -w net.ipv6.conf.all.forwarding=1 (weftd sets it at start; something reset it since)');
    expect(checkIpForward(undefined, '1')).to.include({ verdict: 'ok', detail: 'net.ipv6.conf.all.forwarding=1' });
    expect(checkIpForward(undefined, null).verdict).to.equal('skip');
    expect(checkIpForward('1', null)).to.include({ verdict: 'ok', detail: 'net.ipv4.ip_forward=1, net.ipv6.conf.all.forwarding=?' });
    expect(checkIpForward('0').detail, 'IPv4 alone, as before').to.equal('net.ipv4.ip_forward=0: this node does not route between containers and the overlay');
  });

  it('VXLAN port names an IPv6 peer by its IPv6 subnet and public IPv6', () => {
    const blocked: PeerHealth = {
      family: 6, subnet: 'fd00:10:244:3::/64', publicIP: '2001:2::3', underlay: { ok: true, rttMs: 0.3 }, overlay: { ok: false, rttMs: null }, mtu: 1430, ...diagnose(true, false), checkedAt: '',
    };
    expect(checkVxlanPort([blocked], 8472, '')).to.include({ verdict: 'fail', detail: 'underlay OK but overlay blocked to fd00:10:244:3::/64 (2001:2::3)' });
  });

  it('gc_thresh3 only matters before Linux 4.20', () => {
    expect(checkGcThresh(1024, 5000, '6.1.0-18-amd64').verdict).to.equal('ok');
    expect(checkGcThresh(1024, 5000, '4.19.0').verdict).to.equal('fail');
    expect(checkGcThresh(1024, 900, '4.19.0').verdict).to.equal('warn');
    expect(checkGcThresh(1024, 100, '4.19.0').verdict).to.equal('ok');
  });

  it('VXLAN port from peer health', () => {
    const health = (subnet: string, u: boolean, o: boolean): PeerHealth => ({
      family: 4, subnet, publicIP: '198.18.0.2', underlay: { ok: u, rttMs: u ? 0.3 : null }, overlay: { ok: o, rttMs: o ? 0.4 : null }, mtu: 1450, ...diagnose(u, o), checkedAt: '',
    });
    expect(checkVxlanPort([health('10.244.3.0/24', true, true)], 8472, '').verdict).to.equal('ok');
    const blocked = checkVxlanPort([health('10.244.3.0/24', true, false)], 8472, '');
    expect(blocked).to.include({ verdict: 'fail', detail: 'underlay OK but overlay blocked to 10.244.3.0/24 (198.18.0.2)' });
    expect(checkVxlanPort([health('10.244.3.0/24', false, false)], 8472, '').verdict).to.equal('warn');
    expect(checkVxlanPort(null, 8472, 'weftd not reachable').detail).to.equal('cannot check: weftd not reachable');
  });

  it('VXLAN port: the fix for a silent peer follows the probe method (ICMP is answered by flanneld nodes too)', () => {
    const silent: PeerHealth = {
      family: 4, subnet: '10.244.3.0/24', publicIP: '198.18.0.2', underlay: { ok: false, rttMs: null }, overlay: { ok: false, rttMs: null }, mtu: null, ...diagnose(false, false), checkedAt: '',
    };
    expect(checkVxlanPort([silent], 8472, '', 'icmp').fix).to.equal('check that the node is up and that ICMP echo is allowed between the nodes (public IPs and VXLAN devices)');
    expect(checkVxlanPort([silent], 8472, '', 'udp').fix).to.contain('flanneld has no probe responder; weftd with CAP_NET_RAW probes with ICMP');
    expect(checkVxlanPort([silent], 8472, '', null).fix, 'a weftd that does not say: as before').to.contain('flanneld has no probe responder');
  });

  it('duplicate public IPs across leases', () => {
    const row = (subnet: string, publicIP: string) => ({ subnet, publicIP }) as LeaseRow;
    expect(checkDuplicatePublicIPs([row('10.244.1.0/24', '198.18.0.1'), row('10.244.2.0/24', '198.18.0.2')], '').verdict).to.equal('ok');
    const dup = checkDuplicatePublicIPs([row('10.244.1.0/24', '198.18.0.1'), row('10.244.2.0/24', '198.18.0.1')], '');
    expect(dup.verdict).to.equal('fail');
    expect(dup.detail).to.contain('198.18.0.1 holds 10.244.1.0/24, 10.244.2.0/24');
  });

  it('duplicate public IPv6 addresses; IPv6-only leases (no PublicIP) are no duplicates of each other', () => {
    const row = (subnet: string, publicIP: string | null, publicIPv6: string | null) => ({ subnet, publicIP, publicIPv6 }) as LeaseRow;
    expect(checkDuplicatePublicIPs([row('fd00:10:244:1::/64', null, '2001:2::1'), row('fd00:10:244:2::/64', null, '2001:2::2')], '').verdict).to.equal('ok');
    const dup = checkDuplicatePublicIPs([row('10.244.1.0/24', '198.18.0.1', '2001:2::1'), row('10.244.2.0/24', '198.18.0.2', '2001:2::1')], '');
    expect(dup).to.include({ verdict: 'fail' });
    expect(dup.detail).to.contain('2001:2::1 holds 10.244.1.0/24, 10.244.2.0/24');
  });

  it('clock skew from an uncertainty interval', () => {
    expect(checkClock({ min: -0.4, max: 0.7 }, '').verdict).to.equal('ok');
    expect(checkClock({ min: 4, max: 5.1 }, '')).to.include({ verdict: 'warn' });
    expect(checkClock({ min: -100, max: -98.9 }, '').detail).to.contain('ahead of');
    expect(checkClock(null, 'no Date header').verdict).to.equal('skip');
  });
});
