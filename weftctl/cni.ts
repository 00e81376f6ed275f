/**
 * `weftctl cni install`: puts weft's CNI plugin and a conflist on this node
 * (cni/install.ts does the work). It takes only its own options, not weftd's:
 * it reaches neither etcd nor weftd.
 */
import yargs from 'yargs';
import { WeftError } from '../common/errors.js';
import { DEFAULT_CONFLIST_VERSION, PLUGIN_NAMES, install, type PluginName } from '../cni/install.js';
import { render, type OutputFormat } from './format.js';

/** Runs `weftctl cni ARGV...`; returns the exit code. */
export async function cniCommand(argv: string[]): Promise<number> {
  const a = await yargs(argv)
    .scriptName('weftctl cni')
    .usage('weftctl cni install --bin-dir DIR --conf-dir DIR [--name weft|flannel] [--link]')
    .command('install', 'install the plugin into --bin-dir and a conflist (plugin + portmap, the same on every node) into --conf-dir')
    .option('bin-dir', { type: 'string', demandOption: true, describe: 'the runtime\'s CNI plugin directory (e.g. /opt/cni/bin)' })
    .option('conf-dir', { type: 'string', demandOption: true, describe: 'the runtime\'s CNI config directory (e.g. /etc/cni/net.d)' })
    .option('name', { type: 'string', choices: PLUGIN_NAMES, default: 'weft', describe: 'the plugin\'s name: flannel makes an existing flannel conflist use weft' })
    .option('link', { type: 'boolean', default: false, describe: 'a symlink to this installation\'s plugin instead of a copy' })
    .option('source', { type: 'string', describe: 'the plugin file to install (default: dist/bin/weft-cni.cjs here)' })
    .option('subnet-file', { type: 'string', describe: 'weftd\'s --subnet-file, if not the default' })
    .option('cni-version', { type: 'string', default: DEFAULT_CONFLIST_VERSION, describe: 'the conflist\'s cniVersion (1.1.0 for STATUS and GC: needs plugins of CNI v1.5 or later)' })
    .option('output', { alias: 'o', type: 'string', choices: ['table', 'json'], default: 'table' })
    .demandCommand(1, 'a command is required: install')
    .strict()
    .exitProcess(false)
    .fail((msg, err) => {
      if (err instanceof WeftError) throw err;
      throw new WeftError('WEFT_ERR_OPTION_INVALID', (msg ?? err?.message ?? 'invalid arguments').replace(/\s+/g, ' '));
    })
    .parse();
  if (a.help) return 0;
  if (a._[0] !== 'install') throw new WeftError('WEFT_ERR_OPTION_INVALID', `unknown command "cni ${String(a._[0])}": cni install`);
  const done = install({
    binDir: a['bin-dir'],
    confDir: a['conf-dir'],
    name: a.name as PluginName,
    link: a.link,
    source: a.source,
    subnetFile: a['subnet-file'],
    cniVersion: a['cni-version'],
  });
  const how = done.link ? `symlink to ${done.source}` : `copy of ${done.source}`;
  console.log(render({ json: done, text: `plugin    ${done.plugin} (${how})\nconflist  ${done.conflist}`, exitCode: 0 }, a.output as OutputFormat));
  return 0;
}
