import { expect } from 'chai';
import { isIPv4 } from 'node:net';
import { Address6 } from 'ip-address';
import { Subnet, canonicalIPv4, canonicalIPv6, ipValue, parseIPv4, parseIPv6 } from '../common/subnet.js';

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

describe('IPv6 text (parseIPv6, formatIPv6): the same values and RFC 5952 strings as ip-address', () => {
  /** A random address with runs of zero groups in random places, as text in a random allowed spelling. */
  function randomText(rand: () => number): string {
    const groups = Array.from({ length: 8 }, () => (rand() < 0.45 ? 0 : Math.floor(rand() * 0x10000)));
    const r = rand();
    if (r < 0.3) return groups.map((g) => g.toString(16).padStart(rand() < 0.5 ? 4 : 1, '0')).join(':');
    if (r < 0.4) return groups.map((g) => g.toString(16).toUpperCase()).join(':');
    if (r < 0.5) return `${groups.slice(0, 6).map((g) => g.toString(16)).join(':')}:${groups[6]! >> 8}.${groups[6]! & 255}.${groups[7]! >> 8}.${groups[7]! & 255}`;
    // Compress one run of zero groups (any run, not only the longest): a valid spelling either way.
    const runs: Array<[number, number]> = [];
    for (let i = 0; i < 8; i++) if (groups[i] === 0) runs.push([i, i + 1 + Math.floor(rand() * 3)]);
    const run = runs[Math.floor(rand() * runs.length)];
    if (!run) return groups.map((g) => g.toString(16)).join(':');
    const [a, b] = [run[0], Math.min(8, run[1])];
    if (groups.slice(a, b).some((g) => g !== 0)) return groups.map((g) => g.toString(16)).join(':');
    return `${groups.slice(0, a).map((g) => g.toString(16)).join(':')}::${groups.slice(b).map((g) => g.toString(16)).join(':')}`;
  }

  it('agrees on 5000 random spellings, and on the edge cases', () => {
    let seed = 21;
    const rand = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const texts = [...Array.from({ length: 5000 }, () => randomText(rand)), '::', '::1', '1::', 'fd00:10:244::', '::ffff:198.18.0.1', '2001:db8:0:0:1:0:0:1', '2001:0:0:1::1', 'FE80::A'];
    for (const text of texts) {
      const want = new Address6(text);
      expect(canonicalIPv6(text), text).to.equal(want.correctForm());
      expect(ipValue(text)?.value, text).to.equal(want.bigInt());
      const len = 1 + Math.floor(rand() * 128);
      const cidr = Subnet.parse(`${text}/${len}`);
      const start = new Address6(`${text}/${len}`).startAddress();
      expect(cidr.toString(), `${text}/${len}`).to.equal(`${start.correctForm()}/${len}`);
    }
  });

  it('refuses what is no IPv6 address', () => {
    for (const bad of ['', ':', ':::', '1:::2', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::', 'g::', '::1.2.3', '1.2.3.4::', '::1.2.3.4:5', 'fe80::1%eth0', ':1::', '1::2:', '1:2:3:4:5:6:7:8::']) {
      expect(parseIPv6(bad), bad).to.equal(null);
      expect(canonicalIPv6(bad), bad).to.equal(null);
    }
    expect(() => Subnet.parse('fd00::/129')).to.throw(/invalid CIDR/);
  });
});
