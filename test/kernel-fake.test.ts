/**
 * The fake kernel's semantics where tests rely on them matching Linux's: link
 * and address dumps, and its two subscriptions (which one hears what).
 */
import { expect } from 'chai';
import { ReconcileLoop } from '../backend/reconcile-loop.js';
import type { Reconciler } from '../backend/reconciler.js';
import { silentLogger } from '../common/log.js';
import { addrsOn } from '../kernel/addresses.js';
import { FakeKernel } from '../kernel/kernel-fake.js';
import type { KernelChange, NftChange } from '../kernel/kernel.js';

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

describe('fake kernel: kernel object changes and nf_tables reports on their own subscriptions', () => {
  it('each subscription hears only its own kind', () => {
    const kernel = new FakeKernel();
    const changes: KernelChange[] = [];
    const reports: NftChange[] = [];
    const offChanges = kernel.monitor((c) => changes.push(c));
    const offReports = kernel.nftMonitor((r) => reports.push(r));
    expect(kernel.listening).to.equal(true);
    const eth0 = kernel.addLink({ name: 'eth0' });
    kernel.overrun();
    kernel.nftReport();
    kernel.nftReport({ kind: 'unwatched', why: 'Operation not permitted' });
    expect(changes).to.deep.equal([{ kind: 'link', op: 'new', link: eth0 }, { kind: 'overrun' }]);
    expect(reports).to.deep.equal([{ kind: 'newgen' }, { kind: 'unwatched', why: 'Operation not permitted' }]);
    offChanges();
    expect(kernel.listening, 'the nf_tables subscription still listens').to.equal(true);
    offReports();
    expect(kernel.listening).to.equal(false);
  });

  it('the reconcile loop, subscribed to kernel object changes, never receives an nf_tables report', async () => {
    const kernel = new FakeKernel();
    const heard: KernelChange[] = [];
    const reconciler = {
      pending: false,
      apply: async () => ({ full: true, ops: 0, failed: 0 }),
      requestFull: () => undefined,
      driftOf: (change: KernelChange) => {
        heard.push(change);
        return null;
      },
    } as unknown as Reconciler;
    const loop = new ReconcileLoop({ reconciler, log: silentLogger(), kernel });
    expect(loop.listen()).to.equal(true);
    kernel.nftReport();
    kernel.nftReport({ kind: 'unwatched', why: 'Operation not permitted' });
    kernel.nftReport({ kind: 'overrun' });
    const eth0 = kernel.addLink({ name: 'eth0' });
    kernel.overrun();
    await loop.stop();
    expect(heard).to.deep.equal([{ kind: 'link', op: 'new', link: eth0 }, { kind: 'overrun' }]);
    expect(kernel.listening).to.equal(false);
  });
});
