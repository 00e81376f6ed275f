/** weftd (daemon/weftd.ts): its pure decisions, tested without etcd or a kernel. */
import { expect } from 'chai';
import { forwardingSysctls, leaseNetworks, underlayLine } from '../daemon/weftd.js';
import { acceptRaWarning } from '../daemon/sysctl.js';
import { Subnet } from '../common/subnet.js';
import * as ds from './harness/dual-stack-leases.js';

describe('weftd: the families of a config and its lease', () => {
  const sn = Subnet.parse;
  it('leaseNetworks: the Network and subnet of each family the config enables', () => {
    const dualLease = { subnet: sn('10.244.3.0/24'), ipv6Subnet: sn('fd00:10:244:3::/64') };
    const str = (n: ReturnType<typeof leaseNetworks>) => ({ v4: n.v4 && `${n.v4.network} ${n.v4.subnet}`, v6: n.v6 && `${n.v6.network} ${n.v6.subnet}` });
    expect(str(leaseNetworks(ds.dual, dualLease))).to.deep.equal({ v4: '10.244.0.0/16 10.244.3.0/24', v6: 'fd00:10:244::/48 fd00:10:244:3::/64' });
    // IPv6-only: the key's IPv4 part is flannel's 0.0.0.0/0 placeholder, never a network.
    expect(str(leaseNetworks(ds.v6only, { subnet: sn('0.0.0.0/0'), ipv6Subnet: sn('fd00:10:244:3::/64') }))).to.deep.equal({ v4: null, v6: 'fd00:10:244::/48 fd00:10:244:3::/64' });
    expect(str(leaseNetworks(ds.v4only, { subnet: sn('10.244.3.0/24'), ipv6Subnet: null }))).to.deep.equal({ v4: '10.244.0.0/16 10.244.3.0/24', v6: null });
    // A lease without an IPv6 subnet under a dual-stack config (an older lease) has no IPv6 part.
    expect(leaseNetworks(ds.dual, { subnet: sn('10.244.3.0/24'), ipv6Subnet: null }).v6).to.equal(null);
  });

  it('forwarding sysctls: ip_forward with IPv4, net.ipv6.conf.all.forwarding with IPv6', () => {
    expect(forwardingSysctls(ds.v4only)).to.deep.equal(['net.ipv4.ip_forward']);
    expect(forwardingSysctls(ds.dual)).to.deep.equal(['net.ipv4.ip_forward', 'net.ipv6.conf.all.forwarding']);
    expect(forwardingSysctls(ds.v6only)).to.deep.equal(['net.ipv6.conf.all.forwarding']);
  });

  it('warns when IPv6 forwarding makes the underlay ignore router advertisements', () => {
    expect(acceptRaWarning('eth0', '1')).to.match(/eth0 ignores router advertisements with accept_ra=1.*net\.ipv6\.conf\.eth0\.accept_ra=2/);
    for (const v of ['0', '2', null]) expect(acceptRaWarning('eth0', v)).to.equal(null);
  });

  it('the underlay log line shows the addresses of each family in use', () => {
    const base = { name: 'eth0', index: 2, mtu: 1500, address: '198.18.0.1', prefixLength: 24, publicIP: '198.18.0.1', address6: null, prefixLength6: 0, publicIPv6: null };
    expect(underlayLine(base)).to.equal('underlay eth0 (198.18.0.1, mtu 1500), public IP 198.18.0.1');
    expect(underlayLine({ ...base, address6: '2001:2::1', prefixLength6: 64, publicIPv6: '2001:2::1' })).to.equal('underlay eth0 (198.18.0.1, 2001:2::1, mtu 1500), public IP 198.18.0.1, public IPv6 2001:2::1');
    expect(underlayLine({ ...base, address: '', prefixLength: 0, publicIP: '0.0.0.0', address6: '2001:2::1', prefixLength6: 64, publicIPv6: '2001:db8::9' })).to.equal('underlay eth0 (2001:2::1, mtu 1500), public IPv6 2001:db8::9');
  });
});
