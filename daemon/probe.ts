/**
 * Peer health: every round, weftd sends one echo request to each sampled
 * peer twice, once over the underlay (to the peer's PublicIP) and once over
 * the overlay (to `<subnet>.0`, the peer's VXLAN device address, which the
 * kernel routes through this node's VXLAN device).
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
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { unlessAborted } from '../common/abort.js';
import { delay } from '../common/backoff.js';
import { WeftError } from '../common/errors.js';
import { silentLogger, type Logger } from '../common/log.js';
import type { Lease } from '../lease/types.js';
import { VXLAN_DEFAULT_PORT } from '../common/defaults.js';
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

/** Answers probe requests on `port` with the request and this node's overlay MTU. */
export class ProbeResponder {
  private socket: Socket | null = null;

  constructor(
    private readonly port: number,
    private readonly mtu: () => number,
    private readonly log: Logger = silentLogger(),
  ) {}

  async start(): Promise<void> {
    const socket = createSocket('udp4');
    socket.on('error', (err) => this.log.warn(`probe responder: ${err.message}`));
    socket.on('message', (msg, rinfo) => {
      if (msg.length > MAX_REQUEST_BYTES || !msg.toString('latin1').startsWith(MAGIC)) return;
      socket.send(`${msg.toString('latin1')} mtu=${this.mtu()}`, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.port, () => (socket.off('error', reject), resolve()));
    });
    this.socket = socket;
  }

  /** Stops answering (nothing is in flight: each answer is one send). */
  close(): void {
    this.socket?.close();
    this.socket = null;
  }
}

/** An echo over one path: weft's UDP echo (ProbeClient) or ICMP (daemon/icmp.ts). */
export interface EchoClient {
  /** Resolves with the RTT, or `ok: false` after `timeoutMs`; `mtu` is what a weft responder told. */
  echo(ip: string, timeoutMs: number): Promise<PathResult & { mtu: number | null }>;
  /** Graceful: echoes in flight finish first. */
  close(): Promise<void>;
}

/** Sends echo requests from one socket and matches answers by token. */
export class ProbeClient implements EchoClient {
  private readonly socket = createSocket('udp4');
  private readonly pending = new Map<string, (answer: { mtu: number | null }) => void>();
  private readonly session = randomBytes(4).toString('hex');
  private seq = 0;
  private readonly inFlight = new Set<Promise<unknown>>();
  private closed = false;

  constructor(private readonly port: number) {
    this.socket.on('error', () => undefined); // send errors surface as timeouts of that probe
    this.socket.on('message', (msg) => {
      const text = msg.toString('latin1');
      const token = text.split(' ')[1];
      const resolve = token ? this.pending.get(token) : undefined;
      if (!resolve) return;
      const mtu = /mtu=(\d+)/.exec(text);
      resolve({ mtu: mtu ? Number(mtu[1]) : null });
    });
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
        this.socket.send(`${MAGIC}${token}`, this.port, ip, (err) => err && (clearTimeout(timer), resolve(null)));
      });
      if (!answer) return { ok: false, rttMs: null, mtu: null };
      return { ok: true, rttMs: Number(process.hrtime.bigint() - t0) / 1e6, mtu: answer.mtu };
    } finally {
      this.pending.delete(token);
    }
  }

  /** Graceful: echoes in flight get their answer or time out, then the socket closes. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.allSettled([...this.inFlight]);
    this.socket.close();
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
  /**
   * Rounds start once this resolves: the peers are programmed. Before that an
   * overlay probe finds no route and reports a healthy peer as blocked. The
   * responder answers other nodes from the start.
   */
  readonly peersProgrammed?: Promise<unknown>;
  /** Opens the ICMP echo (tests stand in for it); the default opens a raw socket through raw-socket. */
  readonly openIcmp?: () => { client: EchoClient } | { reason: string };
  readonly log?: Logger;
}

/** weftd's peer-health loop: a responder for peers, and a round of probes every interval. */
export class PeerProber {
  private readonly results = new Map<string, PeerHealth>();
  private cursor = 0;
  private lastTargets: string[] = [];
  private round: ProbeRound | null = null;
  private probeMethod: { method: ProbeMethod; fallbackReason: string | null } | null = null;
  private readonly log: Logger;

  constructor(private readonly options: PeerProberOptions) {
    this.log = options.log ?? silentLogger();
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
    const opened = (this.options.openIcmp ?? openIcmpClient)();
    const icmp = 'client' in opened ? opened.client : null;
    this.probeMethod = 'client' in opened ? { method: 'icmp', fallbackReason: null } : { method: 'udp', fallbackReason: opened.reason };
    if (icmp) this.log.info('peer probes: ICMP echo over underlay and overlay');
    else this.log.warn(`peer probes: UDP echo to weft's responder (${this.probeMethod.fallbackReason}); peers without weft show as unanswered`);
    try {
      // However it settles, rounds may start then.
      const programmed = this.options.peersProgrammed;
      if (programmed) await unlessAborted(programmed, signal).catch(() => undefined);
      while (!signal.aborted) {
        await this.probeRound(client, icmp).catch((err: Error) => this.log.warn(`probe round failed: ${err.message}`));
        await delay(this.options.intervalMs, signal).catch(() => undefined);
      }
    } finally {
      await Promise.all([client.close(), icmp?.close()]);
      responder.close();
    }
  }

  /** The echo in use and, for the UDP echo, why not ICMP; null until run() starts. */
  get method(): { readonly method: ProbeMethod; readonly fallbackReason: string | null } | null {
    return this.probeMethod;
  }

  /** Last result of every current peer that has been probed. */
  health(): PeerHealth[] {
    return [...this.results.values()];
  }

  /** For /status: at most `limit` results, unhealthy peers first, so a large cluster's document stays small. */
  healthForStatus(limit = 1000): PeerHealth[] {
    const all = this.health();
    return [...all.filter((h) => h.verdict !== 'ok'), ...all.filter((h) => h.verdict === 'ok')].slice(0, limit);
  }

  /** Results of the last round's targets: the bounded set metrics label by peer. */
  lastRoundHealth(): PeerHealth[] {
    return this.lastTargets.map((k) => this.results.get(k)).filter((h): h is PeerHealth => h !== undefined);
  }

  get lastRound(): ProbeRound | null {
    return this.round;
  }

  /**
   * One round over this round's targets. With `icmp`, ICMP echoes on both
   * paths and a UDP echo over the underlay (the peer's MTU when it runs weft;
   * an answer also proves the underlay); without, the UDP echo on both.
   */
  async probeRound(client: EchoClient, icmp: EchoClient | null = null): Promise<void> {
    const peers = this.options.peers();
    for (const key of this.results.keys()) if (!peers.has(key)) this.results.delete(key);
    const failing = new Set([...this.results].filter(([, h]) => h.verdict !== 'ok').map(([k]) => k));
    const { targets, nextCursor } = pickTargets([...peers.keys()].sort(), this.cursor, this.options.sample, failing);
    this.cursor = nextCursor;
    const timeoutMs = Math.min(1000, Math.max(100, this.options.intervalMs / 2));
    const method: ProbeMethod = icmp ? 'icmp' : 'udp';
    await Promise.all(
      targets.map(async (key) => {
        const lease = peers.get(key);
        if (!lease?.subnet.ip) return;
        const publicIP = lease.attrs.PublicIP;
        let underlay: PathResult, overlay: PathResult, mtu: number | null;
        if (icmp) {
          const [icmpUnder, icmpOver, udpUnder] = await Promise.all([icmp.echo(publicIP, timeoutMs), icmp.echo(lease.subnet.ip, timeoutMs), client.echo(publicIP, timeoutMs)]);
          underlay = icmpUnder.ok ? icmpUnder : udpUnder;
          overlay = icmpOver;
          mtu = udpUnder.mtu;
        } else {
          const [udpUnder, udpOver] = await Promise.all([client.echo(publicIP, timeoutMs), client.echo(lease.subnet.ip, timeoutMs)]);
          [underlay, overlay, mtu] = [udpUnder, udpOver, udpOver.mtu ?? udpUnder.mtu];
        }
        const { verdict, diagnosis } = diagnose(underlay.ok, overlay.ok, this.options.vxlanPort, method);
        const previous = this.results.get(key)?.verdict;
        if (previous !== verdict && (verdict !== 'ok' || previous !== undefined)) this.log.warn(`peer ${key} (${publicIP}): ${diagnosis}`);
        this.results.set(key, {
          subnet: key,
          publicIP,
          underlay: { ok: underlay.ok, rttMs: underlay.rttMs },
          overlay: { ok: overlay.ok, rttMs: overlay.rttMs },
          mtu,
          verdict,
          diagnosis,
          checkedAt: new Date().toISOString(),
        });
      }),
    );
    this.lastTargets = targets;
    this.round = { at: new Date().toISOString(), probed: targets.length, peers: peers.size, sampled: targets.length < peers.size };
  }
}
