/** The delegate config (cni/delegate.ts): flannel's CNI plugin's rules, table by table. */
import { expect } from 'chai';
import { parseNetConf } from '../cni/conf.js';
import { buildDelegate, delegateType } from '../cni/delegate.js';
import { parseSubnetEnv } from '../lease/subnet-env.js';

const V4 = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n';
const DUAL = `${V4}FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:7::1/64\n`;

function delegate(conf: Record<string, unknown>, file = V4) {
  return buildDelegate(parseNetConf(JSON.stringify({ cniVersion: '1.0.0', name: 'cbr0', type: 'flannel', ...conf })), parseSubnetEnv(file, 'subnet.env'));
}

describe('cni delegate: the config handed to bridge + host-local', () => {
  it('flannel\'s defaults: bridge, isGateway, ipMasq = !FLANNEL_IPMASQ, mtu = FLANNEL_MTU, host-local over the node\'s subnet, a route to the network', () => {
    expect(delegate({})).to.deep.equal({
      name: 'cbr0',
      type: 'bridge',
      ipMasq: false,
      mtu: 1450,
      isGateway: true,
      cniVersion: '1.0.0',
      ipam: {
        type: 'host-local',
        ranges: [[{ subnet: '10.244.7.0/24' }]],
        routes: [{ dst: '10.244.0.0/16', gw: '10.244.7.1' }],
      },
    });
  });

  it('ipMasq is on when weftd does not masquerade (FLANNEL_IPMASQ=false)', () => {
    expect(delegate({}, V4.replace('IPMASQ=true', 'IPMASQ=false')).ipMasq).to.equal(true);
  });

  it('kube-flannel\'s delegate block is kept, with the name set to the network\'s', () => {
    const d = delegate({ name: 'mynet', delegate: { hairpinMode: true, isDefaultGateway: true } });
    expect(d).to.include({ name: 'mynet', type: 'bridge', hairpinMode: true, isDefaultGateway: true, isGateway: true });
  });

  it('what the delegate sets wins over the subnet file: ipMasq, mtu, isGateway, type', () => {
    const d = delegate({ delegate: { ipMasq: true, mtu: 1400, isGateway: false, bridge: 'cni1' } });
    expect(d).to.include({ ipMasq: true, mtu: 1400, isGateway: false, bridge: 'cni1' });
    // A key set to null counts as set (flannel's hasKey).
    expect(delegate({ delegate: { mtu: null } }).mtu).to.equal(null);
  });

  it('isGateway is for bridge only: another delegate type does not get it', () => {
    const d = delegate({ delegate: { type: 'ipvlan', master: 'eth0' } });
    expect(d.type).to.equal('ipvlan');
    expect(d).to.not.have.property('isGateway');
    expect(d).to.include({ master: 'eth0', ipMasq: false, mtu: 1450 });
    expect(delegateType(d)).to.equal('ipvlan');
  });

  it('the user\'s ipam fields are kept; ranges are always the node\'s; the user\'s routes come first', () => {
    const d = delegate({
      ipam: { type: 'host-local', dataDir: '/var/lib/cni/networks', ranges: [[{ subnet: '192.168.0.0/24' }]], routes: [{ dst: '192.168.0.0/16' }] },
    });
    expect(d.ipam).to.deep.equal({
      type: 'host-local',
      dataDir: '/var/lib/cni/networks',
      ranges: [[{ subnet: '10.244.7.0/24' }]],
      routes: [{ dst: '192.168.0.0/16' }, { dst: '10.244.0.0/16', gw: '10.244.7.1' }],
    });
  });

  it('another IPAM type gets routes without a gateway (host-local\'s default gateway is not its)', () => {
    const d = delegate({ ipam: { type: 'static' } });
    expect(d.ipam).to.deep.include({ type: 'static', routes: [{ dst: '10.244.0.0/16' }] });
  });

  it('one route per network of FLANNEL_NETWORK\'s list', () => {
    const d = delegate({}, V4.replace('FLANNEL_NETWORK=10.244.0.0/16', 'FLANNEL_NETWORK=10.244.0.0/16,10.96.0.0/12'));
    expect((d.ipam as Record<string, unknown>).routes).to.deep.equal([
      { dst: '10.244.0.0/16', gw: '10.244.7.1' },
      { dst: '10.96.0.0/12', gw: '10.244.7.1' },
    ]);
  });

  it('dual stack: an IPv6 range from FLANNEL_IPV6_SUBNET and a route to FLANNEL_IPV6_NETWORK', () => {
    const d = delegate({}, DUAL);
    expect(d.ipam).to.deep.equal({
      type: 'host-local',
      ranges: [[{ subnet: '10.244.7.0/24' }], [{ subnet: 'fc00:0:0:7::/64' }]],
      routes: [
        { dst: '10.244.0.0/16', gw: '10.244.7.1' },
        { dst: 'fc00::/48', gw: 'fc00:0:0:7::1' },
      ],
    });
  });

  it('IPv6 only: one range, one route', () => {
    const d = delegate({}, 'FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:7::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n');
    expect(d.ipam).to.deep.equal({ type: 'host-local', ranges: [[{ subnet: 'fc00:0:0:7::/64' }]], routes: [{ dst: 'fc00::/48', gw: 'fc00:0:0:7::1' }] });
    expect(d.mtu).to.equal(1430);
  });

  it('cniVersion and runtimeConfig are copied from the network config', () => {
    for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) expect(delegate({ cniVersion: v }).cniVersion).to.equal(v);
    const runtimeConfig = { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] };
    expect(delegate({ runtimeConfig }).runtimeConfig).to.deep.equal(runtimeConfig);
  });

  it('does not change the network config it was built from', () => {
    const conf = parseNetConf(JSON.stringify({ cniVersion: '1.0.0', name: 'n', delegate: { a: 1 }, ipam: { routes: [{ dst: '1.0.0.0/8' }] } }));
    const before = JSON.stringify(conf);
    buildDelegate(conf, parseSubnetEnv(V4, 'f'));
    expect(JSON.stringify(conf)).to.equal(before);
  });
});
