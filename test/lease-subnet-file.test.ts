import { expect } from 'chai';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { formatDockerOpts, DOCKER_OPTS_DEFAULTS } from '../lease/docker-opts.js';
import { formatSubnetFile, parseSubnetFile, readPreviousSubnet, writeSubnetFile } from '../lease/subnet-file.js';
import { Subnet } from '../common/subnet.js';
import { tempDir } from './harness/at-exit.js';

const vars = { FLANNEL_NETWORK: '10.1.0.0/16', FLANNEL_SUBNET: '10.1.74.1/24', FLANNEL_MTU: '1472', FLANNEL_IPMASQ: 'false' };
const base = { ...DOCKER_OPTS_DEFAULTS, individual: false, combined: false, noIpMasq: false };

describe('subnet file and docker options (flannel formats)', () => {
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

  it('docker-opts default output is mk-docker-opts.sh\'s, leading space included', () => {
    expect(formatDockerOpts(vars, base)).to.equal(
      'DOCKER_OPT_BIP="--bip=10.1.74.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=true"\nDOCKER_OPT_MTU="--mtu=1472"\nDOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n',
    );
  });

  it('docker-opts flags -i, -c, -k, -m, the inverted ip-masq and the bridge mode', () => {
    expect(formatDockerOpts(vars, { ...base, individual: true })).to.not.include('DOCKER_OPTS=');
    expect(formatDockerOpts(vars, { ...base, combined: true, key: 'DOCKER_NETWORK_OPTIONS', existing: '-H x' })).to.equal('DOCKER_NETWORK_OPTIONS="-H x --bip=10.1.74.1/24 --ip-masq=true --mtu=1472"\n');
    expect(formatDockerOpts(vars, { ...base, combined: true, noIpMasq: true })).to.equal('DOCKER_OPTS=" --bip=10.1.74.1/24 --mtu=1472"\n');
    expect(formatDockerOpts({ ...vars, FLANNEL_IPMASQ: 'true' }, { ...base, combined: true })).to.include('--ip-masq=false');
    expect(formatDockerOpts(vars, { ...base, combined: true, bridge: 'weft0' })).to.equal('DOCKER_OPTS=" --bridge=weft0 --ip-masq=true --mtu=1472"\n');
    expect(() => formatDockerOpts({ ...vars, FLANNEL_IPMASQ: 'yes' }, base)).to.throw(/FLANNEL_IPMASQ must be true or false/);
    expect(() => formatDockerOpts({ FLANNEL_MTU: '1450' }, base)).to.throw(/no FLANNEL_SUBNET/);
  });
});
