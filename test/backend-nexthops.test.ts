/**
 * Peer routes through nexthop objects (backend/nexthops.ts) on the in-memory
 * kernel: detection and the flag, the ids, both backends' entries, adoption
 * of flanneld's onlink routes without a moment without a route, the way back
 * to plain routes, drift, another owner's nexthop ids, and the fallback on a
 * kernel that refuses nexthop objects.
 */
import { expect } from 'chai';
import { WeftError } from '../common/errors.js';
import { Subnet } from '../common/subnet.js';
import { RTPROT_BOOT, RTPROT_WEFT, type KernelChange } from '../kernel/kernel.js';
import { FakeKernel } from '../kernel/kernel-fake.js';
import { detectNexthops, nexthopId } from '../backend/nexthops.js';
import { entryKey, foldNexthops, sameEntry, type Entry } from '../backend/reconciler.js';
import { diffEntries } from '../weftctl/diff.js';
import { lease, log, nexthopSummary, peersOf, quiet, recordingLogger, rig, settle, stop, summary, waitFor } from './harness/backend-rig.js';

const P = RTPROT_WEFT;
const b = (): ReturnType<typeof lease> => lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' });
const c = (): ReturnType<typeof lease> => lease('10.244.3.0/24', '198.18.0.3', { mac: '0a:00:00:00:00:03' });

describe('backend: peer routes through nexthop objects (fake kernel)', () => {
  describe('detection and ids', () => {
    it('auto and on use nexthops where the kernel has them; the probe leaves nothing behind and avoids taken ids', async () => {
      const kernel = new FakeKernel();
      kernel.inject({ nexthop: { id: 0x57000000, gw: null, oif: 0, onlink: false, proto: RTPROT_BOOT, blackhole: true } });
      const changes: KernelChange[] = [];
      kernel.monitor((ch) => changes.push(ch));
      expect(await detectNexthops(kernel, 'auto', log)).to.deep.equal({ kernel: true, use: true });
      expect(await detectNexthops(kernel, 'on', log)).to.deep.equal({ kernel: true, use: true });
      expect(await detectNexthops(kernel, 'off', log)).to.deep.equal({ kernel: true, use: false });
      expect(kernel.state().nexthops.map((n) => n.id)).to.deep.equal([0x57000000]);
      // The foreign id was never written: the probe took the next one.
      expect(changes.filter((ch) => ch.kind === 'nexthop').map((ch) => ch.kind === 'nexthop' && ch.nexthop.id)).to.deep.equal([0x57000001, 0x57000001, 0x57000001, 0x57000001]);
    });

    it('a kernel that refuses nexthop objects: auto falls back, off does not care, on fails naming the kernel', async () => {
      const kernel = new FakeKernel();
      kernel.refuseNexthops = true;
      const rec = recordingLogger();
      expect(await detectNexthops(kernel, 'auto', rec.log)).to.deep.equal({ kernel: false, use: false });
      expect(rec.infos.join('\n')).to.match(/peer routes carry their own gateway: the kernel does not list nexthop objects \(EOPNOTSUPP\)/);
      expect(await detectNexthops(kernel, 'off', log)).to.deep.equal({ kernel: false, use: false });
      const err = await detectNexthops(kernel, 'on', log).then(() => null, (e: unknown) => e);
      expect(err).to.be.instanceOf(WeftError).with.property('code', 'WEFT_ERR_KERNEL');
      expect((err as Error).message).to.match(/--route-nexthops on: .*Linux 5\.3 or later/);
      // Lists but refuses to create one (a probe failure) is a fallback too.
      const half = new FakeKernel();
      half.failOps((op) => op.op === 'nexthopReplace', 'EPERM');
      expect(await detectNexthops(half, 'auto', log)).to.deep.equal({ kernel: true, use: false });
    });

    it('ids are the subnet index in the Network, stable and distinct; index 0 takes the first id past the last', () => {
      const net = Subnet.parse('10.244.0.0/16');
      const cases: Array<[string, number | null]> = [
        ['10.244.3.0/24', 3],
        ['10.244.255.0/24', 255],
        ['10.244.0.0/24', 256],
        ['10.244.1.16/28', 17],
        ['10.245.0.0/24', null],
        ['10.0.0.0/8', null],
      ];
      for (const [s, id] of cases) expect(nexthopId(net, Subnet.parse(s)), s).to.equal(id);
      expect(nexthopId(Subnet.parse('10.0.0.0/8'), Subnet.parse('10.1.2.0/24'))).to.equal(258);
      const ids = new Set(Array.from({ length: 256 }, (_, i) => nexthopId(net, Subnet.parse(`10.244.${i}.0/24`))));
      expect(ids.size).to.equal(256);
      expect(ids.has(0)).to.equal(false);
    });
  });

  describe('the reconciler with both forms', () => {
    const nh: Entry = { kind: 'nexthop', id: 3, gw: '10.244.3.0', oif: 5, onlink: true };
    const viaNh: Entry = { kind: 'route', dst: '10.244.3.0/24', gw: null, oif: 0, onlink: false, nhid: 3 };
    const onlink: Entry = { kind: 'route', dst: '10.244.3.0/24', gw: '10.244.3.0', oif: 5, onlink: true };

    it('a route by nhid and an onlink route share a key but differ, so one replace moves a route between forms', () => {
      expect(entryKey(viaNh)).to.equal(entryKey(onlink));
      expect(sameEntry(viaNh, onlink)).to.equal(false);
      expect(sameEntry(viaNh, { ...viaNh })).to.equal(true);
      expect(sameEntry(viaNh, { ...viaNh, nhid: 4 })).to.equal(false);
      expect(entryKey(nh)).to.equal('nexthop 3');
      expect(sameEntry(nh, { ...nh, gw: '10.244.3.1' })).to.equal(false);
    });

    it('foldNexthops puts a taken id\'s gateway back into the route and drops the nexthop', () => {
      const neigh: Entry = { kind: 'neigh', ifindex: 5, ip: '10.244.3.0', mac: '0a:00:00:00:00:03' };
      const entries = [neigh, nh, viaNh];
      expect(foldNexthops(entries, () => false)).to.equal(entries);
      expect(foldNexthops(entries, (id) => id === 3)).to.deep.equal([neigh, onlink]);
    });

    it('weftctl diff shows nexthops and routes by nhid as ip prints them', () => {
      const desired = new Map([
        [entryKey(nh), { peer: '10.244.3.0/24', entry: nh }],
        [entryKey(viaNh), { peer: '10.244.3.0/24', entry: viaNh }],
      ]);
      const lines = diffEntries(desired, new Map([[entryKey(onlink), onlink]]), () => 'flannel.1');
      expect(lines.map((l) => [l.status, l.kind, l.want, l.held])).to.deep.equal([
        ['missing', 'nexthop', 'id 3 via 10.244.3.0 dev flannel.1 onlink', null],
        ['wrong', 'route', '10.244.3.0/24 nhid 3', '10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink'],
      ]);
    });
  });

  describe('vxlan', () => {
    it('programs neighbour, FDB, nexthop and a route by nhid per peer; removes route, then nexthop', async () => {
      const r = await rig({ routeNexthops: 'on' });
      r.feed.push({ events: [], peers: peersOf(b(), c(), r.own), resync: true });
      await r.net.ready;
      await settle(r);
      const dev = await r.device();
      expect(nexthopSummary(r.kernel)).to.deep.equal({
        neighs: ['10.244.2.0 0a:00:00:00:00:02', '10.244.3.0 0a:00:00:00:00:03'],
        fdbs: ['0a:00:00:00:00:02 198.18.0.2', '0a:00:00:00:00:03 198.18.0.3'],
        nexthops: [`id 2 via 10.244.2.0 #${dev} onlink proto ${P}`, `id 3 via 10.244.3.0 #${dev} onlink proto ${P}`],
        routes: [`10.244.2.0/24 nhid 2 proto ${P}`, `10.244.3.0/24 nhid 3 proto ${P}`],
      });
      expect(r.net.stats()).to.include({ peers: 3, entries: 8 });

      const order: string[] = [];
      r.kernel.monitor((ch) => {
        if (ch.kind === 'route' || ch.kind === 'nexthop') order.push(`${ch.kind} ${ch.op}`);
      });
      r.feed.push({ events: [{ type: 'removed', lease: c() }], peers: peersOf(b(), r.own), resync: false });
      await settle(r);
      expect(order).to.deep.equal(['route del', 'nexthop del']);
      expect(nexthopSummary(r.kernel).nexthops).to.deep.equal([`id 2 via 10.244.2.0 #${dev} onlink proto ${P}`]);
      await stop(r);
    });

    it('DirectRouting: a peer on the underlay segment gets a nexthop via its public IP on the underlay', async () => {
      const r = await rig({ routeNexthops: 'on', backend: { directRouting: true } });
      r.feed.push({ events: [], peers: peersOf(b(), r.own), resync: true });
      await settle(r);
      const eth0 = (await r.kernel.linkByName('eth0'))!.index;
      expect(nexthopSummary(r.kernel)).to.deep.include({ nexthops: [`id 2 via 198.18.0.2 #${eth0} proto ${P}`], routes: [`10.244.2.0/24 nhid 2 proto ${P}`], neighs: [] });
      await stop(r);
    });

    it('adopts flanneld\'s onlink routes: each route is replaced by its nhid form, never deleted first', async () => {
      const kernel = new FakeKernel();
      // flanneld's node: device, entries and onlink routes (proto boot) for two peers, programmed by the first weft rig then handed over.
      const before = await rig({ kernel });
      before.feed.push({ events: [], peers: peersOf(b(), c(), before.own), resync: true });
      await settle(before);
      await stop(before);
      const dev = (await kernel.linkByName('flannel.1'))!.index;
      for (const s of ['10.244.2.0', '10.244.3.0']) kernel.inject({ route: { dst: `${s}/24`, gw: s, oif: dev, onlink: true, proto: RTPROT_BOOT } });
      const seen: string[] = [];
      kernel.monitor((ch) => {
        if (ch.kind === 'route' || ch.kind === 'nexthop') seen.push(`${ch.kind} ${ch.op} ${ch.kind === 'route' ? `${ch.route.dst}${ch.route.nhid ? ` nhid ${ch.route.nhid}` : ''}` : ch.nexthop.id}`);
      });
      const r = await rig({ kernel, routeNexthops: 'auto' });
      // The start-up probe's blackhole came and went.
      expect(seen.splice(0)).to.deep.equal([`nexthop new ${0x57000000}`, `nexthop del ${0x57000000}`]);
      r.feed.push({ events: [], peers: peersOf(b(), c(), r.own), resync: true });
      await settle(r);
      expect(seen).to.deep.equal(['nexthop new 2', 'nexthop new 3', 'route new 10.244.2.0/24 nhid 2', 'route new 10.244.3.0/24 nhid 3']);
      expect(nexthopSummary(kernel).routes).to.deep.equal([`10.244.2.0/24 nhid 2 proto ${P}`, `10.244.3.0/24 nhid 3 proto ${P}`]);
      await stop(r);

      // And back: forced off, routes get their gateways again before weft's nexthops go.
      seen.length = 0;
      const off = await rig({ kernel, routeNexthops: 'off' });
      off.feed.push({ events: [], peers: peersOf(b(), c(), off.own), resync: true });
      await settle(off);
      expect(seen).to.deep.equal(['route new 10.244.2.0/24', 'route new 10.244.3.0/24', 'nexthop del 2', 'nexthop del 3']);
      expect(nexthopSummary(kernel)).to.deep.include({ nexthops: [], routes: [`10.244.2.0/24 via 10.244.2.0 onlink #${dev} proto ${P}`, `10.244.3.0/24 via 10.244.3.0 onlink #${dev} proto ${P}`] });
      await stop(off);
    });

    it('repairs a nexthop deleted or changed outside weft, and removes one of weft\'s it does not want', async () => {
      const r = await rig({ routeNexthops: 'on' });
      r.feed.push({ events: [], peers: peersOf(b(), r.own), resync: true });
      await quiet(r);
      const dev = await r.device();
      const want = { nexthops: [`id 2 via 10.244.2.0 #${dev} onlink proto ${P}`], routes: [`10.244.2.0/24 nhid 2 proto ${P}`] };
      // Deleting the nexthop takes the route with it, unannounced; the nexthop's deletion is reported.
      r.kernel.remove({ nexthop: 2 });
      await waitFor(() => nexthopSummary(r.kernel).routes.length === 1);
      await quiet(r);
      expect(nexthopSummary(r.kernel)).to.deep.include(want);
      r.kernel.inject({ nexthop: { id: 2, gw: '10.244.2.9', oif: dev, onlink: true, proto: P } });
      await quiet(r);
      expect(nexthopSummary(r.kernel)).to.deep.include(want);
      r.kernel.inject({ nexthop: { id: 77, gw: '10.244.77.0', oif: dev, onlink: true, proto: P } });
      await quiet(r);
      expect(nexthopSummary(r.kernel)).to.deep.include(want);
      expect(r.net.stats().driftRepairs).to.be.at.least(3);
      await stop(r);
    });

    it('a peer whose id another owner holds gets an onlink route; that nexthop is never touched', async () => {
      const kernel = new FakeKernel();
      const foreign = { id: 3, gw: '198.18.0.77', oif: 0, onlink: false, proto: RTPROT_BOOT };
      const r = await rig({ kernel, routeNexthops: 'on' });
      const eth0 = (await kernel.linkByName('eth0'))!.index;
      kernel.inject({ nexthop: { ...foreign, oif: eth0 } });
      r.feed.push({ events: [], peers: peersOf(b(), c(), r.own), resync: true });
      await quiet(r);
      const dev = await r.device();
      expect(nexthopSummary(kernel)).to.deep.include({
        nexthops: [`id 2 via 10.244.2.0 #${dev} onlink proto ${P}`, `id 3 via 198.18.0.77 #${eth0} proto ${RTPROT_BOOT}`],
        routes: [`10.244.2.0/24 nhid 2 proto ${P}`, `10.244.3.0/24 via 10.244.3.0 onlink #${dev} proto ${P}`],
      });
      // Taken while weft runs: the peer moves to an onlink route, the newcomer keeps its id.
      kernel.inject({ nexthop: { id: 2, gw: '198.18.0.78', oif: eth0, onlink: false, proto: RTPROT_BOOT } });
      await quiet(r);
      expect(nexthopSummary(kernel)).to.deep.include({
        nexthops: [`id 2 via 198.18.0.78 #${eth0} proto ${RTPROT_BOOT}`, `id 3 via 198.18.0.77 #${eth0} proto ${RTPROT_BOOT}`],
      });
      expect(summary(kernel).routes).to.deep.equal([`10.244.2.0/24 via 10.244.2.0 onlink #${dev} proto ${P}`, `10.244.3.0/24 via 10.244.3.0 onlink #${dev} proto ${P}`]);
      await stop(r);
    });

    it('on a kernel that refuses nexthop objects, auto programs onlink routes as before', async () => {
      const kernel = new FakeKernel();
      kernel.refuseNexthops = true;
      const r = await rig({ kernel, routeNexthops: 'auto' });
      r.feed.push({ events: [], peers: peersOf(b(), r.own), resync: true });
      await quiet(r);
      const dev = await r.device();
      expect(nexthopSummary(kernel)).to.deep.include({ nexthops: [], routes: [`10.244.2.0/24 via 10.244.2.0 onlink #${dev} proto ${P}`] });
      expect(r.net.stats()).to.include({ entries: 3, failedOps: 0 });
      await stop(r);
    });
  });

  describe('host-gw', () => {
    it('programs a nexthop via the peer on the underlay and a route by nhid', async () => {
      const r = await rig({ hostgw: true, routeNexthops: 'on' });
      r.feed.push({ events: [], peers: peersOf(lease('10.244.2.0/24', '198.18.0.2', { type: 'host-gw' }), r.own), resync: true });
      await settle(r);
      const eth0 = (await r.kernel.linkByName('eth0'))!.index;
      expect(nexthopSummary(r.kernel)).to.deep.include({ nexthops: [`id 2 via 198.18.0.2 #${eth0} proto ${P}`], routes: [`10.244.2.0/24 nhid 2 proto ${P}`] });
      await stop(r);
    });
  });
});
