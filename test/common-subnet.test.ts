import { expect } from 'chai';
import { isIPv4 } from 'node:net';
import { Subnet, canonicalIPv4, ipValue, parseIPv4 } from '../common/subnet.js';

describe('Subnet', () => {
  it('parses IPv4 CIDRs, masking host bits like net.ParseCIDR', () => {
    expect(String(Subnet.parse('10.244.3.0/24'))).to.equal('10.244.3.0/24');
    expect(String(Subnet.parse('10.244.7.9/16'))).to.equal('10.244.0.0/16');
    expect(String(Subnet.parse('255.255.255.255/32'))).to.equal('255.255.255.255/32');
    expect(String(Subnet.parse('10.1.2.3/0'))).to.equal('0.0.0.0/0');
    expect(String(Subnet.parse('192.168.255.255/1'))).to.equal('128.0.0.0/1');
    expect(Subnet.parse('10.244.3.0/24').value).to.equal(0x0af40300n);
  });

  it('rejects what is not an IPv4 or IPv6 CIDR', () => {
    for (const bad of ['10.244.3.0', '10.244.3.0/33', '10.244.3.0/024', '010.244.3.0/24', '10.244.3/24', '10.244.3.0/24/1', '1.2.3.4%eth0/8', 'x/8']) {
      expect(() => Subnet.parse(bad), bad).to.throw(/invalid CIDR/);
    }
  });

  it('contains(address) of an IPv4 network agrees with the numeric definition at every prefix length', () => {
    let seed = 11;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    const quad = (v: number): string => [24, 16, 8, 0].map((shift) => Math.floor(v / 2 ** shift) % 256).join('.');
    for (let i = 0; i < 600; i++) {
      const net = Subnet.parse(`${quad((random() * 2 + (random() % 2)) % 2 ** 32)}/${i % 33}`);
      // Half the addresses inside the network (its base plus an offset within it), half anywhere.
      const inside = Number(net.value) + (random() % Number(net.size));
      const address = i % 2 === 0 ? inside : (random() * 2 + (random() % 2)) % 2 ** 32;
      const v = BigInt(address);
      expect(net.contains(quad(address)), `${quad(address)} in ${net}`).to.equal(v >= net.value && v <= net.lastValue);
    }
    const net = Subnet.parse('10.0.0.0/8');
    for (const notIPv4 of ['fc00::1', '10.0.0.1/32', '10.0.0.01', '', 'ten']) expect(net.contains(notIPv4), notIPv4).to.equal(false);
    expect(Subnet.parse('0.0.0.0/0').contains('255.255.255.255')).to.equal(true);
  });

  it('parseCanonical refuses host bits instead of masking them', () => {
    expect(String(Subnet.parseCanonical('10.244.3.0/24'))).to.equal('10.244.3.0/24');
    expect(() => Subnet.parseCanonical('10.244.3.7/24')).to.throw(/host bits set; network is 10.244.3.0\/24/);
  });

  it('the IPv4 path agrees with the general one (numeric build) at every prefix length', () => {
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31);
    for (let i = 0; i < 500; i++) {
      const value = (random() * 2 + (random() % 2)) % 2 ** 32;
      const ip = [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
      const len = i % 33;
      expect(ipValue(ip)!.value).to.equal(BigInt(value));
      const general = Subnet.of(4, ipValue(ip)!.value, len);
      const parsed = Subnet.parse(`${ip}/${len}`);
      expect(parsed.equals(general), `${ip}/${len}`).to.equal(true);
      expect(parsed.ip).to.equal(general.ip);
      expect(parsed.value).to.equal(general.value);
    }
  });

  it('parseIPv4, the one IPv4 reader, accepts exactly what Node\'s isIPv4 does', () => {
    const cases = ['0.0.0.0', '255.255.255.255', '10.244.3.0', '1.2.3.04', '010.0.0.1', '256.1.1.1', '1.2.3', '1.2.3.4.5', '1..2.3',
      '.1.2.3', '1.2.3.', '', ' 1.2.3.4', '1.2.3.4 ', '1.2.3.1000', '1.2.3.-1', '1.2.3.a', '0x1.2.3.4', '::1', '1.2.3.4/8', '100.200.250.199'];
    for (const ip of cases) {
      expect(parseIPv4(ip) !== null, ip).to.equal(isIPv4(ip));
      expect(canonicalIPv4(ip), ip).to.equal(isIPv4(ip) ? ip : null);
    }
  });
});
