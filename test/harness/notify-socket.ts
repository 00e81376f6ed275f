/**
 * A stand-in for systemd's side of sd_notify: a real AF_UNIX SOCK_DGRAM
 * socket, bound to a path or an abstract name, that collects the datagrams
 * sent to it. Node has no unix datagram sockets, so this goes through libc
 * with koffi, as daemon/sd-notify.ts does; it reads by polling (MSG_DONTWAIT),
 * which is plenty for a test.
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

interface Koffi {
  load(name: string): { func(decl: string): (...args: unknown[]) => number | bigint };
  errno(): number;
}

export class NotifySocket {
  /** Every datagram received so far, in order. */
  readonly messages: string[] = [];
  private fd: number;
  private readonly recv: (fd: number, buf: Buffer, len: number, flags: number) => number;
  private readonly closeFd: (fd: number) => number;
  private readonly koffi: Koffi;
  private readonly poller: NodeJS.Timeout;

  /** Binds `address` (a path is removed first and on close). */
  constructor(readonly address: NotifyAddress) {
    this.koffi = createRequire(import.meta.url)('koffi') as Koffi;
    const libc = this.koffi.load('libc.so.6');
    const socket = libc.func('int socket(int, int, int)');
    const bind = libc.func('int bind(int, const void *addr, uint32_t addrlen)');
    const recv = libc.func('long recv(int, void *buf, size_t len, int flags)');
    this.recv = (fd, buf, len, flags) => Number(recv(fd, buf, len, flags));
    this.closeFd = (fd) => Number(libc.func('int close(int)')(fd));
    if (address.kind === 'path') rmSync(address.path, { force: true });
    this.fd = Number(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    if (this.fd < 0) throw new Error(`socket() failed: errno ${this.koffi.errno()}`);
    const sa = sockaddrUn(address);
    if (Number(bind(this.fd, sa, sa.length)) < 0) throw new Error(`bind(${this.env}) failed: errno ${this.koffi.errno()}`);
    this.poller = setInterval(() => this.drain(), 10);
  }

  /** The value of NOTIFY_SOCKET that names this socket. */
  get env(): string {
    return this.address.kind === 'path' ? this.address.path : `@${this.address.name}`;
  }

  /** Reads every datagram waiting on the socket. */
  drain(): void {
    const buf = Buffer.alloc(4096);
    for (;;) {
      if (this.fd < 0) return;
      const n = this.recv(this.fd, buf, buf.length, MSG_DONTWAIT);
      if (n < 0) {
        const errno = this.koffi.errno();
        if (errno !== EAGAIN) throw new Error(`recv() failed: errno ${errno}`);
        return;
      }
      this.messages.push(buf.subarray(0, n).toString('utf8'));
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
