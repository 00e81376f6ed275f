'use strict';
/**
 * The body of dist/bin/weft-cni.cjs (scripts/bundle.mjs writes it as a Node
 * hashbang line, this file, and a `launchStandalone` call that carries the
 * bundle and its V8 code cache as string literals). Unlike weftd's launcher
 * it reads no file beside it: a CNI plugin is installed by copying it into
 * the runtime's bin directory under another name (`flannel`, `weft`), and a
 * copy takes only itself along.
 *
 * Written to run as either kind of module: a copy without the `.cjs`
 * extension is an ES module when a package.json with `"type": "module"` lies
 * above it. So no `require`, `module` or `__filename` here: Node's modules
 * come from process.getBuiltinModule and the path from process.argv[1].
 */
function launchStandalone(source, cacheBase64) {
  const vm = process.getBuiltinModule('node:vm');
  const { createRequire, wrap } = process.getBuiltinModule('node:module');
  const { dirname, resolve } = process.getBuiltinModule('node:path');
  const file = resolve(process.argv[1]);
  const cachedData = cacheBase64 ? Buffer.from(cacheBase64, 'base64') : undefined;
  const script = new vm.Script(wrap(source), { filename: file, cachedData });
  globalThis.__weftCodeCache = cachedData === undefined ? 'absent' : script.cachedDataRejected ? 'rejected' : 'used';
  const mod = { exports: {}, filename: file, id: '.', loaded: false };
  script.runInThisContext()(mod.exports, createRequire(file), mod, file, dirname(file));
}
