import { expect } from 'chai';
import type { Link } from '../kernel/kernel.js';
import { FakeKernel } from '../kernel/kernel-fake.js';
import { WeftError } from '../common/errors.js';
import { defaultRouteDev, discoverUnderlay, interfacesWithIPv4, routeDevTowards, selectUnderlay, type InterfaceInfo } from '../kernel/underlay.js';

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
    expect(await discoverUnderlay(kernel, { iface: [], ifaceRegex: [] })).to.deep.equal({ name: 'eth0', index: eth0.index, mtu: 1500, address: '10.0.2.15', prefixLength: 24, publicIP: '10.0.2.15' });
  });

  it('prefers a permanent address to a DHCP one and never takes a deprecated one', async () => {
    const { kernel, eth1 } = fakeHost();
    kernel.inject({ addr: { ifindex: eth1.index, cidr: '198.18.0.9/24', scope: 'global', permanent: true, deprecated: true, secondary: false } });
    kernel.inject({ addr: { ifindex: eth1.index, cidr: '198.18.1.9/24', scope: 'global', permanent: false, deprecated: false, secondary: false } });
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.2.1/24' });
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.2.2/24' });
    expect(await discoverUnderlay(kernel, { iface: ['eth1'], ifaceRegex: [] })).to.include({ name: 'eth1', address: '198.18.2.1', prefixLength: 24, mtu: 9000 });
  });

  it('finds --iface by address and --public-ip holder from the address dump', async () => {
    const { kernel, eth1 } = fakeHost();
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.0.1/24' });
    expect((await discoverUnderlay(kernel, { iface: ['198.18.0.1'], ifaceRegex: [] })).name).to.equal('eth1');
    expect(await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], publicIp: '198.18.0.1' })).to.include({ name: 'eth1', publicIP: '198.18.0.1' });
  });

  it('leaves links without IPv4 out, as `ip -4 addr show` does', async () => {
    const { kernel, eth1 } = fakeHost();
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.0.1/24' });
    expect((await discoverUnderlay(kernel, { iface: ['eth2', 'eth1'], ifaceRegex: [] })).name).to.equal('eth1');
    expect((await discoverUnderlay(kernel, { iface: [], ifaceRegex: ['^eth[12]$'] })).name).to.equal('eth1');
  });

  it('keeps the clear errors: no default route, an address-less default device, MTU 0', async () => {
    const { kernel, eth0, eth2 } = fakeHost();
    kernel.remove({ route: '0.0.0.0/0' });
    await expectRejection(discoverUnderlay(kernel, { iface: [], ifaceRegex: [] }), /no default route/);
    kernel.inject({ route: { dst: '0.0.0.0/0', gw: null, oif: eth2.index, onlink: false, proto: 3 } });
    await expectRejection(discoverUnderlay(kernel, { iface: [], ifaceRegex: [] }), /interface eth2 of the default route not found/);
    await kernel.linkSetMtu(eth0.index, 0);
    await expectRejection(discoverUnderlay(kernel, { iface: ['eth0'], ifaceRegex: [] }), /eth0 reports MTU 0/);
  });

  it('--iface-can-reach: the interface of the most specific route to the address, after --iface and --iface-regex', async () => {
    const { kernel, eth1 } = fakeHost();
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.0.1/24' });
    kernel.inject({ route: { dst: '198.18.0.0/16', gw: null, oif: eth1.index, onlink: false, proto: 2 } });
    expect((await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], ifaceCanReach: '198.18.7.7' })).name).to.equal('eth1');
    // Only the default route covers it.
    expect((await discoverUnderlay(kernel, { iface: [], ifaceRegex: [], ifaceCanReach: '203.0.113.1' })).name).to.equal('eth0');
    // --iface that matches comes first; one that does not falls through to the route.
    expect((await discoverUnderlay(kernel, { iface: ['eth0'], ifaceRegex: [], ifaceCanReach: '198.18.7.7' })).name).to.equal('eth0');
    expect((await discoverUnderlay(kernel, { iface: ['eth9'], ifaceRegex: [], ifaceCanReach: '198.18.7.7' })).name).to.equal('eth1');
    kernel.remove({ route: '0.0.0.0/0' });
    await expectRejection(discoverUnderlay(kernel, { iface: [], ifaceRegex: [], ifaceCanReach: '203.0.113.1' }), /--iface-can-reach 203\.0\.113\.1 \(routed through no interface\)/);
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

async function expectRejection(p: Promise<unknown>, message: RegExp): Promise<void> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err, 'expected a rejection').to.be.instanceOf(WeftError);
  expect((err as Error).message).to.match(message);
}
