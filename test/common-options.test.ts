import { expect } from 'chai';
import yargs from 'yargs';
import { BOOLEAN_FLAGS, VALUE_FLAGS, declareWeftdOptions, goStyleArgs, parseWeftdOptions } from '../common/options.js';
import { WeftError } from '../common/errors.js';

async function rejection(p: Promise<unknown>): Promise<WeftError> {
  try {
    await p;
  } catch (err) {
    expect(err).to.be.instanceOf(WeftError);
    expect((err as WeftError).code).to.equal('WEFT_ERR_OPTION_INVALID');
    return err as WeftError;
  }
  throw new Error('expected a rejection');
}

describe('weftd options: flanneld command lines and FLANNELD_* variables', () => {
  it('reads Go flag syntax: one or two dashes, -flag value and -flag=value, bare and -flag=bool booleans', () => {
    expect(goStyleArgs(['-subnet-file', '/vxlan.env', '-etcd-prefix=/vxlan/network'])).to.deep.equal(['--subnet-file=/vxlan.env', '--etcd-prefix=/vxlan/network']);
    expect(goStyleArgs(['--iface', 'eth0', '-iface=eth1', '-v', '10', '--v=2'])).to.deep.equal(['--iface=eth0', '--iface=eth1', '--v=10', '--v=2']);
    expect(goStyleArgs(['-ip-masq', '--iptables-forward-rules=false', '-ip-masq-fully-random-disable=1', '-ip-blackhole-route=F'])).to.deep.equal([
      '--ip-masq',
      '--iptables-forward-rules=false',
      '--ip-masq-fully-random-disable=true',
      '--ip-blackhole-route=false',
    ]);
    // A value flag takes the next argument whatever it looks like, as Go's flag package does.
    expect(goStyleArgs(['-etcd-password', '-secret-', '-log_backtrace_at', 'x.go:1'])).to.deep.equal(['--etcd-password=-secret-', '--log-backtrace-at=x.go:1']);
    // yargs' negation stays; an unknown flag is refused by the name given.
    expect(goStyleArgs(['--no-ip-masq', '-no-iptables-forward-rules'])).to.deep.equal(['--no-ip-masq', '--no-iptables-forward-rules']);
    expect(() => goStyleArgs(['--no-such-flag'])).to.throw(WeftError, /Unknown argument: --no-such-flag \(weftd --help lists the flags\)/);
    expect(() => goStyleArgs(['-logtostderr'])).to.throw(/Unknown argument: -logtostderr/);
  });

  it('refuses what Go would silently misread: a bare argument (-ip-masq false), a bad boolean, a missing value', () => {
    expect(() => goStyleArgs(['-ip-masq', 'false'])).to.throw(WeftError, /unexpected argument "false" \(a boolean flag takes its value as -flag=value\)/);
    expect(() => goStyleArgs(['-subnet-file', '/x', 'extra'])).to.throw(/unexpected argument "extra"/);
    expect(() => goStyleArgs(['-ip-masq=yes'])).to.throw(/--ip-masq: "yes" is not a boolean/);
    expect(() => goStyleArgs(['-subnet-file'])).to.throw(/--subnet-file: needs a value/);
  });

  it('knows every declared flag as boolean or value-taking', () => {
    const declared = (declareWeftdOptions(yargs([])) as unknown as { getOptions(): { boolean: string[]; key: Record<string, unknown> } }).getOptions();
    const names = Object.keys(declared.key).filter((k) => k !== 'help' && k !== 'version' && !/[A-Z]/.test(k));
    expect(names).to.include.members(['etcd-prefix', 'ip-masq', 'v', 'kube-subnet-mgr']);
    for (const k of names) {
      expect(BOOLEAN_FLAGS.has(k), k).to.equal(declared.boolean.includes(k));
      expect(VALUE_FLAGS.has(k), k).to.equal(!declared.boolean.includes(k));
    }
  });

  it("starts from flannel's documented multi-network command line", async () => {
    const o = await parseWeftdOptions(['-subnet-file', '/vxlan.env', '-etcd-prefix=/vxlan/network'], {});
    expect(o).to.include({ subnetFile: '/vxlan.env', etcdPrefix: '/vxlan/network', ipMasq: false, iptablesForwardRules: true, logLevel: 'info' });
  });

  it('reads every etcd-mode flanneld flag, in either dash form', async () => {
    const o = await parseWeftdOptions(
      [
        '-etcd-endpoints=https://10.0.0.1:2379,https://10.0.0.2:2379', '-etcd-prefix', '/kube-centos/network', '--etcd-keyfile=/k.pem', '-etcd-certfile', '/c.pem',
        '-etcd-cafile=/ca.pem', '-etcd-username', 'u', '-etcd-password=p', '-iface', 'eth1', '-iface-regex=^ens', '--iface-can-reach', '10.0.0.1',
        '-subnet-file=/run/x.env', '-public-ip', '10.0.0.9', '-public-ipv6=fd00::9', '-subnet-lease-renew-margin', '30', '-ip-masq',
        '-ip-masq-fully-random-disable', '-healthz-ip=127.0.0.1', '-healthz-port', '8081', '-iptables-resync=7', '-iptables-forward-rules=false',
        '-ip-blackhole-route', '-v=4', '-vmodule', 'main=3', '-log_backtrace_at=main.go:1', '-kube-subnet-mgr=false',
      ],
      {},
    );
    expect(o).to.deep.include({
      etcdEndpoints: ['https://10.0.0.1:2379', 'https://10.0.0.2:2379'],
      etcdPrefix: '/kube-centos/network',
      etcdKeyfile: '/k.pem',
      etcdCertfile: '/c.pem',
      etcdCafile: '/ca.pem',
      etcdUsername: 'u',
      etcdPassword: 'p',
      iface: ['eth1'],
      ifaceRegex: ['^ens'],
      ifaceCanReach: '10.0.0.1',
      subnetFile: '/run/x.env',
      publicIp: '10.0.0.9',
      publicIpv6: 'fd00::9',
      subnetLeaseRenewMargin: 30,
      ipMasq: true,
      ipMasqFullyRandomDisable: true,
      healthzIp: '127.0.0.1',
      healthzPort: 8081,
      iptablesResync: 7,
      iptablesForwardRules: false,
      ipBlackholeRoute: true,
      logLevel: 'debug',
    });
    // --public-ipv6 has its effect (the underlay's PublicIPv6) and is no longer listed as ignored.
    expect(o.ignoredFlags).to.have.length(2);
    expect(o.ignoredFlags!.join('\n')).to.match(/--vmodule/).and.match(/--log_backtrace_at/);
    expect(o.ignoredFlags!.join('\n')).to.not.match(/--public-ipv6/);
  });

  it('reads FLANNELD_* as flanneld does: the command line wins, Go booleans, WEFTD_* before FLANNELD_*', async () => {
    const env = { FLANNELD_ETCD_PREFIX: '/env/network', FLANNELD_IP_MASQ: '1', FLANNELD_IPTABLES_FORWARD_RULES: 'F', FLANNELD_IFACE_CAN_REACH: '10.0.0.1', FLANNELD_V: '2', FLANNELD_IP_BLACKHOLE_ROUTE: 'True', FLANNELD_SUBNET_FILE: '/flannel.env', WEFTD_SUBNET_FILE: '/weft.env' };
    const o = await parseWeftdOptions(['-etcd-prefix=/cli/network'], env);
    expect(o).to.include({ etcdPrefix: '/cli/network', ipMasq: true, iptablesForwardRules: false, ifaceCanReach: '10.0.0.1', logLevel: 'verbose', ipBlackholeRoute: true, subnetFile: '/weft.env' });
    expect((await rejection(parseWeftdOptions([], { FLANNELD_IP_MASQ: 'yes' }))).message).to.match(/--ip-masq: FLANNELD_IP_MASQ="yes" is not a boolean/);
    // An empty variable is skipped, as flanneld skips it.
    expect(await parseWeftdOptions([], { FLANNELD_IP_MASQ: '', FLANNELD_HEALTHZ_PORT: '' })).to.include({ ipMasq: false, healthzPort: 0 });
  });

  it('-v maps to a log level unless --log-level says otherwise', async () => {
    const level = async (args: string[]) => (await parseWeftdOptions(args, {})).logLevel;
    expect(await level(['-v=0'])).to.equal('info');
    expect(await level(['-v', '1'])).to.equal('verbose');
    expect(await level(['-v=6'])).to.equal('silly');
    expect(await level(['-v=6', '--log-level', 'warn'])).to.equal('warn');
    expect((await rejection(parseWeftdOptions(['-v=-1'], {}))).message).to.match(/--v: "-1" is not a verbosity/);
  });

  it("refuses the Kubernetes subnet manager's flags, saying why, from the command line or the environment", async () => {
    for (const args of [['--kube-subnet-mgr'], ['-kube-api-url=https://k:6443'], ['-kubeconfig-file', '/k'], ['--kube-annotation-prefix=x'], ['--net-config-path', '/n.json'], ['-set-node-network-unavailable=false']]) {
      const err = await rejection(parseWeftdOptions(args, {}));
      expect(err.message, args[0]).to.match(/weft keeps its subnet leases in etcd only; this flag belongs to flanneld's Kubernetes subnet manager/);
    }
    expect((await rejection(parseWeftdOptions([], { FLANNELD_KUBE_SUBNET_MGR: 'true' }))).message).to.match(/--kube-subnet-mgr: weft keeps its subnet leases in etcd only/);
    expect((await parseWeftdOptions(['-kube-subnet-mgr=false'], {})).ignoredFlags).to.deep.equal([]);
  });

  it('--public-ipv6 / FLANNELD_PUBLIC_IPV6 and an IPv6 --iface-can-reach are taken, in RFC 5952 form', async () => {
    expect(await parseWeftdOptions(['-public-ipv6=FD00:0:0:0::9', '--iface-can-reach', '2001:DB8::1'], {})).to.include({ publicIpv6: 'fd00::9', ifaceCanReach: '2001:db8::1' });
    expect(await parseWeftdOptions([], { FLANNELD_PUBLIC_IPV6: '2001:db8::7' })).to.include({ publicIpv6: '2001:db8::7' });
    expect((await parseWeftdOptions([], {})).publicIpv6).to.equal(undefined);
    expect((await rejection(parseWeftdOptions([], { FLANNELD_PUBLIC_IPV6: 'fd00::/64' }))).message).to.match(/--public-ipv6: "fd00::\/64" is not an IPv6 address/);
  });

  it('still refuses unknown flags and bad values clearly', async () => {
    expect((await rejection(parseWeftdOptions(['-no-such-flag'], {}))).message).to.match(/Unknown argument: -no-such-flag/);
    expect((await rejection(parseWeftdOptions(['--iface-can-reach', 'eth0'], {}))).message).to.match(/--iface-can-reach: "eth0" is not an IPv4 or IPv6 address/);
    expect((await rejection(parseWeftdOptions(['-public-ipv6=10.0.0.1'], {}))).message).to.match(/--public-ipv6: "10.0.0.1" is not an IPv6 address/);
  });
});
