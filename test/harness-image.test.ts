/**
 * The pause image the CRI suites import (test/harness/image.ts): the tar
 * writer's archives read back with GNU tar, and the OCI image layout's
 * digests, platform and name are the ones containerd's importer checks.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isWeftError } from '../common/errors.js';
import { tempDir } from './harness/at-exit.js';
import { buildPauseImage, ociArch, PAUSE_IMAGE, tar } from './harness/image.js';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function untar(archive: Buffer, into: string): string[] {
  const file = join(into, 'archive.tar');
  writeFileSync(file, archive);
  const out = join(into, 'x');
  mkdirSync(out);
  execFileSync('tar', ['-xf', file, '-C', out]);
  return execFileSync('tar', ['-tvf', file, '--numeric-owner'], { encoding: 'utf8' }).trim().split('\n');
}

describe('harness image: tar writer and OCI pause image', () => {
  it('writes ustar archives GNU tar reads: files, directories, symlinks, modes, owner root, mtime 0', () => {
    const dir = tempDir('weft-tar-');
    const data = Buffer.from('x'.repeat(700)); // spans two blocks
    const listing = untar(
      tar([
        { name: 'd/', type: 'dir', mode: 0o755 },
        { name: 'd/f', type: 'file', mode: 0o640, data },
        { name: 'd/l', type: 'symlink', mode: 0o777, target: 'f' },
        { name: 'e', type: 'file', mode: 0o600 },
      ]),
      dir,
    );
    expect(listing).to.have.length(4);
    expect(listing[0]).to.match(/^drwxr-xr-x 0\/0 +0 1970-01-01 00:00 d\/$/);
    expect(listing[1]).to.match(/^-rw-r----- 0\/0 +700 1970-01-01 00:00 d\/f$/);
    expect(listing[2]).to.match(/^lrwxrwxrwx 0\/0 +0 1970-01-01 00:00 d\/l -> f$/);
    expect(listing[3]).to.match(/^-rw------- 0\/0 +0 1970-01-01 00:00 e$/);
    expect(readFileSync(join(dir, 'x', 'd', 'f')).equals(data)).to.equal(true);
    expect(readlinkSync(join(dir, 'x', 'd', 'l'))).to.equal('f');
  });

  it('refuses names that do not fit the ustar name field', () => {
    let err: unknown;
    try {
      tar([{ name: 'n'.repeat(100), type: 'file', mode: 0o644 }]);
    } catch (e) {
      err = e;
    }
    expect(isWeftError(err, 'WEFT_ERR_HARNESS')).to.equal(true);
  });

  it('packs an OCI image layout whose digests, platform, name and entrypoint hold together', () => {
    const dir = tempDir('weft-oci-');
    const fakeBusybox = join(dir, 'busybox');
    writeFileSync(fakeBusybox, 'not really busybox');
    const image = buildPauseImage(join(dir, 'pause.tar'), PAUSE_IMAGE, fakeBusybox);
    untar(readFileSync(image.file), dir);
    const root = join(dir, 'x');
    const blob = (digest: string) => {
      const b = readFileSync(join(root, 'blobs', 'sha256', digest.replace(/^sha256:/, '')));
      expect(`sha256:${sha256(b)}`, digest).to.equal(digest);
      return b;
    };
    expect(JSON.parse(readFileSync(join(root, 'oci-layout'), 'utf8'))).to.deep.equal({ imageLayoutVersion: '1.0.0' });
    const index = JSON.parse(readFileSync(join(root, 'index.json'), 'utf8'));
    expect(index.manifests).to.have.length(1);
    const entry = index.manifests[0];
    expect(entry.digest).to.equal(image.digest);
    expect(entry.platform).to.deep.equal({ architecture: ociArch(), os: 'linux' });
    expect(entry.annotations['io.containerd.image.name']).to.equal(PAUSE_IMAGE);
    const manifest = JSON.parse(blob(image.digest).toString());
    expect(manifest.config.digest).to.equal(image.configDigest);
    const config = JSON.parse(blob(image.configDigest).toString());
    expect(config.config.Entrypoint).to.deep.equal(['/bin/sleep', '2147483647']);
    expect([config.architecture, config.os]).to.deep.equal([ociArch(), 'linux']);
    // An uncompressed layer: its digest is also its diff id.
    expect(manifest.layers.map((l: { digest: string }) => l.digest)).to.deep.equal(config.rootfs.diff_ids);
    const layerDir = join(dir, 'layer');
    mkdirSync(layerDir);
    const listing = untar(blob(manifest.layers[0].digest), layerDir);
    expect(listing.some((l) => / bin\/busybox$/.test(l))).to.equal(true);
    expect(readlinkSync(join(layerDir, 'x', 'bin', 'sleep'))).to.equal('busybox');
    expect(readFileSync(join(layerDir, 'x', 'bin', 'busybox'), 'utf8')).to.equal('not really busybox');
    // The same input gives the same image: a second import adds nothing to the content store.
    expect(buildPauseImage(join(dir, 'again.tar'), PAUSE_IMAGE, fakeBusybox).digest).to.equal(image.digest);
  });

  it('says which package is missing when there is no busybox', () => {
    let err: unknown;
    try {
      buildPauseImage(join(tempDir('weft-oci-'), 'p.tar'), PAUSE_IMAGE, '/nonexistent/busybox');
    } catch (e) {
      err = e;
    }
    expect(isWeftError(err, 'WEFT_ERR_HARNESS')).to.equal(true);
    expect((err as Error).message).to.include('busybox-static');
  });
});
