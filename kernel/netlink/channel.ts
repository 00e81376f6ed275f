/**
 * A request/response channel over one NETLINK_ROUTE socket of the `netlink`
 * package (its native RawNetlinkSocket; weft frames and matches messages
 * itself).
 *
 * Bulk requests are packed many to a datagram: rtnetlink processes every
 * message of one sendmsg() in order, inside that syscall. Only the last message
 * of a chunk asks for an ACK; the kernel answers the others only when they fail
 * (NLMSG_ERROR carrying their seq). The ACK of the last therefore fences the
 * chunk: when it arrives, every earlier outcome has arrived. This costs one
 * syscall and one wake-up per chunk instead of per operation.
 *
 * Guardrails against the package's abort-on-overrun bug (a POLLERR on the
 * socket, e.g. ENOBUFS when the receive buffer overflows, terminates the
 * process): at most CHUNK requests are in flight, one chunk at a time;
 * the receive buffer is raised (the kernel caps it at net.core.rmem_max);
 * the socket joins no multicast group; dumps use their own channel so their
 * replies never compete with ACKs for buffer space.
 */
import { RawNetlinkSocket, type ErrnoException } from 'netlink/dist/raw.js';
import { WeftError } from '../../common/errors.js';
import { KernelError } from '../kernel.js';
import { NLMSG_DONE, NLMSG_ERROR, NLMSG_HDRLEN, NLM_F_ACK, Writer, errnoName, errorCode, forEachMessage, frame, messageAt, type InMessage, type OutMessage, type RequestWriter } from './wire.js';

const NETLINK_ROUTE = 0;
/** Requests per datagram and in flight: far below what overflows the receive buffer with error replies (see above). */
export const CHUNK = 64;
/** Room per request in a chunk's datagram: bulk requests are 48-52 bytes (the writer grows for bigger ones). */
const REQUEST_BYTES = 64;
const BUFFER_BYTES = 4 << 20;

/** Makes an entry of a dump reply's payload (`datagram` from `start` to `end`), or null to skip it. */
export type DumpDecoder<T> = (datagram: Buffer, start: number, end: number) => T | null;

interface Pending {
  /** seq of the request's first message. */
  readonly first: number;
  /** seq whose ACK (or error) ends the request. */
  readonly last: number;
  /** Takes each reply (non-error message) of the request as it arrives: the message at `at` of `datagram`, `len` bytes. */
  reply(datagram: Buffer, at: number, len: number): void;
  /** A refused message of a chunk other than the fencing one. */
  onError(seq: number, errno: number): void;
  /** The fencing ACK/error arrived, or NLMSG_DONE of a dump. */
  finish(errno: number): void;
  /** The socket failed before the request finished. */
  reject(err: Error): void;
}

export class NetlinkChannel {
  private readonly socket: RawNetlinkSocket;
  /** The socket's netlink port id; the kernel tags notifications of route and neighbour changes it asked for with it. */
  readonly port: number;
  private seq = Math.floor(Math.random() * 0x7fffffff);
  /** Requests in flight by their last seq (one at a time: requests are serialized). */
  private readonly pending = new Map<number, Pending>();
  private queue: Promise<void> = Promise.resolve();
  /** Set by close(): resolves once what was asked before it has finished and the socket is closed. */
  private closing: Promise<void> | null = null;
  private destroyed = false;
  private failure: Error | null = null;

  constructor() {
    try {
      this.socket = new RawNetlinkSocket(NETLINK_ROUTE, { recvBufferSize: BUFFER_BYTES, sendBufferSize: BUFFER_BYTES });
    } catch (err) {
      throw socketError('netlink socket', err as Error);
    }
    this.port = this.socket.address().port;
    this.socket.on('message', (datagram) => this.receive(datagram));
    this.socket.on('error', (err) => this.fail(socketError('netlink socket', err)));
    this.socket.unref();
  }

  /**
   * Sends one request per item, in chunks, and resolves with each one's errno
   * (0 = done). Never rejects for a refused message, only when the socket
   * itself fails or the channel is closed. Items are written a chunk at a
   * time, straight into the chunk's datagram just before it is sent, so a
   * pass never holds all of its operations encoded at once.
   */
  transact<T>(items: readonly T[], write: RequestWriter<T>): Promise<number[]> {
    return this.serialized(async () => {
      const results = new Array<number>(items.length).fill(0);
      for (let start = 0; start < items.length; start += CHUNK) {
        await this.sendChunk(items, start, Math.min(start + CHUNK, items.length), write, results);
      }
      return results;
    });
  }

  /** One request whose replies matter (RTM_GETLINK of one link): its errno and reply messages. */
  request(msg: OutMessage): Promise<{ errno: number; replies: InMessage[] }> {
    return this.serialized(
      () =>
        new Promise((resolve, reject) => {
          const seq = this.nextSeq();
          const replies: InMessage[] = [];
          const reply = (datagram: Buffer, at: number, len: number): void => void replies.push(messageAt(datagram, at, len));
          this.track({ first: seq, last: seq, reply, onError: () => undefined, finish: (errno) => resolve({ errno, replies }), reject });
          this.send([frame(msg, seq, this.port, NLM_F_ACK)]);
        }),
    );
  }

  /**
   * A dump request: resolves with what `decode` makes of each multipart reply
   * (null: skip it), rejects with a DumpError on failure. Replies are decoded
   * as their datagram arrives, so only the decoded entries outlive it: a large
   * dump spans many event-loop turns, and holding every raw reply until the
   * end would move all of them into the old generation. `decode` gets each
   * reply's payload in place: `datagram` from `start` to `end`.
   */
  dump<T>(msg: OutMessage, decode: DumpDecoder<T>): Promise<T[]> {
    return this.serialized(
      () =>
        new Promise((resolve, reject) => {
          // No NLM_F_ACK: a dump ends with NLMSG_DONE, or with NLMSG_ERROR when refused.
          const seq = this.nextSeq();
          const entries: T[] = [];
          // A reply that does not decode fails the dump when it ends, not the socket's event handler.
          let undecodable: unknown = null;
          const reply = (datagram: Buffer, at: number, len: number): void => {
            if (undecodable !== null) return;
            try {
              const entry = decode(datagram, at + NLMSG_HDRLEN, at + len);
              if (entry !== null) entries.push(entry);
            } catch (err) {
              undecodable = err;
            }
          };
          const finish = (errno: number): void => {
            if (undecodable !== null) reject(undecodable);
            else if (errno === 0) resolve(entries);
            else reject(new DumpError(errno));
          };
          this.track({ first: seq, last: seq, reply, onError: () => undefined, finish, reject });
          this.send([frame(msg, seq, this.port)]);
        }),
    );
  }

  /** Graceful: what was asked before finishes (later requests are refused), then the socket closes. */
  close(): Promise<void> {
    this.closing ??= this.queue.then(() => this.destroy());
    return this.closing;
  }

  /** Immediate: closes the socket now and rejects whatever is in flight with WEFT_ERR_INVALID_STATE. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.socket.close();
    this.fail(new WeftError('WEFT_ERR_INVALID_STATE', 'netlink channel closed'));
  }

  /** Sends items[start..end) as one datagram, results[start..end) taking their errnos; only the last asks for an ACK. */
  private sendChunk<T>(items: readonly T[], start: number, end: number, write: RequestWriter<T>, results: number[]): Promise<void> {
    return new Promise((resolve, reject) => {
      // Sized to the chunk: the one or three requests of a single peer's change fit in Node's shared pool.
      const w = new Writer((end - start) * REQUEST_BYTES);
      let first = 0;
      let last = 0;
      for (let i = start; i < end; i++) {
        last = this.nextSeq();
        if (i === start) first = last;
        write(w, items[i] as T);
        w.seal(last, this.port, i === end - 1 ? NLM_F_ACK : 0);
      }
      this.track({
        first,
        last,
        reply: () => undefined,
        onError: (seq, errno) => {
          results[start + ((seq - first) >>> 0)] = errno;
        },
        finish: (errno) => {
          results[end - 1] = errno;
          resolve();
        },
        reject,
      });
      this.send([w.done()]);
    });
  }

  private track(handler: Pending): void {
    if (this.failure) {
      handler.reject(this.failure);
      return;
    }
    const entry: Pending = {
      ...handler,
      finish: (errno) => {
        this.pending.delete(handler.last);
        this.release();
        handler.finish(errno);
      },
    };
    this.pending.set(handler.last, entry);
    this.socket.ref();
  }

  /** The request `seq` belongs to: its last message, or one before it (seq numbers wrap). */
  private requestOf(seq: number): Pending | undefined {
    const byLast = this.pending.get(seq);
    if (byLast) return byLast;
    for (const p of this.pending.values()) if (((seq - p.first) >>> 0) <= ((p.last - p.first) >>> 0)) return p;
    return undefined;
  }

  private send(frames: Buffer[]): void {
    this.socket.send(frames, undefined, (err) => {
      if (err) this.fail(socketError('netlink send', err));
    });
  }

  private receive(datagram: Buffer): void {
    forEachMessage(datagram, (at, len, type, seq) => {
      const handler = this.requestOf(seq);
      if (!handler) return; // not ours, or the answer to a request that already failed
      if (type === NLMSG_ERROR) {
        const errno = errorCode(datagram, at + NLMSG_HDRLEN);
        if (seq === handler.last) handler.finish(errno);
        else handler.onError(seq, errno);
      } else if (type === NLMSG_DONE) {
        handler.finish(0);
      } else {
        handler.reply(datagram, at, len);
      }
    });
  }

  private release(): void {
    if (this.pending.size === 0 && !this.destroyed) this.socket.unref();
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const handler of this.pending.values()) handler.reject(err);
    this.pending.clear();
  }

  private nextSeq(): number {
    this.seq = (this.seq + 1) >>> 0;
    if (this.seq === 0) this.seq = 1;
    return this.seq;
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    if (this.closing || this.destroyed) return Promise.reject(new WeftError('WEFT_ERR_INVALID_STATE', 'netlink channel closed'));
    const run = this.queue.then(fn, fn);
    // Settles with nothing: the queue outlives each operation, and holding the
    // last result (a whole dump, on a node with many peers) would keep it alive until the next.
    this.queue = run.then(
      () => undefined,
      () => undefined,
    );
    return run;
  }
}

/** A dump the kernel refused (WEFT_ERR_KERNEL, like every refusal); `errno` is its name, e.g. `EPERM`. */
export class DumpError extends KernelError {
  constructor(errno: number) {
    super('netlink dump refused', errnoName(errno));
    this.name = 'DumpError';
  }
}

/** A failure of the socket itself, as a KernelError named after its errno. */
function socketError(operation: string, err: ErrnoException | Error): KernelError {
  const errno = 'code' in err && typeof err.code === 'string' ? err.code : 'EIO';
  return new KernelError(operation, errno, { cause: err });
}
