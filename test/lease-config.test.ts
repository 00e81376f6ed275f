import { expect } from 'chai';
import { parseNetworkConfig } from '../lease/config.js';

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
