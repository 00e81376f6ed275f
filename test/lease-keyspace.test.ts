/** etcd keys (lease/keyspace.ts): flannel's layout, encoded and parsed. */
import { expect } from 'chai';
import { parseSubnetKey, subnetKey, subnetsPrefix, configKey } from '../lease/keyspace.js';
import { Subnet } from '../common/subnet.js';
import { NO_IPV4_SUBNET, describeSubnets, slotOf } from '../lease/keyspace.js';

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

describe('keyspace: dual-stack and IPv6-only keys', () => {
  const v6 = Subnet.parse('fd00:10:244:3::/64');
  it("encodes both families in flannel's form, and IPv6-only with flannel's empty IPv4 part", () => {
    expect(subnetKey(P, Subnet.parse('10.244.3.0/24'), v6)).to.equal(`${P}/subnets/10.244.3.0-24&fd00:10:244:3::-64`);
    expect(subnetKey(P, null, v6)).to.equal(`${P}/subnets/0.0.0.0-0&fd00:10:244:3::-64`);
    expect(subnetKey(P, NO_IPV4_SUBNET, v6)).to.equal(`${P}/subnets/0.0.0.0-0&fd00:10:244:3::-64`);
    expect(() => subnetKey(P, null, null)).to.throw(/needs an IPv4 or an IPv6 subnet/);
  });
  it('parses the IPv6-only form round-trip and refuses look-alikes', () => {
    const parsed = parseSubnetKey(P, `${P}/subnets/0.0.0.0-0&fd00:10:244:3::-64`)!;
    expect(parsed.subnet.toString()).to.equal('0.0.0.0/0');
    expect(parsed.ipv6Subnet!.toString()).to.equal('fd00:10:244:3::/64');
    expect(slotOf(parsed)).to.equal('fd00:10:244:3::/64');
    expect(describeSubnets(parsed)).to.equal('fd00:10:244:3::/64');
    expect(() => parseSubnetKey(P, `${P}/subnets/0.0.0.0-0`)).to.throw(/without an IPv6 part/);
    expect(() => parseSubnetKey(P, `${P}/subnets/10.244.3.0-24&fd00:10:244:3::1-64`)).to.throw(/host bits set/);
    expect(parseSubnetKey(P, `${P}/subnets/10.244.3.0-24&FD00:10:244:3::-64`)).to.equal(null);
    expect(() => parseSubnetKey(P, `${P}/subnets/10.244.3.0-24&fd00:0:0:0::-64`)).to.throw(/not a canonical/);
    expect(() => parseSubnetKey(P, `${P}/subnets/0.0.0.0-0&::-0`)).to.throw(/not a subnet/);
  });
  it('names a dual-stack lease by its IPv4 subnet, as the peer maps key it', () => {
    const parsed = parseSubnetKey(P, `${P}/subnets/10.244.3.0-24&fd00:10:244:3::-64`)!;
    expect(slotOf(parsed)).to.equal('10.244.3.0/24');
    expect(describeSubnets(parsed)).to.equal('10.244.3.0/24 + fd00:10:244:3::/64');
  });
});
