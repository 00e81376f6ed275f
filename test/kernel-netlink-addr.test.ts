/**
 * The IPv4 address dump of the kernel port: the RTM_NEWADDR decoder (scope,
 * IFA_F_* flags, the IFA_FLAGS attribute, malformed input). The fake's
 * matching semantics are in kernel-fake.test.ts, the real kernel is checked
 * in underlay-real.test.ts.
 */
import { expect } from 'chai';
import { IFA_F_NODAD, RTM_DELADDR, RTM_NEWADDR, addrAddMessage, addrDelMessage, addrDumpMessage, parseAddrInfo } from '../kernel/netlink/addr.js';

const AF_INET = 2;
const AF_INET6 = 10;
const AF_BRIDGE = 7;
const IFA_ADDRESS = 1;
const IFA_LOCAL = 2;
const IFA_FLAGS = 8;

function attr(type: number, data: Buffer): Buffer {
  const head = Buffer.alloc(4);
  head.writeUInt16LE(4 + data.length, 0);
  head.writeUInt16LE(type, 2);
  const pad = Buffer.alloc((4 - (data.length % 4)) % 4);
  return Buffer.concat([head, data, pad]);
}

function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v, 0);
  return b;
}

/** An RTM_NEWADDR payload: ifaddrmsg + attributes. */
function ifaddr(h: { family?: number; prefixLen: number; flags?: number; scope?: number; ifindex: number }, ...attrs: Buffer[]): Buffer {
  const msg = Buffer.alloc(8);
  msg.writeUInt8(h.family ?? AF_INET, 0);
  msg.writeUInt8(h.prefixLen, 1);
  msg.writeUInt8(h.flags ?? 0, 2);
  msg.writeUInt8(h.scope ?? 0, 3);
  msg.writeUInt32LE(h.ifindex, 4);
  return Buffer.concat([msg, ...attrs]);
}

const ip = (s: string): Buffer => Buffer.from(s.split('.').map(Number));

describe('netlink address messages: IPv4 address dump decoding (RTM_NEWADDR)', () => {
  it('reads address, prefix, scope and the permanent/deprecated/secondary flags from the header', () => {
    const payload = ifaddr({ prefixLen: 24, flags: 0x80 | 0x01, scope: 0, ifindex: 3 }, attr(IFA_ADDRESS, ip('198.18.0.2')), attr(IFA_LOCAL, ip('198.18.0.2')));
    expect(parseAddrInfo(payload)).to.deep.equal({ ifindex: 3, cidr: '198.18.0.2/24', scope: 'global', permanent: true, deprecated: false, secondary: true });
  });

  it('lets the 32-bit IFA_FLAGS attribute override the 8-bit header flags', () => {
    const payload = ifaddr({ prefixLen: 16, flags: 0x80, ifindex: 2 }, attr(IFA_LOCAL, ip('10.0.2.15')), attr(IFA_FLAGS, u32(0x20)));
    expect(parseAddrInfo(payload)).to.include({ permanent: false, deprecated: true, secondary: false });
  });

  it('names scopes like iproute2 and prints unnamed ones as numbers', () => {
    const scoped = (scope: number) => parseAddrInfo(ifaddr({ prefixLen: 8, scope, ifindex: 1 }, attr(IFA_LOCAL, ip('127.0.0.1'))))?.scope;
    expect([0, 200, 253, 254, 255, 17].map(scoped)).to.deep.equal(['global', 'site', 'link', 'host', 'nowhere', '17']);
  });

  it('falls back to IFA_ADDRESS when IFA_LOCAL is absent', () => {
    expect(parseAddrInfo(ifaddr({ prefixLen: 32, ifindex: 4 }, attr(IFA_ADDRESS, ip('192.0.2.1'))))).to.include({ cidr: '192.0.2.1/32' });
  });

  it('returns null for other families, short messages, a missing or malformed address, a bad prefix', () => {
    // Other families than AF_INET and AF_INET6 (IPv6 is decoded: below); an IPv6 address of IPv4's length.
    expect(parseAddrInfo(ifaddr({ family: AF_BRIDGE, prefixLen: 64, ifindex: 1 }, attr(IFA_LOCAL, Buffer.alloc(16))))).to.equal(null);
    expect(parseAddrInfo(ifaddr({ family: AF_INET6, prefixLen: 64, ifindex: 1 }, attr(IFA_LOCAL, Buffer.alloc(4))))).to.equal(null);
    expect(parseAddrInfo(Buffer.alloc(5))).to.equal(null);
    expect(parseAddrInfo(ifaddr({ prefixLen: 24, ifindex: 1 }))).to.equal(null);
    expect(parseAddrInfo(ifaddr({ prefixLen: 24, ifindex: 1 }, attr(IFA_LOCAL, Buffer.from([10, 0, 0]))))).to.equal(null);
    expect(parseAddrInfo(ifaddr({ prefixLen: 33, ifindex: 1 }, attr(IFA_LOCAL, ip('10.0.0.1'))))).to.equal(null);
  });

  it('stops at a truncated attribute instead of reading past the message', () => {
    const whole = ifaddr({ prefixLen: 24, ifindex: 1 }, attr(IFA_LOCAL, ip('10.0.0.1')));
    for (let cut = 0; cut < whole.length; cut++) expect(() => parseAddrInfo(whole.subarray(0, cut))).not.to.throw();
  });

  it('stops at a truncated IPv6 address message too', () => {
    const whole = ifaddr({ family: AF_INET6, prefixLen: 64, ifindex: 1 }, attr(IFA_ADDRESS, ip6('2001:2::1')));
    for (let cut = 0; cut < whole.length; cut++) expect(() => parseAddrInfo(whole.subarray(0, cut))).not.to.throw();
  });
});

/** 16 bytes of an IPv6 address written out in full or with `::`. */
function ip6(s: string): Buffer {
  const [head = '', tail] = s.split('::');
  const groups = (part: string): string[] => (part ? part.split(':') : []);
  const h = groups(head);
  const t = tail === undefined ? [] : groups(tail);
  const all = [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return Buffer.from(all.map((g) => g.padStart(4, '0')).join(''), 'hex');
}

describe('netlink address messages: IPv6', () => {
  it('adds with IFA_F_NODAD in ifa_flags, byte for byte as `ip -6 addr add fd00:10:244:1::/128 dev X nodad` sends it', () => {
    // iproute2 6.1 (strace): ifaddrmsg {AF_INET6, 128, IFA_F_NODAD, RT_SCOPE_UNIVERSE, ifindex}, IFA_LOCAL, IFA_ADDRESS.
    const add = addrAddMessage({ ifindex: 9, cidr: 'fd00:10:244:1::/128' });
    expect(add.type).to.equal(RTM_NEWADDR);
    expect(add.flags).to.equal(0x600);
    const iproute2 = ifaddr({ family: AF_INET6, prefixLen: 128, flags: IFA_F_NODAD, ifindex: 9 }, attr(IFA_LOCAL, ip6('fd00:10:244:1::')), attr(IFA_ADDRESS, ip6('fd00:10:244:1::')));
    expect(add.body.toString('hex')).to.equal(iproute2.toString('hex'));
    // A delete carries no flags; IPv4's add none either (no DAD there).
    const del = addrDelMessage({ ifindex: 9, cidr: 'fd00:10:244:1::/128' });
    expect([del.type, del.body[0], del.body[2]]).to.deep.equal([RTM_DELADDR, AF_INET6, 0]);
    expect(addrAddMessage({ ifindex: 9, cidr: '10.244.1.0/32' }).body[2]).to.equal(0);
    expect([...addrDumpMessage(6).body]).to.deep.equal([AF_INET6, 0, 0, 0, 0, 0, 0, 0]);
    expect([...addrDumpMessage().body]).to.deep.equal([AF_INET, 0, 0, 0, 0, 0, 0, 0]);
    expect(() => addrAddMessage({ ifindex: 9, cidr: 'fd00:10:244:1::/129' })).to.throw(/not an IPv6 CIDR/);
  });

  it('decodes IPv6 addresses (IFA_ADDRESS alone, as the kernel sends them) with scope, flags and the temporary bit; secondary is IPv4\'s', () => {
    const global = ifaddr({ family: AF_INET6, prefixLen: 64, flags: 0x80 | 0x02, scope: 0, ifindex: 3 }, attr(IFA_ADDRESS, ip6('2001:2::1')), attr(IFA_FLAGS, u32(0x80 | 0x02)));
    expect(parseAddrInfo(global)).to.deep.equal({ ifindex: 3, cidr: '2001:2::1/64', scope: 'global', permanent: true, deprecated: false, secondary: false, temporary: false });
    // A privacy address: IFA_F_TEMPORARY, the bit IPv4 calls IFA_F_SECONDARY; with a lifetime (not permanent), and deprecated.
    const temporary = ifaddr({ family: AF_INET6, prefixLen: 64, flags: 0x01, ifindex: 3 }, attr(IFA_ADDRESS, ip6('2001:2::9c1e:1')), attr(IFA_FLAGS, u32(0x01 | 0x20)));
    expect(parseAddrInfo(temporary)).to.deep.equal({ ifindex: 3, cidr: '2001:2::9c1e:1/64', scope: 'global', permanent: false, deprecated: true, secondary: false, temporary: true });
    const link = ifaddr({ family: AF_INET6, prefixLen: 64, flags: 0x80, scope: 253, ifindex: 3 }, attr(IFA_ADDRESS, ip6('fe80::c2a:ff:fe00:1')));
    expect(parseAddrInfo(link)).to.include({ cidr: 'fe80::c2a:ff:fe00:1/64', scope: 'link' });
    // A point-to-point IPv6 address: its own in IFA_LOCAL, the peer's in IFA_ADDRESS.
    const ptp = ifaddr({ family: AF_INET6, prefixLen: 128, ifindex: 3 }, attr(IFA_LOCAL, ip6('2001:2::1')), attr(IFA_ADDRESS, ip6('2001:2::2')));
    expect(parseAddrInfo(ptp)).to.include({ cidr: '2001:2::1/128' });
    expect(parseAddrInfo(ifaddr({ family: AF_INET6, prefixLen: 129, ifindex: 3 }, attr(IFA_ADDRESS, ip6('2001:2::1'))))).to.equal(null);
    // IPv4 entries keep their shape, without the IPv6-only field.
    expect(parseAddrInfo(ifaddr({ prefixLen: 24, flags: 0x01, ifindex: 3 }, attr(IFA_LOCAL, ip('198.18.0.2'))))).to.not.have.property('temporary');
  });
});
