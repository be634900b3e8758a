import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { DiscoveryError, VirtioError } from '../../lib/errors';
import { native } from '../../lib/platform/addon';
import { MmioWindow } from '../../lib/platform/mmio-window';
import type { RegisterBlock } from '../../lib/platform/register-block';
import { UioSysfs, type UioDeviceInfo } from '../../lib/platform/uio-sysfs';

/*
 * A fake sysfs laid out like the real one (drivers/uio/uio.c,
 * uio_pdrv_genirq.c):
 *
 *   <root>/sys/devices/platform/a000200.virtio_mmio/
 *       of_node -> ../../../firmware/devicetree/base/virtio_mmio@a000200
 *       uio/uio1/{name,version,event,device -> ../../../a000200.virtio_mmio}
 *       uio/uio1/maps/map0/{addr,size,offset,name}
 *   <root>/sys/class/uio/uio1 -> ../../devices/platform/a000200.virtio_mmio/uio/uio1
 *   <root>/sys/firmware/devicetree/base/virtio_mmio@a000200/compatible  ("virtio,mmio\0")
 */

const QEMU_TRANSPORTS = 32;
const QEMU_BASE = 0x0a000000;
const TRANSPORT_STRIDE = 0x200;
const KERNEL_PAGE = 0x1000; // the arm64 virt guest's page size, as printed by the fake kernel

let tmp: string;

/** "%pa" on a 64-bit kernel: 0x and 16 hex digits. */
function pa(value: number | bigint): string {
  return `0x${value.toString(16).padStart(16, '0')}\n`;
}

interface FakeMap {
  addr?: string;
  size?: string;
  /** undefined: no offset attribute (old kernels). */
  offset?: string;
  name?: string;
}

interface FakeDevice {
  index: number;
  name?: string;
  version?: string;
  /** Platform device directory name (the `device` link target); undefined: no `device` link. */
  parent?: string;
  /** Raw bytes of of_node/compatible; undefined: the parent has no of_node. */
  compatible?: string;
  /** undefined: no maps directory. */
  maps?: FakeMap[];
}

function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text, 'latin1');
}

/** Builds <root>/sys and <root>/dev; returns a UioSysfs over it. */
function makeTree(root: string, devices: FakeDevice[]): UioSysfs {
  const sys = path.join(root, 'sys');
  const classDir = path.join(sys, 'class', 'uio');
  fs.mkdirSync(classDir, { recursive: true });
  fs.mkdirSync(path.join(root, 'dev'), { recursive: true });
  for (const d of devices) {
    const uio = `uio${d.index}`;
    const parentDir = path.join(sys, 'devices', 'platform', d.parent ?? `virtual-${uio}`);
    const uioDir = path.join(parentDir, 'uio', uio);
    fs.mkdirSync(uioDir, { recursive: true });
    if (d.name !== undefined) write(path.join(uioDir, 'name'), d.name);
    if (d.version !== undefined) write(path.join(uioDir, 'version'), d.version);
    write(path.join(uioDir, 'event'), '0\n');
    if (d.parent !== undefined) fs.symlinkSync(path.join('..', '..', '..', d.parent), path.join(uioDir, 'device'));
    if (d.compatible !== undefined) {
      const node = path.join(sys, 'firmware', 'devicetree', 'base', `node-${uio}`);
      write(path.join(node, 'compatible'), d.compatible);
      fs.symlinkSync(path.relative(parentDir, node), path.join(parentDir, 'of_node'));
    }
    if (d.maps !== undefined) {
      fs.mkdirSync(path.join(uioDir, 'maps'), { recursive: true });
      d.maps.forEach((m, i) => {
        const mapDir = path.join(uioDir, 'maps', `map${i}`);
        fs.mkdirSync(mapDir);
        if (m.addr !== undefined) write(path.join(mapDir, 'addr'), m.addr);
        if (m.size !== undefined) write(path.join(mapDir, 'size'), m.size);
        if (m.offset !== undefined) write(path.join(mapDir, 'offset'), m.offset);
        if (m.name !== undefined) write(path.join(mapDir, 'name'), m.name);
      });
    }
    // /sys/class/uio/uioN is a relative symlink into /sys/devices, as on a real system.
    fs.symlinkSync(path.relative(classDir, uioDir), path.join(classDir, uio));
  }
  return new UioSysfs(classDir, path.join(root, 'dev'));
}

function qemuTransport(i: number): FakeDevice {
  const start = QEMU_BASE + TRANSPORT_STRIDE * i;
  const offs = start % KERNEL_PAGE;
  return {
    index: i,
    name: 'virtio_mmio\n',
    version: 'devicetree\n',
    parent: `${start.toString(16)}.virtio_mmio`,
    compatible: 'virtio,mmio\0',
    maps: [{
      addr: pa(start - offs),
      size: pa(Math.ceil((offs + TRANSPORT_STRIDE) / KERNEL_PAGE) * KERNEL_PAGE),
      offset: `0x${offs.toString(16)}\n`,
      name: `virtio_mmio@${start.toString(16)}\n`,
    }],
  };
}

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'virtio-mmio-uio-sysfs-'));
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

let treeCount = 0;
function newRoot(): string {
  const root = path.join(tmp, `tree${treeCount++}`);
  fs.mkdirSync(root);
  return root;
}

describe('UioSysfs over a fake QEMU virt tree', () => {
  let root: string;
  let sysfs: UioSysfs;

  beforeAll(() => {
    root = newRoot();
    const devices: FakeDevice[] = [];
    for (let i = 0; i < QEMU_TRANSPORTS; i++) devices.push(qemuTransport(i));
    // A non-virtio UIO device bound without device tree (no of_node), two maps.
    devices.push({
      index: 32,
      name: 'my_fpga\n',
      version: '0.1\n',
      parent: 'my_fpga.0',
      maps: [
        { addr: pa(0x40000000), size: pa(0x10000), offset: '0x0\n', name: 'regs\n' },
        { addr: pa(0x40100000), size: pa(0x2000), offset: '0x0\n', name: '\n' },
      ],
    });
    // Named differently, but its node is a virtio-mmio transport (several compatibles).
    devices.push({
      index: 33,
      name: 'something\n',
      version: 'devicetree\n',
      parent: 'c000000.something',
      compatible: 'acme,something\0virtio,mmio\0',
      maps: [{ addr: pa(0x0c000000), size: pa(0x1000), offset: '0x0\n', name: 'something@c000000\n' }],
    });
    // Named virtio_mmio but without of_node (e.g. an ACPI LNRO0005 transport).
    devices.push({
      index: 34,
      name: 'virtio_mmio\n',
      version: '0.1\n',
      parent: 'LNRO0005:00',
      maps: [{ addr: pa(0x0a010000), size: pa(0x1000), offset: '0x0\n', name: '\n' }],
    });
    // Created in a scrambled order so that directory order is not index order.
    devices.reverse();
    sysfs = makeTree(root, devices);
  });

  it('list() returns every device sorted numerically (uio2 before uio10)', () => {
    const list = sysfs.list();
    expect(list.map((d) => d.index)).toEqual(Array.from({ length: 35 }, (_, i) => i));
    const order = list.map((d) => d.index);
    expect(order.indexOf(2)).toBeLessThan(order.indexOf(10));
    expect(order.indexOf(9)).toBeLessThan(order.indexOf(10));
  });

  it('list() fills in every field of a QEMU transport', () => {
    const classDir = path.join(root, 'sys', 'class', 'uio');
    const byIndex = new Map(sysfs.list().map((d) => [d.index, d]));
    expect(byIndex.get(0)).toEqual<UioDeviceInfo>({
      index: 0,
      name: 'virtio_mmio',
      version: 'devicetree',
      devicePath: path.join(root, 'dev', 'uio0'),
      sysfsPath: path.join(classDir, 'uio0'),
      parent: 'a000000.virtio_mmio',
      compatible: ['virtio,mmio'],
      maps: [{ index: 0, name: 'virtio_mmio@a000000', addr: 0x0a000000n, size: 0x1000, offset: 0 }],
    });
    expect(byIndex.get(10)).toEqual<UioDeviceInfo>({
      index: 10,
      name: 'virtio_mmio',
      version: 'devicetree',
      devicePath: path.join(root, 'dev', 'uio10'),
      sysfsPath: path.join(classDir, 'uio10'),
      parent: 'a001400.virtio_mmio',
      compatible: ['virtio,mmio'],
      maps: [{ index: 0, name: 'virtio_mmio@a001400', addr: 0x0a001000n, size: 0x1000, offset: 0x400 }],
    });
    expect(byIndex.get(31)).toMatchObject({
      parent: 'a003e00.virtio_mmio',
      maps: [{ index: 0, addr: 0x0a003000n, size: 0x1000, offset: 0xe00 }],
    });
  });

  it('gives each QEMU transport its page-aligned addr and in-page offset', () => {
    const transports = sysfs.list().filter((d) => d.index < QEMU_TRANSPORTS);
    expect(transports).toHaveLength(QEMU_TRANSPORTS);
    for (const d of transports) {
      const start = BigInt(QEMU_BASE + TRANSPORT_STRIDE * d.index);
      expect(d.maps).toHaveLength(1);
      const [m] = d.maps;
      expect(typeof m.addr).toBe('bigint');
      expect(m.addr).toBe(start & ~0xfffn);
      expect(m.offset).toBe(Number(start & 0xfffn));
      expect(m.size).toBe(0x1000);
      // The kernel's size includes the offset: the registers end inside the mapping.
      expect(m.offset + TRANSPORT_STRIDE).toBeLessThanOrEqual(m.size);
    }
  });

  it('reads a non-virtio device without of_node, with two maps and an empty map name', () => {
    expect(sysfs.read(32)).toEqual<UioDeviceInfo>({
      index: 32,
      name: 'my_fpga',
      version: '0.1',
      devicePath: path.join(root, 'dev', 'uio32'),
      sysfsPath: path.join(root, 'sys', 'class', 'uio', 'uio32'),
      parent: 'my_fpga.0',
      compatible: [],
      maps: [
        { index: 0, name: 'regs', addr: 0x40000000n, size: 0x10000, offset: 0 },
        { index: 1, name: '', addr: 0x40100000n, size: 0x2000, offset: 0 },
      ],
    });
  });

  it('splits a NUL-separated compatible list', () => {
    const d = sysfs.read(33);
    expect(d.name).toBe('something');
    expect(d.parent).toBe('c000000.something');
    expect(d.compatible).toEqual(['acme,something', 'virtio,mmio']);
  });

  it('listVirtioMmio() keeps the transports (by name or compatible) and drops my_fpga', () => {
    const virtio = sysfs.listVirtioMmio();
    expect(virtio.map((d) => d.index)).toEqual([...Array.from({ length: QEMU_TRANSPORTS }, (_, i) => i), 33, 34]);
    expect(virtio.find((d) => d.name === 'my_fpga')).toBeUndefined();
    // uio33 qualifies only by compatible, uio34 only by name.
    expect(virtio[QEMU_TRANSPORTS]).toMatchObject({ index: 33, name: 'something', compatible: ['acme,something', 'virtio,mmio'] });
    expect(virtio[QEMU_TRANSPORTS + 1]).toMatchObject({ index: 34, name: 'virtio_mmio', parent: 'LNRO0005:00', compatible: [] });
  });

  it('read(n) matches the entry list() gives for n', () => {
    const fromList = sysfs.list().find((d) => d.index === 17);
    expect(sysfs.read(17)).toEqual(fromList);
    expect(sysfs.read(17).parent).toBe('a002200.virtio_mmio');
  });

  it('read(n) of a device that does not exist throws DiscoveryError', () => {
    let caught: unknown;
    try {
      sysfs.read(35);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(DiscoveryError);
    expect(caught).toBeInstanceOf(VirtioError);
    expect(caught).toBeInstanceOf(Error);
    expect((caught as DiscoveryError).code).toBe('ERR_VIRTIO_DISCOVERY');
    expect((caught as DiscoveryError).message).toContain('uio35');
  });

  it.each([-1, 1.5, Number.NaN, Infinity])('read(%p) throws RangeError', (index) => {
    expect(() => sysfs.read(index)).toThrow(RangeError);
  });
});

describe('UioSysfs edge cases', () => {
  it('list() returns [] when the class root does not exist', () => {
    const root = newRoot();
    const sysfs = new UioSysfs(path.join(root, 'no', 'such', 'class', 'uio'), path.join(root, 'dev'));
    expect(sysfs.list()).toEqual([]);
    expect(sysfs.listVirtioMmio()).toEqual([]);
  });

  it('list() returns [] for an empty class directory', () => {
    const sysfs = makeTree(newRoot(), []);
    expect(sysfs.list()).toEqual([]);
  });

  it('ignores class entries not named uioN', () => {
    const root = newRoot();
    const sysfs = makeTree(root, [qemuTransport(3)]);
    const classDir = path.join(root, 'sys', 'class', 'uio');
    fs.mkdirSync(path.join(classDir, 'uio'));
    fs.mkdirSync(path.join(classDir, 'uio3x'));
    fs.writeFileSync(path.join(classDir, 'README'), 'not a device\n');
    expect(sysfs.list().map((d) => d.index)).toEqual([3]);
  });

  it('uses the default roots /sys/class/uio and /dev', () => {
    const sysfs = new UioSysfs();
    for (const d of sysfs.list()) {
      expect(d.sysfsPath).toBe(`/sys/class/uio/uio${d.index}`);
      expect(d.devicePath).toBe(`/dev/uio${d.index}`);
    }
    expect(() => sysfs.read(987654)).toThrow(DiscoveryError);
  });

  it('a map without an offset attribute (old kernel) has offset 0', () => {
    const sysfs = makeTree(newRoot(), [{
      index: 0, name: 'virtio_mmio\n', version: 'devicetree\n', parent: 'a000000.virtio_mmio', compatible: 'virtio,mmio\0',
      maps: [{ addr: pa(0x0a000000), size: pa(0x1000), name: 'virtio_mmio@a000000\n' }],
    }]);
    expect(sysfs.read(0).maps).toEqual([{ index: 0, name: 'virtio_mmio@a000000', addr: 0x0a000000n, size: 0x1000, offset: 0 }]);
  });

  it('a device without a maps directory has maps []', () => {
    const sysfs = makeTree(newRoot(), [{ index: 5, name: 'virtio_mmio\n', version: 'devicetree\n', parent: 'a000a00.virtio_mmio', compatible: 'virtio,mmio\0' }]);
    const d = sysfs.read(5);
    expect(d.maps).toEqual([]);
    expect(d.parent).toBe('a000a00.virtio_mmio');
  });

  it('a device without a device link or version has no parent, no compatible and version ""', () => {
    const sysfs = makeTree(newRoot(), [{ index: 0, name: 'virtual\n', maps: [] }]);
    const d = sysfs.read(0);
    expect(d.parent).toBeUndefined();
    expect('parent' in d).toBe(false);
    expect(d.compatible).toEqual([]);
    expect(d.version).toBe('');
    expect(d.maps).toEqual([]);
  });

  it('accepts decimal numbers in map attributes', () => {
    const sysfs = makeTree(newRoot(), [{ index: 0, name: 'x\n', maps: [{ addr: '4096\n', size: '8192\n', offset: '16\n', name: '\n' }] }]);
    expect(sysfs.read(0).maps).toEqual([{ index: 0, name: '', addr: 4096n, size: 8192, offset: 16 }]);
  });

  it('keeps a 64-bit addr above 2^53 exact as a bigint', () => {
    const sysfs = makeTree(newRoot(), [{ index: 0, name: 'x\n', maps: [{ addr: '0xfffffffffffff000\n', size: pa(0x1000), offset: '0x0\n' }] }]);
    expect(sysfs.read(0).maps[0].addr).toBe(0xfffffffffffff000n);
  });

  it.each<[string, FakeMap]>([
    ['size "banana"', { addr: pa(0x0a000000), size: 'banana\n', offset: '0x0\n' }],
    ['addr "0xzz"', { addr: '0xzz\n', size: pa(0x1000), offset: '0x0\n' }],
    ['empty offset', { addr: pa(0x0a000000), size: pa(0x1000), offset: '\n' }],
    ['negative offset', { addr: pa(0x0a000000), size: pa(0x1000), offset: '-1\n' }],
    ['size above 2^53', { addr: pa(0x0a000000), size: pa(2n ** 60n), offset: '0x0\n' }],
    ['no addr file', { size: pa(0x1000), offset: '0x0\n' }],
    ['no size file', { addr: pa(0x0a000000), offset: '0x0\n' }],
  ])('a malformed map (%s) throws DiscoveryError from read() and list()', (_label, map) => {
    const sysfs = makeTree(newRoot(), [{ index: 0, name: 'virtio_mmio\n', version: 'devicetree\n', maps: [map] }]);
    expect(() => sysfs.read(0)).toThrow(DiscoveryError);
    try {
      sysfs.list();
      throw new Error('list() did not throw');
    } catch (error) {
      expect(error).toBeInstanceOf(DiscoveryError);
      expect((error as DiscoveryError).code).toBe('ERR_VIRTIO_DISCOVERY');
    }
  });

  it('listVirtioMmio() is not stopped by a malformed unrelated device, but is by a malformed transport', () => {
    const broken: FakeDevice = { index: 1, name: 'my_fpga\n', maps: [{ addr: pa(0x4000_0000), size: 'banana\n' }] };
    const sysfs = makeTree(newRoot(), [qemuTransport(0), broken, qemuTransport(2)]);
    expect(() => sysfs.list()).toThrow(DiscoveryError);
    expect(sysfs.listVirtioMmio().map((d) => d.index)).toEqual([0, 2]);
    const brokenTransport = makeTree(newRoot(), [qemuTransport(0), { ...qemuTransport(1), maps: [{ addr: pa(0x0a000200), size: 'banana\n' }] }]);
    expect(() => brokenTransport.listVirtioMmio()).toThrow(DiscoveryError);
  });

  it('a device directory without a name file throws DiscoveryError with the cause', () => {
    const sysfs = makeTree(newRoot(), [{ index: 0, version: 'devicetree\n', maps: [] }]);
    try {
      sysfs.read(0);
      throw new Error('read() did not throw');
    } catch (error) {
      expect(error).toBeInstanceOf(DiscoveryError);
      expect((error as DiscoveryError).message).toContain(path.join('uio0', 'name'));
      expect(((error as DiscoveryError).cause as NodeJS.ErrnoException).code).toBe('ENOENT');
    }
  });
});

describe('MmioWindow.openUio on a regular file standing in for /dev/uioN', () => {
  const page = native.pageSize;
  let devicePath: string;
  const open: RegisterBlock[] = [];

  function device(maps: UioDeviceInfo['maps']): UioDeviceInfo {
    return { index: 7, name: 'virtio_mmio', version: 'devicetree', devicePath, sysfsPath: '/nonexistent/uio7', compatible: ['virtio,mmio'], maps };
  }

  function track(region: RegisterBlock): RegisterBlock {
    open.push(region);
    return region;
  }

  beforeAll(() => {
    expect(Number.isInteger(page) && page >= 4096 && (page & (page - 1)) === 0).toBe(true);
    devicePath = path.join(newRoot(), 'uio7');
    fs.writeFileSync(devicePath, Buffer.alloc(2 * page));
  });

  it('reads the older kernels\' layout (unaligned addr, raw size) as a window of `size` bytes', () => {
    const region = track(MmioWindow.openUio(device([{ index: 0, name: '', addr: 0x0a000200n, size: 0x200, offset: 0x200 }])));
    expect(region.size).toBe(0x200);
    region.writel(0x1fc, 0x01020304);
    expect([...fs.readFileSync(devicePath).subarray(0x3fc, 0x400)]).toEqual([4, 3, 2, 1]);
  });

  beforeEach(() => {
    fs.writeFileSync(devicePath, Buffer.alloc(2 * page));
  });

  afterEach(() => {
    for (const r of open.splice(0)) if (!r.closed) r.close();
  });

  it('map 0 with offset 0x200: window of size - offset, accesses land at file byte 0x200', () => {
    const region = track(MmioWindow.openUio(device([{ index: 0, name: 'virtio_mmio', addr: 0x0a000000n, size: 0x1000, offset: 0x200 }]), 0));
    expect(region.size).toBe(0xe00);
    region.writel(0, 0x74726976); // "virt", the virtio-mmio MagicValue
    region.writel(0xdfc, 0xa1b2c3d4);
    const bytes = fs.readFileSync(devicePath);
    expect(bytes.readUInt32LE(0x200)).toBe(0x74726976);
    expect(bytes.subarray(0x200, 0x204).toString('latin1')).toBe('virt');
    expect(bytes.readUInt32LE(0xffc)).toBe(0xa1b2c3d4);
    expect(bytes.readUInt32LE(0)).toBe(0);
    expect(bytes.readUInt32LE(0x1fc)).toBe(0);
    expect(bytes.readUInt32LE(page)).toBe(0);
    // Reads see the file through the same offset.
    const file = fs.openSync(devicePath, 'r+');
    try {
      fs.writeSync(file, Buffer.from([0x02, 0x00, 0x00, 0x00]), 0, 4, 0x204);
    } finally {
      fs.closeSync(file);
    }
    expect(region.readl(4)).toBe(2);
  });

  it('openUio defaults to map 0', () => {
    const region = track(MmioWindow.openUio(device([{ index: 0, name: '', addr: 0n, size: 0x1000, offset: 0x600 }])));
    expect(region.size).toBe(0xa00);
    region.writew(2, 0xbeef);
    expect(fs.readFileSync(devicePath).readUInt16LE(0x602)).toBe(0xbeef);
  });

  it('accesses past the window end throw RangeError', () => {
    const region = track(MmioWindow.openUio(device([{ index: 0, name: '', addr: 0n, size: 0x1000, offset: 0x200 }]), 0));
    expect(() => region.writel(0xe00, 1)).toThrow(expect.objectContaining({ name: 'RangeError' }));
    expect(() => region.writeb(0xe00, 1)).toThrow(expect.objectContaining({ name: 'RangeError' }));
    region.writeb(0xdff, 0x77);
    const bytes = fs.readFileSync(devicePath);
    expect(bytes[0xfff]).toBe(0x77);
    expect(bytes.readUInt32LE(0x1000)).toBe(0);
  });

  it('map 1 maps the second page (mmap offset 1 * pageSize) plus its offset', () => {
    const region = track(MmioWindow.openUio(device([
      { index: 0, name: 'first', addr: 0x0a000000n, size: 0x1000, offset: 0x200 },
      { index: 1, name: 'second', addr: 0x0b000000n, size: 0x1000, offset: 0x100 },
    ]), 1));
    expect(region.size).toBe(0xf00);
    region.writel(0, 0xdeadbeef);
    region.writeb(0xeff, 0x5a);
    const bytes = fs.readFileSync(devicePath);
    expect(bytes.readUInt32LE(page + 0x100)).toBe(0xdeadbeef);
    expect(bytes[page + 0xfff]).toBe(0x5a);
    // Nothing landed in the first page.
    expect(bytes.subarray(0, page).every((b) => b === 0)).toBe(true);
  });

  it('map 1 with offset 0 reads what the file holds at pageSize', () => {
    const bytes = Buffer.alloc(2 * page);
    bytes.writeUInt32LE(0x12345678, page);
    bytes.writeUInt32LE(0x9abcdef0, 0);
    fs.writeFileSync(devicePath, bytes);
    const region = track(MmioWindow.openUio(device([
      { index: 0, name: '', addr: 0n, size: 0x1000, offset: 0 },
      { index: 1, name: '', addr: 0n, size: 0x1000, offset: 0 },
    ]), 1));
    expect(region.readl(0)).toBe(0x12345678);
  });

  it('a map index that does not exist throws RangeError naming the maps', () => {
    const info = device([{ index: 0, name: '', addr: 0n, size: 0x1000, offset: 0x200 }]);
    expect(() => MmioWindow.openUio(info, 1)).toThrow(RangeError);
    expect(() => MmioWindow.openUio(info, 1)).toThrow(/has no map 1 \(maps: 0\)/);
    expect(() => MmioWindow.openUio(device([]), 0)).toThrow(/maps: none/);
  });

  it.each([
    ['offset == size', 0x1000, 0x1000],
    ['offset > size', 0x1000, 0x1200],
  ])('%s throws RangeError', (_label, size, offset) => {
    expect(() => MmioWindow.openUio(device([{ index: 0, name: '', addr: 0n, size, offset }]), 0)).toThrow(RangeError);
  });

  it('closed regions throw ClosedError', () => {
    const region = MmioWindow.openUio(device([{ index: 0, name: '', addr: 0n, size: 0x1000, offset: 0x200 }]), 0);
    region.close();
    expect(region.closed).toBe(true);
    expect(() => region.readl(0)).toThrow(expect.objectContaining({ code: 'ERR_VIRTIO_CLOSED' }));
  });

  it('works on a device list() found in a fake tree (uio31: offset 0xe00)', () => {
    const root = newRoot();
    const sysfs = makeTree(root, [qemuTransport(31)]);
    fs.writeFileSync(path.join(root, 'dev', 'uio31'), Buffer.alloc(page));
    const [d] = sysfs.listVirtioMmio();
    const region = track(MmioWindow.openUio(d));
    expect(region.size).toBe(0x200);
    region.writel(0x1fc, 0x01020304);
    expect(fs.readFileSync(d.devicePath).readUInt32LE(0xffc)).toBe(0x01020304);
  });
});
