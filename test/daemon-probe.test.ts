import { expect } from 'chai';
import { PeerProber, ProbeClient, ProbeResponder, diagnose, pickTargets, type EchoClient } from '../daemon/probe.js';
import { Subnet } from '../common/subnet.js';
import type { Lease } from '../lease/types.js';
import { freePort } from './harness/etcd.js';

describe('peer probing', () => {
  it('diagnoses the four path combinations', () => {
    expect(diagnose(true, true).verdict).to.equal('ok');
    const blocked = diagnose(true, false, 8472);
    expect(blocked.verdict).to.equal('overlay-blocked');
    expect(blocked.diagnosis).to.match(/^underlay OK but overlay blocked: VXLAN \(UDP 8472\)/);
    expect(diagnose(false, true).verdict).to.equal('underlay-filtered');
    expect(diagnose(false, false).verdict).to.equal('unreachable');
  });

  it('probes every peer when there are no more than the sample', () => {
    expect(pickTargets(['a', 'b', 'c'], 7, 3, new Set())).to.deep.equal({ targets: ['a', 'b', 'c'], nextCursor: 0 });
  });

  it('rotates a bounded sample over a large cluster and covers it all', () => {
    const keys = Array.from({ length: 5000 }, (_, i) => `k${String(i).padStart(4, '0')}`);
    const seen = new Set<string>();
    let cursor = 0;
    for (let round = 0; round < 5000 / 32 + 1; round++) {
      const { targets, nextCursor } = pickTargets(keys, cursor, 32, new Set());
      expect(targets).to.have.length(32);
      targets.forEach((t) => seen.add(t));
      cursor = nextCursor;
    }
    expect(seen.size).to.equal(5000);
  });

  it('adds failing peers on top of the rotation, at most the sample size of them', () => {
    const keys = Array.from({ length: 100 }, (_, i) => `k${String(i).padStart(3, '0')}`);
    const failing = new Set(keys.slice(50));
    const { targets } = pickTargets(keys, 0, 10, failing);
    expect(targets.slice(0, 10)).to.deep.equal(keys.slice(0, 10));
    expect(targets.slice(10)).to.deep.equal(keys.slice(50, 60));
  });

  it('echoes over UDP on loopback with the responder\'s MTU, and times out without a responder', async () => {
    const port = await freePort();
    const responder = new ProbeResponder(port, () => 1450);
    await responder.start();
    const client = new ProbeClient(port);
    try {
      const answer = await client.echo('127.0.0.1', 1000);
      expect(answer.ok).to.equal(true);
      expect(answer.mtu).to.equal(1450);
      expect(answer.rttMs).to.be.a('number').and.to.be.below(1000);
      responder.close();
      const silent = await client.echo('127.0.0.1', 200);
      expect(silent).to.deep.equal({ ok: false, rttMs: null, mtu: null });
    } finally {
      client.close();
      responder.close();
    }
  });

  it('answers peers at once but starts its own rounds only once the peers are programmed', async () => {
    const port = await freePort();
    let programmed!: () => void;
    let peerReads = 0;
    const prober = new PeerProber({
      port,
      intervalMs: 60_000,
      sample: 32,
      // No peers, so a round sends nothing; reading them is how a round shows it began.
      peers: () => (peerReads++, new Map()),
      mtu: () => 1450,
      peersProgrammed: new Promise<void>((resolve) => (programmed = resolve)),
    });
    const ac = new AbortController();
    const running = prober.run(ac.signal);
    const client = new ProbeClient(port);
    try {
      expect((await client.echo('127.0.0.1', 1000)).mtu, 'the responder answers before the peers are programmed').to.equal(1450);
      expect(peerReads).to.equal(0);
      expect(prober.lastRound).to.equal(null);
      programmed();
      const deadline = Date.now() + 2000;
      while (prober.lastRound === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(prober.lastRound).to.include({ probed: 0, peers: 0 });
    } finally {
      client.close();
      ac.abort();
      await running;
    }
  });

  it('stops while still waiting for the peers to be programmed', async () => {
    const prober = new PeerProber({ port: await freePort(), intervalMs: 60_000, sample: 32, peers: () => new Map(), mtu: () => 1450, peersProgrammed: new Promise(() => undefined) });
    const ac = new AbortController();
    const running = prober.run(ac.signal);
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    await running;
    expect(prober.lastRound).to.equal(null);
  });

  describe('by ICMP, with the UDP echo beside it or as the fallback', () => {
    /** A lease of `subnet` at `publicIP`. */
    const lease = (subnet: string, publicIP: string): Lease => ({
      subnet: Subnet.parse(subnet),
      ipv6Subnet: null,
      attrs: { PublicIP: publicIP, PublicIPv6: null, BackendType: 'vxlan' },
      key: `/coreos.com/network/subnets/${subnet.replace('/', '-')}`,
      etcdLeaseId: '1',
      modRevision: '1',
      createRevision: '1',
    });
    /** An echo client that answers for the addresses in `answering` (with `mtu`, as weft's responder would) and records what it was sent. */
    const stub = (answering: readonly string[], mtu: number | null = null): EchoClient & { sent: string[] } => {
      const sent: string[] = [];
      return {
        sent,
        echo: async (ip: string) => (sent.push(ip), answering.includes(ip) ? { ok: true, rttMs: 0.5, mtu } : { ok: false, rttMs: null, mtu: null }),
        close: async () => undefined,
      };
    };
    const prober = (peers: Map<string, Lease>) => new PeerProber({ port: 1, intervalMs: 1000, sample: 32, peers: () => peers, mtu: () => 1450 });

    it('a flanneld peer (no weft responder) answers ICMP on both paths: reachable, no MTU', async () => {
      const p = prober(new Map([['10.244.3.0/24', lease('10.244.3.0/24', '198.18.0.3')]]));
      const icmp = stub(['198.18.0.3', '10.244.3.0']);
      const udp = stub([]);
      await p.probeRound(udp, icmp);
      expect(icmp.sent.sort()).to.deep.equal(['10.244.3.0', '198.18.0.3']);
      expect(udp.sent, 'the UDP echo goes over the underlay only').to.deep.equal(['198.18.0.3']);
      expect(p.health()).to.have.length(1);
      expect(p.health()[0]).to.deep.include({ verdict: 'ok', diagnosis: 'reachable over underlay and overlay', mtu: null });
    });

    it('a weft peer tells its MTU through the UDP echo beside ICMP', async () => {
      const p = prober(new Map([['10.244.4.0/24', lease('10.244.4.0/24', '198.18.0.4')]]));
      await p.probeRound(stub(['198.18.0.4'], 1400), stub(['198.18.0.4', '10.244.4.0']));
      expect(p.health()[0]).to.deep.include({ verdict: 'ok', mtu: 1400 });
    });

    it('underlay OK but overlay blocked is diagnosed by ICMP', async () => {
      const p = prober(new Map([['10.244.3.0/24', lease('10.244.3.0/24', '198.18.0.3')]]));
      await p.probeRound(stub([]), stub(['198.18.0.3']));
      const [h] = p.health();
      expect(h!.verdict).to.equal('overlay-blocked');
      expect(h!.diagnosis).to.match(/^underlay OK but overlay blocked: VXLAN \(UDP 8472\)/);
      expect(h!.underlay.ok).to.equal(true);
      expect(h!.overlay).to.deep.equal({ ok: false, rttMs: null });
    });

    it('ICMP filtered on the underlay but weft\'s UDP echo answered there: the underlay is fine', async () => {
      const p = prober(new Map([['10.244.4.0/24', lease('10.244.4.0/24', '198.18.0.4')]]));
      await p.probeRound(stub(['198.18.0.4'], 1450), stub(['10.244.4.0']));
      expect(p.health()[0]).to.deep.include({ verdict: 'ok', mtu: 1450 });
      expect(p.health()[0]!.underlay.ok).to.equal(true);
    });

    it('says ICMP in the diagnosis of a peer that answers nothing', async () => {
      const p = prober(new Map([['10.244.3.0/24', lease('10.244.3.0/24', '198.18.0.3')]]));
      await p.probeRound(stub([]), stub([]));
      expect(p.health()[0]).to.deep.include({ verdict: 'unreachable', diagnosis: 'no answer over underlay or overlay: node down, or ICMP filtered' });
      expect(diagnose(false, true, 8472, 'icmp').diagnosis).to.contain('ICMP is filtered on the underlay');
    });

    it('without ICMP, the UDP echo probes both paths as before: a flanneld peer is unanswered, never blocked', async () => {
      const p = prober(new Map([['10.244.3.0/24', lease('10.244.3.0/24', '198.18.0.3')]]));
      const udp = stub([]);
      await p.probeRound(udp);
      expect(udp.sent.sort()).to.deep.equal(['10.244.3.0', '198.18.0.3']);
      expect(p.health()[0]).to.deep.include({ verdict: 'unreachable', diagnosis: 'no answer over underlay or overlay: node down, not running weftd, or the probe port filtered' });
    });

    it('keeps the bounded rotation: one round echoes at most the sample\'s peers, each on both paths', async () => {
      const peers = new Map(Array.from({ length: 50 }, (_, i) => [`10.244.${i}.0/24`, lease(`10.244.${i}.0/24`, `198.18.1.${i}`)] as const));
      const p = new PeerProber({ port: 1, intervalMs: 1000, sample: 8, peers: () => peers, mtu: () => 1450 });
      const icmp = stub([...peers.values()].flatMap((l) => [l.attrs.PublicIP, l.subnet.ip]));
      await p.probeRound(stub([]), icmp);
      expect(icmp.sent).to.have.length(16);
      expect(p.lastRound).to.include({ probed: 8, peers: 50, sampled: true });
    });

    it('run() says which method is in use: UDP with the reason when no raw socket opens, ICMP when one does', async () => {
      const udpOnly = new PeerProber({
        port: await freePort(), intervalMs: 60_000, sample: 32, peers: () => new Map(), mtu: () => 1450,
        openIcmp: () => ({ reason: 'raw sockets not allowed (no CAP_NET_RAW)' }),
      });
      expect(udpOnly.method).to.equal(null);
      let ac = new AbortController();
      let running = udpOnly.run(ac.signal);
      const deadline = Date.now() + 2000;
      while (udpOnly.lastRound === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(udpOnly.method).to.deep.equal({ method: 'udp', fallbackReason: 'raw sockets not allowed (no CAP_NET_RAW)' });
      ac.abort();
      await running;

      let closed = false;
      const withIcmp = new PeerProber({
        port: await freePort(), intervalMs: 60_000, sample: 32, peers: () => new Map(), mtu: () => 1450,
        openIcmp: () => ({ client: { ...stub([]), close: async () => void (closed = true) } }),
      });
      ac = new AbortController();
      running = withIcmp.run(ac.signal);
      while (withIcmp.lastRound === null && Date.now() < deadline + 2000) await new Promise((r) => setTimeout(r, 10));
      expect(withIcmp.method).to.deep.equal({ method: 'icmp', fallbackReason: null });
      ac.abort();
      await running;
      expect(closed, 'the ICMP client is closed when probing stops').to.equal(true);
    });
  });
});
