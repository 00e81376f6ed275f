import { expect } from 'chai';
import { selectUnderlay, type InterfaceInfo } from '../daemon/underlay.js';

const ifaces: InterfaceInfo[] = [
  { ifindex: 1, ifname: 'lo', mtu: 65536, addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }] },
  { ifindex: 2, ifname: 'eth0', mtu: 1500, addr_info: [{ family: 'inet', local: '10.0.2.15', prefixlen: 24, scope: 'global', dynamic: true }] },
  { ifindex: 3, ifname: 'eth1', mtu: 9000, addr_info: [{ family: 'inet', local: '198.18.0.7', prefixlen: 24, scope: 'global', deprecated: true }, { family: 'inet', local: '198.18.0.1', prefixlen: 24, scope: 'global' }] },
];

describe('underlay interface selection (flannel rules)', () => {
  it('defaults to the default-route interface and its address', () => {
    expect(selectUnderlay(ifaces, 'eth0', { iface: [], ifaceRegex: [] })).to.deep.equal({ name: 'eth0', index: 2, mtu: 1500, address: '10.0.2.15', prefixLength: 24, publicIP: '10.0.2.15' });
  });
  it('uses the interface holding --public-ip when no --iface is given', () => {
    expect(selectUnderlay(ifaces, 'eth0', { iface: [], ifaceRegex: [], publicIp: '198.18.0.1' }).name).to.equal('eth1');
  });
  it('--iface by name or by IP, first match wins; deprecated addresses are skipped', () => {
    expect(selectUnderlay(ifaces, 'eth0', { iface: ['eth9', 'eth1'], ifaceRegex: [] })).to.include({ name: 'eth1', address: '198.18.0.1', mtu: 9000 });
    expect(selectUnderlay(ifaces, 'eth0', { iface: ['10.0.2.15'], ifaceRegex: [] }).name).to.equal('eth0');
  });
  it('--iface-regex matches addresses before names', () => {
    expect(selectUnderlay(ifaces, 'eth0', { iface: [], ifaceRegex: ['^198\\.18\\.'] }).name).to.equal('eth1');
    expect(selectUnderlay(ifaces, null, { iface: [], ifaceRegex: ['th0$'] }).name).to.equal('eth0');
  });
  it('--public-ip overrides the advertised address only', () => {
    expect(selectUnderlay(ifaces, 'eth0', { iface: ['eth0'], ifaceRegex: [], publicIp: '203.0.113.9' })).to.include({ address: '10.0.2.15', publicIP: '203.0.113.9' });
  });
  it('fails clearly when nothing matches', () => {
    expect(() => selectUnderlay(ifaces, 'eth0', { iface: ['nope'], ifaceRegex: ['^zz'] })).to.throw(/no interface matches --iface \["nope"\]/);
    expect(() => selectUnderlay(ifaces, null, { iface: [], ifaceRegex: [] })).to.throw(/no default route/);
  });
});
