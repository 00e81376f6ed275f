/**
 * The fake kernel's semantics where tests rely on them matching Linux's: link
 * and address dumps, and its notifications (which subscription hears what).
 */
import { expect } from 'chai';
import { addrsOn } from '../kernel/addresses.js';
import { FakeKernel } from '../kernel/kernel-fake.js';

describe('fake kernel: link and address dumps', () => {
  it('lists links by index and addresses like `ip addr add` leaves them', async () => {
    const kernel = new FakeKernel();
    const eth0 = kernel.addLink({ name: 'eth0' });
    const eth1 = kernel.addLink({ name: 'eth1' });
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.0.1/24' });
    await kernel.addrAdd({ ifindex: eth0.index, cidr: '10.0.0.1/24' });
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.0.2/24' });
    await kernel.addrAdd({ ifindex: eth1.index, cidr: '198.18.0.3/25' });
    expect((await kernel.linkList()).map((l) => l.name)).to.deep.equal(['eth0', 'eth1']);
    expect(await kernel.addrListAll()).to.deep.equal([
      { ifindex: eth0.index, cidr: '10.0.0.1/24', scope: 'global', permanent: true, deprecated: false, secondary: false },
      { ifindex: eth1.index, cidr: '198.18.0.1/24', scope: 'global', permanent: true, deprecated: false, secondary: false },
      { ifindex: eth1.index, cidr: '198.18.0.2/24', scope: 'global', permanent: true, deprecated: false, secondary: true },
      { ifindex: eth1.index, cidr: '198.18.0.3/25', scope: 'global', permanent: true, deprecated: false, secondary: false },
    ]);
    expect(await addrsOn(kernel, eth1.index)).to.deep.equal([
      { ifindex: eth1.index, cidr: '198.18.0.1/24' },
      { ifindex: eth1.index, cidr: '198.18.0.2/24' },
      { ifindex: eth1.index, cidr: '198.18.0.3/25' },
    ]);
  });

  it('drops a deleted link’s addresses from the dump', async () => {
    const kernel = new FakeKernel();
    const eth0 = kernel.addLink({ name: 'eth0' });
    await kernel.addrAdd({ ifindex: eth0.index, cidr: '10.0.0.1/24' });
    await kernel.linkDel(eth0.index);
    expect(await kernel.addrListAll()).to.deep.equal([]);
    expect(await kernel.linkList()).to.deep.equal([]);
  });
});
