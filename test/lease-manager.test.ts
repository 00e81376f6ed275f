import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import type { Logger } from '../common/log.js';
import { Subnet } from '../common/subnet.js';
import { parseNetworkConfig } from '../lease/config.js';
import { LeaseManager } from '../lease/manager.js';
import type { Listing, Registry, StoreState, StoreUpdate } from '../lease/registry.js';

const P = '/coreos.com/network';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function recordingLog(): { log: Logger; lines: string[] } {
  const lines: string[] = [];
  const keep = (level: string) => (m: string) => void lines.push(`${level} ${m}`);
  const log = { debug: () => undefined, info: keep('info'), warn: keep('warn'), error: keep('error'), log: (level: string, m: string) => keep(level)(m) };
  return { log: log as unknown as Logger, lines };
}

describe('the lease keepalive and etcd outages', () => {
  const config = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');

  /** A registry that holds one key and counts keepalives; its connectivity is set by the test. */
  function outageRegistry(): Registry & { keepalives: number; setStoreState(s: StoreState): void } {
    const emitter = new EventEmitter();
    const key = `${P}/subnets/10.244.1.0-24`;
    const value = JSON.stringify({ PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0e:2a:00:00:00:01' } });
    const kv = { key, value, lease: '77', modRevision: '11' };
    return Object.assign(emitter, {
      prefix: P,
      state: 'connected' as StoreState,
      unreachableSince: null,
      keepalives: 0,
      setStoreState(s: StoreState) {
        this.state = s;
        emitter.emit('state', s);
      },
      async listSubnets(): Promise<Listing> {
        return { kvs: [], revision: '10' };
      },
      async grantLease(ttl: number) {
        return { id: '77', ttl };
      },
      async createSubnet() {
        return true;
      },
      async getSubnet() {
        return kv;
      },
      async keepAliveLease(this: { keepalives: number }) {
        this.keepalives++;
        return 3600;
      },
      async *watchSubnets(signal: AbortSignal): AsyncGenerator<StoreUpdate> {
        yield { type: 'snapshot', kvs: [kv], revision: '11', reason: 'initial' };
        await new Promise((r) => signal.addEventListener('abort', r, { once: true }));
      },
    }) as unknown as Registry & { keepalives: number; setStoreState(s: StoreState): void };
  }

  it('says how long the lease stays valid when etcd goes out of reach, and renews at once when it is back', async () => {
    const registry = outageRegistry();
    const { log, lines } = recordingLog();
    const m = new LeaseManager({
      registry,
      config,
      attrs: { PublicIP: '198.18.0.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0e:2a:00:00:00:01' } },
      previousSubnet: Subnet.parse('10.244.1.0/24'),
      ttlSeconds: 3600,
      log,
    });
    const ac = new AbortController();
    await m.acquire(ac.signal);
    const running = m.run(ac.signal);
    try {
      await sleep(20);
      expect(registry.keepalives, 'the next keepalive is 20 minutes away').to.equal(0);
      registry.setStoreState('unreachable');
      expect(lines.some((l) => /^warn lease 10\.244\.1\.0\/24 stays valid for 3\d{3} s without etcd$/.test(l)), lines.join('\n')).to.equal(true);
      registry.setStoreState('connected');
      await sleep(20);
      expect(registry.keepalives, 'renewed as soon as etcd was back').to.equal(1);
      expect(m.state).to.equal('held');
    } finally {
      ac.abort();
      await running;
    }
  });
});

