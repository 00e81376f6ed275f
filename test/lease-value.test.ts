/** Lease values from etcd, untrusted input (lease/lease-value.ts): parsed, serialised, validated against the network config. */
import { expect } from 'chai';
import { parseNetworkConfig } from '../lease/config.js';
import { parseLeaseAttrs, serializeLeaseAttrs, validateLease } from '../lease/lease-value.js';
import type { Lease } from '../lease/types.js';
import { WeftError } from '../common/errors.js';
import { slotOf } from '../lease/keyspace.js';
import * as ds from './harness/dual-stack-leases.js';

const P = '/coreos.com/network';
const config = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
const good = '{"PublicIP":"198.18.0.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:2a:00:00:00:02"}}';
const kv = (key: string, value = good) => ({ key: `${P}/subnets/${key}`, value, lease: '7', modRevision: '3' });

describe('lease values (untrusted input)', () => {
  it('parses flannel JSON case-insensitively and serialises it back in flannel order', () => {
    const attrs = parseLeaseAttrs('{"publicip":"198.18.0.2","backendtype":"vxlan","backenddata":{"vni":1,"vtepmac":"0E:2A:00:00:00:02"}}');
    expect(serializeLeaseAttrs(attrs)).to.equal(good);
  });
  it('keeps other backends data as read', () => {
    const attrs = parseLeaseAttrs('{"PublicIP":"198.18.0.3","BackendType":"wireguard","BackendData":{"PublicKey":"abc=","Port":51820}}');
    expect(attrs.BackendData).to.deep.equal({ PublicKey: 'abc=', Port: 51820 });
  });
  it('accepts a udp lease without BackendType', () => {
    expect(parseLeaseAttrs('{"PublicIP":"198.18.0.3"}').BackendType).to.equal('');
  });

  const bad: [string, string, RegExp][] = [
    ['bad JSON', '{"PublicIP":', /not valid JSON/],
    ['array', '[]', /must be a JSON object/],
    ['no PublicIP', '{"BackendType":"vxlan"}', /PublicIP must be an IPv4 address string/],
    ['bad PublicIP', '{"PublicIP":"198.18.0.300"}', /is not an IPv4 address/],
    ['shell metacharacters in PublicIP', '{"PublicIP":"1.2.3.4; rm -rf /"}', /is not an IPv4 address/],
    ['unspecified PublicIP', '{"PublicIP":"0.0.0.0"}', /not a usable unicast/],
    ['multicast PublicIP', '{"PublicIP":"239.1.1.1"}', /not a usable unicast/],
    ['loopback PublicIP', '{"PublicIP":"127.0.0.1"}', /not a usable unicast/],
    ['bad PublicIPv6', '{"PublicIP":"198.18.0.2","PublicIPv6":"fc00::1%eth0"}', /PublicIPv6 .* is not an IPv6 address/],
    ['vxlan without data', '{"PublicIP":"198.18.0.2","BackendType":"vxlan"}', /without BackendData/],
    ['bad MAC', '{"PublicIP":"198.18.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"zz:2a:00:00:00:02"}}', /VtepMAC .* is not a MAC/],
    ['multicast MAC', '{"PublicIP":"198.18.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"01:00:5e:00:00:01"}}', /not a unicast MAC/],
    ['MAC with injection', '{"PublicIP":"198.18.0.2","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0e:2a:00:00:00:02 dev lo"}}', /is not a MAC/],
    ['VNI out of range', '{"PublicIP":"198.18.0.2","BackendType":"vxlan","BackendData":{"VNI":99999999,"VtepMAC":"0e:2a:00:00:00:02"}}', /VNI must be an integer/],
    ['BackendType with spaces', '{"PublicIP":"198.18.0.2","BackendType":"vx lan"}', /not a backend name/],
    ['huge value', JSON.stringify({ PublicIP: '198.18.0.2', pad: 'x'.repeat(5000) }), /larger than 4096 bytes/],
  ];
  for (const [name, value, pattern] of bad) {
    it(`rejects: ${name}`, () => expect(() => parseLeaseAttrs(value)).to.throw(pattern));
  }

  it('validates keys against the network config and names the key', () => {
    expect(validateLease(P, kv('10.244.3.0-24'), config)!.attrs.BackendData!.VtepMAC).to.equal('0e:2a:00:00:00:02');
    expect(validateLease(P, kv('10.244.3.0-24'), config)!.etcdLeaseId).to.equal('7');
    expect(validateLease(P, { ...kv('10.244.3.0-24'), lease: '0' }, config)!.etcdLeaseId).to.equal('0');
    expect(validateLease(P, kv('somethingelse'), config)).to.equal(null);
    expect(() => validateLease(P, kv('10.99.3.0-24'), config)).to.throw(/malformed lease ".*10.99.3.0-24": subnet 10.99.3.0\/24 is outside Network/);
    expect(() => validateLease(P, kv('10.244.3.0-25'), config)).to.throw(/prefix length 25, SubnetLen is 24/);
    expect(() => validateLease(P, kv('10.244.3.0-24', '{'), config)).to.throw(/10.244.3.0-24.*not valid JSON/).with.property('code', 'WEFT_ERR_LEASE_MALFORMED');
  });

  it('fuzz: thousands of generated values either parse to safe attrs or throw, never crash', () => {
    let seed = 42;
    const rand = (n: number) => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n);
    const pieces = ['{', '}', '"PublicIP"', '"BackendData"', '"VtepMAC"', '"VNI"', ':', ',', '"198.18.0.2"', '"0e:2a:00:00:00:02"', '1', 'null', '[', ']', '"', '\\', ';', '$(x)', '"vxlan"', '"BackendType"', '1e999', '-0', '"\u0000"'];
    const key = '10.244.3.0-24';
    let accepted = 0;
    for (let i = 0; i < 5000; i++) {
      // Mutations of a good value: truncation at every offset, splices, random token soup.
      let text: string;
      if (i < good.length) text = good.slice(0, i);
      else if (i % 2 === 0) text = good.slice(0, rand(good.length)) + pieces[rand(pieces.length)] + good.slice(rand(good.length));
      else text = Array.from({ length: 1 + rand(12) }, () => pieces[rand(pieces.length)]).join('');
      // Through validateLease, the entry point the lease manager and the watcher use: its code is what they skip by.
      let lease: Lease | null;
      try {
        lease = validateLease(P, kv(key, text), config);
      } catch (err) {
        expect(err, text).to.be.instanceOf(WeftError).with.property('code', 'WEFT_ERR_LEASE_MALFORMED');
        expect((err as Error).message, text).to.include(key);
        // validateLease words whatever the value's parser threw as malformed, a crash included: what the parser threw must be a verdict on the input.
        expect(crashOf(() => parseLeaseAttrs(text)), text).to.equal(null);
        continue;
      }
      accepted++;
      expect(lease, text).to.not.equal(null);
      const a = lease!.attrs;
      expect(a.PublicIP).to.match(/^\d{1,3}(\.\d{1,3}){3}$/);
      if (a.BackendType === 'vxlan') expect(a.BackendData!.VtepMAC).to.match(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    }
    expect(accepted).to.be.greaterThan(0);
  });
});

/**
 * What `reject` threw when it is a fault of the code rather than a verdict on
 * the input (a TypeError, RangeError, ReferenceError or SyntaxError escaping),
 * or null. Fails when `reject` does not throw at all.
 */
function crashOf(reject: () => unknown): Error | null {
  try {
    reject();
  } catch (err) {
    const crashed = [TypeError, RangeError, ReferenceError, SyntaxError].some((kind) => err instanceof kind);
    return crashed ? (err as Error) : null;
  }
  throw new Error('expected a rejection, got none');
}

describe('lease values with IPv6 (untrusted input)', () => {
  const { dual, v6only, v4only, mac6, dualValue, v6Value } = ds;
  const kv6 = ds.kv;
  const bad: [string, string, RegExp][] = [
    ['loopback PublicIPv6', '{"PublicIP":"198.18.0.2","PublicIPv6":"::1"}', /PublicIPv6 ::1 is not a usable unicast/],
    ['unspecified PublicIPv6', '{"PublicIP":"198.18.0.2","PublicIPv6":"::"}', /PublicIPv6 :: is not a usable unicast/],
    ['multicast PublicIPv6', '{"PublicIP":"198.18.0.2","PublicIPv6":"ff02::1"}', /not a usable unicast/],
    ['IPv4-mapped PublicIPv6', '{"PublicIP":"198.18.0.2","PublicIPv6":"::ffff:198.18.0.2"}', /not a usable unicast/],
    ['PublicIPv6 with a prefix', '{"PublicIP":"198.18.0.2","PublicIPv6":"2001:2::1/64"}', /is not an IPv6 address/],
    ['PublicIPv6 with shell metacharacters', '{"PublicIP":"198.18.0.2","PublicIPv6":"2001:2::1;reboot"}', /is not an IPv6 address/],
    ['PublicIPv6 a number', '{"PublicIP":"198.18.0.2","PublicIPv6":7}', /is not an IPv6 address/],
    ['unset PublicIP without a PublicIPv6', '{"PublicIP":"0.0.0.0","PublicIPv6":null}', /PublicIP 0.0.0.0 is not a usable unicast/],
    ['bad BackendV6Data MAC', dualValue(2, { BackendV6Data: { VNI: 1, VtepMAC: '01:00:5e:00:00:01' } }), /BackendV6Data.VtepMAC .* is not a unicast MAC/],
    ['BackendV6Data VNI out of range', dualValue(2, { BackendV6Data: { VNI: -1, VtepMAC: mac6(2) } }), /BackendV6Data.VNI must be an integer/],
    ['vxlan with neither BackendData', '{"PublicIP":"0.0.0.0","PublicIPv6":"2001:2::2","BackendType":"vxlan"}', /vxlan lease without BackendData/],
  ];
  for (const [name, value, pattern] of bad) {
    it(`rejects: ${name}`, () => expect(() => parseLeaseAttrs(value)).to.throw(pattern).with.property('code', 'WEFT_ERR_LEASE_MALFORMED'));
  }
  it('reads PublicIPv6 in canonical form, and an IPv6-only value with the unset PublicIP and BackendV6Data alone', () => {
    expect(parseLeaseAttrs('{"PublicIP":"198.18.0.2","PublicIPv6":"2001:0002:0:0::0001"}').PublicIPv6).to.equal('2001:2::1');
    expect(parseLeaseAttrs(v6Value(3))).to.deep.include({ PublicIP: '0.0.0.0', PublicIPv6: '2001:2::3' });
    expect(serializeLeaseAttrs(parseLeaseAttrs(dualValue(3)))).to.equal(dualValue(3));
  });

  it('dual-stack network: both parts checked; an IPv4-only key (a node not yet upgraded) is valid', () => {
    const l = validateLease(P, kv6('10.244.3.0-24&fd00:10:244:3::-64', dualValue(3)), dual)!;
    expect(l.ipv6Subnet!.toString()).to.equal('fd00:10:244:3::/64');
    expect(l.attrs.BackendV6Data!.VtepMAC).to.equal(mac6(3));
    expect(validateLease(P, kv6('10.244.3.0-24', JSON.stringify({ PublicIP: '198.18.0.3' })), dual)!.ipv6Subnet).to.equal(null);
    const malformed: [string, string, RegExp][] = [
      ['10.244.3.0-24&fd00:10:245:3::-64', dualValue(3), /IPv6 subnet fd00:10:245:3::\/64 does not fit IPv6Network fd00:10:244::\/48/],
      ['10.244.3.0-24&fd00:10:244:3::-80', dualValue(3), /does not fit IPv6Network .* with IPv6SubnetLen 64/],
      ['10.244.3.0-24&fd00:10:244:3::-64', dualValue(3, { PublicIPv6: null }), /IPv6 subnet fd00:10:244:3::\/64 without a PublicIPv6/],
      ['10.244.3.0-24&fd00:10:244:3::-64', dualValue(3, { BackendV6Data: null }), /vxlan lease with IPv6 subnet .* without BackendV6Data/],
      ['10.244.3.0-24&fd00:10:244:3::-64', dualValue(3, { BackendData: null }), /vxlan lease without BackendData/],
      ['0.0.0.0-0&fd00:10:244:3::-64', v6Value(3), /no IPv4 subnet, and Network 10.244.0.0\/16 is IPv4/],
      ['10.244.3.0-24&fd00:10:244:3::-64', dualValue(3, { PublicIP: '0.0.0.0' }), /PublicIP 0.0.0.0 is not a usable unicast/],
    ];
    for (const [name, value, pattern] of malformed) {
      expect(() => validateLease(P, kv6(name, value), dual), name).to.throw(pattern).with.property('code', 'WEFT_ERR_LEASE_MALFORMED');
    }
  });

  it('IPv6-only network: the IPv6 part is required, the IPv4 part ignored', () => {
    const l = validateLease(P, kv6('0.0.0.0-0&fd00:10:244:3::-64', v6Value(3)), v6only)!;
    expect(slotOf(l)).to.equal('fd00:10:244:3::/64');
    expect(validateLease(P, kv6('10.244.3.0-24&fd00:10:244:4::-64', dualValue(4)), v6only)!.ipv6Subnet!.toString()).to.equal('fd00:10:244:4::/64');
    expect(() => validateLease(P, kv6('10.244.3.0-24', JSON.stringify({ PublicIP: '198.18.0.3' })), v6only)).to.throw(/no IPv6 subnet, and the network is IPv6-only/);
    expect(() => validateLease(P, kv6('0.0.0.0-0&fd00:10:244:3::-64', v6Value(3, { PublicIPv6: null })), v6only)).to.throw(/PublicIP 0.0.0.0 is not a usable unicast/);
  });

  it('IPv4 network: the IPv6 part of a dual-stack key is not looked at; an IPv6-only key is malformed', () => {
    expect(validateLease(P, kv6('10.244.3.0-24&fd99::-64', dualValue(3, { PublicIPv6: null, BackendV6Data: null })), v4only)!.subnet.toString()).to.equal('10.244.3.0/24');
    expect(() => validateLease(P, kv6('0.0.0.0-0&fd00:10:244:3::-64', v6Value(3)), v4only)).to.throw(/no IPv4 subnet/);
  });
});
