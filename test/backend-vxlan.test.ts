/**
 * The vxlan backend (backend/vxlan/vxlan.ts) on the in-memory kernel: the
 * entries it programs per peer (neighbour, FDB, onlink route; with
 * DirectRouting a plain route for a peer on the underlay segment), the leases
 * it skips, lease events applied as deltas, and the device MTU. The device
 * itself is in backend-vxlan-device.test.ts.
 */
import { expect } from 'chai';
import type { PeerEvent } from '../lease/types.js';
import { RTPROT_WEFT } from '../kernel/kernel.js';
import { vxlanMtu } from '../backend/vxlan/vxlan.js';
import { lease, peersOf, rig, settle, stop, summary } from './harness/backend-rig.js';

describe('backend: vxlan peers (fake kernel)', () => {
  it('programs neighbour, FDB and onlink route per peer on the first resync, then is ready', async () => {
    const r = await rig();
    const b = lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' });
    const c = lease('10.244.3.0/24', '198.18.0.3', { mac: '0a:00:00:00:00:03' });
    r.feed.push({ events: [], peers: peersOf(b, c, r.own), resync: true });
    await r.net.ready;
    await settle(r);
    const dev = await r.device();
    expect(summary(r.kernel)).to.deep.equal({
      neighs: ['10.244.2.0 0a:00:00:00:00:02', '10.244.3.0 0a:00:00:00:00:03'],
      fdbs: ['0a:00:00:00:00:02 198.18.0.2', '0a:00:00:00:00:03 198.18.0.3'],
      routes: [`10.244.2.0/24 via 10.244.2.0 onlink #${dev} proto ${RTPROT_WEFT}`, `10.244.3.0/24 via 10.244.3.0 onlink #${dev} proto ${RTPROT_WEFT}`],
    });
    expect(r.net.stats()).to.include({ peers: 3, entries: 6 });
    await stop(r);
  });

  it('skips leases of another backend type, without a VtepMAC, and its own lease', async () => {
    const r = await rig();
    r.feed.push({
      events: [],
      peers: peersOf(r.own, lease('10.244.2.0/24', '198.18.0.2', { type: 'host-gw' }), lease('10.244.3.0/24', '198.18.0.3', { noMac: true }), lease('10.244.4.0/24', '198.18.0.4', { mac: '0a:00:00:00:00:04' })),
      resync: true,
    });
    await settle(r);
    expect(summary(r.kernel).neighs).to.deep.equal(['10.244.4.0 0a:00:00:00:00:04']);
    await stop(r);
  });

  it('applies added/changed/removed events as deltas; a changed MAC loses its old FDB entry', async () => {
    const r = await rig();
    const b = lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' });
    r.feed.push({ events: [], peers: peersOf(b), resync: true });
    await settle(r);

    const c = lease('10.244.3.0/24', '198.18.0.3', { mac: '0a:00:00:00:00:03' });
    let events: PeerEvent[] = [{ type: 'added', lease: c }];
    r.feed.push({ events, peers: peersOf(b, c), resync: false });
    await settle(r);
    expect(summary(r.kernel).fdbs).to.deep.equal(['0a:00:00:00:00:02 198.18.0.2', '0a:00:00:00:00:03 198.18.0.3']);

    const b2 = lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:22' });
    events = [{ type: 'changed', lease: b2, previous: b }];
    r.feed.push({ events, peers: peersOf(b2, c), resync: false });
    await settle(r);
    expect(summary(r.kernel).fdbs).to.deep.equal(['0a:00:00:00:00:03 198.18.0.3', '0a:00:00:00:00:22 198.18.0.2']);
    expect(summary(r.kernel).neighs).to.include('10.244.2.0 0a:00:00:00:00:22');

    events = [{ type: 'removed', lease: c }];
    r.feed.push({ events, peers: peersOf(b2), resync: false });
    await settle(r);
    const s = summary(r.kernel);
    expect(s.neighs).to.deep.equal(['10.244.2.0 0a:00:00:00:00:22']);
    expect(s.fdbs).to.deep.equal(['0a:00:00:00:00:22 198.18.0.2']);
    expect(s.routes).to.have.length(1);
    await stop(r);
  });
});

describe('backend: vxlan DirectRouting (fake kernel)', () => {
  it('DirectRouting: a peer on the underlay segment gets `S via PublicIP`, others the vxlan entries', async () => {
    const r = await rig({ backend: { directRouting: true } });
    const near = lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' });
    const far = lease('10.244.3.0/24', '198.19.0.3', { mac: '0a:00:00:00:00:03' });
    r.feed.push({ events: [], peers: peersOf(near, far), resync: true });
    await settle(r);
    const dev = await r.device();
    const s = summary(r.kernel);
    expect(s.routes).to.deep.equal([`10.244.2.0/24 via 198.18.0.2 #1 proto ${RTPROT_WEFT}`, `10.244.3.0/24 via 10.244.3.0 onlink #${dev} proto ${RTPROT_WEFT}`]);
    expect(s.neighs).to.deep.equal(['10.244.3.0 0a:00:00:00:00:03']);
    await stop(r);
  });
});

describe('backend: vxlan MTU', () => {
  it('subtracts 50 over IPv4 and 70 over IPv6', () => {
    expect(vxlanMtu(1500, '198.18.0.1')).to.equal(1450);
    expect(vxlanMtu(9001, '198.18.0.1')).to.equal(8951);
    expect(vxlanMtu(1500, '2001:db8::1')).to.equal(1430);
  });
});
