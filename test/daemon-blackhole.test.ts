import { expect } from 'chai';
import { FakeKernel } from '../kernel/kernel-fake.js';
import { silentLogger } from '../common/log.js';
import { Subnet } from '../common/subnet.js';
import { BlackholeKeeper } from '../daemon/blackhole.js';
import { eventually } from './harness/netns.js';

describe('blackhole route keeper (--ip-blackhole-route)', () => {
  it("keeps a blackhole on the node's subnet, moves it with the lease, and puts back one that was deleted", async () => {
    const kernel = new FakeKernel();
    const keeper = new BlackholeKeeper(kernel, silentLogger());
    await keeper.set([Subnet.parse('10.244.3.0/24')]);
    expect([...kernel.blackholes]).to.deep.equal(['10.244.3.0/24']);
    await keeper.set([Subnet.parse('10.244.3.0/24')]);
    await keeper.set([Subnet.parse('10.244.9.0/24')]);
    expect([...kernel.blackholes]).to.deep.equal(['10.244.9.0/24']);
    // The old one already gone (deleted by hand) is no error.
    kernel.blackholes.clear();
    await keeper.set([Subnet.parse('10.244.4.0/24')]);
    expect([...kernel.blackholes]).to.deep.equal(['10.244.4.0/24']);
    const ac = new AbortController();
    const running = keeper.run(20, ac.signal);
    kernel.blackholes.clear();
    await eventually(async () => kernel.blackholes.has('10.244.4.0/24'), 2000, 'restored');
    ac.abort();
    await running;
  });

  it('keeps one per family of a dual-stack lease, and an IPv6-only lease gets its IPv6 one alone', async () => {
    const kernel = new FakeKernel();
    const keeper = new BlackholeKeeper(kernel, silentLogger());
    await keeper.set([Subnet.parse('10.244.3.0/24'), Subnet.parse('fd00:10:244:3::/64')]);
    expect([...kernel.blackholes].sort()).to.deep.equal(['10.244.3.0/24', 'fd00:10:244:3::/64']);
    await keeper.set([Subnet.parse('fd00:10:244:7::/64')]);
    expect([...kernel.blackholes]).to.deep.equal(['fd00:10:244:7::/64']);
  });
});
