import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { WeftError } from '../common/errors.js';
import { canonicalIPv4 } from '../lease/subnet.js';

/** The interface weft sends VXLAN traffic over, and the address it advertises. */
export interface Underlay {
  readonly name: string;
  readonly index: number;
  readonly mtu: number;
  /** The interface's own IPv4 address. */
  readonly address: string;
  readonly prefixLength: number;
  /** What peers send to (PublicIP in the lease): --public-ip or the interface address. */
  readonly publicIP: string;
}

/** What `ip -j -4 addr show` reports per interface (the fields weft reads). */
export interface InterfaceInfo {
  readonly ifindex: number;
  readonly ifname: string;
  readonly mtu: number;
  readonly addr_info: readonly { family: string; local: string; prefixlen: number; scope: string; deprecated?: boolean; dynamic?: boolean; temporary?: boolean }[];
}

export interface UnderlaySelection {
  readonly iface: readonly string[];
  readonly ifaceRegex: readonly string[];
  readonly publicIp?: string;
}

/**
 * flanneld's interface selection (§5 of the flannel notes), as a pure
 * function: `--iface` entries (an IP or a name) in order, then each
 * `--iface-regex` against addresses first and names second; with neither,
 * the interface holding `--public-ip`, else the default route's interface.
 */
export function selectUnderlay(interfaces: readonly InterfaceInfo[], defaultRouteDev: string | null, sel: UnderlaySelection): Underlay {
  let chosen: InterfaceInfo | undefined;
  const byAddress = (ip: string) => interfaces.find((i) => i.addr_info.some((a) => a.family === 'inet' && a.local === ip));
  if (sel.iface.length === 0 && sel.ifaceRegex.length === 0) {
    if (sel.publicIp) chosen = byAddress(sel.publicIp);
    if (!chosen) {
      if (!defaultRouteDev) throw new WeftError('WEFT_ERR_OPTION_INVALID', 'no default route to pick the underlay interface from; use --iface');
      chosen = interfaces.find((i) => i.ifname === defaultRouteDev);
    }
  } else {
    for (const want of sel.iface) {
      chosen = canonicalIPv4(want) ? byAddress(want) : interfaces.find((i) => i.ifname === want);
      if (chosen) break;
    }
    for (const pattern of chosen ? [] : sel.ifaceRegex) {
      const re = new RegExp(pattern);
      chosen =
        interfaces.find((i) => i.addr_info.some((a) => a.family === 'inet' && re.test(a.local))) ??
        interfaces.find((i) => re.test(i.ifname));
      if (chosen) break;
    }
    if (!chosen) {
      throw new WeftError('WEFT_ERR_OPTION_INVALID', `no interface matches --iface ${JSON.stringify(sel.iface)} / --iface-regex ${JSON.stringify(sel.ifaceRegex)}`);
    }
  }
  if (!chosen) throw new WeftError('WEFT_ERR_OPTION_INVALID', `interface ${defaultRouteDev} of the default route not found`);
  // Global before host-scoped, permanent before dynamic, non-temporary before temporary; never deprecated.
  const addrs = chosen.addr_info
    .filter((a) => a.family === 'inet' && !a.deprecated)
    .sort((a, b) => rank(a) - rank(b));
  const addr = addrs[0];
  if (!addr) throw new WeftError('WEFT_ERR_OPTION_INVALID', `interface ${chosen.ifname} has no IPv4 address`);
  if (!chosen.mtu) throw new WeftError('WEFT_ERR_OPTION_INVALID', `interface ${chosen.ifname} reports MTU 0`);
  return { name: chosen.ifname, index: chosen.ifindex, mtu: chosen.mtu, address: addr.local, prefixLength: addr.prefixlen, publicIP: sel.publicIp ?? addr.local };
}

function rank(a: InterfaceInfo['addr_info'][number]): number {
  return (a.scope === 'global' ? 0 : 4) + (a.dynamic ? 2 : 0) + (a.temporary ? 1 : 0);
}

const execFileP = promisify(execFile);

/** Reads the interfaces and the default route of the current network namespace (two `ip -j` calls at start-up). */
export async function discoverUnderlay(sel: UnderlaySelection): Promise<Underlay> {
  const [addrs, routes] = await Promise.all([execFileP('ip', ['-j', '-4', 'addr', 'show']), execFileP('ip', ['-j', '-4', 'route', 'show', 'default'])]);
  const interfaces = JSON.parse(addrs.stdout || '[]') as InterfaceInfo[];
  const defaults = JSON.parse(routes.stdout || '[]') as { dev?: string }[];
  return selectUnderlay(interfaces, defaults[0]?.dev ?? null, sel);
}
