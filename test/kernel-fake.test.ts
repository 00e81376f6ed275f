/**
 * The fake kernel's semantics where tests rely on them matching Linux's: link
 * and address dumps, its two subscriptions (which one hears what), and IPv6
 * entries beside IPv4 ones (what `ip -6` shows, refuses and reports).
 */
import { expect } from 'chai';
import { ReconcileLoop } from '../backend/reconcile-loop.js';
import type { Reconciler } from '../backend/reconciler.js';
import { silentLogger } from '../common/log.js';
import { addrsOn } from '../kernel/addresses.js';
import { FakeKernel } from '../kernel/kernel-fake.js';
import { RTPROT_WEFT, type KernelChange, type NftChange } from '../kernel/kernel.js';

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

describe('fake kernel: IPv6 beside IPv4', () => {
  async function dualStack() {
    const kernel = new FakeKernel();
    const eth0 = kernel.addLink({ name: 'eth0' });
    await kernel.addrAdd({ ifindex: eth0.index, cidr: '198.18.0.1/24' });
    await kernel.addrAdd({ ifindex: eth0.index, cidr: '2001:2::1/64' });
    const v4 = await kernel.linkAdd({ name: 'flannel.1', mac: '0e:2a:00:00:00:01', mtu: 1450, vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: eth0.index, learning: false, gbp: false });
    const v6 = await kernel.linkAdd({ name: 'flannel-v6.1', mac: '0e:2a:00:00:00:02', mtu: 1430, vni: 1, port: 8472, local: '2001:2::1', underlayIndex: eth0.index, learning: false, gbp: false });
    await kernel.linkSetUp(eth0.index);
    return { kernel, eth0, v4, v6 };
  }

  it('keeps entries of both families side by side, and dumps the family asked for (IPv4 by default)', async () => {
    const { kernel, eth0, v4, v6 } = await dualStack();
    expect(v6.vxlan?.local).to.equal('2001:2::1');
    const results = await kernel.apply([
      { op: 'neighSet', neigh: { ifindex: v4.index, ip: '10.244.3.0', mac: '0e:2a:00:00:00:03' } },
      { op: 'neighSet', neigh: { ifindex: v6.index, ip: 'fd00:10:244:3::', mac: '0e:2a:00:00:00:04' } },
      { op: 'fdbReplace', fdb: { ifindex: v4.index, mac: '0e:2a:00:00:00:03', dst: '198.18.0.3' } },
      { op: 'fdbReplace', fdb: { ifindex: v6.index, mac: '0e:2a:00:00:00:04', dst: '2001:2::3' } },
      { op: 'routeReplace', route: { dst: '10.244.3.0/24', gw: '10.244.3.0', oif: v4.index, onlink: true } },
      { op: 'routeReplace', route: { dst: 'fd00:10:244:3::/64', gw: 'fd00:10:244:3::', oif: v6.index, onlink: true } },
      { op: 'nexthopReplace', nexthop: { id: 7, gw: '2001:2::3', oif: eth0.index, onlink: false } },
      { op: 'routeReplace', route: { dst: 'fd00:10:244:4::/64', gw: null, oif: 0, onlink: false, nhid: 7 } },
    ]);
    expect(results).to.deep.equal([null, null, null, null, null, null, null, null]);
    await kernel.addrAdd({ ifindex: v6.index, cidr: 'fd00:10:244:1::/128' });
    await kernel.blackholeReplace('fd00:10:244:1::/64');
    expect((await kernel.neighList(v6.index, 6)).map((n) => n.ip)).to.deep.equal(['fd00:10:244:3::']);
    expect(await kernel.neighList(v6.index)).to.deep.equal([]);
    expect((await kernel.neighList(v4.index)).map((n) => n.ip)).to.deep.equal(['10.244.3.0']);
    expect((await kernel.fdbList(v6.index)).map((f) => f.dst)).to.deep.equal(['2001:2::3']);
    expect((await kernel.routeList()).map((r) => r.dst)).to.deep.equal(['10.244.3.0/24']);
    expect(await kernel.routeList(6)).to.deep.equal([
      { dst: 'fd00:10:244:3::/64', gw: 'fd00:10:244:3::', oif: v6.index, onlink: true, proto: RTPROT_WEFT },
      { dst: 'fd00:10:244:4::/64', gw: '2001:2::3', oif: eth0.index, onlink: false, proto: RTPROT_WEFT, nhid: 7 },
    ]);
    const each: string[] = [];
    await kernel.routeEach((r) => each.push(r.dst), 6);
    await kernel.neighEach(v6.index, (n) => each.push(n.ip), 6);
    expect(each).to.deep.equal(['fd00:10:244:3::/64', 'fd00:10:244:4::/64', 'fd00:10:244:3::']);
    expect((await kernel.addrListAll()).map((a) => a.cidr)).to.deep.equal(['198.18.0.1/24']);
    expect(await kernel.addrListAll(6)).to.deep.equal([
      { ifindex: eth0.index, cidr: '2001:2::1/64', scope: 'global', permanent: true, deprecated: false, secondary: false, temporary: false },
      { ifindex: v6.index, cidr: 'fd00:10:244:1::/128', scope: 'global', permanent: true, deprecated: false, secondary: false, temporary: false },
    ]);
    expect([...kernel.blackholes]).to.deep.equal(['fd00:10:244:1::/64']);
    // An IPv6 address in the prefix of another is no secondary one (IPv6 has none).
    await kernel.addrAdd({ ifindex: eth0.index, cidr: '2001:2::5/64' });
    expect((await kernel.addrListAll(6)).find((a) => a.cidr === '2001:2::5/64')).to.include({ secondary: false });
  });

  it('refuses mixed families as the kernel does', async () => {
    const { kernel, eth0, v4, v6 } = await dualStack();
    await kernel.nexthopReplace({ id: 4, gw: '198.18.0.3', oif: eth0.index, onlink: false });
    await kernel.nexthopReplace({ id: 6, gw: '2001:2::3', oif: eth0.index, onlink: false });
    expect(
      await kernel.apply([
        // "IPv6 routes can not use an IPv4 nexthop"; IPv4 routes may go through an IPv6 one.
        { op: 'routeReplace', route: { dst: 'fd00:10:244:3::/64', gw: null, oif: 0, onlink: false, nhid: 4 } },
        { op: 'routeReplace', route: { dst: '10.244.3.0/24', gw: null, oif: 0, onlink: false, nhid: 6 } },
        { op: 'routeReplace', route: { dst: 'fd00:10:244:3::/64', gw: '198.18.0.3', oif: eth0.index, onlink: true } },
        // A vxlan device tunnels over its local's family only.
        { op: 'fdbReplace', fdb: { ifindex: v6.index, mac: '0e:2a:00:00:00:04', dst: '198.18.0.3' } },
        { op: 'fdbReplace', fdb: { ifindex: v4.index, mac: '0e:2a:00:00:00:04', dst: '2001:2::3' } },
      ]),
    ).to.deep.equal(['EINVAL', null, 'EINVAL', 'EAFNOSUPPORT', 'EAFNOSUPPORT']);
    // An IPv6 gateway must be reachable unless onlink, like IPv4's.
    expect(await kernel.apply([{ op: 'routeReplace', route: { dst: 'fd00:10:244:5::/64', gw: '2001:3::1', oif: eth0.index, onlink: false } }])).to.deep.equal(['ENETUNREACH']);
    expect(await kernel.apply([{ op: 'routeReplace', route: { dst: 'fd00:10:244:5::/64', gw: '2001:2::9', oif: eth0.index, onlink: false } }])).to.deep.equal([null]);
  });

  it('reports IPv6 changes to monitor: IPv6 routes gone with their link or nexthop are reported, IPv4 ones are not', async () => {
    const { kernel, eth0, v6 } = await dualStack();
    const underlay = kernel.addLink({ name: 'eth1' });
    await kernel.addrAdd({ ifindex: underlay.index, cidr: '2001:3::1/64' });
    await kernel.routeReplace({ dst: '10.99.0.0/24', gw: null, oif: underlay.index, onlink: false });
    await kernel.nexthopReplace({ id: 7, gw: '2001:2::3', oif: eth0.index, onlink: false });
    await kernel.routeReplace({ dst: 'fd00:10:244:4::/64', gw: null, oif: 0, onlink: false, nhid: 7 });
    await kernel.routeReplace({ dst: '10.244.4.0/24', gw: null, oif: 0, onlink: false, nhid: 7 });
    const changes: KernelChange[] = [];
    kernel.monitor((c) => changes.push(c));
    await kernel.neighSet({ ifindex: v6.index, ip: 'fd00:10:244:3::', mac: '0e:2a:00:00:00:04' });
    await kernel.routeReplace({ dst: 'fd00:10:244:9::/64', gw: '2001:3::9', oif: underlay.index, onlink: false });
    await kernel.nexthopDel({ id: 7 });
    await kernel.linkDel(underlay.index);
    expect(changes.map((c) => `${c.kind} ${'op' in c ? c.op : ''}`.trim() + ` ${shown(c)}`)).to.deep.equal([
      'neigh new fd00:10:244:3::',
      'route new fd00:10:244:9::/64',
      'nexthop del 7',
      'route del fd00:10:244:4::/64',
      'route del fd00:10:244:9::/64',
      'addr del 2001:3::1/64',
      'link del eth1',
    ]);
    expect(changes[3]).to.deep.equal({ kind: 'route', op: 'del', route: { dst: 'fd00:10:244:4::/64', gw: '2001:2::3', oif: eth0.index, onlink: false, proto: RTPROT_WEFT, nhid: 7 } });
    expect(await kernel.routeList()).to.deep.equal([]);
    expect(await kernel.routeList(6)).to.deep.equal([]);
  });
});

function shown(c: KernelChange): string {
  switch (c.kind) {
    case 'neigh':
      return c.neigh.ip;
    case 'route':
      return c.route.dst;
    case 'nexthop':
      return String(c.nexthop.id);
    case 'addr':
      return c.addr.cidr;
    case 'link':
      return c.link.name;
    default:
      return '';
  }
}
