import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './at-exit.js';

const execFileP = promisify(execFile);

export interface TestPki {
  readonly dir: string;
  readonly caCert: string;
  readonly serverCert: string;
  readonly serverKey: string;
  readonly clientCert: string;
  readonly clientKey: string;
  /** A second, unrelated CA and a client certificate it signed: must be refused. */
  readonly rogueCaCert: string;
  readonly rogueClientCert: string;
  readonly rogueClientKey: string;
}

async function openssl(...args: string[]): Promise<void> {
  await execFileP('openssl', args);
}

async function makeCa(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${name}.key`);
  const cert = join(dir, `${name}.crt`);
  await openssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`);
  return { cert, key };
}

async function issue(dir: string, ca: { cert: string; key: string }, name: string, ext: string): Promise<{ cert: string; key: string }> {
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const extFile = join(dir, `${name}.ext`);
  writeFileSync(extFile, ext);
  await openssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`);
  await openssl('x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', extFile);
  return { cert, key };
}

/** A throw-away PKI made with openssl: a CA, an etcd server certificate for `ips`, a client certificate, and a rogue CA. */
export async function makeTestPki(ips: readonly string[] = ['127.0.0.1']): Promise<TestPki> {
  const dir = tempDir('weft-pki-');
  const ca = await makeCa(dir, 'weft-test-ca');
  const server = await issue(dir, ca, 'etcd-server', `subjectAltName=${ips.map((ip) => `IP:${ip}`).join(',')}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  const client = await issue(dir, ca, 'weft-client', 'extendedKeyUsage=clientAuth\n');
  const rogue = await makeCa(dir, 'rogue-ca');
  const rogueClient = await issue(dir, rogue, 'rogue-client', 'extendedKeyUsage=clientAuth\n');
  return {
    dir,
    caCert: ca.cert,
    serverCert: server.cert,
    serverKey: server.key,
    clientCert: client.cert,
    clientKey: client.key,
    rogueCaCert: rogue.cert,
    rogueClientCert: rogueClient.cert,
    rogueClientKey: rogueClient.key,
  };
}
