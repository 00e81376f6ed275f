/**
 * ICMP echo for peer health, through a raw socket (the `raw-socket` npm
 * package, a native addon). Every node answers an echo request in its
 * kernel, flanneld nodes included: to its PublicIP over the underlay, and to
 * the VXLAN device's `<subnet>.0` through the overlay. IPv6 the same way with
 * ICMPv6 (RFC 4443) from a raw socket of its own: to the PublicIPv6, and to
 * the IPv6 subnet's network address (`fd00:10:244:3::`), which the peer's
 * `flannel-v6.<VNI>` holds as a /128.
 *
 * A raw socket needs CAP_NET_RAW. Where it is not allowed (or the addon did
 * not build), `openIcmpClient` says why and weftd probes with its UDP echo
 * instead (daemon/probe.ts).
 *
 * The packet code (checksum, request, reply, matching) is pure; only
 * IcmpProbeClient touches a socket.
 */
import { randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { endianness } from 'node:os';
import { WeftError } from '../common/errors.js';
import { canonicalIPv6 } from '../common/subnet.js';
import type { Family } from '../kernel/kernel.js';
import type { PathResult } from './status.js';

export const ICMP_ECHO_REPLY = 0;
export const ICMP_ECHO = 8;
/** <linux/icmpv6.h>: ICMPV6_ECHO_REQUEST, ICMPV6_ECHO_REPLY. */
export const ICMPV6_ECHO_REQUEST = 128;
export const ICMPV6_ECHO_REPLY = 129;
const IPPROTO_ICMP = 1;
const IPPROTO_ICMPV6 = 58;
// <linux/in.h>, <linux/icmp.h>: a raw ICMP socket's filter of message types.
const SOL_RAW = 255;
const ICMP_FILTER = 1;
// <linux/icmpv6.h>: a raw ICMPv6 socket's filter, 256 bits, a set bit blocks that type.
const ICMPV6_FILTER = 1;
/** raw-socket's own AddressFamily numbers (its index.js), not the kernel's AF_*. */
const RAW_SOCKET_FAMILY = { 4: 1, 6: 2 } as const;
const ICMP_HEADER_BYTES = 8;
/** What weft puts after the echo header; the kernel answering copies it back. */
export const ECHO_PAYLOAD = Buffer.from('weft-probe/1', 'latin1');

/** The Internet checksum (RFC 1071): ones' complement of the ones' complement sum of 16-bit words. */
export function internetChecksum(data: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i + 1 < data.length; i += 2) sum += (data[i]! << 8) | data[i + 1]!;
  if (data.length % 2 === 1) sum += data[data.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An ICMP echo request (type 8, code 0) without IP header: the kernel adds that. */
export function buildEchoRequest(id: number, seq: number, payload: Uint8Array = ECHO_PAYLOAD): Buffer {
  const packet = Buffer.alloc(ICMP_HEADER_BYTES + payload.length);
  packet.writeUInt8(ICMP_ECHO, 0);
  packet.writeUInt8(0, 1);
  packet.writeUInt16BE(id, 4);
  packet.writeUInt16BE(seq, 6);
  packet.set(payload, ICMP_HEADER_BYTES);
  packet.writeUInt16BE(internetChecksum(packet), 2);
  return packet;
}

/**
 * An ICMPv6 echo request (type 128, code 0). The checksum stays 0: over a raw
 * ICMPv6 socket the kernel computes it (it covers a pseudo-header of source
 * and destination address that only the kernel knows when it routes).
 */
export function buildEcho6Request(id: number, seq: number, payload: Uint8Array = ECHO_PAYLOAD): Buffer {
  const packet = Buffer.alloc(ICMP_HEADER_BYTES + payload.length);
  packet.writeUInt8(ICMPV6_ECHO_REQUEST, 0);
  packet.writeUInt16BE(id, 4);
  packet.writeUInt16BE(seq, 6);
  packet.set(payload, ICMP_HEADER_BYTES);
  return packet;
}

export interface EchoReply {
  /** The source address of the reply (IPv6 in canonical form): who answered. */
  readonly source: string;
  readonly id: number;
  readonly seq: number;
  readonly payload: Buffer;
}

/**
 * An echo reply from what a raw IPv4 socket receives: the whole IP packet,
 * header included. Anything else (other ICMP types, other protocols,
 * fragments, truncated packets, a wrong checksum) is null.
 */
export function parseEchoReply(packet: Buffer): EchoReply | null {
  if (packet.length < 20 || packet[0]! >> 4 !== 4) return null;
  const ihl = (packet[0]! & 0x0f) * 4;
  if (ihl < 20 || packet[9] !== IPPROTO_ICMP) return null;
  // More fragments, or a fragment offset: only whole datagrams are ours (probes are far below any MTU).
  if ((packet.readUInt16BE(6) & 0x3fff) !== 0) return null;
  const total = Math.min(packet.readUInt16BE(2), packet.length);
  if (total < ihl + ICMP_HEADER_BYTES) return null;
  const icmp = packet.subarray(ihl, total);
  if (icmp[0] !== ICMP_ECHO_REPLY || icmp[1] !== 0 || internetChecksum(icmp) !== 0) return null;
  return {
    source: `${packet[12]}.${packet[13]}.${packet[14]}.${packet[15]}`,
    id: icmp.readUInt16BE(4),
    seq: icmp.readUInt16BE(6),
    payload: Buffer.from(icmp.subarray(ICMP_HEADER_BYTES)),
  };
}

/**
 * An ICMPv6 echo reply from what a raw ICMPv6 socket receives: the ICMPv6
 * message alone (no IPv6 header) and its source from recvfrom. The kernel has
 * checked the checksum before handing it over. Anything else is null.
 */
export function parseEcho6Reply(packet: Buffer, source: string): EchoReply | null {
  if (packet.length < ICMP_HEADER_BYTES || packet[0] !== ICMPV6_ECHO_REPLY || packet[1] !== 0) return null;
  const from = canonicalIPv6(source);
  if (from === null) return null;
  return { source: from, id: packet.readUInt16BE(4), seq: packet.readUInt16BE(6), payload: Buffer.from(packet.subarray(ICMP_HEADER_BYTES)) };
}

/**
 * The echoes in flight of one client: an identifier for all of them and a
 * sequence number each. A raw socket sees every echo reply that reaches the
 * host (a `ping` running beside weftd, another weftd in the same namespace),
 * so a reply counts only with this identifier, a sequence in flight, the
 * address that sequence went to and weft's payload.
 */
export class PendingEchoes<T> {
  private seq = 0;
  private readonly pending = new Map<number, { readonly ip: string; readonly value: T }>();

  constructor(
    readonly id: number,
    readonly payload: Uint8Array = ECHO_PAYLOAD,
  ) {}

  /** Records an echo to `ip` and returns its sequence number (16 bits, wrapping, never one still in flight). */
  add(ip: string, value: T): number {
    if (this.pending.size >= 0xffff) throw new WeftError('WEFT_ERR_INVALID_STATE', 'too many ICMP echoes in flight');
    do this.seq = (this.seq + 1) & 0xffff;
    while (this.pending.has(this.seq));
    this.pending.set(this.seq, { ip, value });
    return this.seq;
  }

  delete(seq: number): void {
    this.pending.delete(seq);
  }

  /** The value of the echo `reply` answers, removed from those in flight; undefined for a reply that is not ours. */
  take(reply: EchoReply): T | undefined {
    if (reply.id !== this.id) return undefined;
    const entry = this.pending.get(reply.seq);
    if (!entry || entry.ip !== reply.source || !reply.payload.equals(this.payload)) return undefined;
    this.pending.delete(reply.seq);
    return entry.value;
  }

  get size(): number {
    return this.pending.size;
  }
}

/** The part of raw-socket's socket that weft uses. */
export interface RawSocket {
  on(event: 'message', listener: (packet: Buffer, source: string) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  send(buffer: Buffer, offset: number, length: number, address: string, beforeSend: () => void, afterSend: (err: Error | null, bytes: number) => void): this;
  setOption(level: number, option: number, value: Buffer, length: number): void;
  close(): this;
}

interface RawSocketModule {
  createSocket(options: { protocol: number; addressFamily?: number }): RawSocket;
}

/**
 * Loads raw-socket from node_modules at run time. The bundle leaves it out
 * (scripts/bundle.mjs): its native addon is found relative to its own files.
 */
function loadRawSocket(): RawSocketModule {
  return createRequire(import.meta.url)('raw-socket') as RawSocketModule;
}

/**
 * Opens a raw ICMP socket (ICMPv6 for `family` 6), or says why there is none:
 * the addon does not load, raw sockets are not allowed, or the kernel has no
 * IPv6.
 */
export function openIcmpClient(load: () => RawSocketModule = loadRawSocket, family: Family = 4): { client: IcmpProbeClient } | { reason: string } {
  let raw: RawSocketModule;
  try {
    raw = load();
  } catch (err) {
    return { reason: `the raw-socket addon does not load (${(err as Error).message.split('\n')[0]})` };
  }
  let socket: RawSocket;
  try {
    socket = family === 6 ? raw.createSocket({ protocol: IPPROTO_ICMPV6, addressFamily: RAW_SOCKET_FAMILY[6] }) : raw.createSocket({ protocol: IPPROTO_ICMP });
  } catch (err) {
    const message = (err as Error).message;
    return { reason: /not permitted/i.test(message) ? 'raw sockets not allowed (no CAP_NET_RAW)' : `no raw ${family === 6 ? 'ICMPv6' : 'ICMP'} socket (${message})` };
  }
  return { client: new IcmpProbeClient(socket, family) };
}

/**
 * The filter that lets only echo replies reach a raw socket: ICMP_FILTER's
 * 32-bit mask, or ICMPV6_FILTER's 256 bits; both in host byte order, a set
 * bit drops that message type.
 */
export function echoReplyFilter(family: Family): { level: number; option: number; value: Buffer } {
  const words = family === 6 ? 8 : 1;
  const replyType = family === 6 ? ICMPV6_ECHO_REPLY : ICMP_ECHO_REPLY;
  const value = Buffer.alloc(words * 4);
  for (let w = 0; w < words; w++) {
    const word = w === replyType >> 5 ? ~(1 << (replyType & 31)) >>> 0 : 0xffffffff;
    if (endianness() === 'LE') value.writeUInt32LE(word, w * 4);
    else value.writeUInt32BE(word, w * 4);
  }
  return family === 6 ? { level: IPPROTO_ICMPV6, option: ICMPV6_FILTER, value } : { level: SOL_RAW, option: ICMP_FILTER, value };
}

/** Sends ICMP (or ICMPv6) echo requests from one raw socket and matches the replies (PendingEchoes). */
export class IcmpProbeClient {
  private readonly echoes = new PendingEchoes<(receivedAt: bigint) => void>(randomBytes(2).readUInt16BE(0));
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(
    private readonly socket: RawSocket,
    readonly family: Family = 4,
  ) {
    socket.on('error', () => undefined); // a failed send or receive surfaces as a timeout of that probe
    socket.on('message', (packet, source) => {
      const receivedAt = process.hrtime.bigint();
      const reply = family === 6 ? parseEcho6Reply(packet, source) : parseEchoReply(packet);
      if (reply) this.echoes.take(reply)?.(receivedAt);
    });
    // Only echo replies reach this socket, not every ICMP message to the host (peers' echo requests among them).
    const filter = echoReplyFilter(family);
    try {
      socket.setOption(filter.level, filter.option, filter.value, filter.value.length);
    } catch {
      /* without the filter every ICMP message is parsed and dropped here: more work, same results */
    }
  }

  /** One echo to `ip`; resolves with the RTT, or `ok: false` after `timeoutMs`. No MTU: the kernel answers, not weft. */
  echo(ip: string, timeoutMs: number): Promise<PathResult & { mtu: null }> {
    if (this.closed) return Promise.reject(new WeftError('WEFT_ERR_INVALID_STATE', 'ICMP probe client is closed'));
    const probe = this.probe(ip, timeoutMs);
    this.inFlight.add(probe);
    return probe.finally(() => this.inFlight.delete(probe));
  }

  private async probe(ip: string, timeoutMs: number): Promise<PathResult & { mtu: null }> {
    let sentAt = process.hrtime.bigint();
    let seq = -1;
    // Replies are matched by source; an IPv6 source comes back in canonical form.
    const target = this.family === 6 ? (canonicalIPv6(ip) ?? ip) : ip;
    try {
      const receivedAt = await new Promise<bigint | null>((resolve) => {
        const timer = setTimeout(() => resolve(null), timeoutMs);
        seq = this.echoes.add(target, (at) => (clearTimeout(timer), resolve(at)));
        const request = this.family === 6 ? buildEcho6Request(this.echoes.id, seq, this.echoes.payload) : buildEchoRequest(this.echoes.id, seq, this.echoes.payload);
        this.socket.send(
          request,
          0,
          request.length,
          ip,
          () => (sentAt = process.hrtime.bigint()),
          (err) => err && (clearTimeout(timer), resolve(null)),
        );
      });
      if (receivedAt === null) return { ok: false, rttMs: null, mtu: null };
      return { ok: true, rttMs: Number(receivedAt - sentAt) / 1e6, mtu: null };
    } finally {
      this.echoes.delete(seq);
    }
  }

  /** Graceful: echoes in flight get their answer or time out, then the socket closes. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
    this.socket.close();
  }
}
