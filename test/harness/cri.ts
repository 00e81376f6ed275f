/**
 * A small client of the Kubernetes Container Runtime Interface (CRI,
 * `runtime.v1`), speaking gRPC over the runtime's unix socket the way kubelet
 * does: pod sandboxes are run, inspected, stopped and removed through it, and
 * the runtime attaches each one to the network through its CNI plugins.
 *
 * Only the calls weft's tests need are declared (cri/runtime-v1.proto). Every
 * failure is a CriError (WEFT_ERR_HARNESS) that keeps the gRPC status and the
 * runtime's message, which is where a CNI plugin's error text ends up.
 */
import { credentials, loadPackageDefinition, Metadata, status as GrpcStatus, type ChannelCredentials, type Client, type ClientOptions, type ServiceError } from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { fileURLToPath } from 'node:url';
import { WeftError } from '../../common/errors.js';

/** The .proto stays beside the sources: tsc does not copy it into dist/ (this file runs as dist/test/harness/cri.js). */
export const CRI_PROTO = fileURLToPath(new URL('../../../test/harness/cri/runtime-v1.proto', import.meta.url));

/** The CRI version kubelet announces in Version (the API, not the runtime's version). */
export const CRI_API_VERSION = 'v1';

/** A failed CRI call: the method, the gRPC status, and the runtime's own message. */
export class CriError extends WeftError {
  constructor(
    readonly method: string,
    /** gRPC status code (grpc-js `status`), e.g. 2 UNKNOWN for a CNI failure, 5 NOT_FOUND for an unknown sandbox. */
    readonly grpcCode: number,
    /** The runtime's message, e.g. containerd's `failed to setup network for sandbox "...": plugin type="bridge" ...`. */
    readonly details: string,
    options?: { cause?: unknown },
  ) {
    super('WEFT_ERR_HARNESS', `CRI ${method} failed (${GrpcStatus[grpcCode] ?? grpcCode}): ${details}`, options);
    this.name = 'CriError';
  }
}

export interface RuntimeVersion {
  readonly version: string;
  readonly runtimeName: string;
  readonly runtimeVersion: string;
  readonly runtimeApiVersion: string;
}

export type NamespaceMode = 'POD' | 'CONTAINER' | 'NODE' | 'TARGET';
export type PodSandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';

export interface PodSandboxMetadata {
  readonly name: string;
  readonly uid: string;
  readonly namespace: string;
  readonly attempt?: number;
}

/** What RunPodSandbox takes: the fields of runtime.v1's PodSandboxConfig that this client declares. */
export interface PodSandboxConfig {
  readonly metadata: PodSandboxMetadata;
  readonly hostname?: string;
  readonly logDirectory?: string;
  readonly dnsConfig?: { readonly servers?: string[]; readonly searches?: string[]; readonly options?: string[] };
  readonly labels?: Record<string, string>;
  readonly annotations?: Record<string, string>;
  readonly linux?: {
    /** cgroupfs path the sandbox's cgroup goes under (the runtime appends the sandbox id). */
    readonly cgroupParent?: string;
    readonly securityContext?: {
      readonly namespaceOptions?: { readonly network?: NamespaceMode; readonly pid?: NamespaceMode; readonly ipc?: NamespaceMode };
      readonly privileged?: boolean;
    };
    readonly sysctls?: Record<string, string>;
  };
}

export interface PodSandboxStatus {
  readonly id: string;
  readonly metadata: PodSandboxMetadata;
  readonly state: PodSandboxState;
  /** Nanoseconds since the epoch (int64: a bigint keeps every digit). */
  readonly createdAt: bigint;
  /** The pod's IP as the runtime got it from CNI ('' when not networked). */
  readonly ip: string;
  readonly additionalIps: string[];
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly runtimeHandler: string;
  /** Verbose answers only: the runtime's extra JSON documents, parsed (containerd: `info`). */
  readonly info: Record<string, unknown>;
}

export interface PodSandbox {
  readonly id: string;
  readonly metadata: PodSandboxMetadata;
  readonly state: PodSandboxState;
  readonly createdAt: bigint;
  readonly labels: Record<string, string>;
  readonly annotations: Record<string, string>;
  readonly runtimeHandler: string;
}

export interface PodSandboxFilter {
  readonly id?: string;
  readonly state?: PodSandboxState;
  readonly labelSelector?: Record<string, string>;
}

export interface ImageInfo {
  /** The image id: its config's digest. */
  readonly id: string;
  readonly repoTags: string[];
  readonly repoDigests: string[];
  readonly size: number;
}

export interface RuntimeCondition {
  /** `RuntimeReady` or `NetworkReady` (required), or a runtime's own. */
  readonly type: string;
  readonly status: boolean;
  readonly reason: string;
  readonly message: string;
}

// The shapes proto-loader hands back (keepCase off: camelCase names; int64 as strings; enums as names).
interface RawMetadata {
  name: string;
  uid: string;
  namespace: string;
  attempt: number;
}
interface RawSandboxStatus {
  id: string;
  metadata: RawMetadata | null;
  state: PodSandboxState;
  createdAt: string;
  network: { ip: string; additionalIps: { ip: string }[] } | null;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  runtimeHandler: string;
}
type RawSandbox = Omit<RawSandboxStatus, 'network'>;

type Unary = (req: object, meta: Metadata, opts: { deadline: Date }, cb: (err: ServiceError | null, res: unknown) => void) => void;
type ServiceCtor = new (address: string, creds: ChannelCredentials, options?: ClientOptions) => Client;

let services: { runtime: ServiceCtor; image: ServiceCtor } | null = null;

function loadServices(): { runtime: ServiceCtor; image: ServiceCtor } {
  if (!services) {
    const definition = loadSync(CRI_PROTO, { keepCase: false, longs: String, enums: String, defaults: true, oneofs: true });
    const v1 = (loadPackageDefinition(definition) as unknown as { runtime: { v1: { RuntimeService: ServiceCtor; ImageService: ServiceCtor } } }).runtime.v1;
    services = { runtime: v1.RuntimeService, image: v1.ImageService };
  }
  return services;
}

function metadataOf(m: RawMetadata | null): PodSandboxMetadata {
  return { name: m?.name ?? '', uid: m?.uid ?? '', namespace: m?.namespace ?? '', attempt: m?.attempt ?? 0 };
}

/** A CRI RuntimeService client on one runtime socket. */
export class CriClient {
  private constructor(
    private readonly client: Client,
    private readonly images: Client,
    readonly socket: string,
    /** Per-call deadline; kubelet's default --runtime-request-timeout is 2 minutes. */
    readonly timeoutMs: number,
  ) {}

  /** A client of the runtime listening on the unix socket `socket` (the connection opens on the first call). */
  static connect(socket: string, options: { timeoutMs?: number } = {}): CriClient {
    const { runtime, image } = loadServices();
    // A runtime being started refuses connections for a moment: retry soon, not after grpc's default second.
    const client = new runtime(`unix://${socket}`, credentials.createInsecure(), { 'grpc.initial_reconnect_backoff_ms': 50, 'grpc.max_reconnect_backoff_ms': 500 });
    // One connection for both services, as kubelet has when both endpoints are the same socket.
    const images = new image(`unix://${socket}`, credentials.createInsecure(), { channelOverride: client.getChannel() });
    return new CriClient(client, images, socket, options.timeoutMs ?? 120_000);
  }

  private call<T>(method: string, request: object, service: Client = this.client): Promise<T> {
    const fn = (service as unknown as Record<string, Unary>)[method];
    if (!fn) throw new WeftError('WEFT_ERR_HARNESS', `CRI method ${method} not declared in runtime-v1.proto`);
    const timeoutMs = this.timeoutMs;
    return new Promise<T>((resolve, reject) => {
      try {
        fn.call(service, request, new Metadata(), { deadline: new Date(Date.now() + timeoutMs) }, (err, res) => {
          if (err) reject(new CriError(method, err.code ?? GrpcStatus.UNKNOWN, err.details || err.message, { cause: err }));
          else resolve(res as T);
        });
      } catch (err) {
        // grpc-js throws, instead of calling back, on a closed client.
        reject(new CriError(method, GrpcStatus.UNAVAILABLE, err instanceof Error ? err.message : String(err), { cause: err }));
      }
    });
  }

  /** Version: the runtime's name and version, and the CRI version it speaks. */
  async version(): Promise<RuntimeVersion> {
    return this.call<RuntimeVersion>('Version', { version: CRI_API_VERSION });
  }

  /** Status: the runtime's conditions (`RuntimeReady`, `NetworkReady`: false until the runtime has loaded a CNI config). */
  async status(): Promise<RuntimeCondition[]> {
    const res = await this.call<{ status: { conditions: RuntimeCondition[] } | null }>('Status', { verbose: false });
    return res.status?.conditions ?? [];
  }

  /** RunPodSandbox: creates and starts the sandbox, network included; resolves with its id. */
  async runPodSandbox(config: PodSandboxConfig, runtimeHandler = ''): Promise<string> {
    const res = await this.call<{ podSandboxId: string }>('RunPodSandbox', { config, runtimeHandler });
    return res.podSandboxId;
  }

  /** StopPodSandbox: stops the sandbox and releases its network (the runtime calls CNI DEL). Idempotent. */
  async stopPodSandbox(id: string): Promise<void> {
    await this.call('StopPodSandbox', { podSandboxId: id });
  }

  /** RemovePodSandbox: removes a stopped sandbox. Idempotent. */
  async removePodSandbox(id: string): Promise<void> {
    await this.call('RemovePodSandbox', { podSandboxId: id });
  }

  /** PodSandboxStatus; `verbose` asks for the runtime's extra documents (containerd: pid, netns path, CNI result). */
  async podSandboxStatus(id: string, verbose = true): Promise<PodSandboxStatus> {
    const res = await this.call<{ status: RawSandboxStatus | null; info: Record<string, string> }>('PodSandboxStatus', { podSandboxId: id, verbose });
    const s = res.status;
    if (!s) throw new CriError('PodSandboxStatus', GrpcStatus.NOT_FOUND, `no status for sandbox ${id}`);
    const info: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(res.info ?? {})) {
      try {
        info[k] = JSON.parse(v);
      } catch {
        info[k] = v;
      }
    }
    return {
      id: s.id,
      metadata: metadataOf(s.metadata),
      state: s.state,
      createdAt: BigInt(s.createdAt || '0'),
      ip: s.network?.ip ?? '',
      additionalIps: (s.network?.additionalIps ?? []).map((p) => p.ip),
      labels: s.labels ?? {},
      annotations: s.annotations ?? {},
      runtimeHandler: s.runtimeHandler ?? '',
      info,
    };
  }

  /** ListPodSandbox, optionally filtered (fields combined with AND). */
  async listPodSandbox(filter?: PodSandboxFilter): Promise<PodSandbox[]> {
    const raw = filter ? { id: filter.id ?? '', labelSelector: filter.labelSelector ?? {}, ...(filter.state ? { state: { state: filter.state } } : {}) } : undefined;
    const res = await this.call<{ items: RawSandbox[] }>('ListPodSandbox', raw ? { filter: raw } : {});
    return (res.items ?? []).map((s) => ({
      id: s.id,
      metadata: metadataOf(s.metadata),
      state: s.state,
      createdAt: BigInt(s.createdAt || '0'),
      labels: s.labels ?? {},
      annotations: s.annotations ?? {},
      runtimeHandler: s.runtimeHandler ?? '',
    }));
  }

  /**
   * ImageService.ImageStatus: the image the runtime holds under `ref` (a name or an id), or null when it has none:
   * a sandbox image reported here is one the runtime will not try to pull.
   */
  async imageStatus(ref: string): Promise<ImageInfo | null> {
    const res = await this.call<{ image: { id: string; repoTags: string[]; repoDigests: string[]; size: string } | null }>(
      'ImageStatus',
      { image: { image: ref } },
      this.images,
    );
    const img = res.image;
    return img ? { id: img.id, repoTags: img.repoTags ?? [], repoDigests: img.repoDigests ?? [], size: Number(img.size) } : null;
  }

  /** Closes the connection; calls in flight fail. */
  close(): void {
    this.images.close();
    this.client.close();
  }
}
