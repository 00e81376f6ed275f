/**
 * The vxlan device (backend/vxlan/device.ts), through the vxlan backend on the
 * in-memory kernel: created, adopted or recreated, its address, its MAC kept
 * across restarts and device loss; and the compatibility rule that decides
 * between adopting and recreating.
 */
import { addrsOn } from '../kernel/addresses.js';
import { expect } from 'chai';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Link, VxlanLinkSpec } from '../kernel/kernel.js';
import { FakeKernel } from '../kernel/kernel-fake.js';
import { incompatibility } from '../backend/vxlan/device.js';
import { lease, peersOf, rig, settle, stop, summary, waitFor } from './harness/backend-rig.js';

describe('backend: vxlan device (fake kernel)', () => {
  it('creates flannel.<VNI> with VNI, default port, local, underlay, nolearning and MTU underlay-50', async () => {
    const r = await rig();
    const link = await r.kernel.linkByName('flannel.1');
    expect(link?.vxlan).to.deep.equal({ vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: 1, learning: false, gbp: false });
    expect(link?.mtu).to.equal(1450);
    expect(r.net.mtu).to.equal(1450);
    expect(link?.up).to.equal(true);
    expect(r.net.leaseAttrs).to.deep.equal({ BackendType: 'vxlan', BackendData: { VNI: 1, VtepMAC: link?.mac } });
    expect((await addrsOn(r.kernel, link!.index)).map((a) => a.cidr)).to.deep.equal(['10.244.1.0/32']);
    await stop(r);
  });

  it('takes the underlay MTU from the config when set, and honours port, VNI and GBP', async () => {
    const r = await rig({ backend: { mtu: 9000, port: 4789, vni: 7, gbp: true } });
    const link = await r.kernel.linkByName('flannel.7');
    expect(link?.mtu).to.equal(8950);
    expect(r.net.mtu).to.equal(8950);
    expect(link?.vxlan).to.include({ vni: 7, port: 4789, gbp: true });
    await stop(r);
  });

  it('removes other addresses inside Network from the device, keeps unrelated ones', async () => {
    const kernel = new FakeKernel();
    const eth0 = kernel.addLink({ name: 'eth0' });
    await kernel.addrAdd({ ifindex: eth0.index, cidr: '198.18.0.1/24' });
    const dev = await kernel.linkAdd({ name: 'flannel.1', mac: '0a:aa:00:00:00:01', mtu: 1450, vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: eth0.index, learning: false, gbp: false });
    await kernel.addrAdd({ ifindex: dev.index, cidr: '10.244.9.0/32' });
    await kernel.addrAdd({ ifindex: dev.index, cidr: '192.0.2.1/32' });
    const r = await rig({ kernel });
    expect((await addrsOn(kernel, dev.index)).map((a) => a.cidr).sort()).to.deep.equal(['10.244.1.0/32', '192.0.2.1/32']);
    await stop(r);
  });

  it('adopts a compatible device (e.g. flanneld\'s) with its MAC, and persists that MAC', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-mac-'));
    try {
      const kernel = new FakeKernel();
      const eth0 = kernel.addLink({ name: 'eth0' });
      await kernel.addrAdd({ ifindex: eth0.index, cidr: '198.18.0.1/24' });
      const dev = await kernel.linkAdd({ name: 'flannel.1', mac: '0a:aa:00:00:00:01', mtu: 1450, vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: eth0.index, learning: true, gbp: false });
      const r = await rig({ kernel, stateDir: dir });
      expect((await kernel.linkByName('flannel.1'))?.index).to.equal(dev.index);
      expect(r.net.leaseAttrs.BackendData?.VtepMAC).to.equal('0a:aa:00:00:00:01');
      expect((await readFile(join(dir, 'flannel.1.mac'), 'utf8')).trim()).to.equal('0a:aa:00:00:00:01');
      await stop(r);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('recreates an incompatible device with the stored MAC', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'weft-mac-'));
    try {
      await writeFile(join(dir, 'flannel.1.mac'), '0a:bb:00:00:00:02\n');
      const kernel = new FakeKernel();
      const eth0 = kernel.addLink({ name: 'eth0' });
      await kernel.addrAdd({ ifindex: eth0.index, cidr: '198.18.0.1/24' });
      const old = await kernel.linkAdd({ name: 'flannel.1', mac: '0a:aa:00:00:00:01', mtu: 1450, vni: 2, port: 8472, local: '198.18.0.1', underlayIndex: eth0.index, learning: false, gbp: false });
      const r = await rig({ kernel, stateDir: dir });
      const now = await kernel.linkByName('flannel.1');
      expect(now?.index).to.not.equal(old.index);
      expect(now?.vxlan?.vni).to.equal(1);
      expect(now?.mac).to.equal('0a:bb:00:00:00:02');
      await stop(r);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rebuilds a deleted device with the same MAC and replays every peer', async () => {
    const r = await rig({ resyncIntervalMs: 50 });
    const b = lease('10.244.2.0/24', '198.18.0.2', { mac: '0a:00:00:00:00:02' });
    r.feed.push({ events: [], peers: peersOf(b), resync: true });
    await settle(r);
    const old = (await r.kernel.linkByName('flannel.1'))!;
    await r.kernel.linkDel(old.index);
    await waitFor(async () => r.kernel.state().routes.length === 1);
    const now = (await r.kernel.linkByName('flannel.1'))!;
    expect(now.index).to.not.equal(old.index);
    expect(now.mac).to.equal(old.mac);
    expect(now.up).to.equal(true);
    expect((await addrsOn(r.kernel, now.index)).map((a) => a.cidr)).to.deep.equal(['10.244.1.0/32']);
    expect(summary(r.kernel).neighs).to.deep.equal(['10.244.2.0 0a:00:00:00:00:02']);
    await stop(r);
  });
});

describe('backend: vxlan device compatibility', () => {
  const spec: VxlanLinkSpec = { name: 'flannel.1', mac: '0a:00:00:00:00:01', mtu: 1450, vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: 2, learning: false, gbp: false };
  const link = (vx: Partial<NonNullable<Link['vxlan']>>, kind = 'vxlan'): Link => ({
    index: 7, name: 'flannel.1', mac: '0a:00:00:00:00:07', mtu: 1400, up: true, kind,
    vxlan: { vni: 1, port: 8472, local: '198.18.0.1', underlayIndex: 2, learning: true, gbp: false, ...vx },
  });
  const table: Array<[string, Link, string | null]> = [
    ['same config (MTU, learning and MAC differ): compatible', link({}), null],
    ['other VNI', link({ vni: 2 }), 'VNI 2 != 1'],
    ['other port', link({ port: 4789 }), 'port 4789 != 8472'],
    ['other local', link({ local: '198.18.0.9' }), 'local 198.18.0.9 != 198.18.0.1'],
    ['other underlay', link({ underlayIndex: 3 }), 'underlay #3 != #2'],
    ['gbp on', link({ gbp: true }), 'gbp true != false'],
    ['not vxlan', { ...link({}), kind: 'bridge' }, 'is a bridge device'],
  ];
  for (const [name, l, why] of table) {
    it(name, () => expect(incompatibility(l, spec)).to.equal(why));
  }
});
