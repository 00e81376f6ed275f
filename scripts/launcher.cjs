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

function launch(name) {
  const bundle = join(__dirname, `${name}.cjs`);
  const cachedData = readCache(join(__dirname, `${name}.cache`));
  const script = compileBundle(bundle, cachedData);
  globalThis.__weftCodeCache = cachedData === null ? 'absent' : script.cachedDataRejected ? 'rejected' : 'used';
  runBundle(script, bundle);
}

module.exports = { compileBundle, runBundle, launch };
