import { expect } from 'chai';
import { parseNetworkConfig } from '../lease/config.js';
import * as ds from './harness/dual-stack-leases.js';

describe('network config parsing (flannel rules)', () => {
  const valid: [string, object, Record<string, unknown>][] = [
    ['defaults for a /16', { Network: '10.244.0.0/16' }, { subnetLen: 24, subnetMin: '10.244.1.0/24', subnetMax: '10.244.255.0/24', backend: 'vxlan', vni: 1, port: 0 }],
    ['masks the Network CIDR', { Network: '10.244.7.9/16' }, { network: '10.244.0.0/16' }],
    ['case-insensitive keys', { network: '10.5.0.0/16', subnetlen: 20, backend: { type: 'VXLAN', vni: 4, port: 4789, directrouting: true } }, { subnetLen: 20, backend: 'vxlan', vni: 4, port: 4789, directRouting: true }],
    ['exact key wins over case-folded', { network: '10.6.0.0/16', Network: '10.5.0.0/16' }, { network: '10.5.0.0/16' }],
    ['SubnetLen = prefix + 2 for /23../28', { Network: '10.0.0.0/26' }, { subnetLen: 28, subnetMin: '10.0.0.16/28', subnetMax: '10.0.0.48/28' }],
    ['/22 still gets /24', { Network: '10.0.0.0/22' }, { subnetLen: 24, subnetMin: '10.0.1.0/24', subnetMax: '10.0.3.0/24' }],
    ['explicit min/max', { Network: '10.0.0.0/8', SubnetLen: 20, SubnetMin: '10.10.0.0', SubnetMax: '10.99.0.0' }, { subnetMin: '10.10.0.0/20', subnetMax: '10.99.0.0/20' }],
    ['Backend absent means vxlan', { Network: '10.0.0.0/16' }, { backend: 'vxlan' }],
    ['Backend without Type means vxlan', { Network: '10.0.0.0/16', Backend: { VNI: 7 } }, { backend: 'vxlan', vni: 7 }],
    ['host-gw', { Network: '10.0.0.0/16', Backend: { Type: 'host-gw' } }, { backend: 'host-gw' }],
    ['Backend MTU is the underlay MTU', { Network: '10.0.0.0/16', Backend: { Type: 'vxlan', MTU: 9001, GBP: true } }, { mtu: 9001, gbp: true }],
    ['unknown keys ignored', { Network: '10.0.0.0/16', Foo: [1, 2] }, { subnetLen: 24 }],
    ['dual stack', { Network: '10.0.0.0/16', EnableIPv6: true, IPv6Network: 'fc00::/48' }, { ipv6SubnetLen: 64, ipv6SubnetMin: 'fc00:0:0:1::/64', ipv6SubnetMax: 'fc00:0:0:ffff::/64' }],
    ['IPv6 only', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fc00::/63' }, { network: null, ipv6SubnetLen: 65 }],
  ];
  for (const [name, doc, want] of valid) {
    it(`accepts: ${name}`, () => {
      const c = parseNetworkConfig(JSON.stringify(doc));
      const got: Record<string, unknown> = {
        network: c.network?.toString() ?? null,
        subnetLen: c.subnetLen,
        subnetMin: c.subnetMin?.toString(),
        subnetMax: c.subnetMax?.toString(),
        ipv6SubnetLen: c.ipv6SubnetLen,
        ipv6SubnetMin: c.ipv6SubnetMin?.toString(),
        ipv6SubnetMax: c.ipv6SubnetMax?.toString(),
        backend: c.backend.type,
        vni: c.backend.vni,
        port: c.backend.port,
        mtu: c.backend.mtu,
        gbp: c.backend.gbp,
        directRouting: c.backend.directRouting,
      };
      for (const [k, v] of Object.entries(want)) expect(got[k], k).to.deep.equal(v);
    });
  }

  const invalid: [string, string, RegExp][] = [
    ['not JSON', '{"Network": ', /\(document\): not valid JSON/],
    ['not an object', '[1]', /must be a JSON object/],
    ['Network missing', '{}', /Network: required/],
    ['Network not a CIDR', '{"Network":"10.0.0.0"}', /Network: invalid CIDR/],
    ['Network wrong type', '{"Network":42}', /Network: must be a CIDR string, got number/],
    ['Network is IPv6', '{"Network":"fc00::/48"}', /Network: must be an IPv4 CIDR/],
    ['network too small', '{"Network":"10.0.0.0/29"}', /Network: network is too small.*\/28/],
    ['SubnetLen > 30', '{"Network":"10.0.0.0/16","SubnetLen":31}', /SubnetLen: must be at most 30/],
    ['SubnetLen < prefix + 2', '{"Network":"10.0.0.0/16","SubnetLen":17}', /SubnetLen: must be at least Network prefix \+ 2 = 18/],
    ['SubnetLen a string', '{"Network":"10.0.0.0/16","SubnetLen":"24"}', /SubnetLen: must be a non-negative integer, got string/],
    ['SubnetMin outside', '{"Network":"10.0.0.0/16","SubnetMin":"10.1.0.0"}', /SubnetMin: 10.1.0.0 is not inside Network 10.0.0.0\/16/],
    ['SubnetMin unaligned', '{"Network":"10.0.0.0/16","SubnetMin":"10.0.1.7"}', /SubnetMin: 10.0.1.7 is not on a SubnetLen \(\/24\) boundary/],
    ['SubnetMax unaligned', '{"Network":"10.0.0.0/16","SubnetMax":"10.0.9.128"}', /SubnetMax: .* boundary/],
    ['SubnetMin above SubnetMax', '{"Network":"10.0.0.0/16","SubnetMin":"10.0.9.0","SubnetMax":"10.0.3.0"}', /SubnetMin: must not be above SubnetMax/],
    ['SubnetMin garbage', '{"Network":"10.0.0.0/16","SubnetMin":"ten"}', /SubnetMin: "ten" is not an IPv4 address/],
    ['IPv6SubnetLen too long', '{"Network":"10.0.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetLen":127}', /IPv6SubnetLen: must be at most 126/],
    ['IPv6Network missing', '{"Network":"10.0.0.0/16","EnableIPv6":true}', /IPv6Network: required/],
    ['both families off', '{"EnableIPv4":false}', /EnableIPv4: at least one/],
    ['EnableIPv4 not bool', '{"EnableIPv4":"yes","Network":"10.0.0.0/16"}', /EnableIPv4: must be true or false/],
    ['Backend not an object', '{"Network":"10.0.0.0/16","Backend":"vxlan"}', /Backend: must be a JSON object/],
    ['Backend.Type bad', '{"Network":"10.0.0.0/16","Backend":{"Type":"vx lan;rm"}}', /Backend.Type: .* is not a backend name/],
    ['VNI too large', '{"Network":"10.0.0.0/16","Backend":{"VNI":16777216}}', /Backend.VNI: must be between 0 and 16777215/],
    ['VNI negative', '{"Network":"10.0.0.0/16","Backend":{"VNI":-1}}', /Backend.VNI: must be a non-negative integer/],
    ['Port too large', '{"Network":"10.0.0.0/16","Backend":{"Port":70000}}', /Backend.Port: must be between 0 and 65535/],
    ['MTU too small', '{"Network":"10.0.0.0/16","Backend":{"MTU":100}}', /Backend.MTU: must be 0/],
    ['DirectRouting not bool', '{"Network":"10.0.0.0/16","Backend":{"DirectRouting":1}}', /Backend.DirectRouting: must be true or false/],
  ];
  for (const [name, text, pattern] of invalid) {
    it(`rejects: ${name}`, () => {
      expect(() => parseNetworkConfig(text)).to.throw(pattern).with.property('code', 'WEFT_ERR_CONFIG_INVALID');
    });
  }
});

describe('network config parsing: dual-stack and IPv6-only (flannel rules)', () => {
  const valid: [string, object, Record<string, string | number | null>][] = [
    ['dual-stack defaults', { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' }, { len: 64, min: 'fd00:10:244:1::/64', max: 'fd00:10:244:ffff::/64', v4: '10.244.0.0/16' }],
    ['IPv6-only', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::/48' }, { len: 64, v4: null }],
    ['IPv6Network masked', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00:10:244::5/48' }, { net: 'fd00:10:244::/48' }],
    ['/62 still gets /64', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/62' }, { len: 64, min: 'fd00:0:0:1::/64', max: 'fd00:0:0:3::/64' }],
    ['/124 gets /126', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/124' }, { len: 126 }],
    ['explicit IPv6 length, min and max', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/32', IPv6SubnetLen: 56, IPv6SubnetMin: 'fd00:0:100::', IPv6SubnetMax: 'fd00:0:f00::' }, { len: 56, min: 'fd00:0:100::/56', max: 'fd00:0:f00::/56' }],
    ['case-insensitive IPv6 keys', { network: '10.0.0.0/16', enableipv6: true, ipv6network: 'fd00::/48', ipv6subnetlen: 60 }, { len: 60 }],
    ['IPv6 fields ignored while EnableIPv6 is false', { Network: '10.0.0.0/16', IPv6Network: 'fd00::/48' }, { len: 0, net: null }],
  ];
  for (const [name, doc, want] of valid) {
    it(`accepts: ${name}`, () => {
      const c = parseNetworkConfig(JSON.stringify(doc));
      const got: Record<string, unknown> = { len: c.ipv6SubnetLen, min: c.ipv6SubnetMin?.toString(), max: c.ipv6SubnetMax?.toString(), v4: c.network?.toString() ?? null, net: c.ipv6Network?.toString() ?? null };
      for (const [k, v] of Object.entries(want)) expect(got[k], k).to.equal(v);
    });
  }
  const invalid: [string, object, RegExp][] = [
    ['IPv6Network too small', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/125' }, /IPv6Network: network is too small: the minimum useful prefix is \/124/],
    ['IPv6SubnetLen < prefix + 2', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/48', IPv6SubnetLen: 49 }, /IPv6SubnetLen: must be at least IPv6Network prefix \+ 2 = 50/],
    ['IPv6SubnetLen > 126', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/48', IPv6SubnetLen: 127 }, /IPv6SubnetLen: must be at most 126/],
    ['IPv6Network is IPv4', { EnableIPv4: false, EnableIPv6: true, IPv6Network: '10.0.0.0/16' }, /IPv6Network: must be an IPv6 CIDR/],
    ['IPv6Network missing in IPv6-only', { EnableIPv4: false, EnableIPv6: true }, /IPv6Network: required when EnableIPv6 is true/],
    ['IPv6SubnetMin outside', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/48', IPv6SubnetMin: 'fd01::' }, /IPv6SubnetMin: fd01:: is not inside IPv6Network fd00::\/48/],
    ['IPv6SubnetMin unaligned', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/48', IPv6SubnetMin: 'fd00:0:0:1::1' }, /IPv6SubnetMin: fd00:0:0:1::1 is not on a IPv6SubnetLen \(\/64\) boundary/],
    ['IPv6SubnetMax an IPv4 address', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/48', IPv6SubnetMax: '10.0.0.0' }, /IPv6SubnetMax: "10.0.0.0" is not an IPv6 address/],
    ['IPv6SubnetMin above IPv6SubnetMax', { EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fd00::/48', IPv6SubnetMin: 'fd00:0:0:9::', IPv6SubnetMax: 'fd00:0:0:3::' }, /IPv6SubnetMin: must not be above IPv6SubnetMax/],
    ['EnableIPv6 not bool', { Network: '10.0.0.0/16', EnableIPv6: 'true' }, /EnableIPv6: must be true or false/],
    ['neither family', { EnableIPv4: false, EnableIPv6: false }, /EnableIPv4: at least one of EnableIPv4 and EnableIPv6/],
  ];
  for (const [name, doc, pattern] of invalid) {
    it(`rejects: ${name}`, () => expect(() => parseNetworkConfig(JSON.stringify(doc))).to.throw(pattern).with.property('code', 'WEFT_ERR_CONFIG_INVALID'));
  }
  it('the fixtures of the IPv6 tests parse to what they say', () => {
    expect([ds.dual, ds.v6only, ds.v4only].map((c) => [c.enableIPv4, c.enableIPv6])).to.deep.equal([[true, true], [false, true], [true, false]]);
  });
});
