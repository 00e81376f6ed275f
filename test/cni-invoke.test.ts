/** Running a delegate (cni/invoke.ts), with a stand-in plugin in a temporary CNI_PATH. */
import { expect } from 'chai';
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isWeftError } from '../common/errors.js';
import { CniError } from '../cni/errors.js';
import { checkResult, findPlugin, invokePlugin, pluginVersions, validatePluginName } from '../cni/invoke.js';
import { tempDir } from './harness/at-exit.js';
import { StandInDelegate } from './harness/cni-delegate.js';
import { thrown } from './harness/thrown.js';

describe('cni invoke: delegate plugins by the spec\'s delegation protocol', () => {
  let standIn: StandInDelegate;
  before(() => {
    standIn = StandInDelegate.create('bridge');
  });
  beforeEach(() => standIn.reset());

  it('finds the plugin in the first CNI_PATH directory that has it as an executable file', () => {
    const empty = tempDir('weft-cni-path-');
    const other = tempDir('weft-cni-path-');
    mkdirSync(join(other, 'bridge')); // a directory of that name is not the plugin
    const notExec = tempDir('weft-cni-path-');
    writeFileSync(join(notExec, 'bridge'), '#!/bin/sh\n');
    chmodSync(join(notExec, 'bridge'), 0o644);
    expect(findPlugin('bridge', `${empty}:${other}:${notExec}::${standIn.dir}`)).to.equal(standIn.path);
  });

  it('a plugin that is not there is WEFT_ERR_CNI_DELEGATE naming it and CNI_PATH', () => {
    const err = thrown(() => findPlugin('macvlan', standIn.dir));
    expect(isWeftError(err, 'WEFT_ERR_CNI_DELEGATE')).to.equal(true);
    expect(err.message).to.equal(`delegate plugin "macvlan" not found in CNI_PATH=${standIn.dir}`);
    expect((err as CniError).details).to.match(/install the "macvlan" plugin/);
  });

  it('no CNI_PATH is WEFT_ERR_CNI_ENV', () => {
    for (const p of [undefined, '', ':']) expect(isWeftError(thrown(() => findPlugin('bridge', p)), 'WEFT_ERR_CNI_ENV')).to.equal(true);
  });

  it('plugin names are checked before they reach a path', () => {
    for (const bad of ['', '../bridge', '/usr/lib/cni/bridge', 'a/b', '.', '..', '.hidden', 'a b', 'x\0y', 'x'.repeat(256)]) {
      const err = thrown(() => findPlugin(bad, standIn.dir));
      expect(isWeftError(err, 'WEFT_ERR_CONFIG_INVALID'), bad).to.equal(true);
      expect(err.message).to.match(/is not a plugin name/);
    }
    for (const good of ['bridge', 'host-local', 'sbr', 'a.b', 'a_b', 'c++']) expect(() => validatePluginName(good)).to.not.throw();
  });

  it('runs it with the caller\'s environment, CNI_COMMAND set, the overrides applied and the config on stdin; returns stdout', () => {
    const env = { ...process.env, CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: '/run/netns/p1', CNI_COMMAND: 'XXX' };
    const out = invokePlugin(standIn.path, 'ADD', '{"cniVersion":"1.0.0","name":"n"}', env);
    expect(JSON.parse(out)).to.deep.equal({ cniVersion: '1.0.0', ips: [{ address: '10.244.7.2/24', gateway: '10.244.7.1' }] });
    invokePlugin(standIn.path, 'DEL', '{"name":"n"}', env, { CNI_NETNS: '' });
    const calls = standIn.calls();
    expect(calls.map((c) => [c.command, c.containerID, c.ifname, c.netns])).to.deep.equal([
      ['ADD', 'c1', 'eth0', '/run/netns/p1'],
      ['DEL', 'c1', 'eth0', ''],
    ]);
    expect(calls[0]!.config).to.deep.equal({ cniVersion: '1.0.0', name: 'n' });
  });

  it('a failure keeps the delegate\'s code, msg and details', () => {
    standIn.answer('ADD', 1, '{"cniVersion":"1.0.0","code":999,"msg":"failed to set bridge addr: \\"cni0\\" already has an IP address different from 10.244.7.1/24","details":"d"}');
    const err = thrown(() => invokePlugin(standIn.path, 'ADD', '{}', process.env)) as CniError;
    expect(err).to.be.instanceOf(CniError);
    expect(err.code).to.equal('WEFT_ERR_CNI_DELEGATE');
    expect(err.cniCode).to.equal(999);
    expect(err.message).to.equal('delegate bridge ADD failed: failed to set bridge addr: "cni0" already has an IP address different from 10.244.7.1/24');
    expect(err.details).to.equal('d');
  });

  it('a failure without an error object: code 100 and what it printed', () => {
    standIn.answer('DEL', 3, 'panic: something');
    const err = thrown(() => invokePlugin(standIn.path, 'DEL', '{}', process.env)) as CniError;
    expect(err.cniCode).to.equal(undefined);
    expect(err.message).to.equal('delegate bridge DEL exited with status 3');
    expect(err.details).to.equal('panic: something');
  });

  it('a plugin that cannot be run is WEFT_ERR_CNI_DELEGATE', () => {
    const err = thrown(() => invokePlugin(join(standIn.dir, 'none'), 'ADD', '{}', process.env));
    expect(isWeftError(err, 'WEFT_ERR_CNI_DELEGATE')).to.equal(true);
    expect(err.message).to.match(/cannot run delegate plugin .*none: .*ENOENT/);
  });

  it('asks a plugin which versions it speaks; none when it does not say', () => {
    expect(pluginVersions(standIn.path, '1.1.0', process.env)).to.deep.equal(['0.3.0', '0.3.1', '0.4.0', '1.0.0']);
    expect(standIn.calls()[0]!.config).to.deep.equal({ cniVersion: '1.1.0' });
    standIn.answer('VERSION', 1, '{"code":4,"msg":"unknown CNI_COMMAND: VERSION"}');
    expect(pluginVersions(standIn.path, '1.1.0', process.env)).to.deep.equal([]);
  });

  it('an ADD result must be a JSON object; it is passed on as it came', () => {
    expect(checkResult('bridge', '{"cniVersion":"1.0.0"}\n')).to.equal('{"cniVersion":"1.0.0"}');
    for (const bad of ['', 'null', '[]', 'ok']) {
      const err = thrown(() => checkResult('bridge', bad));
      expect(isWeftError(err, 'WEFT_ERR_CNI_DELEGATE'), bad).to.equal(true);
      expect(err.message).to.equal('delegate bridge ADD printed no result');
    }
  });
});
