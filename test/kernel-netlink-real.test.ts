/**
 * The netlink port against the real kernel, in a network namespace: the
 * listener child started by either subscription (nf_tables alone, with no
 * backend; then kernel object changes joining the same child), the iptables
 * keeper following ruleset changes with no backend running, and close()
 * versus destroy(). The kernel side runs as this same file inside the
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
import { KernelError, type KernelChange, type NftChange } from '../kernel/kernel.js';
import { Netns, cleanupLeftovers, eventually, teardownAll } from './harness/netns.js';

const SELF = fileURLToPath(import.meta.url);
const WORKER_FLAG = '--netlink-worker';
const execFileAsync = promisify(execFile);

type Command = { cmd: 'nft' } | { cmd: 'route' } | { cmd: 'keeper' } | { cmd: 'lifetimes' } | { cmd: 'blackhole'; op: 'replace' | 'del'; dst: string } | { cmd: 'stop' };
type Report =
  | { nft: NftChange }
  | { change: KernelChange }
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

  nft(): NftChange[] {
    return this.reports.flatMap((r) => ('nft' in r ? [r.nft] : []));
  }

  changes(): KernelChange[] {
    return this.reports.flatMap((r) => ('change' in r ? [r.change] : []));
  }

  /** The worker's listener children (the worker runs as `ip netns exec`, which execs: same PID). */
  async listenerPids(): Promise<number[]> {
    const { stdout } = await execFileAsync('pgrep', ['-x', '-P', String(this.child.pid), 'node']).catch(() => ({ stdout: '' }));
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

    it('close() lets what is in flight finish and refuses what comes after; destroy() cuts what is in flight', async () => {
      expect(await worker.run({ cmd: 'lifetimes' })).to.deep.equal({ closeLetFinish: true, afterClose: 'WEFT_ERR_INVALID_STATE', destroyRejected: 'WEFT_ERR_INVALID_STATE' });
    });
  });
}
