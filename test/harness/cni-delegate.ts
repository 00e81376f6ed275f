/**
 * A stand-in CNI delegate plugin for weft-cni's unit tests: a shell script in
 * a temporary CNI_PATH directory that logs each call (command, the CNI_*
 * variables, what dataDir held at that moment, the config on stdin) and
 * answers as a test tells it to.
 */
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './at-exit.js';

const SCRIPT = `#!/bin/sh
here=$(dirname "$0")
input=$(cat)
saved=$(ls -A "\${STANDIN_STATE_DIR:-/nonexistent}" 2>/dev/null | tr '\\n' ' ')
printf '%s|%s|%s|%s|%s|%s\\n' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_IFNAME" "$CNI_NETNS" "$saved" "$input" >> "$here/calls.log"
answer="$here/answer.$CNI_COMMAND"
if [ -f "$answer" ]; then
  tail -n +2 "$answer"
  exit "$(head -n 1 "$answer")"
fi
case "$CNI_COMMAND" in
  ADD) printf '%s\\n' '{"cniVersion":"1.0.0","ips":[{"address":"10.244.7.2/24","gateway":"10.244.7.1"}]}' ;;
  VERSION) printf '%s\\n' '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}' ;;
esac
`;

/** One call the stand-in received. */
export interface DelegateCall {
  readonly command: string;
  readonly containerID: string;
  readonly ifname: string;
  readonly netns: string;
  /** The names in STANDIN_STATE_DIR (weft-cni's dataDir) when the call came. */
  readonly saved: string[];
  /** The config on stdin, parsed (null when it was not JSON). */
  readonly config: Record<string, unknown> | null;
}

export class StandInDelegate {
  private constructor(
    /** The CNI_PATH directory holding the stand-in. */
    readonly dir: string,
    readonly path: string,
  ) {}

  /** A stand-in named `name` (the delegate type it answers for) in a new directory. */
  static create(name = 'bridge'): StandInDelegate {
    const dir = tempDir('weft-cni-path-');
    const path = join(dir, name);
    writeFileSync(path, SCRIPT);
    chmodSync(path, 0o755);
    return new StandInDelegate(dir, path);
  }

  /** From now on, `command` exits with `status` after printing `stdout`. */
  answer(command: string, status: number, stdout: string): void {
    writeFileSync(join(this.dir, `answer.${command}`), `${status}\n${stdout}\n`);
  }

  /** Back to the default answers, and no calls logged. */
  reset(): void {
    for (const c of ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION']) rmSync(join(this.dir, `answer.${c}`), { force: true });
    rmSync(join(this.dir, 'calls.log'), { force: true });
  }

  calls(): DelegateCall[] {
    const log = join(this.dir, 'calls.log');
    if (!existsSync(log)) return [];
    return readFileSync(log, 'utf8')
      .split('\n')
      .filter((l) => l !== '')
      .map((line) => {
        const [command, containerID, ifname, netns, saved, ...rest] = line.split('|');
        let config: Record<string, unknown> | null = null;
        try {
          config = JSON.parse(rest.join('|')) as Record<string, unknown>;
        } catch {
          // not JSON
        }
        return { command: command!, containerID: containerID!, ifname: ifname!, netns: netns!, saved: saved!.split(' ').filter((s) => s !== ''), config };
      });
  }
}
