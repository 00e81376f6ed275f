import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import yargs, { type Argv } from 'yargs';
import { WeftError } from './errors.js';
import { ROUTE_NEXTHOPS_MODES, WEFTD_DEFAULTS as D, type RouteNexthopsMode } from './defaults.js';
import { canonicalIPv4, canonicalIPv6, ipValue } from './subnet.js';

/** weftd's options: flanneld's flag names and defaults where they overlap, plus weft's own. */
export interface WeftdOptions {
  readonly etcdEndpoints: string[];
  readonly etcdPrefix: string;
  readonly etcdCafile?: string;
  readonly etcdCertfile?: string;
  readonly etcdKeyfile?: string;
  readonly etcdUsername?: string;
  readonly etcdPassword?: string;
  readonly iface: string[];
  readonly ifaceRegex: string[];
  /** The interface the kernel would route this IP through (flanneld's `ip route get` rule). */
  readonly ifaceCanReach?: string;
  readonly publicIp?: string;
  /** PublicIPv6 advertised to peers (default: the interface's best global IPv6 address), RFC 5952 form. */
  readonly publicIpv6?: string;
  readonly subnetFile: string;
  /** Minutes before expiry by which the lease is renewed (flanneld: 1..1439). */
  readonly subnetLeaseRenewMargin: number;
  /** TTL of the etcd lease, seconds. */
  readonly subnetLeaseTtl: number;
  readonly ipMasq: boolean;
  readonly ipMasqFullyRandomDisable: boolean;
  readonly iptablesForwardRules: boolean;
  /** Seconds between iptables checks. */
  readonly iptablesResync: number;
  readonly healthzIp: string;
  /** 0 disables the HTTP endpoint. */
  readonly healthzPort: number;
  readonly stateDir: string;
  readonly logLevel: string;
  readonly logFormat: 'json' | 'text';
  /** Seconds between full reconcile passes of the kernel state. */
  readonly resyncInterval: number;
  /** Create this bridge with the subnet's gateway address, for `dockerd --bridge`. */
  readonly bridge?: string;
  /** UDP port of the peer-health echo (responder and probes). */
  readonly probePort: number;
  /** Seconds between peer-health rounds; 0 disables probing. */
  readonly probeInterval: number;
  /** Most peers probed per round in rotation, so the cost stays flat in large clusters. */
  readonly probeSample: number;
  /** Keep a blackhole route for the node's own subnet (flanneld's --ip-blackhole-route). */
  readonly ipBlackholeRoute?: boolean;
  /** flanneld flags given that weft accepts without effect, each with why: logged at start. */
  readonly ignoredFlags?: readonly string[];
  /** Peer routes through nexthop objects (kernel >= 5.3): `auto` where the kernel has them, `on` or `off` to force. */
  readonly routeNexthops: RouteNexthopsMode;
}

const LOG_LEVELS = ['error', 'warn', 'info', 'verbose', 'debug', 'silly'];

/** Declares the daemon's options on a yargs instance (shared by the run command and tests). */
export function declareWeftdOptions<T>(y: Argv<T>) {
  return y
    .option('etcd-endpoints', { type: 'string', default: D['etcd-endpoints'], describe: 'comma-separated etcd endpoints' })
    .option('etcd-prefix', { type: 'string', default: D['etcd-prefix'], describe: 'etcd prefix of the network config and subnets' })
    .option('etcd-cafile', { type: 'string', describe: 'CA certificate: enables TLS (https endpoints only)' })
    .option('etcd-certfile', { type: 'string', describe: 'client certificate for mutual TLS' })
    .option('etcd-keyfile', { type: 'string', describe: 'client key for mutual TLS' })
    .option('etcd-username', { type: 'string', describe: 'etcd v3 auth user' })
    .option('etcd-password', { type: 'string', describe: 'etcd v3 auth password' })
    .option('iface', { type: 'string', array: true, default: [] as string[], describe: 'interface (name or IP) for the underlay; repeatable' })
    .option('iface-regex', { type: 'string', array: true, default: [] as string[], describe: 'regex matched against interface IPs, then names; repeatable' })
    .option('public-ip', { type: 'string', describe: 'IP advertised to peers (default: the interface address)' })
    .option('subnet-file', { type: 'string', default: D['subnet-file'], describe: 'where to write the subnet env file' })
    .option('subnet-lease-renew-margin', { type: 'number', default: D['subnet-lease-renew-margin'], describe: 'minutes before expiry to renew the lease (1-1439)' })
    .option('subnet-lease-ttl', { type: 'number', default: D['subnet-lease-ttl'], describe: 'TTL of the subnet lease in seconds' })
    .option('ip-masq', { type: 'boolean', default: D['ip-masq'], describe: 'masquerade traffic leaving the overlay' })
    .option('ip-masq-fully-random-disable', { type: 'boolean', default: D['ip-masq-fully-random-disable'], describe: 'MASQUERADE without --random-fully' })
    .option('iptables-forward-rules', { type: 'boolean', default: D['iptables-forward-rules'], describe: 'add FORWARD accept rules for the network' })
    .option('iptables-resync', { type: 'number', default: D['iptables-resync'], describe: 'seconds between iptables checks' })
    .option('healthz-ip', { type: 'string', default: D['healthz-ip'], describe: 'address of /healthz, /readyz and /metrics' })
    .option('healthz-port', { type: 'number', default: D['healthz-port'], describe: 'port of the HTTP endpoint (0: disabled)' })
    .option('state-dir', { type: 'string', default: D['state-dir'], describe: 'persistent state (VTEP MAC)' })
    .option('log-level', { type: 'string', default: D['log-level'], choices: LOG_LEVELS })
    .option('log-format', { type: 'string', default: D['log-format'], choices: ['text', 'json'] })
    .option('resync-interval', { type: 'number', default: D['resync-interval'], describe: 'seconds between full kernel reconcile passes (a safety net: drift is repaired as the kernel reports it)' })
    .option('bridge', { type: 'string', describe: 'create this bridge with <subnet>.1/len and the overlay MTU (for dockerd --bridge)' })
    .option('probe-port', { type: 'number', default: D['probe-port'], describe: 'UDP port of the peer-health echo' })
    .option('probe-interval', { type: 'number', default: D['probe-interval'], describe: 'seconds between peer-health rounds (0: off)' })
    .option('probe-sample', { type: 'number', default: D['probe-sample'], describe: 'peers probed per round, in rotation' })
    .option('route-nexthops', { type: 'string', default: D['route-nexthops'], choices: ROUTE_NEXTHOPS_MODES, describe: 'peer routes through nexthop objects (kernel >= 5.3): auto, on or off' })
    // flanneld's remaining flags (README, Options): taken with flanneld's meaning, ignored with a logged reason, or
    // (the Kubernetes subnet manager's) refused with one.
    .option('iface-can-reach', { type: 'string', describe: 'use the interface the kernel routes this IP through (as `ip route get IP`)' })
    .option('public-ipv6', { type: 'string', describe: 'IPv6 advertised to peers when the network config enables IPv6 (default: the interface\'s global IPv6 address)' })
    .option('ip-blackhole-route', { type: 'boolean', default: false, describe: 'keep a blackhole route for the node\'s own subnet' })
    // Hidden: a one-letter flag would shift every other flag of the help's layout. README, Options, documents it.
    .option('v', { type: 'number', hidden: true, describe: 'flanneld\'s klog verbosity: 1-2 verbose, 3-5 debug, 6+ silly (unless --log-level is set)' })
    .option('vmodule', { type: 'string', hidden: true })
    .option('log-backtrace-at', { type: 'string', hidden: true })
    .option('kube-subnet-mgr', { type: 'boolean', hidden: true })
    .option('kube-api-url', { type: 'string', hidden: true })
    .option('kubeconfig-file', { type: 'string', hidden: true })
    .option('kube-annotation-prefix', { type: 'string', hidden: true })
    .option('net-config-path', { type: 'string', hidden: true })
    .option('set-node-network-unavailable', { type: 'boolean', hidden: true });
}

/** weftd's boolean flags (the rest take a value): Go's flag syntax reads the two kinds differently. */
export const BOOLEAN_FLAGS: ReadonlySet<string> = new Set([
  'ip-masq', 'ip-masq-fully-random-disable', 'iptables-forward-rules', 'ip-blackhole-route', 'kube-subnet-mgr',
  'set-node-network-unavailable',
]);

/** weftd's flags that take a value (declareWeftdOptions, plus --config). */
export const VALUE_FLAGS: ReadonlySet<string> = new Set([
  'etcd-endpoints', 'etcd-prefix', 'etcd-cafile', 'etcd-certfile', 'etcd-keyfile', 'etcd-username', 'etcd-password',
  'iface', 'iface-regex', 'iface-can-reach', 'public-ip', 'public-ipv6', 'subnet-file', 'subnet-lease-renew-margin',
  'subnet-lease-ttl', 'iptables-resync', 'healthz-ip', 'healthz-port', 'state-dir', 'log-level', 'log-format',
  'resync-interval', 'bridge', 'probe-port', 'probe-interval', 'probe-sample', 'route-nexthops', 'v', 'vmodule', 'log-backtrace-at',
  'kube-api-url', 'kubeconfig-file', 'kube-annotation-prefix', 'net-config-path', 'config',
]);

/** The Kubernetes subnet manager's flags: weft keeps leases in etcd only. */
const KUBE_FLAGS = ['kube-subnet-mgr', 'kube-api-url', 'kubeconfig-file', 'kube-annotation-prefix', 'net-config-path', 'set-node-network-unavailable'];

/** Go's strconv.ParseBool, which flanneld's boolean flags and FLANNELD_* variables go through. */
function goBool(text: string): boolean | null {
  if (['1', 't', 'T', 'true', 'TRUE', 'True'].includes(text)) return true;
  if (['0', 'f', 'F', 'false', 'FALSE', 'False'].includes(text)) return false;
  return null;
}

/**
 * Rewrites a command line in Go's flag syntax, which flanneld's units use
 * (`-subnet-file /x`, `-etcd-prefix=/x`, `-ip-masq`, `--ip-masq=false`,
 * `-v=2`), into `--name=value` tokens: one or two dashes alike; a value flag
 * takes `=value` or the next argument, whatever it looks like; a boolean flag
 * takes only `=value`, as Go's strconv.ParseBool reads it. klog's
 * `-log_backtrace_at` is spelled with dashes; yargs' `--no-<boolean>` is kept.
 * An unknown flag is refused by the name given, and so is a bare argument (Go
 * would stop parsing there and silently ignore the rest, `-ip-masq false` included).
 */
export function goStyleArgs(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!;
    const m = /^--?([^-=][^=]*)(?:=([\s\S]*))?$/.exec(token);
    if (!m) {
      const hint = goBool(token) !== null ? ' (a boolean flag takes its value as -flag=value)' : '';
      throw new WeftError('WEFT_ERR_OPTION_INVALID', `invalid arguments: unexpected argument "${token}"${hint}`);
    }
    const name = m[1] === 'log_backtrace_at' ? 'log-backtrace-at' : m[1]!;
    const value = m[2];
    if (BOOLEAN_FLAGS.has(name)) {
      if (value === undefined) out.push(`--${name}`);
      else {
        const b = goBool(value);
        if (b === null) throw optionError(name, `"${value}" is not a boolean (true, false, 1, 0, t, f)`);
        out.push(`--${name}=${b}`);
      }
    } else if (VALUE_FLAGS.has(name)) {
      if (value !== undefined) out.push(`--${name}=${value}`);
      else if (i + 1 < argv.length) out.push(`--${name}=${argv[++i]!}`);
      else throw optionError(name, 'needs a value');
    } else if (name.startsWith('no-') && BOOLEAN_FLAGS.has(name.slice(3)) && value === undefined) out.push(`--${name}`);
    else throw new WeftError('WEFT_ERR_OPTION_INVALID', `invalid arguments: Unknown argument: ${token} (weftd --help lists the flags)`);
  }
  return out;
}

/** Option names a config file may use: the long flag names (or their camelCase form). */
const FILE_KEYS = new Set([
  'etcd-endpoints', 'etcd-prefix', 'etcd-cafile', 'etcd-certfile', 'etcd-keyfile', 'etcd-username', 'etcd-password',
  'iface', 'iface-regex', 'public-ip', 'subnet-file', 'subnet-lease-renew-margin', 'subnet-lease-ttl', 'ip-masq',
  'ip-masq-fully-random-disable', 'iptables-forward-rules', 'iptables-resync', 'healthz-ip', 'healthz-port', 'state-dir',
  'log-level', 'log-format', 'resync-interval', 'bridge', 'probe-port', 'probe-interval', 'probe-sample',
  'iface-can-reach', 'ip-blackhole-route', 'route-nexthops', 'public-ipv6',
]);

/** Reads a YAML or JSON config file whose keys are the long flag names. */
export function readConfigFile(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw optionError('config', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = parseYaml(text); // YAML is a superset of JSON
  } catch (err) {
    throw optionError('config', `${path} is not valid YAML or JSON: ${(err as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw optionError('config', `${path} must hold a mapping of option names to values`);
  for (const key of Object.keys(doc)) {
    const kebab = key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
    if (!FILE_KEYS.has(kebab)) throw optionError('config', `${path}: unknown option "${key}"`);
  }
  return doc as Record<string, unknown>;
}

/**
 * WEFTD_* variables, with flanneld's FLANNELD_* filling those not set, so a
 * flannel unit's environment works unchanged.
 */
export function weftdEnvironment(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) {
    // flanneld skips an empty variable (flagutil.SetFlagsFromEnv): the flag keeps its default.
    if (k.startsWith('FLANNELD_') && v !== '' && env[`WEFTD_${k.slice(9)}`] === undefined) out[`WEFTD_${k.slice(9)}`] = envValue(k, v);
    if (k.startsWith('WEFTD_')) out[k] = envValue(k, v);
  }
  return out;
}

/** A boolean flag's variable read as Go reads it: FLANNELD_IP_MASQ=1 means true, as in flanneld (yargs would read false). */
function envValue(variable: string, value: string | undefined): string | undefined {
  const name = variable.slice(variable.indexOf('_') + 1).toLowerCase().replace(/_/g, '-');
  if (!BOOLEAN_FLAGS.has(name)) return value;
  const b = goBool(value ?? '');
  if (b === null) throw optionError(name, `${variable}="${value}" is not a boolean (true, false, 1, 0, t, f)`);
  return String(b);
}

/** Turns yargs' parsed arguments into validated WeftdOptions; throws WEFT_ERR_OPTION_INVALID naming the option. */
export function validateWeftdOptions(a: Record<string, unknown>): WeftdOptions {
  const str = (k: string) => (a[k] === undefined || a[k] === '' ? undefined : String(a[k]));
  const num = (k: string, min: number, max: number) => {
    const v = Number(a[k]);
    if (a[k] === null || !Number.isFinite(v) || v < min || v > max) throw optionError(k, `must be a number from ${min} to ${max}`);
    return v;
  };
  const list = (k: string) => ([] as unknown[]).concat(a[k] ?? []).flatMap((x) => String(x).split(',')).map((s) => s.trim()).filter(Boolean);

  const etcdEndpoints = list('etcd-endpoints');
  if (etcdEndpoints.length === 0) throw optionError('etcd-endpoints', 'at least one endpoint is required');
  for (const ep of etcdEndpoints) {
    if (!/^https?:\/\/[^\s/]+(:\d+)?\/?$/.test(ep)) throw optionError('etcd-endpoints', `"${ep}" is not an http(s)://host:port URL`);
  }
  const ifaceRegex = list('iface-regex');
  for (const r of ifaceRegex) {
    try {
      new RegExp(r);
    } catch {
      throw optionError('iface-regex', `"${r}" is not a valid regular expression`);
    }
  }
  const publicIp = str('public-ip');
  if (publicIp !== undefined && canonicalIPv4(publicIp) === null) throw optionError('public-ip', `"${publicIp}" is not an IPv4 address`);
  const publicIpv6Given = str('public-ipv6');
  const publicIpv6 = publicIpv6Given === undefined ? undefined : canonicalIPv6(publicIpv6Given);
  if (publicIpv6 === null) throw optionError('public-ipv6', `"${publicIpv6Given}" is not an IPv6 address`);
  const ifaceCanReachGiven = str('iface-can-reach');
  // IPv6 in RFC 5952 form, as the kernel port prints the routes it is looked up in.
  const ifaceCanReach = ifaceCanReachGiven === undefined ? undefined : (canonicalIPv4(ifaceCanReachGiven) ?? canonicalIPv6(ifaceCanReachGiven));
  if (ifaceCanReach === null) throw optionError('iface-can-reach', `"${ifaceCanReachGiven}" is not an IPv4 or IPv6 address`);
  const ignoredFlags = flanneldOnlyFlags(a);
  const healthzIp = str('healthz-ip') ?? D['healthz-ip'];
  if (!ipValue(healthzIp)) throw optionError('healthz-ip', `"${healthzIp}" is not an IP address`);
  const subnetLeaseTtl = num('subnet-lease-ttl', 10, 7 * 86400);
  const subnetLeaseRenewMargin = num('subnet-lease-renew-margin', 1, 1439);
  const bridge = str('bridge');
  if (bridge !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(bridge)) throw optionError('bridge', `"${bridge}" is not a valid interface name`);
  if (Boolean(str('etcd-certfile')) !== Boolean(str('etcd-keyfile'))) throw optionError('etcd-certfile', 'etcd-certfile and etcd-keyfile must be given together');
  if (Boolean(str('etcd-username')) !== Boolean(str('etcd-password'))) throw optionError('etcd-username', 'etcd-username and etcd-password must be given together');
  const routeNexthops = str('route-nexthops') ?? D['route-nexthops'];
  if (!(ROUTE_NEXTHOPS_MODES as readonly string[]).includes(routeNexthops)) throw optionError('route-nexthops', `must be one of ${ROUTE_NEXTHOPS_MODES.join(', ')}`);

  return {
    etcdEndpoints,
    etcdPrefix: str('etcd-prefix') ?? D['etcd-prefix'],
    etcdCafile: str('etcd-cafile'),
    etcdCertfile: str('etcd-certfile'),
    etcdKeyfile: str('etcd-keyfile'),
    etcdUsername: str('etcd-username'),
    etcdPassword: str('etcd-password'),
    iface: list('iface'),
    ifaceRegex,
    ifaceCanReach,
    publicIp,
    publicIpv6,
    subnetFile: str('subnet-file') ?? D['subnet-file'],
    subnetLeaseRenewMargin,
    subnetLeaseTtl,
    ipMasq: a['ip-masq'] === true,
    ipMasqFullyRandomDisable: a['ip-masq-fully-random-disable'] === true,
    iptablesForwardRules: a['iptables-forward-rules'] !== false,
    iptablesResync: num('iptables-resync', 1, 3600),
    healthzIp,
    healthzPort: num('healthz-port', 0, 65535),
    stateDir: str('state-dir') ?? D['state-dir'],
    logLevel: klogLevel(a) ?? str('log-level') ?? D['log-level'],
    logFormat: a['log-format'] === 'json' ? 'json' : 'text',
    resyncInterval: num('resync-interval', 0.1, 3600),
    bridge,
    probePort: num('probe-port', 1, 65535),
    probeInterval: num('probe-interval', 0, 3600),
    probeSample: num('probe-sample', 1, 1000),
    ipBlackholeRoute: a['ip-blackhole-route'] === true,
    ignoredFlags,
    routeNexthops: routeNexthops as RouteNexthopsMode,
  };
}

/**
 * flanneld's flags that have no effect in weft, each with why; throws for the
 * Kubernetes subnet manager's, which would change what the daemon is.
 */
function flanneldOnlyFlags(a: Record<string, unknown>): string[] {
  const given = (k: string) => a[k] !== undefined && a[k] !== '';
  for (const k of KUBE_FLAGS) {
    // --kube-subnet-mgr=false is flanneld's etcd mode, which is weft's only mode.
    if (!given(k) || (k === 'kube-subnet-mgr' && a[k] === false)) continue;
    throw optionError(
      k,
      'weft keeps its subnet leases in etcd only; this flag belongs to flanneld\'s Kubernetes subnet manager (--kube-subnet-mgr), ' +
        'which weft does not implement: keep flanneld (kube-flannel) there, or put the network config in etcd (<etcd-prefix>/config) and drop the flag',
    );
  }
  const ignored: string[] = [];
  if (given('vmodule')) ignored.push('--vmodule: klog\'s per-file verbosity; weft logs by level (--log-level, or -v)');
  if (given('log-backtrace-at')) ignored.push('--log_backtrace_at: klog\'s stack traces; weft logs errors with their stable WEFT_ERR_* code');
  return ignored;
}

/**
 * flanneld's `-v=N` as a log level, unless --log-level says otherwise: flannel
 * logs each lease event at 0, per-subnet detail at 2, netlink calls at 4 and
 * iptables payloads at 6.
 */
function klogLevel(a: Record<string, unknown>): string | undefined {
  if (a['v'] === undefined || (a['log-level'] !== undefined && a['log-level'] !== D['log-level'])) return undefined;
  const v = Number(a['v']);
  if (!Number.isInteger(v) || v < 0) throw optionError('v', `"${String(a['v'])}" is not a verbosity (0, 1, 2, ...)`);
  return v === 0 ? 'info' : v <= 2 ? 'verbose' : v <= 5 ? 'debug' : 'silly';
}

/**
 * Parses weftd's command line, in Go's flag syntax as flanneld's or in
 * yargs' (goStyleArgs), with precedence flag > env (WEFTD_*, then
 * FLANNELD_*) > config file (--config) > default.
 */
export async function parseWeftdOptions(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<WeftdOptions> {
  const args = await withEnvironment(weftdEnvironment(env), () =>
    declareWeftdOptions(yargs(goStyleArgs(argv)))
      .env('WEFTD')
      .config('config', 'YAML or JSON file whose keys are the long option names', readConfigFile)
      .strict()
      .exitProcess(false)
      .fail((msg, err) => {
        if (err instanceof WeftError) throw err;
        const text = (msg ?? err?.message ?? 'invalid arguments').replace(/\s+/g, ' ');
        // yargs re-wraps errors thrown by the config reader; keep their text as it was.
        throw new WeftError('WEFT_ERR_OPTION_INVALID', text.startsWith('invalid option --') ? text : `invalid arguments: ${text}`);
      })
      .parse(),
  );
  return validateWeftdOptions(args as Record<string, unknown>);
}

/**
 * yargs-parser captured the process.env object when it was loaded, so the
 * mapped WEFTD_* variables are set on that object for the duration of the
 * parse, and the previous WEFTD_* values restored afterwards.
 */
export async function withEnvironment<T>(env: NodeJS.ProcessEnv, fn: () => T | Promise<T>): Promise<T> {
  const saved = Object.entries(process.env).filter(([k]) => k.startsWith('WEFTD_'));
  for (const [k] of saved) delete process.env[k];
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(env)) delete process.env[k];
    for (const [k, v] of saved) process.env[k] = v;
  }
}

export function optionError(option: string, rule: string): WeftError {
  return Object.assign(new WeftError('WEFT_ERR_OPTION_INVALID', `invalid option --${option}: ${rule}`), { option });
}
