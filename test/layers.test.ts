import { expect } from 'chai';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root: this file runs compiled as dist/test/layers.test.js. */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * Which layer may import which: data flows etcd -> lease -> backend -> kernel,
 * with daemon/ and weftctl/ on top. weftctl/ reads a node only through the
 * status contract (daemon/status.ts), and installs the CNI plugin through
 * cni/install.ts. cni/ (the CNI plugin, on every pod's start path) reads the
 * subnet file and nothing else of weft.
 */
const ALLOWED: Record<string, readonly string[]> = {
  common: [],
  kernel: ['common'],
  lease: ['common'],
  backend: ['common', 'kernel', 'lease'],
  daemon: ['common', 'kernel', 'lease', 'backend'],
  weftctl: ['common', 'kernel', 'lease', 'backend', 'daemon/status.ts', 'cni/install.ts'],
  cni: ['common', 'lease'],
};

function sources(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Every relative import of a source file, as a path from the repository root (`.ts`). */
function imports(file: string): string[] {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g)].map((m) => m[1] as string);
  return specs.map((s) => normalize(join(dirname(file), s)).replace(/\.js$/, '.ts'));
}

describe('layers: no module imports upwards', () => {
  for (const [layer, allowed] of Object.entries(ALLOWED)) {
    it(`${layer}/ imports only ${allowed.length ? allowed.join(', ') : 'itself'}`, () => {
      const bad: string[] = [];
      for (const file of sources(layer)) {
        for (const target of imports(file)) {
          const top = target.split('/')[0] as string;
          if (top === layer || allowed.includes(top) || allowed.includes(target)) continue;
          bad.push(`${file} -> ${relative(ROOT, join(ROOT, target))}`);
        }
      }
      expect(bad).to.deep.equal([]);
    });
  }

  it('the check sees real imports (backend/ does import kernel/)', () => {
    const seen = sources('backend').flatMap(imports).filter((t) => t.startsWith('kernel/'));
    expect(seen.length).to.be.greaterThan(0);
  });
});
