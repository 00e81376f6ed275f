/**
 * Neighbour and FDB messages: padding zeroed although bodies come from Node's
 * (unzeroed) buffer pool, and dumped entries read with or without their
 * addresses. No kernel.
 */
import { expect } from 'chai';
import { WeftError } from '../common/errors.js';
import { neighDumpMessage, parseNeigh, toDeletedNeigh, toFdb, toNeigh } from '../kernel/netlink/neigh.js';
import { Writer } from '../kernel/netlink/wire.js';
import { dirtyPool, fdbDelMessage, fdbReplaceMessage, neighDelMessage, neighSetMessage } from './harness/netlink-messages.js';

/** An rtattr with its padding. */
function rta(type: number, data: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16LE(4 + data.length, 0);
  head.writeUInt16LE(type, 2);
  return Buffer.concat([head, data, Buffer.alloc((4 - (data.length % 4)) % 4)]);
}

/** struct ndmsg. */
function ndmsg(family: number, ifindex: number, state: number, flags: number, type: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(family, 0);
  b.writeInt32LE(ifindex, 4);
  b.writeUInt16LE(state, 8);
  b.writeUInt8(flags, 10);
  b.writeUInt8(type, 11);
  return b;
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/[: ]/g, ''), 'hex');

describe('netlink neighbour and FDB messages (unit)', () => {
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
    // An NDA_DST of neither 4 nor 16 bytes is no address; an IPv6 neighbour's 16 bytes are (below).
    const odd = new Writer(64).u8(10).u8(0).u16(0).u32(7).u16(0x80).u8(0).u8(1).attr(1, Buffer.alloc(12, 0xfe)).done();
    expect(parseNeigh(odd)).to.deep.include({ family: 10, dst: null, lladdr: null });
    expect(toNeigh(parseNeigh(odd))).to.equal(null);
    // An IPv6 neighbour without a lladdr (INCOMPLETE): its address read, no neighbour.
    const v6 = new Writer(64).u8(10).u8(0).u16(0).u32(7).u16(0x80).u8(0).u8(1).attr(1, Buffer.alloc(16, 0xfe)).done();
    expect(parseNeigh(v6)).to.deep.include({ family: 10, dst: 'fefe:fefe:fefe:fefe:fefe:fefe:fefe:fefe', lladdr: null });
    expect(toNeigh(parseNeigh(v6))).to.equal(null);
    const incomplete = new Writer(64).u8(2).u8(0).u16(0).u32(7).u16(0x01).u8(0).u8(1).attr(1, Buffer.from([10, 244, 3, 0])).done();
    expect(parseNeigh(incomplete)).to.deep.include({ dst: '10.244.3.0', lladdr: null });
    expect(toNeigh(parseNeigh(incomplete))).to.equal(null);
  });

  it('a message shorter than its header fails with WEFT_ERR_KERNEL', () => {
    expect(() => parseNeigh(Buffer.alloc(11))).to.throw(WeftError, /neighbour message of 11 bytes, shorter than its header/).with.property('code', 'WEFT_ERR_KERNEL');
  });

  it('an IPv6 neighbour is an AF_INET6 (NDP) entry, as `ip -6 neigh replace fd00:10:244:3:: dev X lladdr M nud permanent` sends it', () => {
    dirtyPool();
    const msg = neighSetMessage({ ifindex: 9, ip: 'fd00:10:244:3::', mac: '0e:2a:00:00:00:03' });
    // iproute2 6.1 (strace): ndmsg {AF_INET6, ifindex, NUD_PERMANENT, 0, RTN_UNSPEC}, NDA_DST (16 bytes), NDA_LLADDR.
    // weft's ndm_type is RTN_UNICAST, as for IPv4: the kernel ignores it for a neighbour.
    const iproute2 = Buffer.concat([ndmsg(10, 9, 0x80, 0, 0), rta(1, hex('fd00 0010 0244 0003 0000 0000 0000 0000')), rta(2, hex('0e:2a:00:00:00:03'))]);
    expect(msg.body.length).to.equal(iproute2.length);
    expect(msg.body.subarray(12).equals(iproute2.subarray(12)), 'attributes').to.equal(true);
    expect(msg.body.subarray(0, 11).equals(iproute2.subarray(0, 11)), 'ndmsg but ndm_type').to.equal(true);
    expect(msg.body[11]).to.equal(1);
    expect(toNeigh(parseNeigh(msg.body))).to.deep.equal({ ifindex: 9, ip: 'fd00:10:244:3::', mac: '0e:2a:00:00:00:03', permanent: true });
    const del = neighDelMessage({ ifindex: 9, ip: 'fd00:10:244:3::' }).body;
    expect(del.equals(Buffer.concat([ndmsg(10, 9, 0, 0, 0), rta(1, hex('fd00 0010 0244 0003 0000 0000 0000 0000'))]))).to.equal(true);
    // The deletion the kernel reports (FAILED first, no lladdr), of either family.
    expect(toDeletedNeigh(parseNeigh(del))).to.deep.equal({ ifindex: 9, ip: 'fd00:10:244:3::', mac: '', permanent: false });
    expect(toNeigh(parseNeigh(neighSetMessage({ ifindex: 9, ip: '10.244.3.0', mac: '0e:2a:00:00:00:03' }).body))?.ip).to.equal('10.244.3.0');
  });

  it('an FDB entry with an IPv6 remote carries a 16-byte NDA_DST, as `bridge fdb replace M dev X dst 2001:2::3 self permanent` sends it', () => {
    dirtyPool();
    const msg = fdbReplaceMessage({ ifindex: 9, mac: '0e:2a:00:00:00:03', dst: '2001:2::3' });
    // bridge 6.1 (strace): ndmsg {AF_BRIDGE, ifindex, NUD_NOARP|NUD_PERMANENT, NTF_SELF, 0}, NDA_LLADDR, NDA_DST.
    // weft's state is NUD_PERMANENT alone, as it is for an IPv4 remote.
    const bridge = Buffer.concat([ndmsg(7, 9, 0xc0, 2, 0), rta(2, hex('0e:2a:00:00:00:03')), rta(1, hex('2001 0002 0000 0000 0000 0000 0000 0003'))]);
    expect(msg.body.subarray(12).equals(bridge.subarray(12)), 'attributes').to.equal(true);
    expect([...msg.body.subarray(0, 12)]).to.deep.equal([...ndmsg(7, 9, 0x80, 2, 0)]);
    expect(toFdb(parseNeigh(msg.body))).to.deep.equal({ ifindex: 9, mac: '0e:2a:00:00:00:03', dst: '2001:2::3', permanent: true });
    // The delete names the MAC alone, whatever the remote's family.
    expect(fdbDelMessage({ ifindex: 9, mac: '0e:2a:00:00:00:03' }).body.length).to.equal(12 + 12);
  });

  it('the dump of IPv6 neighbours asks for AF_INET6; an IPv6 neighbour of a malformed address fails to encode', () => {
    expect(neighDumpMessage(10).body[0]).to.equal(10);
    expect(() => neighSetMessage({ ifindex: 9, ip: 'fd00::10::1', mac: '0e:2a:00:00:00:03' })).to.throw(WeftError, /not an IPv6 address/).with.property('code', 'WEFT_ERR_ADDRESS_INVALID');
    expect(() => fdbReplaceMessage({ ifindex: 9, mac: '0e:2a:00:00:00:03', dst: '2001:2::3/64' })).to.throw(WeftError, /not an IPv6 address/);
  });

  it('leaves out IPv6\'s multicast mappings (NUD_NOARP), as `ip -6 neigh show` does; IPv4\'s NOARP entries stay reported', () => {
    const noarp = (family: number, dst: Buffer, mac: string) => Buffer.concat([ndmsg(family, 9, 0x40, 0, 5), rta(1, dst), rta(2, hex(mac))]);
    const ff02 = noarp(10, hex('ff02 0000 0000 0000 0000 0000 0000 0016'), '33:33:00:00:00:16');
    expect(parseNeigh(ff02)).to.deep.include({ dst: 'ff02::16', lladdr: '33:33:00:00:00:16', state: 0x40 });
    expect(toNeigh(parseNeigh(ff02))).to.equal(null);
    expect(toDeletedNeigh(parseNeigh(ff02))).to.equal(null);
    expect(toNeigh(parseNeigh(noarp(2, Buffer.from([224, 0, 0, 1]), '01:00:5e:00:00:01')))).to.deep.equal({ ifindex: 9, ip: '224.0.0.1', mac: '01:00:5e:00:00:01', permanent: false });
  });
});
