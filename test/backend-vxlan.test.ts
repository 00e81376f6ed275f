/**
 * The vxlan and host-gw backends and the reconciler against the in-memory
 * kernel: device setup, per-peer entries, events, stale cleanup, drift repair,
 * device loss, failures, batching.
 */
import { addrsOn } from '../kernel/addresses.js';
import { expect } from 'chai';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import winston from 'winston';
import { silentLogger, type Logger } from '../common/log.js';
import { Subnet } from '../common/subnet.js';
import type { BackendConfig, Lease, NetworkConfig, PeerBatch, PeerEvent } from '../lease/types.js';
import type { BackendNetwork, BackendRegistration } from '../backend/backend.js';
import { RTPROT_BOOT, RTPROT_WEFT } from '../kernel/kernel.js';
import { FakeKernel } from '../kernel/kernel-fake.js';
import { HostGwBackend } from '../backend/hostgw/hostgw.js';
import { VxlanBackend } from '../backend/vxlan/vxlan.js';
import { Reconciler, type Entry, type Ownership, type Programmer } from '../backend/reconciler.js';

const log = silentLogger();

function backendConfig(over: Partial<BackendConfig> = {}): BackendConfig {
  return { type: 'vxlan', vni: 1, port: 0, mtu: 0, gbp: false, learning: false, directRouting: false, raw: {}, ...over };
}

function networkConfig(over: Partial<BackendConfig> = {}): NetworkConfig {
  return {
    enableIPv4: true, enableIPv6: false, network: Subnet.parse('10.244.0.0/16'), subnetLen: 24,
    subnetMin: null, subnetMax: null, ipv6Network: null, ipv6SubnetLen: 0, ipv6SubnetMin: null, ipv6SubnetMax: null,
    enableNFTables: false, backend: backendConfig(over),
  };
}

let macSeq = 0x10;
function lease(subnet: string, publicIP: string, opts: { mac?: string; type?: string; noMac?: boolean } = {}): Lease {
  const mac = opts.mac ?? `0a:00:00:00:00:${(macSeq++).toString(16).padStart(2, '0')}`;
  return {
    subnet: Subnet.parse(subnet),
    ipv6Subnet: null,
    attrs: { PublicIP: publicIP, PublicIPv6: null, BackendType: opts.type ?? 'vxlan', ...(opts.noMac ? {} : { BackendData: { VNI: 1, VtepMAC: mac } }) },
    key: `/coreos.com/network/subnets/${subnet.replace('/', '-')}`,
    etcdLeaseId: '7',
    modRevision: '1',
  };
}

function peersOf(...leases: Lease[]): Map<string, Lease> {
  return new Map(leases.map((l) => [l.subnet.toString(), l]));
}

/**
 * A hand-fed batch stream. The backend pulls the next batch only after the
 * pass that applied the previous one, so "parked waiting for more" means
 * "everything pushed so far went through a pass".
 */
class Feed implements AsyncIterable<PeerBatch> {
  private queue: PeerBatch[] = [];
  private wake: (() => void) | null = null;
  private ended = false;
  private parkedWaiters: Array<() => void> = [];
  push(batch: PeerBatch): void {
    this.queue.push(batch);
    this.wake?.();
  }
  /** Resolves once the consumer has taken every batch and asks for more. */
  drained(): Promise<void> {
    if (this.wake && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.parkedWaiters.push(r));
  }
  end(): void {
    this.ended = true;
    this.wake?.();
  }
  async *[Symbol.asyncIterator](): AsyncIterator<PeerBatch> {
    for (;;) {
      const next = this.queue.shift();
      if (next) {
        yield next;
        continue;
      }
      if (this.ended) return;
      const woken = new Promise<void>((r) => (this.wake = r));
      for (const w of this.parkedWaiters.splice(0)) w();
      await woken;
      this.wake = null;
    }
  }
}

interface Rig {
  kernel: FakeKernel;
  net: BackendNetwork;
  feed: Feed;
  abort: AbortController;
  running: Promise<void>;
  own: Lease;
  device: () => Promise<number>;
}

async function rig(options: { kernel?: FakeKernel; backend?: Partial<BackendConfig>; stateDir?: string; hostgw?: boolean; resyncIntervalMs?: number; log?: Logger } = {}): Promise<Rig> {
  const kernel = options.kernel ?? new FakeKernel();
  if (!(await kernel.linkByName('eth0'))) {
    const eth0 = kernel.addLink({ name: 'eth0', mtu: 1500 });
    await kernel.addrAdd({ ifindex: eth0.index, cidr: '198.18.0.1/24' });
  }
  const reg: BackendRegistration = {
    publicIP: '198.18.0.1',
    iface: { name: 'eth0', mtu: 1500 },
    network: networkConfig({ ...(options.hostgw ? { type: 'host-gw' } : {}), ...options.backend }),
    log: options.log ?? log,
    kernel,
    resyncIntervalMs: options.resyncIntervalMs ?? 60_000,
    ...(options.stateDir ? { stateDir: options.stateDir } : {}),
  };
  const net = await (options.hostgw ? new HostGwBackend() : new VxlanBackend()).register(reg);
  const own = lease('10.244.1.0/24', '198.18.0.1', { mac: (net.leaseAttrs.BackendData?.VtepMAC as string) ?? undefined, type: options.hostgw ? 'host-gw' : 'vxlan' });
  await net.configure(own);
  const feed = new Feed();
  const abort = new AbortController();
  const running = net.run(feed, abort.signal);
  const device = async (): Promise<number> => (await kernel.linkByName('flannel.1'))?.index ?? -1;
  return { kernel, net, feed, abort, running, own, device };
}

/** Waits until every pushed batch went through a pass and no work is left. */
async function settle(r: Rig): Promise<void> {
  await r.feed.drained();
  await r.net.settled();
}

async function stop(r: Rig): Promise<void> {
  r.abort.abort();
  await r.running;
  await r.net.close();
}

function summary(kernel: FakeKernel): { neighs: string[]; fdbs: string[]; routes: string[] } {
  const s = kernel.state();
  return {
    neighs: s.neighs.map((n) => `${n.ip} ${n.mac}`).sort(),
    fdbs: s.fdbs.map((f) => `${f.mac} ${f.dst}`).sort(),
    routes: s.routes.map((r) => `${r.dst} via ${r.gw}${r.onlink ? ' onlink' : ''} #${r.oif} proto ${r.proto}`).sort(),
  };
}

describe('backend: vxlan device (fake kernel)', () => {
  it('creates flannel.<VNI> with VNI, default port, local, underlay, nolearning and MTU underlay-50', async () => {
    const r = await rig();
    const link = await r.kernel.linkByName('flannel.1');
    expect(link?.vxlan).to.deep.equal({ vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: 1, learning: false, gbp: false });
    expect(link?.mtu).to.equal(1450);
    expect(r.net.mtu).to.equal(1450);
    expect(link?.up).to.equal(true);
    expect(r.net.leaseAttrs).to.deep.equal({ BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: link?.mac } });
    expect((await addrsOn(r.kernel, link!.index)).map((a) => a.cidr)).to.deep.equal(['10.244.1.0/32']);
    await stop(r);
  });

  it('takes the underlay MTU from the config when set, and honours port, VNI and GBP', async () => {
    const r = await rig({ backend: { mtu: 9000, port: 4789, vni: 7, gbp: true } });
    const link = await r.kernel.linkByName('flannel.7');
    expect(link?.mtu).to.equal(8950);
    expect(r.net.mtu).to.equal(8950);
    expect(link?.vxlan).to.include({ vni: 7, port: 4789, gbp: true });
    await stop(r);
  });

  it('removes other addresses inside Network from the device, keeps unrelated ones', async () => {
    const kernel = new FakeKernel();
    const eth0 = kernel.addLink({ name: 'eth0' });
    await kernel.addrAdd({ ifindex: eth0.index, cidr: '198.18.0.1/24' });
    const dev = await kernel.linkAdd({ name: 'flannel.1', mac: '0a:aa:00:00:00:01', mtu: 1450, vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: eth0.index, learning: false, gbp: false });
    await kernel.addrAdd({ ifindex: dev.index, cidr: '10.244.9.0/32' });
    await kernel.addrAdd({ ifindex: dev.index, cidr: '192.0.2.1/32' });
    const r = await rig({ kernel });
    expect((await addrsOn(kernel, dev.index)).map((a) => a.cidr).sort()).to.deep.equal(['10.244.1.0/32', '192.0.2.1/32']);
    await stop(r);
  });

  it('adopts a compatible device (e.g. flanneld\'s) with its MAC, and persists that MAC', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-mac-'));
    try {
      const kernel = new FakeKernel();
      const eth0 = kernel.addLink({ name: 'eth0' });
      await kernel.addrAdd({ ifindex: eth0.index, cidr: '198.18.0.1/24' });
      const dev = await kernel.linkAdd({ name: 'flannel.1', mac: '0a:aa:00:00:00:01', mtu: 1450, vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: eth0.index, learning: true, gbp: false });
      const r = await rig({ kernel, stateDir: dir });
      expect((await kernel.linkByName('flannel.1'))?.index).to.equal(dev.index);
      expect(r.net.leaseAttrs.BackendData?.VtepMAC).to.equal('0a:aa:00:00:00:01');
      expect((await readFile(join(dir, 'flannel.1.mac'), 'utf8')).trim()).to.equal('0a:aa:00:00:00:01');
      await stop(r);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('recreates an incompatible device with the stored MAC', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-mac-'));
    try {
      await writeFile(join(dir, 'flannel.1.mac'), '0a:bb:00:00:00:02\n');
      const kernel = new FakeKernel();
      const eth0 = kernel.addLink({ name: 'eth0' });
      await kernel.addrAdd({ ifindex: eth0.index, cidr: '198.18.0.1/24' });
      const old = await kernel.linkAdd({ name: 'flannel.1', mac: '0a:aa:00:00:00:01', mtu: 1450, vni: 2, port: 8472, local: '198.18.0.1', underlayIndex: eth0.index, learning: false, gbp: false });
      const r = await rig({ kernel, stateDir: dir });
      const now = await kernel.linkByName('flannel.1');
      expect(now?.index).to.not.equal(old.index);
      expect(now?.vxlan?.vni).to.equal(1);
      expect(now?.mac).to.equal('0a:bb:00:00:00:02');
      await stop(r);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

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

  it('rebuilds a deleted device with the same MAC and replays every peer', async () => {
    const r = await rig({ resyncIntervalMs: 50 });
    const b = lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' });
    r.feed.push({ events: [], peers: peersOf(b), resync: true });
    await settle(r);
    const old = (await r.kernel.linkByName('flannel.1'))!;
    await r.kernel.linkDel(old.index);
    await waitFor(async () => r.kernel.state().routes.length === 1);
    const now = (await r.kernel.linkByName('flannel.1'))!;
    expect(now.index).to.not.equal(old.index);
    expect(now.mac).to.equal(old.mac);
    expect(now.up).to.equal(true);
    expect((await addrsOn(r.kernel, now.index)).map((a) => a.cidr)).to.deep.equal(['10.244.1.0/32']);
    expect(summary(r.kernel).neighs).to.deep.equal(['10.244.2.0 0a:00:00:00:00:02']);
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

describe('backend: DirectRouting and host-gw (fake kernel)', () => {
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
});

/** A logger that keeps its info lines, for assertions on what weft says. */
function recordingLogger(): { log: Logger; infos: string[] } {
  const infos: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const entry = JSON.parse(chunk.toString()) as { level: string; message: string };
      if (entry.level === 'info') infos.push(entry.message);
      done();
    },
  });
  return { log: winston.createLogger({ level: 'info', format: winston.format.json(), transports: [new winston.transports.Stream({ stream: sink })] }), infos };
}

/** Peer i: subnet 10.244.(10+i).0/24 on the underlay segment, MAC 0a:00:00:00:01:<i>. */
function peer(i: number, mac = `0a:00:00:00:01:${i.toString(16).padStart(2, '0')}`, publicIP = `198.18.0.${10 + i}`): Lease {
  return lease(`10.244.${10 + i}.0/24`, publicIP, { mac });
}

/** Lets notifications, the drift debounce (50 ms) and any repair pass run. */
async function quiet(r: Rig): Promise<void> {
  await sleep(120);
  await settle(r);
}

/** Programs peer b (10.244.2.0/24) and returns the stats to compare against. */
async function programmed(r: Rig): Promise<{ fullPasses: number; driftRepairs: number; driftEvents: number }> {
  r.feed.push({ events: [], peers: peersOf(lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' })), resync: true });
  await quiet(r);
  return r.net.stats();
}

function passesSince(r: Rig, before: { fullPasses: number; driftRepairs: number }): { full: number; drift: number } {
  const now = r.net.stats();
  return { full: now.fullPasses - before.fullPasses, drift: now.driftRepairs - before.driftRepairs };
}

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

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('condition not reached');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A vxlan-shaped programmer on one device that counts how often it is asked for a lease's entries. */
class CountingProgrammer implements Programmer {
  calls = 0;
  basis = 'device';
  constructor(private readonly dev: number) {}
  async refresh(): Promise<{ ownership: Ownership; rebuilt: boolean }> {
    return { rebuilt: false, ownership: { neighIfindex: this.dev, fdbIfindex: this.dev, ownsRoute: (r) => r.proto === RTPROT_WEFT } };
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
