/**
 * The shipped plugin (dist/bin/weft-cni.cjs), run as a runtime runs it, on the
 * paths only the bundle has: its modules loaded on first use (IPv6 address
 * parsing) and its code cache. In-process tests of the same commands:
 * cni-commands.test.ts.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './harness/at-exit.js';
import { StandInDelegate } from './harness/cni-delegate.js';

const PLUGIN = fileURLToPath(new URL('../bin/weft-cni.cjs', import.meta.url));
const DUAL = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:7::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n';

describe('cni bundle: the shipped weft-cni on a dual-stack subnet file', () => {
  let standIn: StandInDelegate;
  let dir: string;

  before(() => {
    standIn = StandInDelegate.create('bridge');
  });
  beforeEach(() => {
    standIn.reset();
    dir = tempDir('weft-cni-bundle-');
  });

  function add(subnetEnv: string): { status: number | null; stdout: string } {
    const subnetFile = join(dir, 'subnet.env');
    const netns = join(dir, 'netns');
    writeFileSync(subnetFile, subnetEnv);
    writeFileSync(netns, '');
    const conf = { cniVersion: '1.0.0', name: 'cbr0', type: 'flannel', subnetFile, dataDir: join(dir, 'state'), delegate: {} };
    const run = spawnSync(PLUGIN, [], {
      input: JSON.stringify(conf),
      env: { PATH: process.env.PATH, CNI_COMMAND: 'ADD', CNI_PATH: standIn.dir, CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: netns },
      encoding: 'utf8',
    });
    return { status: run.status, stdout: run.stdout };
  }

  it('hands the delegate the IPv6 range and route next to the IPv4 ones', () => {
    const run = add(DUAL);
    expect(run.status, run.stdout).to.equal(0);
    const ipam = standIn.calls()[0]!.config!.ipam as { ranges: { subnet: string }[][]; routes: { dst: string }[] };
    expect(ipam.ranges.map((r) => r[0]!.subnet)).to.deep.equal(['10.244.7.0/24', 'fc00:0:0:7::/64']);
    expect(ipam.routes.map((r) => r.dst)).to.include.members(['10.244.0.0/16', 'fc00::/48']);
  });

  it('a malformed IPv6 subnet is a CNI error object naming the variable, not a crash', () => {
    const run = add(DUAL.replace('fc00:0:0:7::1/64', 'fc00:::7::1/64'));
    expect(run.status).to.equal(1);
    const err = JSON.parse(run.stdout) as { code: number; msg: string };
    expect(err.code).to.be.a('number');
    expect(err.msg).to.include('FLANNEL_IPV6_SUBNET');
    expect(standIn.calls(), 'no delegate ran').to.deep.equal([]);
  });
});
