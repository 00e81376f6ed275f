/** Installing the plugin and its conflist (cni/install.ts), into temporary directories. */
import { expect } from 'chai';
import { lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isWeftError } from '../common/errors.js';
import { conflist, conflistName, defaultPluginSource, install } from '../cni/install.js';
import { tempDir } from './harness/at-exit.js';
import { thrown } from './harness/thrown.js';

describe('cni install: the plugin and a conflist, the same on every node', () => {
  let source: string;
  before(() => {
    source = join(tempDir('weft-cni-src-'), 'weft-cni.cjs');
    writeFileSync(source, '#!/usr/bin/env node\n// stand-in for the plugin\n', { mode: 0o644 });
  });

  it('the conflist: the plugin with kube-flannel\'s delegate settings, then portmap; nothing about one node', () => {
    expect(conflist({ name: 'weft' })).to.deep.equal({
      name: 'weft',
      cniVersion: '1.0.0',
      plugins: [
        { type: 'weft', delegate: { hairpinMode: true, isDefaultGateway: true } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    });
    // As flannel: kube-flannel's network name, so host-local's reservations carry over.
    expect(conflist({ name: 'flannel' })).to.deep.include({ name: 'cbr0' });
    expect((conflist({ name: 'flannel' }).plugins as unknown[])[0]).to.deep.include({ type: 'flannel' });
    expect(conflist({ name: 'weft', cniVersion: '1.1.0' }).cniVersion).to.equal('1.1.0');
    expect((conflist({ name: 'weft', subnetFile: '/run/weft/subnet.env' }).plugins as unknown[])[0]).to.deep.include({ subnetFile: '/run/weft/subnet.env' });
    expect((conflist({ name: 'weft', subnetFile: '/run/flannel/subnet.env' }).plugins as unknown[])[0]).to.not.have.property('subnetFile');
    expect(conflistName('weft')).to.equal('10-weft.conflist');
    expect(conflistName('flannel')).to.equal('10-flannel.conflist');
  });

  it('the example conflist is the one install writes', () => {
    const example = fileURLToPath(new URL('../../examples/10-weft.conflist', import.meta.url));
    expect(JSON.parse(readFileSync(example, 'utf8'))).to.deep.equal(conflist({ name: 'weft' }));
  });

  it('copies the plugin (mode 0755 whatever the umask) and writes the conflist (0644), leaving no temp file', () => {
    const root = tempDir('weft-cni-inst-');
    const old = process.umask(0o077);
    let done;
    try {
      done = install({ binDir: join(root, 'opt/cni/bin'), confDir: join(root, 'etc/cni/net.d'), name: 'weft', source });
    } finally {
      process.umask(old);
    }
    expect(done).to.deep.equal({ plugin: join(root, 'opt/cni/bin/weft'), conflist: join(root, 'etc/cni/net.d/10-weft.conflist'), source: realpathSync(source), link: false });
    expect(lstatSync(done.plugin).isFile()).to.equal(true);
    expect(statSync(done.plugin).mode & 0o777).to.equal(0o755);
    expect(readFileSync(done.plugin, 'utf8')).to.equal(readFileSync(source, 'utf8'));
    expect(statSync(done.conflist).mode & 0o777).to.equal(0o644);
    expect(JSON.parse(readFileSync(done.conflist, 'utf8'))).to.deep.equal(conflist({ name: 'weft' }));
    expect(readdirSync(join(root, 'opt/cni/bin'))).to.deep.equal(['weft']);
    expect(readdirSync(join(root, 'etc/cni/net.d'))).to.deep.equal(['10-weft.conflist']);
  });

  it('as flannel, and by symlink; installing again replaces both files (a new file each, renamed into place)', () => {
    const root = tempDir('weft-cni-inst-');
    const o = { binDir: join(root, 'bin'), confDir: join(root, 'net.d'), name: 'flannel' as const, source };
    const first = install(o);
    const inode = statSync(first.plugin).ino;
    const again = install({ ...o, link: true });
    expect(again.plugin).to.equal(join(root, 'bin/flannel'));
    expect(lstatSync(again.plugin).isSymbolicLink()).to.equal(true);
    expect(readlinkSync(again.plugin)).to.equal(realpathSync(source));
    expect(statSync(again.plugin).ino).to.not.equal(inode);
    expect(JSON.parse(readFileSync(join(root, 'net.d/10-flannel.conflist'), 'utf8')).name).to.equal('cbr0');
    expect(readdirSync(join(root, 'bin'))).to.deep.equal(['flannel']);
  });

  it('refuses a source that is not a script, or is not there, and an unknown name', () => {
    const root = tempDir('weft-cni-inst-');
    const notScript = join(root, 'plugin');
    writeFileSync(notScript, 'MZ');
    const dirs = { binDir: join(root, 'bin'), confDir: join(root, 'net.d') };
    expect(thrown(() => install({ ...dirs, name: 'weft', source: notScript })).message).to.match(/is not an executable script: not weft-cni/);
    const missing = thrown(() => install({ ...dirs, name: 'weft', source: join(root, 'none') }));
    expect(isWeftError(missing, 'WEFT_ERR_CNI_IO')).to.equal(true);
    expect(missing.message).to.match(/cannot read the plugin .*none \(built by npm run build\)/);
    expect(isWeftError(thrown(() => install({ ...dirs, name: 'calico' as 'weft', source })), 'WEFT_ERR_OPTION_INVALID')).to.equal(true);
    expect(readdirSync(root)).to.deep.equal(['plugin']);
  });

  it('a directory it cannot write is WEFT_ERR_CNI_IO naming the file', () => {
    const root = tempDir('weft-cni-inst-');
    writeFileSync(join(root, 'bin'), 'a file, not a directory');
    const err = thrown(() => install({ binDir: join(root, 'bin'), confDir: join(root, 'net.d'), name: 'weft', source }));
    expect(isWeftError(err, 'WEFT_ERR_CNI_IO')).to.equal(true);
    expect(err.message).to.match(/cannot write .*bin\/weft/);
  });

  it('installs this build\'s dist/bin/weft-cni.cjs by default', () => {
    expect(defaultPluginSource()).to.equal(fileURLToPath(new URL('../bin/weft-cni.cjs', import.meta.url)));
  });
});
