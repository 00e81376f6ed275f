#!/usr/bin/env node
/**
 * Bundles weftd and weftctl, each into one file under dist/bin/, from tsc's
 * output. Why: Node 20 spends most of weftd's start-up resolving and compiling
 * ~900 files of dependencies (etcd3 and grpc-js alone take a quarter of a
 * second); one minified file loads in a fraction of that and takes less memory.
 *
 * What a bundle cannot carry is handled here:
 * - `netlink` loads a native addon, so it stays in node_modules (external).
 * - etcd3 reads its .proto files at `${__dirname}/../proto/` at run time, so
 *   they are copied to dist/proto/, next to dist/bin/.
 * - CommonJS dependencies inside an ES module bundle need `require`,
 *   `__filename` and `__dirname`, which the banner defines.
 */
import { build } from 'esbuild';
import { chmodSync, cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dist = join(root, 'dist');
const require = createRequire(import.meta.url);

const banner = [
  "import { createRequire as __weftCreateRequire } from 'node:module';",
  "import { fileURLToPath as __weftFileURLToPath } from 'node:url';",
  "import { dirname as __weftDirname } from 'node:path';",
  'const require = __weftCreateRequire(import.meta.url);',
  'const __filename = __weftFileURLToPath(import.meta.url);',
  'const __dirname = __weftDirname(__filename);',
].join('\n');

/**
 * Node flags each program runs with when started as an executable (the
 * hashbang line). weftd is a long-running daemon that should stay small:
 * a 1 MB young generation instead of one growing to 16 MB keeps RSS at 5000
 * peers 132 -> 107 MB (same session, `npm run bench -- --only startup`), with
 * start-up no slower and a repair pass ~10 % dearer. Not --optimize-for-size:
 * another 10 MB less, but every repair pass 2.3x dearer (112 -> 300 ms at
 * 5000 peers, bench/kernel-fullpass.ts) and churn CPU 7-16 % higher.
 */
const entries = {
  weftd: { entry: 'daemon/main.js', nodeFlags: ['--max-semi-space-size=1'] },
  weftctl: { entry: 'daemon/weftctl.js', nodeFlags: [] },
};
for (const [name, { entry, nodeFlags }] of Object.entries(entries)) {
  const outfile = join(dist, 'bin', `${name}.mjs`);
  await build({
    entryPoints: [join(dist, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    minify: true,
    // Error messages and stack traces keep their names.
    keepNames: true,
    external: ['netlink'],
    banner: { js: banner },
    logLevel: 'warning',
  });
  // The entry's own `#!/usr/bin/env node` is kept by esbuild; `env -S` passes the flags too.
  const hashbang = nodeFlags.length ? `#!/usr/bin/env -S node ${nodeFlags.join(' ')}` : '#!/usr/bin/env node';
  const code = readFileSync(outfile, 'utf8');
  writeFileSync(outfile, code.replace(/^#![^\n]*/, hashbang));
  chmodSync(outfile, 0o755);
}

const protoDir = join(dirname(require.resolve('etcd3/package.json')), 'proto');
mkdirSync(join(dist, 'proto'), { recursive: true });
cpSync(protoDir, join(dist, 'proto'), { recursive: true });
