/**
 * systemd's notify protocol (sd_notify(3)), spoken directly: `READY=1`,
 * `STATUS=...`, `STOPPING=1` and `WATCHDOG=1`, each one datagram to the
 * AF_UNIX SOCK_DGRAM socket named by `NOTIFY_SOCKET` (a path, or `@name` for
 * an abstract name). Without `NOTIFY_SOCKET` nothing here loads or sends.
 *
 * Why through libc (the `koffi` FFI package) rather than Node: Node has no
 * unix datagram sockets (`dgram` is UDP only, `net` stream only). Weighed:
 * - `systemd-notify` as a subprocess: the message then comes from another
 *   PID, which `NotifyAccess=main` drops, and systemd cannot tell which unit
 *   it belongs to once that process has exited (a known race);
 * - `unix-dgram`: compiled by node-gyp on the node at `npm ci` (a C++
 *   toolchain and Node's headers), and it copies the name as a C string, so
 *   an abstract name (leading NUL) becomes an empty one;
 * - `node-unix-socket`: prebuilt, but sends with the full `sockaddr_un`
 *   length, which never matches an abstract name bound with its own length;
 * - koffi: prebuilt Node-API binaries inside its npm packages (nothing to
 *   compile), and the three libc calls below with the exact address length,
 *   so both kinds of name work. Loaded only when `NOTIFY_SOCKET` is set.
 *
 * Sending never blocks (MSG_DONTWAIT) and never throws: a notification that
 * cannot be delivered is logged once, and weftd carries on.
 */
import { createRequire } from 'node:module';
import type { Logger } from '../common/log.js';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(sockaddr_un.sun_path) on Linux. */
const SUN_PATH_MAX = 108;

/** Where notifications go: a filesystem path, or an abstract name (without its leading NUL or `@`). */
export type NotifyAddress = { kind: 'path'; path: string } | { kind: 'abstract'; name: string };

/**
 * `NOTIFY_SOCKET` as systemd sets it: an absolute path, or `@name` for an
 * abstract socket. Anything else (systemd's `vsock:` addresses, a relative
 * path, a name too long for sockaddr_un) is null: weftd then does not notify.
 */
export function parseNotifySocket(value: string | undefined): NotifyAddress | null {
  if (!value) return null;
  if (value.startsWith('@') && value.length > 1 && Buffer.byteLength(value) <= SUN_PATH_MAX) return { kind: 'abstract', name: value.slice(1) };
  if (value.startsWith('/') && Buffer.byteLength(value) < SUN_PATH_MAX) return { kind: 'path', path: value };
  return null;
}

/** The sockaddr_un for `address`, exactly as long as the name (an abstract name's length is part of it). */
export function sockaddrUn(address: NotifyAddress): Buffer {
  const name = address.kind === 'path' ? Buffer.from(`${address.path}\0`) : Buffer.concat([Buffer.from([0]), Buffer.from(address.name)]);
  const sa = Buffer.alloc(2 + name.length);
  sa.writeUInt16LE(AF_UNIX, 0);
  name.copy(sa, 2);
  return sa;
}

/**
 * The watchdog period systemd asks for: half of `WATCHDOG_USEC`, in ms, when
 * `WATCHDOG_PID` is unset or names this process (a watchdog meant for
 * another process of the unit is not ours to feed); otherwise null.
 */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv, pid = process.pid): number | null {
  const usec = Number(env['WATCHDOG_USEC']);
  if (!Number.isSafeInteger(usec) || usec <= 0) return null;
  const owner = env['WATCHDOG_PID'];
  if (owner !== undefined && owner !== '' && Number(owner) !== pid) return null;
  return Math.max(1, Math.floor(usec / 2000));
}

/** One sender of notifications (systemd's, or a test's stand-in). */
export interface Notifier {
  /** Sends one message: newline-separated `KEY=value` lines. */
  send(message: string): void;
  /** Sends `WATCHDOG=1` every `ms` until close(). */
  startWatchdog(ms: number): void;
  close(): void;
}

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  sendto(fd: number, buf: Buffer, len: number, flags: number, addr: Buffer, addrlen: number): number;
  close(fd: number): number;
  errno(): number;
}

function loadLibc(): Libc {
  const koffi = createRequire(import.meta.url)('koffi') as {
    load(name: string): { func(decl: string): (...args: unknown[]) => number };
    errno(): number;
  };
  const libc = koffi.load('libc.so.6');
  const socket = libc.func('int socket(int domain, int type, int protocol)');
  const sendto = libc.func('long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)');
  const close = libc.func('int close(int fd)');
  return {
    socket: (d, t, p) => socket(d, t, p),
    sendto: (fd, buf, len, flags, addr, addrlen) => Number(sendto(fd, buf, len, flags, addr, addrlen)),
    close: (fd) => close(fd),
    errno: () => koffi.errno(),
  };
}

/** Sends to systemd's notify socket through one unbound datagram socket, kept open for the process's life. */
class SystemdNotifier implements Notifier {
  private fd: number;
  private readonly addr: Buffer;
  private watchdog: NodeJS.Timeout | null = null;
  private failed = false;

  constructor(
    private readonly libc: Libc,
    private readonly address: NotifyAddress,
    private readonly log: Logger,
  ) {
    this.addr = sockaddrUn(address);
    this.fd = libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (this.fd < 0) this.fail(`socket() failed with errno ${libc.errno()}`);
  }

  send(message: string): void {
    if (this.fd < 0) return;
    const buf = Buffer.from(message);
    const sent = this.libc.sendto(this.fd, buf, buf.length, MSG_DONTWAIT | MSG_NOSIGNAL, this.addr, this.addr.length);
    if (sent < 0) this.fail(`sending ${JSON.stringify(message.split('\n')[0])} failed with errno ${this.libc.errno()}`);
  }

  startWatchdog(ms: number): void {
    if (this.watchdog) clearInterval(this.watchdog);
    // The timer firing is the proof of life: a blocked event loop stops it, and systemd restarts weftd.
    this.watchdog = setInterval(() => this.send('WATCHDOG=1'), ms);
    this.watchdog.unref();
  }

  close(): void {
    if (this.watchdog) clearInterval(this.watchdog);
    this.watchdog = null;
    if (this.fd >= 0) this.libc.close(this.fd);
    this.fd = -1;
  }

  /** One warning per process: a notify socket that is gone stays gone. */
  private fail(detail: string): void {
    if (this.failed) return;
    this.failed = true;
    const where = this.address.kind === 'path' ? this.address.path : `@${this.address.name}`;
    this.log.warn(`systemd notify socket ${where}: ${detail}`);
  }
}

/**
 * The notifier systemd asked for through the environment, or null when
 * weftd runs outside a `Type=notify` unit. Takes `NOTIFY_SOCKET`,
 * `WATCHDOG_USEC` and `WATCHDOG_PID` out of `env` (sd_notify's
 * unset_environment), so that the processes weftd spawns do not inherit them,
 * and starts the watchdog when one is asked for.
 */
export function systemdNotifier(env: NodeJS.ProcessEnv, log: Logger): Notifier | null {
  const raw = env['NOTIFY_SOCKET'];
  const address = parseNotifySocket(raw);
  const watchdogMs = watchdogIntervalMs(env);
  delete env['NOTIFY_SOCKET'];
  delete env['WATCHDOG_USEC'];
  delete env['WATCHDOG_PID'];
  if (!address) {
    if (raw) log.warn(`NOTIFY_SOCKET=${raw} is not a unix socket path or @name: not notifying systemd`);
    return null;
  }
  let libc: Libc;
  try {
    libc = loadLibc();
  } catch (err) {
    log.warn(`cannot notify systemd: loading koffi failed: ${(err as Error).message}`);
    return null;
  }
  const notifier = new SystemdNotifier(libc, address, log);
  if (watchdogMs !== null) notifier.startWatchdog(watchdogMs);
  return notifier;
}
