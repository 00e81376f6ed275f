import { expect } from 'chai';
import { isWeftError } from '../common/errors.js';
import { WatchLiveness, type LivenessVerdict } from '../lease/watch-liveness.js';

describe('watch liveness (pure)', () => {
  const bounds = { progressAfterMs: 3000, staleAfterMs: 6000 };

  it('asks for progress once per silence, and calls the watch stale when the silence outlasts the bound', () => {
    // [ms of silence, expected verdict]
    const steps: [number, LivenessVerdict][] = [
      [1000, 'wait'],
      [2999, 'wait'],
      [3000, 'ask'],
      [4000, 'wait'], // asked already: once is enough, etcd answers at once
      [5999, 'wait'],
      [6000, 'stale'],
      [7000, 'stale'],
    ];
    const l = new WatchLiveness(bounds, 0);
    for (const [t, want] of steps) expect(l.check(t), `at ${t} ms`).to.equal(want);
  });

  it('anything heard (an event, a progress answer, a confirmation) starts the silence over and allows a new question', () => {
    const l = new WatchLiveness(bounds, 0);
    expect(l.check(3000)).to.equal('ask');
    l.heard(3500); // the progress answer
    expect(l.check(5999)).to.equal('wait');
    expect(l.check(6500)).to.equal('ask');
    l.heard(6501);
    expect(l.check(9600)).to.equal('ask');
    expect(l.check(12_000)).to.equal('wait');
    expect(l.check(12_501)).to.equal('stale');
    expect(l.silentMs(12_501)).to.equal(6000);
  });

  it('an out-of-order clock reading never moves the last sign of life back', () => {
    const l = new WatchLiveness(bounds, 0);
    l.heard(5000);
    l.heard(4000);
    expect(l.silentMs(6000)).to.equal(1000);
  });

  it('says when the next verdict can change, so a timer need not poll', () => {
    const l = new WatchLiveness(bounds, 0);
    expect(l.nextCheckInMs(0)).to.equal(3000);
    expect(l.nextCheckInMs(1000)).to.equal(2000);
    expect(l.check(3000)).to.equal('ask');
    expect(l.nextCheckInMs(3000)).to.equal(3000);
    expect(l.nextCheckInMs(7000)).to.equal(0);
  });

  it('refuses bounds that cannot work, with WEFT_ERR_OPTION_INVALID', () => {
    for (const b of [
      { progressAfterMs: 0, staleAfterMs: 10 },
      { progressAfterMs: 5000, staleAfterMs: 5000 },
    ]) {
      let err: unknown = null;
      try {
        new WatchLiveness(b, 0);
      } catch (e) {
        err = e;
      }
      expect(isWeftError(err, 'WEFT_ERR_OPTION_INVALID'), JSON.stringify(b)).to.equal(true);
    }
  });
});
