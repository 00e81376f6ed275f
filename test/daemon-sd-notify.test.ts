/**
 * daemon/sd-notify.ts: systemd's notify protocol. The parsing is table-driven;
 * sending goes to real unix datagram sockets (a path and an abstract name)
 * bound by the test; and the @real suite reads what a real weftd, started as
 * systemd would start a Type=notify unit with a watchdog, sends to its socket.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { silentLogger } from '../common/log.js';
import { parseNotifySocket, sockaddrUn, systemdNotifier, watchdogIntervalMs } from '../daemon/sd-notify.js';
import { Cluster } from './harness/cluster.js';
import { NotifySocket } from './harness/notify-socket.js';

describe('sd-notify: NOTIFY_SOCKET and the watchdog variables', () => {
  const cases: [string | undefined, ReturnType<typeof parseNotifySocket>][] = [
    [undefined, null],
    ['', null],
    ['/run/systemd/notify', { kind: 'path', path: '/run/systemd/notify' }],
    ['@/org/freedesktop/systemd1/notify/123', { kind: 'abstract', name: '/org/freedesktop/systemd1/notify/123' }],
    ['@', null],
    ['run/relative', null],
    ['vsock:2:1234', null],
    [`/${'x'.repeat(107)}`, null], // 108 bytes: no room for the terminating NUL
    [`@${'x'.repeat(107)}`, { kind: 'abstract', name: 'x'.repeat(107) }],
  ];
  for (const [value, expected] of cases) {
    it(`NOTIFY_SOCKET=${JSON.stringify(value)?.slice(0, 40)} -> ${expected ? expected.kind : 'no notifications'}`, () => {
      expect(parseNotifySocket(value)).to.deep.equal(expected);
    });
  }

  it('the address is exactly as long as the name: a path with its NUL, an abstract name without one', () => {
    expect(sockaddrUn({ kind: 'path', path: '/run/n' })).to.deep.equal(Buffer.from([1, 0, ...Buffer.from('/run/n'), 0]));
    expect(sockaddrUn({ kind: 'abstract', name: 'n1' })).to.deep.equal(Buffer.from([1, 0, 0, ...Buffer.from('n1')]));
  });

  it('the watchdog is fed at half of WATCHDOG_USEC, and only when WATCHDOG_PID is unset or names this process', () => {
    expect(watchdogIntervalMs({}, 42)).to.equal(null);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000' }, 42)).to.equal(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '42' }, 42)).to.equal(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '' }, 42)).to.equal(15_000);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '30000000', WATCHDOG_PID: '41' }, 42)).to.equal(null);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '0' }, 42)).to.equal(null);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: 'soon' }, 42)).to.equal(null);
    expect(watchdogIntervalMs({ WATCHDOG_USEC: '1000' }, 42)).to.equal(1);
  });

  it('without NOTIFY_SOCKET there is no notifier (and nothing is loaded)', () => {
    expect(systemdNotifier({ WATCHDOG_USEC: '1000000' }, silentLogger())).to.equal(null);
  });

  it('takes the variables out of the environment, so that the processes weftd spawns do not notify in its name', () => {
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: 'vsock:2:1', WATCHDOG_USEC: '1000000', WATCHDOG_PID: '1', PATH: '/bin' };
    systemdNotifier(env, silentLogger());
    expect(env).to.deep.equal({ PATH: '/bin' });
  });
});

describe('sd-notify: datagrams to a real notify socket', () => {
  for (const address of [{ kind: 'path', path: `/tmp/weft-notify-${process.pid}.sock` }, { kind: 'abstract', name: `weft-notify-${process.pid}` }] as const) {
    it(`sends each message as one datagram to ${address.kind === 'path' ? 'a socket path' : 'an abstract @name'}, and feeds the watchdog`, async () => {
      const socket = new NotifySocket(address);
      const notifier = systemdNotifier({ NOTIFY_SOCKET: socket.env, WATCHDOG_USEC: '40000' }, silentLogger());
      try {
        expect(notifier).to.not.equal(null);
        notifier!.send('STATUS=not ready: acquiring a subnet lease');
        notifier!.send('READY=1\nSTATUS=ready');
        await socket.waitFor((m) => m === 'READY=1\nSTATUS=ready', 2000, 'READY=1');
        await socket.waitFor((m) => m === 'WATCHDOG=1', 2000, 'WATCHDOG=1');
        expect(socket.messages.slice(0, 2)).to.deep.equal(['STATUS=not ready: acquiring a subnet lease', 'READY=1\nSTATUS=ready']);
      } finally {
        notifier?.close();
        socket.close();
      }
    });
  }

  it('a socket that is gone costs one warning, never an exception', () => {
    const warnings: string[] = [];
    const log = silentLogger();
    log.warn = ((msg: string) => {
      warnings.push(msg);
      return log;
    }) as unknown as typeof log.warn;
    const notifier = systemdNotifier({ NOTIFY_SOCKET: `/tmp/weft-notify-absent-${process.pid}.sock` }, log)!;
    notifier.send('STATUS=one');
    notifier.send('STATUS=two');
    notifier.close();
    expect(warnings).to.have.length(1);
    expect(warnings[0]).to.match(/weft-notify-absent-\d+\.sock: sending "STATUS=one" failed with errno 2$/);
  });
});

describe('sd-notify: the example units', () => {
  const ROOT = fileURLToPath(new URL('../../', import.meta.url));
  const example = (name: string) => readFileSync(join(ROOT, 'examples', name), 'utf8');

  it('weftd.service is Type=notify with a watchdog, and the Docker and containerd drop-ins start after it', () => {
    const unit = example('weftd.service');
    expect(unit).to.match(/^Type=notify$/m);
    expect(unit).to.match(/^WatchdogSec=\d+s?$/m);
    for (const dropIn of ['docker-weft.conf', 'containerd-weft.conf']) expect(example(dropIn), dropIn).to.match(/^After=weftd\.service$/m);
  });

  it('systemd-analyze verify accepts weftd.service (installed at this checkout)', function () {
    try {
      execFileSync('systemd-analyze', ['--version'], { stdio: 'ignore' });
    } catch {
      this.skip();
    }
    const dir = mkdtempSync(join(tmpdir(), 'weft-unit-'));
    try {
      writeFileSync(join(dir, 'weftd.service'), example('weftd.service').replaceAll('/opt/weft/', ROOT));
      execFileSync('systemd-analyze', ['verify', join(dir, 'weftd.service')], { stdio: ['ignore', 'pipe', 'pipe'] });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('sd-notify: a real weftd under a Type=notify unit with a watchdog @real', function () {
  this.timeout(120_000);
  let cluster: Cluster;
  let socket: NotifySocket;
  before(async () => {
    cluster = await Cluster.create({ hosts: 1 });
    socket = new NotifySocket({ kind: 'path', path: `${cluster.dir}/notify.sock` });
  });
  after(async () => {
    socket?.close();
    await cluster?.destroy();
  });

  it('STATUS= says what weftd waits for, READY=1 comes when /readyz turns ready, WATCHDOG=1 at half the period, STOPPING=1 on SIGTERM', async () => {
    const h1 = cluster.node(1);
    h1.start([], [], { NOTIFY_SOCKET: socket.env, WATCHDOG_USEC: '1000000' });
    const readyAt = await socket.waitFor((m) => m.split('\n').includes('READY=1'), 30_000, 'READY=1');
    expect((await h1.http('/readyz')).status, '/readyz once READY=1 is sent').to.equal(200);
    const before = socket.messages.slice(0, readyAt);
    const statuses = before.filter((m) => m.startsWith('STATUS='));
    expect(statuses, 'what weftd waited for').to.include.members(['STATUS=not ready: waiting for a valid network config in etcd', 'STATUS=not ready: acquiring a subnet lease']);
    expect(socket.messages[readyAt]).to.match(/^READY=1\nSTATUS=ready: lease 10\.244\.\d+\.0\/24 held and peers programmed$/);
    expect(socket.messages.filter((m) => m.includes('READY=1')), 'READY=1 once').to.have.length(1);
    // What NotifyAccess=main (the default) requires: every message from the unit's main process itself.
    expect([...new Set(socket.senders)], 'sender PIDs').to.deep.equal([h1.pid]);

    // 1 s watchdog: fed every 0.5 s.
    const fed = socket.messages.filter((m) => m === 'WATCHDOG=1').length;
    await sleep(1600);
    socket.drain();
    expect(socket.messages.filter((m) => m === 'WATCHDOG=1').length - fed).to.be.within(2, 4);

    const { code } = await h1.stop('SIGTERM');
    expect(code).to.equal(0);
    socket.drain();
    expect(socket.messages).to.include('STOPPING=1\nSTATUS=stopping (kernel state and lease are kept)');
  });

  it('started as `node dist/bin/weftd.cjs` (relaunched in place), weftd still notifies from the PID systemd started', async () => {
    const h1 = cluster.node(1);
    socket.messages.length = 0;
    socket.senders.length = 0;
    h1.start([], [process.execPath], { NOTIFY_SOCKET: socket.env });
    await socket.waitFor((m) => m.split('\n').includes('READY=1'), 30_000, 'READY=1');
    expect([...new Set(socket.senders)]).to.deep.equal([h1.pid]);
    await h1.stop('SIGTERM');
  });

  it('a watchdog meant for another process (WATCHDOG_PID) is not fed', async () => {
    const h1 = cluster.node(1);
    socket.messages.length = 0;
    h1.start([], [], { NOTIFY_SOCKET: socket.env, WATCHDOG_USEC: '200000', WATCHDOG_PID: '1' });
    await socket.waitFor((m) => m.split('\n').includes('READY=1'), 30_000, 'READY=1');
    await sleep(500);
    socket.drain();
    expect(socket.messages).to.not.include('WATCHDOG=1');
    await h1.stop('SIGTERM');
  });
});
