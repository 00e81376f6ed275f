/**
 * weft-cni's commands (cni/commands.ts), in process, against a stand-in
 * delegate in a temporary CNI_PATH that logs every call (and what dataDir
 * held at that moment). The real bridge and host-local: cni-real.test.ts.
 */
import { expect } from 'chai';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isWeftError } from '../common/errors.js';
import { runCommand } from '../cni/commands.js';
import { CniError, cniCode } from '../cni/errors.js';
import { tempDir } from './harness/at-exit.js';
import { StandInDelegate } from './harness/cni-delegate.js';

const SUBNET = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n';
const PREV = { cniVersion: '1.0.0', ips: [{ address: '10.244.7.2/24', gateway: '10.244.7.1' }] };

describe('cni commands (stand-in delegate)', () => {
  let standIn: StandInDelegate;
  let dir: string;
  let subnetFile: string;
  let dataDir: string;
  let netns: string;
  let warnings: string[];

  before(() => {
    standIn = StandInDelegate.create('bridge');
  });
  beforeEach(() => {
    standIn.reset();
    dir = tempDir('weft-cni-cmd-');
    subnetFile = join(dir, 'subnet.env');
    dataDir = join(dir, 'state');
    netns = join(dir, 'netns'); // stands for /run/netns/<pod>: only its existence matters here
    writeFileSync(netns, '');
    writeFileSync(subnetFile, SUBNET);
    warnings = [];
  });

  function conf(o: Record<string, unknown> = {}): string {
    return JSON.stringify({ cniVersion: '1.0.0', name: 'cbr0', type: 'flannel', subnetFile, dataDir, delegate: { hairpinMode: true }, ...o });
  }

  function run(command: string, stdin = conf(), env: Record<string, string | undefined> = {}): string {
    return runCommand({
      command,
      stdin,
      env: { PATH: process.env.PATH, CNI_PATH: standIn.dir, CNI_CONTAINERID: 'c1', CNI_IFNAME: 'eth0', CNI_NETNS: netns, STANDIN_STATE_DIR: dataDir, ...env },
      warn: (line) => warnings.push(line),
    });
  }

  function fails(f: () => unknown): CniError {
    try {
      f();
    } catch (err) {
      return err as CniError;
    }
    throw new Error('did not fail');
  }

  const saved = () => (existsSync(dataDir) ? readdirSync(dataDir).sort() : []);
  const savedConfig = (name = 'c1@eth0') => JSON.parse(readFileSync(join(dataDir, name), 'utf8')) as Record<string, unknown>;
  const commands = () => standIn.calls().map((c) => c.command);

  describe('ADD', () => {
    it('saves the delegate config before the delegate runs, hands it that config and prints its result', () => {
      const out = run('ADD');
      expect(JSON.parse(out)).to.deep.equal(PREV);
      const [call] = standIn.calls();
      expect(call!.command).to.equal('ADD');
      expect(call!.saved, 'dataDir when the delegate ran').to.deep.equal(['c1@eth0']);
      expect(call!.config).to.deep.equal(savedConfig());
      expect(savedConfig()).to.deep.equal({
        hairpinMode: true,
        name: 'cbr0',
        type: 'bridge',
        ipMasq: false,
        mtu: 1450,
        isGateway: true,
        cniVersion: '1.0.0',
        ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.7.0/24' }]], routes: [{ dst: '10.244.0.0/16', gw: '10.244.7.1' }] },
      });
      expect([call!.containerID, call!.ifname, call!.netns]).to.deep.equal(['c1', 'eth0', netns]);
    });

    it('without the subnet file: WEFT_ERR_SUBNET_FILE_MISSING (CNI 11) naming the file; nothing saved, no delegate run', () => {
      rmSync(subnetFile);
      const err = fails(() => run('ADD'));
      expect(isWeftError(err, 'WEFT_ERR_SUBNET_FILE_MISSING')).to.equal(true);
      expect(cniCode(err, 'ADD')).to.equal(11);
      expect(err.message).to.equal(`subnet file ${subnetFile} does not exist: weftd writes it once it holds a lease for this node (is weftd running?)`);
      expect(saved()).to.deep.equal([]);
      expect(commands()).to.deep.equal([]);
    });

    it('a delegate that fails is followed by its DEL (nothing left set up), and the saved config goes; its error is passed on', () => {
      standIn.answer('ADD', 1, '{"code":999,"msg":"failed to set bridge addr"}');
      const err = fails(() => run('ADD'));
      expect(err.message).to.equal('delegate bridge ADD failed: failed to set bridge addr');
      expect(cniCode(err, 'ADD')).to.equal(999);
      expect(commands()).to.deep.equal(['ADD', 'DEL']);
      expect(standIn.calls()[1]!.config).to.deep.equal(standIn.calls()[0]!.config);
      expect(saved()).to.deep.equal([]);
    });

    it('if that DEL fails too, the saved config stays for the runtime\'s DEL, and stderr says so', () => {
      standIn.answer('ADD', 1, '{"code":999,"msg":"no"}');
      standIn.answer('DEL', 1, '{"code":999,"msg":"neither"}');
      fails(() => run('ADD'));
      expect(saved()).to.deep.equal(['c1@eth0']);
      expect(warnings.join('\n')).to.match(/ADD of container c1 interface eth0 failed and the delegate's DEL after it failed too .*neither/);
    });

    it('a result that is not JSON fails the ADD (and runs the DEL)', () => {
      standIn.answer('ADD', 0, 'ok');
      expect(fails(() => run('ADD')).message).to.equal('delegate bridge ADD printed no result');
      expect(commands()).to.deep.equal(['ADD', 'DEL']);
    });

    it('needs CNI_CONTAINERID, CNI_NETNS and CNI_IFNAME (WEFT_ERR_CNI_ENV, CNI 4)', () => {
      const err = fails(() => run('ADD', conf(), { CNI_NETNS: undefined, CNI_IFNAME: '' }));
      expect(isWeftError(err, 'WEFT_ERR_CNI_ENV')).to.equal(true);
      expect(err.message).to.equal('ADD needs CNI_NETNS, CNI_IFNAME: not set');
      expect(cniCode(err, 'ADD')).to.equal(4);
      expect(isWeftError(fails(() => run('ADD', conf(), { CNI_CONTAINERID: '../../etc' })), 'WEFT_ERR_CNI_ENV')).to.equal(true);
    });

    it('a delegate that is not installed fails before anything is saved', () => {
      const err = fails(() => run('ADD', conf({ delegate: { type: 'macvlan' } })));
      expect(err.message).to.match(/delegate plugin "macvlan" not found in CNI_PATH/);
      expect(saved()).to.deep.equal([]);
    });

    it('a config of any supported version goes through, its cniVersion handed on', () => {
      for (const v of ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']) {
        run('ADD', conf({ cniVersion: v }), { CNI_CONTAINERID: `v${v.replace(/\./g, '')}` });
      }
      expect(standIn.calls().map((c) => c.config!.cniVersion)).to.deep.equal(['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0']);
    });
  });

  describe('DEL', () => {
    it('uses the saved config, even after the subnet file changed, then forgets it; a second DEL succeeds', () => {
      run('ADD');
      const added = savedConfig();
      writeFileSync(subnetFile, SUBNET.replace('10.244.7.1/24', '10.244.9.1/24'));
      expect(run('DEL', conf({ prevResult: PREV }))).to.equal('');
      const del = standIn.calls()[1]!;
      expect(del.command).to.equal('DEL');
      expect(del.config).to.deep.equal({ ...added, prevResult: PREV });
      expect(saved()).to.deep.equal([]);
      // Nothing saved now: the delegate's DEL still runs, with a config rebuilt from the subnet file.
      expect(run('DEL')).to.equal('');
      expect(commands()).to.deep.equal(['ADD', 'DEL', 'DEL']);
      expect((standIn.calls()[2]!.config!.ipam as Record<string, unknown>).ranges).to.deep.equal([[{ subnet: '10.244.9.0/24' }]]);
    });

    it('nothing saved and no subnet file: success, nothing to release (stderr says why)', () => {
      rmSync(subnetFile);
      expect(run('DEL')).to.equal('');
      expect(commands()).to.deep.equal([]);
      expect(warnings.join('\n')).to.match(/DEL of container c1 interface eth0: no saved delegate config and subnet file .* does not exist.*nothing to release/);
    });

    it('a netns that is gone is handed on as none: the delegate only releases', () => {
      run('ADD');
      rmSync(netns);
      run('DEL');
      expect(standIn.calls()[1]!.netns).to.equal('');
      expect(saved()).to.deep.equal([]);
    });

    it('needs only CNI_CONTAINERID and CNI_IFNAME', () => {
      run('ADD');
      expect(run('DEL', conf(), { CNI_NETNS: undefined })).to.equal('');
      expect(fails(() => run('DEL', conf(), { CNI_IFNAME: undefined })).message).to.equal('DEL needs CNI_IFNAME: not set');
    });

    it('a delegate DEL that fails is passed on and the saved config stays for the next DEL', () => {
      run('ADD');
      standIn.answer('DEL', 1, '{"code":11,"msg":"busy"}');
      const err = fails(() => run('DEL'));
      expect(cniCode(err, 'DEL')).to.equal(11);
      expect(saved()).to.deep.equal(['c1@eth0']);
      standIn.reset();
      run('DEL');
      expect(saved()).to.deep.equal([]);
    });

    it('releases a pod that flannel\'s plugin added (its file: <containerID>), and removes that file', () => {
      const flannels = { name: 'cbr0', type: 'bridge', cniVersion: '0.3.1', ipam: { type: 'host-local', ranges: [[{ subnet: '10.244.7.0/24' }]] } };
      mkdirSync(dataDir, { recursive: true });
      writeFileSync(join(dataDir, 'c1'), JSON.stringify(flannels));
      run('DEL', conf({ prevResult: PREV }));
      // A 0.3.1 delegate config carries no prevResult.
      expect(standIn.calls()[0]!.config).to.deep.equal(flannels);
      expect(saved()).to.deep.equal([]);
    });

    it('a saved file that is not JSON: the config is rebuilt from the subnet file and the file goes', () => {
      run('ADD');
      writeFileSync(join(dataDir, 'c1@eth0'), '{');
      run('DEL');
      expect(standIn.calls()[1]!.config!.name).to.equal('cbr0');
      expect(saved()).to.deep.equal([]);
      expect(warnings.join('\n')).to.match(/is not a JSON object; rebuilding the delegate config from the subnet file/);
    });
  });

  describe('CHECK', () => {
    it('passes the delegate the saved config with the previous result, and its verdict on', () => {
      run('ADD');
      expect(run('CHECK', conf({ prevResult: PREV }))).to.equal('');
      const check = standIn.calls()[1]!;
      expect(check.command).to.equal('CHECK');
      expect(check.config).to.deep.equal({ ...savedConfig(), prevResult: PREV });
      standIn.answer('CHECK', 1, '{"code":999,"msg":"Expected Route not found"}');
      const err = fails(() => run('CHECK', conf({ prevResult: PREV })));
      expect(err.message).to.equal('delegate bridge CHECK failed: Expected Route not found');
    });

    it('no saved config: WEFT_ERR_CNI_CHECK (CNI 101), the delegate is not asked', () => {
      const err = fails(() => run('CHECK', conf({ prevResult: PREV })));
      expect(isWeftError(err, 'WEFT_ERR_CNI_CHECK')).to.equal(true);
      expect(cniCode(err, 'CHECK')).to.equal(101);
      expect(err.message).to.equal(`no saved delegate config for container c1 interface eth0 in ${dataDir}`);
      expect(commands()).to.deep.equal([]);
    });

    it('the node\'s subnet changed since ADD: fails, naming both', () => {
      run('ADD');
      writeFileSync(subnetFile, SUBNET.replace('10.244.7.1/24', '10.244.9.1/24'));
      const err = fails(() => run('CHECK', conf({ prevResult: PREV })));
      expect(isWeftError(err, 'WEFT_ERR_CNI_CHECK')).to.equal(true);
      expect(err.message).to.match(/the node's subnet changed: .* added with ranges \[\[\{"subnet":"10\.244\.7\.0\/24"\}\]\], .* now gives \[\[\{"subnet":"10\.244\.9\.0\/24"\}\]\]/);
      expect(commands()).to.deep.equal(['ADD']);
    });

    it('the overlay MTU changed since ADD: fails', () => {
      run('ADD');
      writeFileSync(subnetFile, SUBNET.replace('FLANNEL_MTU=1450', 'FLANNEL_MTU=1400'));
      expect(fails(() => run('CHECK', conf({ prevResult: PREV }))).message).to.match(/the overlay MTU changed: .* added with MTU 1450, .* now gives 1400/);
    });

    it('the subnet file is gone: fails with the missing-file error', () => {
      run('ADD');
      rmSync(subnetFile);
      expect(isWeftError(fails(() => run('CHECK', conf({ prevResult: PREV }))), 'WEFT_ERR_SUBNET_FILE_MISSING')).to.equal(true);
    });

    it('a config older than 0.4.0 has no CHECK (WEFT_ERR_CNI_VERSION, CNI 1)', () => {
      const err = fails(() => run('CHECK', conf({ cniVersion: '0.3.1' })));
      expect(cniCode(err, 'CHECK')).to.equal(1);
      expect(err.message).to.equal('CHECK needs cniVersion 0.4.0 or later; the network config has 0.3.1');
    });
  });

  describe('STATUS', () => {
    it('not available (CNI 50) while the subnet file is missing or unusable', () => {
      rmSync(subnetFile);
      const missing = fails(() => run('STATUS', conf({ cniVersion: '1.1.0' })));
      expect(cniCode(missing, 'STATUS')).to.equal(50);
      expect(missing.message).to.match(/subnet file .* does not exist: weftd writes it once it holds a lease/);
      writeFileSync(subnetFile, 'FLANNEL_MTU=1450\n');
      expect(cniCode(fails(() => run('STATUS', conf({ cniVersion: '1.1.0' }))), 'STATUS')).to.equal(50);
    });

    it('ready with the subnet file; a delegate that predates CNI 1.1 is not sent a STATUS it does not know', () => {
      expect(run('STATUS', conf({ cniVersion: '1.1.0' }))).to.equal('');
      expect(commands()).to.deep.equal(['VERSION']);
    });

    it('a delegate that speaks 1.1.0 is asked too, and its answer passed on', () => {
      standIn.answer('VERSION', 0, '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}');
      expect(run('STATUS', conf({ cniVersion: '1.1.0' }))).to.equal('');
      expect(commands()).to.deep.equal(['VERSION', 'STATUS']);
      standIn.answer('STATUS', 1, '{"code":50,"msg":"no addresses left"}');
      const err = fails(() => run('STATUS', conf({ cniVersion: '1.1.0' })));
      expect(cniCode(err, 'STATUS')).to.equal(50);
      expect(err.message).to.equal('delegate bridge STATUS failed: no addresses left');
    });

    it('for a config before 1.1.0 only the subnet file is looked at; no CNI_PATH: the same', () => {
      expect(run('STATUS', conf({ cniVersion: '1.0.0' }))).to.equal('');
      expect(run('STATUS', conf({ cniVersion: '1.1.0' }), { CNI_PATH: undefined, CNI_CONTAINERID: undefined })).to.equal('');
      expect(commands()).to.deep.equal([]);
    });

    it('the delegate plugin missing: not available', () => {
      expect(cniCode(fails(() => run('STATUS', conf({ delegate: { type: 'macvlan' } }))), 'STATUS')).to.equal(50);
    });
  });

  describe('GC', () => {
    const valid = (...ids: string[]) => ids.map((id) => ({ containerID: id, ifname: 'eth0' }));

    it('releases (delegate DEL, no netns) and removes the saved configs of attachments no longer listed; keeps the rest', () => {
      for (const id of ['c1', 'c2', 'c3']) run('ADD', conf(), { CNI_CONTAINERID: id });
      standIn.reset();
      expect(run('GC', conf({ 'cni.dev/valid-attachments': valid('c2') }), { CNI_CONTAINERID: undefined, CNI_IFNAME: undefined, CNI_NETNS: undefined })).to.equal('');
      const dels = standIn.calls();
      expect(dels.map((c) => [c.command, c.containerID, c.ifname, c.netns]).sort()).to.deep.equal([
        ['DEL', 'c1', 'eth0', ''],
        ['DEL', 'c3', 'eth0', ''],
      ]);
      expect(dels[0]!.config!.name).to.equal('cbr0');
      expect(saved()).to.deep.equal(['c2@eth0']);
    });

    it('leaves another network\'s saved configs in a shared dataDir alone, and removes temp files a crashed ADD left', () => {
      run('ADD', conf(), { CNI_CONTAINERID: 'mine' });
      run('ADD', conf({ name: 'other' }), { CNI_CONTAINERID: 'theirs' });
      writeFileSync(join(dataDir, '.tmp-x@eth0.999'), '{}');
      standIn.reset();
      run('GC', conf({ 'cni.dev/valid-attachments': [] }));
      expect(standIn.calls().map((c) => c.containerID)).to.deep.equal(['mine']);
      expect(saved()).to.deep.equal(['theirs@eth0']);
    });

    it('a flannel file that is stale is released as the pod\'s eth0', () => {
      mkdirSync(dataDir, { recursive: true });
      writeFileSync(join(dataDir, 'old'), JSON.stringify({ name: 'cbr0', type: 'bridge', cniVersion: '0.3.1' }));
      run('GC', conf({ 'cni.dev/valid-attachments': [] }));
      expect(standIn.calls().map((c) => [c.containerID, c.ifname])).to.deep.equal([['old', 'eth0']]);
      expect(saved()).to.deep.equal([]);
    });

    it('one that cannot be released does not stop the others; the failure is reported and its file stays', () => {
      for (const id of ['c1', 'c2']) run('ADD', conf(), { CNI_CONTAINERID: id });
      writeFileSync(join(dataDir, 'c1@eth0'), JSON.stringify({ ...savedConfig('c1@eth0'), type: 'gone' }));
      const err = fails(() => run('GC', conf({ 'cni.dev/valid-attachments': [] })));
      expect(err.message).to.equal('GC could not clean up everything (1 failure; 2 stale attachments found)');
      expect(err.details).to.match(/c1@eth0: delegate plugin "gone" not found/);
      expect(saved()).to.deep.equal(['c1@eth0']);
    });

    it('calls the delegate\'s GC with the valid attachments when the config is 1.1.0 and the delegate speaks it', () => {
      run('GC', conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': valid('c9') }));
      expect(commands()).to.deep.equal(['VERSION']);
      standIn.reset();
      standIn.answer('VERSION', 0, '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}');
      run('GC', conf({ cniVersion: '1.1.0', 'cni.dev/valid-attachments': valid('c9') }));
      const gc = standIn.calls()[1]!;
      expect(gc.command).to.equal('GC');
      expect(gc.config!['cni.dev/valid-attachments']).to.deep.equal(valid('c9'));
      expect(gc.config!.ipam).to.deep.include({ ranges: [[{ subnet: '10.244.7.0/24' }]] });
    });

    it('needs the list of valid attachments', () => {
      expect(fails(() => run('GC')).message).to.equal('invalid network config: GC needs "cni.dev/valid-attachments"');
    });
  });

  describe('VERSION and the command itself', () => {
    it('VERSION lists the versions weft-cni speaks, in the version asked', () => {
      expect(JSON.parse(run('VERSION', '{"cniVersion":"0.4.0"}'))).to.deep.equal({ cniVersion: '0.4.0', supportedVersions: ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] });
      expect(JSON.parse(run('VERSION', '')).cniVersion).to.equal('1.1.0');
    });

    it('no CNI_COMMAND, or an unknown one: WEFT_ERR_CNI_ENV (CNI 4)', () => {
      expect(fails(() => run('')).message).to.match(/^CNI_COMMAND is not set: weft-cni is a CNI plugin, run by a container runtime/);
      const err = fails(() => run('UP'));
      expect(err.message).to.equal('CNI_COMMAND="UP" is not a CNI command (ADD, DEL, CHECK, STATUS, GC, VERSION)');
      expect(cniCode(err, 'UP')).to.equal(4);
    });

    it('a broken config fails every command but VERSION with its own code', () => {
      for (const command of ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC']) {
        expect(cniCode(fails(() => run(command, '{"cniVersion":"1.0.0"')), command), command).to.equal(6);
        expect(cniCode(fails(() => run(command, conf({ delegate: { name: 'x' } }))), command), command).to.equal(7);
      }
    });
  });
});
