/**
 * The backends in dual-stack and IPv6-only networks, on the in-memory kernel:
 * vxlan's second device `flannel-v6.<VNI>` and its lease attributes, the
 * IPv6 entries per peer beside the IPv4 ones, removal of both, a lease
 * skipped in one family only, host-gw's IPv6 routes, and the nexthop ids of
 * IPv6 peers.
 */
import { expect } from 'chai';
import { RTPROT_WEFT } from '../kernel/kernel.js';
import { Subnet } from '../common/subnet.js';
import { IPV6_NEXTHOP_IDS, nexthopId } from '../backend/nexthops.js';
import { lease, lease6, nexthopSummary, peersOf, rig, settle, stop, summary } from './harness/backend-rig.js';

describe('backend: vxlan in a dual-stack network (fake kernel)', () => {
  it('keeps flannel-v6.1 beside flannel.1: IPv6 local, MTU - 70, accept_ra 0, a MAC of its own in BackendV6Data', async () => {
    const r = await rig({ stack: 'dual' });
    const v4 = await r.kernel.linkByName('flannel.1');
    const v6 = await r.kernel.linkByName('flannel-v6.1');
    expect(v4?.vxlan?.local).to.equal('198.18.0.1');
    expect(v6?.vxlan?.local).to.equal('2001:2::1');
    expect([v4?.mtu, v6?.mtu]).to.deep.equal([1450, 1430]);
    // Containers get the smaller MTU: an IPv6 packet of theirs must fit flannel-v6.1.
    expect(r.net.mtu).to.equal(1430);
    expect(r.net.devices).to.deep.equal(['flannel.1', 'flannel-v6.1']);
    expect(r.kernel.sysctls.get('net/ipv6/conf/flannel-v6.1/accept_ra')).to.equal('0');
    expect(r.net.leaseAttrs.BackendData?.VtepMAC).to.equal(v4?.mac);
    expect(r.net.leaseAttrs.BackendV6Data?.VtepMAC).to.equal(v6?.mac);
    expect(v4?.mac).to.not.equal(v6?.mac);
    const addrs = r.kernel.state().addrs.map((a) => `${a.ifindex} ${a.cidr}`);
    expect(addrs).to.include.members([`${v4?.index} 10.244.1.0/32`, `${v6?.index} fd00:10:244:1::/128`]);
    await stop(r);
  });

  it('programs NDP neighbour, FDB and onlink route in IPv6 beside the IPv4 ones, and removes both', async () => {
    const r = await rig({ stack: 'dual' });
    const b = lease6('10.244.2.0/24', '198.18.0.2', 'fd00:10:244:2::/64', '2001:2::2', { mac: '0a:00:00:00:00:02', mac6: '0a:00:00:00:06:02' });
    r.feed.push({ events: [], peers: peersOf(b, r.own), resync: true });
    await r.net.ready;
    await settle(r);
    const dev4 = (await r.kernel.linkByName('flannel.1'))?.index;
    const dev6 = (await r.kernel.linkByName('flannel-v6.1'))?.index;
    expect(summary(r.kernel)).to.deep.equal({
      neighs: ['10.244.2.0 0a:00:00:00:00:02', 'fd00:10:244:2:: 0a:00:00:00:06:02'],
      fdbs: ['0a:00:00:00:00:02 198.18.0.2', '0a:00:00:00:06:02 2001:2::2'],
      routes: [`10.244.2.0/24 via 10.244.2.0 onlink #${dev4} proto ${RTPROT_WEFT}`, `fd00:10:244:2::/64 via fd00:10:244:2:: onlink #${dev6} proto ${RTPROT_WEFT}`],
    });
    const neigh6 = r.kernel.state().neighs.find((n) => n.ip.includes(':'));
    expect(neigh6?.ifindex).to.equal(dev6);
    expect(r.net.stats()).to.include({ entries: 6 });

    r.feed.push({ events: [{ type: 'removed', lease: b }], peers: peersOf(r.own), resync: false });
    await settle(r);
    expect(summary(r.kernel)).to.deep.equal({ neighs: [], fdbs: [], routes: [] });
    await stop(r);
  });

  it('a full pass repairs IPv6 entries deleted behind its back and removes a departed IPv6 peer found by dump', async () => {
    const r = await rig({ stack: 'dual' });
    const b = lease6('10.244.2.0/24', '198.18.0.2', 'fd00:10:244:2::/64', '2001:2::2', { mac: '0a:00:00:00:00:02', mac6: '0a:00:00:00:06:02' });
    const c = lease6('10.244.3.0/24', '198.18.0.3', 'fd00:10:244:3::/64', '2001:2::3', { mac: '0a:00:00:00:00:03', mac6: '0a:00:00:00:06:03' });
    r.feed.push({ events: [], peers: peersOf(b, c), resync: true });
    await settle(r);
    const dev6 = (await r.kernel.linkByName('flannel-v6.1'))?.index as number;
    await r.kernel.routeDel({ dst: 'fd00:10:244:2::/64' });
    await r.kernel.neighDel({ ifindex: dev6, ip: 'fd00:10:244:2::' });
    // c is gone from etcd while the node was not looking: a resync without it.
    r.feed.push({ events: [], peers: peersOf(b), resync: true });
    await settle(r);
    const s = summary(r.kernel);
    expect(s.routes.filter((x) => x.startsWith('fd00'))).to.deep.equal([`fd00:10:244:2::/64 via fd00:10:244:2:: onlink #${dev6} proto ${RTPROT_WEFT}`]);
    expect(s.neighs).to.deep.equal(['10.244.2.0 0a:00:00:00:00:02', 'fd00:10:244:2:: 0a:00:00:00:06:02']);
    expect(s.fdbs).to.deep.equal(['0a:00:00:00:00:02 198.18.0.2', '0a:00:00:00:06:02 2001:2::2']);
    await stop(r);
  });

  it('a lease without an IPv6 part (a flanneld node of IPv4 only) is programmed in IPv4 and skipped in IPv6', async () => {
    const r = await rig({ stack: 'dual' });
    r.feed.push({ events: [], peers: peersOf(lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' })), resync: true });
    await settle(r);
    const s = summary(r.kernel);
    expect(s.neighs).to.deep.equal(['10.244.2.0 0a:00:00:00:00:02']);
    expect(s.routes).to.have.length(1);
    await stop(r);
  });

  it('DirectRouting: a peer on the underlay\'s IPv6 segment gets `S6 via PublicIPv6`, one off it the vxlan entries', async () => {
    const r = await rig({ stack: 'dual', backend: { directRouting: true } });
    const near = lease6('10.244.2.0/24', '198.18.0.2', 'fd00:10:244:2::/64', '2001:2::2', { mac: '0a:00:00:00:00:02', mac6: '0a:00:00:00:06:02' });
    const far = lease6('10.244.3.0/24', '198.18.0.3', 'fd00:10:244:3::/64', '2001:3::3', { mac: '0a:00:00:00:00:03', mac6: '0a:00:00:00:06:03' });
    r.feed.push({ events: [], peers: peersOf(near, far), resync: true });
    await settle(r);
    const eth0 = (await r.kernel.linkByName('eth0'))?.index;
    const dev6 = (await r.kernel.linkByName('flannel-v6.1'))?.index;
    const s = summary(r.kernel);
    expect(s.routes.filter((x) => x.startsWith('fd00'))).to.deep.equal([
      `fd00:10:244:2::/64 via 2001:2::2 #${eth0} proto ${RTPROT_WEFT}`,
      `fd00:10:244:3::/64 via fd00:10:244:3:: onlink #${dev6} proto ${RTPROT_WEFT}`,
    ]);
    // The link-local fe80::/64 every link has is no segment a peer is reached on.
    expect(s.neighs).to.deep.equal(['fd00:10:244:3:: 0a:00:00:00:06:03']);
    await stop(r);
  });

  it('routes through nexthops in both families, IPv6 ids in the upper half', async () => {
    const r = await rig({ stack: 'dual', routeNexthops: 'on' });
    const b = lease6('10.244.2.0/24', '198.18.0.2', 'fd00:10:244:2::/64', '2001:2::2', { mac: '0a:00:00:00:00:02', mac6: '0a:00:00:00:06:02' });
    r.feed.push({ events: [], peers: peersOf(b), resync: true });
    await settle(r);
    const dev6 = (await r.kernel.linkByName('flannel-v6.1'))?.index;
    const s = nexthopSummary(r.kernel);
    const id6 = IPV6_NEXTHOP_IDS + 2;
    expect(s.nexthops).to.include(`id ${id6} via fd00:10:244:2:: #${dev6} onlink proto ${RTPROT_WEFT}`);
    expect(s.routes).to.include(`fd00:10:244:2::/64 nhid ${id6} proto ${RTPROT_WEFT}`);
    expect(s.routes).to.include(`10.244.2.0/24 nhid 2 proto ${RTPROT_WEFT}`);
    await stop(r);
  });
});

describe('backend: vxlan in an IPv6-only network (fake kernel)', () => {
  it('has flannel-v6.1 alone, advertises BackendV6Data alone and programs IPv6-only peers by their IPv6 subnet', async () => {
    const r = await rig({ stack: 'v6' });
    expect(await r.kernel.linkByName('flannel.1')).to.equal(null);
    expect(r.net.devices).to.deep.equal(['flannel-v6.1']);
    expect(r.net.leaseAttrs.BackendData).to.equal(undefined);
    expect(r.net.leaseAttrs.BackendV6Data?.VtepMAC).to.be.a('string');
    expect(r.net.mtu).to.equal(1430);
    const b = lease6(null, null, 'fd00:10:244:2::/64', '2001:2::2', { mac6: '0a:00:00:00:06:02' });
    const c = lease6(null, null, 'fd00:10:244:3::/64', '2001:2::3', { mac6: '0a:00:00:00:06:03' });
    r.feed.push({ events: [], peers: peersOf(b, c, r.own), resync: true });
    await settle(r);
    const s = summary(r.kernel);
    expect(s.neighs).to.deep.equal(['fd00:10:244:2:: 0a:00:00:00:06:02', 'fd00:10:244:3:: 0a:00:00:00:06:03']);
    expect(s.fdbs).to.deep.equal(['0a:00:00:00:06:02 2001:2::2', '0a:00:00:00:06:03 2001:2::3']);
    expect(s.routes.map((x) => x.split(' ')[0])).to.deep.equal(['fd00:10:244:2::/64', 'fd00:10:244:3::/64']);
    // Nothing of the IPv4 placeholder 0.0.0.0/0 reaches the kernel.
    expect(r.kernel.state().routes.some((x) => x.dst.startsWith('0.0.0.0'))).to.equal(false);
    r.feed.push({ events: [{ type: 'removed', lease: c }], peers: peersOf(b, r.own), resync: false });
    await settle(r);
    expect(summary(r.kernel).neighs).to.deep.equal(['fd00:10:244:2:: 0a:00:00:00:06:02']);
    await stop(r);
  });
});

describe('backend: host-gw in IPv6 (fake kernel)', () => {
  it('routes each family of a peer on the segment via its public address of that family', async () => {
    const r = await rig({ stack: 'dual', hostgw: true });
    const b = lease6('10.244.2.0/24', '198.18.0.2', 'fd00:10:244:2::/64', '2001:2::2', { type: 'host-gw' });
    const far = lease6('10.244.3.0/24', '198.18.0.3', 'fd00:10:244:3::/64', '2001:3::3', { type: 'host-gw' });
    r.feed.push({ events: [], peers: peersOf(b, far), resync: true });
    await settle(r);
    const eth0 = (await r.kernel.linkByName('eth0'))?.index;
    expect(summary(r.kernel).routes).to.deep.equal([
      `10.244.2.0/24 via 198.18.0.2 #${eth0} proto ${RTPROT_WEFT}`,
      `10.244.3.0/24 via 198.18.0.3 #${eth0} proto ${RTPROT_WEFT}`,
      // far's IPv6 address is off eth0's 2001:2::/64: that family is skipped, its IPv4 one is not.
      `fd00:10:244:2::/64 via 2001:2::2 #${eth0} proto ${RTPROT_WEFT}`,
    ]);
    await stop(r);
  });
});

describe('backend: nexthop ids of IPv6 subnets', () => {
  it('are the index in the IPv6Network plus 2^31, never an IPv4 id', () => {
    const net6 = Subnet.parse('fd00:10:244::/48');
    expect(nexthopId(net6, Subnet.parse('fd00:10:244:3::/64'))).to.equal(2 ** 31 + 3);
    expect(nexthopId(net6, Subnet.parse('fd00:10:244:ffff::/64'))).to.equal(2 ** 31 + 0xffff);
    // Index 0 takes the first index past the last, as in IPv4.
    expect(nexthopId(net6, Subnet.parse('fd00:10:244::/64'))).to.equal(2 ** 31 + 2 ** 16);
    expect(nexthopId(net6, Subnet.parse('fd00:10:245::/64'))).to.equal(null);
    expect(nexthopId(Subnet.parse('fd00::/8'), Subnet.parse('fd00:10:244::/64'))).to.equal(null); // 56 bits of index
    expect(nexthopId(Subnet.parse('10.0.0.0/8'), Subnet.parse('10.255.255.0/24'))).to.be.below(2 ** 31);
    expect(nexthopId(net6, Subnet.parse('10.244.3.0/24'))).to.equal(null);
  });
});
