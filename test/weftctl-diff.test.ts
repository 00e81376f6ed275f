/** weftctl diff's sorting of entries into missing, wrong and stale (weftctl/diff.ts). */
import { expect } from 'chai';
import type { Entry, Owned } from '../backend/reconciler.js';
import { entryKey } from '../backend/reconciler.js';
import { diffEntries, diffReport } from '../weftctl/diff.js';

describe('weftctl diff', () => {
  const neigh = (ip: string, mac: string): Entry => ({ kind: 'neigh', ifindex: 5, ip, mac });
  const route = (dst: string): Entry => ({ kind: 'route', dst, gw: dst.split('/')[0]!, oif: 5, onlink: true });
  const dev = () => 'flannel.1';

  it('sorts entries into missing, wrong and stale, and nothing when in sync', () => {
    const wanted: Owned[] = [
      { peer: '10.244.3.0/24', entry: neigh('10.244.3.0', '02:00:00:00:00:03') },
      { peer: '10.244.3.0/24', entry: route('10.244.3.0/24') },
      { peer: '10.244.4.0/24', entry: neigh('10.244.4.0', '02:00:00:00:00:04') },
    ];
    const desired = new Map(wanted.map((o) => [entryKey(o.entry), o]));
    const held = [neigh('10.244.3.0', '02:00:00:00:00:03'), neigh('10.244.4.0', '02:00:00:00:00:ff'), route('10.244.9.0/24')];
    const lines = diffEntries(desired, new Map(held.map((e) => [entryKey(e), e])), dev);
    expect(lines).to.deep.equal([
      { status: 'missing', peer: '10.244.3.0/24', kind: 'route', want: '10.244.3.0/24 via 10.244.3.0 dev flannel.1 onlink', held: null },
      { status: 'wrong', peer: '10.244.4.0/24', kind: 'neigh', want: '10.244.4.0 dev flannel.1 lladdr 02:00:00:00:00:04 PERMANENT', held: '10.244.4.0 dev flannel.1 lladdr 02:00:00:00:00:ff PERMANENT' },
      { status: 'stale', peer: null, kind: 'route', want: null, held: '10.244.9.0/24 via 10.244.9.0 dev flannel.1 onlink' },
    ]);
    const inSync = new Map(wanted.map((o) => [entryKey(o.entry), o.entry]));
    expect(diffEntries(desired, inSync, dev)).to.deep.equal([]);
  });

  it('names the IPv6 subnet: the node\'s in the head, a peer\'s IPv6 entries on flannel-v6', () => {
    const wanted: Owned[] = [
      { peer: '10.244.3.0/24', entry: { kind: 'route', dst: 'fd00:10:244:3::/64', gw: 'fd00:10:244:3::', oif: 6, onlink: true } },
      { peer: '10.244.3.0/24', entry: { kind: 'neigh', ifindex: 6, ip: 'fd00:10:244:3::', mac: '02:00:00:00:00:33' } },
    ];
    const desired = new Map(wanted.map((o) => [entryKey(o.entry), o]));
    const lines = diffEntries(desired, new Map(), (i) => (i === 6 ? 'flannel-v6.1' : `#${i}`));
    const { text, exitCode } = diffReport({ ownSubnet: '10.244.2.0/24 + fd00:10:244:2::/64', peers: 1, desiredEntries: 2, lines, device: [] });
    expect(exitCode).to.equal(1);
    expect(text.split('\n')[0]).to.equal('node 10.244.2.0/24 + fd00:10:244:2::/64: 1 peers, 2 desired entries: 2 entries differ');
    expect(text).to.match(/^missing\s+10\.244\.3\.0\/24\s+route\s+fd00:10:244:3::\/64 via fd00:10:244:3:: dev flannel-v6\.1 onlink\s+-$/m);
    expect(text).to.match(/^missing\s+10\.244\.3\.0\/24\s+neigh\s+fd00:10:244:3:: dev flannel-v6\.1 lladdr 02:00:00:00:00:33 PERMANENT\s+-$/m);
  });
});
