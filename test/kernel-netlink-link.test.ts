/**
 * Link messages, against the `netlink` package's generated formatters (which
 * weft does not load): encoded as the package encodes them, and decoded back.
 * No kernel.
 */
import { expect } from 'chai';
import { AttrStream, ifla, putString, putU16be, rt } from 'netlink';
import { bridgeAddMessage, linkDelMessage, linkDumpMessage, linkGetMessage, linkSetMessage, parseLink, vxlanAddMessage } from '../kernel/netlink/link.js';
import { Writer, forEachAttr } from '../kernel/netlink/wire.js';
import { dirtyPool } from './harness/netlink-messages.js';

/** The 6 bytes a MAC address attribute carries. */
const macBytes = (mac: string): Buffer => new Writer(12).attrMAC(2, mac).done().subarray(4, 10);

describe('netlink link messages, against the netlink package\'s generated formatters (unit)', () => {
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

  it('a vxlan device with an IPv6 local (flannel-v6.1) sends it as IFLA_VXLAN_LOCAL6, and reads it back', () => {
    dirtyPool();
    const v6 = { ...spec, name: 'flannel-v6.1', mtu: 1430, local: '2001:2::1' };
    const local6 = Buffer.from('20010002000000000000000000000001', 'hex');
    const data: ifla.Vxlan = { id: 1, local6, link: 2, port: putU16be(8472), learning: 0 };
    const want = reference({ kind: 'link', data: {}, attrs: { ifname: 'flannel-v6.1', mtu: 1430, address: macBytes('0a:aa:00:00:00:01'), linkinfo: linkinfo('vxlan', ifla.formatVxlan(data)) } });
    expect(leaves(vxlanAddMessage(v6).body)).to.deep.equal(leaves(want));
    expect(leaves(vxlanAddMessage(v6).body)).to.include('/18/2/17=20010002000000000000000000000001');
    expect(parseLink(vxlanAddMessage(v6).body).vxlan).to.deep.equal({ vni: 1, port: 8472, local: '2001:2::1', underlayIndex: 2, learning: false, gbp: false });
    expect(() => vxlanAddMessage({ ...v6, local: '2001:2::1::' })).to.throw(/not an IPv6 address/);
  });
});
