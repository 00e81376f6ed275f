/** weftctl's lease rows and reservations (weftctl/leases.ts). */
import { expect } from 'chai';
import { parseNetworkConfig } from '../lease/config.js';
import { describeLease, reservableSubnet, reservationValue } from '../weftctl/leases.js';
import { leasesReport } from '../weftctl/leases.js';
import type { LeaseAttrs } from '../lease/types.js';
import * as ds from './harness/dual-stack-leases.js';

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

describe('weftctl leases: dual-stack and IPv6-only', () => {
  const { P, dual, v6only, v4only, dualValue, v6Value } = ds;
  it('shows the IPv6 subnet and PublicIPv6; an IPv4 table stays as it was', () => {
    const row = describeLease(P, ds.kv('10.244.3.0-24&fd00:10:244:3::-64', dualValue(3), '5', '77'), dual, new Map([['77', 60]]));
    expect(row).to.include({ subnet: '10.244.3.0/24', ipv6Subnet: 'fd00:10:244:3::/64', publicIP: '198.18.0.3', publicIPv6: '2001:2::3', malformed: null });
    const only = describeLease(P, ds.kv('0.0.0.0-0&fd00:10:244:4::-64', v6Value(4), '5', '77'), v6only, new Map([['77', 60]]));
    expect(only).to.include({ subnet: 'fd00:10:244:4::/64', ipv6Subnet: 'fd00:10:244:4::/64', publicIP: null, publicIPv6: '2001:2::4', malformed: null });
    const text = leasesReport([row, only], null).text;
    expect(text.split('\n')[0]).to.match(/^SUBNET\s+IPV6 SUBNET\s+PUBLIC IP\s+PUBLIC IPV6\s+VTEP MAC/);
    expect(text).to.match(/10.244.3.0\/24\s+fd00:10:244:3::\/64\s+198.18.0.3\s+2001:2::3/);
    expect(text).to.match(/\n-\s+fd00:10:244:4::\/64\s+-\s+2001:2::4/);
    const v4row = describeLease(P, ds.kv('10.244.3.0-24', JSON.stringify({ PublicIP: '198.18.0.3' })), v4only, new Map());
    expect(leasesReport([v4row], null).text.split('\n')[0]).to.match(/^SUBNET\s+PUBLIC IP\s+VTEP MAC/);
  });

  it('reserve: a dual-stack or IPv6-only reservation in flannel JSON, checked like weftd checks it', () => {
    const attrs = JSON.parse(reservationValue('198.18.0.5', '02:aa:00:00:00:01', dual, { publicIPv6: '2001:2::5', vtepMacV6: '02:AB:00:00:00:01' })) as LeaseAttrs;
    expect(attrs).to.deep.equal({ PublicIP: '198.18.0.5', PublicIPv6: '2001:2::5', BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '02:aa:00:00:00:01' }, BackendV6Data: { VNI: 1, VtepMAC: '02:ab:00:00:00:01' } });
    expect(reservationValue(undefined, undefined, v6only, { publicIPv6: '2001:2::5' })).to.equal('{"PublicIP":"0.0.0.0","PublicIPv6":"2001:2::5"}');
    expect(() => reservationValue('198.18.0.5', undefined, dual, { publicIPv6: 'fe80::1%eth0' })).to.throw(/--public-ipv6: "fe80::1%eth0" is not an IPv6 address/);
    expect(() => reservationValue('198.18.0.5', undefined, dual, { publicIPv6: 'ff02::1' })).to.throw(/not a usable unicast/);
    expect(reservableSubnet('fd00:10:244:9::-64', dual, 6).toString()).to.equal('fd00:10:244:9::/64');
    expect(() => reservableSubnet('fd00:10:245:9::/64', dual, 6)).to.throw(/not a \/64 inside IPv6Network fd00:10:244::\/48/);
  });
});
