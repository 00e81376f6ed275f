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
  fdbDelMessage,
  fdbReplaceMessage,
  forEachAttr,
  frame,
  frameInto,
  neighDelMessage,
  neighSetMessage,
  parseNeigh,
  parseRoute,
  routeDelMessage,
  routeReplaceMessage,
  splitMessages,
  toFdb,
  toNeigh,
  writeFdbDel,
  writeFdbReplace,
  writeNeighDel,
  writeNeighSet,
  writeRouteDel,
  writeRouteReplace,
  Writer,
  type OutMessage,
  type RequestWriter,
} from '../kernel/netlink/wire.js';
import { RTPROT_WEFT } from '../kernel/kernel.js';
import { bridgeAddMessage, linkDelMessage, linkDumpMessage, linkGetMessage, linkSetMessage, parseLink, vxlanAddMessage } from '../kernel/netlink/link.js';
import { AttrStream, ifla, putString, putU16be, rt } from 'netlink';

/** The 4 bytes an IPv4 address attribute carries. */
const ipv4Bytes = (ip: string): Buffer => new Writer(8).attrIPv4(1, ip).done().subarray(4);
/** The 6 bytes a MAC address attribute carries. */
const macBytes = (mac: string): Buffer => new Writer(12).attrMAC(2, mac).done().subarray(4, 10);

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

  it('dump parsing: IPv4 neighbours and FDB entries with MACs, anything else without them', () => {
    const neigh = parseNeigh(neighSetMessage({ ifindex: 7, ip: '10.244.2.0', mac: '0E:2A:00:AB:CD:EF' }).body);
    expect(neigh).to.deep.include({ family: 2, ifindex: 7, dst: '10.244.2.0', lladdr: '0e:2a:00:ab:cd:ef' });
    // An IPv6 neighbour (NDA_DST of 16 bytes) and one without a lladdr (INCOMPLETE): no address taken.
    const v6 = new Writer(64).u8(10).u8(0).u16(0).u32(7).u16(0x80).u8(0).u8(1).attr(1, Buffer.alloc(16, 0xfe)).done();
    expect(parseNeigh(v6)).to.deep.include({ family: 10, dst: null, lladdr: null });
    expect(toNeigh(parseNeigh(v6))).to.equal(null);
    const incomplete = new Writer(64).u8(2).u8(0).u16(0).u32(7).u16(0x01).u8(0).u8(1).attr(1, Buffer.from([10, 244, 3, 0])).done();
    expect(parseNeigh(incomplete)).to.deep.include({ dst: '10.244.3.0', lladdr: null });
    expect(toNeigh(parseNeigh(incomplete))).to.equal(null);
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

  describe('link messages, against the netlink package\'s generated formatters', () => {
    /** The package's encoding of a link message body, padded to 4 bytes as the kernel wants it. */
    function reference(msg: rt.LinkMessage): Buffer {
      const out = new AttrStream();
      rt.formatLinkMessage(msg, out);
      const b = Buffer.concat(out.bufs);
      return Buffer.concat([b, Buffer.alloc((4 - (b.length % 4)) % 4)]);
    }
    function linkinfo(kind: string, data?: Parameters<AttrStream['push']>[1]): Buffer {
      const info = new AttrStream();
      info.push(1, putString(kind));
      if (data) info.push(2, data);
      return Buffer.concat(info.bufs);
    }
    /**
     * The ifinfomsg header and every leaf attribute as `path=hex`, descending
     * into IFLA_LINKINFO and its IFLA_INFO_DATA. A nest's length may or may not
     * count the padding after its last member (iproute2 counts it, the package
     * does not; the kernel takes both), so nests are compared by content.
     */
    function leaves(body: Buffer): string[] {
      const out = [`ifinfomsg=${body.subarray(0, 16).toString('hex')}`];
      const walk = (buf: Buffer, off: number, path: string): void =>
        forEachAttr(buf, off, (type, data) => {
          const at = `${path}/${type}`;
          if (at === '/18' || at === '/18/2') walk(data, 0, at);
          else out.push(`${at}=${data.toString('hex')}`);
        });
      walk(body, 16, '');
      return out;
    }
    const spec = { name: 'flannel.1', mac: '0a:aa:00:00:00:01', mtu: 1450, vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: 2, learning: false, gbp: false };

    it('encodes add, set, delete, get and dump as the package does', () => {
      dirtyPool();
      for (const gbp of [false, true]) {
        const data: ifla.Vxlan = { id: 1, local: Buffer.from([198, 18, 0, 1]), link: 2, port: putU16be(8472), learning: 0 };
        if (gbp) data.gbp = true;
        const want = reference({ kind: 'link', data: {}, attrs: { ifname: 'flannel.1', mtu: 1450, address: macBytes('0a:aa:00:00:00:01'), linkinfo: linkinfo('vxlan', ifla.formatVxlan(data)) } });
        expect(leaves(vxlanAddMessage({ ...spec, gbp }).body), `vxlan add, gbp ${gbp}`).to.deep.equal(leaves(want));
      }
      expect(leaves(bridgeAddMessage('weft0', 1450).body)).to.deep.equal(leaves(reference({ kind: 'link', data: {}, attrs: { ifname: 'weft0', mtu: 1450, linkinfo: linkinfo('bridge') } })));
      expect(linkSetMessage(7, { up: true }).body.equals(reference({ kind: 'link', data: { index: 7, flags: { up: true }, change: { up: true } }, attrs: {} }))).to.equal(true);
      expect(linkSetMessage(7, { up: false }).body.equals(reference({ kind: 'link', data: { index: 7, flags: {}, change: { up: true } }, attrs: {} }))).to.equal(true);
      expect(linkSetMessage(7, { mtu: 1400 }).body.equals(reference({ kind: 'link', data: { index: 7 }, attrs: { mtu: 1400 } }))).to.equal(true);
      expect(linkDelMessage(7).body.equals(reference({ kind: 'link', data: { index: 7 }, attrs: {} }))).to.equal(true);
      expect(linkGetMessage({ index: 7 }).body.equals(reference({ kind: 'link', data: { index: 7 }, attrs: {} }))).to.equal(true);
      expect(linkGetMessage({ name: 'eth0' }).body.equals(reference({ kind: 'link', data: {}, attrs: { ifname: 'eth0' } }))).to.equal(true);
      expect(linkDumpMessage().body.equals(reference({ kind: 'link', data: { family: 0 }, attrs: {} }))).to.equal(true);
    });

    it('decodes what it encodes, vxlan attributes included', () => {
      for (const variant of [spec, { ...spec, learning: true, gbp: true, port: 4789, vni: 0xabcdef }]) {
        expect(parseLink(vxlanAddMessage(variant).body)).to.deep.equal({
          index: 0,
          name: 'flannel.1',
          mac: '0a:aa:00:00:00:01',
          mtu: 1450,
          up: false,
          kind: 'vxlan',
          vxlan: { vni: variant.vni, port: variant.port, local: '198.18.0.1', underlayIndex: 2, learning: variant.learning, gbp: variant.gbp },
        });
      }
      expect(parseLink(bridgeAddMessage('weft0', 1500).body)).to.deep.equal({ index: 0, name: 'weft0', mac: '', mtu: 1500, up: false, kind: 'bridge' });
      expect(parseLink(linkSetMessage(9, { up: true }).body)).to.include({ index: 9, up: true, name: '', kind: '' });
    });
  });
});
