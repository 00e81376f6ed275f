/**
 * The CRI client (test/harness/cri.ts) against a stand-in runtime: a gRPC
 * server built from the same .proto on a unix socket. It checks what the
 * client sends (kubelet's Version argument, the sandbox config, filters) and
 * how it reads answers (int64 timestamps, verbose info, absent images) and
 * failures (CriError with the gRPC status), without containerd.
 */
import { Server, ServerCredentials, loadPackageDefinition, status, type sendUnaryData, type ServerUnaryCall, type ServiceDefinition, type StatusObject, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { expect } from 'chai';
import { join } from 'node:path';
import { tempDir } from './harness/at-exit.js';
import { CRI_PROTO, CriClient, CriError } from './harness/cri.js';

type Handler = (req: Record<string, unknown>) => unknown;

/** A runtime answering each method with `handlers[method](request)`; a thrown `{ code, details }` becomes a gRPC error. */
async function fakeRuntime(handlers: Record<string, Handler>): Promise<{ socket: string; received: Record<string, Record<string, unknown>>; stop: () => Promise<void> }> {
  const def = loadSync(CRI_PROTO, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true });
  const v1 = (loadPackageDefinition(def) as unknown as { runtime: { v1: Record<string, { service: ServiceDefinition }> } }).runtime.v1;
  const received: Record<string, Record<string, unknown>> = {};
  const impl = (service: ServiceDefinition): UntypedServiceImplementation =>
    Object.fromEntries(
      Object.values(service).map((m) => {
        const name = m.path.slice(m.path.lastIndexOf('/') + 1);
        return [
          m.originalName ?? name,
          (call: ServerUnaryCall<Record<string, unknown>, unknown>, cb: sendUnaryData<unknown>) => {
            received[name] = call.request;
            const h = handlers[name];
            if (!h) return cb({ code: status.UNIMPLEMENTED, details: `${name} not faked` });
            try {
              cb(null, h(call.request));
            } catch (err) {
              cb(err as Partial<StatusObject>);
            }
          },
        ];
      }),
    );
  const server = new Server();
  server.addService(v1.RuntimeService!.service, impl(v1.RuntimeService!.service));
  server.addService(v1.ImageService!.service, impl(v1.ImageService!.service));
  const socket = join(tempDir('weft-cri-'), 'cri.sock');
  await new Promise<void>((resolve, reject) => server.bindAsync(`unix://${socket}`, ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())));
  return { socket, received, stop: () => new Promise((r) => server.tryShutdown(() => r())) };
}

describe('harness CRI client (runtime.v1) against a stand-in runtime', () => {
  let rt: Awaited<ReturnType<typeof fakeRuntime>>;
  let cri: CriClient;
  const NS_CREATED = '1796395989466142359'; // beyond 2^53: only a bigint keeps it

  before(async () => {
    rt = await fakeRuntime({
      Version: () => ({ version: '0.1.0', runtimeName: 'fake', runtimeVersion: '9.9', runtimeApiVersion: 'v1' }),
      Status: () => ({ status: { conditions: [{ type: 'RuntimeReady', status: true }, { type: 'NetworkReady', status: false, reason: 'NetworkPluginNotReady', message: 'cni plugin not initialized' }] } }),
      RunPodSandbox: () => ({ podSandboxId: 'sb1' }),
      PodSandboxStatus: (req) => {
        if (req.podSandboxId !== 'sb1') throw { code: status.NOT_FOUND, details: `an error occurred when try to find sandbox "${String(req.podSandboxId)}": not found` };
        return {
          status: {
            id: 'sb1',
            metadata: { name: 'web', uid: 'u1', namespace: 'default', attempt: 2 },
            state: 'SANDBOX_NOTREADY',
            createdAt: NS_CREATED,
            network: { ip: '10.244.9.2', additionalIps: [{ ip: 'fd00::2' }] },
            labels: { app: 'web' },
          },
          info: { info: JSON.stringify({ pid: 42, cniResult: { Interfaces: {} } }), note: 'not json' },
        };
      },
      StopPodSandbox: () => ({}),
      RemovePodSandbox: () => ({}),
      ListPodSandbox: () => ({ items: [{ id: 'sb1', metadata: { name: 'web' }, state: 'SANDBOX_READY', createdAt: NS_CREATED }] }),
      ImageStatus: (req) => ((req.image as { image: string }).image === 'localhost/weft-pause:1' ? { image: { id: 'sha256:abc', repoTags: ['localhost/weft-pause:1'], size: '1990865' } } : {}),
    });
    cri = CriClient.connect(rt.socket, { timeoutMs: 5000 });
  });

  after(async () => {
    cri?.close();
    await rt?.stop();
  });

  it('Version announces the CRI version kubelet speaks and returns the runtime\'s fields', async () => {
    expect(await cri.version()).to.deep.equal({ version: '0.1.0', runtimeName: 'fake', runtimeVersion: '9.9', runtimeApiVersion: 'v1' });
    expect(rt.received.Version).to.deep.equal({ version: 'v1' });
  });

  it('Status returns the runtime conditions', async () => {
    const conds = await cri.status();
    expect(conds.map((c) => [c.type, c.status])).to.deep.equal([
      ['RuntimeReady', true],
      ['NetworkReady', false],
    ]);
    expect(conds[1]!.message).to.equal('cni plugin not initialized');
  });

  it('RunPodSandbox sends the sandbox config as declared and resolves with the id', async () => {
    const id = await cri.runPodSandbox({
      metadata: { name: 'web', uid: 'u1', namespace: 'default' },
      hostname: 'web',
      labels: { app: 'web' },
      linux: { cgroupParent: '/weft-cri-x', securityContext: { namespaceOptions: { network: 'POD', pid: 'CONTAINER', ipc: 'POD' } } },
    });
    expect(id).to.equal('sb1');
    const req = rt.received.RunPodSandbox as { config: Record<string, any>; runtimeHandler: string };
    expect(req.runtimeHandler).to.equal('');
    expect(req.config.metadata).to.deep.equal({ name: 'web', uid: 'u1', namespace: 'default', attempt: 0 });
    expect(req.config.hostname).to.equal('web');
    expect(req.config.labels).to.deep.equal({ app: 'web' });
    expect(req.config.linux.cgroupParent).to.equal('/weft-cri-x');
    expect(req.config.linux.securityContext.namespaceOptions).to.deep.equal({ network: 'POD', pid: 'CONTAINER', ipc: 'POD', targetId: '' });
  });

  it('PodSandboxStatus asks for verbose info, keeps every digit of the timestamp and parses the info documents', async () => {
    const s = await cri.podSandboxStatus('sb1');
    expect(rt.received.PodSandboxStatus).to.deep.equal({ podSandboxId: 'sb1', verbose: true });
    expect(s.createdAt).to.equal(BigInt(NS_CREATED));
    expect([s.id, s.state, s.ip, s.additionalIps]).to.deep.equal(['sb1', 'SANDBOX_NOTREADY', '10.244.9.2', ['fd00::2']]);
    expect(s.metadata).to.deep.equal({ name: 'web', uid: 'u1', namespace: 'default', attempt: 2 });
    expect(s.labels).to.deep.equal({ app: 'web' });
    expect(s.info).to.deep.equal({ info: { pid: 42, cniResult: { Interfaces: {} } }, note: 'not json' });
  });

  it('a runtime error is a CriError with the method, the gRPC status and the runtime\'s message', async () => {
    const err = await cri.podSandboxStatus('gone').catch((e: unknown) => e);
    expect(err).to.be.instanceOf(CriError);
    const e = err as CriError;
    expect([e.code, e.method, e.grpcCode]).to.deep.equal(['WEFT_ERR_HARNESS', 'PodSandboxStatus', status.NOT_FOUND]);
    expect(e.details).to.equal('an error occurred when try to find sandbox "gone": not found');
    expect(e.message).to.equal('CRI PodSandboxStatus failed (NOT_FOUND): an error occurred when try to find sandbox "gone": not found');
  });

  it('ListPodSandbox sends the filter in the API\'s shape', async () => {
    const items = await cri.listPodSandbox({ state: 'SANDBOX_READY', labelSelector: { app: 'web' } });
    expect(items.map((i) => [i.id, i.metadata.name, i.state, i.createdAt])).to.deep.equal([['sb1', 'web', 'SANDBOX_READY', BigInt(NS_CREATED)]]);
    expect(rt.received.ListPodSandbox).to.deep.equal({ filter: { id: '', state: { state: 'SANDBOX_READY' }, labelSelector: { app: 'web' } } });
    await cri.listPodSandbox();
    expect(rt.received.ListPodSandbox).to.deep.equal({ filter: null });
  });

  it('Stop and Remove resolve; ImageStatus is null for an image the runtime does not have', async () => {
    await cri.stopPodSandbox('sb1');
    await cri.removePodSandbox('sb1');
    expect(rt.received.RemovePodSandbox).to.deep.equal({ podSandboxId: 'sb1' });
    expect(await cri.imageStatus('localhost/weft-pause:1')).to.deep.equal({ id: 'sha256:abc', repoTags: ['localhost/weft-pause:1'], repoDigests: [], size: 1990865 });
    expect(await cri.imageStatus('docker.io/library/nope:1')).to.equal(null);
  });

  it('a call on a closed client fails as a CriError too (grpc-js throws instead of calling back)', async () => {
    const c = CriClient.connect(rt.socket);
    c.close();
    const err = await c.version().catch((e: unknown) => e);
    expect(err).to.be.instanceOf(CriError);
    expect((err as CriError).grpcCode).to.equal(status.UNAVAILABLE);
  });
});
