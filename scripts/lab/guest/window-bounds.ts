/**
 * Runs in the lab guest (one virtio-rng-device, so on a003e00): register
 * windows are the device tree's `reg` (0x200 on QEMU virt), not the
 * page-rounded UIO map. A transport at in-page offset 0 (a000000, and
 * a003000, whose page also holds the rng at +0xe00) must refuse an access
 * at 0x200 and beyond, so nothing reaches the neighbours' registers.
 *
 *   node scripts/lab/guest/window-bounds.js
 */
import { readFileSync } from 'node:fs';
import { runCli } from '../../../lib/cli/main';
import { MmioWindow, type RegisterBlock } from '../../../lib/platform';
import { MmioRegister } from '../../../lib/spec';
import { discoverUio, type UioDeviceSpec } from '../../../lib/transport';
import { report, runMain } from './report';
import { hex } from '../../../lib/util/hex';

/** What one access did: its value, 'ok' for a write, or the error's name. */
function attempt(access: () => number | void): string {
  try {
    const value = access();
    return value === undefined ? 'ok' : hex(value);
  } catch (error) {
    return (error as Error).name;
  }
}

function withRegs<T>(regs: RegisterBlock, use: (regs: RegisterBlock) => T): T {
  try {
    return use(regs);
  } finally {
    regs.close();
  }
}

async function main(): Promise<void> {
  const specs = discoverUio();
  for (const { device } of specs) {
    const [map] = device.maps;
    report({
      kind: 'window',
      path: device.devicePath,
      parent: device.parent,
      start: hex(map.addr + BigInt(map.offset)),
      mapSize: hex(map.size),
      offset: hex(map.offset),
      window: map.window === undefined ? undefined : hex(map.window),
      windowFrom: map.windowFrom,
      windowNote: map.windowNote,
    });
  }
  const byParent = (parent: string): UioDeviceSpec => {
    const spec = specs.find((s) => s.device.parent === parent);
    if (!spec) throw new Error(`no UIO transport ${parent}`);
    return spec;
  };
  const first = byParent('a000000.virtio_mmio');
  const shared = byParent('a003000.virtio_mmio');
  const rng = byParent('a003e00.virtio_mmio');

  // The device tree as the kernel shows it for the first transport.
  const ofNode = `/sys/class/uio/uio${first.device.index}/device/of_node`;
  const cells = (file: string): string =>
    readFileSync(file)
      .toString('hex')
      .replace(/(.{8})(?!$)/g, '$1 ');
  report({
    kind: 'window-dt',
    path: first.device.devicePath,
    reg: cells(`${ofNode}/reg`),
    addressCells: cells(`${ofNode}/../#address-cells`),
    sizeCells: cells(`${ofNode}/../#size-cells`),
  });

  const rngStatus = (): number => withRegs(MmioWindow.openUio(rng.device), (regs) => regs.readl(MmioRegister.Status));
  const statusBefore = rngStatus();
  for (const spec of [first, shared]) {
    const accesses = withRegs(MmioWindow.openUio(spec.device), (regs) => ({
      size: hex(regs.size),
      'readl 0x0': attempt(() => regs.readl(MmioRegister.MagicValue)),
      'readl 0x1fc': attempt(() => regs.readl(0x1fc)),
      'readl 0x200': attempt(() => regs.readl(0x200)),
      'readb 0x200': attempt(() => regs.readb(0x200)),
      // The neighbour's Status (0x200 + 0x70), and the rng's (0xe00 + 0x70) in the same page.
      'writel 0x270': attempt(() => regs.writel(0x270, 1)),
      'readl 0xe00': attempt(() => regs.readl(0xe00)),
      'writel 0xe70': attempt(() => regs.writel(0xe70, 1)),
    }));
    report({
      kind: 'window-access',
      path: spec.device.devicePath,
      parent: spec.device.parent,
      window: MmioWindow.uioWindow(spec.device),
      accesses,
    });
  }
  const statusAfter = rngStatus();
  // The caller's windowSize of the whole page (as the windows were before): the rng really is in a003000's page. Reads
  // only.
  const page = withRegs(MmioWindow.openUio(shared.device, 0, { windowSize: 0x1000 }), (regs) => ({
    size: hex(regs.size),
    magicAtE00: hex(regs.readl(0xe00 + MmioRegister.MagicValue)),
    deviceIdAtE08: regs.readl(0xe00 + MmioRegister.DeviceID),
  }));
  report({
    kind: 'window-rng',
    statusBefore,
    statusAfter,
    page,
    from: MmioWindow.uioWindow(shared.device, 0, { windowSize: 0x1000 }).from,
  });

  // The CLI shows the same: scan's JSON, inspect's first line.
  let out = '';
  const io = { stdout: { write: (t: string) => (out += t) }, stderr: { write: (t: string) => (out += t) } };
  const scanStatus = await runCli(['scan', '--json'], io);
  const entries = JSON.parse(out) as { where: string; window?: string; windowFrom?: string }[];
  out = '';
  const inspectStatus = await runCli(['inspect', shared.device.devicePath], io);
  report({
    kind: 'window-cli',
    scanStatus,
    scan: entries.map(({ where, window, windowFrom }) => ({ where, window, windowFrom })),
    inspectStatus,
    inspectHead: out.split('\n')[0],
  });
}

runMain(main);
