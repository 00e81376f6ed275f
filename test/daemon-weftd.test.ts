/** weftd (daemon/weftd.ts): its pure decisions, tested without etcd or a kernel. */
import { expect } from 'chai';
import { unprogrammableConfig } from '../daemon/weftd.js';
import * as ds from './harness/dual-stack-leases.js';

describe('weftd: network configs it cannot program', () => {
  it('refuses any config with IPv6, in one place, as an invalid config it waits on', () => {
    expect(unprogrammableConfig(ds.v4only)).to.equal(null);
    for (const c of [ds.dual, ds.v6only]) {
      const err = unprogrammableConfig(c)!;
      expect(err.code).to.equal('WEFT_ERR_CONFIG_INVALID');
      expect(err.retryable).to.equal(true);
      expect(err.message).to.match(/^invalid network config: EnableIPv6: .*dual-stack programming is not built yet/);
    }
    expect(unprogrammableConfig(ds.v6only)!.message).to.include('give an IPv4 Network');
  });
});
