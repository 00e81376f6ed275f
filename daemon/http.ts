import { createServer, type Server } from 'node:http';
import type { Registry as MetricsRegistry } from 'prom-client';
import type { PeerHealth, ProbeRound } from './probe.js';

export interface HealthSources {
  /** Ready = lease held AND the first full reconcile of the kernel done. */
  ready(): boolean;
  /** Why not ready, for the 503 body. */
  notReadyReason(): string;
  readonly metrics: MetricsRegistry;
  /** This node as weftd sees it, for `/status` (absent: 404). */
  status?(): NodeStatus;
}

/** The `/status` document: what `weftctl status` and `weftctl doctor` read from a running weftd. */
export interface NodeStatus {
  readonly ready: boolean;
  readonly notReadyReason: string;
  readonly lease: { readonly subnet: string; readonly publicIP: string; readonly etcdLeaseId: string; readonly ttlRemainingSeconds: number | null } | null;
  readonly leaseState: string;
  readonly network: string | null;
  readonly backend: { readonly type: string; readonly device: string | null; readonly mtu: number; readonly vxlanPort: number | null } | null;
  readonly underlay: { readonly name: string; readonly mtu: number; readonly publicIP: string } | null;
  readonly peers: number;
  readonly entriesProgrammed: number;
  readonly lastReconcile: { readonly at: string; readonly full: boolean; readonly seconds: number; readonly failed: number } | null;
  readonly etcd: string;
  /** The traffic rules keeper: `backing` as iptables-save names it (null before any table exists); the current wait between checks. */
  readonly iptables: { readonly inPlace: boolean; readonly backing: 'nf_tables' | 'legacy' | null; readonly checkPeriodSeconds: number; readonly repairs: number } | null;
  readonly probes: { readonly round: ProbeRound | null; readonly peers: readonly PeerHealth[] } | null;
}

/**
 * The HTTP endpoint: `/healthz` (the event loop answers), `/readyz`,
 * `/metrics` (Prometheus text), `/status` (JSON). GET and HEAD only; nothing
 * else is served.
 */
export function createHealthServer(sources: HealthSources): Server {
  return createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('weftd is running\n');
    } else if (path === '/readyz') {
      if (sources.ready()) res.writeHead(200, { 'content-type': 'text/plain' }).end('weftd is ready\n');
      else res.writeHead(503, { 'content-type': 'text/plain' }).end(`weftd is not ready yet: ${sources.notReadyReason()}\n`);
    } else if (path === '/status' && sources.status) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(sources.status()) + '\n');
    } else if (path === '/metrics') {
      sources.metrics.metrics().then(
        (text) => res.writeHead(200, { 'content-type': sources.metrics.contentType }).end(text),
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${err.message}\n`),
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
}

/** Listens on host:port; resolves once bound, rejects with the bind error (e.g. EADDRINUSE). */
export function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
