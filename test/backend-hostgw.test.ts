/**
 * The host-gw backend (backend/hostgw/hostgw.ts) on the in-memory kernel: one
 * route via the peer per peer, off-segment peers skipped, its routes told from
 * others by protocol, and the underlay watched for going down and up.
 */
import { expect } from 'chai';
import { RTPROT_BOOT, RTPROT_WEFT } from '../kernel/kernel.js';
import { lease, passesSince, peersOf, quiet, rig, settle, stop, summary, waitFor } from './harness/backend-rig.js';

describe('backend: host-gw (fake kernel)', () => {
  it('host-gw: one route via the peer per peer; off-segment peers skipped; departed peers removed', async () => {
    const r = await rig({ hostgw: true });
    expect(r.net.leaseAttrs).to.deep.equal({ BackendType: 'host-gw' });
    expect(r.net.mtu).to.equal(1500);
    const b = lease('10.244.2.0/24', '198.18.0.2', { type: 'host-gw' });
    const c = lease('10.244.3.0/24', '198.18.0.3', { type: 'host-gw' });
    const far = lease('10.244.4.0/24', '203.0.113.4', { type: 'host-gw' });
    r.feed.push({ events: [], peers: peersOf(b, c, far), resync: true });
    await settle(r);
    expect(summary(r.kernel).routes).to.deep.equal([`10.244.2.0/24 via 198.18.0.2 #1 proto ${RTPROT_WEFT}`, `10.244.3.0/24 via 198.18.0.3 #1 proto ${RTPROT_WEFT}`]);
    r.feed.push({ events: [{ type: 'removed', lease: c }], peers: peersOf(b, far), resync: false });
    await settle(r);
    expect(summary(r.kernel).routes).to.deep.equal([`10.244.2.0/24 via 198.18.0.2 #1 proto ${RTPROT_WEFT}`]);
    expect(summary(r.kernel).neighs).to.deep.equal([]);
    await stop(r);
  });

  it('host-gw: a route replaced with another protocol is rewritten as weft\'s; the underlay going down and up is drift', async () => {
    const r = await rig({ hostgw: true });
    const b = lease('10.244.2.0/24', '198.18.0.2', { type: 'host-gw' });
    r.feed.push({ events: [], peers: peersOf(b), resync: true });
    await quiet(r);
    let before = r.net.stats();
    r.kernel.inject({ route: { dst: '10.244.2.0/24', gw: '198.18.0.2', oif: 1, onlink: false, proto: RTPROT_BOOT } });
    await waitFor(() => r.kernel.state().routes[0]?.proto === RTPROT_WEFT);
    await quiet(r);
    expect(passesSince(r, before)).to.deep.equal({ full: 1, drift: 1 });

    before = r.net.stats();
    r.kernel.alterLink(1, { up: false });
    await quiet(r);
    r.kernel.alterLink(1, { up: true });
    await quiet(r);
    expect(passesSince(r, before)).to.deep.equal({ full: 2, drift: 2 });
    await stop(r);
  });
});
