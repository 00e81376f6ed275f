/**
 * The bulk message encoders: addresses parsed straight into the message,
 * padding zeroed although bodies come from Node's (unzeroed) buffer pool,
 * and a chunk of messages framed into one datagram. No kernel.
 */
import { expect } from 'chai';
import {
  NLMSG_HDRLEN,
  NLM_F_ACK,
  NLM_F_REQUEST,
  fdbReplaceMessage,
  frame,
  frameInto,
  ipv4Bytes,
  macBytes,
  neighSetMessage,
  parseNeigh,
  parseRoute,
  routeDelMessage,
  routeReplaceMessage,
  splitMessages,
  toFdb,
  toNeigh,
} from '../backend/netlink/codec.js';
import { RTPROT_WEFT } from '../backend/kernel.js';

/** Fills Node's shared allocation pool with 0xff, so a body that missed zeroing a byte shows it. */
function dirtyPool(): void {
  for (let i = 0; i < 64; i++) Buffer.allocUnsafe(128).fill(0xff);
}

describe('netlink codec (unit)', () => {
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

  it('zeroes attribute padding although bodies come from an unzeroed pool', () => {
    dirtyPool();
    const neigh = neighSetMessage({ ifindex: 7, ip: '10.244.2.0', mac: '0e:2a:00:00:00:02' });
    // ndmsg (12) + NDA_DST (4 + 4) + NDA_LLADDR (4 + 6, padded to 12): the last two bytes are padding.
    expect(neigh.body.length).to.equal(32);
    expect([...neigh.body.subarray(30)]).to.deep.equal([0, 0]);
    expect(toNeigh(parseNeigh(neigh.body))).to.deep.equal({ ifindex: 7, ip: '10.244.2.0', mac: '0e:2a:00:00:00:02', permanent: true });
    dirtyPool();
    const fdb = fdbReplaceMessage({ ifindex: 7, mac: '0e:2a:00:00:00:02', dst: '198.18.0.2' });
    expect([...fdb.body.subarray(12 + 10, 12 + 12)]).to.deep.equal([0, 0]);
    expect(toFdb(parseNeigh(fdb.body))).to.deep.equal({ ifindex: 7, mac: '0e:2a:00:00:00:02', dst: '198.18.0.2', permanent: true });
  });

  it('route destinations are sent as networks: host bits masked, canonical ones untouched', () => {
    const sent = (dst: string) => parseRoute(routeReplaceMessage({ dst, gw: '10.244.2.0', oif: 5, onlink: true, proto: RTPROT_WEFT }).body)!.dst;
    expect(sent('10.244.2.0/24')).to.equal('10.244.2.0/24');
    expect(sent('10.1.2.3/16')).to.equal('10.1.0.0/16');
    expect(sent('10.1.2.3/32')).to.equal('10.1.2.3/32');
    expect(sent('10.1.2.3/0')).to.equal('0.0.0.0/0');
    // A delete's rtmsg has type 0 (any), which parseRoute skips: read rtm_dst_len and RTA_DST's data directly.
    const del = routeDelMessage({ dst: '10.244.7.9/24' }).body;
    expect([del[1], ...del.subarray(16, 20)]).to.deep.equal([24, 10, 244, 7, 0]);
    for (const bad of ['10.244.2.0', '10.244.2.0/', '10.244.2.0/33', '10.244.2.0/24/1', '/24']) {
      expect(() => routeReplaceMessage({ dst: bad, gw: null, oif: 5, onlink: false, proto: RTPROT_WEFT }), bad).to.throw(/not an IPv4/);
    }
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
});
