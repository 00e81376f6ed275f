/**
 * The kernel monitor: a NETLINK_ROUTE socket joined to the link, neighbour
 * and IPv4 route groups (what `ip monitor link neigh route` listens to),
 * held by a small child process that forwards every datagram over a pipe;
 * this side decodes them (netlink/notify.ts). The child also listens to
 * nf_tables (`nft monitor`) and forwards one NFT_CHANGED marker per batch of
 * its notifications: that the ruleset changed is all weft uses. When it cannot
 * subscribe to nf_tables, it says so once (NFT_UNWATCHED, with the reason).
 *
 * Why a child process: the `netlink` package aborts the whole process when
 * poll reports an error on its socket (it builds the error object with a NULL
 * syscall name, and the C++ exception ends in std::terminate). A subscribed
 * socket gets exactly that error, ENOBUFS, whenever notifications outrun its
 * receive buffer: deleting the vxlan device of a node with 5000 peers flushes
 * 10 000 neighbour and FDB entries in one go, more than fits in the default
 * net.core.rmem_max. In a child, that abort is only a gap: the next child is
 * started and the gap is reported as an `overrun`. The child does nothing but
 * read the socket, so it keeps up; it queues in memory while weftd is busy.
 *
 * The kernel tags the notifications of route and neighbour changes with the
 * port id of the socket that asked for them: the child drops those of weft's
 * own request socket, the bulk of the echoes of weft's programming (FDB and
 * link notifications carry no port id; the reconciler tells echoes among them
 * by content).
 *
 * Cost: one Node process of 7-12 MB of its own (the Node binary's pages are
 * shared with weftd) that sleeps while the kernel is quiet, and about 15 µs of
 * its CPU per notification: 0.2 s while weft programs 5000 peers.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createRequire } from 'node:module';
import type { Readable, Writable } from 'node:stream';
import { Backoff } from '../../common/backoff.js';
import type { KernelChange } from '../kernel.js';
import { splitMessages } from './wire.js';
import { DatagramStream, MONITOR_GROUPS, NETLINK_NETFILTER, NFNLGRP_NFTABLES, NFT_CHANGED, NFT_UNWATCHED, NLMSG_NOOP, NLMSG_OVERRUN, decodeChange, markerDatagram } from './notify.js';

/** Receive buffer asked for; the kernel caps it at net.core.rmem_max (and doubles that for bookkeeping). */
const BUFFER_BYTES = 16 << 20;
/** The child gives up (and is restarted, as an overrun) rather than queue more than this for a stalled weftd. */
const QUEUE_LIMIT_BYTES = 64 << 20;
/** How long a kernel read waits for the monitor to be listening (see `caughtUp`). */
const LIVE_WAIT_MS = 2000;
/** A child that lived this long restarts without backoff: its death was an overrun, not a crash loop. */
const STABLE_MS = 10_000;
const STDERR_KEPT = 400;

/**
 * The child, run with `node -e`: argv is the `netlink` raw-socket module, the
 * buffer size, the groups, the queue limit and weft's own port ids. Writes
 * each datagram (one notification) as a u32 length and the bytes; an
 * NLMSG_NOOP datagram once subscribed, an NLMSG_OVERRUN one when a receive
 * error is reported without killing it. Exits when weftd closes its stdin
 * (weftd is gone). Its markers come from notify.ts's `markerDatagram`, whose
 * source text is pasted in, so weftd decodes what that one function builds.
 */
const CHILD_SOURCE = `'use strict';
const net = require('node:net');
const { RawNetlinkSocket } = require(process.argv[1]);
const bufferBytes = Number(process.argv[2]);
const groups = process.argv[3].split(',').map(Number);
const queueLimit = Number(process.argv[4]);
const ownPorts = new Set(process.argv[5].split(',').filter(Boolean).map(Number));
const out = new net.Socket({ fd: 1, readable: false });
out.on('error', () => process.exit(0));
let batch = [];
let rulesMarked = false;
function flush() {
  const data = Buffer.concat(batch);
  batch = [];
  rulesMarked = false;
  out.write(data);
  if (out.writableLength > queueLimit) process.exit(3);
}
function forward(datagram) {
  if (ownPorts.has(datagram.readUInt32LE(12))) return;
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32LE(datagram.length, 0);
  if (batch.length === 0) setImmediate(flush);
  batch.push(len, datagram);
}
const marker = ${markerDatagram.toString()};
const socket = new RawNetlinkSocket(0, { recvBufferSize: bufferBytes, sendBufferSize: 4096 });
socket.on('message', forward);
socket.on('error', () => forward(marker(${NLMSG_OVERRUN})));
for (const group of groups) socket.addMembership(group);
try {
  const rules = new RawNetlinkSocket(${NETLINK_NETFILTER}, { recvBufferSize: bufferBytes, sendBufferSize: 4096 });
  rules.on('message', () => {
    if (!rulesMarked) forward(marker(${NFT_CHANGED}));
    rulesMarked = true;
  });
  rules.on('error', () => forward(marker(${NLMSG_OVERRUN})));
  rules.addMembership(${NFNLGRP_NFTABLES});
} catch (err) {
  // No nf_tables here, or no right to listen: weftd is told, and checks iptables on its own period.
  forward(marker(${NFT_UNWATCHED}, err.message));
}
forward(marker(${NLMSG_NOOP}));
process.stdin.on('end', () => process.exit(0)).resume();
`;

const RAW_SOCKET_MODULE = createRequire(import.meta.url).resolve('netlink/dist/raw.js');

export class NetlinkMonitor {
  private child: ChildProcess | null = null;
  private live = false;
  private liveSince = 0;
  /** A kernel read went ahead while nothing listened: report the gap once listening. */
  private readInGap = false;
  private closed = false;
  private respawn: NodeJS.Timeout | null = null;
  private readonly backoff = new Backoff({ initialMs: 100, maxMs: 30_000 });
  private liveWaiters: Array<() => void> = [];

  /** `ownPorts`: port ids of weft's request sockets, whose echoes the child drops. */
  constructor(
    private readonly emit: (change: KernelChange) => void,
    private readonly ownPorts: readonly number[] = [],
  ) {
    this.start();
  }

  /**
   * Resolves once notifications flow, so that a dump which follows misses no
   * change (subscribe first, then dump). Waits at most LIVE_WAIT_MS; a read
   * that goes ahead earlier makes the monitor report an overrun when it is
   * listening again (and later reads of the same gap do not wait).
   */
  async caughtUp(): Promise<void> {
    if (this.live || this.closed || this.readInGap) return;
    let timer: NodeJS.Timeout | undefined;
    const listening = await Promise.race([
      new Promise<true>((resolve) => this.liveWaiters.push(() => resolve(true))),
      new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), LIVE_WAIT_MS))),
    ]);
    clearTimeout(timer);
    if (!listening) this.readInGap = true;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.respawn) clearTimeout(this.respawn);
    this.respawn = null;
    this.child?.kill('SIGTERM');
    this.child = null;
    this.wakeWaiters();
  }

  private start(): void {
    const settings = [String(BUFFER_BYTES), MONITOR_GROUPS.join(','), String(QUEUE_LIMIT_BYTES), this.ownPorts.join(',')];
    const args = ['--max-semi-space-size=1', '--max-old-space-size=64', '-e', CHILD_SOURCE, RAW_SOCKET_MODULE, ...settings];
    const child = spawn(process.execPath, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = child;
    const stream = new DatagramStream();
    let stderr = '';
    child.stdout?.on('data', (chunk: Buffer) => stream.push(chunk, (datagram) => this.receive(datagram)));
    child.stderr?.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-STDERR_KEPT)));
    child.on('error', (err) => this.lost(child, err.message));
    child.on('exit', (code, signal) => this.lost(child, `${signal ?? `exit code ${code}`}${stderr.trim() ? `: ${stderr.trim().split('\n').pop()}` : ''}`));
    // A helper must not keep weftd's event loop alive.
    child.unref();
    for (const s of [child.stdin, child.stdout, child.stderr]) unref(s);
  }

  private receive(datagram: Buffer): void {
    for (const msg of splitMessages(datagram)) {
      if (msg.type === NLMSG_NOOP) {
        this.listening();
        continue;
      }
      let change: KernelChange | null;
      try {
        change = decodeChange(msg);
      } catch {
        change = { kind: 'overrun', why: `undecodable notification (type ${msg.type})` };
      }
      if (change) this.emit(change);
    }
  }

  private listening(): void {
    this.live = true;
    this.liveSince = Date.now();
    if (this.readInGap) this.emit({ kind: 'overrun', why: 'kernel notifications were not watched for a moment' });
    this.readInGap = false;
    this.wakeWaiters();
  }

  /**
   * Reports the gap at once (so it is logged and a repair pass is asked for)
   * and starts the next child; the pass's reads wait for it to listen.
   */
  private lost(child: ChildProcess, reason: string): void {
    if (this.child !== child) return;
    this.child = null;
    if (this.live && Date.now() - this.liveSince >= STABLE_MS) this.backoff.reset();
    this.live = false;
    if (this.closed) return;
    this.emit({ kind: 'overrun', why: `kernel monitor stopped (${reason})` });
    this.respawn = setTimeout(() => {
      this.respawn = null;
      if (!this.closed) this.start();
    }, this.backoff.nextDelayMs());
    this.respawn.unref();
  }

  private wakeWaiters(): void {
    for (const wake of this.liveWaiters.splice(0)) wake();
  }
}

function unref(stream: Readable | Writable | null): void {
  (stream as { unref?: () => void } | null)?.unref?.();
}
