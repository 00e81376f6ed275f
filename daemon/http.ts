import { createServer, type Server } from 'node:http';
import type { Registry as MetricsRegistry } from 'prom-client';
import { STATUS_PATH, type NodeStatus } from './status.js';

export interface HealthSources {
  /** Ready = lease held AND the first full reconcile of the kernel done. */
  ready(): boolean;
  /** Why not ready, for the 503 body. */
  notReadyReason(): string;
  readonly metrics: MetricsRegistry;
  /** This node as weftd sees it, for `/status` (absent: 404). */
  status?(): NodeStatus;
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
    } else if (path === STATUS_PATH && sources.status) {
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
