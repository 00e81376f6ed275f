/**
 * The IPv4 address dump of the kernel port: the RTM_NEWADDR decoder (scope,
 * IFA_F_* flags, the IFA_FLAGS attribute, malformed input). The fake's
 * matching semantics are in kernel-fake.test.ts, the real kernel is checked
 * in underlay-real.test.ts.
 */
import { expect } from 'chai';
import { parseAddrInfo } from '../kernel/netlink/addr.js';

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
});
