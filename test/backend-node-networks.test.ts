/**
 * A peer lease that collides with the node's own networks is skipped on that
 * node (backend/node-networks.ts, through the reconciler on the fake kernel).
 */
import { expect } from 'chai';
import { Subnet } from '../common/subnet.js';
import { RTPROT_BOOT, RTPROT_KERNEL, type Route } from '../kernel/kernel.js';
import { NodeNetworks } from '../backend/node-networks.js';
import { FakeKernel } from '../kernel/kernel-fake.js';
import { lease, peersOf, quiet, recordingLogger, rig, settle, stop, summary, waitFor } from './harness/backend-rig.js';

const network = Subnet.parse('10.244.0.0/16');
const route = (dst: string, gw: string | null, proto = RTPROT_KERNEL, oif = 2): Route => ({ dst, gw, oif, onlink: false, proto });
const addr = (cidr: string, ifindex = 2) => ({ ifindex, cidr, scope: 'global', permanent: true, deprecated: false, secondary: false });

function known(routes: Route[], addrs: ReturnType<typeof addr>[] = []): NodeNetworks {
  const n = new NodeNetworks([network]);
  n.beginRead();
  routes.forEach((r) => n.readRoute(r));
  addrs.forEach((a) => n.readAddr(a));
  n.endRead();
  return n;
}

describe('backend: the node\'s own networks (unit)', () => {
  it('a route to the subnet or a part of it, an attached network around it and an own address inside it collide', () => {
    const n = known([route('10.244.5.0/24', null), route('10.244.6.128/25', '198.18.0.9', 4), route('10.244.8.0/22', null)], [addr('10.244.20.7/32', 1)]);
    expect(n.collisionWith(Subnet.parse('10.244.5.0/24'))?.entry).to.equal('route 10.244.5.0/24 dev #2 proto 2');
    expect(n.collisionWith(Subnet.parse('10.244.6.0/24'))?.entry).to.equal('route 10.244.6.128/25 via 198.18.0.9 dev #2 proto 4');
    expect(n.collisionWith(Subnet.parse('10.244.9.0/24'))?.entry).to.equal('route 10.244.8.0/22 dev #2 proto 2');
    expect(n.collisionWith(Subnet.parse('10.244.20.0/24'))?.entry).to.equal('address 10.244.20.7/32 on link #1');
    expect(n.collisionWith(Subnet.parse('10.244.7.0/24'))).to.equal(null);
  });

  it('routes via a gateway around the subnet, device default routes and routes outside Network do not collide', () => {
    const n = known([route('0.0.0.0/0', '198.18.0.254', RTPROT_BOOT), route('0.0.0.0/0', null, RTPROT_BOOT, 7), route('10.0.0.0/8', '198.18.0.254', RTPROT_BOOT), route('198.18.0.0/24', null)]);
    expect(n.collisionWith(Subnet.parse('10.244.3.0/24'))).to.equal(null);
  });

  it('a route to exactly the subnet via the peer itself is the route weft would write (flanneld\'s, adopted), not a collision', () => {
    const n = known([route('10.244.3.0/24', '198.18.0.3', RTPROT_BOOT)]);
    expect(n.collisionWith(Subnet.parse('10.244.3.0/24'), ['198.18.0.3', '10.244.3.0'])).to.equal(null);
    expect(n.collisionWith(Subnet.parse('10.244.3.0/24'), ['198.18.0.4'])).to.not.equal(null);
  });

  it('notifications keep it current, and a device rebuilt under a new index changes nothing', () => {
    const n = known([], [addr('10.244.1.0/32', 5)]);
    const nets = (xs: Subnet[]) => xs.map(String);
    expect(nets(n.noteRoute('new', route('10.244.4.0/24', null)))).to.deep.equal(['10.244.4.0/24']);
    expect(n.collisionWith(Subnet.parse('10.244.4.0/24'))).to.not.equal(null);
    expect(nets(n.noteRoute('del', route('10.244.4.0/24', null)))).to.deep.equal(['10.244.4.0/24']);
    expect(n.collisionWith(Subnet.parse('10.244.4.0/24'))).to.equal(null);
    expect(n.noteRoute('new', route('192.168.0.0/24', null))).to.deep.equal([]);
    expect(nets(n.noteAddr('del', addr('10.244.1.0/32', 5)))).to.deep.equal(['10.244.1.0/32']);
    expect(nets(n.noteAddr('new', addr('10.244.1.0/32', 6)))).to.deep.equal(['10.244.1.0/32']);
    // A deleted link takes its routes with it, without a notification each.
    n.noteRoute('new', route('10.244.5.0/24', null, RTPROT_KERNEL, 8));
    expect(nets(n.forgetLink(8))).to.deep.equal(['10.244.5.0/24']);
    expect(n.collisionWith(Subnet.parse('10.244.5.0/24'))).to.equal(null);
    n.beginRead();
    n.readAddr(addr('10.244.1.0/32', 9));
    expect(n.endRead()).to.equal(false);
  });
});

describe('backend: a peer that collides with the node\'s own networks is skipped (fake kernel)', () => {
  /** The classic mistake: a pod Network covering the hosts' LAN, 198.18.0.0/24 with the node on .1. */
  const lan = '198.18.0.0/24';

  async function lanRig(log = recordingLogger()) {
    const kernel = new FakeKernel();
    const eth0 = kernel.addLink({ name: 'eth0', mtu: 1500 });
    await kernel.addrAdd({ ifindex: eth0.index, cidr: '198.18.0.1/24' });
    kernel.inject({ route: { dst: lan, gw: null, oif: eth0.index, onlink: false, proto: RTPROT_KERNEL } });
    const r = await rig({ kernel, log: log.log, backend: {} });
    return { r, eth0, log };
  }

  it('a lease for a subnet that is a connected route never replaces it, and is programmed once the route is gone', async () => {
    const { r, eth0, log } = await lanRig();
    // The backend's Network is 10.244.0.0/16: a lease inside it with the LAN's own connected route inside it too.
    r.kernel.inject({ route: { dst: '10.244.7.0/24', gw: null, oif: eth0.index, onlink: false, proto: RTPROT_KERNEL } });
    const bad = lease('10.244.7.0/24', '198.18.0.7', { mac: '0a:00:00:00:00:07' });
    const good = lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' });
    r.feed.push({ events: [], peers: peersOf(bad, good), resync: true });
    await settle(r);
    const s = summary(r.kernel);
    expect(s.routes).to.include(`10.244.7.0/24 via null #${eth0.index} proto ${RTPROT_KERNEL}`);
    expect(s.fdbs).to.deep.equal(['0a:00:00:00:00:02 198.18.0.2']);
    expect(r.net.localCollisions()).to.deep.equal([{ peer: '10.244.7.0/24', key: bad.key, entry: `route 10.244.7.0/24 dev #${eth0.index} proto 2` }]);
    expect(log.warnings.filter((w) => String(w.message).includes('collides'))).to.have.length(1);
    // Passes that judge every peer again (a resync with one more peer) do not warn again.
    r.feed.push({ events: [], peers: peersOf(bad, good, lease('10.244.3.0/24', '198.18.0.3', { mac: '0a:00:00:00:00:03' })), resync: true });
    await settle(r);
    expect(log.warnings.filter((w) => String(w.message).includes('collides'))).to.have.length(1);
    // The operator removes the address: the route goes, the lease is programmed without waiting for the periodic pass.
    r.kernel.remove({ route: '10.244.7.0/24' });
    await waitFor(() => summary(r.kernel).fdbs.length === 3);
    await quiet(r);
    expect(summary(r.kernel).routes).to.include(`10.244.7.0/24 via 10.244.7.0 onlink #${await r.device()} proto 87`);
    expect(r.net.localCollisions()).to.deep.equal([]);
    await stop(r);
  });

  it('a route or an address appearing while weft runs takes the colliding peer out', async () => {
    const { r, eth0 } = await lanRig();
    const peer = lease('10.244.9.0/24', '198.18.0.9', { mac: '0a:00:00:00:00:09' });
    r.feed.push({ events: [], peers: peersOf(peer), resync: true });
    await settle(r);
    expect(summary(r.kernel).fdbs).to.have.length(1);
    await r.kernel.addrAdd({ ifindex: eth0.index, cidr: '10.244.9.77/32' });
    await waitFor(() => summary(r.kernel).fdbs.length === 0);
    await quiet(r);
    expect(summary(r.kernel).routes.filter((x) => x.startsWith('10.244.9.0/24'))).to.deep.equal([]);
    expect(r.net.localCollisions()[0]!.entry).to.equal(`address 10.244.9.77/32 on link #${eth0.index}`);
    await r.kernel.addrDel({ ifindex: eth0.index, cidr: '10.244.9.77/32' });
    await waitFor(() => summary(r.kernel).fdbs.length === 1);
    await stop(r);
  });

  it("another hand replacing weft's own route to a peer is drift, repaired", async () => {
    const { r, eth0 } = await lanRig();
    const peer = lease('10.244.9.0/24', '198.18.0.9', { mac: '0a:00:00:00:00:09' });
    r.feed.push({ events: [], peers: peersOf(peer), resync: true });
    await settle(r);
    const wanted = summary(r.kernel);
    r.kernel.inject({ route: { dst: '10.244.9.0/24', gw: '198.18.0.99', oif: eth0.index, onlink: false, proto: RTPROT_BOOT } });
    await waitFor(() => JSON.stringify(summary(r.kernel)) === JSON.stringify(wanted));
    expect(r.net.localCollisions()).to.deep.equal([]);
    await stop(r);
  });
});
