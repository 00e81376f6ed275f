/**
 * Lease-layer benchmark: how long weft takes to read N peer leases (list +
 * validation + cache diff, i.e. the watcher's first snapshot) and to acquire
 * a subnet among N leases, next to etcd's own prefix listing through the same
 * client in the same run (the baseline). Prints a table; `--quick` stops at 1000.
 */
import { WeftError } from '../common/errors.js';
import { performance } from 'node:perf_hooks';
import { parseNetworkConfig } from '../lease/config.js';
import { createEtcdClient } from '../lease/etcd-client.js';
import { configKey, subnetKey, subnetsPrefix } from '../lease/keyspace.js';
import { serializeLeaseAttrs } from '../lease/lease-value.js';
import { LeaseManager } from '../lease/manager.js';
import { EtcdRegistry } from '../lease/registry.js';
import { Subnet } from '../common/subnet.js';
import { LeaseWatcher } from '../lease/watcher.js';
import { EtcdServer } from '../test/harness/etcd.js';

const P = '/coreos.com/network';
const RUNS = 5;
const sizes = process.argv.includes('--quick') ? [100, 1000] : [100, 1000, 5000];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const etcd = await EtcdServer.start();
  const client = createEtcdClient({ endpoints: [etcd.endpoint] });
  const registry = new EtcdRegistry(client, P);
  const rows: string[][] = [];
  try {
    await client.put(configKey(P)).value('{"Network":"10.0.0.0/8","SubnetLen":24}');
    const config = parseNetworkConfig((await client.get(configKey(P)).string())!);
    let written = 0;
    for (const n of sizes) {
      // Top up to n peer leases: flannel-shaped values, written 200 at a time.
      for (let from = written; from < n; from += 200) {
        await Promise.all(
          Array.from({ length: Math.min(200, n - from) }, (_, j) => {
            const i = from + j + 1;
            const sn = Subnet.of(4, config.network!.value + BigInt(i) * 256n, 24);
            const mac = `0e:2a:00:${((i >> 16) & 255).toString(16).padStart(2, '0')}:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`;
            const ip = `198.18.${(i >> 8) & 255}.${i & 255}`;
            return client.put(subnetKey(P, sn)).value(serializeLeaseAttrs({ PublicIP: ip, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } }));
          }),
        );
      }
      written = n;
      const baseline: number[] = [];
      const snapshot: number[] = [];
      const acquire: number[] = [];
      for (let r = 0; r < RUNS; r++) {
        baseline.push(await time(() => client.getAll().prefix(subnetsPrefix(P)).exec()));
        snapshot.push(
          await time(async () => {
            const w = new LeaseWatcher({ registry, config, ownSubnet: () => null, ownPublicIP: '198.19.0.1' });
            const { kvs, revision } = await registry.listSubnets();
            const batch = w.apply({ type: 'snapshot', reason: 'initial', kvs, revision });
            if (batch.peers.size !== n) throw new WeftError('WEFT_ERR_HARNESS', `expected ${n} peers, got ${batch.peers.size}`);
          }),
        );
        const ac = new AbortController();
        const m = new LeaseManager({ registry, config, attrs: { PublicIP: '198.19.0.1', PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: '0e:2a:ff:00:00:01' } }, ttlSeconds: 60 });
        acquire.push(await time(() => m.acquire(ac.signal)));
        await m.release();
        ac.abort();
      }
      const b = median(baseline);
      const s = median(snapshot);
      const a = median(acquire);
      rows.push([String(n), b.toFixed(1), s.toFixed(1), (s / b).toFixed(2), a.toFixed(1), (a / b).toFixed(2)]);
    }
  } finally {
    client.close();
    await etcd.destroy();
  }
  const header = ['peers', 'etcd list (ms)', 'weft snapshot (ms)', 'ratio', 'weft acquire (ms)', 'ratio'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => '| ' + cells.map((c, i) => c.padStart(widths[i]!)).join(' | ') + ' |';
  console.log(`lease benchmark: median of ${RUNS} runs; etcd 3.4 on 127.0.0.1; ratio = weft / etcd list in the same run`);
  console.log(line(header));
  console.log('|' + widths.map((w) => '-'.repeat(w + 2)).join('|') + '|');
  for (const r of rows) console.log(line(r));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
