/**
 * The netlink wire format: addresses parsed straight into a message, and
 * requests framed into one datagram, back to back, that splits back into them.
 * No kernel.
 */
import { expect } from 'chai';
import { isIPv6 } from 'node:net';
import { Address6 } from 'ip-address';
import { RTPROT_WEFT } from '../kernel/kernel.js';
import { writeFdbDel, writeFdbReplace, writeNeighDel, writeNeighSet } from '../kernel/netlink/neigh.js';
import { parseRoute, writeRouteDel, writeRouteReplace } from '../kernel/netlink/route.js';
import { NLMSG_HDRLEN, NLM_F_ACK, NLM_F_REQUEST, Writer, cidrPrefixLength, frame, frameInto, ipAttrString, ipFamily, ipv6String, splitMessages, type OutMessage, type RequestWriter } from '../kernel/netlink/wire.js';
import { WeftError, isWeftError } from '../common/errors.js';
import { dirtyPool, fdbDelMessage, fdbReplaceMessage, neighDelMessage, neighSetMessage, routeDelMessage, routeReplaceMessage } from './harness/netlink-messages.js';

/** The 4 bytes an IPv4 address attribute carries. */
const ipv4Bytes = (ip: string): Buffer => new Writer(8).attrIPv4(1, ip).done().subarray(4);
/** The 16 bytes an IPv6 address attribute carries. */
const ipv6Bytes = (ip: string): Buffer => new Writer(20).attrIPv6(1, ip).done().subarray(4);
/** The 6 bytes a MAC address attribute carries. */
const macBytes = (mac: string): Buffer => new Writer(12).attrMAC(2, mac).done().subarray(4, 10);

describe('netlink wire format (unit)', () => {
  it('reads dotted quads digit by digit and refuses what Node\'s isIPv4 refuses', () => {
    expect([...ipv4Bytes('198.18.0.255')]).to.deep.equal([198, 18, 0, 255]);
    expect([...ipv4Bytes('0.0.0.0')]).to.deep.equal([0, 0, 0, 0]);
    for (const bad of ['', '1.2.3', '1.2.3.4.5', '256.1.1.1', '010.1.1.1', '1..2.3', '1.2.3.4.', ' 1.2.3.4', '1.2.3.4/24', 'a.b.c.d', '1.2.3.1234']) {
      expect(() => ipv4Bytes(bad), bad).to.throw(/not an IPv4 address/);
    }
  });

  it('reads MACs in either case and refuses other separators and lengths', () => {
    expect([...macBytes('0e:2A:00:ff:Fe:01')]).to.deep.equal([0x0e, 0x2a, 0x00, 0xff, 0xfe, 0x01]);
    for (const bad of ['', '0e:2a:00:ff:fe', '0e-2a-00-ff-fe-01', '0e:2a:00:ff:fe:0g', '0e:2a:00:ff:fe:011', '0e:2a:00:ff:fe:01:']) {
      expect(() => macBytes(bad), bad).to.throw(/not a MAC address/);
    }
  });

  it('refuses an address it cannot encode with WEFT_ERR_ADDRESS_INVALID', () => {
    const code = (encode: () => unknown): unknown => {
      try {
        encode();
      } catch (err) {
        return isWeftError(err) ? err.code : err;
      }
      return 'encoded';
    };
    expect(code(() => ipv4Bytes('256.1.1.1'))).to.equal('WEFT_ERR_ADDRESS_INVALID');
    expect(code(() => macBytes('0e-2a-00-ff-fe-01'))).to.equal('WEFT_ERR_ADDRESS_INVALID');
    expect(code(() => cidrPrefixLength('10.0.0.0/33'))).to.equal('WEFT_ERR_ADDRESS_INVALID');
    expect(cidrPrefixLength('10.0.0.0/24')).to.equal(24);
  });

  it('frames several messages into one datagram that splits back into them', () => {
    const msgs = [
      neighSetMessage({ ifindex: 3, ip: '10.244.2.0', mac: '0e:2a:00:00:00:02' }),
      routeReplaceMessage({ dst: '10.244.2.0/24', gw: '10.244.2.0', oif: 3, onlink: true, proto: RTPROT_WEFT }),
    ];
    const datagram = Buffer.alloc(msgs.reduce((n, m) => n + NLMSG_HDRLEN + m.body.length, 0));
    let off = 0;
    off = frameInto(datagram, off, msgs[0]!, 100, 42);
    off = frameInto(datagram, off, msgs[1]!, 101, 42, NLM_F_ACK);
    expect(off).to.equal(datagram.length);
    const back = splitMessages(datagram);
    expect(back.map((m) => [m.type, m.seq, m.flags])).to.deep.equal([
      [msgs[0]!.type, 100, msgs[0]!.flags | NLM_F_REQUEST],
      [msgs[1]!.type, 101, msgs[1]!.flags | NLM_F_REQUEST | NLM_F_ACK],
    ]);
    expect(back[1]!.payload.equals(msgs[1]!.body)).to.equal(true);
    expect(frame(msgs[0]!, 100, 42).equals(datagram.subarray(0, NLMSG_HDRLEN + msgs[0]!.body.length))).to.equal(true);
  });

  it('writes requests back to back into one datagram, byte for byte as framed one by one', () => {
    dirtyPool();
    const neigh = { ifindex: 3, ip: '10.244.2.0', mac: '0e:2a:00:00:00:02' };
    const fdb = { ifindex: 3, mac: '0e:2a:00:00:00:02', dst: '198.18.0.2' };
    const route = { dst: '10.244.2.7/24', gw: '10.244.2.0', oif: 3, onlink: true };
    const requests: [RequestWriter<never>, unknown, OutMessage][] = [
      [writeNeighSet, neigh, neighSetMessage(neigh)],
      [writeNeighDel, neigh, neighDelMessage(neigh)],
      [writeFdbReplace, fdb, fdbReplaceMessage(fdb)],
      [writeFdbDel, fdb, fdbDelMessage(fdb)],
      [writeRouteReplace, route, routeReplaceMessage({ ...route, proto: RTPROT_WEFT })],
      [writeRouteDel, route, routeDelMessage(route)],
    ];
    // A writer too small for even one request: it has to grow, keeping what it holds.
    const w = new Writer(8);
    requests.forEach(([write, item], i) => {
      write(w, item as never);
      w.seal(500 + i, 42, i === requests.length - 1 ? NLM_F_ACK : 0);
    });
    const expected = Buffer.concat(requests.map(([, , msg], i) => frame(msg, 500 + i, 42, i === requests.length - 1 ? NLM_F_ACK : 0)));
    expect(w.done().toString('hex')).to.equal(expected.toString('hex'));
    // The route's host bits are masked, and weft's own proto is the default.
    const sent = splitMessages(w.done());
    expect(parseRoute(sent[4]!.payload)).to.deep.include({ dst: '10.244.2.0/24', proto: RTPROT_WEFT, onlink: true });
  });

  it('reads IPv6 addresses in every form node:net\'s isIPv6 accepts, and refuses what it refuses', () => {
    const hex = (ip: string): string => ipv6Bytes(ip).toString('hex');
    expect(hex('fd00:10:244:3::')).to.equal('fd000010024400030000000000000000');
    expect(hex('::')).to.equal('0'.repeat(32));
    expect(hex('::1')).to.equal(`${'0'.repeat(31)}1`);
    expect(hex('2001:DB8::a:B')).to.equal('20010db80000000000000000000a000b');
    expect(hex('1:2:3:4:5:6:7:8')).to.equal('00010002000300040005000600070008');
    expect(hex('1:2:3:4:5:6:7::')).to.equal('00010002000300040005000600070000');
    expect(hex('::ffff:198.18.0.1')).to.equal('00000000000000000000ffffc6120001');
    expect(hex('64:ff9b::198.18.0.1')).to.equal('0064ff9b0000000000000000c6120001');
    const bad = ['', ':', ':::', '1::2::3', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7', '12345::', 'g::', '::1.2.3', '::1.2.3.4.5', '1.2.3.4', '::1.2.3.4:5', ':1::', '1::/64', ' ::1'];
    for (const ip of bad) {
      expect(isIPv6(ip), `${ip} (node:net agrees)`).to.equal(false);
      expect(() => ipv6Bytes(ip), ip).to.throw(/not an IPv6 address/);
    }
    for (const ip of ['::', '1::', '::ffff:1.2.3.4', '1:2:3:4:5:6:1.2.3.4', 'fd00:10:244:3::']) expect(isIPv6(ip), ip).to.equal(true);
    // A zone is no part of a netlink address (the device is its own attribute): refused, though isIPv6 takes it.
    expect(() => ipv6Bytes('fe80::1%eth0')).to.throw(/not an IPv6 address/);
  });

  it('writes IPv6 text as RFC 5952, the same string ip-address (and so Subnet) gives, for any placement of zero groups', () => {
    const bytes = Buffer.alloc(16);
    let seed = 2026;
    const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 2000; i++) {
      // Mostly zero groups, so that runs of every length and position occur, ties included.
      for (let g = 0; g < 8; g++) bytes.writeUInt16BE(random() < 0.55 ? 0 : Math.floor(random() * 0x10000) >> (random() < 0.5 ? 12 : 0), g * 2);
      const text = ipv6String(bytes);
      expect(text, bytes.toString('hex')).to.equal(Address6.fromByteArray([...bytes]).correctForm());
      expect(ipv6Bytes(text).equals(bytes), text).to.equal(true);
    }
    expect(ipv6String(Buffer.from('00010000000200000000000000030000', 'hex'))).to.equal('1:0:2::3:0');
    expect(ipv6String(Buffer.from('00010000000000020000000000030004', 'hex'))).to.equal('1::2:0:0:3:4');
    expect(ipAttrString(Buffer.from([198, 18, 0, 1]), 0, 4)).to.equal('198.18.0.1');
    expect(ipAttrString(Buffer.alloc(6), 0, 6)).to.equal(null);
  });

  it('chooses the family by the address: IPv6 ones have colons; an IPv6 network attribute masks the host bits', () => {
    expect(['10.244.3.0', '10.244.3.0/24', 'fd00:10:244:3::', 'fd00:10:244:3::/64', '::ffff:1.2.3.4'].map(ipFamily)).to.deep.equal([4, 4, 6, 6, 6]);
    expect(new Writer(8).attrIP(1, '198.18.0.2').done().length).to.equal(8);
    expect(new Writer(20).attrIP(1, '2001:2::2').done().length).to.equal(20);
    const network = (ip: string, len: number): string => ipv6String(new Writer(20).attrIPv6Network(1, ip, len).done(), 4);
    expect(network('fd00:10:244:3::5', 64)).to.equal('fd00:10:244:3::');
    expect(network('fd00:10:244:3:ffff::1', 72)).to.equal('fd00:10:244:3:ff00::');
    expect(network('fd00:10:244:3:ffff::1', 57)).to.equal('fd00:10:244::');
    expect(network('fd00:10:244:3::5', 128)).to.equal('fd00:10:244:3::5');
    expect(network('fd00:10:244:3::5', 0)).to.equal('::');
    expect(cidrPrefixLength('fd00:10:244:3::/64')).to.equal(64);
    expect(cidrPrefixLength('::/0')).to.equal(0);
    expect(cidrPrefixLength('2001:2::2/128')).to.equal(128);
    for (const bad of ['fd00::/129', 'fd00::', 'fd00::/', 'fd00::/-1']) expect(() => cidrPrefixLength(bad), bad).to.throw(WeftError, /not an IPv6 CIDR/);
    expect(() => cidrPrefixLength('10.0.0.0/64')).to.throw(WeftError, /not an IPv4 CIDR/);
  });
});
