/**
 * A container image built on this machine, for runtimes that cannot reach a
 * registry: one layer with Debian's static busybox, packed as an OCI image
 * layout tarball (what `ctr images import` reads). Its entrypoint sleeps for
 * ever, which is all a pod sandbox's "pause" container has to do.
 *
 * The tar is written here (ustar, fixed owner and mtime), so the same busybox
 * always gives the same digests: a re-import is a no-op for the content store.
 */
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { WeftError } from '../../common/errors.js';

/** Debian's busybox-static. */
export const BUSYBOX = '/bin/busybox';
/** The sandbox image's name; `localhost/` keeps reference normalisation from adding `docker.io/library/`. */
export const PAUSE_IMAGE = 'localhost/weft-pause:1';

/** Applets linked in /bin beside busybox: the pause role needs `sleep`, the rest help when debugging a pod by hand. */
const APPLETS = ['sh', 'sleep', 'ip', 'ping', 'cat', 'ls'];
/** Sleeps about 68 years: busybox sleep takes no `infinity`. */
const PAUSE_ENTRYPOINT = ['/bin/sleep', '2147483647'];

const MEDIA = {
  manifest: 'application/vnd.oci.image.manifest.v1+json',
  config: 'application/vnd.oci.image.config.v1+json',
  layer: 'application/vnd.oci.image.layer.v1.tar',
} as const;

export interface TarEntry {
  readonly name: string;
  readonly type: 'file' | 'dir' | 'symlink';
  readonly mode: number;
  readonly data?: Buffer;
  readonly target?: string;
}

/** Writes a NUL-terminated octal field of `len` bytes (the ustar number format). */
function octal(header: Buffer, offset: number, len: number, value: number): void {
  header.write(value.toString(8).padStart(len - 1, '0') + '\0', offset, len, 'ascii');
}

/** A ustar archive of `entries` (names under 100 bytes), owner root, mtime 0. */
export function tar(entries: readonly TarEntry[]): Buffer {
  const parts: Buffer[] = [];
  for (const e of entries) {
    if (Buffer.byteLength(e.name) >= 100) throw new WeftError('WEFT_ERR_HARNESS', `tar: name too long: ${e.name}`);
    const data = e.type === 'file' ? (e.data ?? Buffer.alloc(0)) : Buffer.alloc(0);
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100, 'utf8');
    octal(h, 100, 8, e.mode);
    octal(h, 108, 8, 0); // uid
    octal(h, 116, 8, 0); // gid
    octal(h, 124, 12, data.length);
    octal(h, 136, 12, 0); // mtime
    h.write(e.type === 'file' ? '0' : e.type === 'dir' ? '5' : '2', 156, 1, 'ascii');
    if (e.target) h.write(e.target, 157, 100, 'utf8');
    h.write('ustar\0', 257, 6, 'ascii');
    h.write('00', 263, 2, 'ascii');
    h.write('root', 265, 32, 'ascii');
    h.write('root', 297, 32, 'ascii');
    // The checksum is computed with its own field read as eight spaces.
    h.fill(' ', 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 8, 'ascii');
    parts.push(h, data);
    const pad = (512 - (data.length % 512)) % 512;
    if (pad) parts.push(Buffer.alloc(pad));
  }
  parts.push(Buffer.alloc(1024)); // two zero blocks end the archive
  return Buffer.concat(parts);
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/** The OCI architecture name of this machine. */
export function ociArch(): string {
  const map: Record<string, string> = { x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x', riscv64: 'riscv64' };
  const arch = map[process.arch];
  if (!arch) throw new WeftError('WEFT_ERR_HARNESS', `no OCI architecture for ${process.arch}`);
  return arch;
}

export interface BuiltImage {
  /** The tarball, an OCI image layout. */
  readonly file: string;
  readonly name: string;
  /** The manifest's digest (`sha256:...`). */
  readonly digest: string;
  /** The image config's digest: the image ID the CRI reports. */
  readonly configDigest: string;
}

/**
 * Writes the pause image as an OCI image layout tarball to `file`.
 * The index entry carries `io.containerd.image.name`, the name ctr gives the
 * imported image, and the platform, so an import filtered to this machine's
 * platform keeps it.
 */
export function buildPauseImage(file: string, name = PAUSE_IMAGE, busyboxPath = BUSYBOX): BuiltImage {
  let busybox: Buffer;
  try {
    busybox = readFileSync(busyboxPath);
  } catch (err) {
    throw new WeftError('WEFT_ERR_HARNESS', `${busyboxPath} not readable (Debian package busybox-static)`, { cause: err });
  }
  const layer = tar([
    { name: 'bin/', type: 'dir', mode: 0o755 },
    { name: 'bin/busybox', type: 'file', mode: 0o755, data: busybox },
    ...APPLETS.map((a): TarEntry => ({ name: `bin/${a}`, type: 'symlink', mode: 0o777, target: 'busybox' })),
    ...['dev/', 'etc/', 'proc/', 'sys/', 'tmp/'].map((d): TarEntry => ({ name: d, type: 'dir', mode: d === 'tmp/' ? 0o1777 : 0o755 })),
  ]);
  const layerDigest = `sha256:${sha256(layer)}`;
  const platform = { architecture: ociArch(), os: 'linux' };
  const config = Buffer.from(
    JSON.stringify({
      ...platform,
      config: { Entrypoint: PAUSE_ENTRYPOINT, Env: ['PATH=/bin'], WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: [layerDigest] },
      history: [{ created_by: 'weft test harness: busybox-static', comment: 'pause' }],
    }),
  );
  const configDigest = `sha256:${sha256(config)}`;
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.manifest,
      config: { mediaType: MEDIA.config, digest: configDigest, size: config.length },
      layers: [{ mediaType: MEDIA.layer, digest: layerDigest, size: layer.length }],
    }),
  );
  const digest = `sha256:${sha256(manifest)}`;
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      manifests: [
        {
          mediaType: MEDIA.manifest,
          digest,
          size: manifest.length,
          platform,
          annotations: { 'io.containerd.image.name': name, 'org.opencontainers.image.ref.name': name.slice(name.lastIndexOf(':') + 1) },
        },
      ],
    }),
  );
  const blob = (b: Buffer): TarEntry => ({ name: `blobs/sha256/${sha256(b)}`, type: 'file', mode: 0o644, data: b });
  const archive = tar([
    { name: 'oci-layout', type: 'file', mode: 0o644, data: Buffer.from('{"imageLayoutVersion":"1.0.0"}') },
    { name: 'index.json', type: 'file', mode: 0o644, data: index },
    { name: 'blobs/', type: 'dir', mode: 0o755 },
    { name: 'blobs/sha256/', type: 'dir', mode: 0o755 },
    blob(layer),
    blob(config),
    blob(manifest),
  ]);
  writeFileSync(file, archive);
  return { file, name, digest, configDigest };
}
