/**
 * Bulk requests as messages of their own, for tests: weft itself writes them
 * straight into the datagram of a chunk (NetlinkChannel.transact), never one
 * at a time. The bodies have the layout of the notifications the kernel
 * echoes, so tests also use them as notifications.
 */
import { writeFdbDel, writeFdbReplace, writeNeighDel, writeNeighSet } from '../../kernel/netlink/neigh.js';
import { writeRouteDel, writeRouteReplace } from '../../kernel/netlink/route.js';
import { writeNexthopDel, writeNexthopReplace } from '../../kernel/netlink/nexthop.js';
import { NLMSG_HDRLEN, Writer, type OutMessage, type RequestWriter } from '../../kernel/netlink/wire.js';

/** One request as a message of its own. */
export function requestMessage<T>(write: RequestWriter<T>, item: T): OutMessage {
  const w = new Writer(NLMSG_HDRLEN + 64);
  write(w, item);
  return w.message();
}

export const neighSetMessage = (n: { ifindex: number; ip: string; mac: string }): OutMessage => requestMessage(writeNeighSet, n);
export const neighDelMessage = (n: { ifindex: number; ip: string }): OutMessage => requestMessage(writeNeighDel, n);
export const fdbReplaceMessage = (f: { ifindex: number; mac: string; dst: string }): OutMessage => requestMessage(writeFdbReplace, f);
export const fdbDelMessage = (f: { ifindex: number; mac: string }): OutMessage => requestMessage(writeFdbDel, f);
export const routeReplaceMessage = (r: { dst: string; gw: string | null; oif: number; onlink: boolean; proto: number; nhid?: number }): OutMessage =>
  requestMessage(writeRouteReplace, r);
export const routeDelMessage = (r: { dst: string; gw?: string | null; oif?: number; nhid?: number }): OutMessage => requestMessage(writeRouteDel, r);
export const nexthopReplaceMessage = (nh: { id: number; gw: string | null; oif: number; onlink: boolean; proto?: number; blackhole?: boolean }): OutMessage =>
  requestMessage(writeNexthopReplace, nh);
export const nexthopDelMessage = (nh: { id: number }): OutMessage => requestMessage(writeNexthopDel, nh);

/** Fills Node's shared allocation pool with 0xff, so a body that missed zeroing a byte shows it. */
export function dirtyPool(): void {
  for (let i = 0; i < 64; i++) Buffer.allocUnsafe(128).fill(0xff);
}
