/**
 * What every weftctl subcommand starts from: weftd's own options (same
 * flags, environment and --config file, so weftctl finds the same etcd,
 * prefix, interface and HTTP endpoint as the node's weftd), and the two
 * things it talks to: etcd and weftd's `/status`.
 */
import { createEtcdClient, etcdConnection } from '../lease/etcd-client.js';
import { EtcdRegistry } from '../lease/registry.js';
import { STATUS_PATH, type NodeStatus } from '../daemon/status.js';
import type { WeftdOptions } from '../common/options.js';

/** An open etcd connection to weft's keyspace. */
export interface EtcdSession {
  readonly registry: EtcdRegistry;
  /** Graceful: calls in flight finish first (Registry.close). */
  close(): Promise<void>;
}

export function openEtcd(o: WeftdOptions): EtcdSession {
  const registry = new EtcdRegistry(createEtcdClient(etcdConnection(o, 3000)), o.etcdPrefix);
  return { registry, close: () => registry.close() };
}

/** weftd's HTTP base URL from its options, or null when the endpoint is off (--healthz-port 0). */
export function weftdUrl(o: WeftdOptions): string | null {
  if (o.healthzPort === 0) return null;
  const host = o.healthzIp === '0.0.0.0' ? '127.0.0.1' : o.healthzIp === '::' ? '[::1]' : o.healthzIp.includes(':') ? `[${o.healthzIp}]` : o.healthzIp;
  return `http://${host}:${o.healthzPort}`;
}

/** weftd's `/status`, or why it could not be read. */
export async function fetchStatus(o: WeftdOptions): Promise<{ status: NodeStatus } | { error: string }> {
  const base = weftdUrl(o);
  if (!base) return { error: 'weftd HTTP endpoint is off (--healthz-port 0)' };
  try {
    const res = await fetch(`${base}${STATUS_PATH}`, { signal: AbortSignal.timeout(2000) });
    if (res.status !== 200) return { error: `${base}/status answered ${res.status}` };
    return { status: (await res.json()) as NodeStatus };
  } catch (err) {
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return { error: `weftd not reachable at ${base}: ${cause ?? (err as Error).message}` };
  }
}
