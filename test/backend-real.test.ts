/**
 * The backends against the real kernel, in network namespaces: a switch
 * namespace with br0 and host namespaces h1/h2 (eth0 198.18.0.x/24). Each
 * host runs this same file as a worker (`ip netns exec hN node <this file>`
 * with WEFT_BACKEND_WORKER=1), which opens the netlink socket inside the host
 * namespace; the test drives it over IPC and checks with `ip -j` / `bridge -j`.
 */
import { expect } from 'chai';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { silentLogger } from '../common/log.js';
import { Subnet } from '../common/subnet.js';
import type { BackendConfig, Lease, LeaseAttrs, NetworkConfig, PeerBatch, PeerEvent } from '../lease/types.js';
import type { BackendNetwork, BackendStats } from '../backend/backend.js';
import { HostGwBackend } from '../backend/hostgw/hostgw.js';
import { VxlanBackend } from '../backend/vxlan/vxlan.js';
import { Netns, Switch, cleanupLeftovers, eventually, teardownAll } from './harness/netns.js';

const SELF = fileURLToPath(import.meta.url);
const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------- wire format between test and worker

interface WireLease {
  subnet: string;
  attrs: LeaseAttrs;
}
type WireEvent = { type: 'added' | 'removed'; lease: WireLease } | { type: 'changed'; lease: WireLease; previous: WireLease };
type Command =
  | { cmd: 'register'; backend: 'vxlan' | 'host-gw'; publicIP: string; config: Partial<BackendConfig>; stateDir: string; resyncIntervalMs: number; routeNexthops: 'on' | 'off' }
  | { cmd: 'configure'; own: WireLease }
  | { cmd: 'batch'; events: WireEvent[]; peers: WireLease[]; resync: boolean }
  | { cmd: 'stats' }
  | { cmd: 'stop' };

function toLease(w: WireLease): Lease {
  return { subnet: Subnet.parse(w.subnet), ipv6Subnet: null, attrs: w.attrs, key: w.subnet, etcdLeaseId: '1', modRevision: '1', createRevision: '1' };
}

function networkConfig(over: Partial<BackendConfig>): NetworkConfig {
  return {
    enableIPv4: true, enableIPv6: false, network: Subnet.parse('10.244.0.0/16'), subnetLen: 24,
    subnetMin: null, subnetMax: null, ipv6Network: null, ipv6SubnetLen: 0, ipv6SubnetMin: null, ipv6SubnetMax: null,
    enableNFTables: false,
    backend: { type: 'vxlan', vni: 1, port: 0, mtu: 0, gbp: false, learning: false, directRouting: false, raw: {}, ...over },
  };
}

/** Worker side: runs one backend in this (host) namespace. */
async function worker(): Promise<void> {
  let net: BackendNetwork | null = null;
  const abort = new AbortController();
  const queue: PeerBatch[] = [];
  let wake: (() => void) | null = null;
  let parked: (() => void) | null = null;
  async function* batches(): AsyncGenerator<PeerBatch> {
    for (;;) {
      const next = queue.shift();
      if (next) {
        yield next;
        continue;
      }
      const woken = new Promise<void>((r) => (wake = r));
      parked?.();
      parked = null;
      await woken;
      wake = null;
    }
  }
  let running: Promise<void> | null = null;
  process.on('message', (raw) => {
    const msg = raw as Command & { id: number };
    const reply = (body: unknown): void => void process.send?.({ id: msg.id, ...((body as object) ?? {}) });
    void (async () => {
      try {
        switch (msg.cmd) {
          case 'register': {
            const backend = msg.backend === 'vxlan' ? new VxlanBackend() : new HostGwBackend();
            net = await backend.register({
              publicIP: msg.publicIP, iface: { name: 'eth0', mtu: 1500 }, network: networkConfig(msg.config),
              stateDir: msg.stateDir, log: silentLogger(), resyncIntervalMs: msg.resyncIntervalMs, routeNexthops: msg.routeNexthops,
            });
            reply({ leaseAttrs: net.leaseAttrs, mtu: net.mtu });
            return;
          }
          case 'configure':
            await net!.configure(toLease(msg.own));
            running = net!.run(batches(), abort.signal);
            reply({});
            return;
          case 'batch': {
            const peers = new Map(msg.peers.map((p) => [p.subnet, toLease(p)]));
            const events: PeerEvent[] = msg.events.map((e) =>
              e.type === 'changed' ? { type: 'changed', lease: toLease(e.lease), previous: toLease(e.previous) } : { type: e.type, lease: toLease(e.lease) },
            );
            const drained = new Promise<void>((r) => (parked = r));
            queue.push({ events, peers, resync: msg.resync });
            wake?.();
            await drained;
            await net!.settled();
            reply({});
            return;
          }
          case 'stats':
            reply(net!.stats());
            return;
          case 'stop':
            abort.abort();
            await running;
            await net?.close();
            reply({});
            process.disconnect();
            return;
        }
      } catch (err) {
        reply({ error: err instanceof Error ? err.message : String(err) });
      }
    })();
  });
}

// ---------------------------------------------------------------- test side

class Host {
  private seq = 0;
  private readonly waiting = new Map<number, (m: Record<string, unknown>) => void>();
  private child: ChildProcess | null = null;
  mac = '';

  constructor(
    readonly ns: Netns,
    readonly publicIP: string,
    readonly subnet: string,
  ) {}

  get lease(): WireLease {
    return { subnet: this.subnet, attrs: { PublicIP: this.publicIP, PublicIPv6: null, BackendType: this.backend, BackendData: this.backend === 'vxlan' ? { VNI: 1, VtepMAC: this.mac } : undefined } as LeaseAttrs };
  }
  private backend: 'vxlan' | 'host-gw' = 'vxlan';

  async start(backend: 'vxlan' | 'host-gw', stateDir: string, config: Partial<BackendConfig> = {}, resyncIntervalMs = 200, routeNexthops: 'on' | 'off' = 'off'): Promise<void> {
    this.backend = backend;
    this.child = this.ns.spawn(process.execPath, [SELF], { ipc: true, env: { ...process.env, WEFT_BACKEND_WORKER: '1' } });
    this.child.on('message', (m) => {
      const msg = m as { id: number };
      this.waiting.get(msg.id)?.(msg as unknown as Record<string, unknown>);
      this.waiting.delete(msg.id);
    });
    const reg = await this.call({ cmd: 'register', backend, publicIP: this.publicIP, config: { type: backend, ...config }, stateDir, resyncIntervalMs, routeNexthops });
    this.mac = ((reg.leaseAttrs as LeaseAttrs).BackendData?.VtepMAC as string) ?? '';
    await this.call({ cmd: 'configure', own: this.lease });
  }

  /** Sends a resync with `peers` (own lease included, as the watcher does). */
  resync(peers: WireLease[]): Promise<unknown> {
    return this.call({ cmd: 'batch', events: [], peers: [this.lease, ...peers], resync: true });
  }

  events(events: WireEvent[], peers: WireLease[]): Promise<unknown> {
    return this.call({ cmd: 'batch', events, peers: [this.lease, ...peers], resync: false });
  }

  async stats(): Promise<BackendStats> {
    return (await this.call({ cmd: 'stats' })) as unknown as BackendStats;
  }

  /** PID of the worker's kernel-monitor child (the worker runs as `ip netns exec`, which execs: same PID). */
  async monitorPid(): Promise<number> {
    const { stdout } = await execFileAsync('pgrep', ['-x', '-P', String(this.child!.pid), 'weft-listener']);
    const pids = stdout.trim().split('\n').filter(Boolean).map(Number);
    if (pids.length !== 1) throw new Error(`expected one monitor child, found ${pids.length}`);
    return pids[0]!;
  }

  async stop(): Promise<void> {
    if (!this.child) return;
    const exited = new Promise((r) => this.child!.once('exit', r));
    await this.call({ cmd: 'stop' });
    await exited;
    this.child = null;
  }

  private call(cmd: Command): Promise<Record<string, unknown>> {
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`worker ${cmd.cmd} timed out`)), 15_000);
      this.waiting.set(id, (m) => {
        clearTimeout(timer);
        if (typeof m.error === 'string') reject(new Error(m.error));
        else resolve(m);
      });
      this.child!.send({ id, ...cmd });
    });
  }
}

interface Dumps {
  neighs: string[];
  fdbs: string[];
  routes: string[];
}

async function dumps(ns: Netns, dev = 'flannel.1'): Promise<Dumps> {
  const neighs = await ns.ipJson<Array<{ dst: string; lladdr?: string; state?: string[] }>>('neigh', 'show', 'dev', dev).catch(() => []);
  const fdbs = await ns.bridgeJson<Array<{ mac: string; dst?: string; flags?: string[]; state?: string }>>('fdb', 'show', 'dev', dev).catch(() => []);
  const routes = await ns.ipJson<Array<{ dst: string; gateway?: string; dev: string; flags?: string[]; protocol?: string }>>('route', 'show', 'table', 'main');
  return {
    neighs: neighs.map((n) => `${n.dst} ${n.lladdr} ${(n.state ?? []).join(',')}`).sort(),
    fdbs: fdbs.filter((f) => f.dst).map((f) => `${f.mac} dst ${f.dst} ${(f.flags ?? []).join(',')} ${f.state ?? ''}`.trim()).sort(),
    routes: routes
      .filter((r) => r.dst.startsWith('10.244.'))
      .map((r) => `${r.dst} via ${r.gateway} dev ${r.dev}${(r.flags ?? []).includes('onlink') ? ' onlink' : ''} proto ${r.protocol}`)
      .sort(),
  };
}

async function ping(ns: Netns, ip: string): Promise<boolean> {
  try {
    await ns.exec('ping', '-c', '1', '-W', '1', ip);
    return true;
  } catch {
    return false;
  }
}

async function linkInfo(ns: Netns, dev: string): Promise<{ ifindex: number; address: string; mtu: number; linkinfo: { info_data: Record<string, unknown> } } | null> {
  const out = await ns.ipJson<Array<{ ifindex: number; address: string; mtu: number; linkinfo: { info_data: Record<string, unknown> } }>>('-d', 'link', 'show', dev).catch(() => []);
  return out[0] ?? null;
}

if (process.env.WEFT_BACKEND_WORKER === '1') {
  void worker();
} else {
  describe('backend: vxlan and host-gw in network namespaces @real', function () {
    this.timeout(30_000);
    let sw: Switch;
    let h1: Host;
    let h2: Host;
    let stateDir: string;

    before(async () => {
      await cleanupLeftovers();
      stateDir = await mkdtemp(join(tmpdir(), 'weft-real-'));
    });
    after(async () => {
      await teardownAll();
      await rm(stateDir, { recursive: true, force: true });
    });

    beforeEach(async () => {
      sw = await Switch.create('sw');
      h1 = new Host(await sw.addHost('h1', '198.18.0.1/24'), '198.18.0.1', '10.244.1.0/24');
      h2 = new Host(await sw.addHost('h2', '198.18.0.2/24'), '198.18.0.2', '10.244.2.0/24');
    });
    afterEach(async () => {
      await h1.stop().catch(() => undefined);
      await h2.stop().catch(() => undefined);
      await teardownAll();
    });

    async function startPair(config: Partial<BackendConfig> = {}, backend: 'vxlan' | 'host-gw' = 'vxlan', resyncIntervalMs = 200, routeNexthops: 'on' | 'off' = 'off'): Promise<void> {
      await h1.start(backend, join(stateDir, `h1-${Date.now()}`), config, resyncIntervalMs, routeNexthops);
      await h2.start(backend, join(stateDir, `h2-${Date.now()}`), config, resyncIntervalMs, routeNexthops);
      await h1.resync([h2.lease]);
      await h2.resync([h1.lease]);
    }

    it('creates the device and programs neighbour, FDB and onlink route; pings cross the overlay', async () => {
      await startPair();
      const dev = await linkInfo(h1.ns, 'flannel.1');
      expect(dev?.mtu).to.equal(1450);
      expect(dev?.address).to.equal(h1.mac);
      expect(dev?.linkinfo.info_data).to.include({ id: 1, local: '198.18.0.1', port: 8472, learning: false });
      const addrs = await h1.ns.ipJson<Array<{ addr_info: Array<{ local: string; prefixlen: number }> }>>('-4', 'addr', 'show', 'dev', 'flannel.1');
      expect(addrs[0]?.addr_info.map((a) => `${a.local}/${a.prefixlen}`)).to.deep.equal(['10.244.1.0/32']);
      expect(await dumps(h1.ns)).to.deep.equal({
        neighs: [`10.244.2.0 ${h2.mac} PERMANENT`],
        fdbs: [`${h2.mac} dst 198.18.0.2 self permanent`],
        routes: ['10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink proto 87'],
      });
      expect(await ping(h1.ns, '10.244.2.0')).to.equal(true);
    });

    it('repairs a route, neighbour and FDB entry deleted by hand', async () => {
      await startPair();
      const programmed = await dumps(h1.ns);
      await h1.ns.ip('route', 'del', '10.244.2.0/24');
      await h1.ns.ip('neigh', 'del', '10.244.2.0', 'dev', 'flannel.1');
      await h1.ns.exec('bridge', 'fdb', 'del', h2.mac, 'dev', 'flannel.1', 'self');
      await eventually(async () => JSON.stringify(await dumps(h1.ns)) === JSON.stringify(programmed), 5000, 'entries restored');
      expect(await ping(h1.ns, '10.244.2.0')).to.equal(true);
    });

    it('replaces a peer\'s entries when its MAC changes and drops the old FDB entry', async () => {
      await startPair();
      const before = h2.lease;
      const after: WireLease = { ...before, attrs: { ...before.attrs, BackendData: { VNI: 1, VtepMAC: '0a:77:00:00:00:02' } } };
      await h1.events([{ type: 'changed', lease: after, previous: before }], [after]);
      const d = await dumps(h1.ns);
      expect(d.neighs).to.deep.equal(['10.244.2.0 0a:77:00:00:00:02 PERMANENT']);
      expect(d.fdbs).to.deep.equal(['0a:77:00:00:00:02 dst 198.18.0.2 self permanent']);
      await h1.events([{ type: 'removed', lease: after }], []);
      expect(await dumps(h1.ns)).to.deep.equal({ neighs: [], fdbs: [], routes: [] });
    });

    it('rebuilds the device deleted under a running backend, same MAC, peers replayed', async () => {
      await startPair();
      await h1.ns.ip('link', 'del', 'flannel.1');
      await eventually(async () => (await dumps(h1.ns)).routes.length === 1, 5000, 'device rebuilt');
      expect((await linkInfo(h1.ns, 'flannel.1'))?.address).to.equal(h1.mac);
      await eventually(() => ping(h1.ns, '10.244.2.0'), 5000, 'ping over rebuilt device');
    });

    it('adopts the device at restart without disturbance and removes entries of peers gone meanwhile', async () => {
      await startPair();
      const before = await linkInfo(h1.ns, 'flannel.1');
      await h1.stop();
      // A peer that left while weftd was down, programmed flanneld-style (proto boot).
      await h1.ns.ip('neigh', 'replace', '10.244.9.0', 'dev', 'flannel.1', 'lladdr', '0a:00:00:00:00:09', 'nud', 'permanent');
      await h1.ns.exec('bridge', 'fdb', 'replace', '0a:00:00:00:00:09', 'dev', 'flannel.1', 'dst', '198.18.0.9', 'self', 'permanent');
      await h1.ns.ip('route', 'replace', '10.244.9.0/24', 'via', '10.244.9.0', 'dev', 'flannel.1', 'onlink');
      await h1.start('vxlan', join(stateDir, 'h1-restart'));
      await h1.resync([h2.lease]);
      const after = await linkInfo(h1.ns, 'flannel.1');
      expect(after?.ifindex).to.equal(before?.ifindex);
      expect(after?.address).to.equal(before?.address);
      expect(await dumps(h1.ns)).to.deep.equal({
        neighs: [`10.244.2.0 ${h2.mac} PERMANENT`],
        fdbs: [`${h2.mac} dst 198.18.0.2 self permanent`],
        routes: ['10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink proto 87'],
      });
    });

    it('recreates an incompatible device (other VNI)', async () => {
      await h1.ns.ip('link', 'add', 'flannel.1', 'type', 'vxlan', 'id', '2', 'local', '198.18.0.1', 'dev', 'eth0', 'dstport', '8472');
      await h1.start('vxlan', join(stateDir, 'h1-incompat'));
      expect((await linkInfo(h1.ns, 'flannel.1'))?.linkinfo.info_data).to.include({ id: 1 });
    });

    it('DirectRouting: a peer on the same segment gets a plain route via its public IP', async () => {
      await startPair({ directRouting: true });
      expect(await dumps(h1.ns)).to.deep.equal({ neighs: [], fdbs: [], routes: ['10.244.2.0/24 via 198.18.0.2 dev eth0 proto 87'] });
      expect(await ping(h1.ns, '10.244.2.0')).to.equal(true);
    });

    // The periodic pass is 300 s away in these: only the kernel's notifications can start a repair.
    const LONG = 300_000;
    const restored = (ns: Netns, want: Dumps) => async () => JSON.stringify(await dumps(ns)) === JSON.stringify(want);

    it('with the periodic pass 300 s away, a route, neighbour or FDB entry deleted by hand is restored within 2 s', async () => {
      await startPair({}, 'vxlan', LONG);
      const programmed = await dumps(h1.ns);
      const before = await h1.stats();
      const deletions: Array<[string, () => Promise<unknown>]> = [
        ['route', () => h1.ns.ip('route', 'del', '10.244.2.0/24')],
        ['neighbour', () => h1.ns.ip('neigh', 'del', '10.244.2.0', 'dev', 'flannel.1')],
        ['FDB entry', () => h1.ns.exec('bridge', 'fdb', 'del', h2.mac, 'dev', 'flannel.1', 'dst', '198.18.0.2', 'self')],
      ];
      for (const [what, deleteIt] of deletions) {
        const t0 = Date.now();
        await deleteIt();
        await eventually(restored(h1.ns, programmed), 2000, `${what} restored`);
        console.log(`      ${what}: restored after ${Date.now() - t0} ms`);
      }
      await eventually(async () => (await h1.stats()).driftRepairs - before.driftRepairs === 3, 2000, 'three repairs counted');
      const after = await h1.stats();
      expect(after.fullPasses - before.fullPasses, 'one full pass per deletion').to.equal(3);
      expect(await ping(h1.ns, '10.244.2.0')).to.equal(true);
    });

    it('host-gw, periodic pass 300 s away: a route deleted or replaced by hand is restored within 2 s', async () => {
      await startPair({}, 'host-gw', LONG);
      const programmed = await dumps(h1.ns);
      await h1.ns.ip('route', 'del', '10.244.2.0/24');
      await eventually(restored(h1.ns, programmed), 2000, 'route restored');
      await h1.ns.ip('route', 'replace', '10.244.2.0/24', 'via', '198.18.0.2', 'dev', 'eth0', 'proto', 'static');
      await eventually(restored(h1.ns, programmed), 2000, 'route back to proto 87');
    });

    /**
     * Peers 0..999 by resync, then 500 removed and 500 added, and a second for every echo to be delivered and
     * judged; returns the 500 kept. /27s inside the /16 Network, so every route is one weft owns; public IPs need
     * not answer.
     */
    async function churnThousand(): Promise<WireLease[]> {
      const fake = (i: number): WireLease => ({
        subnet: `10.244.${16 + (i >> 3)}.${(i & 7) * 32}/27`,
        attrs: { PublicIP: `198.18.${1 + (i >> 8)}.${i & 255}`, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: `0a:01:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` } } as LeaseAttrs,
      });
      const first = Array.from({ length: 1000 }, (_, i) => fake(i));
      await h1.resync(first);
      const kept = first.slice(500);
      const added = Array.from({ length: 500 }, (_, i) => fake(1000 + i));
      const events: WireEvent[] = [...first.slice(0, 500).map((lease): WireEvent => ({ type: 'removed', lease })), ...added.map((lease): WireEvent => ({ type: 'added', lease }))];
      await h1.events(events, [...kept, ...added]);
      await new Promise((r) => setTimeout(r, 1000));
      return kept;
    }

    it('programming 1000 peers (a resync, then 500 removed and 500 added) starts no extra full pass', async () => {
      await h1.start('vxlan', join(stateDir, `h1-many-${Date.now()}`), {}, LONG);
      const kept = await churnThousand();
      // The first pass and the one that follows the start of listening; no repair.
      expect(await h1.stats()).to.include({ fullPasses: 2, driftEvents: 0, driftRepairs: 0 });
      const programmed = await dumps(h1.ns);
      expect(programmed.routes).to.have.length(1000);
      // The monitor was listening all along: a real deletion is repaired.
      await h1.ns.ip('route', 'del', kept[0]!.subnet);
      await eventually(restored(h1.ns, programmed), 2000, 'route restored');
    });

    it('with nexthop objects, 1000 peers programmed and 500 replaced are heard as weft\'s own: no drift', async () => {
      await h1.start('vxlan', join(stateDir, `h1-many-nh-${Date.now()}`), {}, LONG, 'on');
      await churnThousand();
      expect(await h1.stats()).to.include({ fullPasses: 2, driftEvents: 0, driftRepairs: 0, entries: 4000 });
      const form = await nexthopForm(h1.ns);
      expect(form.nexthops).to.have.length(1000);
      expect(form.routes.filter((r) => r.includes(' nhid '))).to.have.length(1000);
    });

    it('a killed kernel monitor is restarted and what changed in the gap is repaired', async () => {
      await startPair({}, 'vxlan', LONG);
      const programmed = await dumps(h1.ns);
      const monitor = await h1.monitorPid();
      process.kill(monitor, 'SIGKILL');
      await h1.ns.ip('route', 'del', '10.244.2.0/24');
      await eventually(restored(h1.ns, programmed), 3000, 'route restored after the gap');
      expect(await h1.monitorPid()).to.not.equal(monitor);
    });

    it('a receive buffer overrun (ENOBUFS) is reported by the monitor, which listens on; weft carries on and repairs', async () => {
      await startPair({}, 'vxlan', LONG);
      const programmed = await dumps(h1.ns);
      const monitor = await h1.monitorPid();
      // Frozen, the monitor cannot read: 25 000 foreign routes fill its receive buffer (test/kernel-netlink-real.test.ts
      // overruns a small one for certain).
      process.kill(monitor, 'SIGSTOP');
      try {
        const lines = Array.from({ length: 25_000 }, (_, i) => `route replace 10.${100 + (i >> 8)}.${i & 255}.0/24 via 198.18.0.9 dev eth0 proto static`);
        await h1.ns.ipBatch(lines);
        await h1.ns.ip('route', 'del', '10.244.2.0/24');
      } finally {
        process.kill(monitor, 'SIGCONT');
      }
      await eventually(restored(h1.ns, programmed), 5000, 'route restored after the overrun');
      const next = await h1.monitorPid();
      expect(next, 'the same monitor process').to.equal(monitor);
      expect((await h1.stats()).driftRepairs).to.be.at.least(1);
    });

    /** `ip -j nexthop show` of weft's (protocol 87) and the main-table routes to 10.244/16, as iproute2 prints them. */
    async function nexthopForm(ns: Netns): Promise<{ nexthops: string[]; routes: string[] }> {
      const nexthops = await ns.ipJson<Array<{ id: number; gateway?: string; dev?: string; protocol?: string; flags?: string[] }>>('nexthop', 'show');
      const routes = await ns.ipJson<Array<{ dst: string; nhid?: number; protocol?: string }>>('route', 'show', 'table', 'main');
      return {
        nexthops: nexthops.filter((n) => n.protocol === '87').map((n) => `id ${n.id} via ${n.gateway} dev ${n.dev}${(n.flags ?? []).includes('onlink') ? ' onlink' : ''}`),
        routes: routes.filter((r) => r.dst.startsWith('10.244.')).map((r) => `${r.dst}${r.nhid ? ` nhid ${r.nhid}` : ''} proto ${r.protocol}`),
      };
    }

    it('host-gw and DirectRouting through nexthop objects: a nexthop via the peer on eth0, the route by nhid; repaired when deleted', async () => {
      await startPair({}, 'host-gw', LONG, 'on');
      const want = { nexthops: ['id 2 via 198.18.0.2 dev eth0'], routes: ['10.244.2.0/24 nhid 2 proto 87'] };
      await h2.ns.ip('addr', 'add', '10.244.2.1/32', 'dev', 'lo');
      expect(await nexthopForm(h1.ns)).to.deep.equal(want);
      expect(await ping(h1.ns, '10.244.2.1')).to.equal(true);
      await h1.ns.ip('nexthop', 'del', 'id', '2');
      await eventually(async () => JSON.stringify(await nexthopForm(h1.ns)) === JSON.stringify(want), 2000, 'nexthop and route restored');
      await h1.events([{ type: 'removed', lease: h2.lease }], []);
      expect(await nexthopForm(h1.ns)).to.deep.equal({ nexthops: [], routes: [] });
      await h1.stop();
      await h2.stop();

      await startPair({ directRouting: true }, 'vxlan', LONG, 'on');
      expect(await nexthopForm(h1.ns)).to.deep.equal(want);
      expect(await dumps(h1.ns)).to.deep.include({ neighs: [], fdbs: [] });
      expect(await ping(h1.ns, '10.244.2.0')).to.equal(true);
    });

    it('host-gw: routes via the peer over eth0; pings reach the peer subnet', async () => {
      await startPair({}, 'host-gw');
      await h2.ns.ip('addr', 'add', '10.244.2.1/32', 'dev', 'lo');
      expect((await dumps(h1.ns)).routes).to.deep.equal(['10.244.2.0/24 via 198.18.0.2 dev eth0 proto 87']);
      expect(await ping(h1.ns, '10.244.2.1')).to.equal(true);
      await h1.events([{ type: 'removed', lease: h2.lease }], []);
      expect((await dumps(h1.ns)).routes).to.deep.equal([]);
    });
  });
}
