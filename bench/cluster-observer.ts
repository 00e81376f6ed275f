/**
 * The benchmark's eyes inside a host namespace, next to the weftd under test:
 *   - when weftd answers /readyz (polled every few ms);
 *   - when a peer's three kernel entries (route, neighbour, FDB) became all
 *     present or all gone, from rtnetlink notifications (RTNLGRP_NEIGH carries
 *     both ARP and FDB changes, RTNLGRP_IPV4_ROUTE the routes), timestamped
 *     on arrival; a dual-stack peer's six (the same three on flannel-v6.1:
 *     NDP entries come on RTNLGRP_NEIGH too, routes on RTNLGRP_IPV6_ROUTE);
 *   - when etcd delivered the lease's put/delete to a watch of its own (the
 *     baseline: etcd's watch latency, same client library as weft).
 * Controlled over IPC by bench/cluster.ts:
 *   ip netns exec <host ns> node cluster-observer.js ETCD_ENDPOINT
 */
import { WeftError } from '../common/errors.js';
import { Etcd3, type Watcher } from 'etcd3';
import { RawNetlinkSocket } from 'netlink/dist/raw.js';
import { NetlinkKernel } from '../kernel/kernel-netlink.js';
import { RTM_DELNEIGH, RTM_NEWNEIGH, parseNeigh, toFdb, toNeigh } from '../kernel/netlink/neigh.js';
import { RTM_DELROUTE, RTM_NEWROUTE, parseRoute } from '../kernel/netlink/route.js';
import { AF_BRIDGE, AF_INET, AF_INET6, splitMessages } from '../kernel/netlink/wire.js';
import { PREFIX } from './cluster-leases.js';
import { serve } from './cluster-rpc.js';
import { now } from './cluster-stats.js';

const NETLINK_ROUTE = 0;
const RTNLGRP_NEIGH = 3;
const RTNLGRP_IPV4_ROUTE = 7;
const RTNLGRP_IPV6_ROUTE = 11;

const etcdEndpoint = process.argv[2]!;

// ------------------------------------------------------------- kernel state

const routes = new Set<string>();
const neighs = new Set<string>();
const fdbs = new Set<string>();
let notifications = 0;

interface Expectation {
  readonly subnet: string;
  readonly ip0: string;
  readonly mac: string;
  readonly key: string;
  /** A dual-stack peer's IPv6 subnet, its first address (the NDP entry) and its IPv6 VTEP MAC. */
  readonly subnet6?: string;
  readonly ip6?: string;
  readonly mac6?: string;
  presentAt: number | null;
  absentAt: number | null;
  etcdPutAt: number | null;
  etcdDeleteAt: number | null;
}

const bySubnet = new Map<string, Expectation>();
const byIp = new Map<string, Expectation>();
const byMac = new Map<string, Expectation>();
const byKey = new Map<string, Expectation>();
let wake: Array<() => void> = [];

function touch(e: Expectation | undefined, at: number): void {
  if (!e) return;
  const held = [routes.has(e.subnet), neighs.has(e.ip0), fdbs.has(e.mac)];
  if (e.subnet6 && e.ip6 && e.mac6) held.push(routes.has(e.subnet6), neighs.has(e.ip6), fdbs.has(e.mac6));
  if (held.every(Boolean)) e.presentAt ??= at;
  else if (!held.some(Boolean)) e.absentAt ??= at;
  for (const w of wake.splice(0)) w();
}

function onDatagram(datagram: Buffer): void {
  const at = now();
  for (const msg of splitMessages(datagram)) {
    notifications++;
    if (msg.type === RTM_NEWROUTE || msg.type === RTM_DELROUTE) {
      const r = parseRoute(msg.payload);
      if (!r) continue;
      if (msg.type === RTM_NEWROUTE) routes.add(r.dst);
      else routes.delete(r.dst);
      touch(bySubnet.get(r.dst), at);
    } else if (msg.type === RTM_NEWNEIGH || msg.type === RTM_DELNEIGH) {
      // Delete notifications may lack the attributes a dump carries (a deleted
      // neighbour has no lladdr, for one), so only the key attribute is read.
      const raw = parseNeigh(msg.payload);
      const added = msg.type === RTM_NEWNEIGH;
      if ((raw.family === AF_INET || raw.family === AF_INET6) && raw.dst !== null) {
        const ip = raw.dst;
        if (added && !toNeigh(raw)) continue;
        if (added) neighs.add(ip);
        else neighs.delete(ip);
        touch(byIp.get(ip), at);
      } else if (raw.family === AF_BRIDGE && raw.lladdr !== null) {
        const mac = raw.lladdr;
        if (added && !toFdb(raw)) continue;
        if (added) fdbs.add(mac);
        else fdbs.delete(mac);
        touch(byMac.get(mac), at);
      }
    }
  }
}

let socket: RawNetlinkSocket | null = null;

/** `device6`: also follow this IPv6 device (flannel-v6.1) and the IPv6 routes. */
async function watchKernel(a: { device: string; device6?: string }): Promise<{ routes: number; neighs: number; fdbs: number }> {
  socket = new RawNetlinkSocket(NETLINK_ROUTE, { recvBufferSize: 8 << 20, sendBufferSize: 1 << 16 });
  socket.on('message', onDatagram);
  socket.on('error', (err) => process.stderr.write(`observer: netlink socket: ${err.message}\n`));
  socket.addMembership(RTNLGRP_NEIGH);
  socket.addMembership(RTNLGRP_IPV4_ROUTE);
  if (a.device6) socket.addMembership(RTNLGRP_IPV6_ROUTE);
  // Subscribe first, then dump: a change in between is seen twice, never missed.
  const kernel = new NetlinkKernel();
  try {
    const link = await kernel.linkByName(a.device);
    if (!link) throw new WeftError('WEFT_ERR_HARNESS', `no device ${a.device}`);
    for (const r of await kernel.routeList()) routes.add(r.dst);
    for (const n of await kernel.neighList(link.index)) neighs.add(n.ip);
    for (const f of await kernel.fdbList(link.index)) fdbs.add(f.mac);
    if (a.device6) {
      const link6 = await kernel.linkByName(a.device6);
      if (!link6) throw new WeftError('WEFT_ERR_HARNESS', `no device ${a.device6}`);
      for (const r of await kernel.routeList(6)) routes.add(r.dst);
      for (const n of await kernel.neighList(link6.index, 6)) neighs.add(n.ip);
      for (const f of await kernel.fdbList(link6.index)) fdbs.add(f.mac);
    }
  } finally {
    await kernel.close();
  }
  return { routes: routes.size, neighs: neighs.size, fdbs: fdbs.size };
}

// ------------------------------------------------------------- etcd watch

let client: Etcd3 | null = null;
let watcher: Watcher | null = null;

async function watchEtcd(): Promise<void> {
  client = new Etcd3({ hosts: [etcdEndpoint] });
  watcher = await client.watch().prefix(`${PREFIX}/subnets/`).create();
  watcher.on('put', (kv) => {
    const e = byKey.get(kv.key.toString());
    if (e) e.etcdPutAt ??= now();
    for (const w of wake.splice(0)) w();
  });
  watcher.on('delete', (kv) => {
    const e = byKey.get(kv.key.toString());
    if (e) e.etcdDeleteAt ??= now();
    for (const w of wake.splice(0)) w();
  });
  watcher.on('error', (err) => process.stderr.write(`observer: etcd watch: ${String(err)}\n`));
}

// ------------------------------------------------------------- requests

interface PeerRef {
  readonly subnet: string;
  readonly mac: string;
  readonly key: string;
  readonly subnet6?: string;
  readonly mac6?: string;
}

/** Starts tracking these peers' next transition (their previous records are dropped). */
function expect(a: { peers: PeerRef[] }): void {
  for (const p of a.peers) {
    const e: Expectation = {
      ...p, ip0: p.subnet.split('/')[0]!, ...(p.subnet6 ? { ip6: p.subnet6.split('/')[0]! } : {}),
      presentAt: null, absentAt: null, etcdPutAt: null, etcdDeleteAt: null,
    };
    bySubnet.set(e.subnet, e);
    byIp.set(e.ip0, e);
    byMac.set(e.mac, e);
    byKey.set(e.key, e);
    if (e.subnet6 && e.ip6 && e.mac6) bySubnet.set(e.subnet6, e), byIp.set(e.ip6, e), byMac.set(e.mac6, e);
  }
}

interface Arrival {
  readonly subnet: string;
  readonly kernelAt: number | null;
  readonly etcdAt: number | null;
}

/** Waits until every subnet reached `present` in the kernel and etcd delivered its event, or the timeout. */
async function wait(a: { subnets: string[]; present: boolean; timeoutMs: number }): Promise<Arrival[]> {
  const deadline = Date.now() + a.timeoutMs;
  const pick = (s: string): Arrival => {
    const e = bySubnet.get(s);
    return { subnet: s, kernelAt: (a.present ? e?.presentAt : e?.absentAt) ?? null, etcdAt: (a.present ? e?.etcdPutAt : e?.etcdDeleteAt) ?? null };
  };
  for (;;) {
    const out = a.subnets.map(pick);
    if (out.every((x) => x.kernelAt !== null && (x.etcdAt !== null || !watcher)) || Date.now() >= deadline) {
      for (const s of a.subnets) {
        const e = bySubnet.get(s);
        if (!e) continue;
        bySubnet.delete(s), byIp.delete(e.ip0), byMac.delete(e.mac), byKey.delete(e.key);
        if (e.subnet6 && e.ip6 && e.mac6) bySubnet.delete(e.subnet6), byIp.delete(e.ip6), byMac.delete(e.mac6);
      }
      return out;
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
      wake.push(() => (clearTimeout(t), resolve()));
    });
  }
}

/** Polls weftd's /readyz every `intervalMs`; resolves with the time of the first 200. */
async function readyWait(a: { port: number; timeoutMs: number; intervalMs: number }): Promise<number | null> {
  const deadline = Date.now() + a.timeoutMs;
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`http://127.0.0.1:${a.port}/readyz`);
      await res.arrayBuffer();
      if (res.status === 200) return now();
    } catch {
      /* not listening yet */
    }
    await new Promise((r) => setTimeout(r, a.intervalMs));
  }
  return null;
}

serve(
  {
    watchKernel,
    watchEtcd,
    expect,
    wait,
    readyWait,
    counts: () => ({ routes: routes.size, neighs: neighs.size, fdbs: fdbs.size, notifications }),
  },
  async () => {
    socket?.close();
    await watcher?.cancel().catch(() => undefined);
    client?.close();
  },
);
