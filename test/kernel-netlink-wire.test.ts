/**
 * The netlink wire format: addresses parsed straight into a message, and
 * requests framed into one datagram, back to back, that splits back into them.
 * No kernel.
 */
import { expect } from 'chai';
import { RTPROT_WEFT } from '../kernel/kernel.js';
import { writeFdbDel, writeFdbReplace, writeNeighDel, writeNeighSet } from '../kernel/netlink/neigh.js';
import { parseRoute, writeRouteDel, writeRouteReplace } from '../kernel/netlink/route.js';
import { NLMSG_HDRLEN, NLM_F_ACK, NLM_F_REQUEST, Writer, cidrPrefixLength, frame, frameInto, splitMessages, type OutMessage, type RequestWriter } from '../kernel/netlink/wire.js';
import { isWeftError } from '../common/errors.js';
import { dirtyPool, fdbDelMessage, fdbReplaceMessage, neighDelMessage, neighSetMessage, routeDelMessage, routeReplaceMessage } from './harness/netlink-messages.js';

/** The 4 bytes an IPv4 address attribute carries. */
const ipv4Bytes = (ip: string): Buffer => new Writer(8).attrIPv4(1, ip).done().subarray(4);
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
});
