/** The saved delegate configs (cni/state.ts): names, atomic 0600 files, flannel's files, GC's choice. */
import { expect } from 'chai';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isWeftError } from '../common/errors.js';
import { listStates, readState, removeState, saveState, staleAttachments, statePath, validateAttachment, type SavedAttachment } from '../cni/state.js';
import { tempDir } from './harness/at-exit.js';
import { thrown } from './harness/thrown.js';

describe('cni state: the delegate config saved per attachment', () => {
  it('saves as <containerID>@<ifname>, mode 0600 in a 0700 directory whatever the umask; reads and removes it', () => {
    const dataDir = join(tempDir('weft-cni-state-'), 'var/lib/cni/flannel');
    const a = { containerID: 'abc123', ifname: 'eth0' };
    const old = process.umask(0);
    let path: string;
    try {
      path = saveState(dataDir, a, '{"type":"bridge"}');
    } finally {
      process.umask(old);
    }
    expect(path).to.equal(join(dataDir, 'abc123@eth0'));
    expect(statSync(path).mode & 0o777).to.equal(0o600);
    expect(statSync(dataDir).mode & 0o777).to.equal(0o700);
    expect(readFileSync(path, 'utf8')).to.equal('{"type":"bridge"}');
    expect(readdirSync(dataDir)).to.deep.equal(['abc123@eth0']);
    expect(readState(dataDir, a)).to.deep.equal({ path, text: '{"type":"bridge"}' });
    // Saving again replaces it.
    saveState(dataDir, a, '{"type":"ipvlan"}');
    expect(readState(dataDir, a)!.text).to.equal('{"type":"ipvlan"}');
    removeState(path);
    expect(readState(dataDir, a)).to.equal(null);
    removeState(path);
  });

  it('one file per attachment: the same container on two interfaces has two', () => {
    const dataDir = tempDir('weft-cni-state-');
    saveState(dataDir, { containerID: 'c1', ifname: 'eth0' }, 'a');
    saveState(dataDir, { containerID: 'c1', ifname: 'net1' }, 'b');
    expect(readState(dataDir, { containerID: 'c1', ifname: 'eth0' })!.text).to.equal('a');
    expect(readState(dataDir, { containerID: 'c1', ifname: 'net1' })!.text).to.equal('b');
  });

  it('reads flannel\'s file (<containerID>) when weft\'s is absent', () => {
    const dataDir = tempDir('weft-cni-state-');
    writeFileSync(join(dataDir, 'c9'), '{"name":"cbr0"}');
    expect(readState(dataDir, { containerID: 'c9', ifname: 'eth0' })).to.deep.equal({ path: join(dataDir, 'c9'), text: '{"name":"cbr0"}' });
    saveState(dataDir, { containerID: 'c9', ifname: 'eth0' }, 'weft');
    expect(readState(dataDir, { containerID: 'c9', ifname: 'eth0' })!.text).to.equal('weft');
  });

  it('a missing dataDir holds nothing', () => {
    const dataDir = join(tempDir('weft-cni-state-'), 'none');
    expect(readState(dataDir, { containerID: 'c1', ifname: 'eth0' })).to.equal(null);
    expect(listStates(dataDir)).to.deep.equal({ saved: [], temps: [] });
  });

  it('no container ID or interface name reaches a path unchecked (WEFT_ERR_CNI_ENV)', () => {
    for (const containerID of ['', '../x', 'a/b', '.hidden', '-x', 'a b', 'a@b', 'x'.repeat(1025)]) {
      const err = thrown(() => statePath('/d', { containerID, ifname: 'eth0' }));
      expect(isWeftError(err, 'WEFT_ERR_CNI_ENV'), containerID).to.equal(true);
      expect(err.message).to.match(/^CNI_CONTAINERID=.* is not a container ID/);
    }
    for (const ifname of ['', '.', '..', 'a/b', 'a:b', 'a b', 'x'.repeat(16), 'é']) {
      const err = thrown(() => validateAttachment({ containerID: 'c1', ifname }));
      expect(isWeftError(err, 'WEFT_ERR_CNI_ENV'), ifname).to.equal(true);
      expect(err.message).to.match(/^CNI_IFNAME=.* is not an interface name/);
    }
    for (const [containerID, ifname] of [['0a1b_c.d-e', 'eth0'], ['c', 'net1.100'], ['c', '.x'], ['c', 'a@b'], ['c', 'x'.repeat(15)]] as const) {
      expect(() => validateAttachment({ containerID, ifname }), `${containerID} ${ifname}`).to.not.throw();
    }
  });

  it('a failed save leaves no temp file and is WEFT_ERR_CNI_IO', () => {
    const base = tempDir('weft-cni-state-');
    const dataDir = join(base, 'file');
    writeFileSync(dataDir, 'not a directory');
    const err = thrown(() => saveState(dataDir, { containerID: 'c1', ifname: 'eth0' }, 'x'));
    expect(isWeftError(err, 'WEFT_ERR_CNI_IO')).to.equal(true);
    expect(err.message).to.match(/cannot save the delegate config in .*file/);
    expect(readdirSync(base)).to.deep.equal(['file']);
  });

  it('lists weft\'s files, flannel\'s files and temp files; skips what is neither', () => {
    const dataDir = tempDir('weft-cni-state-');
    for (const name of ['c1@eth0', 'c2', '.tmp-c3@eth0.123', 'README.txt.bak~', '-x']) writeFileSync(join(dataDir, name), '{}');
    mkdirSync(join(dataDir, 'c4@eth0')); // a directory of that name is still listed; reading it is the caller's business
    const { saved, temps } = listStates(dataDir);
    const names = saved.map((s) => [s.containerID, s.ifname]).sort();
    expect(names).to.deep.equal([
      ['c1', 'eth0'],
      ['c2', null],
      ['c4', 'eth0'],
    ]);
    expect(temps).to.deep.equal([join(dataDir, '.tmp-c3@eth0.123')]);
  });

  describe('GC\'s choice of stale attachments', () => {
    const s = (containerID: string, ifname: string | null, network = 'cbr0'): SavedAttachment & { network: string } => ({ containerID, ifname, path: `/d/${containerID}@${ifname}`, network });
    const pick = (saved: ReturnType<typeof s>[], valid: Array<{ containerID: string; ifname: string }>, network = 'cbr0') =>
      staleAttachments(saved, valid, network, (x) => (x as ReturnType<typeof s>).network).map((x) => `${x.containerID}@${x.ifname}`);

    it('those the runtime no longer lists, matched on container ID and interface', () => {
      const saved = [s('c1', 'eth0'), s('c1', 'net1'), s('c2', 'eth0'), s('c3', 'eth0')];
      expect(pick(saved, [{ containerID: 'c1', ifname: 'eth0' }, { containerID: 'c3', ifname: 'eth0' }])).to.deep.equal(['c1@net1', 'c2@eth0']);
      expect(pick(saved, [])).to.deep.equal(['c1@eth0', 'c1@net1', 'c2@eth0', 'c3@eth0']);
      expect(pick(saved, saved.map((x) => ({ containerID: x.containerID, ifname: x.ifname! })))).to.deep.equal([]);
    });

    it('only this network\'s: a shared dataDir\'s files of another network, or unreadable ones, are left alone', () => {
      const saved = [s('c1', 'eth0'), s('c2', 'eth0', 'other'), { ...s('c3', 'eth0'), network: null as unknown as string }];
      expect(pick(saved, [])).to.deep.equal(['c1@eth0']);
      expect(pick(saved, [], 'other')).to.deep.equal(['c2@eth0']);
    });

    it('flannel\'s files (no interface) stay while their container is listed on any interface', () => {
      const saved = [s('c1', null), s('c2', null)];
      expect(pick(saved, [{ containerID: 'c1', ifname: 'eth0' }])).to.deep.equal(['c2@null']);
    });
  });
});
