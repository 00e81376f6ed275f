import { expect } from 'chai';
import { configKey } from '../lease/keyspace.js';
import { readFileSync } from 'node:fs';
import { createEtcdClient, systemRootCertificates, type EtcdConnectionOptions } from '../lease/etcd-client.js';
import { EtcdRegistry } from '../lease/registry.js';
import { makeTestPki, type TestPki } from './harness/certs.js';
import { EtcdServer } from './harness/etcd.js';

const P = '/coreos.com/network';
const NET = '{"Network":"10.244.0.0/16"}';

async function readConfig(options: EtcdConnectionOptions): Promise<string> {
  const client = createEtcdClient({ ...options, callTimeoutMs: 3000 });
  try {
    return (await new EtcdRegistry(client, P).readNetworkConfig()).network!.toString();
  } finally {
    client.close();
  }
}

async function expectStoreError(options: EtcdConnectionOptions, pattern: RegExp): Promise<void> {
  try {
    await readConfig(options);
    expect.fail('should not connect');
  } catch (err) {
    expect(err).to.have.property('code', 'WEFT_ERR_STORE_UNAVAILABLE');
    expect((err as Error).message).to.match(pattern);
  }
}

describe('etcd security: TLS, mutual TLS and auth @real', function () {
  this.timeout(60_000);
  let pki: TestPki;
  before(async () => {
    pki = await makeTestPki();
  });

  it('refuses plain-text endpoints when TLS files are given, and https without a CA (no silent fall-back)', () => {
    expect(() => createEtcdClient({ endpoints: ['http://127.0.0.1:2379'], caFile: '/x' })).to.throw(/plain http but TLS files were given/);
    expect(() => createEtcdClient({ endpoints: ['https://127.0.0.1:2379'] })).to.throw(/https but no --etcd-cafile/);
    expect(() => createEtcdClient({ endpoints: ['https://127.0.0.1:2379'], caFile: '/nonexistent/ca.pem' })).to.throw(/etcd-cafile: cannot read \/nonexistent\/ca.pem/);
    expect(() => createEtcdClient({ endpoints: ['https://127.0.0.1:2379'], caFile: pki.caCert, certFile: pki.clientCert })).to.throw(/must be given together/);
  });

  describe('server-authenticated TLS (CA only)', () => {
    let etcd: EtcdServer;
    before(async () => {
      etcd = await EtcdServer.start({ tls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.caCert, clientCertAuth: false } });
      await etcd.etcdctl('put', configKey(P), NET);
    });
    after(async () => etcd?.destroy());

    it('works with only a CA (flanneld would connect without TLS here)', async () => {
      expect(await readConfig({ endpoints: [etcd.endpoint], caFile: pki.caCert })).to.equal('10.244.0.0/16');
    });
    it('fails clearly when the server certificate is not signed by the given CA', async () => {
      await expectStoreError({ endpoints: [etcd.endpoint], caFile: pki.rogueCaCert }, /etcd get config failed: .*unable to verify the first certificate/);
    });
  });

  describe('mutual TLS (client certificates)', () => {
    let etcd: EtcdServer;
    before(async () => {
      etcd = await EtcdServer.start({
        tls: { certFile: pki.serverCert, keyFile: pki.serverKey, caFile: pki.caCert, clientCertAuth: true, clientCertFile: pki.clientCert, clientKeyFile: pki.clientKey },
      });
      await etcd.etcdctl('put', configKey(P), NET);
    });
    after(async () => etcd?.destroy());

    it('works with the CA and a client certificate', async () => {
      expect(await readConfig({ endpoints: [etcd.endpoint], caFile: pki.caCert, certFile: pki.clientCert, keyFile: pki.clientKey })).to.equal('10.244.0.0/16');
    });
    it('fails without a client certificate', async () => {
      await expectStoreError({ endpoints: [etcd.endpoint], caFile: pki.caCert }, /etcd get config failed: .*bad certificate/);
    });
    it("with a client certificate and no CA, trusts the system's roots ($SSL_CERT_FILE) as flanneld does, never plain text", async () => {
      const saved = process.env.SSL_CERT_FILE;
      try {
        process.env.SSL_CERT_FILE = pki.caCert;
        expect(systemRootCertificates().toString()).to.equal(readFileSync(pki.caCert, 'utf8'));
        expect(await readConfig({ endpoints: [etcd.endpoint], certFile: pki.clientCert, keyFile: pki.clientKey })).to.equal('10.244.0.0/16');
        // Roots that do not hold etcd's CA: a certificate error, not a plain-text retry.
        process.env.SSL_CERT_FILE = pki.rogueCaCert;
        await expectStoreError({ endpoints: [etcd.endpoint], certFile: pki.clientCert, keyFile: pki.clientKey }, /etcd get config failed: .*unable to verify the first certificate/);
        expect(() => createEtcdClient({ endpoints: [etcd.endpoint.replace('https:', 'http:')], certFile: pki.clientCert, keyFile: pki.clientKey })).to.throw(/plain http but TLS files were given/);
        delete process.env.SSL_CERT_FILE;
        expect(systemRootCertificates().length, "the distribution's bundle, or Node's").to.be.above(1000);
      } finally {
        if (saved === undefined) delete process.env.SSL_CERT_FILE;
        else process.env.SSL_CERT_FILE = saved;
      }
    });
    it('fails with a client certificate from another CA', async () => {
      await expectStoreError({ endpoints: [etcd.endpoint], caFile: pki.caCert, certFile: pki.rogueClientCert, keyFile: pki.rogueClientKey }, /etcd get config failed: .*bad certificate/);
    });
  });

  describe('username/password auth', () => {
    let etcd: EtcdServer;
    let password: string;
    before(async () => {
      etcd = await EtcdServer.start();
      await etcd.etcdctl('put', configKey(P), NET);
      password = await etcd.enableAuth();
    });
    after(async () => etcd?.destroy());

    it('works with the right credentials', async () => {
      expect(await readConfig({ endpoints: [etcd.endpoint], username: 'root', password })).to.equal('10.244.0.0/16');
    });
    it('fails clearly with a wrong password, and never prints the password', async () => {
      try {
        await readConfig({ endpoints: [etcd.endpoint], username: 'root', password: 'wrong-secret-xyz' });
        expect.fail('should not authenticate');
      } catch (err) {
        expect((err as Error).message).to.match(/authentication failed|invalid auth/i);
        expect((err as Error).message).to.not.include('wrong-secret-xyz');
      }
    });
    it('fails without credentials', async () => {
      try {
        await readConfig({ endpoints: [etcd.endpoint] });
        expect.fail('should be refused');
      } catch (err) {
        expect((err as Error).message).to.match(/user name is empty|permission denied|auth/i);
      }
    });
  });
});
