/**
 * Pure parts of the backend: the full-pass diff, VTEP MAC rules, MTU and
 * device compatibility. No kernel, no fake.
 */
import { expect } from 'chai';
import { incompatibility } from '../backend/vxlan/device.js';
import { isUnicastMac } from '../common/mac.js';
import { deriveVtepMac } from '../backend/vxlan/mac.js';
import { vxlanMtu } from '../backend/vxlan/vxlan.js';
import { deleteOps, entryKey, FullDiff, planFull, type Entry, type Owned } from '../backend/reconciler.js';
import type { Link, VxlanLinkSpec } from '../kernel/kernel.js';

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

describe('backend: VTEP MAC', () => {
  it('derives a stable, locally administered unicast MAC', () => {
    const mac = deriveVtepMac('198.18.0.1/1');
    expect(mac).to.equal(deriveVtepMac('198.18.0.1/1'));
    expect(mac).to.not.equal(deriveVtepMac('198.18.0.2/1'));
    const first = parseInt(mac.slice(0, 2), 16);
    expect(first & 0x02, 'locally administered').to.equal(0x02);
    expect(first & 0x01, 'unicast').to.equal(0);
  });

  it('accepts only lower-case unicast MACs', () => {
    expect(isUnicastMac('0a:00:00:00:00:01')).to.equal(true);
    expect(isUnicastMac('01:00:5e:00:00:01')).to.equal(false);
    expect(isUnicastMac('0A:00:00:00:00:01')).to.equal(false);
    expect(isUnicastMac('0a:00:00:00:00')).to.equal(false);
  });
});

describe('backend: vxlan MTU and device compatibility', () => {
  it('subtracts 50 over IPv4 and 70 over IPv6', () => {
    expect(vxlanMtu(1500, '198.18.0.1')).to.equal(1450);
    expect(vxlanMtu(9001, '198.18.0.1')).to.equal(8951);
    expect(vxlanMtu(1500, '2001:db8::1')).to.equal(1430);
  });

  const spec: VxlanLinkSpec = { name: 'flannel.1', mac: '0a:00:00:00:00:01', mtu: 1450, vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: 2, learning: false, gbp: false };
  const link = (vx: Partial<NonNullable<Link['vxlan']>>, kind = 'vxlan'): Link => ({
    index: 7, name: 'flannel.1', mac: '0a:00:00:00:00:07', mtu: 1400, up: true, kind,
    vxlan: { vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: 2, learning: true, gbp: false, ...vx },
  });
  const table: Array<[string, Link, string | null]> = [
    ['same config (MTU, learning and MAC differ): compatible', link({}), null],
    ['other VNI', link({ vni: 2 }), 'VNI 2 != 1'],
    ['other port', link({ port: 4789 }), 'port 4789 != 8472'],
    ['other local', link({ local: '198.18.0.9' }), 'local 198.18.0.9 != 198.18.0.1'],
    ['other underlay', link({ underlayIndex: 3 }), 'underlay #3 != #2'],
    ['gbp on', link({ gbp: true }), 'gbp true != false'],
    ['not vxlan', { ...link({}), kind: 'bridge' }, 'is a bridge device'],
  ];
  for (const [name, l, why] of table) {
    it(name, () => expect(incompatibility(l, spec)).to.equal(why));
  }
});
