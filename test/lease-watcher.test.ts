import { expect } from 'chai';
import { parseNetworkConfig } from '../lease/config.js';
import type { RawKeyValue } from '../lease/lease-value.js';
import type { Registry } from '../lease/registry.js';
import { Subnet } from '../common/subnet.js';
import { LeaseWatcher } from '../lease/watcher.js';

const P = '/coreos.com/network';
const config = parseNetworkConfig('{"Network":"10.244.0.0/16"}');
const value = (ip: string, mac: string) => JSON.stringify({ PublicIP: ip, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
const kv = (sn: string, v: string, rev = '2'): RawKeyValue => ({ key: `${P}/subnets/${sn}`, value: v, lease: '9', modRevision: rev });

function watcher(own = '10.244.1.0/24') {
  return new LeaseWatcher({ registry: { prefix: P } as Registry, config, ownSubnet: () => Subnet.parse(own), ownPublicIP: '198.18.0.1' });
}
const types = (b: { events: readonly { type: string; lease: { subnet: Subnet } }[] }) => b.events.map((e) => `${e.type} ${e.lease.subnet}`);

describe('lease watcher cache and diff (unit)', () => {
  it('snapshot adds peers and skips the own subnet', () => {
    const w = watcher();
    const b = w.apply({ type: 'snapshot', reason: 'initial', revision: '5', kvs: [kv('10.244.1.0-24', value('198.18.0.1', '0e:00:00:00:00:01')), kv('10.244.2.0-24', value('198.18.0.2', '0e:00:00:00:00:02'))] });
    expect(b.resync).to.equal(true);
    expect(types(b)).to.deep.equal(['added 10.244.2.0/24']);
    expect([...b.peers.keys()]).to.deep.equal(['10.244.2.0/24']);
  });

  it('a re-list diffs attributes: changed MAC and public IP are changes, vanished peers are removed with last attrs', () => {
    const w = watcher();
    w.apply({ type: 'snapshot', reason: 'initial', revision: '5', kvs: [kv('10.244.2.0-24', value('198.18.0.2', '0e:00:00:00:00:02')), kv('10.244.3.0-24', value('198.18.0.3', '0e:00:00:00:00:03')), kv('10.244.4.0-24', value('198.18.0.4', '0e:00:00:00:00:04'))] });
    const b = w.apply({ type: 'snapshot', reason: 'resync', revision: '9', kvs: [kv('10.244.2.0-24', value('198.18.0.2', '0e:00:00:00:00:22')), kv('10.244.3.0-24', value('198.18.0.33', '0e:00:00:00:00:03')), kv('10.244.5.0-24', value('198.18.0.5', '0e:00:00:00:00:05'))] });
    expect(types(b)).to.deep.equal(['changed 10.244.2.0/24', 'changed 10.244.3.0/24', 'added 10.244.5.0/24', 'removed 10.244.4.0/24']);
    const changed = b.events[0] as { previous: { attrs: { BackendData?: { VtepMAC?: string } } } };
    expect(changed.previous.attrs.BackendData!.VtepMAC).to.equal('0e:00:00:00:00:02');
    const removed = b.events[3]!;
    expect(removed.lease.attrs.PublicIP).to.equal('198.18.0.4');
    expect(w.resyncs).to.equal(1);
  });

  it('events: put adds or changes, an identical put is nothing, delete removes with the cached attrs', () => {
    const w = watcher();
    w.apply({ type: 'snapshot', reason: 'initial', revision: '1', kvs: [] });
    const v = value('198.18.0.2', '0e:00:00:00:00:02');
    expect(types(w.apply({ type: 'events', revision: '2', events: [{ type: 'put', kv: kv('10.244.2.0-24', v) }] }))).to.deep.equal(['added 10.244.2.0/24']);
    expect(types(w.apply({ type: 'events', revision: '3', events: [{ type: 'put', kv: kv('10.244.2.0-24', v, '3') }] }))).to.deep.equal([]);
    const del = w.apply({ type: 'events', revision: '4', events: [{ type: 'delete', kv: { ...kv('10.244.2.0-24', ''), lease: '0' } }] });
    expect(types(del)).to.deep.equal(['removed 10.244.2.0/24']);
    expect(del.events[0]!.lease.attrs.BackendData!.VtepMAC).to.equal('0e:00:00:00:00:02');
    expect(w.current.size).to.equal(0);
  });

  it('malformed values are skipped with one warning per key revision, and a known peer keeps its last valid lease', () => {
    const warnings: string[] = [];
    const w = new LeaseWatcher({
      registry: { prefix: P } as Registry,
      config,
      ownSubnet: () => Subnet.parse('10.244.1.0/24'),
      ownPublicIP: '198.18.0.1',
      log: { warn: (m: string) => warnings.push(m) } as never,
    });
    const bad = [
      kv('10.244.6.0-24', '{not json'),
      kv('10.244.7.0-24', value('300.1.1.1', '0e:00:00:00:00:07')),
      kv('10.244.8.0-24', value('198.18.0.8', 'zz:00:00:00:00:08')),
      kv('10.99.0.0-24', value('198.18.0.9', '0e:00:00:00:00:09')),
      kv('10.244.10.0-25', value('198.18.0.10', '0e:00:00:00:00:0a')),
      kv('10.244.11.0-24', value('198.18.0.1', '0e:00:00:00:00:0b')), // claims our public IP
    ];
    const b = w.apply({ type: 'snapshot', reason: 'initial', revision: '5', kvs: [kv('10.244.2.0-24', value('198.18.0.2', '0e:00:00:00:00:02')), ...bad] });
    expect(types(b)).to.deep.equal(['added 10.244.2.0/24']);
    expect(warnings).to.have.length(bad.length);
    w.apply({ type: 'snapshot', reason: 'resync', revision: '6', kvs: [kv('10.244.2.0-24', value('198.18.0.2', '0e:00:00:00:00:02')), ...bad] });
    expect(warnings).to.have.length(bad.length); // same revisions: no new warnings
    const turned = w.apply({ type: 'events', revision: '7', events: [{ type: 'put', kv: kv('10.244.2.0-24', '{"PublicIP":1}', '7') }] });
    expect(types(turned)).to.deep.equal([]);
    expect(w.current.get('10.244.2.0/24')!.attrs.PublicIP).to.equal('198.18.0.2');
    // Malformed values only (5, and the peer that turned malformed): the refused lease is counted in refusals().
    expect(w.skipped).to.equal(bad.length);
    // What was warned about is forgotten when its key goes: by a delete, or by a re-list without it.
    const remembered = () => (w as unknown as { warned: Map<string, string> }).warned.size;
    // The key claiming our public IP is valid, so it is a refusal (see refusals()), not a malformed key.
    expect(remembered()).to.equal(bad.length);
    expect(w.refusals().map((r) => `${r.subnet} ${r.reason}`)).to.deep.equal(['10.244.11.0/24 duplicate-public-ip']);
    w.apply({ type: 'events', revision: '8', events: [{ type: 'delete', kv: { ...bad[0]!, value: '' } }] });
    expect(remembered()).to.equal(bad.length - 1);
    w.apply({ type: 'snapshot', reason: 'resync', revision: '9', kvs: [kv('10.244.2.0-24', value('198.18.0.2', '0e:00:00:00:00:02'))] });
    expect(remembered()).to.equal(1); // 10.244.2.0-24, the one key still there
    expect(w.refusals()).to.deep.equal([]);
  });
});
