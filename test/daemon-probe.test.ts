import { expect } from 'chai';
import { PeerProber, ProbeClient, ProbeResponder, diagnose, pickTargets } from '../daemon/probe.js';
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
});
