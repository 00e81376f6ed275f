/**
 * The soak's faults: how each kind is injected and healed, which pings it may
 * cost (a LossWindow, per its kind's bound) and which repairs it waits for.
 * A fault that finds its own repair missing past its limit reports a
 * violation; the quiet check after the round judges the whole state.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { WeftError } from '../common/errors.js';
import { pidAlive } from '../test/harness/netns.js';
import type { PlannedFault } from './soak-schedule.js';
import { pairKey, type LossWindow } from './soak-check.js';
import { PREFIX, SoakCluster, WEFTD_ARGS, type SoakHost } from './soak-cluster.js';

/** How long a hand-deleted entry, chain or device may take to come back, ms. */
export const REPAIR_LIMIT_MS = { entry: 3000, chain: 8000, device: 5000, lease: 5000 } as const;
/** After the underlay link is back up, the path may take this long (ARP for the peer's underlay address), ms. */
const LINK_SETTLE_MS = 1000;
const ETCD_IPS = ['198.18.0.250', '198.18.0.251', '198.18.0.252'];
/** A PublicIP nobody answers at (TEST-NET-1), for the soak's own leases. */
const NOBODY = (n: number) => `192.0.2.${(n % 200) + 20}`;

export interface SoakSink {
  violation(invariant: string, detail: string): void;
  window(w: LossWindow): LossWindow;
}

let macCounter = 0;
const freshMac = (): string => {
  macCounter++;
  return `0e:5a:00:00:${((macCounter >> 8) & 255).toString(16).padStart(2, '0')}:${(macCounter & 255).toString(16).padStart(2, '0')}`;
};
const leaseValue = (publicIP: string, mac: string): string =>
  JSON.stringify({ PublicIP: publicIP, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });

export class Faults {
  /** Subnets the soak's own leases hold right now. */
  private readonly taken = new Set<string>();

  constructor(
    private readonly soak: SoakCluster,
    private readonly sink: SoakSink,
  ) {}

  async run(f: PlannedFault): Promise<void> {
    const h = f.host === null ? null : this.soak.hosts.get(f.host) ?? null;
    if (f.host !== null && !h) return;
    switch (f.kind) {
      case 'weftd-kill':
        return this.weftdKill(h!, f.durationMs);
      case 'etcd-kill':
      case 'etcd-leader-kill':
        return this.etcdKill(f.kind === 'etcd-leader-kill', f.variant, f.durationMs);
      case 'compact':
        await this.soak.agent.call('compact');
        return;
      case 'lease-delete':
        return this.leaseDelete(h!);
      case 'route-del':
      case 'neigh-del':
      case 'fdb-del':
        return this.entryDelete(f.kind, h!, f.peer!);
      case 'chain-del':
        return this.chainDelete(h!, f.variant);
      case 'device-del':
        return this.deviceDelete(h!);
      case 'link-flap':
        return this.linkFlap(h!, f.durationMs);
      case 'partition':
        return this.partition(h!, f.durationMs);
      case 'node-replace':
        return this.nodeReplace(h!, f.durationMs);
      case 'lease-malformed':
        return this.malformed(f.variant, f.durationMs);
      case 'lease-overlap':
        return this.written([{ key: `${PREFIX}/subnets/10.244.0.0-24`, value: leaseValue(NOBODY(f.variant), freshMac()), ttl: 120 }], f.durationMs);
      case 'lease-bad-publicip': {
        const subnet = await this.freeSubnet();
        const ip = f.variant % 2 === 0 ? `10.244.77.${(f.variant % 250) + 2}` : `169.254.${f.variant % 250}.9`;
        return this.written([{ key: subnet, value: leaseValue(ip, freshMac()), ttl: 120 }], f.durationMs);
      }
      case 'lease-conflict-mac': {
        const mac = (await h!.ns.ipJson<{ address: string }[]>('link', 'show', 'flannel.1'))[0]!.address;
        return this.written([{ key: await this.freeSubnet(), value: leaseValue(NOBODY(f.variant), mac), ttl: 120 }], f.durationMs);
      }
      case 'lease-conflict-ip':
        return this.written([{ key: await this.freeSubnet(), value: leaseValue(h!.node.ip, freshMac()), ttl: 120 }], f.durationMs);
      default:
        throw new WeftError('WEFT_ERR_HARNESS', `fault kind ${f.kind} has no injector`);
    }
  }

  private async weftdKill(h: SoakHost, downMs: number): Promise<void> {
    h.expectDown = true;
    await h.node.stop('SIGKILL');
    await sleep(downMs);
    h.node.start(WEFTD_ARGS);
    h.expectDown = false;
    await h.node.waitReady(60_000).catch((err: Error) => this.sink.violation('weftd-restart', `h${h.index}: ${err.message}`));
  }

  private async etcdKill(leader: boolean, variant: number, downMs: number): Promise<void> {
    const etcds = this.soak.cluster.etcds;
    const flags = await Promise.all(etcds.map((e) => e.isLeader().catch(() => false)));
    const candidates = etcds.filter((_, i) => flags[i] === leader);
    const member = candidates[variant % Math.max(1, candidates.length)] ?? etcds[variant % etcds.length]!;
    const pid = member.pid;
    if (pid === undefined) return;
    process.kill(pid, 'SIGKILL');
    while (pidAlive(pid)) await sleep(20);
    await sleep(downMs);
    await member.restart();
  }

  private async leaseDelete(h: SoakHost): Promise<void> {
    const subnet = h.subnet();
    const w = this.sink.window({ kind: 'lease-delete', start: Date.now(), end: Infinity, pairs: new Set(), hosts: new Set([h.index]) });
    await this.soak.agent.call('delete', { key: h.key() });
    // Back when weftd re-created the key and every other host routes to it again.
    const others = () => [...this.soak.hosts.values()].filter((o) => o !== h && !o.expectDown);
    const ms = await SoakCluster.until(async () => {
      if (!(await this.soak.agent.call<string | null>('get', { key: h.key() }))) return false;
      const ks = await Promise.all(others().map((o) => o.kernel()));
      return ks.every((k) => k.routes.has(subnet));
    }, REPAIR_LIMIT_MS.lease);
    w.end = Date.now();
    if (ms === null) this.sink.violation('repair', `lease-delete h${h.index}: key or peers' routes not back within ${REPAIR_LIMIT_MS.lease} ms`);
  }

  private async entryDelete(kind: string, h: SoakHost, peerIndex: number): Promise<void> {
    const peer = this.soak.hosts.get(peerIndex);
    if (!peer || peer.expectDown) return;
    let subnet: string;
    let mac: string;
    try {
      subnet = peer.subnet();
      mac = (await peer.ns.ipJson<{ address: string }[]>('link', 'show', 'flannel.1'))[0]!.address;
    } catch {
      return; // the peer is leaving, or its device is being re-created by another fault
    }
    const gw = subnet.split('/')[0]!;
    const w = this.sink.window({ kind, start: Date.now(), end: Infinity, pairs: new Set([pairKey(h.index, peerIndex)]), hosts: new Set() });
    try {
      if (kind === 'route-del') await h.ns.ip('route', 'del', subnet, 'dev', 'flannel.1');
      else if (kind === 'neigh-del') await h.ns.ip('neigh', 'del', gw, 'dev', 'flannel.1');
      else await h.ns.exec('bridge', 'fdb', 'del', mac, 'dev', 'flannel.1', 'dst', peer.node.ip, 'self');
    } catch {
      w.end = Date.now();
      return; // not there to delete (the peer is being re-programmed by another fault)
    }
    const back = async (): Promise<boolean> => {
      if (!this.soak.hosts.has(peerIndex)) return true;
      const k = await h.kernel();
      if (kind === 'route-del') return k.routes.get(subnet) === gw;
      if (kind === 'neigh-del') return k.neighs.get(gw) === mac;
      return k.fdb.has(`${mac}>${peer.node.ip}`);
    };
    const ms = await SoakCluster.until(back, REPAIR_LIMIT_MS.entry);
    w.end = Date.now();
    if (ms === null) this.sink.violation('repair', `${kind} on h${h.index} for h${peerIndex}: not restored within ${REPAIR_LIMIT_MS.entry} ms`);
  }

  private async chainDelete(h: SoakHost, variant: number): Promise<void> {
    const [table, hook, chain, comment] =
      variant % 2 === 0 ? ['nat', 'POSTROUTING', 'FLANNEL-POSTRTG', 'flanneld masq'] : ['filter', 'FORWARD', 'FLANNEL-FWD', 'flanneld forward'];
    await h.ns
      .exec('sh', '-c', `iptables -t ${table} -D ${hook} -m comment --comment "${comment}" -j ${chain}; iptables -t ${table} -F ${chain}; iptables -t ${table} -X ${chain}`)
      .catch(() => undefined);
    const ms = await SoakCluster.until(async () => (await h.missingChains()).length === 0, REPAIR_LIMIT_MS.chain);
    if (ms === null) this.sink.violation('repair', `chain-del ${chain} on h${h.index}: not restored within ${REPAIR_LIMIT_MS.chain} ms`);
  }

  private async deviceDelete(h: SoakHost): Promise<void> {
    const w = this.sink.window({ kind: 'device-del', start: Date.now(), end: Infinity, pairs: new Set(), hosts: new Set([h.index]) });
    await h.ns.ip('link', 'del', 'flannel.1').catch(() => undefined);
    const ms = await SoakCluster.until(async () => {
      const kvs = await this.soak.list();
      return (await this.soak.entriesDiff(h, kvs)).length === 0;
    }, REPAIR_LIMIT_MS.device);
    w.end = Date.now();
    if (ms === null) this.sink.violation('repair', `device-del on h${h.index}: device and entries not restored within ${REPAIR_LIMIT_MS.device} ms`);
  }

  private async linkFlap(h: SoakHost, downMs: number): Promise<void> {
    const w = this.sink.window({ kind: 'link-flap', start: Date.now(), end: Infinity, pairs: new Set(), hosts: new Set([h.index]) });
    await h.ns.ip('link', 'set', 'eth0', 'down');
    await sleep(downMs);
    await h.ns.ip('link', 'set', 'eth0', 'up');
    await sleep(LINK_SETTLE_MS);
    w.end = Date.now();
  }

  private async partition(h: SoakHost, ms: number): Promise<void> {
    const rules = ETCD_IPS.flatMap((ip) => [
      ['INPUT', '-s', ip],
      ['OUTPUT', '-d', ip],
    ]);
    const iptables = (op: '-I' | '-D') => Promise.all(rules.map((r) => h.ns.exec('iptables', op, r[0]!, r[1]!, r[2]!, '-m', 'comment', '--comment', 'soak partition', '-j', 'DROP')));
    await iptables('-I');
    await sleep(ms);
    await iptables('-D');
  }

  private async nodeReplace(h: SoakHost, gapMs: number): Promise<void> {
    await this.soak.stopPingsOf(h.index);
    const key = h.key();
    h.expectDown = true;
    await h.node.stop('SIGTERM');
    await this.soak.agent.call('delete', { key });
    this.soak.hosts.delete(h.index);
    await h.pod?.delete();
    await h.ns.delete();
    await sleep(gapMs);
    const fresh = await this.soak.join().catch((err: Error) => {
      this.sink.violation('join', err.message);
      return null;
    });
    if (!fresh) return;
    // A pair's ping starts once both hosts route to each other: before that, a loss says nothing about a fault.
    await Promise.all(
      this.soak.live().filter((i) => i !== fresh.index).map(async (i) => {
        const other = this.soak.hosts.get(i);
        if (!other) return;
        const ok = await SoakCluster.until(async () => {
          const [a, b] = await Promise.all([fresh.kernel(), other.kernel()]);
          return a.routes.has(other.subnet()) && b.routes.has(fresh.subnet());
        }, 30_000);
        if (ok !== null && this.soak.hosts.has(i) && this.soak.hosts.has(fresh.index)) this.soak.startPing(i, fresh.index);
      }),
    );
  }

  /** A subnet key in 10.244.240-247.0/24 that no lease holds (the malformed ones use 248-254). */
  private async freeSubnet(): Promise<string> {
    const used = new Set((await this.soak.list()).map((kv) => kv.key));
    for (let third = 240; third <= 247; third++) {
      const key = `${PREFIX}/subnets/10.244.${third}.0-24`;
      if (!used.has(key) && !this.taken.has(key)) {
        this.taken.add(key);
        return key;
      }
    }
    throw new WeftError('WEFT_ERR_HARNESS', 'no free subnet for a soak lease');
  }

  private async malformed(variant: number, ms: number): Promise<void> {
    const mac = freshMac();
    const all: [string, string][] = [
      ['10.244.250.0-24', '{"PublicIP":"192.0.2.1",'],
      ['10.244.251.0-24', leaseValue('192.0.2.300', mac)],
      ['10.244.252.0-24', leaseValue('192.0.2.2', '0e:5a:00:00:ff')],
      ['10.244.253.0-25', leaseValue('192.0.2.3', mac)],
      ['10.99.0.0-24', leaseValue('192.0.2.4', mac)],
      ['198.18.0.0-24', leaseValue('192.0.2.5', mac)],
      ['10.244.254.7-24', leaseValue('192.0.2.6', mac)],
      ['10.244.249.0-24', leaseValue('127.0.0.1', mac)],
      ['10.244.248.0-24', leaseValue('192.0.2.7', '01:00:5e:00:00:01')],
    ];
    const pick = [all[variant % all.length]!, all[(variant >> 4) % all.length]!, all[(variant >> 8) % all.length]!];
    const keys = [...new Map(pick.map(([k, v]) => [`${PREFIX}/subnets/${k}`, v])).entries()];
    return this.written(keys.map(([key, value]) => ({ key, value })), ms);
  }

  /**
   * Writes the keys (only where absent), holds them `ms`, deletes what it
   * wrote. Every key written is one no node may program: while it is held,
   * every host's kernel is sampled for its route and its FDB entry.
   */
  private async written(keys: { key: string; value: string; ttl?: number }[], ms: number): Promise<void> {
    const wrote: string[] = [];
    try {
      for (const k of keys) if (await this.soak.agent.call<boolean>('create', k)) wrote.push(k.key);
      const refused = keys.filter((k) => wrote.includes(k.key)).map((k) => refusedEntries(k.key, k.value));
      const until = Date.now() + ms;
      const reported = new Set<string>();
      while (Date.now() < until) {
        for (const h of [...this.soak.hosts.values()]) {
          const k = await h.kernel().catch(() => null);
          if (!k) continue;
          for (const r of refused) {
            const held = [...(r.route && k.routes.has(r.route) ? [`route ${r.route}`] : []), ...(r.fdb && k.fdb.has(r.fdb) ? [`fdb ${r.fdb}`] : [])];
            for (const e of held) {
              if (reported.has(`${h.index} ${e}`)) continue;
              reported.add(`${h.index} ${e}`);
              this.sink.violation('refused-lease', `h${h.index} programmed ${e} of ${r.key}`);
            }
          }
        }
        await sleep(Math.min(250, Math.max(0, until - Date.now())));
      }
    } finally {
      for (const key of wrote) await this.soak.agent.call('delete', { key }).catch(() => undefined);
      for (const k of keys) this.taken.delete(k.key);
    }
  }
}

/** The route and FDB entry a lease would get if a node took it (null where the key or value does not parse). */
function refusedEntries(key: string, value: string): { key: string; route: string | null; fdb: string | null } {
  const m = /\/subnets\/(\d+\.\d+\.\d+\.\d+)-(\d+)$/.exec(key);
  let fdb: string | null = null;
  try {
    const v = JSON.parse(value) as { PublicIP?: string; BackendData?: { VtepMAC?: string } };
    if (v.PublicIP && v.BackendData?.VtepMAC) fdb = `${v.BackendData.VtepMAC.toLowerCase()}>${v.PublicIP}`;
  } catch {
    // bad JSON: nothing to program
  }
  return { key, route: m ? `${m[1]}/${m[2]}` : null, fdb };
}
