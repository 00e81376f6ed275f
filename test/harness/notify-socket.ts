/**
 * A stand-in for systemd's side of sd_notify: a real AF_UNIX SOCK_DGRAM
 * socket, bound to a path or an abstract name, that collects the datagrams
 * sent to it with the sender's PID (SO_PASSCRED, as systemd reads it to
 * tell whether the unit's main process sent it). Node has no unix datagram
 * sockets, so this goes through libc with koffi, as daemon/sd-notify.ts does;
 * it reads by polling (MSG_DONTWAIT), which is plenty for a test.
 */
import { createRequire } from 'node:module';
import { rmSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { sockaddrUn, type NotifyAddress } from '../../daemon/sd-notify.js';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const EAGAIN = 11;
const SOL_SOCKET = 1;
const SO_PASSCRED = 16;
const SCM_CREDENTIALS = 2;

interface Koffi {
  load(name: string): { func(decl: string): (...args: unknown[]) => number | bigint };
  struct(name: string, fields: Record<string, string>): unknown;
  errno(): number;
}

let structsDeclared = false;

interface MsgHdr {
  msg_name: null;
  msg_namelen: number;
  msg_iov: { iov_base: Buffer; iov_len: number }[];
  msg_iovlen: number;
  msg_control: Buffer;
  msg_controllen: number;
  msg_flags: number;
}

export class NotifySocket {
  /** Every datagram received so far, in order. */
  readonly messages: string[] = [];
  /** The sending process of each, by index (from the kernel's SCM_CREDENTIALS). */
  readonly senders: number[] = [];
  private fd: number;
  private readonly recvmsg: (fd: number, msg: MsgHdr, flags: number) => number;
  private readonly closeFd: (fd: number) => number;
  private readonly koffi: Koffi;
  private readonly poller: NodeJS.Timeout;

  /** Binds `address` (a path is removed first and on close). */
  constructor(readonly address: NotifyAddress) {
    this.koffi = createRequire(import.meta.url)('koffi') as Koffi;
    const libc = this.koffi.load('libc.so.6');
    const socket = libc.func('int socket(int, int, int)');
    const bind = libc.func('int bind(int, const void *addr, uint32_t addrlen)');
    const setsockopt = libc.func('int setsockopt(int, int, int, const void *, uint32_t)');
    // koffi's type names are global to the process: declared once.
    if (!structsDeclared) {
      this.koffi.struct('iovec', { iov_base: 'void *', iov_len: 'size_t' });
      this.koffi.struct('msghdr', { msg_name: 'void *', msg_namelen: 'uint32_t', msg_iov: 'iovec *', msg_iovlen: 'size_t', msg_control: 'void *', msg_controllen: 'size_t', msg_flags: 'int' });
      structsDeclared = true;
    }
    const recvmsg = libc.func('long recvmsg(int, _Inout_ msghdr *msg, int flags)');
    this.recvmsg = (fd, msg, flags) => Number(recvmsg(fd, msg, flags));
    this.closeFd = (fd) => Number(libc.func('int close(int)')(fd));
    if (address.kind === 'path') rmSync(address.path, { force: true });
    this.fd = Number(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (this.fd < 0) throw new Error(`socket() failed: errno ${this.koffi.errno()}`);
    const sa = sockaddrUn(address);
    if (Number(bind(this.fd, sa, sa.length)) < 0) throw new Error(`bind(${this.env}) failed: errno ${this.koffi.errno()}`);
    const on = Buffer.alloc(4);
    on.writeInt32LE(1);
    if (Number(setsockopt(this.fd, SOL_SOCKET, SO_PASSCRED, on, 4)) < 0) throw new Error(`SO_PASSCRED failed: errno ${this.koffi.errno()}`);
    this.poller = setInterval(() => this.drain(), 10);
  }

  /** The value of NOTIFY_SOCKET that names this socket. */
  get env(): string {
    return this.address.kind === 'path' ? this.address.path : `@${this.address.name}`;
  }

  /** Reads every datagram waiting on the socket. */
  drain(): void {
    const buf = Buffer.alloc(4096);
    const control = Buffer.alloc(256);
    for (;;) {
      if (this.fd < 0) return;
      control.fill(0);
      const msg: MsgHdr = { msg_name: null, msg_namelen: 0, msg_iov: [{ iov_base: buf, iov_len: buf.length }], msg_iovlen: 1, msg_control: control, msg_controllen: control.length, msg_flags: 0 };
      const n = this.recvmsg(this.fd, msg, MSG_DONTWAIT);
      if (n < 0) {
        const errno = this.koffi.errno();
        if (errno !== EAGAIN) throw new Error(`recvmsg() failed: errno ${errno}`);
        return;
      }
      this.messages.push(buf.subarray(0, n).toString('utf8'));
      // One cmsghdr { size_t len; int level; int type; } followed by struct ucred { pid; uid; gid; }.
      const credentials = control.readInt32LE(8) === SOL_SOCKET && control.readInt32LE(12) === SCM_CREDENTIALS;
      this.senders.push(credentials ? control.readInt32LE(16) : 0);
    }
  }

  /** Waits until some received datagram satisfies `match`; returns its index. */
  async waitFor(match: (message: string) => boolean, timeoutMs: number, what: string): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.drain();
      const i = this.messages.findIndex(match);
      if (i >= 0) return i;
      if (Date.now() > deadline) throw new Error(`no ${what} within ${timeoutMs} ms; received: ${JSON.stringify(this.messages)}`);
      await sleep(20);
    }
  }

  close(): void {
    clearInterval(this.poller);
    if (this.fd >= 0) this.closeFd(this.fd);
    this.fd = -1;
    if (this.address.kind === 'path') rmSync(this.address.path, { force: true });
  }
}
