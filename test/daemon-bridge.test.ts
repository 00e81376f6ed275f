import { addrsOn } from '../kernel/addresses.js';
import type { Kernel } from '../kernel/kernel.js';
import { expect } from 'chai';
import { FakeKernel } from '../kernel/kernel-fake.js';
import { silentLogger } from '../common/log.js';
import { BridgeKeeper } from '../daemon/bridge.js';
import { Subnet } from '../common/subnet.js';

const network = Subnet.parse('10.244.0.0/16');

/** The addresses of both families on a link (a set: a port may list every family in either dump). */
async function bridgeAddrs(kernel: Pick<Kernel, 'addrListAll'>, ifindex: number): Promise<string[]> {
  const all = [...(await kernel.addrListAll(4)), ...(await kernel.addrListAll(6))];
  return [...new Set(all.filter((a) => a.ifindex === ifindex).map((a) => a.cidr))];
}

describe('docker bridge keeper (fake kernel)', () => {
  it('creates the bridge with the gateway address and overlay MTU, then finds it in place', async () => {
    const kernel = new FakeKernel();
    const keeper = new BridgeKeeper({ name: 'weft0', subnet: Subnet.parse('10.244.7.0/24'), network, mtu: 1450 }, kernel, silentLogger());
    expect(await keeper.ensure()).to.deep.equal(['created', 'address 10.244.7.1/24', 'up']);
    const link = (await kernel.linkByName('weft0'))!;
    expect(link).to.include({ kind: 'bridge', mtu: 1450, up: true });
    expect(await addrsOn(kernel, link.index)).to.deep.equal([{ ifindex: link.index, cidr: '10.244.7.1/24' }]);
    expect(await keeper.ensure()).to.deep.equal([]);
  });

  it('follows a lease change, dropping the old gateway address but not foreign ones, and repairs the MTU', async () => {
    const kernel = new FakeKernel();
    const keeper = new BridgeKeeper({ name: 'weft0', subnet: Subnet.parse('10.244.7.0/24'), network, mtu: 1450 }, kernel, silentLogger());
    await keeper.ensure();
    const link = (await kernel.linkByName('weft0'))!;
    await kernel.addrAdd({ ifindex: link.index, cidr: '192.168.5.1/24' });
    await kernel.linkSetMtu(link.index, 1500);
    keeper.update({ name: 'weft0', subnet: Subnet.parse('10.244.9.0/24'), network, mtu: 1450 });
    expect(await keeper.ensure()).to.deep.equal(['mtu 1450', 'removed 10.244.7.1/24', 'address 10.244.9.1/24']);
    expect((await addrsOn(kernel, link.index)).map((a) => a.cidr).sort()).to.deep.equal(['10.244.9.1/24', '192.168.5.1/24']);
  });

  it('refuses to take over an interface of another kind', async () => {
    const kernel = new FakeKernel();
    kernel.addLink({ name: 'eth0', kind: 'veth' });
    const keeper = new BridgeKeeper({ name: 'eth0', subnet: Subnet.parse('10.244.7.0/24'), network, mtu: 1450 }, kernel, silentLogger());
    await keeper.ensure().then(
      () => expect.fail('should refuse'),
      (err: Error) => expect(err.message).to.match(/--bridge eth0: an interface of kind "veth" has that name/),
    );
  });

  it('dual-stack: the bridge also gets the IPv6 gateway, the first address of the IPv6 subnet, and follows its lease change', async () => {
    const kernel = new FakeKernel();
    const network6 = Subnet.parse('fd00:10:244::/48');
    const spec = { name: 'weft0', subnet: Subnet.parse('10.244.7.0/24'), network, mtu: 1450, ipv6: { subnet: Subnet.parse('fd00:10:244:7::/64'), network: network6 } };
    const keeper = new BridgeKeeper(spec, kernel, silentLogger());
    expect(await keeper.ensure()).to.deep.equal(['created', 'address 10.244.7.1/24', 'address fd00:10:244:7::1/64', 'up']);
    expect(await keeper.ensure()).to.deep.equal([]);
    const link = (await kernel.linkByName('weft0'))!;
    await kernel.addrAdd({ ifindex: link.index, cidr: 'fd00:99::1/64' });
    keeper.update({ ...spec, ipv6: { subnet: Subnet.parse('fd00:10:244:9::/64'), network: network6 } });
    expect(await keeper.ensure()).to.deep.equal(['removed fd00:10:244:7::1/64', 'address fd00:10:244:9::1/64']);
    expect((await bridgeAddrs(kernel, link.index)).sort()).to.deep.equal(['10.244.7.1/24', 'fd00:10:244:9::1/64', 'fd00:99::1/64']);
  });

  it('IPv6-only: the IPv6 gateway alone, no IPv4 address', async () => {
    const kernel = new FakeKernel();
    const keeper = new BridgeKeeper({ name: 'weft0', subnet: null, network: null, mtu: 1450, ipv6: { subnet: Subnet.parse('fd00:10:244:7::/64'), network: Subnet.parse('fd00:10:244::/48') } }, kernel, silentLogger());
    expect(await keeper.ensure()).to.deep.equal(['created', 'address fd00:10:244:7::1/64', 'up']);
    const link = (await kernel.linkByName('weft0'))!;
    expect(await bridgeAddrs(kernel, link.index)).to.deep.equal(['fd00:10:244:7::1/64']);
  });
});
