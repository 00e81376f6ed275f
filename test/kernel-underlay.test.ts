import { expect } from 'chai';
import type { AddrInfo, Family, Link, Route } from '../kernel/kernel.js';
import { FakeKernel } from '../kernel/kernel-fake.js';
import { WeftError } from '../common/errors.js';
import { defaultRouteDev, discoverUnderlay, interfacesWithAddresses, interfacesWithIPv4, routeDevTowards, selectUnderlay, type InterfaceInfo, type UnderlayKernel } from '../kernel/underlay.js';

/** An IPv4-only network config. */
const V4 = { v4: true, v6: false };
/** What an IPv4-only underlay reports of IPv6. */
const NO_V6 = { address6: null, prefixLength6: 0, publicIPv6: null };

const ifaces: InterfaceInfo[] = [
  { ifindex: 1, ifname: 'lo', mtu: 65536, addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }] },
  { ifindex: 2, ifname: 'eth0', mtu: 1500, addr_info: [{ family: 'inet', local: '10.0.2.15', prefixlen: 24, scope: 'global', dynamic: true }] },
  { ifindex: 3, ifname: 'eth1', mtu: 9000, addr_info: [{ family: 'inet', local: '198.18.0.7', prefixlen: 24, scope: 'global', deprecated: true }, { family: 'inet', local: '198.18.0.1', prefixlen: 24, scope: 'global' }] },
];

describe('underlay interface selection (flannel rules)', () => {
  it('defaults to the default-route interface and its address', () => {
    expect(selectUnderlay(ifaces, 'eth0', { iface: [], ifaceRegex: [], stack: V4 })).to.deep.equal({ name: 'eth0', index: 2, mtu: 1500, address: '10.0.2.15', prefixLength: 24, publicIP: '10.0.2.15', ...NO_V6 });
  });
  it('uses the interface holding --public-ip when no --iface is given', () => {
    expect(selectUnderlay(ifaces, 'eth0', { iface: [], ifaceRegex: [], stack: V4, publicIp: '198.18.0.1' }).name).to.equal('eth1');
  });
  it('--iface by name or by IP, first match wins; deprecated addresses are skipped', () => {
    expect(selectUnderlay(ifaces, 'eth0', { iface: ['eth9', 'eth1'], ifaceRegex: [], stack: V4 })).to.include({ name: 'eth1', address: '198.18.0.1', mtu: 9000 });
    expect(selectUnderlay(ifaces, 'eth0', { iface: ['10.0.2.15'], ifaceRegex: [], stack: V4 }).name).to.equal('eth0');
  });
  it('--iface-regex matches addresses before names', () => {
    expect(selectUnderlay(ifaces, 'eth0', { iface: [], ifaceRegex: ['^198\\.18\\.'], stack: V4 }).name).to.equal('eth1');
    expect(selectUnderlay(ifaces, null, { iface: [], ifaceRegex: ['th0$'], stack: V4 }).name).to.equal('eth0');
  });
  it('--public-ip overrides the advertised address only', () => {
    expect(selectUnderlay(ifaces, 'eth0', { iface: ['eth0'], ifaceRegex: [], stack: V4, publicIp: '203.0.113.9' })).to.include({ address: '10.0.2.15', publicIP: '203.0.113.9' });
  });
  it('fails clearly when nothing matches', () => {
    expect(() => selectUnderlay(ifaces, 'eth0', { iface: ['nope'], ifaceRegex: ['^zz'], stack: V4 })).to.throw(/no interface matches --iface \["nope"\]/);
    expect(() => selectUnderlay(ifaces, null, { iface: [], ifaceRegex: [], stack: V4 })).to.throw(/no default route/);
  });
});

/** A host as the fake kernel holds it: lo, a DHCP eth0 with the default route, eth1 with a static address, an address-less eth2. */
function fakeHost(): { kernel: FakeKernel; eth0: Link; eth1: Link; eth2: Link } {
  const kernel = new FakeKernel();
  const lo = kernel.addLink({ name: 'lo', mtu: 65536, kind: '' });
  const eth0 = kernel.addLink({ name: 'eth0', mtu: 1500 });
  const eth1 = kernel.addLink({ name: 'eth1', mtu: 9000 });
  const eth2 = kernel.addLink({ name: 'eth2', mtu: 1500 });
  kernel.inject({ addr: { ifindex: lo.index, cidr: '127.0.0.1/8', scope: 'host', permanent: true, deprecated: false, secondary: false } });
  kernel.inject({ addr: { ifindex: eth0.index, cidr: '10.0.2.15/24', scope: 'global', permanent: false, deprecated: false, secondary: false } });
  kernel.inject({ route: { dst: '0.0.0.0/0', gw: '10.0.2.2', oif: eth0.index, onlink: false, proto: 16 } });
  return { kernel, eth0, eth1, eth2 };
}

describe('underlay discovery through the kernel port (fake kernel)', () => {
  it('picks the default-route interface and its address, as before', async () => {
    const { kernel, eth0 } = fakeHost();
    expect(await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], stack: V4 })).to.deep.equal({ name: 'eth0', index: eth0.index, mtu: 1500, address: '10.0.2.15', prefixLength: 24, publicIP: '10.0.2.15', ...NO_V6 });
  });

  it('prefers a permanent address to a DHCP one and never takes a deprecated one', async () => {
    const { kernel, eth1 } = fakeHost();
    kernel.inject({ addr: { ifindex: eth1.index, cidr: '198.18.0.9/24', scope: 'global', permanent: true, deprecated: true, secondary: false } });
    kernel.inject({ addr: { ifindex: eth1.index, cidr: '198.18.1.9/24', scope: 'global', permanent: false, deprecated: false, secondary: false } });
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.2.1/24' });
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.2.2/24' });
    expect(await discoverUnderlay(kernel, { iface: ['eth1'], ifaceRegex: [], stack: V4 })).to.include({ name: 'eth1', address: '198.18.2.1', prefixLength: 24, mtu: 9000 });
  });

  it('finds --iface by address and --public-ip holder from the address dump', async () => {
    const { kernel, eth1 } = fakeHost();
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.0.1/24' });
    expect((await discoverUnderlay(kernel, { iface: ['198.18.0.1'], ifaceRegex: [], stack: V4 })).name).to.equal('eth1');
    expect(await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], stack: V4, publicIp: '198.18.0.1' })).to.include({ name: 'eth1', publicIP: '198.18.0.1' });
  });

  it('leaves links without IPv4 out, as `ip -4 addr show` does', async () => {
    const { kernel, eth1 } = fakeHost();
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.0.1/24' });
    expect((await discoverUnderlay(kernel, { iface: ['eth2', 'eth1'], ifaceRegex: [], stack: V4 })).name).to.equal('eth1');
    expect((await discoverUnderlay(kernel, { iface: [], ifaceRegex: ['^eth[12]$'], stack: V4 })).name).to.equal('eth1');
  });

  it('keeps the clear errors: no default route, an address-less default device, MTU 0', async () => {
    const { kernel, eth0, eth2 } = fakeHost();
    kernel.remove({ route: '0.0.0.0/0' });
    await expectRejection(discoverUnderlay(kernel, { iface: [], ifaceRegex: [], stack: V4 }), /no default route/);
    kernel.inject({ route: { dst: '0.0.0.0/0', gw: null, oif: eth2.index, onlink: false, proto: 3 } });
    await expectRejection(discoverUnderlay(kernel, { iface: [], ifaceRegex: [], stack: V4 }), /interface eth2 of the default route not found/);
    await kernel.linkSetMtu(eth0.index, 0);
    await expectRejection(discoverUnderlay(kernel, { iface: ['eth0'], ifaceRegex: [], stack: V4 }), /eth0 reports MTU 0/);
  });

  it('--iface-can-reach: the interface of the most specific route to the address, after --iface and --iface-regex', async () => {
    const { kernel, eth1 } = fakeHost();
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.0.1/24' });
    kernel.inject({ route: { dst: '198.18.0.0/16', gw: null, oif: eth1.index, onlink: false, proto: 2 } });
    expect((await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], stack: V4, ifaceCanReach: '198.18.7.7' })).name).to.equal('eth1');
    // Only the default route covers it.
    expect((await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], stack: V4, ifaceCanReach: '203.0.113.1' })).name).to.equal('eth0');
    // --iface that matches comes first; one that does not falls through to the route.
    expect((await discoverUnderlay(kernel, { iface: ['eth0'], ifaceRegex: [], stack: V4, ifaceCanReach: '198.18.7.7' })).name).to.equal('eth0');
    expect((await discoverUnderlay(kernel, { iface: ['eth9'], ifaceRegex: [], stack: V4, ifaceCanReach: '198.18.7.7' })).name).to.equal('eth1');
    kernel.remove({ route: '0.0.0.0/0' });
    await expectRejection(discoverUnderlay(kernel, { iface: [], ifaceRegex: [], stack: V4, ifaceCanReach: '203.0.113.1' }), /--iface-can-reach 203\.0\.113\.1 \(routed through no interface\)/);
  });

  it('routeDevTowards is a longest-prefix match over routes with a device, the first listed among equals', () => {
    const links = [{ index: 2, name: 'eth0' }, { index: 3, name: 'eth1' }] as Link[];
    const r = (dst: string, oif: number) => ({ dst, gw: null, oif, onlink: false, proto: 3 });
    const routes = [r('0.0.0.0/0', 2), r('10.0.0.0/8', 3), r('10.1.0.0/16', 2), r('10.1.2.0/24', 0), r('10.2.0.0/16', 3), r('10.2.0.0/16', 2)];
    expect(routeDevTowards(links, routes, '10.1.2.3')).to.equal('eth0');
    expect(routeDevTowards(links, routes, '10.9.9.9')).to.equal('eth1');
    expect(routeDevTowards(links, routes, '10.2.0.1')).to.equal('eth1');
    expect(routeDevTowards(links, routes, '192.0.2.1')).to.equal('eth0');
    expect(routeDevTowards(links, routes.slice(1), '192.0.2.1')).to.equal(null);
    expect(routeDevTowards(links, routes, 'nope')).to.equal(null);
  });

  it('treats a default route without a single device (multipath) as none', () => {
    expect(defaultRouteDev([], [{ dst: '0.0.0.0/0', gw: null, oif: 0, onlink: false, proto: 3 }])).to.equal(null);
    expect(defaultRouteDev([], [{ dst: '0.0.0.0/0', gw: null, oif: 7, onlink: false, proto: 3 }])).to.equal('#7');
  });

  it('builds the `ip -j -4 addr show` view: links in order, addresses with scope and flags', async () => {
    const { kernel } = fakeHost();
    const view = interfacesWithIPv4(await kernel.linkList(), await kernel.addrListAll());
    expect(view).to.deep.equal([
      { ifindex: 1, ifname: 'lo', mtu: 65536, addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host', deprecated: false, dynamic: false }] },
      { ifindex: 2, ifname: 'eth0', mtu: 1500, addr_info: [{ family: 'inet', local: '10.0.2.15', prefixlen: 24, scope: 'global', deprecated: false, dynamic: true }] },
    ]);
  });
});

const DUAL = { v4: true, v6: true };
const V6 = { v4: false, v6: true };

/** A dual-stack host: SLAAC, privacy and static IPv6 addresses on eth0, unusable ones on eth1, link-local only on eth2, IPv6 only on eth3. */
const ifaces6: InterfaceInfo[] = [
  { ifindex: 1, ifname: 'lo', mtu: 65536, addr_info: [{ family: 'inet', local: '127.0.0.1', prefixlen: 8, scope: 'host' }, { family: 'inet6', local: '::1', prefixlen: 128, scope: 'host' }] },
  {
    ifindex: 2,
    ifname: 'eth0',
    mtu: 1500,
    addr_info: [
      { family: 'inet', local: '10.0.2.15', prefixlen: 24, scope: 'global', dynamic: true },
      { family: 'inet6', local: 'fe80::15', prefixlen: 64, scope: 'link' },
      { family: 'inet6', local: '2001:db8::aaaa', prefixlen: 64, scope: 'global', dynamic: true, temporary: true },
      { family: 'inet6', local: '2001:db8::15', prefixlen: 64, scope: 'global', dynamic: true },
      { family: 'inet6', local: '2001:db8:1::5', prefixlen: 56, scope: 'global' },
    ],
  },
  {
    ifindex: 3,
    ifname: 'eth1',
    mtu: 9000,
    addr_info: [
      { family: 'inet', local: '198.18.0.1', prefixlen: 24, scope: 'global' },
      { family: 'inet6', local: 'fd00:1::7', prefixlen: 64, scope: 'global', deprecated: true },
      { family: 'inet6', local: 'fd00:1::8', prefixlen: 64, scope: 'global', tentative: true },
      { family: 'inet6', local: 'fd00:1::9', prefixlen: 64, scope: 'global', dadfailed: true },
      { family: 'inet6', local: 'fd00:1::b', prefixlen: 64, scope: 'global', dynamic: true, temporary: true },
      { family: 'inet6', local: 'fd00:1::a', prefixlen: 64, scope: 'global', dynamic: true },
    ],
  },
  { ifindex: 4, ifname: 'eth2', mtu: 1500, addr_info: [{ family: 'inet', local: '192.0.2.2', prefixlen: 24, scope: 'global' }, { family: 'inet6', local: 'fe80::2', prefixlen: 64, scope: 'link' }] },
  { ifindex: 5, ifname: 'eth3', mtu: 1400, addr_info: [{ family: 'inet6', local: '2001:db8:3::3', prefixlen: 64, scope: 'global' }] },
];

describe('underlay interface selection for IPv6 (flannel rules, dual-stack and IPv6-only)', () => {
  it('dual-stack: the default-route interface, its IPv4 address and its best global IPv6 address (permanent first)', () => {
    expect(selectUnderlay(ifaces6, 'eth0', { iface: [], ifaceRegex: [], stack: DUAL }, null, 'eth0')).to.deep.equal({
      name: 'eth0',
      index: 2,
      mtu: 1500,
      address: '10.0.2.15',
      prefixLength: 24,
      publicIP: '10.0.2.15',
      address6: '2001:db8:1::5',
      prefixLength6: 56,
      publicIPv6: '2001:db8:1::5',
    });
  });

  it('skips deprecated, tentative and DAD-failed IPv6 addresses, and takes a temporary (privacy) one last', () => {
    expect(selectUnderlay(ifaces6, null, { iface: ['eth1'], ifaceRegex: [], stack: DUAL })).to.include({ address: '198.18.0.1', address6: 'fd00:1::a', prefixLength6: 64 });
    const onlyTemporary: InterfaceInfo = { ...ifaces6[2]!, addr_info: ifaces6[2]!.addr_info.filter((a) => a.local !== 'fd00:1::a') };
    expect(selectUnderlay([onlyTemporary], null, { iface: ['eth1'], ifaceRegex: [], stack: V6 }).publicIPv6).to.equal('fd00:1::b');
    // Among dynamic addresses on eth0 (no permanent one): the non-temporary SLAAC address.
    const slaac: InterfaceInfo = { ...ifaces6[1]!, addr_info: ifaces6[1]!.addr_info.filter((a) => a.local !== '2001:db8:1::5') };
    expect(selectUnderlay([slaac], null, { iface: ['eth0'], ifaceRegex: [], stack: DUAL }).address6).to.equal('2001:db8::15');
  });

  it('never advertises a link-local address: an interface without a usable global IPv6 address is a clear error', () => {
    for (const stack of [DUAL, V6]) {
      const err = catchError(() => selectUnderlay(ifaces6, null, { iface: ['eth2'], ifaceRegex: [], stack }));
      expect(err).to.be.instanceOf(WeftError).with.property('code', 'WEFT_ERR_OPTION_INVALID');
      expect(err.message).to.match(/interface eth2 has no usable global IPv6 address/);
    }
    // IPv4-only: the same interface is fine.
    expect(selectUnderlay(ifaces6, null, { iface: ['eth2'], ifaceRegex: [], stack: V4 })).to.include({ name: 'eth2', address: '192.0.2.2', address6: null, publicIPv6: null });
  });

  it('dual-stack: the IPv4 and IPv6 default routes must leave through the same interface', () => {
    const err = catchError(() => selectUnderlay(ifaces6, 'eth0', { iface: [], ifaceRegex: [], stack: DUAL }, null, 'eth1'));
    expect(err).to.be.instanceOf(WeftError).with.property('code', 'WEFT_ERR_OPTION_INVALID');
    expect(err.message).to.match(/IPv4 default route leaves through eth0 and the IPv6 default route through eth1.*--iface/);
    expect(() => selectUnderlay(ifaces6, 'eth0', { iface: [], ifaceRegex: [], stack: DUAL })).to.throw(/no IPv6 default route \(::\/0\)/);
    expect(() => selectUnderlay(ifaces6, null, { iface: [], ifaceRegex: [], stack: DUAL }, null, 'eth0')).to.throw(/no default route to pick/);
    // --iface settles it, whatever the default routes say.
    expect(selectUnderlay(ifaces6, 'eth0', { iface: ['eth1'], ifaceRegex: [], stack: DUAL }, null, 'eth0').name).to.equal('eth1');
  });

  it("IPv6-only: the IPv6 default route's interface; publicIP is flannel's unset 0.0.0.0 and address ''", () => {
    expect(selectUnderlay(ifaces6, null, { iface: [], ifaceRegex: [], stack: V6 }, null, 'eth3')).to.deep.equal({
      name: 'eth3',
      index: 5,
      mtu: 1400,
      address: '',
      prefixLength: 0,
      publicIP: '0.0.0.0',
      address6: '2001:db8:3::3',
      prefixLength6: 64,
      publicIPv6: '2001:db8:3::3',
    });
    // The IPv4 default route does not count; --public-ip neither.
    expect(selectUnderlay(ifaces6, 'eth0', { iface: [], ifaceRegex: [], publicIp: '10.0.2.15', stack: V6 }, null, 'eth3')).to.include({ name: 'eth3', publicIP: '0.0.0.0' });
    expect(() => selectUnderlay(ifaces6, 'eth0', { iface: [], ifaceRegex: [], stack: V6 })).to.throw(/no IPv6 default route/);
  });

  it('--public-ipv6: the interface holding it when no --iface is given; otherwise only what is advertised', () => {
    expect(selectUnderlay(ifaces6, 'eth0', { iface: [], ifaceRegex: [], publicIpv6: 'fd00:1::a', stack: DUAL }, null, 'eth0')).to.include({ name: 'eth1', address6: 'fd00:1::a', publicIPv6: 'fd00:1::a' });
    expect(selectUnderlay(ifaces6, null, { iface: [], ifaceRegex: [], publicIpv6: '2001:db8:3::3', stack: V6 }).name).to.equal('eth3');
    // --public-ip comes first for dual stack, as in flanneld.
    expect(selectUnderlay(ifaces6, null, { iface: [], ifaceRegex: [], publicIp: '10.0.2.15', publicIpv6: 'fd00:1::a', stack: DUAL }, null, null)).to.include({ name: 'eth0', publicIPv6: 'fd00:1::a' });
    // Not held locally (NAT): advertised, and the default route picks the interface.
    expect(selectUnderlay(ifaces6, 'eth0', { iface: [], ifaceRegex: [], publicIpv6: '2001:db8:ffff::1', stack: DUAL }, null, 'eth0')).to.include({ name: 'eth0', address6: '2001:db8:1::5', publicIPv6: '2001:db8:ffff::1' });
    expect(selectUnderlay(ifaces6, 'eth9', { iface: ['eth3'], ifaceRegex: [], publicIpv6: '2001:db8:ffff::1', stack: V6 })).to.include({ address6: '2001:db8:3::3', publicIPv6: '2001:db8:ffff::1' });
  });

  it('--iface as an IPv6 address (any spelling), --iface-regex against IPv6 addresses too', () => {
    expect(selectUnderlay(ifaces6, null, { iface: ['2001:db8:3:0::3'], ifaceRegex: [], stack: V6 }).name).to.equal('eth3');
    expect(selectUnderlay(ifaces6, null, { iface: ['2001:DB8:1::5'], ifaceRegex: [], stack: DUAL }).name).to.equal('eth0');
    expect(selectUnderlay(ifaces6, null, { iface: [], ifaceRegex: ['^fd00:1::'], stack: DUAL }).name).to.equal('eth1');
    expect(selectUnderlay(ifaces6, null, { iface: [], ifaceRegex: ['^2001:db8:3:'], stack: V6 }).name).to.equal('eth3');
    // An interface without IPv4 cannot serve a config that enables it.
    expect(() => selectUnderlay(ifaces6, null, { iface: ['eth3'], ifaceRegex: [], stack: DUAL })).to.throw(/interface eth3 has no IPv4 address/);
  });

  it('--iface-can-reach an IPv6 address: the longest-prefix IPv6 route with a device', () => {
    const links = [{ index: 2, name: 'eth0' }, { index: 3, name: 'eth1' }, { index: 5, name: 'eth3' }] as Link[];
    const r = (dst: string, oif: number): Route => ({ dst, gw: null, oif, onlink: false, proto: 3 });
    const routes6 = [r('::/0', 2), r('fd00::/8', 3), r('fd00:1::/64', 5), r('fd00:1:2::/48', 0), r('fd00:7::/32', 3), r('fd00:7::/32', 2)];
    expect(routeDevTowards(links, routes6, 'fd00:1::99')).to.equal('eth3');
    expect(routeDevTowards(links, routes6, 'fd00:1:2::1')).to.equal('eth1');
    expect(routeDevTowards(links, routes6, 'fd00:7::1')).to.equal('eth1');
    expect(routeDevTowards(links, routes6, '2001:db8::1')).to.equal('eth0');
    expect(routeDevTowards(links, routes6.slice(1), '2001:db8::1')).to.equal(null);
    // An IPv6 address never matches an IPv4 route, nor the reverse.
    expect(routeDevTowards(links, [r('0.0.0.0/0', 2)], 'fd00::1')).to.equal(null);
    expect(routeDevTowards(links, routes6, '10.0.0.1')).to.equal(null);
    expect(selectUnderlay(ifaces6, null, { iface: [], ifaceRegex: [], ifaceCanReach: 'fd00:1::99', stack: V6 }, 'eth3').name).to.equal('eth3');
  });

  it('finds the IPv6 default route (::/0) in an IPv6 dump', () => {
    const links = [{ index: 5, name: 'eth3' }] as Link[];
    expect(defaultRouteDev(links, [{ dst: '2001:db8::/32', gw: null, oif: 5, onlink: false, proto: 2 }, { dst: '::/0', gw: 'fe80::1', oif: 5, onlink: false, proto: 9 }])).to.equal('eth3');
    expect(defaultRouteDev(links, [{ dst: '::/0', gw: null, oif: 0, onlink: false, proto: 9 }])).to.equal(null);
  });

  it('builds the `ip -j addr show` view of both dumps: IPv6 flags temporary, tentative and dadfailed', () => {
    const links = [{ index: 1, name: 'lo', mtu: 65536 }, { index: 2, name: 'eth0', mtu: 1500 }, { index: 3, name: 'eth1', mtu: 1500 }] as Link[];
    const a = (ifindex: number, cidr: string, more: Partial<AddrInfo> & { tentative?: boolean; dadfailed?: boolean } = {}) => ({ ifindex, cidr, scope: 'global', permanent: true, deprecated: false, secondary: false, ...more });
    const view = interfacesWithAddresses(links, [a(2, '10.0.2.15/24', { permanent: false }), a(2, '2001:db8::aaaa/64', { permanent: false, secondary: true }), a(3, 'fd00:1::8/64', { tentative: true }), a(3, 'fd00:1::9/64', { dadfailed: true, deprecated: true })]);
    expect(view).to.deep.equal([
      {
        ifindex: 2,
        ifname: 'eth0',
        mtu: 1500,
        addr_info: [
          { family: 'inet', local: '10.0.2.15', prefixlen: 24, scope: 'global', deprecated: false, dynamic: true },
          { family: 'inet6', local: '2001:db8::aaaa', prefixlen: 64, scope: 'global', deprecated: false, dynamic: true, temporary: true, tentative: false, dadfailed: false },
        ],
      },
      {
        ifindex: 3,
        ifname: 'eth1',
        mtu: 1500,
        addr_info: [
          { family: 'inet6', local: 'fd00:1::8', prefixlen: 64, scope: 'global', deprecated: false, dynamic: false, temporary: false, tentative: true, dadfailed: false },
          { family: 'inet6', local: 'fd00:1::9', prefixlen: 64, scope: 'global', deprecated: true, dynamic: false, temporary: false, tentative: false, dadfailed: true },
        ],
      },
    ]);
    // The IPv4 view is unchanged: IPv4 entries carry no IPv6 flags.
    expect(interfacesWithIPv4(links, [a(2, '10.0.2.15/24')])[0]!.addr_info[0]).to.deep.equal({ family: 'inet', local: '10.0.2.15', prefixlen: 24, scope: 'global', deprecated: false, dynamic: false });
  });
});

/** A kernel port stub serving per-family dumps and counting them. */
function dumpStub(addrs: Record<Family, AddrInfo[]>, routes: Record<Family, Route[]>): UnderlayKernel & { calls: string[] } {
  const calls: string[] = [];
  const links = [{ index: 1, name: 'lo', mtu: 65536 }, { index: 2, name: 'eth0', mtu: 1500 }, { index: 3, name: 'eth1', mtu: 1500 }] as Link[];
  return {
    calls,
    linkList: async () => (calls.push('links'), links),
    addrListAll: async (family: Family = 4) => (calls.push(`addrs${family}`), addrs[family]),
    routeList: async (family: Family = 4) => (calls.push(`routes${family}`), routes[family]),
  };
}

describe('underlay discovery of IPv6 through the kernel port (dump stub)', () => {
  const a = (ifindex: number, cidr: string, scope = 'global') => ({ ifindex, cidr, scope, permanent: true, deprecated: false, secondary: false });
  const r = (dst: string, oif: number): Route => ({ dst, gw: null, oif, onlink: false, proto: 3 });
  const addrs = { 4: [a(1, '127.0.0.1/8', 'host'), a(2, '10.0.2.15/24'), a(3, '198.18.0.1/24')], 6: [a(1, '::1/128', 'host'), a(2, 'fe80::15/64', 'link'), a(2, '2001:db8::15/64'), a(3, 'fd00:1::a/64')] };
  const routes = { 4: [r('0.0.0.0/0', 2), r('198.18.0.0/24', 3)], 6: [r('fd00:1::/64', 3), r('::/0', 2)] };

  it('an IPv4-only start reads no IPv6 dump', async () => {
    const kernel = dumpStub(addrs, routes);
    expect(await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], stack: V4 })).to.include({ name: 'eth0', address: '10.0.2.15', address6: null });
    expect(kernel.calls.sort()).to.deep.equal(['addrs4', 'links', 'routes4']);
  });

  it('dual-stack and IPv6-only read the IPv6 addresses and routes', async () => {
    const kernel = dumpStub(addrs, routes);
    expect(await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], stack: DUAL })).to.deep.include({ name: 'eth0', address: '10.0.2.15', publicIP: '10.0.2.15', address6: '2001:db8::15', publicIPv6: '2001:db8::15' });
    expect(kernel.calls.sort()).to.deep.equal(['addrs4', 'addrs6', 'links', 'routes4', 'routes6']);
    expect(await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], stack: V6 })).to.include({ name: 'eth0', address: '', publicIP: '0.0.0.0', address6: '2001:db8::15' });
    expect(await discoverUnderlay(kernel, { iface: ['fd00:1::a'], ifaceRegex: [], stack: V6 })).to.include({ name: 'eth1', publicIPv6: 'fd00:1::a' });
  });

  it('dual-stack with the default routes on two interfaces is refused', async () => {
    const kernel = dumpStub(addrs, { 4: routes[4], 6: [r('::/0', 3)] });
    await expectRejection(discoverUnderlay(kernel, { iface: [], ifaceRegex: [], stack: DUAL }), /IPv4 default route leaves through eth0 and the IPv6 default route through eth1/);
  });

  it('--iface-can-reach an IPv6 address looks in the IPv6 routes, also for an IPv4-only config', async () => {
    const kernel = dumpStub(addrs, routes);
    expect((await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], ifaceCanReach: 'fd00:1::99', stack: DUAL })).name).to.equal('eth1');
    kernel.calls.length = 0;
    expect((await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], ifaceCanReach: 'fd00:1::99', stack: V4 })).name).to.equal('eth1');
    expect(kernel.calls).to.include('routes6');
    expect((await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], ifaceCanReach: '2001:db8:9::1', stack: V6 })).name).to.equal('eth0');
  });
});

function catchError(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected a throw');
}

async function expectRejection(p: Promise<unknown>, message: RegExp): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'expected a rejection').to.be.instanceOf(WeftError);
  expect((err as Error).message).to.match(message);
}
