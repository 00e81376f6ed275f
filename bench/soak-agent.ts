/**
 * The soak's hand on etcd, inside a namespace of its own on the test underlay
 * (etcd is not reachable from the root namespace): lists the subnet keys with
 * their create revisions, writes and deletes keys, writes keys held by a live
 * etcd lease, compacts. One client over every member, so a member's death
 * is the client's failover, as for weftd. Controlled over IPC by bench/soak.ts:
 *   ip netns exec <ns> node soak-agent.js ENDPOINTS
 */
import { Etcd3 } from 'etcd3';
import { serve } from './cluster-rpc.js';
import type { ListedKey } from './soak-check.js';

const client = new Etcd3({ hosts: process.argv[2]!.split(','), dialTimeout: 2000 });
/** etcd leases granted for live leases the soak writes, by key. */
const held = new Map<string, ReturnType<Etcd3['lease']>>();

serve(
  {
    list: async (a: { prefix: string }): Promise<{ kvs: ListedKey[]; revision: string }> => {
      const res = await client.getAll().prefix(a.prefix).exec();
      return {
        revision: String(res.header.revision),
        kvs: res.kvs.map((kv) => ({
          key: kv.key.toString(),
          value: kv.value.toString(),
          lease: String(kv.lease),
          modRevision: String(kv.mod_revision),
          createRevision: String(kv.create_revision),
        })),
      };
    },
    get: async (a: { key: string }) => client.get(a.key).string(),
    /** Writes `value` only when the key does not exist: never overwrites a node's lease. */
    create: async (a: { key: string; value: string; ttl?: number }) => {
      let put = client.put(a.key).value(a.value);
      if (a.ttl) {
        const lease = client.lease(a.ttl, { autoKeepAlive: false });
        lease.on('lost', () => undefined);
        held.set(a.key, lease);
        put = lease.put(a.key).value(a.value);
      }
      const res = await client.if(a.key, 'Create', '==', 0).then(put).commit();
      return res.succeeded;
    },
    delete: async (a: { key: string }) => {
      await client.delete().key(a.key).exec();
      const lease = held.get(a.key);
      held.delete(a.key);
      await lease?.revoke().catch(() => undefined);
    },
    compact: async () => {
      const res = await client.getAll().prefix('/').limit(1).exec();
      // Two compactions in one round: the second finds the revision compacted already, which is what it wanted.
      await client.kv.compact({ revision: res.header.revision, physical: true }).catch((err: Error) => {
        if (!/has been compacted/.test(err.message)) throw err;
      });
      return String(res.header.revision);
    },
  },
  () => client.close(),
);
