import { expect } from 'chai';
import { ProbeClient, ProbeResponder } from '../daemon/probe.js';
import { freePort } from './harness/etcd.js';

describe('probe client lifetime', () => {
  it('close() lets the echoes in flight finish, then refuses new ones with WEFT_ERR_INVALID_STATE', async () => {
    const port = await freePort();
    const responder = new ProbeResponder(port, () => 1450);
    await responder.start();
    const client = new ProbeClient(port);
    try {
      const answered = client.echo('127.0.0.1', 1000);
      let closed = false;
      const closing = client.close().then(() => (closed = true)); // with the echo's answer still on its way
      const later = await client.echo('127.0.0.1', 1000).then(
        () => expect.fail('an echo after close() should be refused'),
        (e: unknown) => e,
      );
      expect(later).to.have.property('code', 'WEFT_ERR_INVALID_STATE');
      expect(closed, 'close() waits for the echo in flight').to.equal(false);
      const answer = await answered;
      expect(answer.ok, 'the echo in flight got its answer').to.equal(true);
      expect(answer.mtu).to.equal(1450);
      await closing;
      expect(closed).to.equal(true);
    } finally {
      responder.close();
    }
  });
});
