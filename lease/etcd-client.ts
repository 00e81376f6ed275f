import { existsSync, readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import type { EventEmitter } from 'node:events';
import { Metadata, credentials as grpcCredentials, type ChannelOptions } from '@grpc/grpc-js';
import { ConsecutiveBreaker, ExponentialBackoff, circuitBreaker, handleWhen, retry, type IBackoff } from 'cockatiel';
import { Etcd3, isRecoverableError, type Watcher } from 'etcd3';
import { ETCD_KEEPALIVE_TIMEOUT_MS, ETCD_KEEPALIVE_TIME_MS, ETCD_RECONNECT_BACKOFF_MS } from '../common/defaults.js';
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
 * A dead connection (a silent partition: packets dropped, no RST or FIN) is
 * found by gRPC keepalive pings, and gRPC's reconnect backoff is capped low so
 * that the first attempt after the path heals comes soon. Streams (the watch,
 * lease keepalives) carry etcd's `hasleader` metadata: an etcd member cut off
 * from its cluster's leader ends them instead of serving a watch that no
 * longer receives writes.
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
    grpcOptions: ETCD_GRPC_OPTIONS,
    defaultCallOptions: (ctx) => (ctx.isStream ? { credentials: REQUIRE_LEADER } : { deadline: Date.now() + callTimeoutMs }),
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

/** Channel options of every etcd connection (see createEtcdClient). */
export const ETCD_GRPC_OPTIONS: ChannelOptions = {
  'grpc.keepalive_time_ms': ETCD_KEEPALIVE_TIME_MS,
  'grpc.keepalive_timeout_ms': ETCD_KEEPALIVE_TIMEOUT_MS,
  // etcd counts pings on a connection without streams as abuse (its PermitWithoutStream is false).
  'grpc.keepalive_permit_without_calls': 0,
  'grpc.initial_reconnect_backoff_ms': ETCD_RECONNECT_BACKOFF_MS.initial,
  'grpc.max_reconnect_backoff_ms': ETCD_RECONNECT_BACKOFF_MS.max,
};

/** etcd's "leader required" (clientv3's WithRequireLeader): the metadata `hasleader: true`, added per call. */
const REQUIRE_LEADER = grpcCredentials.createFromMetadataGenerator((_params, callback) => {
  const metadata = new Metadata();
  metadata.set('hasleader', 'true');
  callback(null, metadata);
});

/** A way to ask etcd for a progress notification on a watcher's stream. */
export interface WatchProgress {
  /** Writes a WatchProgressRequest; false when the stream is not up (etcd3 is reconnecting). */
  request(): boolean;
}

/** The parts of etcd3's (1.1) internal WatchManager that watchProgress uses. */
interface WatchManagerInternals {
  state: number;
  stream?: { write(request: unknown): boolean };
  watchers: EventEmitter[];
  handleResponse(res: { watch_id: string | number }): void;
}

/** etcd3's WatchManager state `Connected`. */
const WATCH_MANAGER_CONNECTED = 2;
/** Per taught manager: when the unanswered progress request went out (absent: none is pending). */
const progressAsked = new WeakMap<object, number>();
/** A request still unanswered after this long is not counted as pending any more. */
const PROGRESS_PENDING_MS = 1000;

/**
 * etcd's WatchProgressRequest for an etcd3 watcher. etcd3 has no API for it,
 * and etcd's answer (a response with watch_id -1, meant for every watch on the
 * stream) would make etcd3's watch manager throw. So this reaches into that
 * manager, the one object that owns the stream: it is taught once to hand such
 * a response to each of its watchers as a `'progress'` event, and request()
 * writes the request on its stream (once for all its watchers while one is
 * pending). Null when the watcher is not etcd3's or
 * etcd3's internals changed: the watch then runs without a liveness check.
 */
export function watchProgress(watcher: Watcher | EventEmitter): WatchProgress | null {
  const manager = (watcher as unknown as { manager?: Partial<WatchManagerInternals> }).manager;
  if (!manager || typeof manager.handleResponse !== 'function' || !Array.isArray(manager.watchers)) return null;
  if (!progressAsked.has(manager)) {
    progressAsked.set(manager, 0);
    const original = manager.handleResponse;
    manager.handleResponse = function (this: WatchManagerInternals, res) {
      if (String(res.watch_id) !== '-1') return original.call(this, res);
      progressAsked.set(this, 0);
      for (const w of [...this.watchers]) w.emit('progress', res);
    };
  }
  return {
    request: () => {
      if (manager.state !== WATCH_MANAGER_CONNECTED || !manager.stream) return false;
      // The watches on one stream (the peers', the own key's) go quiet together: one question answers all.
      const now = Date.now();
      if (now - progressAsked.get(manager)! < PROGRESS_PENDING_MS) return true;
      progressAsked.set(manager, now);
      manager.stream.write({ progress_request: {} });
      return true;
    },
  };
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
