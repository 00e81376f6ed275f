/**
 * Peer health: every round, weftd sends one echo request to each sampled
 * peer twice, once over the underlay (to the peer's PublicIP) and once over
 * the overlay (to `<subnet>.0`, the peer's VXLAN device address, which the
 * kernel routes through this node's VXLAN device).
 *
 * Each family the network enables and the peer's lease has is probed on its
 * own, with its own result: IPv6 to the PublicIPv6 and to the IPv6 subnet's
 * network address (`fd00:10:244:3::`, on the peer's `flannel-v6.<VNI>`). An
 * IPv6-only peer (IPv4 subnet 0.0.0.0/0, PublicIP the unset 0.0.0.0) has no
 * IPv4 probes at all.
 *
 * The echo is ICMP (daemon/icmp.ts) where weftd may open a raw socket
 * (CAP_NET_RAW): every node's kernel answers it, flanneld's included. Beside
 * it goes one UDP echo over the underlay to weft's own responder on the probe
 * port, which answers with its overlay MTU (for `weftctl doctor`); its answer
 * also counts for the underlay when ICMP is filtered there.
 *
 * Without raw sockets, the UDP echo is the probe on both paths, as weft's
 * responders answer it on the probe port. A peer that is not weft (a flanneld
 * node) then never answers and is reported as unanswered on both paths, never
 * as "overlay blocked". `/status` says which method is in use, and why.
 *
 * Cost stays flat with cluster size: a round probes at most `sample` peers in
 * rotation (the whole cluster is covered every peers/sample rounds) plus up
 * to `sample` peers whose last result was bad, so failures are confirmed or
 * cleared quickly.
 */
import { createSocket, type Socket, type SocketType } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { isIPv6 } from 'node:net';
import { unlessAborted } from '../common/abort.js';
import { delay } from '../common/backoff.js';
import { WeftError } from '../common/errors.js';
import { silentLogger, type Logger } from '../common/log.js';
import type { Lease } from '../lease/types.js';
import { VXLAN_DEFAULT_PORT } from '../common/defaults.js';
import type { Family } from '../kernel/kernel.js';
import { familyName, publicIPOf, subnetOf } from '../backend/families.js';
import { openIcmpClient } from './icmp.js';
import type { PathResult, PeerHealth, PeerVerdict, ProbeMethod, ProbeRound } from './status.js';

const MAGIC = 'weft-probe/1 ';
/** Requests are short; anything larger is not ours and gets no answer (no amplification). */
const MAX_REQUEST_BYTES = 64;

/** Turns the two path results into a verdict and a sentence for `weftctl status`; `method` is the echo the results came from. */
export function diagnose(underlayOk: boolean, overlayOk: boolean, vxlanPort = VXLAN_DEFAULT_PORT, method: ProbeMethod = 'udp'): { verdict: PeerVerdict; diagnosis: string } {
  if (underlayOk && overlayOk) return { verdict: 'ok', diagnosis: 'reachable over underlay and overlay' };
  if (underlayOk) {
    return {
      verdict: 'overlay-blocked',
      diagnosis: `underlay OK but overlay blocked: VXLAN (UDP ${vxlanPort}) between the nodes is dropped, or the kernel entries for the peer are wrong`,
    };
  }
  if (method === 'icmp') {
    if (overlayOk) return { verdict: 'underlay-filtered', diagnosis: 'overlay OK but the underlay echo went unanswered: ICMP is filtered on the underlay' };
    return { verdict: 'unreachable', diagnosis: 'no answer over underlay or overlay: node down, or ICMP filtered' };
  }
  if (overlayOk) return { verdict: 'underlay-filtered', diagnosis: 'overlay OK but the underlay probe went unanswered: the probe port is filtered on the underlay' };
  return { verdict: 'unreachable', diagnosis: 'no answer over underlay or overlay: node down, not running weftd, or the probe port filtered' };
}

/**
 * The peers to probe this round: up to `sample` in rotation from `cursor`
 * (over subnet keys in sorted order) plus up to `sample` of `failing`.
 */
export function pickTargets(keys: readonly string[], cursor: number, sample: number, failing: ReadonlySet<string>): { targets: string[]; nextCursor: number } {
  if (keys.length <= sample) return { targets: [...keys], nextCursor: 0 };
  const start = cursor % keys.length;
  const rotation = Array.from({ length: sample }, (_, i) => keys[(start + i) % keys.length]!);
  const chosen = new Set(rotation);
  let extra = 0;
  for (const key of keys) {
    if (extra >= sample) break;
    if (failing.has(key) && !chosen.has(key)) {
      chosen.add(key);
      extra++;
    }
  }
  return { targets: [...chosen], nextCursor: (start + sample) % keys.length };
}

/**
 * Answers probe requests on `port` with the request and this node's overlay
 * MTU, over IPv4 and IPv6: one socket each (the IPv6 one `ipv6Only`), so a
 * kernel without IPv6 still answers over IPv4.
 */
export class ProbeResponder {
  private sockets: Socket[] = [];

  constructor(
    private readonly port: number,
    private readonly mtu: () => number,
    private readonly log: Logger = silentLogger(),
  ) {}

  /**
   * Binds both families. The IPv4 socket failing fails start(), as does the
   * IPv6 port being taken; a kernel without IPv6 (no socket, no `::`) is only
   * logged: peers' IPv6 probes then go unanswered.
   */
  async start(): Promise<void> {
    this.sockets.push(await this.bind('udp4'));
    try {
      this.sockets.push(await this.bind('udp6'));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
        this.close();
        throw err;
      }
      this.log.warn(`probe responder: no IPv6 (${(err as Error).message}); IPv6 probes from peers go unanswered`);
    }
  }

  private async bind(type: SocketType): Promise<Socket> {
    const socket = createSocket(type === 'udp6' ? { type, ipv6Only: true } : { type });
    socket.on('message', (msg, rinfo) => {
      if (msg.length > MAX_REQUEST_BYTES || !msg.toString('latin1').startsWith(MAGIC)) return;
      socket.send(`${msg.toString('latin1')} mtu=${this.mtu()}`, rinfo.port, rinfo.address);
    });
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once('error', reject);
        socket.bind(this.port, () => (socket.off('error', reject), resolve()));
      });
    } catch (err) {
      socket.close();
      throw err;
    }
    socket.on('error', (err) => this.log.warn(`probe responder: ${err.message}`));
    return socket;
  }

  /** Stops answering (nothing is in flight: each answer is one send). */
  close(): void {
    for (const socket of this.sockets) socket.close();
    this.sockets = [];
  }
}

/** An echo over one path: weft's UDP echo (ProbeClient) or ICMP (daemon/icmp.ts). */
export interface EchoClient {
  /** Resolves with the RTT, or `ok: false` after `timeoutMs`; `mtu` is what a weft responder told. */
  echo(ip: string, timeoutMs: number): Promise<PathResult & { mtu: number | null }>;
  /** Graceful: echoes in flight finish first. */
  close(): Promise<void>;
}

/** Sends echo requests from one socket per family (opened at its first echo) and matches answers by token. */
export class ProbeClient implements EchoClient {
  private readonly sockets = new Map<SocketType, Socket>();
  private readonly pending = new Map<string, (answer: { mtu: number | null }) => void>();
  private readonly session = randomBytes(4).toString('hex');
  private seq = 0;
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(private readonly port: number) {}

  /** The socket for `ip`'s family: udp6 for an IPv6 address, else udp4. */
  private socketFor(ip: string): Socket {
    const type: SocketType = isIPv6(ip) ? 'udp6' : 'udp4';
    let socket = this.sockets.get(type);
    if (!socket) {
      socket = createSocket(type);
      socket.on('error', () => undefined); // send errors surface as timeouts of that probe
      socket.on('message', (msg) => {
        const text = msg.toString('latin1');
        const token = text.split(' ')[1];
        const resolve = token ? this.pending.get(token) : undefined;
        if (!resolve) return;
        const mtu = /mtu=(\d+)/.exec(text);
        resolve({ mtu: mtu ? Number(mtu[1]) : null });
      });
      this.sockets.set(type, socket);
    }
    return socket;
  }

  /** One echo to `ip`; resolves with the RTT, or `ok: false` after `timeoutMs`. */
  echo(ip: string, timeoutMs: number): Promise<PathResult & { mtu: number | null }> {
    if (this.closed) return Promise.reject(new WeftError('WEFT_ERR_INVALID_STATE', 'probe client is closed'));
    const probe = this.probe(ip, timeoutMs);
    this.inFlight.add(probe);
    return probe.finally(() => this.inFlight.delete(probe));
  }

  private async probe(ip: string, timeoutMs: number): Promise<PathResult & { mtu: number | null }> {
    const token = `${this.session}.${++this.seq}`;
    const t0 = process.hrtime.bigint();
    try {
      const answer = await new Promise<{ mtu: number | null } | null>((resolve) => {
        const timer = setTimeout(() => resolve(null), timeoutMs);
        this.pending.set(token, (a) => (clearTimeout(timer), resolve(a)));
        this.socketFor(ip).send(`${MAGIC}${token}`, this.port, ip, (err) => err && (clearTimeout(timer), resolve(null)));
      });
      if (!answer) return { ok: false, rttMs: null, mtu: null };
      return { ok: true, rttMs: Number(process.hrtime.bigint() - t0) / 1e6, mtu: answer.mtu };
    } finally {
      this.pending.delete(token);
    }
  }

  /** Graceful: echoes in flight get their answer or time out, then the sockets close. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
    for (const socket of this.sockets.values()) socket.close();
    this.sockets.clear();
  }
}

export interface PeerProberOptions {
  readonly port: number;
  readonly intervalMs: number;
  /** Most peers probed per round in rotation (failing peers come on top, as many again at most). */
  readonly sample: number;
  /** The peer leases as the watcher holds them. */
  readonly peers: () => ReadonlyMap<string, Lease>;
  /** This node's overlay MTU, told to prober peers. */
  readonly mtu: () => number;
  /** VXLAN UDP port, for the diagnosis text. */
  readonly vxlanPort?: number;
  /** The families the network enables (IPv4 first); a peer is probed in each of them its lease has. Default: both. */
  readonly families?: readonly Family[];
  /**
   * Rounds start once this resolves: the peers are programmed. Before that an
   * overlay probe finds no route and reports a healthy peer as blocked. The
   * responder answers other nodes from the start.
   */
  readonly peersProgrammed?: Promise<unknown>;
  /** Opens the ICMP echo of a family, ICMPv6 for 6 (tests stand in for it); the default opens a raw socket through raw-socket. */
  readonly openIcmp?: (family: Family) => { client: EchoClient } | { reason: string };
  readonly log?: Logger;
}

/** One family's probe targets of a peer. */
interface PeerPath {
  readonly family: Family;
  /** The peer's subnet of the family: its network address is the overlay target. */
  readonly subnet: string;
  readonly overlayIP: string;
  readonly publicIP: string;
}

/** The ICMP clients by family, or one client for every family (tests). */
type IcmpClients = EchoClient | ReadonlyMap<Family, EchoClient> | null;

/** weftd's peer-health loop: a responder for peers, and a round of probes every interval. */
export class PeerProber {
  /** By peer key, the last result of each family probed. */
  private readonly results = new Map<string, ReadonlyMap<Family, PeerHealth>>();
  private cursor = 0;
  private lastTargets: string[] = [];
  private round: ProbeRound | null = null;
  private probeMethod: { method: ProbeMethod; fallbackReason: string | null } | null = null;
  private readonly log: Logger;
  /** The families probed, IPv4 first. */
  readonly families: readonly Family[];

  constructor(private readonly options: PeerProberOptions) {
    this.log = options.log ?? silentLogger();
    this.families = ([4, 6] as const).filter((f) => (options.families ?? [4, 6]).includes(f));
  }

  /**
   * Runs until `signal` aborts. The responder failing to bind (port taken)
   * disables probing with an error, not weftd. ICMP where a raw socket can
   * be opened, else the UDP echo (see the top of this file).
   */
  async run(signal: AbortSignal): Promise<void> {
    const responder = new ProbeResponder(this.options.port, this.options.mtu, this.log);
    try {
      await responder.start();
    } catch (err) {
      this.log.error(`peer probing off: cannot bind UDP ${this.options.port}: ${(err as Error).message}`);
      return;
    }
    const client = new ProbeClient(this.options.port);
    const icmp = this.openIcmp();
    if (this.probeMethod?.method === 'icmp') this.log.info('peer probes: ICMP echo over underlay and overlay');
    else this.log.warn(`peer probes: UDP echo to weft's responder (${this.probeMethod?.fallbackReason}); peers without weft show as unanswered`);
    try {
      // However it settles, rounds may start then.
      const programmed = this.options.peersProgrammed;
      if (programmed) await unlessAborted(programmed, signal).catch(() => undefined);
      while (!signal.aborted) {
        await this.probeRound(client, icmp).catch((err: Error) => this.log.warn(`probe round failed: ${err.message}`));
        await delay(this.options.intervalMs, signal).catch(() => undefined);
      }
    } finally {
      await Promise.all([client.close(), ...[...icmp.values()].map((c) => c.close())]);
      responder.close();
    }
  }

  /**
   * ICMP (ICMPv6) of each family probed, and the method to report: ICMP when
   * every family has it, else the UDP echo and why; a family without ICMP
   * probes with the UDP echo on both paths.
   */
  private openIcmp(): Map<Family, EchoClient> {
    const open = this.options.openIcmp ?? ((family: Family) => openIcmpClient(undefined, family));
    const clients = new Map<Family, EchoClient>();
    const reasons = new Map<Family, string>();
    for (const family of this.families) {
      const opened = open(family);
      if ('client' in opened) clients.set(family, opened.client);
      else reasons.set(family, opened.reason);
    }
    const distinct = [...new Set(reasons.values())];
    const fallbackReason =
      distinct.length === 0 ? null : distinct.length === 1 && reasons.size === this.families.length ? distinct[0]! : [...reasons].map(([f, r]) => `${familyName(f)}: ${r}`).join('; ');
    this.probeMethod = fallbackReason === null ? { method: 'icmp', fallbackReason: null } : { method: 'udp', fallbackReason };
    return clients;
  }

  /** The echo in use and, for the UDP echo, why not ICMP; null until run() starts. */
  get method(): { readonly method: ProbeMethod; readonly fallbackReason: string | null } | null {
    return this.probeMethod;
  }

  /** Last result of every current peer that has been probed, one per family (IPv4 first). */
  health(): PeerHealth[] {
    return [...this.results.values()].flatMap((byFamily) => [...byFamily.values()]);
  }

  /** For /status: at most `limit` results, unhealthy peers first, so a large cluster's document stays small. */
  healthForStatus(limit = 1000): PeerHealth[] {
    const all = this.health();
    return [...all.filter((h) => h.verdict !== 'ok'), ...all.filter((h) => h.verdict === 'ok')].slice(0, limit);
  }

  /** Results of the last round's targets: the bounded set metrics label by peer. */
  lastRoundHealth(): PeerHealth[] {
    return this.lastTargets.flatMap((k) => [...(this.results.get(k)?.values() ?? [])]);
  }

  /** What a peer's lease gives to probe: each family probed that has both a subnet and a public IP in the lease. */
  private pathsOf(lease: Lease): PeerPath[] {
    const paths: PeerPath[] = [];
    for (const family of this.families) {
      const subnet = subnetOf(lease, family);
      const publicIP = publicIPOf(lease.attrs, family);
      if (subnet && publicIP) paths.push({ family, subnet: subnet.toString(), overlayIP: subnet.ip, publicIP });
    }
    return paths;
  }

  get lastRound(): ProbeRound | null {
    return this.round;
  }

  /**
   * One round over this round's targets, each in every family its lease has.
   * With ICMP for a family, ICMP echoes on both paths and a UDP echo over the
   * underlay (the peer's MTU when it runs weft; an answer also proves the
   * underlay); without, the UDP echo on both. `icmp`: the clients by family,
   * or one for all.
   */
  async probeRound(client: EchoClient, icmp: IcmpClients = null): Promise<void> {
    const peers = this.options.peers();
    for (const key of this.results.keys()) if (!peers.has(key)) this.results.delete(key);
    const failing = new Set([...this.results].filter(([, byFamily]) => [...byFamily.values()].some((h) => h.verdict !== 'ok')).map(([k]) => k));
    const { targets, nextCursor } = pickTargets([...peers.keys()].sort(), this.cursor, this.options.sample, failing);
    this.cursor = nextCursor;
    const timeoutMs = Math.min(1000, Math.max(100, this.options.intervalMs / 2));
    const icmpOf = (family: Family): EchoClient | null => (icmp instanceof Map ? (icmp.get(family) ?? null) : (icmp as EchoClient | null));
    await Promise.all(
      targets.map(async (key) => {
        const lease = peers.get(key);
        if (!lease) return;
        const records = await Promise.all(this.pathsOf(lease).map((path) => this.probePath(key, path, client, icmpOf(path.family), timeoutMs)));
        // A family the lease no longer has loses its record here.
        this.results.set(key, new Map(records.map((h) => [h.family, h])));
      }),
    );
    this.lastTargets = targets;
    this.round = { at: new Date().toISOString(), probed: targets.length, peers: peers.size, sampled: targets.length < peers.size };
  }

  /** One family's probes of peer `key`: underlay and overlay, and the verdict. */
  private async probePath(key: string, path: PeerPath, client: EchoClient, icmp: EchoClient | null, timeoutMs: number): Promise<PeerHealth> {
    const { family, publicIP, overlayIP } = path;
    let underlay: PathResult, overlay: PathResult, mtu: number | null;
    if (icmp) {
      const [icmpUnder, icmpOver, udpUnder] = await Promise.all([icmp.echo(publicIP, timeoutMs), icmp.echo(overlayIP, timeoutMs), client.echo(publicIP, timeoutMs)]);
      underlay = icmpUnder.ok ? icmpUnder : udpUnder;
      overlay = icmpOver;
      mtu = udpUnder.mtu;
    } else {
      const [udpUnder, udpOver] = await Promise.all([client.echo(publicIP, timeoutMs), client.echo(overlayIP, timeoutMs)]);
      [underlay, overlay, mtu] = [udpUnder, udpOver, udpOver.mtu ?? udpUnder.mtu];
    }
    const method: ProbeMethod = icmp ? 'icmp' : 'udp';
    const { verdict, diagnosis } = diagnose(underlay.ok, overlay.ok, this.options.vxlanPort, method);
    const previous = this.results.get(key)?.get(family)?.verdict;
    if (previous !== verdict && (verdict !== 'ok' || previous !== undefined)) this.log.warn(`peer ${path.subnet} (${publicIP}): ${diagnosis}`);
    return {
      family,
      subnet: path.subnet,
      publicIP,
      underlay: { ok: underlay.ok, rttMs: underlay.rttMs },
      overlay: { ok: overlay.ok, rttMs: overlay.rttMs },
      mtu,
      verdict,
      diagnosis,
      checkedAt: new Date().toISOString(),
    };
  }
}
