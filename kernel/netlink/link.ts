/**
 * Link messages (`ip link add|set|del|show`), encoded and decoded by hand like
 * the other message kinds (wire.ts). weft sends a handful per device lifetime
 * and reads a few attributes back, so a dozen constants cover it; the
 * `netlink` package's generated link formatters know every link kind the
 * kernel has, and loading them would cost weftd start-up time and memory for
 * this.
 *
 * Layouts from <linux/rtnetlink.h> (struct ifinfomsg) and <linux/if_link.h>
 * (IFLA_*, IFLA_INFO_*, IFLA_VXLAN_*).
 */
import type { Link, VxlanAttrs, VxlanLinkSpec } from '../kernel.js';
import { AF_UNSPEC, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, Writer, forEachAttr, ipFamily, ipv4String, ipv6String, macString, type OutMessage } from './wire.js';

export const RTM_NEWLINK = 16;
export const RTM_DELLINK = 17;
export const RTM_GETLINK = 18;

export const IFINFOMSG_LEN = 16;
/** Room for every link message weft builds (the largest is a vxlan add). */
const LINK_MESSAGE_MAX = 256;

const IFF_UP = 0x1;

const IFLA_ADDRESS = 1;
const IFLA_IFNAME = 3;
const IFLA_MTU = 4;
const IFLA_LINKINFO = 18;
const IFLA_INFO_KIND = 1;
const IFLA_INFO_DATA = 2;
const IFLA_VXLAN_ID = 1;
const IFLA_VXLAN_LINK = 3;
const IFLA_VXLAN_LOCAL = 4;
const IFLA_VXLAN_LEARNING = 7;
const IFLA_VXLAN_PORT = 15;
const IFLA_VXLAN_LOCAL6 = 17;
const IFLA_VXLAN_GBP = 23;

/** struct ifinfomsg: family, type, index, flags and the mask of flags to change. */
function ifinfomsg(index = 0, flags = 0, change = 0): Writer {
  return new Writer(LINK_MESSAGE_MAX).u8(AF_UNSPEC).u8(0).u16(0).u32(index).u32(flags).u32(change);
}

/**
 * RTM_NEWLINK CREATE|EXCL of a vxlan device: `ip link add NAME address MAC mtu M type vxlan id VNI local IP dev UNDERLAY dstport PORT [nolearning] [gbp]`.
 * An IPv6 `local` goes as IFLA_VXLAN_LOCAL6 (flannel's `flannel-v6.<VNI>`): the device then tunnels over IPv6 and its FDB remotes are IPv6.
 */
export function vxlanAddMessage(spec: VxlanLinkSpec): OutMessage {
  const w = ifinfomsg()
    .attrString(IFLA_IFNAME, spec.name)
    .attrU32(IFLA_MTU, spec.mtu)
    .attrMAC(IFLA_ADDRESS, spec.mac)
    .nest(IFLA_LINKINFO, (info) =>
      info.attrString(IFLA_INFO_KIND, 'vxlan').nest(IFLA_INFO_DATA, (data) => {
        data
          .attrU32(IFLA_VXLAN_ID, spec.vni)
          .attrIP(ipFamily(spec.local) === 6 ? IFLA_VXLAN_LOCAL6 : IFLA_VXLAN_LOCAL, spec.local)
          .attrU32(IFLA_VXLAN_LINK, spec.underlayIndex)
          .attrU16BE(IFLA_VXLAN_PORT, spec.port)
          .attrU8(IFLA_VXLAN_LEARNING, spec.learning ? 1 : 0);
        if (spec.gbp) data.attrFlag(IFLA_VXLAN_GBP);
      }),
    );
  return { type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, body: w.done() };
}

/** RTM_NEWLINK CREATE|EXCL of a bridge: `ip link add NAME mtu M type bridge`. */
export function bridgeAddMessage(name: string, mtu: number): OutMessage {
  const w = ifinfomsg()
    .attrString(IFLA_IFNAME, name)
    .attrU32(IFLA_MTU, mtu)
    .nest(IFLA_LINKINFO, (info) => info.attrString(IFLA_INFO_KIND, 'bridge'));
  return { type: RTM_NEWLINK, flags: NLM_F_CREATE | NLM_F_EXCL, body: w.done() };
}

/** RTM_NEWLINK on an existing index: `ip link set dev X up` / `mtu M`. */
export function linkSetMessage(index: number, change: { up?: boolean; mtu?: number }): OutMessage {
  const w = change.up === undefined ? ifinfomsg(index) : ifinfomsg(index, change.up ? IFF_UP : 0, IFF_UP);
  if (change.mtu !== undefined) w.attrU32(IFLA_MTU, change.mtu);
  return { type: RTM_NEWLINK, flags: 0, body: w.done() };
}

/** RTM_DELLINK: `ip link del dev X`. */
export function linkDelMessage(index: number): OutMessage {
  return { type: RTM_DELLINK, flags: 0, body: ifinfomsg(index).done() };
}

/** RTM_GETLINK of one link, by index or by name. */
export function linkGetMessage(by: { index: number } | { name: string }): OutMessage {
  const w = 'index' in by ? ifinfomsg(by.index) : ifinfomsg().attrString(IFLA_IFNAME, by.name);
  return { type: RTM_GETLINK, flags: 0, body: w.done() };
}

/** RTM_GETLINK dump: `ip link show`. */
export function linkDumpMessage(): OutMessage {
  return { type: RTM_GETLINK, flags: NLM_F_DUMP, body: ifinfomsg().done() };
}

/** Decodes an RTM_NEWLINK payload into weft's Link. */
export function parseLink(payload: Buffer): Link {
  let name = '';
  let mac = '';
  let mtu = 0;
  let kind = '';
  let infoData: Buffer | null = null;
  forEachAttr(payload, IFINFOMSG_LEN, (type, data) => {
    if (type === IFLA_IFNAME) name = cString(data);
    else if (type === IFLA_ADDRESS && data.length === 6) mac = macString(data);
    else if (type === IFLA_MTU && data.length >= 4) mtu = data.readUInt32LE(0);
    else if (type === IFLA_LINKINFO) {
      forEachAttr(data, 0, (infoType, info) => {
        if (infoType === IFLA_INFO_KIND) kind = cString(info);
        else if (infoType === IFLA_INFO_DATA) infoData = info;
      });
    }
  });
  const link: Link = { index: payload.readInt32LE(4), name, mac, mtu, up: (payload.readUInt32LE(8) & IFF_UP) !== 0, kind };
  return kind === 'vxlan' && infoData ? { ...link, vxlan: parseVxlanInfo(infoData) } : link;
}

function parseVxlanInfo(data: Buffer): VxlanAttrs {
  const v = { vni: 0, port: 0, local: null as string | null, underlayIndex: 0, learning: false, gbp: false };
  forEachAttr(data, 0, (type, value) => {
    if (type === IFLA_VXLAN_ID && value.length >= 4) v.vni = value.readUInt32LE(0);
    else if (type === IFLA_VXLAN_PORT && value.length === 2) v.port = value.readUInt16BE(0);
    else if (type === IFLA_VXLAN_LOCAL && value.length === 4) v.local = ipv4String(value);
    else if (type === IFLA_VXLAN_LOCAL6 && value.length === 16) v.local = ipv6String(value);
    else if (type === IFLA_VXLAN_LINK && value.length >= 4) v.underlayIndex = value.readUInt32LE(0);
    else if (type === IFLA_VXLAN_LEARNING && value.length >= 1) v.learning = value[0] !== 0;
    else if (type === IFLA_VXLAN_GBP) v.gbp = true;
  });
  return v;
}

/** A string attribute without its NUL terminator(s). */
function cString(data: Buffer): string {
  const end = data.indexOf(0);
  return data.toString('utf8', 0, end < 0 ? data.length : end);
}
