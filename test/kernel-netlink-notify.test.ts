/**
 * Kernel notifications decoded like dump entries (the message bodies weft
 * sends have the layout of the notifications the kernel echoes), and the
 * monitor pipe's framing cut at every offset, and the listener program's
 * markers named as notify.ts names them. No kernel.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { RTM_DELLINK, RTM_NEWLINK, vxlanAddMessage } from '../kernel/netlink/link.js';
import { RTM_DELNEIGH, RTM_NEWNEIGH, parseNeigh, toNeigh } from '../kernel/netlink/neigh.js';
import { RTM_DELADDR, RTM_NEWADDR, addrAddMessage } from '../kernel/netlink/addr.js';
import { RTM_DELROUTE, RTM_NEWROUTE, parseRoute } from '../kernel/netlink/route.js';
import { AF_BRIDGE, splitMessages, type InMessage, type OutMessage } from '../kernel/netlink/wire.js';
import { fdbReplaceMessage, neighDelMessage, neighSetMessage, routeDelMessage, routeReplaceMessage } from './harness/netlink-messages.js';
import { DatagramStream, LISTENING_NFT, LISTENING_ROUTE, MONITOR_GROUPS, NFNLGRP_NFTABLES, NFT_CHANGED, NFT_OVERRUN, NFT_UNWATCHED, NLMSG_OVERRUN, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE, decodeChange, decodeNftChange, markerDatagram } from '../kernel/netlink/notify.js';
import { RTPROT_WEFT } from '../kernel/kernel.js';

/** A notification with the body of `msg` under `type`. */
function notification(type: number, msg: OutMessage): InMessage {
  return { type, flags: 0, seq: 0, payload: msg.body };
}

function withByte(msg: OutMessage, offset: number, value: number): OutMessage {
  const body = Buffer.from(msg.body);
  body.writeUInt8(value, offset);
  return { ...msg, body };
}

describe('netlink notifications: decoded like dump entries', () => {
  const neigh = neighSetMessage({ ifindex: 5, ip: '10.244.2.0', mac: '0a:00:00:00:00:02' });
  const fdb = fdbReplaceMessage({ ifindex: 5, mac: '0a:00:00:00:00:02', dst: '198.18.0.2' });
  const route = routeReplaceMessage({ dst: '10.244.2.0/24', gw: '10.244.2.0', oif: 5, onlink: true, proto: RTPROT_WEFT });

  it('a neighbour, as a dump decodes it', () => {
    const change = decodeChange(notification(RTM_NEWNEIGH, neigh));
    expect(change).to.deep.equal({ kind: 'neigh', op: 'new', neigh: toNeigh(parseNeigh(neigh.body)) });
    expect(change).to.deep.equal({ kind: 'neigh', op: 'new', neigh: { ifindex: 5, ip: '10.244.2.0', mac: '0a:00:00:00:00:02', permanent: true } });
  });

  it('a deleted neighbour without its lladdr (the kernel marks it FAILED first)', () => {
    expect(decodeChange(notification(RTM_DELNEIGH, neighDelMessage({ ifindex: 5, ip: '10.244.2.0' })))).to.deep.equal({
      kind: 'neigh',
      op: 'del',
      neigh: { ifindex: 5, ip: '10.244.2.0', mac: '', permanent: false },
    });
  });

  it('an AF_BRIDGE neighbour is an FDB entry, added or deleted', () => {
    const entry = { ifindex: 5, mac: '0a:00:00:00:00:02', dst: '198.18.0.2', permanent: true };
    expect(decodeChange(notification(RTM_NEWNEIGH, fdb))).to.deep.equal({ kind: 'fdb', op: 'new', fdb: entry });
    expect(decodeChange(notification(RTM_DELNEIGH, fdb))).to.deep.equal({ kind: 'fdb', op: 'del', fdb: entry });
  });

  it('a main-table route, as a dump decodes it; other tables are ignored', () => {
    const r = { dst: '10.244.2.0/24', gw: '10.244.2.0', oif: 5, onlink: true, proto: RTPROT_WEFT };
    expect(parseRoute(route.body)).to.deep.equal(r);
    expect(decodeChange(notification(RTM_NEWROUTE, route))).to.deep.equal({ kind: 'route', op: 'new', route: r });
    expect(decodeChange(notification(RTM_DELROUTE, route))).to.deep.equal({ kind: 'route', op: 'del', route: r });
    expect(decodeChange(notification(RTM_NEWROUTE, withByte(route, 4, 255)))).to.equal(null);
  });

  it('a link, added or deleted; a bridge\'s AF_BRIDGE report of a port is ignored', () => {
    const add = vxlanAddMessage({ name: 'flannel.1', mac: '0a:aa:00:00:00:01', mtu: 1450, vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: 2, learning: false, gbp: false });
    const change = decodeChange(notification(RTM_NEWLINK, add));
    expect(change).to.deep.include({ kind: 'link', op: 'new' });
    expect(change?.kind === 'link' && change.link).to.deep.include({ name: 'flannel.1', mtu: 1450, mac: '0a:aa:00:00:00:01', kind: 'vxlan', up: false });
    expect(decodeChange(notification(RTM_DELLINK, add))).to.deep.include({ kind: 'link', op: 'del' });
    expect(decodeChange(notification(RTM_NEWLINK, withByte(add, 0, AF_BRIDGE)))).to.equal(null);
  });

  it('IPv6 neighbours, FDB remotes, routes and addresses, in the same shapes as IPv4\'s', () => {
    const n6 = neighSetMessage({ ifindex: 5, ip: 'fd00:10:244:2::', mac: '0a:00:00:00:00:02' });
    expect(decodeChange(notification(RTM_NEWNEIGH, n6))).to.deep.equal({ kind: 'neigh', op: 'new', neigh: { ifindex: 5, ip: 'fd00:10:244:2::', mac: '0a:00:00:00:00:02', permanent: true } });
    expect(decodeChange(notification(RTM_DELNEIGH, neighDelMessage({ ifindex: 5, ip: 'fd00:10:244:2::' })))).to.deep.equal({
      kind: 'neigh', op: 'del', neigh: { ifindex: 5, ip: 'fd00:10:244:2::', mac: '', permanent: false },
    });
    const f6 = fdbReplaceMessage({ ifindex: 5, mac: '0a:00:00:00:00:02', dst: '2001:2::2' });
    expect(decodeChange(notification(RTM_NEWNEIGH, f6))).to.deep.equal({ kind: 'fdb', op: 'new', fdb: { ifindex: 5, mac: '0a:00:00:00:00:02', dst: '2001:2::2', permanent: true } });
    const r6 = routeReplaceMessage({ dst: 'fd00:10:244:2::/64', gw: 'fd00:10:244:2::', oif: 5, onlink: true, proto: RTPROT_WEFT });
    const route6 = { dst: 'fd00:10:244:2::/64', gw: 'fd00:10:244:2::', oif: 5, onlink: true, proto: RTPROT_WEFT };
    expect(decodeChange(notification(RTM_NEWROUTE, r6))).to.deep.equal({ kind: 'route', op: 'new', route: route6 });
    expect(decodeChange(notification(RTM_DELROUTE, r6))).to.deep.equal({ kind: 'route', op: 'del', route: route6 });
    // IPv6's multicast route (type RTN_MULTICAST, table local) and a delete's type 0 are no unicast route.
    expect(decodeChange(notification(RTM_NEWROUTE, withByte(withByte(r6, 4, 255), 7, 5)))).to.equal(null);
    expect(decodeChange(notification(RTM_DELROUTE, routeDelMessage({ dst: 'fd00:10:244:2::/64' })))).to.equal(null);
    const a6 = addrAddMessage({ ifindex: 5, cidr: 'fd00:10:244:1::/128' });
    const addr6 = { ifindex: 5, cidr: 'fd00:10:244:1::/128', scope: 'global', permanent: false, deprecated: false, secondary: false, temporary: false };
    expect(decodeChange(notification(RTM_NEWADDR, a6))).to.deep.equal({ kind: 'addr', op: 'new', addr: addr6 });
    expect(decodeChange(notification(RTM_DELADDR, a6))).to.deep.equal({ kind: 'addr', op: 'del', addr: addr6 });
  });

  it('the listener joins the IPv6 address and route groups beside IPv4\'s (neighbours of both come on one group)', () => {
    expect(MONITOR_GROUPS).to.include.members([RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE]);
    expect([RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE]).to.deep.equal([9, 11]);
  });

  it('the monitor\'s overrun marker; unknown and short messages are ignored', () => {
    const marker = markerDatagram(NLMSG_OVERRUN);
    expect(decodeChange({ type: NLMSG_OVERRUN, flags: 0, seq: 0, payload: marker.subarray(16) })).to.deep.equal({ kind: 'overrun' });
    expect(decodeChange({ type: 20, flags: 0, seq: 0, payload: Buffer.alloc(8) })).to.equal(null);
    expect(decodeChange({ type: RTM_NEWNEIGH, flags: 0, seq: 0, payload: Buffer.alloc(4) })).to.equal(null);
  });

  it('the monitor\'s nf_tables markers: a ruleset change, and changes not watched (with the reason)', () => {
    expect(decodeNftChange({ type: NFT_CHANGED, flags: 0, seq: 0, payload: Buffer.alloc(0) })).to.deep.equal({ kind: 'newgen' });
    const [unwatched] = splitMessages(markerDatagram(NFT_UNWATCHED, 'Protocol not supported'));
    expect(decodeNftChange(unwatched!)).to.deep.equal({ kind: 'unwatched', why: 'Protocol not supported' });
  });

  it('the nf_tables markers are no kernel object change, and the rtnetlink ones no nf_tables report', () => {
    const nft = [markerDatagram(NFT_CHANGED), markerDatagram(NFT_UNWATCHED, 'Protocol not supported'), markerDatagram(NFT_OVERRUN)].map((d) => splitMessages(d)[0]!);
    expect(nft.map(decodeChange)).to.deep.equal([null, null, null]);
    expect(nft.map(decodeNftChange)).to.deep.equal([{ kind: 'newgen' }, { kind: 'unwatched', why: 'Protocol not supported' }, { kind: 'overrun' }]);
    expect(decodeNftChange(splitMessages(markerDatagram(NLMSG_OVERRUN))[0]!)).to.equal(null);
    expect(decodeNftChange(notification(RTM_NEWROUTE, route))).to.equal(null);
  });

  it('markerDatagram stands on its own: its source text, pasted into a bare script, builds the same markers', () => {
    // It names nothing from outside it, so that it reads as the whole layout listener.c's marker() writes.
    const script = `const marker = ${markerDatagram.toString()};\nprocess.stdout.write(Buffer.concat([marker(${NFT_UNWATCHED}, 'Operation not permitted'), marker(${NLMSG_OVERRUN})]));`;
    const out = execFileSync(process.execPath, ['-e', script]);
    const [unwatched, overrun, ...rest] = splitMessages(out);
    expect(rest).to.deep.equal([]);
    expect(decodeNftChange(unwatched!)).to.deep.equal({ kind: 'unwatched', why: 'Operation not permitted' });
    expect(decodeChange(overrun!)).to.deep.equal({ kind: 'overrun' });
    expect(out.equals(Buffer.concat([markerDatagram(NFT_UNWATCHED, 'Operation not permitted'), markerDatagram(NLMSG_OVERRUN)]))).to.equal(true);
  });
});

describe('the listener program (listener.c) speaks notify.ts\'s language', () => {
  const source = readFileSync(new URL('../../kernel/netlink/listener.c', import.meta.url), 'utf8');
  const define = (name: string): string | undefined => new RegExp(`^#define ${name.replace(/[()]/g, '\\$&')} (.+)$`, 'm').exec(source)?.[1];

  it('announces what it listens to with LISTENING_ROUTE and LISTENING_NFT, and joins nf_tables on NFNLGRP_NFTABLES', () => {
    expect(define('LISTENING_ROUTE')).to.equal(JSON.stringify(LISTENING_ROUTE));
    expect(define('LISTENING_NFT')).to.equal(JSON.stringify(LISTENING_NFT));
    expect(source).to.include('join(fd, NFNLGRP_NFTABLES)');
    // <linux/netfilter/nfnetlink.h>: enum nfnetlink_groups.
    expect(NFNLGRP_NFTABLES).to.equal(7);
  });

  it('marks nf_tables reports with the message types notify.ts decodes (nf_tables subsystem 10, NEWGEN, GETGEN, TRACE)', () => {
    expect(define('NFT_TYPE(msg)')).to.equal('((NFNL_SUBSYS_NFTABLES << 8) | (msg))');
    expect([define('NFT_CHANGED'), define('NFT_UNWATCHED'), define('NFT_OVERRUN')]).to.deep.equal(['NFT_TYPE(NFT_MSG_NEWGEN)', 'NFT_TYPE(NFT_MSG_GETGEN)', 'NFT_TYPE(NFT_MSG_TRACE)']);
    // <linux/netfilter/nfnetlink.h> and <linux/netfilter/nf_tables.h>: NFNL_SUBSYS_NFTABLES 10, NFT_MSG_NEWGEN 15, GETGEN 16, TRACE 17.
    expect([NFT_CHANGED, NFT_UNWATCHED, NFT_OVERRUN]).to.deep.equal([(10 << 8) | 15, (10 << 8) | 16, (10 << 8) | 17]);
  });
});

describe('netlink notifications: the listener pipe\'s framing', () => {
  const datagrams = [Buffer.from('first datagram'), Buffer.alloc(0), Buffer.from('the third, a little longer than the others')];
  const stream = Buffer.concat(
    datagrams.flatMap((d) => {
      const len = Buffer.alloc(4);
      len.writeUInt32LE(d.length, 0);
      return [len, d];
    }),
  );

  it('gives back every datagram whatever two or three chunks the pipe cut the stream into', () => {
    for (let a = 0; a <= stream.length; a++) {
      for (let b = a; b <= stream.length; b += 7) {
        const framing = new DatagramStream();
        const got: string[] = [];
        for (const chunk of [stream.subarray(0, a), stream.subarray(a, b), stream.subarray(b)]) framing.push(chunk, (d) => got.push(d.toString()));
        expect(got, `cut at ${a} and ${b}`).to.deep.equal(datagrams.map((d) => d.toString()));
      }
    }
  });
});
