/**
 * weft-cni under a real Kubernetes runtime: Debian's containerd (CRI plugin)
 * in a host namespace, driven over the CRI as kubelet drives it, with the
 * conflist `weftctl cni install` writes (weft + portmap) and the stock
 * bridge, host-local, portmap and loopback plugins. No weftd here: the test
 * writes the subnet file as weftd would once it holds a lease.
 */
import { expect } from 'chai';
import { existsSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { conflist } from '../cni/install.js';
import { removeAtExit } from './harness/at-exit.js';
import { ContainerdHost, stockCniPlugins } from './harness/containerd.js';
import { CriError } from './harness/cri.js';
import { cleanupLeftovers, Netns, RUN_PREFIX, Switch } from './harness/netns.js';

const WEFT_CNI = fileURLToPath(new URL('../bin/weft-cni.cjs', import.meta.url));
const SUBNET = 'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n';

describe('cni-cri-real: weft-cni under containerd\'s CRI, pods as kubelet runs them @real', function () {
  this.timeout(180_000);
  const dir = join('/tmp', `${RUN_PREFIX}cnicri`);
  let sw: Switch;
  let ns: Netns;
  let host: ContainerdHost;

  // Paths as the plugin sees them inside containerd's mount namespace, and where they lie here.
  const subnetFile = () => host.hostPath('/run/flannel/subnet.env');
  const saved = () => (existsSync(host.hostPath('/var/lib/cni/flannel')) ? readdirSync(host.hostPath('/var/lib/cni/flannel')) : []);
  const reservations = () => {
    const d = host.hostPath('/var/lib/cni/networks/weft');
    return existsSync(d) ? readdirSync(d).filter((f) => f.startsWith('10.244.5.')) : [];
  };
  const bridgePorts = async () => (await ns.ipJson<{ ifname: string }[]>('link', 'show', 'master', 'cni0').catch(() => [])).map((l) => l.ifname);

  before(async () => {
    await cleanupLeftovers();
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    removeAtExit(dir);
    sw = await Switch.create('ccsw');
    ns = await sw.addHost('cch1', '198.18.0.1/24');
    host = await ContainerdHost.start({ netns: ns, dir: join(dir, 'h1'), cniPlugins: { ...stockCniPlugins(['bridge', 'host-local', 'portmap', 'loopback']), weft: WEFT_CNI } });
    host.writeCniConfig('10-weft.conflist', conflist({ name: 'weft' }));
    await host.waitNetworkReady();
  });

  after(async () => {
    await host?.stop();
    await sw?.ns.delete();
    await ns?.delete();
    rmSync(dir, { recursive: true, force: true });
  });

  it('a pod started before weftd has written the subnet file fails with the clear error and leaves nothing; the same pod starts once the file is there', async () => {
    const err = await host.runPod('early').catch((e: unknown) => e);
    expect(err).to.be.instanceOf(CriError);
    const e = err as CriError;
    expect(e.details).to.include('plugin type="weft"');
    expect(e.details).to.include('subnet file /run/flannel/subnet.env does not exist: weftd writes it once it holds a lease for this node');
    expect([saved(), reservations(), await bridgePorts()]).to.deep.equal([[], [], []]);

    mkdirSync(dirname(subnetFile()), { recursive: true });
    writeFileSync(subnetFile(), SUBNET);
    const pod = await host.runPod('early');
    expect(pod.ip).to.match(/^10\.244\.5\.\d+$/);
    expect(saved()).to.have.length(1);
    await pod.remove();
    expect([saved(), reservations(), await bridgePorts()]).to.deep.equal([[], [], []]);
  });

  it('pods get addresses in the node\'s subnet (the IP the CRI reports), reach each other and the gateway, and route to the network', async () => {
    const a = await host.runPod('web-a');
    const b = await host.runPod('web-b');
    for (const p of [a, b]) {
      const [eth0] = JSON.parse(await p.exec('ip', '-j', '-4', 'addr', 'show', 'dev', 'eth0')) as { addr_info: { local: string }[]; mtu: number }[];
      expect(eth0!.addr_info.map((x) => x.local)).to.deep.equal([p.ip]);
      expect(eth0!.mtu).to.equal(1450);
      expect(await p.exec('ip', 'route', 'show', '10.244.0.0/16')).to.match(/via 10\.244\.5\.1 dev eth0/);
      expect(await p.exec('ping', '-c', '1', '-W', '2', '10.244.5.1')).to.match(/1 received/);
    }
    expect(await a.exec('ping', '-c', '1', '-W', '2', b.ip)).to.match(/1 received/);
    expect(reservations().sort()).to.deep.equal([a.ip, b.ip].sort());
    await a.remove();
    await b.remove();
    expect([saved(), reservations(), await bridgePorts()]).to.deep.equal([[], [], []]);
  });

  it('10 pods run and removed leave no IP reservation, veth or saved config behind', async () => {
    const pods = [];
    for (let i = 0; i < 10; i++) pods.push(await host.runPod(`batch-${i}`));
    expect(new Set(pods.map((p) => p.ip)).size).to.equal(10);
    expect(saved()).to.have.length(10);
    for (const p of pods) await p.remove();
    expect([saved(), reservations(), await bridgePorts()]).to.deep.equal([[], [], []]);
  });
});
