/**
 * The reconciler (backend/reconciler.ts): the full-pass diff of desired
 * against held entries, the order of deletions, reuse of the desired entries
 * by an idle full pass, and, through the vxlan backend on the in-memory
 * kernel, round trips, batching, stale entries removed at start and failed
 * peers kept dirty; and which of two peers claiming one kernel entry gets it.
 */
import { expect } from 'chai';
import { RTPROT_BOOT, RTPROT_WEFT } from '../kernel/kernel.js';
import { FakeKernel } from '../kernel/kernel-fake.js';
import type { Lease } from '../lease/types.js';
import { deleteOps, desiredEntries, entryKey, FullDiff, planFull, Reconciler, type Entry, type Owned, type Ownership, type Programmer } from '../backend/reconciler.js';
import { lease, log, peersOf, recordingLogger, rig, settle, stop, summary } from './harness/backend-rig.js';

const neigh = (ip: string, mac: string): Entry => ({ kind: 'neigh', ifindex: 5, ip, mac });
const fdb = (mac: string, dst: string): Entry => ({ kind: 'fdb', ifindex: 5, mac, dst });
const route = (dst: string, gw: string): Entry => ({ kind: 'route', dst, gw, oif: 5, onlink: true });

function desired(...entries: Array<[string, Entry]>): Map<string, Owned> {
  return new Map(entries.map(([peer, entry]) => [entryKey(entry), { peer, entry }]));
}
function actual(...entries: Entry[]): Map<string, Entry> {
  return new Map(entries.map((e) => [entryKey(e), e]));
}

describe('backend: planFull (desired vs kernel diff)', () => {
  const A = '10.244.2.0/24';
  const cases: Array<{ name: string; desired: Map<string, Owned>; actual: Map<string, Entry>; deletes: string[]; sets: string[] }> = [
    { name: 'empty kernel: write everything', desired: desired([A, neigh('10.244.2.0', '0a:00:00:00:00:02')], [A, route(A, '10.244.2.0')]), actual: actual(), deletes: [], sets: ['neigh 5 10.244.2.0', `route ${A}`] },
    { name: 'in sync: nothing', desired: desired([A, neigh('10.244.2.0', '0a:00:00:00:00:02')]), actual: actual(neigh('10.244.2.0', '0a:00:00:00:00:02')), deletes: [], sets: [] },
    { name: 'stale entry of a vanished peer: delete', desired: desired(), actual: actual(fdb('0a:00:00:00:00:09', '198.18.0.9')), deletes: ['fdb 5 0a:00:00:00:00:09'], sets: [] },
    { name: 'changed MAC: rewrite neighbour', desired: desired([A, neigh('10.244.2.0', '0a:00:00:00:00:03')]), actual: actual(neigh('10.244.2.0', '0a:00:00:00:00:02')), deletes: [], sets: ['neigh 5 10.244.2.0'] },
    { name: 'changed public IP: rewrite FDB', desired: desired([A, fdb('0a:00:00:00:00:02', '198.18.0.3')]), actual: actual(fdb('0a:00:00:00:00:02', '198.18.0.2')), deletes: [], sets: ['fdb 5 0a:00:00:00:00:02'] },
    { name: 'route lost onlink: rewrite', desired: desired([A, route(A, '10.244.2.0')]), actual: actual({ ...(route(A, '10.244.2.0') as Extract<Entry, { kind: 'route' }>), onlink: false }), deletes: [], sets: [`route ${A}`] },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const plan = planFull(c.desired, c.actual);
      expect(plan.deletes.map(entryKey)).to.deep.equal(c.deletes);
      expect(plan.sets.map((s) => entryKey(s.entry))).to.deep.equal(c.sets);
    });
  }

  it('fed entry by entry as dumped: the later of two held entries with one key counts, and every unwanted one is deleted', () => {
    const want = desired([A, fdb('0a:00:00:00:00:02', '198.18.0.2')], [A, neigh('10.244.2.0', '0a:00:00:00:00:02')]);
    const diff = new FullDiff(want);
    // The FDB entry first held stale, then as wanted (a second remote of the MAC): in place.
    diff.held(fdb('0a:00:00:00:00:02', '198.18.0.9'));
    diff.held(fdb('0a:00:00:00:00:02', '198.18.0.2'));
    // The neighbour first as wanted, then with another MAC: to be rewritten.
    diff.held(neigh('10.244.2.0', '0a:00:00:00:00:02'));
    diff.held(neigh('10.244.2.0', '0a:00:00:00:00:07'));
    // Two remotes of a MAC no peer has: both go.
    diff.held(fdb('0a:00:00:00:00:09', '198.18.0.9'));
    diff.held(fdb('0a:00:00:00:00:09', '198.18.0.10'));
    const plan = diff.plan();
    expect(plan.sets.map((s) => entryKey(s.entry))).to.deep.equal(['neigh 5 10.244.2.0']);
    expect(plan.deletes).to.deep.equal([fdb('0a:00:00:00:00:09', '198.18.0.9'), fdb('0a:00:00:00:00:09', '198.18.0.10')]);
  });

  it('orders deletions route, neighbour, FDB (flannel removal order)', () => {
    const ops = deleteOps([fdb('0a:00:00:00:00:02', '198.18.0.2'), neigh('10.244.2.0', '0a:00:00:00:00:02'), route('10.244.2.0/24', '10.244.2.0')]);
    expect(ops.map((o) => o.op)).to.deep.equal(['routeDel', 'neighDel', 'fdbDel']);
  });
});

describe('backend: reconciler passes through the vxlan backend (fake kernel)', () => {
  it('sends one event in two round trips (neighbour+FDB, then route)', async () => {
    const r = await rig();
    r.feed.push({ events: [], peers: peersOf(), resync: true });
    await settle(r);
    const before = r.kernel.applyCalls;
    const c = lease('10.244.3.0/24', '198.18.0.3');
    r.feed.push({ events: [{ type: 'added', lease: c }], peers: peersOf(c), resync: false });
    await settle(r);
    expect(r.kernel.applyCalls - before).to.equal(2);
    await stop(r);
  });

  it('programs 5000 peers in a handful of round trips', async () => {
    const r = await rig();
    const leases: Lease[] = [];
    for (let i = 0; i < 5000; i++) {
      const sub = `10.${100 + (i >> 8)}.${i & 255}.0/24`;
      leases.push(lease(sub, `198.18.${1 + (i >> 8)}.${i & 255}`, { mac: `0a:01:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` }));
    }
    // Peers outside Network would never be programmed by a real cluster; widen the check to the fake's tables.
    r.feed.push({ events: [], peers: peersOf(...leases), resync: true });
    // Counted at readiness: the first full pass only (the pass that follows the start of listening comes after).
    await r.net.ready;
    expect(r.kernel.applyCalls).to.be.at.most(2);
    await settle(r);
    expect(r.kernel.state().neighs).to.have.length(5000);
    expect(r.kernel.state().routes).to.have.length(5000);
    await stop(r);
  });

  it('removes at start what belongs to peers that vanished while down, keeps foreign routes', async () => {
    const kernel = new FakeKernel();
    const eth0 = kernel.addLink({ name: 'eth0' });
    await kernel.addrAdd({ ifindex: eth0.index, cidr: '198.18.0.1/24' });
    const dev = await kernel.linkAdd({ name: 'flannel.1', mac: '0a:aa:00:00:00:01', mtu: 1450, vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: eth0.index, learning: false, gbp: false });
    // A peer flanneld programmed before (proto boot), gone from etcd now.
    kernel.inject({ neigh: { ifindex: dev.index, ip: '10.244.9.0', mac: '0a:00:00:00:00:09', permanent: true } });
    kernel.inject({ fdb: { ifindex: dev.index, mac: '0a:00:00:00:00:09', dst: '198.18.0.9', permanent: true } });
    kernel.inject({ route: { dst: '10.244.9.0/24', gw: '10.244.9.0', oif: dev.index, onlink: true, proto: RTPROT_BOOT } });
    // An administrator's route outside the overlay stays.
    kernel.inject({ route: { dst: '192.0.2.0/24', gw: '198.18.0.254', oif: eth0.index, onlink: false, proto: RTPROT_BOOT } });
    const r = await rig({ kernel });
    const b = lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' });
    r.feed.push({ events: [], peers: peersOf(b), resync: true });
    await settle(r);
    const s = summary(kernel);
    expect(s.neighs).to.deep.equal(['10.244.2.0 0a:00:00:00:00:02']);
    expect(s.fdbs).to.deep.equal(['0a:00:00:00:00:02 198.18.0.2']);
    expect(s.routes).to.deep.equal([`10.244.2.0/24 via 10.244.2.0 onlink #${dev.index} proto ${RTPROT_WEFT}`, `192.0.2.0/24 via 198.18.0.254 #${eth0.index} proto ${RTPROT_BOOT}`]);
    await stop(r);
  });

  it('keeps a failed peer dirty and retries it; holds its route back while neighbour/FDB fail', async () => {
    const r = await rig();
    r.kernel.failOps((op) => op.op === 'fdbReplace', 'ENOBUFS', 1);
    const b = lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' });
    const routesSeen: number[] = [];
    const origApply = r.kernel.apply.bind(r.kernel);
    r.kernel.apply = async (ops) => {
      routesSeen.push(ops.filter((o) => o.op === 'routeReplace').length);
      return origApply(ops);
    };
    r.feed.push({ events: [], peers: peersOf(b), resync: true });
    await settle(r);
    expect(routesSeen[1], "route held back in the first pass").to.equal(0);
    expect(summary(r.kernel).fdbs).to.deep.equal(['0a:00:00:00:00:02 198.18.0.2']);
    expect(summary(r.kernel).routes).to.have.length(1);
    expect(r.net.stats().failedOps).to.equal(1);
    await stop(r);
  });
});

/** A vxlan-shaped programmer on one device that counts how often it is asked for a lease's entries. */
class CountingProgrammer implements Programmer {
  calls = 0;
  basis = 'device';
  constructor(private readonly dev: number) {}
  async refresh(): Promise<{ ownership: Ownership; rebuilt: boolean }> {
    return { rebuilt: false, ownership: { neighDevices: [{ ifindex: this.dev, family: 4 }], fdbDevices: [this.dev], routeFamilies: [4], ownsRoute: (r) => r.proto === RTPROT_WEFT } };
  }
  entriesFor(l: Lease): readonly Entry[] {
    this.calls++;
    const mac = l.attrs.BackendData!.VtepMAC as string;
    const dev = this.dev;
    return [
      { kind: 'neigh', ifindex: dev, ip: l.subnet.ip, mac },
      { kind: 'fdb', ifindex: dev, mac, dst: l.attrs.PublicIP },
      { kind: 'route', dst: l.subnet.toString(), gw: l.subnet.ip, oif: dev, onlink: true },
    ];
  }
  entriesBasis(): string {
    return this.basis;
  }
}

describe('backend: a full pass with nothing changed reuses the desired entries (fake kernel)', () => {
  it('builds them again only after a peer change, a delta pass or another basis, and still repairs drift', async () => {
    const kernel = new FakeKernel();
    const dev = kernel.addLink({ name: 'flannel.1', mtu: 1450 }).index;
    const programmer = new CountingProgrammer(dev);
    const rec = new Reconciler({ kernel, programmer, log });
    const a = lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' });
    const b = lease('10.244.3.0/24', '198.18.0.3', { mac: '0a:00:00:00:00:03' });
    rec.setPeers(peersOf(a, b));
    await rec.apply();
    expect(programmer.calls).to.equal(2);
    const programmed = summary(kernel);

    // The safety-net pass on an idle node: no entry built, and drift found by the dump is still repaired.
    kernel.remove({ route: '10.244.3.0/24' });
    kernel.remove({ fdb: '0a:00:00:00:00:02', ifindex: dev });
    rec.requestFull();
    expect(await rec.apply()).to.include({ full: true, ops: 2, failed: 0 });
    expect(programmer.calls).to.equal(2);
    expect(summary(kernel)).to.deep.equal(programmed);
    expect(rec.stats().entries).to.equal(6);

    // Another device index or underlay: built again.
    programmer.basis = 'another underlay';
    rec.requestFull();
    await rec.apply();
    expect(programmer.calls).to.equal(4);

    // A peer change, as a delta then a full pass: the full pass builds again, and sees the peer gone.
    rec.update(peersOf(a), [{ key: b.subnet.toString(), removed: b }]);
    await rec.apply();
    rec.requestFull();
    await rec.apply();
    expect(programmer.calls).to.equal(5);
    expect(summary(kernel).routes).to.have.length(1);
    rec.requestFull();
    await rec.apply();
    expect(programmer.calls, 'reused again once nothing changes').to.equal(5);
  });
});

/**
 * Two peers can claim one kernel entry: with the vxlan programmer, two leases
 * with the same VtepMAC (a cloned VM, a copied state directory) both want the
 * FDB entry keyed by that MAC, each towards its own public IP. The rule, in
 * one place (desiredEntries, also weftctl diff's): the first peer in the peer
 * map keeps the entry; a full pass logs the other's claim and does not
 * program it.
 */
describe('backend: reconciler, two peers claiming one kernel entry (fake kernel)', () => {
  const MAC = '0a:00:00:00:00:0a';
  const a = lease('10.244.2.0/24', '198.18.0.2', { mac: MAC });
  const b = lease('10.244.3.0/24', '198.18.0.3', { mac: MAC });
  const c = lease('10.244.4.0/24', '198.18.0.4', { mac: MAC });

  function shared(): { kernel: FakeKernel; dev: number; rec: Reconciler; warnings: Array<Record<string, unknown>> } {
    const kernel = new FakeKernel();
    const dev = kernel.addLink({ name: 'flannel.1', mtu: 1450 }).index;
    const recorded = recordingLogger();
    return { kernel, dev, rec: new Reconciler({ kernel, programmer: new CountingProgrammer(dev), log: recorded.log }), warnings: recorded.warnings };
  }
  const claims = (warnings: Array<Record<string, unknown>>) =>
    warnings.filter((w) => w.message === 'two peers claim one kernel entry; keeping the first').map(({ entry, peer, other }) => ({ entry, peer, other }));

  it('desiredEntries: the first peer in the map keeps an entry, every other claim is reported; a skipped lease claims nothing', () => {
    const dev = 7;
    const programmer = new CountingProgrammer(dev);
    const conflicts: string[] = [];
    const desired = desiredEntries(peersOf(a, b, c), programmer, (key, peer, holder) => conflicts.push(`${key}: ${peer} (held by ${holder})`));
    expect(desired.get(`fdb ${dev} ${MAC}`)).to.deep.include({ peer: '10.244.2.0/24' });
    expect(desired.size).to.equal(7);
    expect(conflicts).to.deep.equal([`fdb ${dev} ${MAC}: 10.244.3.0/24 (held by 10.244.2.0/24)`, `fdb ${dev} ${MAC}: 10.244.4.0/24 (held by 10.244.2.0/24)`]);
    const skipA: Pick<Programmer, 'entriesFor'> = { entriesFor: (l) => (l === a ? null : programmer.entriesFor(l)) };
    expect(desiredEntries(peersOf(a, b), skipA).get(`fdb ${dev} ${MAC}`)).to.deep.include({ peer: '10.244.3.0/24' });
  });

  it('full pass: the first peer in the peer map keeps the entry, the second\'s is not programmed, with one warning', async () => {
    const { kernel, dev, rec, warnings } = shared();
    rec.setPeers(peersOf(a, b));
    expect(await rec.apply()).to.include({ full: true, failed: 0 });
    expect(summary(kernel).fdbs).to.deep.equal([`${MAC} 198.18.0.2`]);
    // Only the shared entry is contested: each peer keeps its own neighbour and route.
    expect(summary(kernel).neighs).to.deep.equal([`10.244.2.0 ${MAC}`, `10.244.3.0 ${MAC}`]);
    expect(summary(kernel).routes).to.have.length(2);
    expect(claims(warnings)).to.deep.equal([{ entry: `fdb ${dev} ${MAC}`, peer: '10.244.3.0/24', other: '10.244.2.0/24' }]);

    // "First" is the peer map's order, not the subnet's.
    const other = shared();
    other.rec.setPeers(peersOf(b, a));
    await other.rec.apply();
    expect(summary(other.kernel).fdbs).to.deep.equal([`${MAC} 198.18.0.3`]);
    expect(claims(other.warnings)).to.deep.equal([{ entry: `fdb ${other.dev} ${MAC}`, peer: '10.244.2.0/24', other: '10.244.3.0/24' }]);
  });

  it('full pass: once the first claimant is gone, the second claimant\'s entry is programmed', async () => {
    // Gone by a resync that no longer lists it.
    const resync = shared();
    resync.rec.setPeers(peersOf(a, b));
    await resync.rec.apply();
    resync.rec.setPeers(peersOf(b));
    expect(await resync.rec.apply()).to.include({ full: true, failed: 0 });
    expect(summary(resync.kernel).fdbs).to.deep.equal([`${MAC} 198.18.0.3`]);
    expect(summary(resync.kernel).routes).to.have.length(1);

    // Gone by a removal event, then a full pass (periodic, or a repair).
    const removal = shared();
    removal.rec.setPeers(peersOf(a, b));
    await removal.rec.apply();
    removal.rec.update(peersOf(b), [{ key: a.subnet.toString(), removed: a }]);
    await removal.rec.apply();
    removal.rec.requestFull();
    expect(await removal.rec.apply()).to.include({ full: true, failed: 0 });
    expect(summary(removal.kernel).fdbs).to.deep.equal([`${MAC} 198.18.0.3`]);
    expect(summary(removal.kernel).neighs).to.deep.equal([`10.244.3.0 ${MAC}`]);
  });

  // A delta follows the full pass's rule: when the holder of a shared entry goes (or drops it), the peer whose
  // claim lost takes it over in the same pass, instead of the entry going missing until the next full pass.
  it('delta: when the first claimant goes (removed, or changed to another MAC), the second claimant\'s entry is programmed in the same pass', async () => {
    const a2 = lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:0b' });
    const ways: Array<[string, (rec: Reconciler) => void, string[]]> = [
      ['removed', (rec) => rec.update(peersOf(b), [{ key: a.subnet.toString(), removed: a }]), [`${MAC} 198.18.0.3`]],
      ['changed', (rec) => rec.update(peersOf(a2, b), [{ key: a.subnet.toString() }]), [`${MAC} 198.18.0.3`, '0a:00:00:00:00:0b 198.18.0.2']],
    ];
    for (const [how, leave, fdbs] of ways) {
      const { kernel, rec } = shared();
      rec.setPeers(peersOf(a, b));
      await rec.apply();
      leave(rec);
      expect(await rec.apply(), how).to.include({ full: false, failed: 0 });
      expect(summary(kernel).fdbs, how).to.deep.equal(fdbs);
    }
  });

  // A delta never lets a newcomer take over an entry another peer holds: the entry would otherwise flip between
  // two public IPs with each delta and full pass.
  it('delta: a peer added with a claim on an entry another peer holds does not take it over', async () => {
    const { kernel, rec, warnings } = shared();
    rec.setPeers(peersOf(b));
    await rec.apply();
    rec.update(peersOf(b, c), [{ key: c.subnet.toString() }]);
    expect(await rec.apply()).to.include({ full: false, failed: 0 });
    expect(summary(kernel).fdbs).to.deep.equal([`${MAC} 198.18.0.3`]);
    expect(summary(kernel).routes).to.have.length(2);
    expect(claims(warnings)).to.have.length(1);
    rec.requestFull();
    await rec.apply();
    expect(summary(kernel).fdbs, 'the full pass agrees').to.deep.equal([`${MAC} 198.18.0.3`]);
  });
});
