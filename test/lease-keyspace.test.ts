/** etcd keys (lease/keyspace.ts): flannel's layout, encoded and parsed. */
import { expect } from 'chai';
import { parseSubnetKey, subnetKey, subnetsPrefix, configKey } from '../lease/keyspace.js';
import { Subnet } from '../common/subnet.js';

const P = '/coreos.com/network';

describe('keyspace', () => {
  it('joins like path.Join and ends the watch prefix with a slash', () => {
    expect(configKey('/coreos.com/network/')).to.equal('/coreos.com/network/config');
    expect(configKey('coreos.com//network')).to.equal('/coreos.com/network/config');
    expect(subnetsPrefix(P)).to.equal('/coreos.com/network/subnets/');
  });
  it('encodes v4 and dual-stack keys like flannel', () => {
    expect(subnetKey(P, Subnet.parse('10.244.3.0/24'))).to.equal('/coreos.com/network/subnets/10.244.3.0-24');
    expect(subnetKey(P, Subnet.parse('10.5.52.0/24'), Subnet.parse('fc00:0:0:34::/64'))).to.equal('/coreos.com/network/subnets/10.5.52.0-24&fc00:0:0:34::-64');
  });
  it('parses keys round-trip and rejects look-alikes', () => {
    expect(parseSubnetKey(P, `${P}/subnets/10.244.3.0-24`)!.subnet.toString()).to.equal('10.244.3.0/24');
    expect(parseSubnetKey(P, `${P}/subnets/10.5.52.0-24&fc00:0:0:34::-64`)!.ipv6Subnet!.toString()).to.equal('fc00:0:0:34::/64');
    expect(parseSubnetKey(P, `${P}/subnetsX/10.244.3.0-24`)).to.equal(null);
    expect(parseSubnetKey(P, `${P}/subnets/x10.244.3.0-24`)).to.equal(null);
    expect(parseSubnetKey(P, `${P}/subnets/10.244.3.0-240`)).to.equal(null);
    expect(() => parseSubnetKey(P, `${P}/subnets/10.244.3.7-24`)).to.throw(/host bits set/);
    expect(() => parseSubnetKey(P, `${P}/subnets/10.244.300.0-24`)).to.throw(/invalid CIDR/);
  });
});
