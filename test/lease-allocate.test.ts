import { expect } from 'chai';
import { CANDIDATE_WINDOW, chooseSubnet } from '../lease/allocate.js';
import { parseNetworkConfig } from '../lease/config.js';
import { subnetKey } from '../lease/keyspace.js';
import { Subnet } from '../common/subnet.js';
import type { Lease } from '../lease/types.js';
import { NO_IPV4_SUBNET } from '../lease/keyspace.js';
import * as ds from './harness/dual-stack-leases.js';

const P = '/coreos.com/network';
const config = parseNetworkConfig('{"Network":"10.244.0.0/16"}');
const ME = '198.18.0.1';

function lease(cidr: string, publicIP: string, etcdLeaseId = '5'): Lease {
  const subnet = Subnet.parse(cidr);
  return { subnet, ipv6Subnet: null, attrs: { PublicIP: publicIP, PublicIPv6: null, BackendType: 'vxlan' }, key: subnetKey(P, subnet), etcdLeaseId, modRevision: '1', createRevision: '1' };
}

describe('subnet allocation (pure)', () => {
  it('reuses this node\'s lease found by PublicIP', () => {
    const own = lease('10.244.9.0/24', ME);
    const r = chooseSubnet({ config, leases: [lease('10.244.1.0/24', '198.18.0.2'), own], publicIP: ME });
    expect(r.choice).to.deep.equal({ kind: 'reuse', lease: own });
  });
  it('prefers a reservation over a leased key of the same node', () => {
    const leased = lease('10.244.9.0/24', ME);
    const reserved = lease('10.244.7.0/24', ME, '0');
    const r = chooseSubnet({ config, leases: [leased, reserved], publicIP: ME });
    expect(r.choice).to.deep.include({ kind: 'reuse', lease: reserved });
  });
  it('honours a reservation outside [SubnetMin, SubnetMax] but inside Network', () => {
    const reserved = lease('10.244.0.0/24', ME, '0');
    expect(chooseSubnet({ config, leases: [reserved], publicIP: ME }).choice).to.deep.include({ kind: 'reuse' });
  });
  it('reports own leased keys that no longer fit the config, and allocates anew', () => {
    const small = parseNetworkConfig('{"Network":"10.244.0.0/16","SubnetMin":"10.244.100.0"}');
    const old = lease('10.244.9.0/24', ME);
    const r = chooseSubnet({ config: small, leases: [old], publicIP: ME, randomInt: () => 0 });
    expect(r.incompatible).to.deep.equal([old]);
    expect(r.choice).to.deep.equal({ kind: 'new', subnet: Subnet.parse('10.244.100.0/24') });
  });
  it('takes the previous subnet from the subnet file when free', () => {
    const r = chooseSubnet({ config, leases: [], publicIP: ME, previousSubnet: Subnet.parse('10.244.42.0/24') });
    expect(r.choice).to.deep.equal({ kind: 'previous', subnet: Subnet.parse('10.244.42.0/24') });
  });
  it('does not take the previous subnet when another node holds it, or when it is out of range', () => {
    const taken = chooseSubnet({ config, leases: [lease('10.244.42.0/24', '198.18.0.9')], publicIP: ME, previousSubnet: Subnet.parse('10.244.42.0/24'), randomInt: () => 0 });
    expect(taken.choice.kind).to.equal('new');
    const outside = chooseSubnet({ config, leases: [], publicIP: ME, previousSubnet: Subnet.parse('10.244.0.0/24'), randomInt: () => 0 });
    expect(outside.choice).to.deep.equal({ kind: 'new', subnet: Subnet.parse('10.244.1.0/24') });
  });
  it('picks among the first 100 free subnets, skipping taken ones and the first subnet', () => {
    const leases = [lease('10.244.1.0/24', 'x'), lease('10.244.3.0/24', '198.18.0.3')].map((l, i) => ({ ...l, attrs: { ...l.attrs, PublicIP: `198.18.0.${i + 10}` } }));
    const seen: number[] = [];
    const first = chooseSubnet({ config, leases, publicIP: ME, randomInt: (n) => (seen.push(n), 0) });
    expect(seen).to.deep.equal([CANDIDATE_WINDOW]);
    expect(first.choice).to.deep.equal({ kind: 'new', subnet: Subnet.parse('10.244.2.0/24') });
    const last = chooseSubnet({ config, leases, publicIP: ME, randomInt: (n) => n - 1 });
    expect(last.choice).to.deep.equal({ kind: 'new', subnet: Subnet.parse('10.244.102.0/24') });
  });
  it('never hands out a subnet overlapping a key of another length (a malformed key still occupies its range)', () => {
    const wide = lease('10.244.0.0/22', 'odd'); // covers 10.244.1-3.0/24
    const r = chooseSubnet({ config, leases: [wide], publicIP: ME, previousSubnet: Subnet.parse('10.244.2.0/24'), randomInt: () => 0 });
    expect(r.choice).to.deep.equal({ kind: 'new', subnet: Subnet.parse('10.244.4.0/24') });
  });

  it('throws RANGE_EXHAUSTED when every subnet is taken', () => {
    const tiny = parseNetworkConfig('{"Network":"10.9.0.0/28","SubnetLen":30}');
    const leases = ['10.9.0.4/30', '10.9.0.8/30', '10.9.0.12/30'].map((c, i) => lease(c, `198.18.0.${20 + i}`));
    expect(() => chooseSubnet({ config: tiny, leases, publicIP: ME })).to.throw(/no free subnet: all \/30 subnets from 10.9.0.4 to 10.9.0.12/).with.property('code', 'WEFT_ERR_RANGE_EXHAUSTED');
  });

  it("never picks a new subnet that collides with the node's own networks; a range that all collides is an invalid config", () => {
    const collides = (s: Subnet) => (s.value < Subnet.parse('10.244.5.0/24').value ? 'route 10.244.0.0/21 dev #2 proto 2' : null);
    const r = chooseSubnet({ config, leases: [], publicIP: ME, randomInt: () => 0, collides });
    expect(r.choice).to.deep.equal({ kind: 'new', subnet: Subnet.parse('10.244.5.0/24') });
    // The previous subnet and the node's own lease are exempt: its own bridge lies in them.
    const prev = chooseSubnet({ config, leases: [], publicIP: ME, previousSubnet: Subnet.parse('10.244.3.0/24'), collides });
    expect(prev.choice).to.deep.equal({ kind: 'previous', subnet: Subnet.parse('10.244.3.0/24') });
    const everything = () => 'route 10.244.0.0/16 dev #2 proto 2';
    expect(() => chooseSubnet({ config, leases: [], publicIP: ME, collides: everything }))
      .to.throw(/every \/24 subnet from 10.244.1.0 to 10.244.255.0 of 10.244.0.0\/16 collides with this node's own networks \(10.244.1.0\/24 collides with this node's route 10.244.0.0\/16/)
      .with.property('code', 'WEFT_ERR_CONFIG_INVALID');
    // Some taken, the rest colliding: exhausted, and the message says why.
    const half = (s: Subnet) => (s.value % 512n === 0n ? 'address 10.244.0.9/32 on link #1' : null);
    const taken: Lease[] = [];
    for (let s = Subnet.parse('10.244.1.0/24'); s.value <= Subnet.parse('10.244.255.0/24').value; s = s.next()) if (half(s) === null) taken.push(lease(s.toString(), '198.18.0.9'));
    expect(() => chooseSubnet({ config, leases: taken, publicIP: ME, collides: half })).to.throw(/no free subnet: .* or collide with this node's own networks/).with.property('code', 'WEFT_ERR_RANGE_EXHAUSTED');
  });
});

describe('subnet allocation: dual-stack and IPv6-only (pure)', () => {
  const { dual, v6only, v4only } = ds;
  const ME6 = '2001:2::1';
  function lease6(v4: string | null, v6: string | null, publicIP: string, publicIPv6: string | null, etcdLeaseId = '5'): Lease {
    const subnet = v4 ? Subnet.parse(v4) : NO_IPV4_SUBNET;
    const ipv6Subnet = v6 ? Subnet.parse(v6) : null;
    return { subnet, ipv6Subnet, attrs: { PublicIP: publicIP, PublicIPv6: publicIPv6, BackendType: 'vxlan' }, key: subnetKey(P, subnet, ipv6Subnet), etcdLeaseId, modRevision: '1', createRevision: '1' };
  }
  it('dual-stack: a free subnet of each family, chosen among the first 100 free of each', () => {
    const taken = [lease6('10.244.1.0/24', 'fd00:10:244:1::/64', '198.18.0.2', '2001:2::2'), lease6('10.244.2.0/24', 'fd00:10:244:2::/64', '198.18.0.3', '2001:2::3')];
    const seen: number[] = [];
    const r = chooseSubnet({ config: dual, leases: taken, publicIP: ME, publicIPv6: ME6, randomInt: (n) => (seen.push(n), 0) });
    expect(r.choice).to.deep.equal({ kind: 'new', subnet: Subnet.parse('10.244.3.0/24'), ipv6Subnet: Subnet.parse('fd00:10:244:3::/64') });
    expect(seen).to.deep.equal([CANDIDATE_WINDOW, CANDIDATE_WINDOW]);
    const last = chooseSubnet({ config: dual, leases: taken, publicIP: ME, publicIPv6: ME6, randomInt: (n) => n - 1 });
    expect(last.choice).to.deep.equal({ kind: 'new', subnet: Subnet.parse('10.244.102.0/24'), ipv6Subnet: Subnet.parse('fd00:10:244:66::/64') });
  });
  it('IPv6-only: the IPv6 subnet with the empty IPv4 part; the own lease found by PublicIPv6', () => {
    const other = lease6(null, 'fd00:10:244:1::/64', '0.0.0.0', '2001:2::2');
    const r = chooseSubnet({ config: v6only, leases: [other], publicIP: '0.0.0.0', publicIPv6: ME6, randomInt: () => 0 });
    expect(r.choice).to.deep.equal({ kind: 'new', subnet: NO_IPV4_SUBNET, ipv6Subnet: Subnet.parse('fd00:10:244:2::/64') });
    const own = lease6(null, 'fd00:10:244:9::/64', '0.0.0.0', ME6);
    // flannel's unset PublicIP is every IPv6-only node's: it identifies nobody.
    expect(chooseSubnet({ config: v6only, leases: [other, own], publicIP: '0.0.0.0', publicIPv6: ME6 }).choice).to.deep.equal({ kind: 'reuse', lease: own });
  });
  it('reuses a dual-stack lease by PublicIP after a restart, and a dual-stack reservation first', () => {
    const own = lease6('10.244.9.0/24', 'fd00:10:244:9::/64', ME, ME6);
    expect(chooseSubnet({ config: dual, leases: [own], publicIP: ME, publicIPv6: ME6 }).choice).to.deep.equal({ kind: 'reuse', lease: own });
    const reserved = lease6('10.244.0.0/24', 'fd00:10:244::/64', ME, ME6, '0');
    expect(chooseSubnet({ config: dual, leases: [own, reserved], publicIP: ME, publicIPv6: ME6 }).choice).to.deep.equal({ kind: 'reuse', lease: reserved });
  });
  it('enabling IPv6: the own IPv4-only lease is replaced, its IPv4 subnet kept and an IPv6 one added', () => {
    const own = lease6('10.244.9.0/24', null, ME, null);
    const r = chooseSubnet({ config: dual, leases: [own], publicIP: ME, publicIPv6: ME6, randomInt: () => 0 });
    expect(r.incompatible).to.deep.equal([own]);
    expect(r.choice).to.deep.equal({ kind: 'new', subnet: Subnet.parse('10.244.9.0/24'), ipv6Subnet: Subnet.parse('fd00:10:244:1::/64') });
  });
  it('disabling IPv6: the own dual-stack lease is replaced by an IPv4-only key of the same subnet (flannel replaces it too)', () => {
    const own = lease6('10.244.9.0/24', 'fd00:10:244:9::/64', ME, ME6);
    const r = chooseSubnet({ config: v4only, leases: [own], publicIP: ME, randomInt: () => 0 });
    expect(r.incompatible).to.deep.equal([own]);
    expect(r.choice).to.deep.equal({ kind: 'previous', subnet: Subnet.parse('10.244.9.0/24') });
  });
  it('takes both previous subnets back when free; a taken one is drawn anew', () => {
    const prev = { previousSubnet: Subnet.parse('10.244.42.0/24'), previousIPv6Subnet: Subnet.parse('fd00:10:244:42::/64') };
    expect(chooseSubnet({ config: dual, leases: [], publicIP: ME, publicIPv6: ME6, ...prev }).choice).to.deep.equal({ kind: 'previous', subnet: prev.previousSubnet, ipv6Subnet: prev.previousIPv6Subnet });
    const holder = lease6('10.244.7.0/24', 'fd00:10:244:42::/64', '198.18.0.9', '2001:2::9');
    const r = chooseSubnet({ config: dual, leases: [holder], publicIP: ME, publicIPv6: ME6, randomInt: () => 0, ...prev });
    expect(r.choice).to.deep.equal({ kind: 'new', subnet: prev.previousSubnet, ipv6Subnet: Subnet.parse('fd00:10:244:1::/64') });
  });
  it('an exhausted IPv6 range says so, naming the IPv6 range', () => {
    const tiny = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00::/124"}');
    const leases = [1, 2, 3].map((i) => lease6(`10.244.${i}.0/24`, `fd00::${(i * 4).toString(16)}/126`, `198.18.0.${i + 1}`, `2001:2::${i + 1}`));
    expect(() => chooseSubnet({ config: tiny, leases, publicIP: ME, publicIPv6: ME6 })).to.throw(/no free IPv6 subnet: all \/126 subnets from fd00::4 to fd00::c of fd00::\/124/).with.property('code', 'WEFT_ERR_RANGE_EXHAUSTED');
  });
});
