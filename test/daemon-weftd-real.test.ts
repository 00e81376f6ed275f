/**
 * weftd against a real etcd, on the fake kernel: a network config with IPv6
 * is refused as an invalid config weftd waits on, and nothing of it is
 * applied (no lease, no device, no subnet file). Only the waiting is run: past
 * the config, weftd would set the host's ip_forward.
 */
import { expect } from 'chai';
import type { Etcd3 } from 'etcd3';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseWeftdOptions } from '../common/options.js';
import { Weftd } from '../daemon/weftd.js';
import { FakeKernel } from '../kernel/kernel-fake.js';
import { createEtcdClient } from '../lease/etcd-client.js';
import { configKey } from '../lease/keyspace.js';
import { tempDir } from './harness/at-exit.js';
import { EtcdServer } from './harness/etcd.js';

const P = '/coreos.com/network';

describe('weftd with an IPv6 network config @real', function () {
  this.timeout(60_000);
  let etcd: EtcdServer;
  let client: Etcd3;

  before(async () => {
    etcd = await EtcdServer.start();
    client = createEtcdClient({ endpoints: [etcd.endpoint] });
  });
  after(async () => {
    client?.close();
    await etcd?.destroy();
  });

  for (const [name, config] of [
    ['a dual-stack', '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/48"}'],
    ['an IPv6-only', '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fd00:10:244::/48"}'],
  ] as const) {
    it(`waits on ${name} config as an invalid one, saying why, and applies nothing of it`, async () => {
      await client.delete().prefix('/coreos.com/');
      await client.put(configKey(P)).value(config);
      const dir = tempDir('weft-v6cfg-');
      const subnetFile = join(dir, 'subnet.env');
      const options = await parseWeftdOptions(['--etcd-endpoints', etcd.endpoint, '--healthz-port', '0', '--subnet-file', subnetFile, '--state-dir', dir], {});
      const errors: string[] = [];
      const statuses: string[] = [];
      const log = { error: (m: string) => errors.push(m), warn() {}, info() {}, verbose() {}, debug() {} } as never;
      const kernel = new FakeKernel();
      const weftd = new Weftd({ options, log, backends: new Map(), kernel: kernel as never, notify: { send: (m: string) => statuses.push(m), startWatchdog() {}, close() {} } });
      const controller = new AbortController();
      const running = weftd.run(controller.signal).catch((err: unknown) => err);
      await sleep(2500); // several retries of the config read
      controller.abort();
      const stopped = await running;
      expect(stopped).to.have.property('code', 'WEFT_ERR_ABORTED');
      // Logged once (the retries repeat the same message), with the rule.
      expect(errors).to.have.length(1);
      expect(errors[0]).to.match(/^invalid network config: EnableIPv6: .*dual-stack programming is not built yet.*; waiting for a valid config$/);
      expect(statuses.at(-1)).to.equal('STATUS=not ready: waiting for a valid network config in etcd');
      // Nothing applied: no lease in etcd, no subnet file, no device.
      expect(await client.getAll().prefix(`${P}/subnets/`).keys()).to.deep.equal([]);
      expect(existsSync(subnetFile)).to.equal(false);
      expect(await kernel.linkList()).to.deep.equal([]);
    });
  }
});
