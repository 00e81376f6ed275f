#!/usr/bin/env node
/**
 * weftctl: look at and manage a weft cluster from a node. It takes weftd's
 * own options (flags, WEFTD_* / FLANNELD_* environment, --config file), so
 * pointing it at the node's weftd.yaml is enough to reach the same etcd and
 * weftd's HTTP endpoint. `--output json` prints the same data for scripts.
 *
 *   weftctl config get|set [FILE]|validate [FILE]   the network config
 *   weftctl leases                                    every subnet key
 *   weftctl reserve SUBNET --public-ip IP [--vtep-mac MAC] [--ipv6-subnet V6 --public-ipv6 IP6 --vtep-mac-v6 MAC]
 *   weftctl release SUBNET [--force]
 *   weftctl status | diff | doctor                    this node
 *   weftctl docker-opts [...]                         as `weftd docker-opts`
 *   weftctl cni install --bin-dir DIR --conf-dir DIR  the CNI plugin and its conflist
 */
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import yargs, { type Argv } from 'yargs';
import { WeftError, isWeftError } from '../common/errors.js';
import { NetlinkKernel } from '../kernel/kernel-netlink.js';
import { doctorReport, runChecks } from './doctor.js';
import { dockerOptsCommand } from '../lease/docker-opts.js';
import { cniCommand } from './cni.js';
import { declareWeftdOptions, readConfigFile, validateWeftdOptions, weftdEnvironment, withEnvironment, type WeftdOptions } from '../common/options.js';
import { discoverUnderlay } from '../kernel/underlay.js';
import { fetchStatus, openEtcd, weftdUrl } from './context.js';
import { getConfig, setConfig, validateConfig } from './config.js';
import { diffNode, diffReport } from './diff.js';
import { render, type OutputFormat, type Report } from './format.js';
import { leasesReport, readLeaseRows, release, reserve } from './leases.js';
import { readKernelView, statusDevices, statusReport } from './status.js';

const COMMANDS = ['config', 'leases', 'reserve', 'release', 'status', 'diff', 'doctor', 'docker-opts'];

function declareCli(y: Argv) {
  return declareWeftdOptions(y)
    .scriptName('weftctl')
    .usage('weftctl <command> [options]   (weftd\'s etcd and HTTP options apply; --config reads weftd.yaml)')
    .config('config', 'weftd\'s YAML or JSON config file', readConfigFile)
    .option('output', { alias: 'o', type: 'string', choices: ['table', 'json'], default: 'table', describe: 'output format' })
    .command('config <action> [file]', 'the network config in etcd: get, set FILE (validated first), validate FILE (- or none: stdin)', (c) =>
      c.positional('action', { choices: ['get', 'set', 'validate'] as const, demandOption: true }).positional('file', { type: 'string' }),
    )
    .command('leases', 'every subnet lease and reservation in etcd')
    .command('reserve <subnet>', 'reserve SUBNET for --public-ip (a key without an etcd lease)', (c) =>
      c
        .positional('subnet', { type: 'string', demandOption: true })
        .option('vtep-mac', { type: 'string', describe: 'VTEP MAC to advertise (vxlan)' })
        .option('ipv6-subnet', { type: 'string', describe: 'dual-stack network: the IPv6 subnet reserved with SUBNET' })
        .option('vtep-mac-v6', { type: 'string', describe: 'network with IPv6: the VTEP MAC of the IPv6 device (vxlan BackendV6Data)' }),
    )
    .command('release <subnet>', 'delete a reservation (--force: a live lease too)', (c) =>
      c.positional('subnet', { type: 'string', demandOption: true }).option('force', { type: 'boolean', default: false }),
    )
    .command('status', 'this node: lease, device, peers, reconcile, etcd, readiness, peer health')
    .command('diff', 'desired kernel entries (leases) vs the kernel on this node')
    .command('doctor', 'checks with a verdict and a fix each')
    .command('docker-opts', 'Docker options from the subnet file (as weftd docker-opts)')
    .command('cni <action>', 'install: the CNI plugin and a conflist on this node (weftctl cni --help)')
    .demandCommand(1, 'a command is required')
    .strict()
    .exitProcess(false)
    .fail((msg, err) => {
      if (err instanceof WeftError) throw err;
      throw new WeftError('WEFT_ERR_OPTION_INVALID', (msg ?? err?.message ?? 'invalid arguments').replace(/\s+/g, ' '));
    });
}

async function readInput(file: string | undefined): Promise<{ text: string; source: string }> {
  if (!file || file === '-') return { text: readFileSync(0, 'utf8'), source: 'stdin' };
  return { text: await readFile(file, 'utf8'), source: file };
}

async function readSysctl(path: string): Promise<string | null> {
  return readFile(path, 'utf8').then((s) => s.trim(), () => null);
}

type Args = Record<string, unknown> & { _: (string | number)[] };

async function run(command: string, a: Args, o: WeftdOptions): Promise<Report> {
  if (command === 'config') {
    const action = a.action as 'get' | 'set' | 'validate';
    if (action === 'validate') {
      const { text, source } = await readInput(a.file as string | undefined);
      return validateConfig(text, source);
    }
    const etcd = openEtcd(o);
    try {
      if (action === 'get') return await getConfig(etcd.registry);
      const { text, source } = await readInput(a.file as string | undefined);
      return await setConfig(etcd.registry, text, source);
    } finally {
      await etcd.close();
    }
  }
  if (command === 'leases' || command === 'reserve' || command === 'release') {
    const etcd = openEtcd(o);
    try {
      if (command === 'leases') {
        const { rows, configError } = await readLeaseRows(etcd.registry);
        return leasesReport(rows, configError);
      }
      if (command === 'reserve') {
        const publicIPv6 = a['public-ipv6'] === undefined || a['public-ipv6'] === '' ? undefined : String(a['public-ipv6']);
        if (!o.publicIp && !publicIPv6) throw new WeftError('WEFT_ERR_OPTION_INVALID', 'invalid option --public-ip: reserve needs the public IP the subnet is for (--public-ipv6 in an IPv6-only network)');
        const v6 = {
          ...(a['ipv6-subnet'] !== undefined ? { ipv6Subnet: String(a['ipv6-subnet']) } : {}),
          ...(publicIPv6 !== undefined ? { publicIPv6 } : {}),
          ...(a['vtep-mac-v6'] !== undefined ? { vtepMacV6: String(a['vtep-mac-v6']) } : {}),
        };
        return await reserve(etcd.registry, String(a.subnet), o.publicIp, a['vtep-mac'] as string | undefined, v6);
      }
      return await release(etcd.registry, String(a.subnet), a.force === true);
    } finally {
      await etcd.close();
    }
  }
  const kernel = new NetlinkKernel();
  try {
    if (command === 'status') {
      const url = weftdUrl(o) ?? '(no HTTP endpoint)';
      const got = await fetchStatus(o);
      if ('error' in got) return { json: { url, error: got.error }, text: `weftd: ${got.error}`, exitCode: 1 };
      const ipv6Forwarding = got.status.ipv6Network ? await readSysctl('/proc/sys/net/ipv6/conf/all/forwarding') : undefined;
      const view = await readKernelView(kernel, statusDevices(got.status), await readSysctl('/proc/sys/net/ipv4/ip_forward'), ipv6Forwarding);
      return statusReport(url, got.status, view);
    }
    if (command === 'diff') {
      const etcd = openEtcd(o);
      try {
        const underlayFor = (stack: { v4: boolean; v6: boolean }) =>
          discoverUnderlay(kernel, { iface: o.iface, ifaceRegex: o.ifaceRegex, ifaceCanReach: o.ifaceCanReach, publicIp: o.publicIp, ...(o.publicIpv6 ? { publicIpv6: o.publicIpv6 } : {}), stack });
        return diffReport(await diffNode(etcd.registry, kernel, underlayFor, o.routeNexthops));
      } finally {
        await etcd.close();
      }
    }
    // doctor
    const etcd = openEtcd(o);
    try {
      const [status, leases] = await Promise.all([
        fetchStatus(o),
        readLeaseRows(etcd.registry).then(
          (r) => ({ rows: r.rows, network: r.config?.network ?? null }),
          (err: Error) => ({ error: `etcd: ${err.message}` }),
        ),
      ]);
      return doctorReport(await runChecks({ options: o, kernel, status, leases }));
    } finally {
      await etcd.close();
    }
  } finally {
    await kernel.close();
  }
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'docker-opts') return dockerOptsCommand(argv.slice(1), 'weftctl');
  if (argv[0] === 'cni') return cniCommand(argv.slice(1));
  const a = (await withEnvironment(weftdEnvironment(process.env), () => declareCli(yargs(argv)).env('WEFTD').parse())) as Args;
  if (a.help || a.version) return 0;
  const command = String(a._[0]);
  if (!COMMANDS.includes(command)) throw new WeftError('WEFT_ERR_OPTION_INVALID', `unknown command "${command}"`);
  const options = validateWeftdOptions(a);
  const report = await run(command, a, options);
  const out = render(report, a.output as OutputFormat);
  if (out) console.log(out);
  return report.exitCode;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
    // The etcd client's channels may hold the loop briefly; exit once output is flushed.
    setTimeout(() => process.exit(code), 50).unref();
  },
  (err: unknown) => {
    console.error(`weftctl: ${(err as Error).message}`);
    process.exit(isWeftError(err, 'WEFT_ERR_OPTION_INVALID') ? 2 : 1);
  },
);
