import type { Server } from 'node:http';
import { Backoff } from '../common/backoff.js';
import { WeftError, isWeftError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import { backendFor, type Backend, type BackendNetwork } from '../backend/backend.js';
import { RTPROT_WEFT, type Family, type Kernel, type NftMonitor } from '../kernel/kernel.js';
import { NodeNetworks } from '../backend/node-networks.js';
import type { Subnet } from '../common/subnet.js';
import { createEtcdClient, etcdConnection } from '../lease/etcd-client.js';
import { vxlanPort } from '../lease/config.js';
import { LeaseManager } from '../lease/manager.js';
import { judgeLease, type LeaseVerdict, type ValidatedListing } from '../lease/lease-value.js';
import { olderHolderOfMac } from '../lease/admission.js';
import { planesOf, subnetOf, type Plane } from '../backend/families.js';
import { describeSubnets } from '../lease/keyspace.js';
import { EtcdRegistry } from '../lease/registry.js';
import type { Lease, NetworkConfig, PeerBatch } from '../lease/types.js';
import { LeaseWatcher } from '../lease/watcher.js';
import { BridgeKeeper } from './bridge.js';
import { BlackholeKeeper } from './blackhole.js';
import { createHealthServer, listen } from './http.js';
import type { NodeStatus, RefusedLease } from './status.js';
import { TrafficRules, iptablesRunner, removeTrafficRules, removeTrafficRulesBothFamilies, trafficChains, type FamilyNetwork, type TrafficRulesSpec } from '../kernel/iptables.js';
import { NftablesEngine, isToolMissing, removeNftTables } from '../kernel/nftables.js';
import { WeftMetrics } from './metrics.js';
import { PeerProber } from './probe.js';
import type { WeftdOptions } from '../common/options.js';
import { readPreviousSubnet, writeSubnetFile } from '../lease/subnet-file.js';
import { acceptRaWarning, ensureSysctl, readSysctlPath } from './sysctl.js';
import { discoverUnderlay, type Underlay } from '../kernel/underlay.js';
import type { Notifier } from './sd-notify.js';

export interface WeftdDeps {
  readonly options: WeftdOptions;
  readonly log: Logger;
  /** Backends by type, built by the caller (no import side effects). */
  readonly backends: ReadonlyMap<string, Backend>;
  /** The kernel port (rtnetlink in production), with its nf_tables subscription for the iptables keeper. */
  readonly kernel: Kernel & NftMonitor;
  /** systemd's notify socket (daemon/sd-notify.ts): READY=1 and STATUS= lines follow /readyz. */
  readonly notify?: Notifier | null;
}

/** The start-up log line of the underlay: its addresses and what peers send to, of each family in use. */
export function underlayLine(u: Underlay): string {
  const v4 = u.address ? [u.address] : [];
  const v6 = u.address6 ? [u.address6] : [];
  const pub = [...(u.address ? [`public IP ${u.publicIP}`] : []), ...(u.publicIPv6 ? [`public IPv6 ${u.publicIPv6}`] : [])];
  return `underlay ${u.name} (${[...v4, ...v6, `mtu ${u.mtu}`].join(', ')}), ${pub.join(', ')}`;
}

/**
 * The Network and the node's subnet of each family the config enables (an
 * IPv6-only lease's IPv4 part is flannel's placeholder `0.0.0.0/0`, never used);
 * null for a family it does not.
 */
export function leaseNetworks(config: NetworkConfig, lease: Pick<Lease, 'subnet' | 'ipv6Subnet'>): { v4: FamilyNetwork | null; v6: FamilyNetwork | null } {
  const planes = planesOf(config);
  const of = (family: Family): FamilyNetwork | null => {
    const plane = planes.find((p) => p.family === family);
    const subnet = subnetOf(lease, family);
    return plane && subnet ? { network: plane.network, subnet } : null;
  };
  return { v4: of(4), v6: of(6) };
}

/** The forwarding sysctls weftd sets to 1: IPv4's when the config enables IPv4, IPv6's (all interfaces) when it enables IPv6. */
export function forwardingSysctls(config: Pick<NetworkConfig, 'enableIPv4' | 'enableIPv6'>): string[] {
  return [...(config.enableIPv4 ? ['net.ipv4.ip_forward'] : []), ...(config.enableIPv6 ? ['net.ipv6.conf.all.forwarding'] : [])];
}

/**
 * One weftd: wires etcd -> lease -> backend -> kernel and the outputs, in
 * flannel's order: config, device, lease, subnet file, traffic rules, backend
 * run (first full reconcile), ready. Stopping (abort) keeps the kernel state
 * and the lease, so a restart is hitless.
 */
export class Weftd {
  private readonly options: WeftdOptions;
  private readonly log: Logger;
  private registry: EtcdRegistry | null = null;
  private manager: LeaseManager | null = null;
  private watcher: LeaseWatcher | null = null;
  private network: BackendNetwork | null = null;
  private traffic: TrafficRules | null = null;
  private bridge: BridgeKeeper | null = null;
  private blackhole: BlackholeKeeper | null = null;
  /** The start-up listing's valid leases, for the devices' MAC check (one per family). */
  private startLeases: readonly Lease[] | null = null;
  private prober: PeerProber | null = null;
  private lastPass: NodeStatus['lastReconcile'] = null;
  private server: Server | null = null;
  private underlay: Underlay | null = null;
  private config: NetworkConfig | null = null;
  /** Start-up phase, for /readyz until the lease manager takes over. */
  private phase = 'starting';
  private wasReady = false;
  /** The last STATUS= sent to systemd, and whether READY=1 was. */
  private notifiedStatus = '';
  private notifiedReady = false;
  private backendReady = false;
  readonly metrics: WeftMetrics;

  constructor(private readonly deps: WeftdDeps) {
    this.options = deps.options;
    this.log = deps.log;
    this.metrics = new WeftMetrics({
      leaseTtlRemaining: () => this.manager?.ttlRemaining ?? null,
      leaseState: () => this.manager?.state ?? 'acquiring',
      leaseLosses: () => this.manager?.losses ?? 0,
      peers: () => this.watcher?.current.size ?? 0,
      watchResyncs: () => this.watcher?.resyncs ?? 0,
      leasesSkipped: () => this.watcher?.skipped ?? 0,
      kernelDriftEvents: () => this.network?.stats().driftEvents ?? 0,
      etcdConnected: () => this.registry?.state === 'connected',
      etcdUnreachableSeconds: () => this.etcdUnreachable()?.seconds ?? 0,
      iptablesRepairs: () => this.traffic?.repairs ?? 0,
      entriesProgrammed: () => this.network?.stats().entries ?? 0,
      ready: () => this.ready(),
      refusedLeases: () => this.refusedLeases(),
      ownLeaseConflict: () => (this.watcher?.ownLoss() ?? null) !== null,
      peerHealth: () => (this.prober ? { lastRound: this.prober.lastRoundHealth(), all: this.prober.health(), families: this.prober.families } : null),
    });
  }

  /** Lease held AND the first full reconcile done. */
  ready(): boolean {
    return this.leaseValid() && this.backendReady && this.traffic?.inPlace === true;
  }

  /**
   * The lease is held, or being renewed with time left: a keepalive that fails
   * during an etcd outage does not end a lease that etcd still keeps, so it
   * does not make the node unready.
   */
  private leaseValid(): boolean {
    const m = this.manager;
    if (m?.state === 'held') return true;
    const left = m?.ttlRemaining;
    return m?.state === 'renewing' && (left === null || (left !== undefined && left > 0));
  }

  /** Runs until `signal` aborts. Throws only for errors an operator must fix (bad options, bind failure). */
  async run(signal: AbortSignal): Promise<void> {
    const o = this.options;
    if (o.healthzPort > 0) {
      this.server = createHealthServer({ ready: () => this.ready(), notReadyReason: () => this.notReadyReason(), metrics: this.metrics.registry, status: () => this.status() });
      await listen(this.server, o.healthzIp, o.healthzPort);
      this.log.info(`serving /healthz, /readyz and /metrics on ${o.healthzIp}:${o.healthzPort}`);
    }
    try {
      const listing = await this.start(signal);
      if (!signal.aborted) await this.steadyState(signal, listing);
    } finally {
      await this.shutdown();
    }
  }

  /** Everything up to the lease and its outputs; returns the lease listing, validated, which the peer watch starts from. */
  private async start(signal: AbortSignal): Promise<ValidatedListing> {
    const o = this.options;
    this.registry = new EtcdRegistry(createEtcdClient(etcdConnection(o)), o.etcdPrefix, this.log);

    this.setPhase('waiting for a valid network config in etcd');
    const config = (this.config = await this.waitForConfig(signal));
    const backend = backendFor(this.deps.backends, config.backend.type);
    // Asked for now, the listing of every lease (the slowest read at scale) comes while the
    // underlay and the device are set up; acquisition starts from it.
    // Judged once, here: the devices' MAC check and the acquisition share the verdicts.
    const prefix = this.registry.prefix;
    const listing = this.registry.listSubnets().then((l) => ({ ...l, verdicts: l.kvs.map((kv) => judgeLease(prefix, kv, config)) }));
    listing.catch(() => undefined); // acquisition sees the error and retries

    this.underlay = await discoverUnderlay(this.deps.kernel, {
      iface: o.iface,
      ifaceRegex: o.ifaceRegex,
      ifaceCanReach: o.ifaceCanReach,
      publicIp: o.publicIp,
      publicIpv6: o.publicIpv6,
      stack: { v4: config.enableIPv4, v6: config.enableIPv6 },
    });
    this.log.info(underlayLine(this.underlay));
    if (o.publicIpv6 && !config.enableIPv6) this.log.info(`--public-ipv6 ${o.publicIpv6} has no effect: the network config does not enable IPv6 (EnableIPv6)`);

    this.setPhase('setting up the backend device');
    this.network = await backend.register({
      publicIP: this.underlay.publicIP,
      publicIPv6: config.enableIPv6 ? (this.underlay.publicIPv6 ?? null) : null,
      iface: { name: this.underlay.name, mtu: this.underlay.mtu },
      network: config,
      stateDir: o.stateDir,
      log: this.log,
      kernel: this.deps.kernel,
      macTakenBy: (mac, family) => this.macTakenBy(listing, mac, family),
      resyncIntervalMs: o.resyncInterval * 1000,
      routeNexthops: o.routeNexthops,
      onPass: (pass) => {
        this.lastPass = { at: new Date().toISOString(), full: pass.full, seconds: pass.seconds, failed: pass.failed };
        this.metrics.reconcileDuration.observe({ kind: pass.full ? 'full' : 'delta' }, pass.seconds);
        if (pass.failed > 0) this.metrics.reconcileErrors.inc(pass.failed);
      },
    });
    void this.network.ready.then(() => {
      this.backendReady = true;
      this.noteReadiness();
    });

    const previous = await readPreviousSubnet(o.subnetFile);
    this.manager = new LeaseManager({
      registry: this.registry,
      config,
      attrs: { PublicIP: this.underlay.publicIP, PublicIPv6: config.enableIPv6 ? (this.underlay.publicIPv6 ?? null) : null, ...this.network.leaseAttrs },
      previousSubnet: previous.network && config.network?.equals(previous.network) ? previous.subnet : null,
      previousIPv6Subnet: previous.ipv6Network && config.ipv6Network?.equals(previous.ipv6Network) ? previous.ipv6Subnet : null,
      ttlSeconds: o.subnetLeaseTtl,
      // The margin never exceeds a third of the TTL: short TTLs renew at TTL/3.
      renewMarginSeconds: Math.min(o.subnetLeaseRenewMargin * 60, Math.floor(o.subnetLeaseTtl / 3)),
      nodeCollisions: () => this.nodeCollisions(planesOf(config)),
      log: this.log,
    });
    this.manager.on('state', () => this.noteReadiness());
    this.setPhase('acquiring a subnet lease');
    const acquired = await this.manager.acquireWithListing(signal, { prefetched: listing });
    const lease = acquired.lease;
    this.log.info(`holding lease ${describeSubnets(lease)} (${lease.etcdLeaseId === '0' ? 'reservation' : `etcd lease ${lease.etcdLeaseId}`})`);

    await this.applyLease(lease, previous.subnet);
    for (const name of forwardingSysctls(config)) await ensureSysctl(name, '1');
    if (config.enableIPv6) {
      const warning = acceptRaWarning(this.underlay.name, await readSysctlPath(`net/ipv6/conf/${this.underlay.name}/accept_ra`));
      if (warning) this.log.warn(warning);
    }
    this.manager.on('change', (next: Lease) => {
      this.applyLease(next, null).catch((err) => this.log.error(`applying the new lease failed: ${(err as Error).message}`));
    });
    return acquired.listing;
  }

  /**
   * What of this node's own networks a new subnet would collide with: its
   * addresses and the routes that are not weft's (NodeNetworks' rules).
   */
  private async nodeCollisions(planes: readonly Plane[]): Promise<(s: Subnet) => string | null> {
    const kernel = this.deps.kernel;
    const devices = new Set<number>();
    for (const name of this.network?.devices ?? []) {
      const link = await kernel.linkByName(name);
      if (link) devices.add(link.index);
    }
    const own = new NodeNetworks(planes.map((p) => p.network));
    own.beginRead();
    const reads = await Promise.all(planes.map(({ family }) => Promise.all([kernel.routeList(family), kernel.addrListAll(family)])));
    for (const [routes, addrs] of reads) {
      for (const r of routes) if (r.proto !== RTPROT_WEFT && !devices.has(r.oif)) own.readRoute(r);
      for (const a of addrs) if (!devices.has(a.ifindex)) own.readAddr(a);
    }
    own.endRead();
    return (s) => own.collisionWith(s)?.entry ?? null;
  }

  /** The key of an older lease of another PublicIP advertising `mac`, from the start-up listing; null when etcd could not say. */
  private async macTakenBy(listing: Promise<{ verdicts: readonly LeaseVerdict[] }>, mac: string, family: Family): Promise<string | null> {
    let leases: readonly Lease[];
    try {
      leases = (this.startLeases ??= (await listing).verdicts.flatMap((v) => (v.lease ? [v.lease] : [])));
    } catch {
      return null; // acquisition retries the listing; a conflict found later shows in /status and weftctl doctor
    }
    const publicIP = family === 6 ? this.underlay!.publicIPv6 : this.underlay!.publicIP;
    return publicIP ? (olderHolderOfMac(leases, mac, publicIP, family)?.key ?? null) : null;
  }

  /** Everything that follows the node's subnet: device address, subnet file, traffic rules. */
  private async applyLease(lease: Lease, previousSubnet: Lease['subnet'] | null): Promise<void> {
    const o = this.options;
    const config = this.config!;
    await this.network!.configure(lease);
    const { v4, v6 } = leaseNetworks(config, lease);
    await writeSubnetFile(o.subnetFile, { network: v4?.network ?? null, subnet: v4?.subnet ?? null, ipv6Network: v6?.network ?? null, ipv6Subnet: v6?.subnet ?? null, mtu: this.network!.mtu, ipMasq: o.ipMasq });
    if (previousSubnet && !previousSubnet.equals(lease.subnet)) this.log.warn(`subnet changed from ${previousSubnet} to ${lease.subnet}`);
    // IPv4's rules and, for dual stack, IPv6's beside them; an IPv6-only config has IPv6's alone.
    const first = v4 ?? v6;
    if (!first) throw new WeftError('WEFT_ERR_INVALID_STATE', `lease ${lease.key} has no subnet of the families the network config enables`);
    const spec: TrafficRulesSpec = {
      ...first,
      ipv6: v4 ? v6 : null,
      ipMasq: o.ipMasq,
      forwardRules: o.iptablesForwardRules,
      randomFully: !o.ipMasqFullyRandomDisable,
      chains: trafficChains(o.etcdPrefix),
    };
    if (this.traffic) {
      this.traffic.update(spec);
      await this.traffic.ensure();
    } else {
      // At start the rules are installed by the keeper's first check, which runs at once beside the
      // first reconcile instead of before it (two spawned iptables tools); readiness waits for both.
      this.traffic = this.createTrafficRules(spec, config.enableNFTables);
    }
    if (o.ipBlackholeRoute) {
      this.blackhole ??= new BlackholeKeeper(this.deps.kernel, this.log);
      await this.blackhole.set([v4?.subnet ?? null, v6?.subnet ?? null].filter((s): s is Subnet => s !== null));
    }
    if (o.bridge) {
      const bridgeSpec = { name: o.bridge, subnet: v4?.subnet ?? null, network: v4?.network ?? null, mtu: this.network!.mtu, ipv6: v6 };
      if (this.bridge) this.bridge.update(bridgeSpec);
      else this.bridge = new BridgeKeeper(bridgeSpec, this.deps.kernel, this.log);
      const changes = await this.bridge.ensure();
      if (changes.length > 0) this.log.info(`bridge ${o.bridge}: ${changes.join(', ')}`);
    }
  }

  /**
   * The keeper of the masquerade and forward rules: nftables when the network
   * config says `EnableNFTables`, else iptables. Its first check removes the
   * other kind's rules (a node switched modes), as flanneld does at start; a
   * missing tool means there is nothing of that kind to remove.
   */
  private createTrafficRules(spec: TrafficRulesSpec, nftables: boolean): TrafficRules {
    const ignoreMissingTool = (remove: () => Promise<boolean>) => () => remove().catch((err: unknown) => (isToolMissing(err) ? false : Promise.reject(err)));
    const intervalMs = this.options.iptablesResync * 1000;
    if (!nftables) return new TrafficRules(spec, { intervalMs, log: this.log, removeOther: ignoreMissingTool(() => removeNftTables()) });
    const tables = [...(spec.network.family === 4 ? ['ip flannel-ipv4'] : []), ...(spec.network.family === 6 || spec.ipv6 ? ['ip6 flannel-ipv6'] : [])];
    this.log.info(`nftables mode (EnableNFTables): masquerade and forward rules in table ${tables.join(' and table ')}`);
    // ip6tables' chains are looked for only where the config has IPv6: an IPv4-only start runs no ip6tables.
    const chains = trafficChains(this.options.etcdPrefix);
    const removeIptables = this.config?.enableIPv6 ? () => removeTrafficRulesBothFamilies(chains) : () => removeTrafficRules(iptablesRunner(), chains);
    return new TrafficRules(spec, { intervalMs, log: this.log, engine: new NftablesEngine({ log: this.log }), removeOther: ignoreMissingTool(removeIptables) });
  }

  private async steadyState(signal: AbortSignal, listing: ValidatedListing): Promise<void> {
    const o = this.options;
    this.watcher = new LeaseWatcher({
      registry: this.registry!,
      config: this.config!,
      ownSubnet: () => this.manager?.lease?.subnet ?? null,
      ownPublicIP: this.underlay!.publicIP,
      ownPublicIPv6: this.config!.enableIPv6 ? (this.underlay!.publicIPv6 ?? null) : null,
      ownLease: () => this.manager?.lease ?? null,
      log: this.log,
    });
    // Following starts the kernel listener unless the backend's subscription did: after the first pass,
    // as the backend's, so that spawning it does not hold up start-up.
    void this.network!.ready.then(() => this.traffic!.follow(this.deps.kernel, signal));
    await Promise.all([
      this.manager!.run(signal),
      this.network!.run(this.timed(this.watcher.batches(signal, listing)), signal),
      this.traffic!.run(signal, () => this.noteReadiness()),
      this.bridge?.run(o.resyncInterval * 1000, signal),
      this.blackhole?.run(o.iptablesResync * 1000, signal),
      this.startProber(signal),
    ]);
  }

  /** Observes how long each batch takes from arrival to programmed (the backend pulls the next batch when done). */
  private async *timed(batches: AsyncIterable<PeerBatch>): AsyncGenerator<PeerBatch> {
    for await (const batch of batches) {
      const t0 = process.hrtime.bigint();
      yield batch;
      if (batch.events.length > 0) this.metrics.eventLatency.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    }
  }

  /** Peer health over underlay and overlay (daemon/probe.ts), unless --probe-interval is 0. */
  private startProber(signal: AbortSignal): Promise<void> | undefined {
    const o = this.options;
    if (o.probeInterval <= 0) return undefined;
    const cfg = this.config!.backend;
    this.prober = new PeerProber({
      port: o.probePort,
      intervalMs: o.probeInterval * 1000,
      sample: o.probeSample,
      peers: () => this.watcher?.current ?? new Map(),
      mtu: () => this.network?.mtu ?? 0,
      vxlanPort: vxlanPort(cfg),
      families: planesOf(this.config!).map((p) => p.family),
      peersProgrammed: this.network!.ready,
      log: this.log,
    });
    return this.prober.run(signal);
  }

  /** The `/status` document. */
  status(): NodeStatus {
    const lease = this.manager?.lease ?? null;
    const cfg = this.config?.backend;
    return {
      ready: this.ready(),
      notReadyReason: this.notReadyReason(),
      lease: lease && {
        subnet: lease.subnet.toString(),
        ipv6Subnet: lease.ipv6Subnet?.toString() ?? null,
        publicIP: lease.attrs.PublicIP,
        publicIPv6: lease.attrs.PublicIPv6 ?? null,
        etcdLeaseId: lease.etcdLeaseId,
        ttlRemainingSeconds: this.manager?.ttlRemaining ?? null,
      },
      leaseState: this.manager?.state ?? 'acquiring',
      network: this.config?.network?.toString() ?? null,
      ipv6Network: this.config?.ipv6Network?.toString() ?? null,
      backend:
        cfg && this.network
          ? { type: cfg.type, device: this.network.device, devices: this.network.devices, mtu: this.network.mtu, vxlanPort: cfg.type === 'vxlan' ? vxlanPort(cfg) : null }
          : null,
      underlay: this.underlay && { name: this.underlay.name, mtu: this.underlay.mtu, publicIP: this.underlay.publicIP, publicIPv6: this.underlay.publicIPv6 ?? null },
      peers: this.watcher?.current.size ?? 0,
      entriesProgrammed: this.network?.stats().entries ?? 0,
      lastReconcile: this.lastPass,
      etcd: this.registry?.state ?? 'unknown',
      etcdUnreachable: this.etcdUnreachable(),
      iptables: this.traffic && {
        mode: this.traffic.kind,
        inPlace: this.traffic.inPlace,
        backing: this.traffic.backing,
        checkPeriodSeconds: this.traffic.periodMs() / 1000,
        repairs: this.traffic.repairs,
      },
      probes: this.prober && {
        method: this.prober.method?.method ?? null,
        fallbackReason: this.prober.method?.fallbackReason ?? null,
        round: this.prober.lastRound,
        peers: this.prober.healthForStatus(),
      },
      refused: this.refusedLeases(),
      ownLeaseConflict: this.watcher?.ownLoss() ?? null,
    };
  }

  /** Since when and how long etcd has been out of reach; null while connected. */
  private etcdUnreachable(): NodeStatus['etcdUnreachable'] {
    const since = this.registry?.unreachableSince ?? null;
    return since === null ? null : { since: new Date(since).toISOString(), seconds: Math.round((Date.now() - since) / 100) / 10 };
  }

  /** Valid leases not programmed here: refused against the other leases (every node alike), or colliding with this node's networks. */
  private refusedLeases(): RefusedLease[] {
    const refused: RefusedLease[] = [...(this.watcher?.refusals() ?? [])];
    for (const c of this.network?.localCollisions() ?? []) {
      refused.push({ key: c.key, subnet: c.peer, reason: 'collides-with-node', detail: `its subnet collides with this node's ${c.entry}`, winner: null });
    }
    return refused;
  }

  /** Why /readyz says no: the start-up phase, then the lease state, then the first reconcile. */
  private notReadyReason(): string {
    if (!this.manager || this.manager.state === 'acquiring') return this.phase;
    if (!this.leaseValid()) return `lease ${this.manager.state}${this.manager.state === 'renewing' ? ' (expired)' : ''}`;
    if (!this.backendReady) return 'programming peers (first full reconcile)';
    return this.traffic?.inPlace ? '' : `installing ${this.traffic?.kind ?? 'iptables'} rules`;
  }

  /** Logs readiness when it changes; called on the events that can change it (no polling). */
  private noteReadiness(): void {
    const ready = this.ready();
    this.notifyStatus(ready);
    if (ready === this.wasReady) return;
    this.wasReady = ready;
    this.log.info(ready ? 'ready: lease held and peers programmed' : `not ready: ${this.notReadyReason()}`);
  }

  private setPhase(phase: string): void {
    this.phase = phase;
    this.notifyStatus(this.ready());
  }

  /** Tells systemd what weftd waits for (STATUS=), and READY=1 the first time /readyz turns ready. */
  private notifyStatus(ready: boolean): void {
    const notify = this.deps.notify;
    if (!notify) return;
    const lease = this.manager?.lease;
    const status = ready ? `ready: lease ${lease ? describeSubnets(lease) : ''} held and peers programmed` : `not ready: ${this.notReadyReason()}`;
    if (status === this.notifiedStatus) return;
    this.notifiedStatus = status;
    const first = ready && !this.notifiedReady;
    if (first) this.notifiedReady = true;
    notify.send(first ? `READY=1\nSTATUS=${status}` : `STATUS=${status}`);
  }

  private async waitForConfig(signal: AbortSignal): Promise<NetworkConfig> {
    const backoff = new Backoff({ initialMs: 500, maxMs: 5000 });
    let lastMessage = '';
    for (;;) {
      if (signal.aborted) throw new WeftError('WEFT_ERR_ABORTED', 'stopped while waiting for the network config');
      try {
        return await this.registry!.readNetworkConfig();
      } catch (err) {
        if (!isWeftError(err) || !err.retryable) throw err;
        if (err.message !== lastMessage) this.log.error(`${err.message}; waiting for a valid config`);
        lastMessage = err.message;
        await backoff.wait(signal).catch(() => undefined);
      }
    }
  }

  /** Graceful: keeps the lease, the device and every kernel entry. */
  private async shutdown(): Promise<void> {
    await this.network?.close();
    if (this.server) await new Promise<void>((r) => this.server!.close(() => r()));
    this.server?.closeAllConnections();
    // destroy(), not close(): every loop has stopped, so what may still be in flight is at most an abandoned
    // recovery attempt, and stopping must not wait on an unreachable etcd.
    this.registry?.destroy();
  }
}
