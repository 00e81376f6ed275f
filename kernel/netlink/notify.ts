/**
 * What the listener child forwards, decoded. rtnetlink notifications, the
 * messages `ip monitor link neigh address route nexthop` prints, become KernelChanges through
 * the same parsers as dumps, so a notification and a dump of one entry
 * compare equal. nf_tables notifications (`nft monitor`) are not decoded: the
 * child reports each burst of them as one marker, because all weft needs to
 * know is that the ruleset changed; its markers become NftChanges.
 */
import type { KernelChange, NftChange } from '../kernel.js';
import { RTM_DELADDR, RTM_NEWADDR, parseAddrInfo } from './addr.js';
import { IFINFOMSG_LEN, RTM_DELLINK, RTM_NEWLINK, parseLink } from './link.js';
import { NDMSG_LEN, RTM_DELNEIGH, RTM_NEWNEIGH, parseNeigh, toDeletedNeigh, toFdb, toNeigh } from './neigh.js';
import { RTMSG_LEN, RTM_DELROUTE, RTM_NEWROUTE, parseRoute } from './route.js';
import { NHMSG_LEN, RTM_DELNEXTHOP, RTM_NEWNEXTHOP, parseNexthop } from './nexthop.js';
import { AF_BRIDGE, AF_INET, AF_INET6, AF_UNSPEC, type InMessage } from './wire.js';

/** The multicast groups weft listens to (<linux/rtnetlink.h> enum rtnetlink_groups). */
export const RTNLGRP_LINK = 1;
export const RTNLGRP_NEIGH = 3;
export const RTNLGRP_IPV4_IFADDR = 5;
export const RTNLGRP_IPV4_ROUTE = 7;
export const RTNLGRP_IPV6_IFADDR = 9;
export const RTNLGRP_IPV6_ROUTE = 11;
export const RTNLGRP_NEXTHOP = 32;
/** RTNLGRP_NEIGH carries both families' neighbours (and FDB entries); addresses and routes have a group per family. */
export const MONITOR_GROUPS: readonly number[] = [RTNLGRP_LINK, RTNLGRP_NEIGH, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV4_ROUTE, RTNLGRP_IPV6_IFADDR, RTNLGRP_IPV6_ROUTE];
/** Groups joined where the kernel has them: nexthop objects came with 5.3, and joining an unknown group fails. */
export const OPTIONAL_MONITOR_GROUPS: readonly number[] = [RTNLGRP_NEXTHOP];

/**
 * nf_tables, where iptables-nft keeps its rules, reports every ruleset change
 * on this protocol and group (<linux/netfilter/nfnetlink.h>).
 */
export const NETLINK_NETFILTER = 12;
export const NFNLGRP_NFTABLES = 7;
/**
 * The listener's marker for "the nf_tables ruleset changed": the type of
 * NFT_MSG_NEWGEN (subsystem NFNL_SUBSYS_NFTABLES = 10), which closes every
 * ruleset transaction. No rtnetlink message has this type, nor the two
 * markers below.
 */
export const NFT_CHANGED = (10 << 8) | 0x0f;
/**
 * The listener's marker for "nf_tables changes are not watched", with the
 * reason as payload: the type of NFT_MSG_GETGEN, which no notification has.
 */
export const NFT_UNWATCHED = (10 << 8) | 0x10;
/** The listener's marker for "nf_tables reports were lost" (a receive error): the type of NFT_MSG_TRACE, which it never forwards. */
export const NFT_OVERRUN = (10 << 8) | 0x11;

/**
 * Netlink control messages the listener uses as in-band markers
 * (<linux/netlink.h>): NLMSG_NOOP once it listens, with what it listens to
 * as payload (LISTENING_ROUTE or LISTENING_NFT); NLMSG_OVERRUN when
 * rtnetlink notifications were lost.
 */
export const NLMSG_NOOP = 1;
export const NLMSG_OVERRUN = 4;
export const LISTENING_ROUTE = 'route';
export const LISTENING_NFT = 'nftables';

/**
 * The change one notification reports, or null for what weft does not watch
 * (other tables, other route types such as IPv6's multicast and local
 * routes, bridge-port link messages, learned entries without a lladdr, ...).
 * IPv4 and IPv6 alike. Throws only on a malformed message.
 */
export function decodeChange(msg: InMessage): KernelChange | null {
  switch (msg.type) {
    case RTM_NEWLINK:
    case RTM_DELLINK:
      return linkChange(msg);
    case RTM_NEWNEIGH:
    case RTM_DELNEIGH:
      return neighChange(msg);
    case RTM_NEWROUTE:
    case RTM_DELROUTE:
      return routeChange(msg);
    case RTM_NEWADDR:
    case RTM_DELADDR:
      return addrChange(msg);
    case RTM_NEWNEXTHOP:
    case RTM_DELNEXTHOP:
      return nexthopChange(msg);
    case NLMSG_OVERRUN:
      return { kind: 'overrun' };
    default:
      return null;
  }
}

/** The nf_tables report one of the listener's markers carries, or null when `msg` is none of them. */
export function decodeNftChange(msg: InMessage): NftChange | null {
  switch (msg.type) {
    case NFT_CHANGED:
      return { kind: 'newgen' };
    case NFT_UNWATCHED:
      return { kind: 'unwatched', why: msg.payload.toString('utf8') };
    case NFT_OVERRUN:
      return { kind: 'overrun' };
    default:
      return null;
  }
}

function linkChange(msg: InMessage): KernelChange | null {
  // A bridge also reports its ports as AF_BRIDGE link messages; the link itself comes as AF_UNSPEC.
  if (msg.payload.length < IFINFOMSG_LEN || msg.payload.readUInt8(0) !== AF_UNSPEC) return null;
  return { kind: 'link', op: msg.type === RTM_NEWLINK ? 'new' : 'del', link: parseLink(msg.payload) };
}

function neighChange(msg: InMessage): KernelChange | null {
  if (msg.payload.length < NDMSG_LEN) return null;
  const op = msg.type === RTM_NEWNEIGH ? 'new' : 'del';
  const raw = parseNeigh(msg.payload);
  if (raw.family === AF_BRIDGE) {
    const fdb = toFdb(raw);
    return fdb ? { kind: 'fdb', op, fdb } : null;
  }
  if (raw.family !== AF_INET && raw.family !== AF_INET6) return null;
  const neigh = op === 'new' ? toNeigh(raw) : toDeletedNeigh(raw);
  return neigh ? { kind: 'neigh', op, neigh } : null;
}

function addrChange(msg: InMessage): KernelChange | null {
  const addr = parseAddrInfo(msg.payload);
  return addr ? { kind: 'addr', op: msg.type === RTM_NEWADDR ? 'new' : 'del', addr } : null;
}

function routeChange(msg: InMessage): KernelChange | null {
  if (msg.payload.length < RTMSG_LEN) return null;
  const route = parseRoute(msg.payload);
  return route ? { kind: 'route', op: msg.type === RTM_NEWROUTE ? 'new' : 'del', route } : null;
}

function nexthopChange(msg: InMessage): KernelChange | null {
  if (msg.payload.length < NHMSG_LEN) return null;
  const nexthop = parseNexthop(msg.payload);
  return nexthop ? { kind: 'nexthop', op: msg.type === RTM_NEWNEXTHOP ? 'new' : 'del', nexthop } : null;
}

/**
 * A datagram holding one of the listener's markers: a control message, with
 * `text` as its payload if any, padded to 4 bytes; listener.c's marker()
 * writes the same. Self-contained (not even NLMSG_HDRLEN, 16, comes from
 * outside), so that it reads as the whole layout.
 */
export function markerDatagram(type: number, text = ''): Buffer {
  const header = 16;
  const payload = Buffer.from(text);
  const datagram = Buffer.alloc(header + ((payload.length + 3) & ~3));
  datagram.writeUInt32LE(header + payload.length, 0);
  datagram.writeUInt16LE(type, 4);
  payload.copy(datagram, header);
  return datagram;
}

/**
 * Cuts a byte stream of length-prefixed datagrams (u32 host order, then the
 * datagram) back into datagrams, wherever the stream's chunks split them.
 */
export class DatagramStream {
  private rest: Buffer | null = null;

  push(chunk: Buffer, each: (datagram: Buffer) => void): void {
    const buf = this.rest ? Buffer.concat([this.rest, chunk]) : chunk;
    let off = 0;
    while (buf.length - off >= 4) {
      const len = buf.readUInt32LE(off);
      if (buf.length - off - 4 < len) break;
      each(buf.subarray(off + 4, off + 4 + len));
      off += 4 + len;
    }
    this.rest = off < buf.length ? Buffer.from(buf.subarray(off)) : null;
  }
}
