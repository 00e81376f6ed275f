import { expect } from 'chai';
import { Subnet } from '../common/subnet.js';
import { parseNetworkConfig } from '../lease/config.js';
import {
  causeOf, conflictLosers, desiredPeers, insanePublicIP, kernelDiff, lostSendTimes, overlappingLeases, validPeers, type ListedKey, type LossWindow,
} from '../bench/soak-check.js';

const P = '/coreos.com/network';
const config = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}');
const network = Subnet.parse('10.244.0.0/16');
const value = (ip: string, mac: string) => JSON.stringify({ PublicIP: ip, PublicIPv6: null, BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: mac } });
let rev = 10;
const kv = (subnet: string, ip: string, mac: string, lease = '7'): ListedKey => ({
  key: `${P}/subnets/${subnet.replace('/', '-')}`,
  value: value(ip, mac),
  lease,
  modRevision: String(rev),
  createRevision: String(rev++),
});

describe('bench/soak-check: the soak\'s invariants', () => {
  const h1 = kv('10.244.1.0/24', '198.18.0.1', '0e:00:00:00:00:01');
  const h2 = kv('10.244.2.0/24', '198.18.0.2', '0e:00:00:00:00:02');
  const h3 = kv('10.244.3.0/24', '198.18.0.3', '0e:00:00:00:00:03');
  const node1 = { publicIP: '198.18.0.1', ownSubnet: '10.244.1.0/24', ownNetworks: ['198.18.0.0/24', '10.244.0.0/24'] };

  it('a node\'s desired peers: every valid lease but its own and the malformed', () => {
    const bad = { ...kv('10.244.9.0/24', '198.18.0.9', '0e:00:00:00:00:09'), value: '{"PublicIP":' };
    const peers = validPeers(P, [h1, h2, h3, bad, kv('10.244.8.0/25', '198.18.0.8', '0e:00:00:00:00:08')], config);
    expect(peers.map((p) => p.subnet)).to.deep.equal(['10.244.1.0/24', '10.244.2.0/24', '10.244.3.0/24']);
    expect([...desiredPeers(peers, node1, network).keys()]).to.deep.equal(['10.244.2.0/24', '10.244.3.0/24']);
  });

  it('skips a lease over the node\'s own networks and a PublicIP inside the overlay or link-local', () => {
    const lan = kv('10.244.0.0/24', '192.0.2.5', '0e:00:00:00:00:05');
    const inside = kv('10.244.6.0/24', '10.244.77.7', '0e:00:00:00:00:06');
    const linkLocal = kv('10.244.7.0/24', '169.254.1.9', '0e:00:00:00:00:07');
    const peers = validPeers(P, [h1, h2, lan, inside, linkLocal], config);
    expect([...desiredPeers(peers, node1, network).keys()]).to.deep.equal(['10.244.2.0/24']);
    expect(insanePublicIP('10.244.77.7', network)).to.equal(true);
    expect(insanePublicIP('169.254.1.9', network)).to.equal(true);
    expect(insanePublicIP('198.18.0.2', network)).to.equal(false);
  });

  it('a VtepMAC or PublicIP conflict goes to the older live lease (lower create revision), whatever the listing order', () => {
    const sameMac = kv('10.244.40.0/24', '192.0.2.40', '0e:00:00:00:00:02');
    const sameIp = kv('10.244.41.0/24', '198.18.0.3', '0e:00:00:00:00:41');
    const peers = validPeers(P, [sameIp, sameMac, h3, h2, h1], config);
    expect([...conflictLosers(peers)].sort()).to.deep.equal([sameMac.key, sameIp.key].sort());
    expect([...desiredPeers(peers, node1, network).keys()].sort()).to.deep.equal(['10.244.2.0/24', '10.244.3.0/24']);
    // A reservation (no etcd lease) is no live lease: it conflicts with nobody.
    const reserved = { ...kv('10.244.42.0/24', '192.0.2.42', '0e:00:00:00:00:03'), lease: '0' };
    expect(conflictLosers(validPeers(P, [h3, reserved], config).filter((p) => p.live)).size).to.equal(0);
  });

  it('diffs a kernel against the desired peers: missing, wrong and stale entries; none when in sync', () => {
    const desired = desiredPeers(validPeers(P, [h1, h2], config), node1, network);
    const inSync = { routes: new Map([['10.244.2.0/24', '10.244.2.0']]), neighs: new Map([['10.244.2.0', '0e:00:00:00:00:02']]), fdb: new Set(['0e:00:00:00:00:02>198.18.0.2']) };
    expect(kernelDiff(desired, inSync)).to.deep.equal([]);
    const drifted = { routes: new Map([['10.244.9.0/24', '10.244.9.0']]), neighs: new Map([['10.244.2.0', '0e:00:00:00:00:99']]), fdb: new Set<string>() };
    expect(kernelDiff(desired, drifted)).to.deep.equal([
      'route 10.244.2.0/24 via 10.244.2.0: missing',
      'route 10.244.9.0/24: stale',
      'neigh 10.244.2.0 0e:00:00:00:00:02: 0e:00:00:00:00:99',
      'fdb 0e:00:00:00:00:02>198.18.0.2: missing',
    ]);
  });

  it('finds overlapping leases', () => {
    expect(overlappingLeases(validPeers(P, [h1, h2], config))).to.deep.equal([]);
    const wide = parseNetworkConfig('{"Network":"10.244.0.0/16","SubnetLen":23,"Backend":{"Type":"vxlan"}}');
    const a = kv('10.244.2.0/23', '198.18.0.4', '0e:00:00:00:00:04');
    const peers = [...validPeers(P, [h2], config), ...validPeers(P, [a], wide)];
    expect(overlappingLeases(peers)).to.deep.equal([[h2.key, a.key]]);
  });

  it('charges a lost ping to a fault whose window covers its pair (with a grace), or to none', () => {
    const windows: LossWindow[] = [
      { kind: 'route-del', start: 1000, end: 1300, pairs: new Set(['1-2']), hosts: new Set() },
      { kind: 'device-del', start: 5000, end: 6000, pairs: new Set(), hosts: new Set([3]) },
    ];
    expect(causeOf({ a: 2, b: 1, at: 1100 }, windows)).to.equal('route-del');
    expect(causeOf({ a: 1, b: 2, at: 1700 }, windows)).to.equal('route-del');
    expect(causeOf({ a: 1, b: 2, at: 1900 }, windows)).to.equal(null);
    expect(causeOf({ a: 1, b: 3, at: 1100 }, windows)).to.equal(null);
    expect(causeOf({ a: 3, b: 5, at: 5500 }, windows)).to.equal('device-del');
    expect(causeOf({ a: 4, b: 5, at: 5500 }, windows)).to.equal(null);
  });

  it('dates lost pings between the replies around them', () => {
    const replies = new Map([[1, 1000], [2, 1100], [5, 1400], [6, 1500]]);
    expect(lostSendTimes(replies, 8, 900, 100)).to.deep.equal([
      { seq: 3, at: 1200 },
      { seq: 4, at: 1300 },
      { seq: 7, at: 1600 },
      { seq: 8, at: 1700 },
    ]);
    expect(lostSendTimes(new Map(), 2, 900, 100)).to.deep.equal([{ seq: 1, at: 900 }, { seq: 2, at: 1000 }]);
    expect(lostSendTimes(new Map([[3, 2000]]), 3, 0, 100)).to.deep.equal([{ seq: 1, at: 1800 }, { seq: 2, at: 1900 }]);
  });
});
