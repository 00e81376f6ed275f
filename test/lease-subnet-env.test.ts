/** The subnet file as the CNI plugin reads it (lease/subnet-env.ts): flannel's CNI plugin's rules. */
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isWeftError } from '../common/errors.js';
import { Subnet } from '../common/subnet.js';
import { parseEnvLines, parseSubnetEnv, readSubnetEnv } from '../lease/subnet-env.js';
import { formatSubnetFile } from '../lease/subnet-file.js';
import { tempDir } from './harness/at-exit.js';
import { thrown } from './harness/thrown.js';

describe('subnet file, as the CNI plugin reads it', () => {
  it('reads what weftd writes: the subnet as its network, the network, MTU and IPMASQ', () => {
    const text = formatSubnetFile({ network: Subnet.parse('10.244.0.0/16'), subnet: Subnet.parse('10.244.7.0/24'), mtu: 1450, ipMasq: true });
    const env = parseSubnetEnv(text, '/run/flannel/subnet.env');
    expect(env.networks.map(String)).to.deep.equal(['10.244.0.0/16']);
    expect(env.subnet!.toString()).to.equal('10.244.7.0/24');
    expect(env.ipv6Networks).to.deep.equal([]);
    expect(env.ipv6Subnet).to.equal(null);
    expect(env.mtu).to.equal(1450);
    expect(env.ipMasq).to.equal(true);
  });

  it('reads the dual-stack lines weftd writes', () => {
    const text = formatSubnetFile({
      network: Subnet.parse('10.244.0.0/16'),
      subnet: Subnet.parse('10.244.7.0/24'),
      ipv6Network: Subnet.parse('fc00::/48'),
      ipv6Subnet: Subnet.parse('fc00:0:0:7::/64'),
      mtu: 1430,
      ipMasq: false,
    });
    const env = parseSubnetEnv(text, 'f');
    expect(env.ipv6Networks.map(String)).to.deep.equal(['fc00::/48']);
    expect(env.ipv6Subnet!.toString()).to.equal('fc00:0:0:7::/64');
    expect(env.ipMasq).to.equal(false);
  });

  it('takes an IPv6-only file (no FLANNEL_NETWORK / FLANNEL_SUBNET)', () => {
    const env = parseSubnetEnv('FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:7::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n', 'f');
    expect(env.subnet).to.equal(null);
    expect(env.ipv6Subnet!.toString()).to.equal('fc00:0:0:7::/64');
  });

  it('reads FLANNEL_NETWORK as a comma-separated list and drops duplicates, as flannel\'s plugin does', () => {
    const env = parseSubnetEnv('FLANNEL_NETWORK=10.244.0.0/16,10.245.0.0/16,10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n', 'f');
    expect(env.networks.map(String)).to.deep.equal(['10.244.0.0/16', '10.245.0.0/16']);
  });

  it('FLANNEL_IPMASQ is true only for "true"', () => {
    for (const [v, want] of [['true', true], ['false', false], ['TRUE', false], ['1', false]] as const) {
      expect(parseSubnetEnv(`FLANNEL_NETWORK=10.0.0.0/8\nFLANNEL_SUBNET=10.1.0.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=${v}\n`, 'f').ipMasq, v).to.equal(want);
    }
  });

  it('names the file and every missing variable', () => {
    const err = thrown(() => parseSubnetEnv('FLANNEL_MTU=1450\n', '/x/subnet.env'));
    expect(isWeftError(err, 'WEFT_ERR_SUBNET_FILE_INVALID')).to.equal(true);
    expect(err.message).to.equal('subnet file /x/subnet.env: missing FLANNEL_NETWORK (or FLANNEL_IPV6_NETWORK), FLANNEL_SUBNET (or FLANNEL_IPV6_SUBNET), FLANNEL_IPMASQ');
  });

  it('rejects values that do not parse, naming the variable', () => {
    const base = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n';
    const cases: Array<[string, RegExp]> = [
      [base.replace('10.244.7.1/24', '10.244.7.1'), /FLANNEL_SUBNET=10\.244\.7\.1: invalid CIDR/],
      [base.replace('FLANNEL_MTU=1450', 'FLANNEL_MTU=14x'), /FLANNEL_MTU=14x: not a whole number/],
      [base.replace('FLANNEL_MTU=1450', 'FLANNEL_MTU=-1'), /FLANNEL_MTU=-1: not a whole number/],
      [base.replace('10.244.0.0/16', 'fc00::/48'), /FLANNEL_NETWORK=fc00::\/48: not an IPv4 network/],
      [base.replace('10.244.7.1/24', '10.244.7.1/24,10.244.8.1/24'), /FLANNEL_SUBNET=.*: one subnet expected/],
    ];
    for (const [text, message] of cases) {
      const err = thrown(() => parseSubnetEnv(text, 'f'));
      expect(isWeftError(err, 'WEFT_ERR_SUBNET_FILE_INVALID'), text).to.equal(true);
      expect(err.message).to.match(message);
    }
  });

  it('reads lines as flannel\'s plugin does, and tolerates comments, export and quotes like weftd\'s reader', () => {
    const vars = parseEnvLines('# comment\n\nexport FLANNEL_MTU=1450\r\nFLANNEL_SUBNET="10.1.2.1/24"\nA=b=c\nA2=\'x\'\nnoequals\n=v\nK=1\nK=2\n');
    expect(Object.fromEntries(vars)).to.deep.equal({ FLANNEL_MTU: '1450', FLANNEL_SUBNET: '10.1.2.1/24', A: 'b=c', A2: 'x', K: '2' });
  });

  it('a missing file is WEFT_ERR_SUBNET_FILE_MISSING (retryable): the message names the file and says weftd writes it', () => {
    const path = join(tempDir('weft-senv-'), 'subnet.env');
    const err = thrown(() => readSubnetEnv(path));
    expect(isWeftError(err, 'WEFT_ERR_SUBNET_FILE_MISSING')).to.equal(true);
    expect(isWeftError(err) && err.retryable).to.equal(true);
    expect(err.message).to.equal(`subnet file ${path} does not exist: weftd writes it once it holds a lease for this node (is weftd running?)`);
    writeFileSync(path, 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n');
    expect(readSubnetEnv(path).subnet!.toString()).to.equal('10.244.7.0/24');
  });

  it('a path that cannot be read as a file is WEFT_ERR_SUBNET_FILE_INVALID', () => {
    const err = thrown(() => readSubnetEnv(tempDir('weft-senv-')));
    expect(isWeftError(err, 'WEFT_ERR_SUBNET_FILE_INVALID')).to.equal(true);
    expect(err.message).to.match(/cannot be read: EISDIR/);
  });
});
