import { expect } from 'chai';
import { getEventListeners } from 'node:events';
import { ABORTED, AbortGate, unlessAborted } from '../common/abort.js';

describe('unlessAborted', () => {
  it("gives the promise's value, or passes its rejection on", async () => {
    const signal = new AbortController().signal;
    expect(await unlessAborted(Promise.resolve(7), signal)).to.equal(7);
    const failed = await unlessAborted(Promise.reject(new Error('refused')), signal).catch((err: Error) => err.message);
    expect(failed).to.equal('refused');
  });

  it('gives ABORTED when the signal aborts first, or had aborted already', async () => {
    const ac = new AbortController();
    const waiting = unlessAborted(new Promise(() => undefined), ac.signal);
    ac.abort();
    expect(await waiting).to.equal(ABORTED);
    expect(await unlessAborted(Promise.resolve(1), ac.signal)).to.equal(ABORTED);
  });

  it('leaves nothing on the signal after each wait (a loop of waits does not accumulate)', async () => {
    const signal = new AbortController().signal;
    for (let i = 0; i < 1000; i++) await unlessAborted(Promise.resolve(i), signal);
    await unlessAborted(Promise.reject(new Error('x')), signal).catch(() => undefined);
    expect(getEventListeners(signal, 'abort')).to.have.length(0);
  });

  it('a gate serves a loop of waits with one listener, and ends the pending one on abort', async () => {
    const ac = new AbortController();
    const gate = new AbortGate(ac.signal);
    for (let i = 0; i < 1000; i++) expect(await gate.wait(Promise.resolve(i))).to.equal(i);
    expect(getEventListeners(ac.signal, 'abort')).to.have.length(1);
    const pending = gate.wait(new Promise(() => undefined));
    ac.abort();
    expect(await pending).to.equal(ABORTED);
    expect(await gate.wait(Promise.resolve(1))).to.equal(ABORTED);
    gate.close();
    expect(getEventListeners(ac.signal, 'abort')).to.have.length(0);
  });
});
