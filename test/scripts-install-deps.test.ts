/**
 * scripts/install-deps.sh, run for real with stand-ins for dpkg-query,
 * apt-get and npm first on its PATH (nothing is installed, the machine's
 * package configuration is not touched: the policy file goes to a temporary
 * directory through WEFT_POLICY_RC_D). What it must do: one line per step;
 * apt's output in a log file, named and kept when a step fails or the run is
 * interrupted, removed when all went well; services held back while apt runs
 * and the policy file gone again afterwards, however the run ends; a policy
 * file that was there before left exactly as it was.
 */
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('../../scripts/install-deps.sh', import.meta.url));
const HOLD_BACK = '#!/bin/sh\nexit 101\n';

/** The stand-ins. Each call is appended to calls.txt with what the policy file held at that moment. */
const FAKES: Record<string, string> = {
  'dpkg-query': `#!/bin/sh
pkg=$(eval echo "\\$$#")
for p in $FAKE_INSTALLED; do [ "$p" = "$pkg" ] && { printf 'install ok installed'; exit 0; }; done
exit 1
`,
  'apt-get': `#!/bin/sh
policy=$(cat "$WEFT_POLICY_RC_D" 2>/dev/null || echo none)
echo "apt-get $1 | policy: $policy" | tr '\\n' ' ' >>"$FAKE_DIR/calls.txt"; echo >>"$FAKE_DIR/calls.txt"
echo "Reading package lists... (apt noise for $1)"
if [ "$1" = install ]; then
  case "$FAKE_APT" in
    fail) echo "E: Unable to locate package no-such-package"; exit 100 ;;
    hang) echo started >"$FAKE_DIR/started"; sleep "$FAKE_HANG"; echo "policy at end: $(cat "$WEFT_POLICY_RC_D" 2>/dev/null || echo none)" | tr '\\n' ' ' >>"$FAKE_DIR/calls.txt" ;;
  esac
fi
exit 0
`,
  npm: `#!/bin/sh
echo "npm $*" >>"$FAKE_DIR/calls.txt"
echo "added 123 packages (npm noise)"
`,
  // dpkg -L: the files a package installed; etcd-server ships a service, busybox-static none.
  dpkg: `#!/bin/sh
[ "$1" = -L ] || exit 2
case "$2" in
  etcd-server) printf '/usr/bin/etcd\n/lib/systemd/system/etcd.service\n/lib/systemd/system/etcd@.service\n' ;;
  *) printf '/bin/%s\n' "$2" ;;
esac
`,
  systemctl: `#!/bin/sh
echo "systemctl $*" >>"$FAKE_DIR/calls.txt"
`,
};

interface Bed {
  dir: string;
  env: NodeJS.ProcessEnv;
  policy: string;
  tmp: string;
  calls(): string[];
  logs(): string[];
}

function bed(options: { installed?: string; apt?: 'ok' | 'fail' | 'hang'; hang?: number } = {}): Bed {
  const dir = mkdtempSync(join(tmpdir(), 'weft-install-test-'));
  const bin = join(dir, 'bin');
  const tmp = join(dir, 'tmp');
  mkdirSync(bin);
  mkdirSync(tmp);
  for (const [name, text] of Object.entries(FAKES)) {
    writeFileSync(join(bin, name), text);
    chmodSync(join(bin, name), 0o755);
  }
  const policy = join(dir, 'policy-rc.d');
  return {
    dir,
    policy,
    tmp,
    env: {
      ...process.env,
      PATH: `${bin}:${process.env['PATH'] ?? '/usr/bin:/bin'}`,
      TMPDIR: tmp,
      WEFT_POLICY_RC_D: policy,
      FAKE_DIR: dir,
      FAKE_INSTALLED: options.installed ?? '',
      FAKE_APT: options.apt ?? 'ok',
      FAKE_HANG: String(options.hang ?? 30),
    },
    calls: () => (existsSync(join(dir, 'calls.txt')) ? readFileSync(join(dir, 'calls.txt'), 'utf8').trim().split('\n') : []),
    logs: () => readdirSync(tmp).filter((f) => f.startsWith('weft-install.')).map((f) => join(tmp, f)),
  };
}

/** The packages the script always wants (its `packages=(...)` line, without the callers' "$@"). */
const ALL = /^packages=\(([^)]*)\)$/m
  .exec(readFileSync(SCRIPT, 'utf8'))![1]!
  .split(/\s+/)
  .filter((p) => p !== '"$@"')
  .join(' ');

function run(b: Bed, args: string[] = []) {
  return spawnSync('bash', [SCRIPT, ...args], { env: b.env, encoding: 'utf8' });
}

describe('install-deps.sh: one line per step, the machine left as found', () => {
  const beds: Bed[] = [];
  const make = (o?: Parameters<typeof bed>[0]) => {
    const b = bed(o);
    beds.push(b);
    return b;
  };
  after(() => {
    for (const b of beds) rmSync(b.dir, { recursive: true, force: true });
  });

  it('installs what is missing with one line per step, services held back while apt runs, and leaves no policy file or log behind', () => {
    const b = make({ installed: ALL.replace(/^etcd-server /, '') });
    const r = run(b, ['busybox-static']);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout.trim().split('\n')).to.deep.equal([
      'apt-get update ... ok',
      'installing etcd-server busybox-static ... ok',
      'disabling etcd.service at boot, as before ... ok',
      'npm ci ... ok',
    ]);
    expect(r.stderr).to.equal('');
    // Only the units of what was installed now, and not a template (etcd@.service) that nothing enabled.
    expect(b.calls().filter((c) => c.startsWith('systemctl'))).to.deep.equal(['systemctl disable --no-reload etcd.service']);
    expect(b.calls().filter((c) => c.startsWith('apt-get'))).to.deep.equal([
      `apt-get update | policy: ${HOLD_BACK.trim().replace('\n', ' ')} `,
      `apt-get install | policy: ${HOLD_BACK.trim().replace('\n', ' ')} `,
    ]);
    expect(existsSync(b.policy), 'policy file removed').to.equal(false);
    expect(b.logs(), 'log removed after a good run').to.deep.equal([]);
  });

  it('with everything installed, runs no apt and places no policy file', () => {
    const b = make({ installed: ALL });
    const r = run(b);
    expect(r.status, r.stderr).to.equal(0);
    expect(r.stdout.trim().split('\n')).to.deep.equal(['npm ci ... ok']);
    expect(b.calls().filter((c) => c.startsWith('apt-get'))).to.deep.equal([]);
    expect(existsSync(b.policy)).to.equal(false);
  });

  it('a failing step: its exit code, the log named and kept with apt\'s output, the policy file removed', () => {
    const b = make({ installed: ALL, apt: 'fail' });
    const r = run(b, ['no-such-package']);
    expect(r.status).to.equal(100);
    const logs = b.logs();
    expect(logs).to.have.length(1);
    expect(r.stdout).to.include(`installing no-such-package ... failed (exit 100); its output is in ${logs[0]}`);
    expect(r.stdout).to.not.include('npm ci');
    expect(readFileSync(logs[0]!, 'utf8')).to.include('E: Unable to locate package no-such-package').and.include('Reading package lists');
    expect(existsSync(b.policy)).to.equal(false);
  });

  it('a policy file that was there before is the machine\'s: left byte for byte and mode for mode', () => {
    const b = make({ apt: 'fail' });
    const own = '#!/bin/sh\n# the machine\'s own policy\nexit 0\n';
    writeFileSync(b.policy, own);
    chmodSync(b.policy, 0o750);
    for (const args of [[], ['no-such-package']]) {
      b.env['FAKE_APT'] = args.length ? 'fail' : 'ok';
      run(b, args);
      expect(readFileSync(b.policy, 'utf8')).to.equal(own);
      expect(statSync(b.policy).mode & 0o777).to.equal(0o750);
    }
  });

  for (const [how, sig, code] of [
    ['Ctrl-C (SIGINT to the foreground process group)', 'SIGINT', 130],
    ['SIGTERM to the script alone (apt-get is left to finish first)', 'SIGTERM', 143],
  ] as const) {
    it(`interrupted by ${how}: policy file removed once apt has stopped, log named and kept`, async () => {
      const b = make({ installed: '', apt: 'hang', hang: sig === 'SIGTERM' ? 1 : 5 });
      const child = spawn('bash', [SCRIPT], { env: b.env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((r) => child.once('exit', (c) => r(c)));
      try {
        for (let i = 0; i < 200 && !existsSync(join(b.dir, 'started')); i++) await sleep(25);
        expect(existsSync(b.policy), 'services held back while apt runs').to.equal(true);
        if (sig === 'SIGINT') process.kill(-child.pid!, 'SIGINT');
        else process.kill(child.pid!, 'SIGTERM');
        expect(await exited).to.equal(code);
      } finally {
        if (child.exitCode === null) process.kill(-child.pid!, 'SIGKILL');
      }
      expect(existsSync(b.policy), 'policy file removed').to.equal(false);
      if (sig === 'SIGTERM') expect(b.calls().join('\n'), 'held back until apt-get ended').to.include(`policy at end: ${HOLD_BACK.trim().replace('\n', ' ')}`);
      const logs = b.logs();
      expect(logs).to.have.length(1);
      expect(stdout.trim().split('\n').at(-1)).to.match(/^installing .* \.\.\. interrupted$/);
      expect(stderr).to.include(`the output of its steps is in ${logs[0]}`);
    });
  }
});
