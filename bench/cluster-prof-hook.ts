/**
 * CPU profile of a process this benchmark starts, without touching its
 * command line (`--cpu-prof` is refused in NODE_OPTIONS, `--import` is not):
 *   NODE_OPTIONS="--import=<this file>" WEFT_CPU_PROF_DIR=DIR
 * writes DIR/weftd-<pid>.cpuprofile when the process exits.
 */
import { Session } from 'node:inspector';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

const dir = process.env['WEFT_CPU_PROF_DIR'];
if (dir) {
  const session = new Session();
  session.connect();
  session.post('Profiler.setSamplingInterval', { interval: 500 });
  session.post('Profiler.enable');
  session.post('Profiler.start');
  process.on('exit', () => {
    // An in-thread inspector session answers synchronously.
    session.post('Profiler.stop', (err, res) => {
      if (!err) writeFileSync(join(dir, `weftd-${process.pid}.cpuprofile`), JSON.stringify(res.profile));
    });
  });
}
