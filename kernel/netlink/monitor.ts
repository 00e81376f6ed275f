/**
 * The kernel listener: one small child process, shared by the port's two
 * subscriptions, that holds the notification sockets and forwards what they
 * receive over a pipe; this side decodes it (netlink/notify.ts) and hands
 * each change to the subscriptions of its kind.
 *   - `monitor` (`ip monitor link neigh address route nexthop`): a NETLINK_ROUTE
 *     socket joined to the link and neighbour groups, the IPv4 and IPv6
 *     address and route groups, and to the nexthop group where the kernel has it.
 *   - `nftMonitor` (`nft monitor`): a NETLINK_NETFILTER socket joined to
 *     nf_tables; the child forwards one NFT_CHANGED marker per batch of its
 *     notifications, as that the ruleset changed is all weft uses. When it
 *     cannot subscribe, it says so once (NFT_UNWATCHED, with the reason).
 * The first subscription of either kind starts the child, the last one to
 * leave stops it; in between the child is told over its stdin which sockets
 * to open and close, so each kind is listened to only while someone wants
 * it: while only the iptables keeper listens, the echoes of weft's own
 * start-up programming (before the backend subscribes) reach no one.
 *
 * Why a child, and why in C (kernel/netlink/listener.c, built into
 * dist/bin/weft-listener): a subscribed socket gets ENOBUFS whenever
 * notifications outrun its receive buffer (deleting the vxlan device of a
 * node with many peers flushes two entries per peer at once), and the
 * `netlink` package aborts the whole process on that error. So the sockets
 * live outside weftd. The C listener reports ENOBUFS as an overrun and reads
 * on, the socket still subscribed; weftd repairs the gap with a full pass.
 * It reads while weftd is busy (queueing for it), and sleeps while the
 * kernel is quiet. Weighed against it: a second Node process running the
 * `netlink` package (ended by the abort at each overrun, and a whole Node
 * runtime beside weftd), a worker thread reading the sockets through koffi (a second V8
 * isolate inside weftd, and a thread blocked in recv cannot be terminated),
 * and iproute2's `ip monitor` (text: no sender port id to drop weft's
 * echoes by, no exact attributes to decode like a dump, its overruns only a
 * line on stderr). A listener that dies anyway (killed) is restarted here,
 * and its gap reported as an overrun.
 *
 * The kernel tags the notifications of route and neighbour changes with the
 * port id of the socket that asked for them: the child drops those of weft's
 * own request socket, the bulk of the echoes of weft's programming (FDB and
 * link notifications carry no port id; the reconciler tells echoes among them
 * by content).
 */
import { spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Backoff } from '../../common/backoff.js';
import { WeftError } from '../../common/errors.js';
import type { KernelChange, NftChange } from '../kernel.js';
import {
  DatagramStream,
  LISTENING_NFT,
  LISTENING_ROUTE,
  MONITOR_GROUPS,
  OPTIONAL_MONITOR_GROUPS,
  NLMSG_NOOP,
  decodeChange,
  decodeNftChange,
} from './notify.js';
import { splitMessages } from './wire.js';

/**
 * Receive buffer asked for. SO_RCVBUFFORCE gives it to a listener with
 * CAP_NET_ADMIN (weftd has it); otherwise the kernel caps it at
 * net.core.rmem_max. The kernel doubles it for its bookkeeping.
 */
const BUFFER_BYTES = 16 << 20;
/**
 * The child queues at most this much for a stalled weftd; past it, it leaves
 * the sockets unread, and what the kernel then drops is reported as an overrun.
 */
const QUEUE_LIMIT_BYTES = 64 << 20;
/** How long a kernel read waits for the listener to be listening (see `caughtUp`). */
const LIVE_WAIT_MS = 2000;
/** A child that lived this long restarts without backoff: its death was a one-off (killed), not a crash loop. */
const STABLE_MS = 10_000;
const STDERR_KEPT = 400;

/** What the child is told over its stdin, one character each: open or close the route socket, the nf_tables one. */
const JOIN_ROUTE = 'R';
const LEAVE_ROUTE = 'r';
const JOIN_NFT = 'N';
const LEAVE_NFT = 'n';

/** The listener program's file name; scripts/bundle.mjs compiles kernel/netlink/listener.c into dist/bin/ under it. */
export const LISTENER_PROGRAM = 'weft-listener';

/**
 * Where the listener is looked for: beside the bundle that runs (dist/bin/),
 * or, from the unbundled modules (dist/kernel/netlink/) that tests and
 * benchmarks load, in the same build's dist/bin/.
 */
function listenerPlaces(): string[] {
  return [new URL(LISTENER_PROGRAM, import.meta.url), new URL(`../../bin/${LISTENER_PROGRAM}`, import.meta.url)].map((url) => fileURLToPath(url));
}

/** The listener's path; WEFT_ERR_LISTENER_MISSING when the build did not put it where weft looks. */
export function listenerPath(places: readonly string[] = listenerPlaces()): string {
  for (const place of places) {
    try {
      accessSync(place, constants.X_OK);
      return place;
    } catch {
      // Not here: the next place.
    }
  }
  throw new WeftError('WEFT_ERR_LISTENER_MISSING', `the kernel listener ${LISTENER_PROGRAM} is not in ${places.join(' or ')}: build weft with \`npm run build\` (it needs a C compiler, cc)`);
}

/** The listener child as NetlinkMonitor uses it: a ChildProcess with piped stdio, or a stand-in in tests. */
export interface ListenerChild {
  readonly pid?: number;
  readonly stdin: Writable;
  readonly stdout: Readable;
  readonly stderr: Readable;
  on(event: 'exit', listener: (code: number | null, signal: NodeJS.Signals | null) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  kill(signal?: NodeJS.Signals): boolean;
  unref(): void;
}

/**
 * Starts the real listener child; `ownPorts`: port ids of weft's request
 * sockets, whose echoes it drops; `bufferBytes`: its receive buffer (a test
 * overruns a small one). Throws WEFT_ERR_LISTENER_MISSING.
 */
export function spawnListenerChild(ownPorts: readonly number[], bufferBytes = BUFFER_BYTES): ListenerChild {
  const settings = [String(bufferBytes), MONITOR_GROUPS.join(','), String(QUEUE_LIMIT_BYTES), ownPorts.join(','), OPTIONAL_MONITOR_GROUPS.join(',')];
  return spawn(listenerPath(), settings, { stdio: ['pipe', 'pipe', 'pipe'] });
}

type Kind = 'route' | 'nft';

export class NetlinkMonitor {
  private child: ListenerChild | null = null;
  private readonly routeListeners = new Set<(change: KernelChange) => void>();
  private readonly nftListeners = new Set<(change: NftChange) => void>();
  /** The child said it listens to route changes (NLMSG_NOOP) since it was last told to join them. */
  private routeLive = false;
  /** Likewise for nf_tables. */
  private nftLive = false;
  /** When the current child first said it listens. */
  private liveSince = 0;
  /** A kernel read went ahead while route changes were not listened to: report the gap once they are. */
  private readInGap = false;
  private closed = false;
  private respawn: NodeJS.Timeout | null = null;
  private readonly backoff = new Backoff({ initialMs: 100, maxMs: 30_000 });
  private liveWaiters: Array<() => void> = [];

  /** `spawnChild` starts the child: spawnListenerChild with weft's own port ids, or a stand-in in tests. */
  constructor(private readonly spawnChild: () => ListenerChild) {}

  /** `ip monitor link neigh route nexthop`; the first subscription of either kind starts the child. Returns the unsubscribe. */
  monitor(listener: (change: KernelChange) => void): () => void {
    return this.subscribe('route', this.routeListeners, listener);
  }

  /** `nft monitor`; the first subscription of either kind starts the child. Returns the unsubscribe. */
  nftMonitor(listener: (change: NftChange) => void): () => void {
    return this.subscribe('nft', this.nftListeners, listener);
  }

  /** Whether the child runs (or is about to be restarted): someone is subscribed. */
  get running(): boolean {
    return this.child !== null || this.respawn !== null;
  }

  /**
   * Resolves once route changes are listened to, so that a dump which
   * follows misses no change (subscribe first, then dump); at once when
   * nobody subscribed to them. Waits at most LIVE_WAIT_MS; a read that goes
   * ahead earlier makes the listener report an overrun when it is listening
   * again (and later reads of the same gap do not wait).
   */
  async caughtUp(): Promise<void> {
    if (this.routeListeners.size === 0 || this.routeLive || this.closed || this.readInGap) return;
    let timer: NodeJS.Timeout | undefined;
    const listening = await Promise.race([
      new Promise<true>((resolve) => this.liveWaiters.push(() => resolve(true))),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), LIVE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (!listening && this.routeListeners.size > 0 && !this.routeLive) this.readInGap = true;
  }

  /** Graceful: drops every subscription and lets the child exit on its own (its stdin ends). */
  close(): void {
    this.shutDown((child) => child.stdin.end());
  }

  /** Immediate: drops every subscription and kills the child. */
  destroy(): void {
    this.shutDown((child) => child.kill('SIGTERM'));
  }

  private shutDown(stop: (child: ListenerChild) => void): void {
    if (this.closed) return;
    this.closed = true;
    this.routeListeners.clear();
    this.nftListeners.clear();
    this.stop(stop);
  }

  /** Adds `listener` to its kind's set; after close() it is never called. */
  private subscribe<C>(kind: Kind, listeners: Set<(change: C) => void>, listener: (change: C) => void): () => void {
    if (this.closed) return () => undefined;
    const first = listeners.size === 0;
    listeners.add(listener);
    try {
      if (first) this.want(kind);
    } catch (err) {
      // No listener program: the caller hears why, and nothing is left subscribed.
      listeners.delete(listener);
      throw err;
    }
    return () => {
      if (!listeners.delete(listener) || listeners.size > 0) return;
      if (this.routeListeners.size === 0 && this.nftListeners.size === 0) this.stop((child) => child.stdin.end());
      else this.unwant(kind);
    };
  }

  /** The first subscription of `kind`: start the child, or tell the running one to join. */
  private want(kind: Kind): void {
    if (this.child) this.tell(kind === 'route' ? JOIN_ROUTE : JOIN_NFT);
    else if (!this.respawn) this.start();
  }

  /** The last subscription of `kind` left while the other kind has some: the child closes that socket. */
  private unwant(kind: Kind): void {
    if (kind === 'route') {
      this.routeLive = false;
      this.readInGap = false;
      this.wakeWaiters();
    } else {
      this.nftLive = false;
    }
    this.tell(kind === 'route' ? LEAVE_ROUTE : LEAVE_NFT);
  }

  private start(): void {
    const child = this.spawnChild();
    this.child = child;
    this.liveSince = 0;
    const stream = new DatagramStream();
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => stream.push(chunk, (datagram) => this.receive(child, datagram)));
    child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-STDERR_KEPT)));
    // A child that died before reading its stdin: its exit says why.
    child.stdin.on('error', () => undefined);
    child.on('error', (err) => this.lost(child, err.message));
    child.on('exit', (code, signal) => this.lost(child, `${signal ?? `exit code ${code}`}${stderr.trim() ? `: ${stderr.trim().split('\n').pop()}` : ''}`));
    // The listener must not keep weftd's event loop alive.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) unref(s);
    if (this.routeListeners.size > 0) this.tell(JOIN_ROUTE);
    if (this.nftListeners.size > 0) this.tell(JOIN_NFT);
  }

  /** Stops the child, if any, as `how` says; nothing of it is reported any more. */
  private stop(how: (child: ListenerChild) => void): void {
    if (this.respawn) clearTimeout(this.respawn);
    this.respawn = null;
    const child = this.child;
    this.child = null;
    this.routeLive = this.nftLive = false;
    this.readInGap = false;
    this.wakeWaiters();
    if (child) how(child);
  }

  private tell(command: string): void {
    this.child?.stdin.write(command);
  }

  private receive(child: ListenerChild, datagram: Buffer): void {
    if (child !== this.child) return;
    for (const msg of splitMessages(datagram)) {
      if (msg.type === NLMSG_NOOP) {
        this.listening(msg.payload.toString('utf8'));
        continue;
      }
      const nft = decodeNftChange(msg);
      if (nft) {
        // Reports of a socket closed since (the kind was left) may still be in the pipe.
        if (this.nftLive || nft.kind === 'unwatched') this.tellNft(nft);
        continue;
      }
      if (!this.routeLive) continue;
      let change: KernelChange | null;
      try {
        change = decodeChange(msg);
      } catch {
        change = { kind: 'overrun', why: `undecodable notification (type ${msg.type})` };
      }
      if (change) this.tellRoute(change);
    }
  }

  private listening(what: string): void {
    if (this.liveSince === 0) this.liveSince = Date.now();
    if (what === LISTENING_NFT) {
      this.nftLive = this.nftListeners.size > 0;
      // The ruleset may have changed between the subscription (or the last child's end) and now.
      if (this.nftLive) this.tellNft({ kind: 'overrun', why: 'nf_tables changes were not watched until now' });
      return;
    }
    if (what !== LISTENING_ROUTE || this.routeListeners.size === 0) return;
    this.routeLive = true;
    if (this.readInGap) this.tellRoute({ kind: 'overrun', why: 'kernel notifications were not watched for a moment' });
    this.readInGap = false;
    this.wakeWaiters();
  }

  /**
   * Reports the gap at once (so it is logged and a repair pass is asked for)
   * and starts the next child; the pass's reads wait for it to listen.
   */
  private lost(child: ListenerChild, reason: string): void {
    if (this.child !== child) return;
    this.child = null;
    if (this.liveSince > 0 && Date.now() - this.liveSince >= STABLE_MS) this.backoff.reset();
    this.routeLive = this.nftLive = false;
    if (this.closed) return;
    const why = `kernel listener stopped (${reason})`;
    this.tellRoute({ kind: 'overrun', why });
    this.tellNft({ kind: 'overrun', why });
    if (this.routeListeners.size === 0 && this.nftListeners.size === 0) return;
    this.restartLater();
  }

  private restartLater(): void {
    this.respawn = setTimeout(() => {
      this.respawn = null;
      if (this.closed || this.child || (this.routeListeners.size === 0 && this.nftListeners.size === 0)) return;
      try {
        this.start();
      } catch (err) {
        // The program went away since weft started (an upgrade in progress?): say so, and look again later.
        const why = `kernel listener not restarted (${(err as Error).message})`;
        this.tellRoute({ kind: 'overrun', why });
        this.tellNft({ kind: 'overrun', why });
        this.restartLater();
      }
    }, this.backoff.nextDelayMs());
    this.respawn.unref();
  }

  private tellRoute(change: KernelChange): void {
    for (const listener of [...this.routeListeners]) listener(change);
  }

  private tellNft(change: NftChange): void {
    for (const listener of [...this.nftListeners]) listener(change);
  }

  private wakeWaiters(): void {
    for (const wake of this.liveWaiters.splice(0)) wake();
  }
}

function unref(stream: Readable | Writable | null): void {
  (stream as { unref?: () => void } | null)?.unref?.();
}
