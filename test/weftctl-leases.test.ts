/** weftctl's lease rows and reservations (weftctl/leases.ts). */
import { expect } from 'chai';
import { parseNetworkConfig } from '../lease/config.js';
import { describeLease, reservableSubnet, reservationValue } from '../weftctl/leases.js';

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
