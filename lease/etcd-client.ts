import { existsSync, readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, retry, type IBackoff } from 'cockatiel';
import { Etcd3, isRecoverableError } from 'etcd3';
import { WeftError } from '../common/errors.js';

export interface EtcdConnectionOptions {
  /** e.g. `http://198.18.0.250:2379`; several for a cluster. */
  readonly endpoints: readonly string[];
  readonly caFile?: string;
  readonly certFile?: string;
  readonly keyFile?: string;
  readonly username?: string;
  readonly password?: string;
  /** Deadline for one unary call (ms). */
  readonly callTimeoutMs?: number;
}

/**
 * Builds the etcd3 client with weft's fault handling: short deadlines, a
 * circuit breaker per endpoint that re-probes after one second, and a watch
 * reconnect backoff capped at 2 s (etcd3's default cap of 30 s would delay
 * recovery after an etcd restart).
 *
 * TLS is used whenever a CA or a client certificate is given, and then only
 * https endpoints are accepted: weft never falls back to plain text (flannel
 * does, when only a CA is given). A client certificate without a CA trusts the
 * system's roots, as flanneld (Go) does: `systemRootCertificates`.
 */
export function createEtcdClient(options: EtcdConnectionOptions): Etcd3 {
  if (options.endpoints.length === 0) throw new WeftError('WEFT_ERR_OPTION_INVALID', 'etcd-endpoints: at least one endpoint is required');
  const tls = Boolean(options.caFile || options.certFile || options.keyFile);
  for (const ep of options.endpoints) {
    let url: URL;
    try {
      url = new URL(ep);
    } catch {
      throw new WeftError('WEFT_ERR_OPTION_INVALID', `etcd-endpoints: "${ep}" is not a URL (expected http(s)://host:port)`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new WeftError('WEFT_ERR_OPTION_INVALID', `etcd-endpoints: "${ep}" must use http:// or https://`);
    }
    if (tls && url.protocol !== 'https:') {
      throw new WeftError('WEFT_ERR_OPTION_INVALID', `etcd-endpoints: "${ep}" is plain http but TLS files were given; use https://`);
    }
    if (!tls && url.protocol === 'https:') {
      throw new WeftError('WEFT_ERR_OPTION_INVALID', `etcd-endpoints: "${ep}" is https but no --etcd-cafile was given (or --etcd-certfile and --etcd-keyfile, which trust the system's roots)`);
    }
  }
  if (Boolean(options.certFile) !== Boolean(options.keyFile)) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', 'etcd-certfile and etcd-keyfile must be given together');
  }
  const credentials = tls
    ? {
        rootCertificate: options.caFile ? readTlsFile('etcd-cafile', options.caFile) : systemRootCertificates(),
        ...(options.certFile ? { certChain: readTlsFile('etcd-certfile', options.certFile) } : {}),
        ...(options.keyFile ? { privateKey: readTlsFile('etcd-keyfile', options.keyFile) } : {}),
      }
    : undefined;
  if (Boolean(options.username) !== Boolean(options.password)) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', 'etcd-username and etcd-password must be given together');
  }
  const callTimeoutMs = options.callTimeoutMs ?? 5000;
  return new Etcd3({
    hosts: [...options.endpoints],
    ...(credentials ? { credentials } : {}),
    ...(options.username && options.password ? { auth: { username: options.username, password: options.password } } : {}),
    dialTimeout: callTimeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + callTimeoutMs }),
    faultHandling: {
      host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(3) }),
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 2 }),
      // etcd3 types this slot as IBackoff but uses it as a backoff factory (it calls next()).
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 2000 }) as unknown as IBackoff<unknown>,
    },
  });
}

/** Where Go's crypto/x509 looks for the system's CA bundle on Linux, in its order (the first file present wins). */
const SYSTEM_CA_FILES = [
  '/etc/ssl/certs/ca-certificates.crt', // Debian, Ubuntu, Gentoo, Arch
  '/etc/pki/tls/certs/ca-bundle.crt', // Fedora, RHEL 6
  '/etc/ssl/ca-bundle.pem', // openSUSE
  '/etc/pki/tls/cacert.pem', // OpenELEC
  '/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem', // CentOS, RHEL 7
  '/etc/ssl/cert.pem', // Alpine
];

/**
 * The roots flanneld trusts when given no CA file: Go's system pool, which is
 * `$SSL_CERT_FILE` when set, else the distribution's bundle. Without either,
 * Node's own Mozilla bundle. (`$SSL_CERT_DIR` is not read.)
 */
export function systemRootCertificates(env: NodeJS.ProcessEnv = process.env): Buffer {
  const file = env.SSL_CERT_FILE || SYSTEM_CA_FILES.find((f) => existsSync(f));
  if (file) return readTlsFile('etcd-cafile (system roots)', file);
  return Buffer.from(rootCertificates.join('\n'));
}

function readTlsFile(option: string, path: string | undefined): Buffer {
  if (!path) throw new WeftError('WEFT_ERR_OPTION_INVALID', `${option} is required for TLS`);
  try {
    return readFileSync(path);
  } catch (err) {
    throw new WeftError('WEFT_ERR_OPTION_INVALID', `${option}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/** The etcd flags weftd and weftctl share (a subset of weftd's options). */
export interface EtcdFlags {
  readonly etcdEndpoints: string[];
  readonly etcdCafile?: string;
  readonly etcdCertfile?: string;
  readonly etcdKeyfile?: string;
  readonly etcdUsername?: string;
  readonly etcdPassword?: string;
}

/** The etcd connection the flags describe (weftd and weftctl connect the same way). */
export function etcdConnection(o: EtcdFlags, callTimeoutMs?: number): EtcdConnectionOptions {
  return {
    endpoints: o.etcdEndpoints,
    caFile: o.etcdCafile,
    certFile: o.etcdCertfile,
    keyFile: o.etcdKeyfile,
    username: o.etcdUsername,
    password: o.etcdPassword,
    ...(callTimeoutMs !== undefined ? { callTimeoutMs } : {}),
  };
}
