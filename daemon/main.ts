#!/usr/bin/env node
/**
 * weftd's command line: `weftd [options]` runs the daemon;
 * `weftd docker-opts` writes Docker's options from the subnet file (flannel's
 * mk-docker-opts.sh); `weftd cleanup` removes every rule weft (or flanneld)
 * added, iptables and ip6tables chains and nftables tables alike; `weftd cleanup-iptables`
 * only the iptables and ip6tables ones.
 * Bad options exit with code 2 and one message naming the option.
 */
import yargs from 'yargs';
import { isWeftError } from '../common/errors.js';
import { createLogger } from '../common/log.js';
import { WEFT_VERSION, codeCacheState, launchNote } from '../common/version.js';
import { NetlinkKernel } from '../kernel/kernel-netlink.js';
import { createBackends } from '../backend/registry.js';
import { dockerOptsCommand } from '../lease/docker-opts.js';
import { removeTrafficRulesBothFamilies } from '../kernel/iptables.js';
import { isToolMissing, removeNftTables } from '../kernel/nftables.js';
import { parseWeftdOptions } from '../common/options.js';
import { Weftd } from './weftd.js';
import { systemdNotifier } from './sd-notify.js';

async function runDaemon(argv: string[]): Promise<number> {
  const options = await parseWeftdOptions(argv);
  const log = createLogger({ level: options.logLevel, format: options.logFormat });
  log.info(`weftd ${WEFT_VERSION} starting (Node ${process.version}; options read ${Math.round(performance.now())} ms after process start, code cache ${codeCacheState()}${launchNote()})`);
  for (const note of options.ignoredFlags ?? []) log.warn(`flanneld flag accepted without effect: ${note}`);
  // Under a Type=notify unit: READY=1, STATUS=, STOPPING=1 and the watchdog (daemon/sd-notify.ts).
  const notify = systemdNotifier(process.env, log);
  const controller = new AbortController();
  let signals = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      log.warn(`second ${sig}: exiting now`);
      process.exit(1);
    }
    log.info(`${sig}: stopping (kernel state and lease are kept)`);
    notify?.send('STOPPING=1\nSTATUS=stopping (kernel state and lease are kept)');
    controller.abort();
    // Stopping must not hang on a slow etcd or kernel call.
    setTimeout(() => process.exit(0), 2000).unref();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  const weftd = new Weftd({ options, log, backends: createBackends(), kernel: new NetlinkKernel(), notify });
  try {
    await weftd.run(controller.signal);
    log.info('stopped');
    return 0;
  } catch (err) {
    if (controller.signal.aborted && isWeftError(err, 'WEFT_ERR_ABORTED')) return 0;
    log.error(`weftd failed: ${(err as Error).message}`, isWeftError(err) ? { code: err.code } : {});
    return isWeftError(err, 'WEFT_ERR_OPTION_INVALID') ? 2 : 1;
  } finally {
    notify?.close();
  }
}

/**
 * `weftd cleanup`: both kinds, whichever mode ran last; a kind whose tool is
 * not installed has nothing to remove. Exits 1 when a removal failed.
 */
async function cleanup(): Promise<number> {
  let code = 0;
  const kinds: [string, () => Promise<boolean>][] = [
    ['iptables rules', () => removeTrafficRulesBothFamilies()],
    ['nftables tables', () => removeNftTables()],
  ];
  for (const [what, remove] of kinds) {
    try {
      console.error((await remove()) ? `removed weft/flannel ${what}` : `no weft/flannel ${what} found`);
    } catch (err) {
      if (isToolMissing(err)) console.error(`no weft/flannel ${what} found (${what.split(' ')[0]} not installed)`);
      else {
        console.error(`weftd cleanup: ${(err as Error).message}`);
        code = 1;
      }
    }
  }
  return code;
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'cleanup') return cleanup();
  if (argv[0] === 'docker-opts') return dockerOptsCommand(argv.slice(1), 'weftd');
  if (argv[0] === 'cleanup-iptables') {
    const removed = await removeTrafficRulesBothFamilies();
    console.error(removed ? 'removed weft/flannel iptables rules' : 'no weft/flannel iptables rules found');
    return 0;
  }
  // Handled before option parsing: yargs would print the version and carry on into the daemon.
  if (argv.includes('--version') || argv.includes('-version')) {
    console.log(WEFT_VERSION);
    return 0;
  }
  if (argv[0] === 'help' || argv.includes('--help') || argv.includes('-h') || argv.includes('-help')) {
    console.log('usage: weftd [options] | weftd docker-opts [...]\n       weftd cleanup | weftd cleanup-iptables\n');
    const { declareWeftdOptions } = await import('../common/options.js');
    console.log(await declareWeftdOptions(yargs([])).option('config', { type: 'string', describe: 'YAML or JSON file whose keys are the long option names' }).getHelp());
    return 0;
  }
  return runDaemon(argv);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // The etcd client and timers may hold the loop; exit once everything had its chance to flush.
    setTimeout(() => process.exit(code), 100).unref();
  },
  (err: unknown) => {
    const code = isWeftError(err, 'WEFT_ERR_OPTION_INVALID') ? 2 : ((err as { exitCode?: number }).exitCode ?? 1);
    console.error(`weftd: ${(err as Error).message}`);
    process.exit(code);
  },
);
