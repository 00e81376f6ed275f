/**
 * The reconcile loop (backend/reconcile-loop.ts) driving a vxlan backend on the
 * in-memory kernel: readiness before the kernel listener starts, the periodic
 * repair pass, and drift repaired as the kernel reports it: which
 * notifications are drift (the reconciler's driftOf judges each), a burst
 * gathered into one pass and one log line, nothing before the first full pass,
 * nothing after close.
 */
import { expect } from 'chai';
import { setTimeout as sleep } from 'node:timers/promises';
import type { PeerEvent } from '../lease/types.js';
import { RTPROT_BOOT } from '../kernel/kernel.js';
import { lease, passesSince, peer, peersOf, programmed, quiet, recordingLogger, rig, settle, stop, summary, waitFor, type Rig } from './harness/backend-rig.js';

describe('backend: reconcile loop (fake kernel)', () => {
  it('announces readiness before it starts the kernel listener (a child process, whose start holds the event loop)', async () => {
    const r = await rig();
    const order: string[] = [];
    const monitor = r.kernel.monitor.bind(r.kernel);
    r.kernel.monitor = (listener) => {
      order.push('listener');
      return monitor(listener);
    };
    void r.net.ready.then(() => order.push('ready'));
    r.feed.push({ events: [], peers: peersOf(lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' }), r.own), resync: true });
    await waitFor(() => order.length === 2);
    expect(order).to.deep.equal(['ready', 'listener']);
    await stop(r);
  });

  it('repairs drift on the periodic pass', async () => {
    const r = await rig({ resyncIntervalMs: 50 });
    const b = lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' });
    r.feed.push({ events: [], peers: peersOf(b), resync: true });
    await settle(r);
    const dev = await r.device();
    const programmed = summary(r.kernel);
    r.kernel.remove({ route: '10.244.2.0/24' });
    r.kernel.remove({ fdb: '0a:00:00:00:00:02', ifindex: dev });
    r.kernel.inject({ neigh: { ifindex: dev, ip: '10.244.2.0', mac: '0a:00:00:00:00:99', permanent: true } });
    await waitFor(() => JSON.stringify(summary(r.kernel)) === JSON.stringify(programmed));
    await stop(r);
  });
});

describe('backend: drift repaired as the kernel reports it (fake kernel, periodic pass 60 s away)', () => {
  it('programming peers by resync and events starts no repair: the echoes of weft\'s own changes are not drift', async () => {
    const r = await rig();
    const first = Array.from({ length: 50 }, (_, i) => peer(i));
    r.feed.push({ events: [], peers: peersOf(...first), resync: true });
    await settle(r);
    const added = Array.from({ length: 20 }, (_, i) => peer(50 + i));
    const newMac = [0, 1, 2, 3, 4].map((i) => peer(i, `0a:00:00:00:02:0${i}`));
    const newIP = [5, 6, 7].map((i) => peer(i, undefined, `198.18.0.${200 + i - 5}`));
    const gone = first.slice(8, 18);
    const events: PeerEvent[] = [
      ...added.map((lease): PeerEvent => ({ type: 'added', lease })),
      ...[...newMac, ...newIP].map((lease, i): PeerEvent => ({ type: 'changed', lease, previous: first[i]! })),
      ...gone.map((lease): PeerEvent => ({ type: 'removed', lease })),
    ];
    const peers = peersOf(...newMac, ...newIP, ...first.slice(18), ...added);
    r.feed.push({ events, peers, resync: false });
    await settle(r);
    r.feed.push({ events: [], peers, resync: true });
    await quiet(r);
    // The first pass, the one that follows the start of listening, and the resync: no repair among them.
    expect(r.net.stats()).to.include({ fullPasses: 3, driftEvents: 0, driftRepairs: 0 });
    expect(r.kernel.state().fdbs).to.have.length(60);
    expect(summary(r.kernel).fdbs).to.include('0a:00:00:00:01:05 198.18.0.200');
    await stop(r);
  });

  const deletions: Array<[string, (r: Rig, dev: number) => void]> = [
    ['the route', (r) => r.kernel.remove({ route: '10.244.2.0/24' })],
    ['the neighbour', (r, dev) => r.kernel.remove({ neigh: '10.244.2.0', ifindex: dev })],
    ['the FDB entry', (r, dev) => r.kernel.remove({ fdb: '0a:00:00:00:00:02', ifindex: dev })],
  ];

  for (const [what, deleteIt] of deletions) {
    it(`${what} deleted outside weft is back after exactly one repair pass`, async () => {
      const r = await rig();
      const before = await programmed(r);
      const wanted = summary(r.kernel);
      deleteIt(r, await r.device());
      await waitFor(() => JSON.stringify(summary(r.kernel)) === JSON.stringify(wanted));
      await quiet(r);
      expect(passesSince(r, before)).to.deep.equal({ full: 1, drift: 1 });
      await stop(r);
    });
  }

  it('a neighbour with another lladdr and a route via another gateway are drift, repaired in one pass', async () => {
    const r = await rig();
    const before = await programmed(r);
    const wanted = summary(r.kernel);
    const dev = await r.device();
    r.kernel.inject({ neigh: { ifindex: dev, ip: '10.244.2.0', mac: '0a:00:00:00:00:99', permanent: true } });
    r.kernel.inject({ route: { dst: '10.244.2.0/24', gw: '198.18.0.99', oif: 1, onlink: false, proto: RTPROT_BOOT } });
    await waitFor(() => JSON.stringify(summary(r.kernel)) === JSON.stringify(wanted));
    await quiet(r);
    expect(passesSince(r, before)).to.deep.equal({ full: 1, drift: 1 });
    await stop(r);
  });

  it('entries weft does not own or want are not drift: ARP churn on eth0, foreign routes, learned neighbours, other links', async () => {
    const r = await rig();
    const before = await programmed(r);
    const dev = await r.device();
    r.kernel.inject({ neigh: { ifindex: 1, ip: '198.18.0.77', mac: '0a:00:00:00:00:77', permanent: false } });
    r.kernel.inject({ neigh: { ifindex: 1, ip: '198.18.0.78', mac: '0a:00:00:00:00:78', permanent: true } });
    r.kernel.remove({ neigh: '198.18.0.77', ifindex: 1 });
    r.kernel.inject({ route: { dst: '192.0.2.0/24', gw: '198.18.0.254', oif: 1, onlink: false, proto: RTPROT_BOOT } });
    r.kernel.remove({ route: '192.0.2.0/24' });
    r.kernel.inject({ neigh: { ifindex: dev, ip: '10.244.99.1', mac: '0a:00:00:00:00:98', permanent: false } });
    r.kernel.alterLink(r.kernel.addLink({ name: 'veth9' }).index, { up: false });
    await quiet(r);
    expect(passesSince(r, before)).to.deep.equal({ full: 0, drift: 0 });
    expect(r.net.stats().driftEvents).to.equal(0);
    await stop(r);
  });

  it('a permanent neighbour or a route added on weft\'s device outside weft is removed', async () => {
    const r = await rig();
    const before = await programmed(r);
    const wanted = summary(r.kernel);
    const dev = await r.device();
    r.kernel.inject({ neigh: { ifindex: dev, ip: '10.244.9.0', mac: '0a:00:00:00:00:09', permanent: true } });
    r.kernel.inject({ route: { dst: '10.244.9.0/24', gw: '10.244.9.0', oif: dev, onlink: true, proto: RTPROT_BOOT } });
    await waitFor(() => JSON.stringify(summary(r.kernel)) === JSON.stringify(wanted));
    await quiet(r);
    expect(passesSince(r, before)).to.deep.equal({ full: 1, drift: 1 });
    await stop(r);
  });

  it('an overrun (notifications lost) starts a full pass', async () => {
    const r = await rig();
    const before = await programmed(r);
    r.kernel.overrun();
    await quiet(r);
    expect(passesSince(r, before)).to.deep.equal({ full: 1, drift: 1 });
    await stop(r);
  });

  it('the device given another MTU, set down or deleted is repaired, one pass each', async () => {
    const r = await rig();
    let before = await programmed(r);
    const dev = await r.device();
    r.kernel.alterLink(dev, { mtu: 1400 });
    await waitFor(async () => (await r.kernel.linkGet(dev))?.mtu === 1450);
    await quiet(r);
    expect(passesSince(r, before)).to.deep.equal({ full: 1, drift: 1 });

    before = r.net.stats();
    r.kernel.alterLink(dev, { up: false });
    await waitFor(async () => (await r.kernel.linkGet(dev))?.up === true);
    await quiet(r);
    expect(passesSince(r, before)).to.deep.equal({ full: 1, drift: 1 });

    before = r.net.stats();
    await r.kernel.linkDel(dev);
    await waitFor(() => r.kernel.state().routes.length === 1);
    await quiet(r);
    expect(await r.device()).to.not.equal(dev);
    expect(summary(r.kernel).neighs).to.deep.equal(['10.244.2.0 0a:00:00:00:00:02']);
    expect(passesSince(r, before)).to.deep.equal({ full: 1, drift: 1 });
    await stop(r);
  });

  it('a burst of drift is one pass and one log line; a flapping entry is logged at most once per 10 s', async () => {
    const { log, infos } = recordingLogger();
    const r = await rig({ log });
    r.feed.push({ events: [], peers: peersOf(...Array.from({ length: 30 }, (_, i) => peer(i))), resync: true });
    await quiet(r);
    const before = r.net.stats();
    for (let i = 0; i < 30; i++) r.kernel.remove({ route: `10.244.${10 + i}.0/24` });
    await waitFor(() => r.kernel.state().routes.length === 30);
    await quiet(r);
    expect(passesSince(r, before)).to.deep.equal({ full: 1, drift: 1 });
    const drift = () => infos.filter((m) => m.includes('outside weft'));
    expect(drift()).to.deep.equal(['route 10.244.10.0/24 deleted outside weft (and 29 more changes); repairing']);

    for (let flap = 0; flap < 3; flap++) {
      r.kernel.remove({ route: '10.244.10.0/24' });
      await waitFor(() => r.kernel.state().routes.length === 30);
      await quiet(r);
    }
    expect(passesSince(r, before)).to.deep.equal({ full: 4, drift: 4 });
    expect(drift()).to.have.length(1);
    await stop(r);
  });

  it('nothing is repaired before the first full pass (it has no peers to repair toward yet)', async () => {
    const r = await rig();
    const dev = await r.device();
    r.kernel.inject({ neigh: { ifindex: dev, ip: '10.244.9.0', mac: '0a:00:00:00:00:09', permanent: true } });
    r.kernel.overrun();
    await sleep(120);
    expect(r.net.stats()).to.include({ fullPasses: 0, deltaPasses: 0, driftEvents: 0 });
    expect(summary(r.kernel).neighs).to.deep.equal(['10.244.9.0 0a:00:00:00:00:09']);
    await stop(r);
  });

  it('stops listening when closed', async () => {
    const r = await rig();
    const before = await programmed(r);
    await stop(r);
    r.kernel.remove({ route: '10.244.2.0/24' });
    await sleep(120);
    expect(passesSince(r, before)).to.deep.equal({ full: 0, drift: 0 });
  });
});
