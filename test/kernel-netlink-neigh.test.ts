/**
 * Neighbour and FDB messages: padding zeroed although bodies come from Node's
 * (unzeroed) buffer pool, and dumped entries read with or without their
 * addresses. No kernel.
 */
import { expect } from 'chai';
import { WeftError } from '../common/errors.js';
import { parseNeigh, toFdb, toNeigh } from '../kernel/netlink/neigh.js';
import { Writer } from '../kernel/netlink/wire.js';
import { dirtyPool, fdbReplaceMessage, neighSetMessage } from './harness/netlink-messages.js';

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
});
