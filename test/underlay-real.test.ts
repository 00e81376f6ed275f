/**
 * Underlay discovery against the real kernel, in a network namespace: the
 * netlink link, address and route dumps must say what `ip -j` says, and
 * `discoverUnderlay` must pick what `selectUnderlay` picked from `ip -j`
 * output before the spawns were replaced.
 *
 * The namespace holds two veth pairs: eth0 (198.18.0.2/24 primary, .3
 * secondary, a deprecated and a DHCP-like address, the metric-0 default
 * route), eth1 (MTU 9000, 203.0.113.7/24, a metric-100 default route) and
 * their address-less peers. The kernel side runs as this same file inside the
 * namespace (`ip netns exec NS node <this file> --underlay-worker SELECTIONS`)
 * and prints what it read as JSON.
 */
import { expect } from 'chai';
import { fileURLToPath } from 'node:url';
import type { AddrInfo, Link, Route } from '../kernel/kernel.js';
import { NetlinkKernel } from '../kernel/kernel-netlink.js';
import { defaultRouteDev, discoverUnderlay, interfacesWithIPv4, selectUnderlay, type InterfaceInfo, type Underlay, type UnderlaySelection } from '../kernel/underlay.js';
import { Netns, cleanupLeftovers, teardownAll } from './harness/netns.js';

const SELF = fileURLToPath(import.meta.url);
const WORKER_FLAG = '--underlay-worker';

type Choice = Underlay | { error: string };

interface WorkerReport {
  links: Link[];
  addrs: AddrInfo[];
  routes: Route[];
  picks: Choice[];
}

/** Worker side: reads through the netlink port in this (test) namespace. */
async function worker(selections: UnderlaySelection[]): Promise<void> {
  const kernel = new NetlinkKernel();
  try {
    const [links, addrs, routes] = await Promise.all([kernel.linkList(), kernel.addrListAll(), kernel.routeList()]);
    const picks: Choice[] = [];
    for (const sel of selections) picks.push(await discoverUnderlay(kernel, sel).catch((err: Error) => ({ error: err.message })));
    const report: WorkerReport = { links, addrs, routes, picks };
    process.stdout.write(JSON.stringify(report));
  } finally {
    await kernel.close();
  }
}

// ---------------------------------------------------------------- test side

/** The fields of `ip -j -4 addr show` weft reads, as iproute2 prints them. */
interface IpAddrJson {
  ifindex: number;
  ifname: string;
  mtu: number;
  addr_info: Array<{ family: string; local: string; prefixlen: number; scope: string; deprecated?: boolean; dynamic?: boolean; secondary?: boolean }>;
}

/** An IPv4-only network config. */
const V4 = { v4: true, v6: false };

const SELECTIONS: UnderlaySelection[] = [
  { iface: [], ifaceRegex: [], stack: V4 },
  { iface: ['eth1'], ifaceRegex: [], stack: V4 },
  { iface: ['203.0.113.7'], ifaceRegex: [], stack: V4 },
  { iface: ['eth0p', 'eth1'], ifaceRegex: [], stack: V4 },
  { iface: [], ifaceRegex: ['^203\\.0\\.'], stack: V4 },
  { iface: [], ifaceRegex: ['^eth1'], stack: V4 },
  { iface: [], ifaceRegex: [], stack: V4, publicIp: '203.0.113.7' },
  { iface: [], ifaceRegex: [], stack: V4, publicIp: '192.0.2.99' },
  { iface: ['eth9'], ifaceRegex: ['^zz'], stack: V4 },
];

async function buildHost(): Promise<Netns> {
  const ns = await Netns.create('uly');
  await ns.ip('link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth0p');
  await ns.ip('link', 'add', 'eth1', 'mtu', '9000', 'type', 'veth', 'peer', 'name', 'eth1p', 'mtu', '9000');
  for (const dev of ['eth0', 'eth0p', 'eth1', 'eth1p']) await ns.ip('link', 'set', dev, 'up');
  // The deprecated address comes first so that only its flag keeps it from being picked.
  await ns.ip('addr', 'add', '198.18.9.2/24', 'dev', 'eth0', 'preferred_lft', '0');
  await ns.ip('addr', 'add', '10.9.0.2/24', 'dev', 'eth0', 'valid_lft', '3600', 'preferred_lft', '3600');
  await ns.ip('addr', 'add', '198.18.0.2/24', 'dev', 'eth0');
  await ns.ip('addr', 'add', '198.18.0.3/24', 'dev', 'eth0');
  await ns.ip('addr', 'add', '203.0.113.7/24', 'dev', 'eth1');
  // The worse default route first: the dump must still list the metric-0 one first.
  await ns.ip('route', 'add', 'default', 'via', '203.0.113.1', 'dev', 'eth1', 'metric', '100');
  await ns.ip('route', 'add', 'default', 'via', '198.18.0.1', 'dev', 'eth0');
  return ns;
}

async function runWorker(ns: Netns): Promise<WorkerReport> {
  return JSON.parse(await ns.exec(process.execPath, SELF, WORKER_FLAG, JSON.stringify(SELECTIONS))) as WorkerReport;
}

/** What the pre-netlink discoverUnderlay computed: `ip -j` output into selectUnderlay. */
function pickFromIpJson(ifaces: IpAddrJson[], defaultDev: string | null, sel: UnderlaySelection): Choice {
  try {
    return selectUnderlay(ifaces as InterfaceInfo[], defaultDev, sel);
  } catch (err) {
    return { error: (err as Error).message };
  }
}

/** iproute2's view reduced to the fields weft keeps, flags made explicit. */
function normalise(ifaces: IpAddrJson[]): InterfaceInfo[] {
  return ifaces.map((i) => ({
    ifindex: i.ifindex,
    ifname: i.ifname,
    mtu: i.mtu,
    addr_info: i.addr_info.map((a) => ({ family: a.family, local: a.local, prefixlen: a.prefixlen, scope: a.scope, deprecated: a.deprecated === true, dynamic: a.dynamic === true })),
  }));
}

if (process.argv[2] === WORKER_FLAG) {
  worker(JSON.parse(process.argv[3] ?? '[]') as UnderlaySelection[]).catch((err: Error) => {
    process.stderr.write(`${err.stack ?? err.message}\n`);
    process.exitCode = 1;
  });
} else {
  describe('underlay discovery over netlink in a network namespace @real', function () {
    this.timeout(20_000);
    let ns: Netns;
    let report: WorkerReport;
    let ipAddrs: IpAddrJson[];
    let ipDefault: Array<{ dev?: string }>;

    before(async () => {
      await cleanupLeftovers();
      ns = await buildHost();
      report = await runWorker(ns);
      ipAddrs = await ns.ipJson<IpAddrJson[]>('-4', 'addr', 'show');
      ipDefault = await ns.ipJson<Array<{ dev?: string }>>('-4', 'route', 'show', 'default');
    });
    after(async () => {
      await ns?.delete();
      await teardownAll();
    });

    it('linkList dumps every link with the index, name and MTU `ip -j link show` reports', async () => {
      const ipLinks = await ns.ipJson<Array<{ ifindex: number; ifname: string; mtu: number }>>('link', 'show');
      expect(report.links.map((l) => ({ ifindex: l.index, ifname: l.name, mtu: l.mtu }))).to.deep.equal(ipLinks.map((l) => ({ ifindex: l.ifindex, ifname: l.ifname, mtu: l.mtu })));
      expect(report.links.map((l) => l.name)).to.include.members(['lo', 'eth0', 'eth0p', 'eth1', 'eth1p']);
    });

    it('addrListAll dumps every IPv4 address with the scope and flags `ip -j -4 addr show` prints', () => {
      const expected = ipAddrs.flatMap((i) =>
        i.addr_info.map((a) => ({
          ifindex: i.ifindex,
          cidr: `${a.local}/${a.prefixlen}`,
          scope: a.scope,
          permanent: a.dynamic !== true,
          deprecated: a.deprecated === true,
          secondary: a.secondary === true,
        })),
      );
      expect(report.addrs).to.deep.equal(expected);
      const eth0 = report.links.find((l) => l.name === 'eth0')!.index;
      expect(report.addrs.filter((a) => a.ifindex === eth0)).to.deep.equal([
        { ifindex: eth0, cidr: '198.18.9.2/24', scope: 'global', permanent: true, deprecated: true, secondary: false },
        { ifindex: eth0, cidr: '10.9.0.2/24', scope: 'global', permanent: false, deprecated: false, secondary: false },
        { ifindex: eth0, cidr: '198.18.0.2/24', scope: 'global', permanent: true, deprecated: false, secondary: false },
        { ifindex: eth0, cidr: '198.18.0.3/24', scope: 'global', permanent: true, deprecated: false, secondary: true },
      ]);
      expect(report.addrs.find((a) => a.cidr === '127.0.0.1/8')).to.include({ scope: 'host' });
    });

    it('builds the same interface view as `ip -j -4 addr show` (address-less links left out)', () => {
      expect(interfacesWithIPv4(report.links, report.addrs)).to.deep.equal(normalise(ipAddrs));
      expect(ipAddrs.map((i) => i.ifname)).to.deep.equal(['lo', 'eth0', 'eth1']);
    });

    it('finds the lowest-metric default route device, as `ip -j -4 route show default` lists first', () => {
      expect(ipDefault).to.have.length(2);
      expect(defaultRouteDev(report.links, report.routes)).to.equal(ipDefault[0]?.dev).and.to.equal('eth0');
    });

    it('discoverUnderlay picks what selectUnderlay picked from `ip -j`, for every selection', () => {
      const expected = SELECTIONS.map((sel) => pickFromIpJson(ipAddrs, ipDefault[0]?.dev ?? null, sel));
      expect(report.picks).to.deep.equal(expected);
      expect(report.picks[0]).to.include({ name: 'eth0', address: '198.18.0.2', prefixLength: 24, mtu: 1500, publicIP: '198.18.0.2' });
      expect(report.picks[1]).to.include({ name: 'eth1', address: '203.0.113.7', mtu: 9000 });
      expect(report.picks[3]).to.include({ name: 'eth1' });
      expect(report.picks[8]).to.have.property('error').that.matches(/no interface matches/);
    });
  });
}
