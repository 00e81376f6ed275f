import { expect } from 'chai';
import { createdBefore, olderRevision, publicIPProblem } from '../lease/admission.js';
import { parseNetworkConfig } from '../lease/config.js';
import type { RawKeyValue } from '../lease/lease-value.js';
import type { Registry } from '../lease/registry.js';
import { Subnet } from '../common/subnet.js';
import type { Lease } from '../lease/types.js';
import { LeaseWatcher } from '../lease/watcher.js';
import { publicIPv6Problem } from '../lease/admission.js';
import { NO_IPV4_SUBNET } from '../lease/keyspace.js';
import { validateLease } from '../lease/lease-value.js';
import * as ds from './harness/dual-stack-leases.js';

const P = '/coreos.com/network';
const config = parseNetworkConfig('{"Network":"10.244.0.0/16"}');
const value = (ip: string, mac: string) => JSON.stringify({ PublicIP: ip, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
/** A key created at revision `created`. */
const kv = (sn: string, v: string, created: string, mod = created): RawKeyValue => ({ key: `${P}/subnets/${sn}`, value: v, lease: '9', modRevision: mod, createRevision: created });
const del = (sn: string): RawKeyValue => ({ key: `${P}/subnets/${sn}`, value: '', lease: '0', modRevision: '99' });
const types = (b: { events: readonly { type: string; lease: { subnet: Subnet } }[] }) => b.events.map((e) => `${e.type} ${e.lease.subnet}`);

function watcher(opts: { own?: Lease | null; cfg?: typeof config; warnings?: string[] } = {}) {
  return new LeaseWatcher({
    registry: { prefix: P } as Registry,
    config: opts.cfg ?? config,
    ownSubnet: () => Subnet.parse('10.244.1.0/24'),
    ownPublicIP: '198.18.0.1',
    ownLease: () => opts.own ?? null,
    ...(opts.warnings ? { log: { warn: (m: string) => opts.warnings!.push(m) } as never } : {}),
  });
}

function ownLease(mac: string, created: string): Lease {
  return {
    subnet: Subnet.parse('10.244.1.0/24'),
    ipv6Subnet: null,
    attrs: { PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } },
    key: `${P}/subnets/10.244.1.0-24`,
    etcdLeaseId: '9',
    modRevision: created,
    createRevision: created,
  };
}

describe('lease admission: conflicts between leases (unit)', () => {
  it('orders etcd revisions as numbers, and a tie by key', () => {
    expect(olderRevision('9', '10')).to.equal(true);
    expect(olderRevision('10', '9')).to.equal(false);
    expect(olderRevision('12', '13')).to.equal(true);
    expect(createdBefore({ createRevision: '5', key: 'b' }, { createRevision: '5', key: 'a' })).to.equal(false);
  });

  it('a PublicIP that cannot be a tunnel endpoint: link-local, or inside the range leases come from', () => {
    expect(publicIPProblem('169.254.3.4', config)).to.match(/link-local/);
    expect(publicIPProblem('10.244.7.9', config)).to.match(/inside the range leases are taken from/);
    // Network's first /24 is outside the default SubnetMin: hosts there are a legal set-up.
    expect(publicIPProblem('10.244.0.5', config)).to.equal(null);
    expect(publicIPProblem('198.18.0.2', config)).to.equal(null);
  });

  it("refuses a lease whose subnet holds another node's PublicIP, never the node, and not for an unusable PublicIP", () => {
    // The classic mistake: Network covers the hosts' LAN; the hosts sit in its first /24, which SubnetMin skips.
    const lan = parseNetworkConfig('{"Network":"198.18.0.0/16"}');
    const w = watcher({ cfg: lan });
    const node2 = kv('198.18.2.0-24', value('198.18.0.2', '0e:00:00:00:00:02'), '2');
    w.apply({ type: 'snapshot', reason: 'initial', revision: '5', kvs: [node2] });
    expect([...w.current.keys()]).to.deep.equal(['198.18.2.0/24']);
    // A hand-written key for the hosts' own /24 would route every host's underlay address into the overlay.
    const put = w.apply({ type: 'events', revision: '6', events: [{ type: 'put', kv: kv('198.18.0.0-24', value('203.0.113.9', '0e:00:00:00:00:09'), '6') }] });
    expect(types(put)).to.deep.equal([]);
    expect(w.refusals()).to.have.length(1);
    expect(w.refusals()[0]).to.include({ subnet: '198.18.0.0/24', reason: 'covers-public-ip' });
    // Holding this node's own PublicIP counts too (198.18.0.1), even with no other lease in it.
    const alone = watcher({ cfg: lan });
    alone.apply({ type: 'snapshot', reason: 'initial', revision: '7', kvs: [kv('198.18.0.0-24', value('203.0.113.9', '0e:00:00:00:00:09'), '6')] });
    expect(alone.refusals()[0]!.detail).to.match(/holds the PublicIP 198.18.0.1 of this node/);
    // A bogus lease pointing its PublicIP into a good node's subnet is refused itself; the good one stays.
    const gone = w.apply({ type: 'events', revision: '8', events: [{ type: 'delete', kv: del('198.18.0.0-24') }, { type: 'put', kv: kv('198.18.3.0-24', value('198.18.2.7', '0e:00:00:00:00:03'), '8') }] });
    expect(types(gone)).to.deep.equal([]);
    expect(w.refusals().map((r) => `${r.subnet} ${r.reason}`)).to.deep.equal(['198.18.3.0/24 public-ip']);
    expect([...w.current.keys()]).to.deep.equal(['198.18.2.0/24']);
  });

  it('two leases with one VtepMAC: the older wins whichever arrives first, and the newer takes over when the older goes', () => {
    const warnings: string[] = [];
    const w = watcher({ warnings });
    const older = kv('10.244.2.0-24', value('198.18.0.2', '0e:00:00:00:00:02'), '10');
    const newer = kv('10.244.3.0-24', value('198.18.0.3', '0e:00:00:00:00:02'), '20');
    // Listed newer first: the verdict does not depend on order.
    const b = w.apply({ type: 'snapshot', reason: 'initial', revision: '30', kvs: [newer, older] });
    expect(types(b)).to.deep.equal(['added 10.244.2.0/24']);
    const [r] = w.refusals();
    expect(r).to.include({ subnet: '10.244.3.0/24', reason: 'duplicate-mac', winner: older.key });
    expect(warnings.join('\n')).to.match(/refusing lease .*10.244.3.0-24: VtepMAC 0e:00:00:00:00:02 is already advertised by the older lease .*10.244.2.0-24/);
    // The winner changes its PublicIP: still the winner, the loser still out.
    const moved = w.apply({ type: 'events', revision: '31', events: [{ type: 'put', kv: kv('10.244.2.0-24', value('198.18.0.12', '0e:00:00:00:00:02'), '10', '31') }] });
    expect(types(moved)).to.deep.equal(['changed 10.244.2.0/24']);
    // The winner goes: the loser becomes a peer in the same batch.
    const gone = w.apply({ type: 'events', revision: '32', events: [{ type: 'delete', kv: del('10.244.2.0-24') }] });
    expect(types(gone)).to.deep.equal(['added 10.244.3.0/24', 'removed 10.244.2.0/24']);
    expect(w.refusals()).to.deep.equal([]);
    expect(warnings).to.have.length(1);
  });

  it('a newcomer advertising a live peer\'s PublicIP is refused and never disturbs it', () => {
    const w = watcher();
    w.apply({ type: 'snapshot', reason: 'initial', revision: '30', kvs: [kv('10.244.2.0-24', value('198.18.0.2', '0e:00:00:00:00:02'), '10')] });
    const b = w.apply({ type: 'events', revision: '31', events: [{ type: 'put', kv: kv('10.244.9.0-24', value('198.18.0.2', '0e:00:00:00:00:09'), '31') }] });
    expect(types(b)).to.deep.equal([]);
    expect(w.refusals()[0]).to.include({ subnet: '10.244.9.0/24', reason: 'duplicate-public-ip' });
    expect(w.current.get('10.244.2.0/24')!.attrs.BackendData!.VtepMAC).to.equal('0e:00:00:00:00:02');
  });

  it('a lease refused for its PublicIP takes part in no conflict', () => {
    const w = watcher();
    const bogus = kv('10.244.2.0-24', value('169.254.0.9', '0e:00:00:00:00:07'), '5');
    const good = kv('10.244.3.0-24', value('198.18.0.3', '0e:00:00:00:00:07'), '6');
    w.apply({ type: 'snapshot', reason: 'initial', revision: '30', kvs: [bogus, good] });
    expect([...w.current.keys()]).to.deep.equal(['10.244.3.0/24']);
    expect(w.refusals().map((r) => r.reason)).to.deep.equal(['public-ip']);
  });

  it("this node's lease takes part: a newer lease with its MAC is refused; an older one shows as the own lease's loss", () => {
    const w = watcher({ own: ownLease('0e:00:00:00:00:01', '15') });
    w.apply({
      type: 'snapshot',
      reason: 'initial',
      revision: '30',
      kvs: [kv('10.244.2.0-24', value('198.18.0.2', '0e:00:00:00:00:01'), '20'), kv('10.244.1.0-24', value('198.18.0.1', '0e:00:00:00:00:01'), '15')],
    });
    expect(w.current.size).to.equal(0);
    expect(w.refusals()[0]).to.include({ subnet: '10.244.2.0/24', reason: 'duplicate-mac' });
    expect(w.ownLoss()).to.equal(null);

    const loser = watcher({ own: ownLease('0e:00:00:00:00:01', '25') });
    loser.apply({ type: 'snapshot', reason: 'initial', revision: '30', kvs: [kv('10.244.2.0-24', value('198.18.0.2', '0e:00:00:00:00:01'), '20')] });
    // Here the older peer is programmed (other nodes program it, not us), and the loss is reported.
    expect([...loser.current.keys()]).to.deep.equal(['10.244.2.0/24']);
    expect(loser.ownLoss()).to.include({ reason: 'duplicate-mac', winner: `${P}/subnets/10.244.2.0-24` });
  });

  it('judges a listing with conflicts the same whatever the order', () => {
    const kvs: RawKeyValue[] = [];
    const hex = (n: number) => n.toString(16).padStart(2, '0');
    for (let i = 2; i < 1000; i++) {
      // Every tenth lease repeats the MAC of the one before, every 25th its PublicIP.
      const m = i % 10 === 0 ? i - 1 : i;
      const p = i % 25 === 0 ? i - 1 : i;
      kvs.push(kv(`10.${244 + (i >> 8)}.${i & 255}.0-24`, value(`198.18.${p >> 8}.${p & 255}`, `0e:00:00:00:${hex(m >> 8)}:${hex(m & 255)}`), String(1000 + ((i * 7919) % 1000))));
    }
    const big = parseNetworkConfig('{"Network":"10.244.0.0/14"}');
    const a = watcher({ cfg: big });
    const b = watcher({ cfg: big });
    a.apply({ type: 'snapshot', reason: 'initial', revision: '1', kvs: [...kvs] });
    b.apply({ type: 'snapshot', reason: 'initial', revision: '1', kvs: [...kvs].reverse() });
    expect([...a.current.keys()].sort()).to.deep.equal([...b.current.keys()].sort());
    expect(a.refusals()).to.deep.equal(b.refusals());
    expect(a.refusals().length).to.be.greaterThan(100);
  });
});

describe('lease admission: a joining node\'s VTEP MAC (unit)', () => {
  const mk = (sn: string, ip: string, mac: string, created: string): Lease => ({
    subnet: Subnet.parse(sn),
    ipv6Subnet: null,
    attrs: { PublicIP: ip, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } },
    key: `${P}/subnets/${sn.replace('/', '-')}`,
    etcdLeaseId: '9',
    modRevision: created,
    createRevision: created,
  });
  it('names the older lease of another PublicIP with the same MAC, and nothing when this node\'s own lease is older', async () => {
    const { olderHolderOfMac } = await import('../lease/admission.js');
    const other = mk('10.244.2.0/24', '198.18.0.2', '0e:00:00:00:00:01', '10');
    expect(olderHolderOfMac([other], '0e:00:00:00:00:01', '198.18.0.1')?.key).to.equal(other.key);
    expect(olderHolderOfMac([other], '0e:00:00:00:00:02', '198.18.0.1')).to.equal(null);
    const mine = mk('10.244.1.0/24', '198.18.0.1', '0e:00:00:00:00:01', '5');
    expect(olderHolderOfMac([other, mine], '0e:00:00:00:00:01', '198.18.0.1')).to.equal(null);
    const mineNewer = mk('10.244.1.0/24', '198.18.0.1', '0e:00:00:00:00:01', '20');
    expect(olderHolderOfMac([other, mineNewer], '0e:00:00:00:00:01', '198.18.0.1')?.key).to.equal(other.key);
  });
});

describe('lease admission: dual-stack and IPv6-only (unit)', () => {
  const { dual, v6only, v4only, mac6, dualValue, v6Value } = ds;
  const kv6 = ds.kv;
  const watcher6 = (cfg = dual, own: { subnet?: Subnet; ip?: string; ip6?: string | null; lease?: Lease | null } = {}) =>
    new LeaseWatcher({
      registry: { prefix: P } as Registry,
      config: cfg,
      ownSubnet: () => own.subnet ?? Subnet.parse('10.244.1.0/24'),
      ownPublicIP: own.ip ?? '198.18.0.1',
      ownPublicIPv6: own.ip6 === undefined ? '2001:2::1' : own.ip6,
      ownLease: () => own.lease ?? null,
    });
  const snapshot6 = (kvs: RawKeyValue[]) => ({ type: 'snapshot' as const, reason: 'initial' as const, revision: '1', kvs });

  it('a PublicIPv6 that cannot be a tunnel endpoint: link-local, or inside the IPv6 range leases come from', () => {
    expect(publicIPv6Problem('fe80::1', dual)).to.match(/PublicIPv6 fe80::1 is link-local/);
    expect(publicIPv6Problem('fd00:10:244:7::9', dual)).to.match(/inside the range leases are taken from \(fd00:10:244:1:: to fd00:10:244:ffff:: of IPv6Network fd00:10:244::\/48\)/);
    expect(publicIPv6Problem('fd00:10:244::5', dual)).to.equal(null);
    expect(publicIPv6Problem('2001:2::2', dual)).to.equal(null);
    const w = watcher6();
    w.apply(snapshot6([kv6('10.244.2.0-24&fd00:10:244:2::-64', dualValue(2, { PublicIPv6: 'fe80::2' }))]));
    expect(w.current.size).to.equal(0);
    expect(w.refusals()[0]).to.include({ subnet: '10.244.2.0/24', reason: 'public-ip' });
  });

  it('two leases with one PublicIPv6 or one BackendV6Data VtepMAC: the older wins, and the next takes over when it goes', () => {
    const w = watcher6();
    const b = w.apply(snapshot6([
      kv6('10.244.2.0-24&fd00:10:244:2::-64', dualValue(2), '5'),
      kv6('10.244.3.0-24&fd00:10:244:3::-64', dualValue(3, { PublicIPv6: '2001:2::2' }), '6'),
      kv6('10.244.4.0-24&fd00:10:244:4::-64', dualValue(4, { BackendV6Data: { VNI: 1, VtepMAC: mac6(2) } }), '7'),
    ]));
    expect(b.events.map((e) => `${e.type} ${e.lease.subnet}`)).to.deep.equal(['added 10.244.2.0/24']);
    expect(w.refusals().map((r) => [r.subnet, r.reason, r.detail])).to.deep.equal([
      ['10.244.3.0/24', 'duplicate-public-ip', `PublicIPv6 2001:2::2 is already advertised by the older lease ${P}/subnets/10.244.2.0-24&fd00:10:244:2::-64`],
      ['10.244.4.0/24', 'duplicate-mac', `BackendV6Data.VtepMAC ${mac6(2)} is already advertised by the older lease ${P}/subnets/10.244.2.0-24&fd00:10:244:2::-64`],
    ]);
    const after = w.apply({ type: 'events', revision: '8', events: [{ type: 'delete', kv: { ...kv6('10.244.2.0-24&fd00:10:244:2::-64', ''), modRevision: '8' } }] });
    expect(after.events.map((e) => `${e.type} ${e.lease.subnet}`).sort()).to.deep.equal(['added 10.244.3.0/24', 'added 10.244.4.0/24', 'removed 10.244.2.0/24']);
  });

  it("a lease advertising this node's PublicIPv6, or whose IPv6 subnet holds it, is never a peer", () => {
    const w = watcher6(dual, { ip6: '2001:2::2' });
    w.apply(snapshot6([kv6('10.244.2.0-24&fd00:10:244:2::-64', dualValue(2))]));
    expect(w.refusals()[0]!.detail).to.equal("advertises this node's PublicIPv6 2001:2::2");
    const inside = watcher6(parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:2::/48","IPv6SubnetMin":"2001:2:0:1::"}'), { ip6: '2001:2:0:5::1' });
    inside.apply(snapshot6([kv6('10.244.5.0-24&2001:2:0:5::-64', dualValue(5, { PublicIPv6: '2001:db8::5' }))]));
    expect(inside.refusals()[0]).to.include({ reason: 'covers-public-ip', detail: 'its subnet 2001:2:0:5::/64 holds the PublicIPv6 2001:2:0:5::1 of this node' });
  });

  it("a lease whose IPv6 subnet holds another node's PublicIPv6 is refused whichever came first, never the node, and not for an unusable PublicIPv6", () => {
    // IPv6Network covers the hosts' IPv6 LAN: 2001:2::/64 (before IPv6SubnetMin) and 2001:2:0:f1::/64 (after IPv6SubnetMax) hold hosts.
    const lan6 = parseNetworkConfig('{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"2001:2::/48","IPv6SubnetMax":"2001:2:0:ef::"}');
    const node2 = kv6('10.244.2.0-24&2001:2:0:2::-64', dualValue(2, { PublicIPv6: '2001:2:0:f1::2' }), '5');
    const cover = kv6('10.244.9.0-24&2001:2:0:f1::-64', dualValue(9, { PublicIPv6: '2001:db8::9' }), '6');
    const detail = `its subnet 2001:2:0:f1::/64 holds the PublicIPv6 2001:2:0:f1::2 of ${P}/subnets/10.244.2.0-24&2001:2:0:2::-64`;
    // The node first, then the key that covers it.
    const w = watcher6(lan6);
    w.apply(snapshot6([node2]));
    const put = w.apply({ type: 'events', revision: '6', events: [{ type: 'put', kv: cover }] });
    expect(types(put)).to.deep.equal([]);
    expect([...w.current.keys()]).to.deep.equal(['10.244.2.0/24']);
    expect(w.refusals().map((r) => [r.subnet, r.reason, r.detail])).to.deep.equal([['10.244.9.0/24', 'covers-public-ip', detail]]);
    // The covering key first, then the node: the covering key turns refused, the node is a peer.
    const late = watcher6(lan6);
    late.apply(snapshot6([cover]));
    expect([...late.current.keys()]).to.deep.equal(['10.244.9.0/24']);
    const joined = late.apply({ type: 'events', revision: '7', events: [{ type: 'put', kv: node2 }] });
    expect(types(joined).sort()).to.deep.equal(['added 10.244.2.0/24', 'removed 10.244.9.0/24']);
    expect(late.refusals().map((r) => r.detail)).to.deep.equal([detail]);
    // The node goes: the covering key is a peer again.
    const left = late.apply({ type: 'events', revision: '8', events: [{ type: 'delete', kv: { ...node2, value: '', modRevision: '8' } }] });
    expect(types(left).sort()).to.deep.equal(['added 10.244.9.0/24', 'removed 10.244.2.0/24']);
    // An unusable PublicIPv6 (inside the range leases come from) gets nobody refused but its own lease.
    const bogus = watcher6(lan6);
    bogus.apply(snapshot6([kv6('10.244.3.0-24&2001:2:0:3::-64', dualValue(3, { PublicIPv6: '2001:2:0:4::3' }), '5'), kv6('10.244.4.0-24&2001:2:0:4::-64', dualValue(4, { PublicIPv6: '2001:db8::4' }), '6')]));
    expect(bogus.refusals().map((r) => `${r.subnet} ${r.reason}`)).to.deep.equal(['10.244.3.0/24 public-ip']);
    expect([...bogus.current.keys()]).to.deep.equal(['10.244.4.0/24']);
  });

  it('IPv4 network: PublicIPv6 and BackendV6Data are not looked at', () => {
    const w = watcher6(v4only);
    w.apply(snapshot6([kv6('10.244.2.0-24', dualValue(2), '5'), kv6('10.244.3.0-24', dualValue(3, { PublicIPv6: '2001:2::2', BackendV6Data: { VNI: 1, VtepMAC: mac6(2) } }), '6')]));
    expect([...w.current.keys()].sort()).to.deep.equal(['10.244.2.0/24', '10.244.3.0/24']);
  });

  it('IPv6-only network: peers keyed by IPv6 subnet, the shared unset PublicIP no conflict, the own lease excluded', () => {
    const own = validateLease(P, kv6('0.0.0.0-0&fd00:10:244:1::-64', v6Value(1)), v6only)!;
    const w = watcher6(v6only, { subnet: NO_IPV4_SUBNET, ip: '0.0.0.0', ip6: '2001:2::1', lease: own });
    const b = w.apply(snapshot6([kv6('0.0.0.0-0&fd00:10:244:1::-64', v6Value(1), '3'), kv6('0.0.0.0-0&fd00:10:244:2::-64', v6Value(2), '5'), kv6('0.0.0.0-0&fd00:10:244:3::-64', v6Value(3), '6')]));
    expect([...b.peers.keys()].sort()).to.deep.equal(['fd00:10:244:2::/64', 'fd00:10:244:3::/64']);
    expect(w.refusals()).to.deep.equal([]);
    const dup = w.apply({ type: 'events', revision: '7', events: [{ type: 'put', kv: kv6('0.0.0.0-0&fd00:10:244:4::-64', v6Value(2), '7') }] });
    expect(dup.events).to.deep.equal([]);
    expect(w.refusals()[0]).to.include({ subnet: 'fd00:10:244:4::/64', reason: 'duplicate-public-ip' });
  });
});
