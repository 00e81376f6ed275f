import { expect } from 'chai';
import { EventEmitter } from 'node:events';
import { ExponentialBackoff } from 'cockatiel';
import { NSApplicator } from 'etcd3/lib/util.js';
import { WatchManager, Watcher } from 'etcd3/lib/watch.js';
import type { CallCredentials, CallOptions, Metadata } from '@grpc/grpc-js';
import type { Etcd3, IOptions } from 'etcd3';
import { ETCD_GRPC_OPTIONS, createEtcdClient, watchProgress } from '../lease/etcd-client.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A stand-in for etcd3's gRPC watch stream: records what is written, and plays etcd's part when told. */
class StandInStream extends EventEmitter {
  readonly written: unknown[] = [];
  writable = true;
  write(req: unknown): boolean {
    this.written.push(req);
    return true;
  }
  cancel(): void {
    this.writable = false;
  }
}

describe('watchProgress on etcd3\'s own watch manager', () => {
  it('writes a WatchProgressRequest on the stream and hands etcd\'s answer (watch_id -1) to every watcher as progress, events still as data', async () => {
    const stream = new StandInStream();
    const manager = new WatchManager({ watch: async () => stream } as never, new ExponentialBackoff() as never);
    const watcher = new Watcher(manager, new NSApplicator(Buffer.alloc(0)), { key: Buffer.from('/a') });
    const other = new Watcher(manager, new NSApplicator(Buffer.alloc(0)), { key: Buffer.from('/b') });
    const progress = watchProgress(watcher)!;
    expect(progress, 'etcd3 internals as expected').to.not.equal(null);
    expect(progress.request(), 'no stream yet').to.equal(false);
    await sleep(5);
    stream.emit('data', { created: true, watch_id: '0', header: { revision: '5' }, events: [] });
    stream.emit('data', { created: true, watch_id: '1', header: { revision: '5' }, events: [] });
    expect(progress.request()).to.equal(true);
    expect(stream.written.at(-1)).to.deep.equal({ progress_request: {} });
    const writes = stream.written.length;
    expect(watchProgress(other)!.request(), 'the other watch on the stream').to.equal(true);
    expect(stream.written, 'one question pending answers both watches: not asked twice').to.have.length(writes);
    const seen: string[] = [];
    watcher.on('progress' as never, () => seen.push('a progress'));
    (other as EventEmitter).on('progress', () => seen.push('b progress'));
    watcher.on('data', () => seen.push('a data'));
    // Without watchProgress, etcd3 throws 'Failed to find watcher for IWatchResponse' on this answer.
    stream.emit('data', { created: false, canceled: false, watch_id: '-1', header: { revision: '6' }, events: [] });
    stream.emit('data', { created: false, canceled: false, watch_id: '0', header: { revision: '7' }, events: [] });
    expect(seen).to.deep.equal(['a progress', 'b progress', 'a data']);
    expect(progress.request()).to.equal(true);
    expect(stream.written, 'answered: the next question goes out').to.have.length(writes + 1);
    // Taught once: a second call on the same manager neither wraps it again nor breaks it.
    expect(watchProgress(other)).to.not.equal(null);
    stream.emit('data', { created: false, canceled: false, watch_id: '-1', header: { revision: '8' }, events: [] });
    expect(seen.filter((s) => s === 'a progress')).to.have.length(2);
  });

  it('is null for a watcher that is not etcd3\'s: such a watch runs without a liveness check', () => {
    expect(watchProgress(new EventEmitter())).to.equal(null);
  });
});

describe('the etcd client\'s connection options', () => {
  /** The options etcd3 was built with (its connection pool keeps them). */
  function optionsOf(client: Etcd3): IOptions {
    return (client as unknown as { pool: { options: IOptions } }).pool.options;
  }

  it('streams (the watch, lease keepalives) ask for a leader: etcd\'s hasleader metadata; unary calls get the deadline instead', async () => {
    const client = createEtcdClient({ endpoints: ['http://127.0.0.1:2379'], callTimeoutMs: 1234 });
    try {
      const factory = optionsOf(client).defaultCallOptions as (ctx: { isStream: boolean; service: string; method: string }) => CallOptions;
      const stream = factory({ isStream: true, service: 'Watch', method: 'watch' });
      expect(stream.deadline, 'a watch has no deadline').to.equal(undefined);
      const metadata = await new Promise<Metadata>((resolve, reject) =>
        (stream.credentials as CallCredentials).generateMetadata({ service_url: 'http://127.0.0.1:2379', method_name: 'Watch' }).then(resolve, reject),
      );
      expect(metadata.get('hasleader')).to.deep.equal(['true']);
      const unary = factory({ isStream: false, service: 'KV', method: 'range' });
      expect(Number(unary.deadline) - Date.now()).to.be.within(1000, 1234);
      expect(unary.credentials).to.equal(undefined);
    } finally {
      client.close();
    }
  });

  it('keepalive pings on every connection, no closer than etcd allows (its --grpc-keepalive-min-time, 5 s by default), and a low reconnect backoff', () => {
    const client = createEtcdClient({ endpoints: ['http://127.0.0.1:2379'] });
    try {
      const grpc = optionsOf(client).grpcOptions as Record<string, number>;
      expect(grpc).to.deep.equal(ETCD_GRPC_OPTIONS);
      expect(grpc['grpc.keepalive_time_ms']).to.be.at.least(2 * 5000);
      expect(grpc['grpc.keepalive_timeout_ms']).to.be.within(1000, grpc['grpc.keepalive_time_ms']!);
      expect(grpc['grpc.keepalive_permit_without_calls'], 'etcd counts pings without streams as abuse').to.equal(0);
      expect(grpc['grpc.max_reconnect_backoff_ms']).to.be.at.most(5000);
    } finally {
      client.close();
    }
  });
});
