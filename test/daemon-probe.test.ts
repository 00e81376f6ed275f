import { expect } from 'chai';
import { PeerProber, ProbeClient, ProbeResponder, diagnose, pickTargets, type EchoClient } from '../daemon/probe.js';
import { Subnet } from '../common/subnet.js';
import type { Lease } from '../lease/types.js';
import { freePort } from './harness/etcd.js';

/** An echo client that answers for the addresses in `answering` (with `mtu`, as weft's responder would) and records what it was sent. */
function stub(answering: readonly string[], mtu: number | null = null): EchoClient & { sent: string[] } {
  const sent: string[] = [];
  return {
    sent,
    echo: async (ip: string) => (sent.push(ip), answering.includes(ip) ? { ok: true, rttMs: 0.5, mtu } : { ok: false, rttMs: null, mtu: null }),
    close: async () => undefined,
  };
}

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

  it('echoes over UDP on IPv6 loopback too: the responder listens on both families', async () => {
    const port = await freePort();
    const responder = new ProbeResponder(port, () => 1430);
    await responder.start();
    const client = new ProbeClient(port);
    try {
      const [v6, v4] = await Promise.all([client.echo('::1', 1000), client.echo('127.0.0.1', 1000)]);
      expect(v6).to.deep.include({ ok: true, mtu: 1430 });
      expect(v4).to.deep.include({ ok: true, mtu: 1430 });
    } finally {
      await client.close();
      responder.close();
    }
  });

  it('the responder fails to start when the IPv6 port is taken, and leaves the IPv4 port free again', async () => {
    const port = await freePort();
    const { createSocket } = await import('node:dgram');
    const squatter = createSocket({ type: 'udp6', ipv6Only: true });
    await new Promise<void>((resolve) => squatter.bind(port, '::', resolve));
    try {
      const responder = new ProbeResponder(port, () => 1450);
      const err = await responder.start().then(() => null, (e: NodeJS.ErrnoException) => e);
      expect(err?.code).to.equal('EADDRINUSE');
      const again = new ProbeResponder(port, () => 1450);
      squatter.close();
      await again.start();
      again.close();
    } finally {
      try {
        squatter.close();
      } catch {
        /* closed above */
      }
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

    it('records the family of each result; an IPv4 peer has one record', async () => {
      const p = prober(new Map([['10.244.3.0/24', lease('10.244.3.0/24', '198.18.0.3')]]));
      await p.probeRound(stub([]), stub(['198.18.0.3', '10.244.3.0']));
      expect(p.health().map((h) => [h.family, h.subnet, h.publicIP])).to.deep.equal([[4, '10.244.3.0/24', '198.18.0.3']]);
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

  describe('per family: dual-stack and IPv6-only peers', () => {
    /** A lease with an IPv4 part (`subnet`/`publicIP`, or null for IPv6-only) and an IPv6 part (or null). */
    const lease = (v4: [string, string] | null, v6: [string, string | null] | null): Lease => ({
      subnet: Subnet.parse(v4 ? v4[0] : '0.0.0.0/0'),
      ipv6Subnet: v6 ? Subnet.parse(v6[0]) : null,
      attrs: { PublicIP: v4 ? v4[1] : '0.0.0.0', PublicIPv6: v6 ? v6[1] : null, BackendType: 'vxlan' },
      key: '/coreos.com/network/subnets/x',
      etcdLeaseId: '1',
      modRevision: '1',
      createRevision: '1',
    });
    const dual = lease(['10.244.3.0/24', '198.18.0.3'], ['fd00:10:244:3::/64', '2001:2::3']);
    const v6only = lease(null, ['fd00:10:244:5::/64', '2001:2::5']);

    it('a dual-stack peer is probed in both families, each to its own public IP and subnet address, one record each', async () => {
      const p = new PeerProber({ port: 1, intervalMs: 1000, sample: 32, peers: () => new Map([['10.244.3.0/24', dual]]), mtu: () => 1430 });
      const icmp4 = stub(['198.18.0.3', '10.244.3.0']);
      const icmp6 = stub(['2001:2::3']);
      const udp = stub(['198.18.0.3', '2001:2::3'], 1430);
      await p.probeRound(udp, new Map([[4, icmp4], [6, icmp6]]));
      expect(icmp4.sent.sort()).to.deep.equal(['10.244.3.0', '198.18.0.3']);
      expect(icmp6.sent.sort(), 'ICMPv6 to the PublicIPv6 and the IPv6 subnet\'s network address').to.deep.equal(['2001:2::3', 'fd00:10:244:3::']);
      expect(udp.sent.sort()).to.deep.equal(['198.18.0.3', '2001:2::3']);
      const [v4, v6] = p.health();
      expect(v4).to.deep.include({ family: 4, subnet: '10.244.3.0/24', publicIP: '198.18.0.3', verdict: 'ok', mtu: 1430 });
      expect(v6).to.deep.include({ family: 6, subnet: 'fd00:10:244:3::/64', publicIP: '2001:2::3', verdict: 'overlay-blocked', mtu: 1430 });
      expect(p.lastRoundHealth().map((h) => h.family)).to.deep.equal([4, 6]);
      expect(p.healthForStatus()[0], 'the unhealthy family first').to.include({ family: 6 });
    });

    it('an IPv6-only peer is never probed at 0.0.0.0 or its placeholder subnet', async () => {
      const p = new PeerProber({ port: 1, intervalMs: 1000, sample: 32, peers: () => new Map([['fd00:10:244:5::/64', v6only]]), mtu: () => 1430 });
      const icmp = stub(['2001:2::5', 'fd00:10:244:5::']);
      const udp = stub([]);
      await p.probeRound(udp, icmp);
      expect(icmp.sent.sort()).to.deep.equal(['2001:2::5', 'fd00:10:244:5::']);
      expect(udp.sent).to.deep.equal(['2001:2::5']);
      expect(p.health()).to.have.length(1);
      expect(p.health()[0]).to.deep.include({ family: 6, subnet: 'fd00:10:244:5::/64', publicIP: '2001:2::5', verdict: 'ok' });
      // Without ICMP, the UDP echo goes over IPv6 on both paths, still never to 0.0.0.0.
      const udpOnly = stub([]);
      await p.probeRound(udpOnly);
      expect(udpOnly.sent.sort()).to.deep.equal(['2001:2::5', 'fd00:10:244:5::']);
    });

    it('probes only the families the network enables, and none a lease lacks a public IP for', async () => {
      const peers = new Map([['10.244.3.0/24', dual], ['10.244.4.0/24', lease(['10.244.4.0/24', '198.18.0.4'], ['fd00:10:244:4::/64', null])]]);
      const v4only = new PeerProber({ port: 1, intervalMs: 1000, sample: 32, peers: () => peers, mtu: () => 1450, families: [4] });
      const icmp = stub([]);
      await v4only.probeRound(stub([]), icmp);
      expect(icmp.sent.filter((ip) => ip.includes(':'))).to.deep.equal([]);
      const both = new PeerProber({ port: 1, intervalMs: 1000, sample: 32, peers: () => peers, mtu: () => 1450, families: [6, 4] });
      expect(both.families, 'IPv4 first').to.deep.equal([4, 6]);
      await both.probeRound(stub([]), stub([]));
      expect(both.health().map((h) => `${h.subnet} ${h.family}`).sort()).to.deep.equal(['10.244.3.0/24 4', '10.244.4.0/24 4', 'fd00:10:244:3::/64 6']);
    });

    it('a peer failing in one family only counts as failing, and a family its lease lost loses its record', async () => {
      let current = new Map([['10.244.3.0/24', dual]]);
      const p = new PeerProber({ port: 1, intervalMs: 1000, sample: 32, peers: () => current, mtu: () => 1450 });
      await p.probeRound(stub([]), stub(['198.18.0.3', '10.244.3.0', '2001:2::3']));
      expect(p.health().map((h) => h.verdict)).to.deep.equal(['ok', 'overlay-blocked']);
      current = new Map([['10.244.3.0/24', lease(['10.244.3.0/24', '198.18.0.3'], null)]]);
      await p.probeRound(stub([]), stub(['198.18.0.3', '10.244.3.0']));
      expect(p.health().map((h) => h.family)).to.deep.equal([4]);
    });

    it('run() opens ICMP per family and reports ICMP only when every family has it', async () => {
      const opened: number[] = [];
      const run = async (families: readonly (4 | 6)[], open: (f: 4 | 6) => { client: EchoClient } | { reason: string }) => {
        const p = new PeerProber({ port: await freePort(), intervalMs: 60_000, sample: 32, peers: () => new Map(), mtu: () => 1450, families, openIcmp: open });
        const ac = new AbortController();
        const running = p.run(ac.signal);
        const deadline = Date.now() + 2000;
        while (p.lastRound === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
        ac.abort();
        await running;
        return p.method;
      };
      expect(await run([4, 6], (f) => (opened.push(f), { client: stub([]) }))).to.deep.equal({ method: 'icmp', fallbackReason: null });
      expect(opened).to.deep.equal([4, 6]);
      expect(await run([4, 6], () => ({ reason: 'raw sockets not allowed (no CAP_NET_RAW)' }))).to.deep.equal({ method: 'udp', fallbackReason: 'raw sockets not allowed (no CAP_NET_RAW)' });
      expect(await run([4, 6], (f) => (f === 6 ? { reason: 'no raw ICMPv6 socket (Address family not supported by protocol)' } : { client: stub([]) }))).to.deep.equal({
        method: 'udp',
        fallbackReason: 'IPv6: no raw ICMPv6 socket (Address family not supported by protocol)',
      });
      opened.length = 0;
      expect(await run([6], (f) => (opened.push(f), { client: stub([]) }))).to.deep.equal({ method: 'icmp', fallbackReason: null });
      expect(opened, 'an IPv6-only network opens no IPv4 raw socket').to.deep.equal([6]);
    });
  });
});
