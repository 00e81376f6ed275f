/**
 * Link messages through the `netlink` package's generated formatters and
 * parsers: links carry nested, kind-specific attributes (IFLA_LINKINFO ->
 * IFLA_INFO_DATA -> IFLA_VXLAN_*) that are not worth hand-encoding, and weft
 * sends a handful of them per device lifetime.
 */
import { AttrStream, ifla, putString, putU16be, rt } from 'netlink';
import type { Link, VxlanAttrs, VxlanLinkSpec } from '../kernel.js';
import {
  AF_UNSPEC,
  NLM_F_CREATE,
  NLM_F_DUMP,
  NLM_F_EXCL,
  RTM_DELLINK,
  RTM_GETLINK,
  RTM_NEWLINK,
  forEachAttr,
  ipv4Bytes,
  ipv4String,
  macBytes,
  macString,
  type OutMessage,
} from './codec.js';

const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFF_UP = 0x1;

function body(msg: rt.LinkMessage): Buffer {
  const out = new AttrStream();
  rt.formatLinkMessage(msg, out);
  const b = Buffer.concat(out.bufs);
  return b.length % 4 === 0 ? b : Buffer.concat([b, Buffer.alloc(4 - (b.length % 4))]);
}

/** RTM_NEWLINK CREATE|EXCL of a vxlan device: `ip link add ... type vxlan ...`. */
export function vxlanAddMessage(spec: VxlanLinkSpec): OutMessage {
  const info = new AttrStream();
  info.push(IFLA_INFO_KIND, putString('vxlan'));
  const data: ifla.Vxlan = {
    id: spec.vni,
    local: ipv4Bytes(spec.local),
    link: spec.underlayIndex,
    port: putU16be(spec.port),
    learning: spec.learning ? 1 : 0,
  };
  if (spec.gbp) data.gbp = true;
  info.push(IFLA_INFO_DATA, ifla.formatVxlan(data));
  const linkinfo = Buffer.concat(info.bufs);
  return {
    type: RTM_NEWLINK,
    flags: NLM_F_CREATE | NLM_F_EXCL,
    body: body({ kind: 'link', data: {}, attrs: { ifname: spec.name, mtu: spec.mtu, address: macBytes(spec.mac), linkinfo } }),
  };
}

/** RTM_NEWLINK CREATE|EXCL of a bridge: `ip link add NAME mtu M type bridge`. */
export function bridgeAddMessage(name: string, mtu: number): OutMessage {
  const info = new AttrStream();
  info.push(IFLA_INFO_KIND, putString('bridge'));
  const linkinfo = Buffer.concat(info.bufs);
  return { type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, body: body({ kind: 'link', data: {}, attrs: { ifname: name, mtu, linkinfo } }) };
}

/** RTM_NEWLINK on an existing index: `ip link set dev X up` / `mtu M`. */
export function linkSetMessage(index: number, change: { up?: boolean; mtu?: number }): OutMessage {
  const data: rt.Link = { index };
  if (change.up !== undefined) {
    data.flags = change.up ? { up: true } : {};
    data.change = { up: true };
  }
  const attrs: ifla.LinkAttrs = {};
  if (change.mtu !== undefined) attrs.mtu = change.mtu;
  return { type: RTM_NEWLINK, flags: 0, body: body({ kind: 'link', data, attrs }) };
}

export function linkDelMessage(index: number): OutMessage {
  return { type: RTM_DELLINK, flags: 0, body: body({ kind: 'link', data: { index }, attrs: {} }) };
}

/** RTM_GETLINK of one link, by index or by name. */
export function linkGetMessage(by: { index: number } | { name: string }): OutMessage {
  const msg: rt.LinkMessage =
    'index' in by ? { kind: 'link', data: { index: by.index }, attrs: {} } : { kind: 'link', data: {}, attrs: { ifname: by.name } };
  return { type: RTM_GETLINK, flags: 0, body: body(msg) };
}

export function linkDumpMessage(): OutMessage {
  return { type: RTM_GETLINK, flags: NLM_F_DUMP, body: body({ kind: 'link', data: { family: AF_UNSPEC }, attrs: {} }) };
}

/** Decodes an RTM_NEWLINK payload into weft's Link. */
export function parseLink(payload: Buffer): Link {
  const msg = rt.parseLinkMessage(payload);
  let kind = '';
  let infoData: Buffer | null = null;
  if (msg.attrs.linkinfo) {
    forEachAttr(msg.attrs.linkinfo, 0, (type, data) => {
      if (type === IFLA_INFO_KIND) kind = data.toString('latin1').replace(/\0+$/, '');
      else if (type === IFLA_INFO_DATA) infoData = data;
    });
  }
  const flags = payload.readUInt32LE(8);
  const link: Link = {
    index: msg.data.index ?? 0,
    name: msg.attrs.ifname ?? '',
    mac: msg.attrs.address && msg.attrs.address.length === 6 ? macString(msg.attrs.address) : '',
    mtu: msg.attrs.mtu ?? 0,
    up: (flags & IFF_UP) !== 0,
    kind,
  };
  return kind === 'vxlan' && infoData ? { ...link, vxlan: parseVxlanInfo(infoData) } : link;
}

function parseVxlanInfo(data: Buffer): VxlanAttrs {
  const v = ifla.parseVxlan(data);
  return {
    vni: v.id ?? 0,
    port: v.port && v.port.length === 2 ? v.port.readUInt16BE(0) : 0,
    local: v.local && v.local.length === 4 ? ipv4String(v.local) : null,
    underlayIndex: v.link ?? 0,
    learning: (v.learning ?? 0) !== 0,
    gbp: v.gbp === true,
  };
}
