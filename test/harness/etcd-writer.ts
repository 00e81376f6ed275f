/**
 * Writes many keys into etcd from inside a namespace (etcd on the test
 * underlay is not reachable from the root namespace):
 *   ip netns exec NS node etcd-writer.js ENDPOINT FILE
 * FILE holds JSON [{ "key": ..., "value": ... | null }]; null deletes the key.
 */
import { readFileSync } from 'node:fs';
import { Etcd3 } from 'etcd3';

const [endpoint, file] = process.argv.slice(2);
const ops = JSON.parse(readFileSync(file!, 'utf8')) as { key: string; value: string | null }[];
const client = new Etcd3({ hosts: endpoint!.split(',') });
try {
  for (let i = 0; i < ops.length; i += 200) {
    await Promise.all(ops.slice(i, i + 200).map((op) => (op.value === null ? client.delete().key(op.key) : client.put(op.key).value(op.value))));
  }
} finally {
  client.close();
}
