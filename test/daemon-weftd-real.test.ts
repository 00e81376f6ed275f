/**
 * weftd against a real etcd, on the fake kernel: a node whose underlay has no
 * global IPv6 address, given a dual-stack or IPv6-only network config, stops
 * with a clear error before anything of the config is applied (no lease, no
 * device, no subnet file). Nothing past the underlay is run: past it, weftd
 * would set the host's forwarding sysctls.
 */
import { expect } from 'chai';
import type { Etcd3 } from 'etcd3';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { parseWeftdOptions } from '../common/options.js';
import { Weftd } from '../daemon/weftd.js';
import { createBackends } from '../backend/registry.js';
import { FakeKernel } from '../kernel/kernel-fake.js';
import { createEtcdClient } from '../lease/etcd-client.js';
import { configKey } from '../lease/keyspace.js';
import { tempDir } from './harness/at-exit.js';
import { EtcdServer } from './harness/etcd.js';

const P = '/coreos.com/network';

describe('weftd with an IPv6 network config on a node without IPv6 @real', function () {
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
    it(`refuses ${name} config when the interface has no global IPv6 address, saying so, and applies nothing`, async () => {
      await client.delete().prefix('/coreos.com/');
      await client.put(configKey(P)).value(config);
      const dir = tempDir('weft-v6cfg-');
      const subnetFile = join(dir, 'subnet.env');
      const options = await parseWeftdOptions(['--etcd-endpoints', etcd.endpoint, '--healthz-port', '0', '--subnet-file', subnetFile, '--state-dir', dir, '--iface', 'eth0'], {});
      const log = { error() {}, warn() {}, info() {}, verbose() {}, debug() {} } as never;
      const kernel = new FakeKernel();
      const eth0 = kernel.addLink({ name: 'eth0' });
      await kernel.addrAdd({ ifindex: eth0.index, cidr: '198.18.0.1/24' });
      const weftd = new Weftd({ options, log, backends: createBackends(), kernel: kernel as never, notify: { send() {}, startWatchdog() {}, close() {} } });
      const controller = new AbortController();
      const stopped = await weftd.run(controller.signal).catch((err: unknown) => err);
      expect(stopped).to.have.property('code', 'WEFT_ERR_OPTION_INVALID');
      expect((stopped as Error).message).to.match(/^interface eth0 has no usable global IPv6 address/);
      // Nothing applied: no lease in etcd, no subnet file, no device.
      expect(await client.getAll().prefix(`${P}/subnets/`).keys()).to.deep.equal([]);
      expect(existsSync(subnetFile)).to.equal(false);
      expect((await kernel.linkList()).map((l) => l.name)).to.deep.equal(['eth0']);
    });
  }
});
