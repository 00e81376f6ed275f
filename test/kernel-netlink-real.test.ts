/**
 * The netlink port against the real kernel, in a network namespace: the
 * listener child started by either subscription (nf_tables alone, with no
 * backend; then kernel object changes joining the same child), the iptables
 * keeper following ruleset changes with no backend running, a flood of
 * notifications that overruns a listener which goes on listening, and close()
 * versus destroy(); and IPv6 (a vxlan device with an IPv6 local, NDP
 * entries, FDB remotes, routes, nexthops, addresses and blackholes
 * programmed, dumped by family and compared with what `ip -6 -j` reports,
 * and IPv6 changes made outside weft heard). The kernel side runs as this same file inside the
 * namespace (`ip netns exec NS node <this file> --netlink-worker`), driven
 * over IPC.
 */
import { expect } from 'chai';
import { execFile, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { isWeftError } from '../common/errors.js';
import { Subnet } from '../common/subnet.js';
import { TrafficRules } from '../kernel/iptables.js';
import { NetlinkKernel } from '../kernel/kernel-netlink.js';
import { NetlinkMonitor, spawnListenerChild, type ListenerChild } from '../kernel/netlink/monitor.js';
import { KernelError, RTPROT_WEFT, type AddrInfo, type Fdb, type KernelChange, type KernelOp, type Link, type Neigh, type Nexthop, type NftChange, type OpResult, type Route } from '../kernel/kernel.js';
import { Netns, cleanupLeftovers, eventually, pidAlive, teardownAll } from './harness/netns.js';

const SELF = fileURLToPath(import.meta.url);
const hex = (n: number): string => n.toString(16).padStart(2, '0');
const WORKER_FLAG = '--netlink-worker';
const execFileAsync = promisify(execFile);

type Command =
  | { cmd: 'nft' }
  | { cmd: 'route' }
  | { cmd: 'watch' }
  | { cmd: 'keeper' }
  | { cmd: 'lifetimes' }
  | { cmd: 'flood' }
  | { cmd: 'blackhole'; op: 'replace' | 'del'; dst: string }
  | { cmd: 'call'; method: keyof NetlinkKernel; args: unknown[] }
  | { cmd: 'stop' };
/** What a `call` gave: the method's result (null for none), or the errno of its KernelError. */
type CallResult = { ok: unknown } | { errno: string };
type Report =
  | { nft: NftChange }
  | { change: KernelChange }
  | { flooded: KernelChange }
  | { done: Command['cmd']; result?: unknown };

/** Worker side: one NetlinkKernel in the test namespace, doing what the test says and reporting what it hears. */
function worker(): void {
  const send = (report: Report): void => void process.send!(report);
  const kernel = new NetlinkKernel();
  const keeper = new AbortController();
  process.on('message', (command: Command) => {
    void (async () => {
      switch (command.cmd) {
        case 'nft': {
          // The listener reports the moment it watches nf_tables as an overrun ("not watched until now").
          let listening!: () => void;
          const watched = new Promise<void>((resolve) => (listening = resolve));
          kernel.nftMonitor((change) => {
            send({ nft: change });
            if (change.kind !== 'newgen') listening();
          });
          await watched;
          break;
        }
        case 'route':
          kernel.monitor((change) => {
            if (change.kind === 'route' || change.kind === 'overrun') send({ change });
          });
          // A read waits for the listener to listen (subscribe first, then dump).
          await kernel.routeList();
          break;
        case 'watch':
          // Every kernel object change but links, of both families.
          kernel.monitor((change) => {
            if (change.kind !== 'link') send({ change });
          });
          await kernel.linkList();
          break;
        case 'call': {
          const method = kernel[command.method] as (...args: unknown[]) => Promise<unknown>;
          const result: CallResult = await method.apply(kernel, command.args).then(
            (value) => ({ ok: value ?? null }),
            (err: unknown) => {
              if (err instanceof KernelError) return { errno: err.errno };
              throw err;
            },
          );
          send({ done: 'call', result });
          return;
        }
        case 'keeper': {
          const spec = { network: Subnet.parse('10.244.0.0/16'), subnet: Subnet.parse('10.244.3.0/24'), ipMasq: true, forwardRules: true };
          // A period no test waits for: only reported changes can bring the next check.
          const rules = new TrafficRules(spec, { intervalMs: 3_600_000 });
          await new Promise<void>((resolve) => void rules.run(keeper.signal, resolve));
          rules.follow(kernel, keeper.signal);
          break;
        }
        case 'lifetimes': {
          const result: Record<string, unknown> = {};
          const graceful = new NetlinkKernel();
          const inFlight = graceful.routeList();
          const closed = graceful.close();
          result.closeLetFinish = Array.isArray(await inFlight);
          await closed;
          result.afterClose = await graceful.linkList().then(
            () => 'resolved',
            (err: unknown) => (isWeftError(err) ? err.code : String(err)),
          );
          const immediate = new NetlinkKernel();
          const cut = immediate.routeList();
          immediate.destroy();
          result.destroyRejected = await cut.then(
            () => 'resolved',
            (err: unknown) => (isWeftError(err) ? err.code : String(err)),
          );
          send({ done: 'lifetimes', result });
          return;
        }
        case 'flood': {
          // A listener of its own with a small receive buffer, which a burst of notifications overruns.
          let child: ListenerChild | undefined;
          const flooded = new NetlinkMonitor(() => (child = spawnListenerChild([], 64 << 10)));
          flooded.monitor((change) => {
            if (change.kind === 'overrun' || (change.kind === 'route' && change.op === 'new')) send({ flooded: change });
          });
          await flooded.caughtUp();
          send({ done: 'flood', result: child!.pid });
          return;
        }
        case 'blackhole': {
          const call = command.op === 'replace' ? kernel.blackholeReplace(command.dst) : kernel.blackholeDel(command.dst);
          const result = await call.then(
            () => 'ok',
            (err: unknown) => (err instanceof KernelError ? err.errno : String(err)),
          );
          send({ done: 'blackhole', result });
          return;
        }
        case 'stop':
          keeper.abort();
          await kernel.close();
          process.disconnect();
          return;
      }
      send({ done: command.cmd });
    })().catch((err: Error) => {
      process.stderr.write(`${err.stack ?? err.message}\n`);
      process.exit(1);
    });
  });
}

// ---------------------------------------------------------------- test side

class Worker {
  readonly reports: Report[] = [];
  private readonly child: ChildProcess;

  constructor(readonly ns: Netns) {
    this.child = ns.spawn(process.execPath, [SELF, WORKER_FLAG], { ipc: true });
    this.child.on('message', (report: Report) => this.reports.push(report));
  }

  async run(command: Command): Promise<unknown> {
    const done = this.reports.length;
    this.child.send(command);
    let found: Report | undefined;
    await eventually(async () => (found = this.reports.slice(done).find((r) => 'done' in r && r.done === command.cmd)) !== undefined, 10_000, `worker ${command.cmd}`);
    return (found as { result?: unknown }).result;
  }

  /** Calls a method of the worker's NetlinkKernel: its result, or throws with the errno it failed with. */
  async call<T = unknown>(method: keyof NetlinkKernel, ...args: unknown[]): Promise<T> {
    const result = (await this.run({ cmd: 'call', method, args })) as CallResult;
    if ('errno' in result) throw new Error(`${String(method)}: ${result.errno}`);
    return result.ok as T;
  }

  /** The errno a call failed with, or 'ok'. */
  async errnoOf(method: keyof NetlinkKernel, ...args: unknown[]): Promise<string> {
    const result = (await this.run({ cmd: 'call', method, args })) as CallResult;
    return 'errno' in result ? result.errno : 'ok';
  }

  nft(): NftChange[] {
    return this.reports.flatMap((r) => ('nft' in r ? [r.nft] : []));
  }

  changes(): KernelChange[] {
    return this.reports.flatMap((r) => ('change' in r ? [r.change] : []));
  }

  flooded(): KernelChange[] {
    return this.reports.flatMap((r) => ('flooded' in r ? [r.flooded] : []));
  }

  /** The worker's listener children (the worker runs as `ip netns exec`, which execs: same PID). */
  async listenerPids(): Promise<number[]> {
    const { stdout } = await execFileAsync('pgrep', ['-x', '-P', String(this.child.pid), 'weft-listener']).catch(() => ({ stdout: '' }));
    return stdout.trim().split('\n').filter(Boolean).map(Number);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || !this.child.connected) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    this.child.send({ cmd: 'stop' });
    await exited;
  }
}

if (process.argv[2] === WORKER_FLAG) {
  worker();
} else {
  describe('netlink port in a network namespace @real', function () {
    this.timeout(30_000);
    let ns: Netns;
    let worker: Worker;

    before(async () => {
      await cleanupLeftovers();
      ns = await Netns.create('nlk');
      worker = new Worker(ns);
    });
    after(async () => {
      await worker?.stop();
      await ns?.delete();
      await teardownAll();
    });

    it('an nf_tables subscription alone starts the listener child, which reports ruleset changes', async () => {
      expect(await worker.listenerPids(), 'no subscription, no child').to.deep.equal([]);
      await worker.run({ cmd: 'nft' });
      expect(await worker.listenerPids()).to.have.length(1);
      const seen = worker.nft().length;
      await ns.exec('iptables', '-t', 'filter', '-N', 'WEFT-LISTENER-TEST');
      await eventually(async () => worker.nft().slice(seen).some((c) => c.kind === 'newgen'), 5000, 'a newgen report');
    });

    it('the kernel object subscription joins the same child; each kind hears only its own', async () => {
      const [listener] = await worker.listenerPids();
      await worker.run({ cmd: 'route' });
      expect(await worker.listenerPids(), 'still the one child').to.deep.equal([listener]);
      const nftSeen = worker.nft().length;
      await ns.ip('route', 'add', '10.99.0.0/24', 'dev', 'lo');
      await eventually(async () => worker.changes().some((c) => c.kind === 'route' && c.op === 'new' && c.route.dst === '10.99.0.0/24'), 5000, 'the route reported');
      await ns.exec('iptables', '-t', 'filter', '-X', 'WEFT-LISTENER-TEST');
      await eventually(async () => worker.nft().slice(nftSeen).some((c) => c.kind === 'newgen'), 5000, 'the ruleset change reported');
      expect(worker.changes().filter((c) => c.kind === 'overrun'), 'nothing lost').to.deep.equal([]);
    });

    it('the iptables keeper follows ruleset changes with no backend running', async () => {
      await worker.run({ cmd: 'keeper' });
      const masquerade = async (): Promise<boolean> => (await ns.exec('iptables-save', '-t', 'nat')).includes('-A FLANNEL-POSTRTG');
      expect(await masquerade(), 'installed').to.equal(true);
      await ns.exec('iptables', '-t', 'nat', '-F', 'FLANNEL-POSTRTG');
      expect(await masquerade()).to.equal(false);
      // The keeper's period is an hour: only the reported change can bring the repair this soon.
      await eventually(masquerade, 5000, 'masquerade rules restored');
    });

    it('a blackhole route at the highest metric: replaced idempotently, deleted only by its own kind', async () => {
      const blackholes = async () => (await ns.exec('ip', 'route', 'show', 'type', 'blackhole')).trim();
      expect(await worker.run({ cmd: 'blackhole', op: 'replace', dst: '10.244.3.0/24' })).to.equal('ok');
      expect(await worker.run({ cmd: 'blackhole', op: 'replace', dst: '10.244.3.0/24' })).to.equal('ok');
      expect(await blackholes()).to.equal('blackhole 10.244.3.0/24 proto 87 metric 4294967295');
      // Another route to the same prefix (at another metric) stays when the blackhole goes.
      await ns.exec('ip', 'route', 'add', 'unreachable', '10.244.3.0/24', 'metric', '7');
      expect(await worker.run({ cmd: 'blackhole', op: 'del', dst: '10.244.3.0/24' })).to.equal('ok');
      expect(await blackholes()).to.equal('');
      expect(await ns.exec('ip', 'route', 'show', 'type', 'unreachable')).to.include('unreachable 10.244.3.0/24 metric 7');
      expect(await worker.run({ cmd: 'blackhole', op: 'del', dst: '10.244.3.0/24' })).to.equal('ESRCH');
      await ns.exec('ip', 'route', 'del', 'unreachable', '10.244.3.0/24', 'metric', '7');
    });

    it('a flood of notifications past the receive buffer is reported as an overrun, and the same listener goes on listening', async () => {
      const pid = (await worker.run({ cmd: 'flood' })) as number;
      // Stopped, the listener reads nothing: the burst (a vxlan device's neighbours and FDB entries, added, then
      // flushed with the device) overruns its receive buffer, as it would behind a weftd too busy to read.
      process.kill(pid, 'SIGSTOP');
      try {
        const peers = Array.from({ length: 2000 }, (_, i) => ({ ip: `10.244.${i >> 8}.${i & 255}`, mac: `0e:00:00:00:${hex(i >> 8)}:${hex(i & 255)}` }));
        await ns.ipBatch(['link add flood.1 type vxlan id 1 dstport 8472 nolearning dev lo', ...peers.map((p) => `neigh add ${p.ip} lladdr ${p.mac} dev flood.1 nud permanent`)]);
        await ns.ipBatch(peers.map((p, i) => `fdb append ${p.mac} dev flood.1 dst 192.168.${i >> 8}.${i & 255}`), 'bridge');
        await ns.ip('link', 'del', 'flood.1');
      } finally {
        process.kill(pid, 'SIGCONT');
      }
      await eventually(async () => worker.flooded().some((c) => c.kind === 'overrun'), 5000, 'the overrun reported');
      await ns.ip('route', 'add', '10.98.0.0/24', 'dev', 'lo');
      await eventually(async () => worker.flooded().some((c) => c.kind === 'route' && c.route.dst === '10.98.0.0/24'), 5000, 'a change after the overrun heard');
      expect(pidAlive(pid), 'the listener that was overrun still runs').to.equal(true);
      expect(await worker.listenerPids(), 'no listener restarted').to.include(pid);
      expect(worker.flooded().filter((c) => c.kind === 'overrun' && c.why !== undefined), 'no listener lost (each would say why)').to.deep.equal([]);
    });

    it('close() lets what is in flight finish and refuses what comes after; destroy() cuts what is in flight', async () => {
      expect(await worker.run({ cmd: 'lifetimes' })).to.deep.equal({ closeLetFinish: true, afterClose: 'WEFT_ERR_INVALID_STATE', destroyRejected: 'WEFT_ERR_INVALID_STATE' });
    });
  });

  describe('netlink port: IPv6 in a network namespace @real', function () {
    this.timeout(30_000);
    let ns: Netns;
    let worker: Worker;
    /** `ip ARGS` inside the test namespace (`ip netns exec NS ip ARGS`). */
    const ip = (...args: string[]): Promise<string> => ns.exec('ip', ...args);
    const ipJson = async <T>(...args: string[]): Promise<T> => {
      const out = await ns.exec('ip', '-j', ...args);
      return (out.trim() ? JSON.parse(out) : []) as T;
    };
    let eth0: Link;
    let vxlan: Link;

    before(async () => {
      await cleanupLeftovers();
      ns = await Netns.create('nl6');
      await ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p');
      await ip('-6', 'addr', 'add', '2001:2::1/64', 'dev', 'eth0', 'nodad');
      await ip('link', 'set', 'eth0', 'up');
      await ip('link', 'set', 'eth0p', 'up');
      worker = new Worker(ns);
      await worker.run({ cmd: 'watch' });
    });
    after(async () => {
      await worker?.stop();
      await ns?.delete();
      await teardownAll();
    });

    it('adds a vxlan device with an IPv6 local (IFLA_VXLAN_LOCAL6) and reads it back as `ip -d link show` does', async () => {
      eth0 = (await worker.call<Link | null>('linkByName', 'eth0'))!;
      vxlan = await worker.call<Link>('linkAdd', { name: 'flannel-v6.1', mac: '0e:2a:00:00:00:01', mtu: 1430, vni: 1, port: 8472, local: '2001:2::1', underlayIndex: eth0.index, learning: false, gbp: false });
      expect(vxlan.vxlan).to.deep.equal({ vni: 1, port: 8472, local: '2001:2::1', underlayIndex: eth0.index, learning: false, gbp: false });
      await worker.call('linkSetUp', vxlan.index);
      const [shown] = await ipJson<Array<{ linkinfo: { info_data: { id: number; local6: string; port: number; link: string; learning: boolean } } }>>('-d', 'link', 'show', 'flannel-v6.1');
      expect(shown!.linkinfo.info_data).to.deep.include({ id: 1, local6: '2001:2::1', port: 8472, link: 'eth0', learning: false });
    });

    it('programs NDP entries, FDB remotes, routes (onlink, by nhid), an IPv6 nexthop, a /128 and a blackhole, and dumps them by family as `ip -6 -j` shows them', async () => {
      const ops: KernelOp[] = [
        { op: 'neighSet', neigh: { ifindex: vxlan.index, ip: 'fd00:10:244:3::', mac: '0e:2a:00:00:00:03' } },
        { op: 'fdbReplace', fdb: { ifindex: vxlan.index, mac: '0e:2a:00:00:00:03', dst: '2001:2::3' } },
        { op: 'routeReplace', route: { dst: 'fd00:10:244:3::/64', gw: 'fd00:10:244:3::', oif: vxlan.index, onlink: true } },
        { op: 'nexthopReplace', nexthop: { id: 7, gw: '2001:2::4', oif: eth0.index, onlink: false } },
        { op: 'routeReplace', route: { dst: 'fd00:10:244:4::/64', gw: null, oif: 0, onlink: false, nhid: 7 } },
      ];
      expect(await worker.call<OpResult[]>('apply', ops)).to.deep.equal([null, null, null, null, null]);
      await worker.call('addrAdd', { ifindex: vxlan.index, cidr: 'fd00:10:244:1::/128' });
      await worker.call('blackholeReplace', 'fd00:10:244:1::/64');
      await worker.call('blackholeReplace', 'fd00:10:244:1::/64');

      // Neighbours: NDP entries by family 6 only.
      expect(await worker.call<Neigh[]>('neighList', vxlan.index, 6)).to.deep.equal([{ ifindex: vxlan.index, ip: 'fd00:10:244:3::', mac: '0e:2a:00:00:00:03', permanent: true }]);
      expect(await worker.call<Neigh[]>('neighList', vxlan.index)).to.deep.equal([]);
      const neighs = await ipJson<Array<{ dst: string; lladdr: string; state: string[] }>>('-6', 'neigh', 'show', 'dev', 'flannel-v6.1');
      expect(neighs.filter((n) => n.state.includes('PERMANENT')).map((n) => `${n.dst} ${n.lladdr}`)).to.deep.equal(['fd00:10:244:3:: 0e:2a:00:00:00:03']);

      // FDB: the IPv6 remote.
      expect(await worker.call<Fdb[]>('fdbList', vxlan.index)).to.deep.equal([{ ifindex: vxlan.index, mac: '0e:2a:00:00:00:03', dst: '2001:2::3', permanent: true }]);
      const fdb = await ns.exec('bridge', '-j', 'fdb', 'show', 'dev', 'flannel-v6.1');
      expect((JSON.parse(fdb) as Array<{ mac: string; dst?: string }>).filter((f) => f.dst).map((f) => `${f.mac} ${f.dst}`)).to.deep.equal(['0e:2a:00:00:00:03 2001:2::3']);

      // Nexthops: both families in one dump, the IPv6 gateway as iproute2 prints it.
      expect(await worker.call<Nexthop[]>('nexthopList')).to.deep.equal([{ id: 7, gw: '2001:2::4', oif: eth0.index, onlink: false, proto: RTPROT_WEFT }]);
      expect((await ipJson<Array<{ id: number; gateway: string; dev: string }>>('nexthop', 'show')).map((n) => `${n.id} ${n.gateway} ${n.dev}`)).to.deep.equal(['7 2001:2::4 eth0']);

      // Routes: what `ip -6 route show table main` shows as unicast (no blackhole, no local or multicast routes); IPv4's dump holds none of them.
      const names = new Map((await worker.call<Link[]>('linkList')).map((l) => [l.index, l.name]));
      const ours = (rs: Route[]) => rs.map((r) => `${r.dst} ${r.gw ?? '-'} ${r.oif ? names.get(r.oif) : '-'}${r.onlink ? ' onlink' : ''}${r.nhid ? ` nhid ${r.nhid}` : ''}`).sort();
      type IpRoute = { dst: string; type?: string; gateway?: string; dev?: string; flags: string[]; nhid?: number };
      const theirs = (rs: IpRoute[]) =>
        rs
          .filter((r) => !r.type || r.type === 'unicast')
          .map((r) => `${r.dst === 'default' ? '::/0' : r.dst.includes('/') ? r.dst : `${r.dst}/128`} ${r.gateway ?? '-'} ${r.dev ?? '-'}${r.flags.includes('onlink') ? ' onlink' : ''}${r.nhid ? ` nhid ${r.nhid}` : ''}`)
          .sort();
      await eventually(async () => JSON.stringify(ours(await worker.call<Route[]>('routeList', 6))) === JSON.stringify(theirs(await ipJson<IpRoute[]>('-6', 'route', 'show', 'table', 'main'))), 5000, 'the IPv6 route dumps to agree');
      const routes6 = await worker.call<Route[]>('routeList', 6);
      expect(routes6.filter((r) => r.proto === RTPROT_WEFT)).to.deep.equal([
        { dst: 'fd00:10:244:3::/64', gw: 'fd00:10:244:3::', oif: vxlan.index, onlink: true, proto: RTPROT_WEFT },
        { dst: 'fd00:10:244:4::/64', gw: '2001:2::4', oif: eth0.index, onlink: false, proto: RTPROT_WEFT, nhid: 7 },
      ]);
      expect(routes6.map((r) => r.dst)).to.include.members(['fe80::/64', '2001:2::/64']);
      expect(routes6.some((r) => r.dst.startsWith('ff00:') || r.dst === 'fd00:10:244:1::/64'), 'no multicast or blackhole route').to.equal(false);
      expect((await worker.call<Route[]>('routeList')).some((r) => r.dst.includes(':'))).to.equal(false);
      expect((await ip('-6', 'route', 'show', 'type', 'blackhole')).trim()).to.equal('blackhole fd00:10:244:1::/64 dev lo proto 87 metric 4294967295 pref medium');

      // Addresses: the IPv6 dump, as `ip -6 addr show` lists them; the /128 added without DAD.
      type IpAddr = { ifindex: number; addr_info: Array<{ local: string; prefixlen: number; scope: string; family: string }> };
      const shown = (as: AddrInfo[]) => as.map((a) => `${a.ifindex} ${a.cidr} ${a.scope}`).sort();
      const listed = (ls: IpAddr[]) => ls.flatMap((l) => l.addr_info.map((a) => `${l.ifindex} ${a.local}/${a.prefixlen} ${a.scope}`)).sort();
      await eventually(async () => JSON.stringify(shown(await worker.call<AddrInfo[]>('addrListAll', 6))) === JSON.stringify(listed(await ipJson<IpAddr[]>('-6', 'addr', 'show'))), 5000, 'the IPv6 address dumps to agree');
      const addrs6 = await worker.call<AddrInfo[]>('addrListAll', 6);
      expect(addrs6.find((a) => a.cidr === 'fd00:10:244:1::/128')).to.deep.equal({ ifindex: vxlan.index, cidr: 'fd00:10:244:1::/128', scope: 'global', permanent: true, deprecated: false, secondary: false, temporary: false });
      const [flags] = await ipJson<IpAddr[]>('-6', 'addr', 'show', 'dev', 'flannel-v6.1', 'scope', 'global');
      expect(flags!.addr_info[0]).to.deep.include({ local: 'fd00:10:244:1::', prefixlen: 128, nodad: true });
      expect((await worker.call<AddrInfo[]>('addrListAll')).some((a) => a.cidr.includes(':'))).to.equal(false);
    });

    it('removes what it programmed, each by its own request', async () => {
      expect(await worker.errnoOf('blackholeDel', 'fd00:10:244:1::/64')).to.equal('ok');
      expect(await worker.errnoOf('blackholeDel', 'fd00:10:244:1::/64')).to.equal('ESRCH');
      const ops: KernelOp[] = [
        { op: 'routeDel', route: { dst: 'fd00:10:244:4::/64', nhid: 7 } },
        { op: 'routeDel', route: { dst: 'fd00:10:244:3::/64' } },
        { op: 'nexthopDel', nexthop: { id: 7 } },
        { op: 'neighDel', neigh: { ifindex: vxlan.index, ip: 'fd00:10:244:3::' } },
        { op: 'fdbDel', fdb: { ifindex: vxlan.index, mac: '0e:2a:00:00:00:03', dst: '2001:2::3' } },
        { op: 'routeDel', route: { dst: 'fd00:10:244:3::/64' } },
      ];
      expect(await worker.call<OpResult[]>('apply', ops)).to.deep.equal([null, null, null, null, null, 'ESRCH']);
      await worker.call('addrDel', { ifindex: vxlan.index, cidr: 'fd00:10:244:1::/128' });
      expect(await ip('-6', 'route', 'show', 'proto', '87')).to.equal('');
      expect(await ip('-6', 'route', 'show', 'type', 'blackhole')).to.equal('');
      expect(await ip('nexthop', 'show')).to.equal('');
      expect(await ip('-6', 'neigh', 'show', 'dev', 'flannel-v6.1', 'nud', 'permanent')).to.equal('');
      expect(await ns.exec('bridge', 'fdb', 'show', 'dev', 'flannel-v6.1')).to.not.include('2001:2::3');
      expect(await ip('-6', 'addr', 'show', 'dev', 'flannel-v6.1', 'scope', 'global')).to.equal('');
    });

    it('hears IPv6 routes, addresses and neighbours changed outside weft, and nothing of IPv6\'s local or multicast routes', async () => {
      const seen = worker.changes().length;
      const heard = (match: (c: KernelChange) => boolean, what: string) => eventually(async () => worker.changes().slice(seen).some(match), 5000, what);
      await ip('-6', 'route', 'add', 'fd00:99::/64', 'via', '2001:2::9', 'dev', 'eth0');
      await heard((c) => c.kind === 'route' && c.op === 'new' && c.route.dst === 'fd00:99::/64' && c.route.gw === '2001:2::9' && c.route.oif === eth0.index, 'the IPv6 route added');
      await ip('-6', 'route', 'del', 'fd00:99::/64');
      await heard((c) => c.kind === 'route' && c.op === 'del' && c.route.dst === 'fd00:99::/64', 'the IPv6 route deleted');
      await ip('-6', 'addr', 'add', '2001:2::7/64', 'dev', 'eth0', 'nodad');
      await heard((c) => c.kind === 'addr' && c.op === 'new' && c.addr.cidr === '2001:2::7/64' && c.addr.ifindex === eth0.index, 'the IPv6 address added');
      await ip('-6', 'neigh', 'add', 'fd00:10:244:8::', 'lladdr', '0e:2a:00:00:00:08', 'dev', 'flannel-v6.1', 'nud', 'permanent');
      await heard((c) => c.kind === 'neigh' && c.op === 'new' && c.neigh.ip === 'fd00:10:244:8::' && c.neigh.mac === '0e:2a:00:00:00:08' && c.neigh.permanent, 'the NDP entry added');
      await ip('-6', 'neigh', 'del', 'fd00:10:244:8::', 'dev', 'flannel-v6.1');
      await heard((c) => c.kind === 'neigh' && c.op === 'del' && c.neigh.ip === 'fd00:10:244:8::', 'the NDP entry deleted');
      await ns.exec('bridge', 'fdb', 'append', '00:00:00:00:00:00', 'dev', 'flannel-v6.1', 'dst', '2001:2::9', 'self', 'permanent');
      await heard((c) => c.kind === 'fdb' && c.op === 'new' && c.fdb.dst === '2001:2::9', 'the FDB entry with an IPv6 remote');
      // A link going up brings IPv6's multicast and local routes (table local), fe80::/64 (main): only the last is reported.
      await ip('link', 'add', 'eth1', 'type', 'veth', 'peer', 'name', 'eth1p');
      await ip('link', 'set', 'eth1', 'up');
      await ip('link', 'set', 'eth1p', 'up');
      await heard((c) => c.kind === 'route' && c.op === 'new' && c.route.dst === 'fe80::/64' && c.route.proto === 2, 'the link-local route of a new link');
      const routes = worker.changes().flatMap((c) => (c.kind === 'route' ? [c.route.dst] : []));
      expect(routes.filter((d) => d.startsWith('ff00:')), 'no multicast route').to.deep.equal([]);
      expect(worker.changes().filter((c) => c.kind === 'overrun'), 'nothing lost').to.deep.equal([]);
    });
  });
}
