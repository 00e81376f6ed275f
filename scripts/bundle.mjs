#!/usr/bin/env node
/**
 * Bundles weftd, weftctl and weft-cni, each into one file under dist/bin/,
 * from tsc's output, and gives each a V8 code cache. Why: Node 20 spends most
 * of weftd's start-up loading code. One minified file instead of hundreds of
 * module files loads faster and takes less memory; the code cache then spares
 * compiling it (Node 20 has no module compile cache of its own).
 *
 * For each program:
 * - `dist/bin/<name>-bundle.cjs`: the program and its dependencies (esbuild).
 *   CommonJS, because a code cache can be handed to `vm.Script` but not to
 *   Node's ES module loader.
 * - `dist/bin/<name>-bundle.cache`: V8's code cache of the bundle, made by
 *   loading it once here with the program's Node flags (V8 rejects a cache
 *   made under other flags, or by another Node version).
 * - `dist/bin/<name>.cjs`: the executable. Its first line starts Node with the
 *   program's flags; the rest compiles the bundle with the cache
 *   (scripts/launcher.cjs). A missing or rejected cache only costs the compile.
 *   Run as `node dist/bin/<name>.cjs`, the launcher re-executes itself with
 *   the flags first, so every way of starting it gets the same process.
 *
 * Beside them, `dist/bin/weft-listener`: weftd's kernel listener, a small C
 * program (kernel/netlink/listener.c; kernel/netlink/monitor.ts says why),
 * compiled here with the system's C compiler (`cc`, or $CC).
 *
 * weft-cni is standalone: `dist/bin/weft-cni.cjs` is the whole program, the
 * launcher (scripts/launcher-standalone.js) with the bundle and its cache as
 * string literals, and nothing beside it. A CNI plugin is installed by copying
 * it into the runtime's bin directory under any name, or by a symlink; either
 * works with one file. The bundle and cache files are still written (the
 * cache is made from them) but the executable does not read them.
 *
 * What a bundle cannot carry is handled here:
 * - `netlink` loads a native addon, so it stays in node_modules (external).
 *   So does `raw-socket` (daemon/icmp.ts, ICMP peer probes): its addon is
 *   built by `npm ci` (node-gyp) into node_modules/raw-socket/build/, where
 *   its own index.js finds it; daemon/icmp.ts loads it on first use with a
 *   require relative to the bundle, and probes with UDP when that fails.
 *   So does `koffi` (sd_notify, and the launcher's execve on Node 20), which
 *   is required through createRequire, which esbuild leaves alone.
 * - etcd3 reads its .proto files at `${__dirname}/../proto/` at run time, so
 *   they are copied to dist/proto/, next to dist/bin/.
 * - `import.meta.url` (weft's own code locates package.json and the netlink
 *   package with it) becomes the bundle's file URL.
 *
 * And what a bundle should not carry eagerly: the modules that only lay
 * out help text (see lazyHelpModules), and the development build of
 * winston's `@dabh/diagnostics` (see PRODUCTION).
 */
import { build } from 'esbuild';
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, '..', 'dist');
const require = createRequire(import.meta.url);

/**
 * Node flags each program runs with (its executable's first line). weftd is
 * a long-running daemon that should stay small: a 1 MB young generation,
 * instead of one that grows to V8's 16 MB, keeps its resident memory with
 * many peers clearly lower, costs start-up nothing and a repair pass a
 * little. Not --optimize-for-size: it saves a little more memory but makes
 * every repair pass (bench/kernel-fullpass.ts) and churn several times
 * dearer in CPU.
 *
 * And environment (glibc malloc tunables; other C libraries ignore them).
 * glibc raises its mmap threshold to the size of each large block freed (up
 * to 32 MB), so after start-up's large transient buffers, blocks of several
 * MB come from malloc's heaps and their pages stay there. A fixed 128 KiB
 * threshold keeps such blocks in their own mappings, returned when freed.
 * Fixing it also pins the trim threshold at 128 KiB, which trimmed and
 * refaulted the arenas of V8's worker threads at every collection (more
 * madvise calls, more idle CPU); 1 MB avoids that, and two arenas for all
 * threads instead of one per thread keep the saving. To weigh a flag or a
 * tunable again, run the start-up benchmark (`npm run bench -- --only
 * startup`, weftd's resident memory and idle CPU) with and without it.
 */
const programs = {
  weftd: {
    entry: 'daemon/main.js',
    nodeFlags: ['--max-semi-space-size=1'],
    env: { MALLOC_MMAP_THRESHOLD_: '131072', MALLOC_TRIM_THRESHOLD_: '1048576', MALLOC_ARENA_MAX: '2' },
  },
  weftctl: { entry: 'weftctl/main.js', nodeFlags: [], env: {} },
  // The CNI plugin runs on every pod's start and exits: no flags (nothing for them to tune in a run this short).
  'weft-cni': { entry: 'cni/main.js', nodeFlags: [], env: {}, standalone: true, cacheRun: cniAddRun },
};

/**
 * The run that weft-cni's code cache is made from: an ADD, the command a
 * node runs on every pod's start, in a sandbox that stands in for the node
 * (a subnet file, a dataDir and a delegate `bridge` that prints an empty
 * result, all in a temporary directory). The cache then holds the functions
 * of the ADD path (parsing the config and the subnet file, building and
 * saving the delegate config, running the delegate), which a cache made from
 * VERSION would leave to be compiled on each ADD. DEL and CHECK share most
 * of them. The node is dual-stack so that the IPv6 path is in the cache
 * too.
 */
function cniAddRun() {
  const dir = mkdtempSync(join(tmpdir(), 'weft-cni-cache-'));
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'bin', 'bridge'), "#!/bin/sh\ncat >/dev/null\necho '{}'\n", { mode: 0o755 });
  writeFileSync(
    join(dir, 'subnet.env'),
    'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:5::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n',
  );
  const conf = { cniVersion: '1.0.0', name: 'cbr0', type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true }, subnetFile: join(dir, 'subnet.env'), dataDir: join(dir, 'data') };
  return {
    env: { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'weft-cni-cache', CNI_NETNS: '/proc/self/ns/net', CNI_IFNAME: 'eth0', CNI_PATH: join(dir, 'bin') },
    args: [],
    input: JSON.stringify(conf),
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/**
 * Loads a bundle the way its launcher does, runs it once in a way that
 * opens no socket and touches no kernel state or file of the machine
 * (`<program> --version`; weft-cni an ADD in a sandbox, see cniAddRun), and
 * writes the code cache on exit. Made after the run, the cache also holds
 * the functions that the run compiled, not only the top level.
 */
const CACHE_MAKER = `
const { writeFileSync } = require('node:fs');
const { compileBundle, runBundle } = require(${JSON.stringify(join(here, 'launcher.cjs'))});
const [bundle, cacheFile, ...args] = process.argv.slice(1);
const script = compileBundle(bundle, null);
process.once('exit', () => writeFileSync(cacheFile, script.createCachedData()));
process.argv = [process.argv[0], bundle, ...args];
runBundle(script, bundle);
`;

// Before the bundles: making a code cache loads etcd3, which reads these at load.
const protoDir = join(dirname(require.resolve('etcd3/package.json')), 'proto');
mkdirSync(join(dist, 'proto'), { recursive: true });
cpSync(protoDir, join(dist, 'proto'), { recursive: true });

/**
 * Modules that yargs uses only to lay out --help and usage errors, which a
 * daemon almost never prints, but which cost every start to load:
 * - `cliui` (with wrap-ansi and strip-ansi), the layout itself: a visible
 *   share of weftd's loading in a CPU profile;
 * - `string-width`, which also cliui's stand-in would load, builds an
 *   `Intl.Segmenter` and Unicode property regexes as it loads, which loads
 *   ICU data: start-up time and resident memory.
 * Each import of one gets a stand-in for its default export (a function)
 * that loads the real module on its first call.
 */
const LAZY_HELP_MODULES = ['cliui', 'string-width'];
const lazyHelpModules = {
  name: 'lazy-help-modules',
  setup(b) {
    const filter = new RegExp(`^(${LAZY_HELP_MODULES.join('|')})$`);
    b.onResolve({ filter }, async ({ path: name, resolveDir, kind, pluginData }) => {
      if (pluginData?.real) return undefined;
      const real = await b.resolve(name, { resolveDir, kind, pluginData: { real: true } });
      if (real.errors.length > 0) return { errors: real.errors };
      return { path: real.path, namespace: 'lazy-help-module' };
    });
    b.onLoad({ filter: /.*/, namespace: 'lazy-help-module' }, ({ path }) => ({
      contents: `let real;\nexport default function lazyDefault(...args) {\n  real ??= require(${JSON.stringify(path)}).default;\n  return real(...args);\n}\n`,
      resolveDir: dirname(path),
      loader: 'js',
    }));
  },
};

/**
 * `process.env.NODE_ENV` as the bundle sees it. The one module in either
 * bundle that reads it is winston's `@dabh/diagnostics`, whose development
 * build (colorspace, kuler, ...: more modules to load) prints winston's own
 * debugging for DEBUG=winston:*; its production build is a no-op.
 */
const PRODUCTION = { 'process.env.NODE_ENV': '"production"' };

const launcherSource = readFileSync(join(here, 'launcher.cjs'), 'utf8');
const standaloneSource = readFileSync(join(here, 'launcher-standalone.js'), 'utf8');
mkdirSync(join(dist, 'bin'), { recursive: true });
execFileSync(process.env.CC || 'cc', ['-O2', '-Wall', '-Wextra', '-o', join(dist, 'bin', 'weft-listener'), join(here, '..', 'kernel', 'netlink', 'listener.c')], { stdio: 'inherit' });
// ES module bundles of the same names, left in dist/ by an older build's layout, are never run: remove them.
for (const name of Object.keys(programs)) rmSync(join(dist, 'bin', `${name}.mjs`), { force: true });

const versionRun = () => ({ env: {}, args: ['--version'], input: '', cleanup: () => {} });

for (const [name, { entry, nodeFlags, env, standalone = false, cacheRun = versionRun }] of Object.entries(programs)) {
  const bundle = join(dist, 'bin', `${name}-bundle.cjs`);
  const cache = join(dist, 'bin', `${name}-bundle.cache`);
  await build({
    entryPoints: [join(dist, entry)],
    outfile: bundle,
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    minify: true,
    // Error messages and stack traces keep their names.
    keepNames: true,
    // Escaped non-ASCII (esbuild's default, stated because the launcher relies on it).
    charset: 'ascii',
    // A standalone program takes nothing from node_modules along.
    external: standalone ? [] : ['netlink', 'raw-socket'],
    plugins: [lazyHelpModules],
    define: { 'import.meta.url': '__weftBundleUrl', ...PRODUCTION },
    banner: { js: "var __weftBundleUrl = require('node:url').pathToFileURL(__filename).href;" },
    logLevel: 'warning',
  });
  // The entry's hashbang is the launcher's business.
  const code = readFileSync(bundle, 'utf8').replace(/^#![^\n]*\n/, '');
  // The launcher reads the bundle as latin1, which is only right for ASCII (esbuild escapes the rest).
  const nonAscii = code.search(/[^\x00-\x7f]/);
  if (nonAscii >= 0) throw new Error(`${bundle}: non-ASCII character at offset ${nonAscii}; the launcher reads bundles as latin1`);
  writeFileSync(bundle, code);

  rmSync(cache, { force: true });
  const run = cacheRun();
  try {
    execFileSync(process.execPath, [...nodeFlags, '-e', CACHE_MAKER, bundle, cache, ...run.args], {
      input: run.input,
      stdio: ['pipe', 'ignore', 'inherit'],
      env: { ...process.env, ...run.env },
    });
  } finally {
    run.cleanup();
  }

  // `env -S` passes the flags and sets the environment too.
  const command = [...Object.entries(env).map(([k, v]) => `${k}=${v}`), 'node', ...nodeFlags];
  const hashbang = command.length > 1 ? `#!/usr/bin/env -S ${command.join(' ')}` : '#!/usr/bin/env node';
  const launcher = join(dist, 'bin', `${name}.cjs`);
  const body = standalone
    ? `${standaloneSource}\nlaunchStandalone(${JSON.stringify(code)}, ${JSON.stringify(readFileSync(cache).toString('base64'))});\n`
    : `${launcherSource}\nmodule.exports.launch(${JSON.stringify(`${name}-bundle`)}, ${JSON.stringify({ nodeFlags, env })});\n`;
  writeFileSync(launcher, `${hashbang}\n${body}`);
  chmodSync(launcher, 0o755);
}

