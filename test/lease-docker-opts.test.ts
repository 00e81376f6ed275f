/** Docker options from the subnet file (lease/docker-opts.ts), as flannel's mk-docker-opts.sh writes them. */
import { expect } from 'chai';
import { formatDockerOpts, DOCKER_OPTS_DEFAULTS } from '../lease/docker-opts.js';

const vars = { FLANNEL_NETWORK: '10.1.0.0/16', FLANNEL_SUBNET: '10.1.74.1/24', FLANNEL_MTU: '1472', FLANNEL_IPMASQ: 'false' };
const base = { ...DOCKER_OPTS_DEFAULTS, individual: false, combined: false, noIpMasq: false };

describe('docker options (flannel format)', () => {
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

describe('docker options: IPv6', () => {
  const v6vars = { FLANNEL_NETWORK: '10.1.0.0/16', FLANNEL_SUBNET: '10.1.74.1/24', FLANNEL_IPV6_NETWORK: 'fd00:10:244::/48', FLANNEL_IPV6_SUBNET: 'fd00:10:244:4a::1/64', FLANNEL_MTU: '1450', FLANNEL_IPMASQ: 'false' };
  it('adds --ipv6 --fixed-cidr-v6 with the IPv6 subnet, and gives no --bip for an IPv6-only file', () => {
    expect(formatDockerOpts(v6vars, base)).to.equal(
      'DOCKER_OPT_BIP="--bip=10.1.74.1/24"\nDOCKER_OPT_IPMASQ="--ip-masq=true"\nDOCKER_OPT_IPV6="--ipv6 --fixed-cidr-v6=fd00:10:244:4a::/64"\nDOCKER_OPT_MTU="--mtu=1450"\n' +
        'DOCKER_OPTS=" --bip=10.1.74.1/24 --ip-masq=true --ipv6 --fixed-cidr-v6=fd00:10:244:4a::/64 --mtu=1450"\n',
    );
    const only = { FLANNEL_IPV6_NETWORK: v6vars.FLANNEL_IPV6_NETWORK, FLANNEL_IPV6_SUBNET: v6vars.FLANNEL_IPV6_SUBNET, FLANNEL_MTU: '1450', FLANNEL_IPMASQ: 'false' };
    expect(formatDockerOpts(only, { ...base, combined: true })).to.equal('DOCKER_OPTS=" --ip-masq=true --ipv6 --fixed-cidr-v6=fd00:10:244:4a::/64 --mtu=1450"\n');
    expect(formatDockerOpts(v6vars, { ...base, combined: true, bridge: 'weft0' })).to.equal('DOCKER_OPTS=" --bridge=weft0 --ip-masq=true --ipv6 --fixed-cidr-v6=fd00:10:244:4a::/64 --mtu=1450"\n');
    expect(() => formatDockerOpts({ ...v6vars, FLANNEL_IPV6_SUBNET: '10.9.0.1/24' }, base)).to.throw(/FLANNEL_IPV6_SUBNET=10.9.0.1\/24 is not an IPv6 subnet/);
  });
});
