'use strict';
/**
 * The body of dist/bin/weftd.cjs and dist/bin/weftctl.cjs (scripts/bundle.mjs
 * writes each as a Node hashbang line, this file, and a `launch` call).
 * Compiles the program's bundle with the V8 code cache made at build time,
 * which spares parsing and compiling the whole bundle at every start, then
 * runs it as Node would run a CommonJS main module.
 *
 * The cache is only read here. When V8 rejects it (another Node version or
 * other V8 flags), or it is missing, the bundle compiles as it would without
 * it. `globalThis.__weftCodeCache` says which happened ('used', 'rejected',
 * 'absent'); weftd names it in its first log line.
 *
 * Started as `node dist/bin/weftd.cjs` (the hashbang line then plays no
 * part), the process lacks the program's Node flags and malloc settings,
 * and V8 rejects a cache made under other flags. So the launcher first
 * re-executes the same process (execve: same PID, which systemd and
 * sd_notify rely on) with them, before loading anything; the executable
 * itself already has them and goes straight on.
 */
const { readFileSync } = require('node:fs');
const { createRequire, wrap } = require('node:module');
const { dirname, join } = require('node:path');
const vm = require('node:vm');

/**
 * The bundle as a vm.Script in Node's CommonJS wrapper, compiled with
 * `cachedData` when there is one. The bundle is ASCII (the build checks), so
 * it is read as latin1: the same string without the cost of UTF-8 decoding
 * a large file at every start.
 */
function compileBundle(bundle, cachedData) {
  return new vm.Script(wrap(readFileSync(bundle, 'latin1')), { filename: bundle, cachedData: cachedData ?? undefined });
}

/** Runs the compiled bundle as the main module. */
function runBundle(script, bundle) {
  const mod = { exports: {}, filename: bundle, id: '.', loaded: false };
  script.runInThisContext()(mod.exports, createRequire(bundle), mod, bundle, dirname(bundle));
}

function readCache(file) {
  try {
    return readFileSync(file);
  } catch {
    return null;
  }
}

const RELAUNCH_MARK = 'WEFT_RELAUNCHED';

/**
 * Replaces this process with `file` (argv, env), keeping its PID. Node 22.15+
 * has process.execve; on older Node the libc call goes through koffi (a
 * dependency of weft's, loaded only here and for sd_notify). Throws if the
 * exec fails; the process then carries on as it is.
 */
function execve(file, args, env) {
  if (typeof process.execve === 'function') {
    process.execve(file, args, env);
    return;
  }
  const koffi = require('koffi');
  const libc = koffi.load('libc.so.6');
  // Node marks its stdio close-on-exec: the new image would find them closed (and Node would put /dev/null there).
  const fcntl = libc.func('int fcntl(int fd, int cmd, ...)');
  const F_SETFD = 2;
  for (const fd of [0, 1, 2]) fcntl(fd, F_SETFD, 'int', 0);
  const exec = libc.func('int execve(const char *path, const char **argv, const char **envp)');
  exec(file, [...args, null], [...Object.entries(env).map(([k, v]) => `${k}=${v}`), null]);
  throw new Error(`execve failed with errno ${koffi.errno()}`);
}

/**
 * Re-executes this process with the Node flags and environment that are
 * missing from it (a flag counts as given with any value; an environment
 * variable already set is left as the user set it). Returns what happened
 * for the first log line: null when nothing was missing or after a relaunch,
 * else why the relaunch failed.
 */
function relaunchWith(nodeFlags, env) {
  if (process.env[RELAUNCH_MARK] !== undefined) {
    delete process.env[RELAUNCH_MARK];
    return null;
  }
  const given = new Set(process.execArgv.map((a) => a.split('=')[0]));
  const flags = nodeFlags.filter((f) => !given.has(f.split('=')[0]));
  const vars = Object.entries(env).filter(([k]) => process.env[k] === undefined);
  if (flags.length === 0 && vars.length === 0) return null;
  try {
    execve(process.execPath, [process.execPath, ...process.execArgv, ...flags, __filename, ...process.argv.slice(2)], {
      ...process.env,
      ...Object.fromEntries(vars),
      [RELAUNCH_MARK]: '1',
    });
  } catch (err) {
    return `relaunch with ${[...flags, ...vars.map(([k]) => k)].join(' ')} failed: ${err.message}`;
  }
  return null;
}

function launch(name, { nodeFlags = [], env = {} } = {}) {
  const relaunchFailure = relaunchWith(nodeFlags, env);
  if (relaunchFailure) globalThis.__weftLaunchNote = relaunchFailure;
  const bundle = join(__dirname, `${name}.cjs`);
  const cachedData = readCache(join(__dirname, `${name}.cache`));
  const script = compileBundle(bundle, cachedData);
  globalThis.__weftCodeCache = cachedData === null ? 'absent' : script.cachedDataRejected ? 'rejected' : 'used';
  runBundle(script, bundle);
}

module.exports = { compileBundle, runBundle, launch };
