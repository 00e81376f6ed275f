/** The plugin's network config (cni/conf.ts): flannel's NetConf, across the CNI versions weft-cni speaks. */
import { expect } from 'chai';
import { isWeftError, type WeftErrorCode } from '../common/errors.js';
import { DEFAULT_DATA_DIR, SUPPORTED_VERSIONS, parseNetConf, peekVersion, versionAtLeast } from '../cni/conf.js';
import { thrown } from './harness/thrown.js';

function expectError(text: string, code: WeftErrorCode, message: RegExp): void {
  const err = thrown(() => parseNetConf(text));
  expect(isWeftError(err, code), `${text}: ${err.message}`).to.equal(true);
  expect(err.message).to.match(message);
}

const conf = (o: Record<string, unknown>) => JSON.stringify({ cniVersion: '1.0.0', name: 'cbr0', type: 'flannel', ...o });

describe('cni conf: flannel\'s NetConf', () => {
  it('kube-flannel\'s stock plugin config parses, with flannel\'s defaults', () => {
    const c = parseNetConf(JSON.stringify({ cniVersion: '0.3.1', name: 'cbr0', type: 'flannel', delegate: { hairpinMode: true, isDefaultGateway: true } }));
    expect(c.cniVersion).to.equal('0.3.1');
    expect(c.name).to.equal('cbr0');
    expect(c.type).to.equal('flannel');
    expect(c.subnetFile).to.equal('/run/flannel/subnet.env');
    expect(c.dataDir).to.equal(DEFAULT_DATA_DIR);
    expect(DEFAULT_DATA_DIR).to.equal('/var/lib/cni/flannel');
    expect(c.delegate).to.deep.equal({ hairpinMode: true, isDefaultGateway: true });
    expect(c.ipam).to.equal(null);
    expect(c.runtimeConfig).to.equal(null);
    expect(c.validAttachments).to.equal(null);
  });

  it('takes every version from 0.3.0 to 1.1.0 and refuses others with WEFT_ERR_CNI_VERSION', () => {
    expect(SUPPORTED_VERSIONS).to.deep.equal(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    for (const v of SUPPORTED_VERSIONS) expect(parseNetConf(conf({ cniVersion: v })).cniVersion).to.equal(v);
    for (const v of ['0.1.0', '0.2.0', '1.2.0', '2.0.0', 'x']) {
      expectError(conf({ cniVersion: v }), 'WEFT_ERR_CNI_VERSION', new RegExp(`cniVersion "${v}" is not supported: weft-cni supports 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0`));
    }
    expectError(conf({ cniVersion: undefined }), 'WEFT_ERR_CNI_VERSION', /network config has no cniVersion/);
    expectError(conf({ cniVersion: 1 }), 'WEFT_ERR_CNI_VERSION', /no cniVersion/);
  });

  it('keeps the user\'s paths, ipam, runtimeConfig and the previous result', () => {
    const c = parseNetConf(
      conf({
        subnetFile: '/run/weft/subnet.env',
        dataDir: '/var/lib/cni/weft',
        ipam: { type: 'host-local', dataDir: '/x', routes: [{ dst: '192.168.0.0/16' }] },
        runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] },
        prevResult: { cniVersion: '1.0.0', ips: [] },
      }),
    );
    expect(c.subnetFile).to.equal('/run/weft/subnet.env');
    expect(c.dataDir).to.equal('/var/lib/cni/weft');
    expect(c.ipam).to.deep.equal({ type: 'host-local', dataDir: '/x', routes: [{ dst: '192.168.0.0/16' }] });
    expect(c.runtimeConfig).to.deep.equal({ portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }] });
    expect(c.prevResult).to.deep.equal({ cniVersion: '1.0.0', ips: [] });
  });

  it('empty paths mean the defaults (as Go\'s zero value does in flannel\'s plugin)', () => {
    const c = parseNetConf(conf({ subnetFile: '', dataDir: '' }));
    expect(c.subnetFile).to.equal('/run/flannel/subnet.env');
    expect(c.dataDir).to.equal('/var/lib/cni/flannel');
  });

  it('flannel\'s rules for "delegate": an object, a string type, no name, no ipam', () => {
    expectError(conf({ delegate: [] }), 'WEFT_ERR_CONFIG_INVALID', /"delegate" must be an object/);
    expectError(conf({ delegate: { type: 1 } }), 'WEFT_ERR_CONFIG_INVALID', /"delegate", if present, must have a string "type"/);
    expectError(conf({ delegate: { name: 'x' } }), 'WEFT_ERR_CONFIG_INVALID', /"delegate" must not have a "name"/);
    expectError(conf({ delegate: { ipam: {} } }), 'WEFT_ERR_CONFIG_INVALID', /"delegate" must not have an "ipam"/);
    // Not itself: that would run the plugin again and again.
    expectError(conf({ delegate: { type: 'flannel' } }), 'WEFT_ERR_CONFIG_INVALID', /"delegate.type" must name another plugin than this one \("flannel"\)/);
  });

  it('checks the network name, ipam and the paths', () => {
    expectError(conf({ name: undefined }), 'WEFT_ERR_CONFIG_INVALID', /"name" must be a network name/);
    expectError(conf({ name: '../x' }), 'WEFT_ERR_CONFIG_INVALID', /"name" must be a network name .* not "\.\.\/x"/);
    expectError(conf({ ipam: 'host-local' }), 'WEFT_ERR_CONFIG_INVALID', /"ipam" must be an object/);
    expectError(conf({ ipam: { type: 7 } }), 'WEFT_ERR_CONFIG_INVALID', /"ipam.type" must be a string/);
    expectError(conf({ ipam: { routes: {} } }), 'WEFT_ERR_CONFIG_INVALID', /"ipam.routes" must be a list of routes/);
    expectError(conf({ ipam: { routes: [{ gw: '10.0.0.1' }] } }), 'WEFT_ERR_CONFIG_INVALID', /each with a "dst"/);
    expectError(conf({ subnetFile: 7 }), 'WEFT_ERR_CONFIG_INVALID', /"subnetFile" must be a path/);
    expectError(conf({ dataDir: 'a\0b' }), 'WEFT_ERR_CONFIG_INVALID', /"dataDir" must be a path/);
    expectError(conf({ runtimeConfig: [] }), 'WEFT_ERR_CONFIG_INVALID', /"runtimeConfig" must be an object/);
  });

  it('a config that is not a JSON object is WEFT_ERR_CNI_DECODE', () => {
    expectError('', 'WEFT_ERR_CNI_DECODE', /no network config on stdin/);
    expectError('{"cniVersion":', 'WEFT_ERR_CNI_DECODE', /network config on stdin is not JSON/);
    expectError('[1]', 'WEFT_ERR_CNI_DECODE', /not a JSON object/);
    expectError('null', 'WEFT_ERR_CNI_DECODE', /not a JSON object/);
  });

  it('reads GC\'s list of valid attachments under the spec\'s key and libcni\'s older one', () => {
    const a = { containerID: 'c1', ifname: 'eth0' };
    const b = { containerID: 'c2', ifname: 'net1' };
    expect(parseNetConf(conf({ 'cni.dev/valid-attachments': [a] })).validAttachments).to.deep.equal([a]);
    expect(parseNetConf(conf({ 'cni.dev/attachments': [b] })).validAttachments).to.deep.equal([b]);
    expect(parseNetConf(conf({ 'cni.dev/valid-attachments': [a], 'cni.dev/attachments': [a, b] })).validAttachments).to.deep.equal([a, a, b]);
    expect(parseNetConf(conf({ 'cni.dev/valid-attachments': [] })).validAttachments).to.deep.equal([]);
    expectError(conf({ 'cni.dev/valid-attachments': {} }), 'WEFT_ERR_CONFIG_INVALID', /"cni.dev\/valid-attachments" must be a list/);
    expectError(conf({ 'cni.dev/valid-attachments': [{ containerID: 'c1' }] }), 'WEFT_ERR_CONFIG_INVALID', /entries must be/);
  });

  it('versionAtLeast compares x.y.z; peekVersion finds a supported version in any text', () => {
    expect(versionAtLeast('1.0.0', '0.4.0')).to.equal(true);
    expect(versionAtLeast('0.4.0', '0.4.0')).to.equal(true);
    expect(versionAtLeast('0.3.1', '0.4.0')).to.equal(false);
    expect(versionAtLeast('1.1.0', '1.1.0')).to.equal(true);
    expect(versionAtLeast('1.0.0', '1.1.0')).to.equal(false);
    expect(peekVersion('{"cniVersion":"0.4.0","name":7}')).to.equal('0.4.0');
    expect(peekVersion('{"cniVersion":"9.9.9"}')).to.equal(null);
    expect(peekVersion('nope')).to.equal(null);
  });
});
