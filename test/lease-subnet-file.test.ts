/** The subnet file (lease/subnet-file.ts) in flannel's subnet.env format: written, formatted, read back. */
import { expect } from 'chai';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { formatSubnetFile, parseSubnetFile, readPreviousSubnet, writeSubnetFile } from '../lease/subnet-file.js';
import { Subnet } from '../common/subnet.js';
import { tempDir } from './harness/at-exit.js';
import { parseSubnetEnv } from '../lease/subnet-env.js';

describe('subnet file (flannel format)', () => {
  it('writes flannel\'s exact subnet.env, atomically with mode 0644', async () => {
    const dir = tempDir('weft-sf-');
    const path = join(dir, 'run/flannel/subnet.env');
    const old = process.umask(0o077);
    try {
      await writeSubnetFile(path, { network: Subnet.parse('10.5.0.0/16'), subnet: Subnet.parse('10.5.72.0/24'), mtu: 1450, ipMasq: true });
    } finally {
      process.umask(old);
    }
    expect(readFileSync(path, 'utf8')).to.equal('FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.72.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n');
    expect(statSync(path).mode & 0o777).to.equal(0o644);
    const prev = await readPreviousSubnet(path);
    expect(prev.subnet!.toString()).to.equal('10.5.72.0/24');
    expect(prev.network!.toString()).to.equal('10.5.0.0/16');
    expect((await readPreviousSubnet(join(dir, 'missing'))).subnet).to.equal(null);
  });

  it('formats dual-stack like flannel and reads quoted or commented files', () => {
    const text = formatSubnetFile({ network: Subnet.parse('10.5.0.0/16'), subnet: Subnet.parse('10.5.72.0/24'), ipv6Network: Subnet.parse('fc00::/48'), ipv6Subnet: Subnet.parse('fc00:0:0:5::/64'), mtu: 1450, ipMasq: false });
    expect(text).to.equal('FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.72.1/24\nFLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:5::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n');
    expect(parseSubnetFile('# c\nFLANNEL_SUBNET="10.5.72.1/24"\n').FLANNEL_SUBNET).to.equal('10.5.72.1/24');
  });
});

describe('subnet file: dual-stack and IPv6-only (flannel format)', () => {
  const v4 = { network: Subnet.parse('10.244.0.0/16'), subnet: Subnet.parse('10.244.3.0/24') };
  const v6 = { ipv6Network: Subnet.parse('fd00:10:244::/48'), ipv6Subnet: Subnet.parse('fd00:10:244:3::/64') };
  it("writes flannel's lines for both families and for IPv6 only, and reads the previous IPv6 subnet back", async () => {
    expect(formatSubnetFile({ ...v4, ...v6, mtu: 1450, ipMasq: true })).to.equal(
      'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/48\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n',
    );
    const only = formatSubnetFile({ network: null, subnet: null, ...v6, mtu: 1430, ipMasq: false });
    expect(only).to.equal('FLANNEL_IPV6_NETWORK=fd00:10:244::/48\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n');
    // What the CNI plugin reads back.
    expect(parseSubnetEnv(only, 'f').ipv6Subnet!.toString()).to.equal('fd00:10:244:3::/64');
    const path = join(tempDir('weft-sf6-'), 'subnet.env');
    await writeSubnetFile(path, { ...v4, ...v6, mtu: 1450, ipMasq: true });
    const prev = await readPreviousSubnet(path);
    expect([prev.subnet, prev.network, prev.ipv6Subnet, prev.ipv6Network].map(String)).to.deep.equal(['10.244.3.0/24', '10.244.0.0/16', 'fd00:10:244:3::/64', 'fd00:10:244::/48']);
    const v4file = join(tempDir('weft-sf6-'), 'subnet.env');
    await writeSubnetFile(v4file, { ...v4, mtu: 1450, ipMasq: true });
    expect((await readPreviousSubnet(v4file)).ipv6Subnet).to.equal(null);
  });
});
