import { expect } from 'chai';
import { FAULT_KINDS, KIND_NAMES, Rng, kindOf, planRound, selectKinds } from '../bench/soak-schedule.js';
import { thrown } from './harness/thrown.js';

describe('bench/soak-schedule: the soak\'s fault kinds and seeded rounds', () => {
  it('the same seed gives the same numbers; another seed others', () => {
    const draw = (seed: number) => Array.from({ length: 8 }, ((r) => () => r.next())(new Rng(seed)));
    expect(draw(42)).to.deep.equal(draw(42));
    expect(draw(42)).to.not.deep.equal(draw(43));
    for (const x of draw(7)) expect(x).to.be.at.least(0).and.below(1);
    const r = new Rng(1);
    for (let i = 0; i < 200; i++) expect(r.int(3, 5)).to.be.oneOf([3, 4, 5]);
  });

  it('selects kinds by --faults and --exclude, and names the kinds when one is unknown', () => {
    expect(selectKinds(null)).to.deep.equal(KIND_NAMES);
    expect(selectKinds(['partition', 'compact'])).to.deep.equal(['compact', 'partition']);
    expect(selectKinds(null, ['partition'])).to.not.include('partition');
    expect(selectKinds(null, ['partition'])).to.have.length(KIND_NAMES.length - 1);
    const err = thrown(() => selectKinds(['partiton'])) as { code?: string; message: string };
    expect(err.code).to.equal('WEFT_ERR_OPTION_INVALID');
    expect(err.message).to.match(/unknown fault kind "partiton"; kinds: weftd-kill, /);
    expect((thrown(() => selectKinds(['compact'], ['compact'])) as { code?: string }).code).to.equal('WEFT_ERR_OPTION_INVALID');
    expect(kindOf('device-del').bound).to.equal('host-until-repaired');
  });

  it('every kind the issue lists is there, each with a stated loss bound', () => {
    for (const k of ['weftd-kill', 'etcd-kill', 'etcd-leader-kill', 'compact', 'lease-delete', 'route-del', 'neigh-del', 'fdb-del', 'chain-del', 'device-del', 'link-flap', 'partition', 'node-replace', 'lease-malformed', 'lease-overlap', 'lease-bad-publicip', 'lease-conflict-mac', 'lease-conflict-ip']) {
      expect(KIND_NAMES, k).to.include(k);
    }
    for (const k of FAULT_KINDS) expect(['none', 'pair-until-repaired', 'host-until-repaired']).to.include(k.bound);
    expect(FAULT_KINDS.filter((k) => k.bound === 'none').map((k) => k.name)).to.include.members(['weftd-kill', 'etcd-kill', 'etcd-leader-kill', 'partition', 'lease-conflict-mac']);
  });

  it('plans rounds the seed replays: 1-3 faults, host faults on distinct live hosts, one etcd member down and one node replaced at most', () => {
    const live = [1, 2, 3, 4, 5];
    const rounds = (seed: number) => {
      const rng = new Rng(seed);
      return Array.from({ length: 300 }, () => planRound(rng, KIND_NAMES, live));
    };
    expect(rounds(9)).to.deep.equal(rounds(9));
    for (const plan of rounds(9)) {
      expect(plan.length).to.be.within(0, 3);
      const hosts = plan.filter((f) => f.host !== null).map((f) => f.host!);
      expect(new Set(hosts).size, JSON.stringify(plan)).to.equal(hosts.length);
      for (const h of hosts) expect(live).to.include(h);
      expect(plan.filter((f) => f.kind.startsWith('etcd-')).length).to.be.at.most(1);
      expect(plan.filter((f) => f.kind === 'node-replace').length).to.be.at.most(1);
      for (const f of plan) {
        expect(f.atMs).to.be.within(0, 3000);
        if (['route-del', 'neigh-del', 'fdb-del'].includes(f.kind)) expect(f.peer).to.be.oneOf(live.filter((h) => h !== f.host));
        else expect(f.peer).to.equal(null);
        expect(f.host === null, f.kind).to.equal(!kindOf(f.kind).host);
      }
      expect(plan.map((f) => f.atMs)).to.deep.equal([...plan.map((f) => f.atMs)].sort((a, b) => a - b));
    }
    const seen = new Set(rounds(9).flat().map((f) => f.kind));
    expect([...seen].sort()).to.deep.equal([...KIND_NAMES].sort());
  });
});
