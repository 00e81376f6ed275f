/**
 * The kernel listener's two subscriptions (kernel/netlink/monitor.ts): kernel
 * object changes (`monitor`) and nf_tables changes (`nftMonitor`) share one
 * child, which the first subscription of either kind starts and the last one
 * stops, and each kind reaches only its own subscribers. The child is a
 * stand-in here, fed the markers and notifications the real one forwards;
 * kernel-netlink-real.test.ts runs the real one. No kernel.
 */
import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { setImmediate as tick, setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { RTPROT_WEFT, type KernelChange, type NftChange } from '../kernel/kernel.js';
import { LISTENER_PROGRAM, NetlinkMonitor, listenerPath, type ListenerChild } from '../kernel/netlink/monitor.js';
import { LISTENING_NFT, LISTENING_ROUTE, NFT_CHANGED, NFT_OVERRUN, NFT_UNWATCHED, NLMSG_NOOP, NLMSG_OVERRUN, markerDatagram } from '../kernel/netlink/notify.js';
import { frame } from '../kernel/netlink/wire.js';
import { routeReplaceMessage } from './harness/netlink-messages.js';
import { eventually } from './harness/netns.js';
import { thrown } from './harness/thrown.js';

/** A listener child stand-in: records what it is told over stdin, forwards what a test gives it. */
class FakeChild extends EventEmitter implements ListenerChild {
  readonly stdin = new PassThrough();
  readonly stdout = new PassThrough();
  readonly stderr = new PassThrough();
  /** Every command received, in order (`R`/`r`: join/leave route groups, `N`/`n`: nf_tables). */
  commands = '';
  ended = false;
  killedWith: string | null = null;

  constructor() {
    super();
    this.stdin.on('data', (chunk: Buffer) => (this.commands += chunk.toString()));
    this.stdin.on('end', () => (this.ended = true));
  }

  /** Forwards datagrams as the child does: each one length-prefixed on stdout. */
  forward(...datagrams: Buffer[]): void {
    for (const d of datagrams) {
      const len = Buffer.alloc(4);
      len.writeUInt32LE(d.length, 0);
      this.stdout.write(Buffer.concat([len, d]));
    }
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): boolean {
    this.killedWith = signal;
    this.emit('exit', null, signal);
    return true;
  }

  unref(): void {}
}

/** A NetlinkMonitor over stand-in children, with every child it started. */
function listenerWithFakeChildren(): { listener: NetlinkMonitor; children: FakeChild[] } {
  const children: FakeChild[] = [];
  const listener = new NetlinkMonitor(() => {
    const child = new FakeChild();
    children.push(child);
    return child;
  });
  return { listener, children };
}

/** Lets the stand-in's streams deliver what was written to them. */
async function flushStreams(): Promise<void> {
  for (let i = 0; i < 5; i++) await tick();
}

const routeNotification = frame(routeReplaceMessage({ dst: '10.244.2.0/24', gw: '10.244.2.0', oif: 5, onlink: true, proto: RTPROT_WEFT }), 0, 0);

describe('kernel listener: two subscriptions, one child (unit)', () => {
  it('starts the child with the first subscription of either kind, joins each kind only while it has subscribers, stops it with the last', async () => {
    const { listener, children } = listenerWithFakeChildren();
    expect(listener.running).to.equal(false);

    const offNft = listener.nftMonitor(() => undefined);
    expect(children).to.have.length(1);
    expect(listener.running).to.equal(true);
    await flushStreams();
    expect(children[0]!.commands, 'the keeper alone: nf_tables only').to.equal('N');

    const offRoute = listener.monitor(() => undefined);
    const offRoute2 = listener.monitor(() => undefined);
    await flushStreams();
    expect(children, 'one child for both kinds').to.have.length(1);
    expect(children[0]!.commands).to.equal('NR');

    offNft();
    offRoute();
    await flushStreams();
    expect(children[0]!.commands, 'nf_tables left; route changes still wanted').to.equal('NRn');
    expect(children[0]!.ended).to.equal(false);
    offRoute2();
    offRoute2();
    await flushStreams();
    expect(children[0]!.ended, 'the last subscription left: stdin ends, the child exits on its own').to.equal(true);
    expect(children[0]!.killedWith).to.equal(null);
    expect(listener.running).to.equal(false);

    // Whatever starts first: the backend's subscription now.
    listener.monitor(() => undefined);
    await flushStreams();
    expect(children).to.have.length(2);
    expect(children[1]!.commands).to.equal('R');
    listener.destroy();
  });

  it('hands kernel object changes to monitor subscribers only and nf_tables reports to nftMonitor subscribers only', async () => {
    const { listener, children } = listenerWithFakeChildren();
    const changes: KernelChange[] = [];
    const reports: NftChange[] = [];
    listener.monitor((c) => changes.push(c));
    listener.nftMonitor((r) => reports.push(r));
    const child = children[0]!;
    // Before the child says it listens, nothing of a kind is passed on (a leftover of an earlier socket).
    child.forward(routeNotification, markerDatagram(NFT_CHANGED));
    child.forward(markerDatagram(NLMSG_NOOP, LISTENING_ROUTE), markerDatagram(NLMSG_NOOP, LISTENING_NFT));
    child.forward(routeNotification, markerDatagram(NFT_CHANGED), markerDatagram(NLMSG_OVERRUN), markerDatagram(NFT_OVERRUN));
    await flushStreams();
    expect(changes).to.deep.equal([
      { kind: 'route', op: 'new', route: { dst: '10.244.2.0/24', gw: '10.244.2.0', oif: 5, onlink: true, proto: RTPROT_WEFT } },
      { kind: 'overrun' },
    ]);
    expect(reports).to.deep.equal([{ kind: 'overrun', why: 'nf_tables changes were not watched until now' }, { kind: 'newgen' }, { kind: 'overrun' }]);
    child.forward(markerDatagram(NFT_UNWATCHED, 'Operation not permitted'));
    await flushStreams();
    expect(reports.at(-1)).to.deep.equal({ kind: 'unwatched', why: 'Operation not permitted' });
    expect(changes).to.have.length(2);
    listener.destroy();
    expect(child.killedWith).to.equal('SIGTERM');
  });

  it('reports a dead child to both kinds as an overrun and starts the next, which joins what is still wanted', async () => {
    const { listener, children } = listenerWithFakeChildren();
    const changes: KernelChange[] = [];
    const reports: NftChange[] = [];
    listener.monitor((c) => changes.push(c));
    listener.nftMonitor((r) => reports.push(r));
    children[0]!.stderr.write('Aborted\n');
    await flushStreams();
    children[0]!.emit('exit', null, 'SIGABRT');
    const why = 'kernel listener stopped (SIGABRT: Aborted)';
    expect(changes).to.deep.equal([{ kind: 'overrun', why }]);
    expect(reports).to.deep.equal([{ kind: 'overrun', why }]);
    expect(listener.running, 'restart pending').to.equal(true);
    await eventually(async () => children.length === 2, 3000, 'the next child');
    await flushStreams();
    expect(children[1]!.commands).to.equal('RN');
    listener.close();
    expect(children[1]!.ended || children[1]!.stdin.writableEnded).to.equal(true);
  });

  it('makes reads wait for route changes to be listened to, and only when someone subscribed to them', async () => {
    const { listener, children } = listenerWithFakeChildren();
    await listener.caughtUp();
    listener.nftMonitor(() => undefined);
    await listener.caughtUp();
    listener.monitor(() => undefined);
    let caughtUp = false;
    const waiting = listener.caughtUp().then(() => (caughtUp = true));
    await sleep(50);
    expect(caughtUp, 'waits for the child to say it listens').to.equal(false);
    children[0]!.forward(markerDatagram(NLMSG_NOOP, LISTENING_ROUTE));
    await waiting;
    expect(caughtUp).to.equal(true);
    listener.destroy();
  });

  it('without the listener program, the first subscription throws WEFT_ERR_LISTENER_MISSING and leaves nothing subscribed', () => {
    const missing = ['/nonexistent/dist/bin/weft-listener', '/nonexistent/bin/weft-listener'];
    expect(thrown(() => listenerPath(missing))).to.include({ code: 'WEFT_ERR_LISTENER_MISSING' });
    expect(thrown(() => listenerPath(missing)).message).to.include('npm run build');
    const listener = new NetlinkMonitor(() => listenerPath(missing) as never);
    expect(thrown(() => listener.monitor(() => undefined))).to.include({ code: 'WEFT_ERR_LISTENER_MISSING' });
    expect(listener.running).to.equal(false);
    expect(thrown(() => listener.nftMonitor(() => undefined)), 'the next subscription tries again').to.include({ code: 'WEFT_ERR_LISTENER_MISSING' });
  });

  it('the build puts the listener program where weft looks for it (dist/bin/, beside the bundles)', () => {
    expect(listenerPath()).to.equal(fileURLToPath(new URL(`../bin/${LISTENER_PROGRAM}`, import.meta.url)));
  });

  it('a listener program gone when a dead child is to be restarted: reported as an overrun that says why, and tried again', async () => {
    const children: FakeChild[] = [];
    let gone = false;
    const listener = new NetlinkMonitor(() => {
      if (gone) listenerPath(['/nonexistent/weft-listener']);
      const child = new FakeChild();
      children.push(child);
      return child;
    });
    const changes: KernelChange[] = [];
    listener.monitor((c) => changes.push(c));
    gone = true;
    children[0]!.emit('exit', 0, null);
    await eventually(async () => changes.some((c) => c.kind === 'overrun' && c.why?.startsWith('kernel listener not restarted')), 3000, 'the failed restart reported');
    gone = false;
    await eventually(async () => children.length === 2, 3000, 'the next child, once the program is back');
    listener.destroy();
  });

  it('after close() a subscription hears nothing and starts no child', async () => {
    const { listener, children } = listenerWithFakeChildren();
    listener.close();
    const changes: KernelChange[] = [];
    listener.monitor((c) => changes.push(c))();
    listener.nftMonitor(() => changes.push({ kind: 'overrun' }));
    expect(children).to.have.length(0);
    expect(listener.running).to.equal(false);
  });
});
