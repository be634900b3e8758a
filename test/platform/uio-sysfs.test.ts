import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { DiscoveryError, VirtioError } from '../../lib/errors';
import { native } from '../../lib/platform/addon';
import { MmioWindow } from '../../lib/platform/mmio-window';
import type { RegisterBlock } from '../../lib/platform/register-block';
import { UioSysfs, type UioDeviceInfo, type UioMap } from '../../lib/platform/uio-sysfs';

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
 *   <root>/sys/firmware/devicetree/base/virtio_mmio@a000200/reg  (<0x0 0xa000200 0x0 0x200>)
 *   <root>/sys/firmware/devicetree/base/{#address-cells,#size-cells}  (2 and 2, as QEMU virt)
 *
 * Properties are raw big-endian 32-bit cells, as the kernel's
 * drivers/of/kobj.c shows them.
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
  /** Raw bytes of of_node/compatible; undefined (and no reg): the parent has no of_node. */
  compatible?: string;
  /** of_node/reg; undefined: the node has no reg property. */
  reg?: Buffer;
  /** The node's directory under devicetree/base; default node-uioN (a child of the root). */
  node?: string;
  /** undefined: no maps directory. */
  maps?: FakeMap[];
}

function write(file: string, text: string | Buffer): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  if (typeof text === 'string') fs.writeFileSync(file, text, 'latin1');
  else fs.writeFileSync(file, text);
}

/** A device-tree property value: big-endian 32-bit cells. */
function cells(...values: number[]): Buffer {
  const bytes = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => bytes.writeUInt32BE(v, 4 * i));
  return bytes;
}

/** Writes property `name` of the node at `node` (a path under devicetree/base; '' is the root). */
function dtProperty(root: string, node: string, name: string, value: Buffer): void {
  write(path.join(root, 'sys', 'firmware', 'devicetree', 'base', node, name), value);
}

/**
 * Builds <root>/sys and <root>/dev; returns a UioSysfs over it. The
 * devicetree root says #address-cells 2, #size-cells 2 (QEMU virt) unless
 * `rootCells` is null (then neither property exists).
 */
function makeTree(root: string, devices: FakeDevice[], rootCells: [number, number] | null = [2, 2]): UioSysfs {
  const sys = path.join(root, 'sys');
  const classDir = path.join(sys, 'class', 'uio');
  fs.mkdirSync(classDir, { recursive: true });
  fs.mkdirSync(path.join(root, 'dev'), { recursive: true });
  fs.mkdirSync(path.join(sys, 'firmware', 'devicetree', 'base'), { recursive: true });
  if (rootCells) {
    dtProperty(root, '', '#address-cells', cells(rootCells[0]));
    dtProperty(root, '', '#size-cells', cells(rootCells[1]));
  }
  for (const d of devices) {
    const uio = `uio${d.index}`;
    const parentDir = path.join(sys, 'devices', 'platform', d.parent ?? `virtual-${uio}`);
    const uioDir = path.join(parentDir, 'uio', uio);
    fs.mkdirSync(uioDir, { recursive: true });
    if (d.name !== undefined) write(path.join(uioDir, 'name'), d.name);
    if (d.version !== undefined) write(path.join(uioDir, 'version'), d.version);
    write(path.join(uioDir, 'event'), '0\n');
    if (d.parent !== undefined) fs.symlinkSync(path.join('..', '..', '..', d.parent), path.join(uioDir, 'device'));
    if (d.compatible !== undefined || d.reg !== undefined) {
      const node = path.join(sys, 'firmware', 'devicetree', 'base', d.node ?? `node-${uio}`);
      fs.mkdirSync(node, { recursive: true });
      if (d.compatible !== undefined) write(path.join(node, 'compatible'), d.compatible);
      if (d.reg !== undefined) write(path.join(node, 'reg'), d.reg);
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
    // QEMU's hw/arm/virt.c: reg = <0 base 0 0x200>, a child of the root.
    reg: cells(0, start, 0, TRANSPORT_STRIDE),
    maps: [
      {
        addr: pa(start - offs),
        size: pa(Math.ceil((offs + TRANSPORT_STRIDE) / KERNEL_PAGE) * KERNEL_PAGE),
        offset: `0x${offs.toString(16)}\n`,
        name: `virtio_mmio@${start.toString(16)}\n`,
      },
    ],
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
      maps: [
        {
          index: 0,
          name: 'virtio_mmio@a000000',
          addr: 0x0a000000n,
          size: 0x1000,
          offset: 0,
          window: 0x200,
          windowFrom: 'device-tree',
        },
      ],
    });
    expect(byIndex.get(10)).toEqual<UioDeviceInfo>({
      index: 10,
      name: 'virtio_mmio',
      version: 'devicetree',
      devicePath: path.join(root, 'dev', 'uio10'),
      sysfsPath: path.join(classDir, 'uio10'),
      parent: 'a001400.virtio_mmio',
      compatible: ['virtio,mmio'],
      maps: [
        {
          index: 0,
          name: 'virtio_mmio@a001400',
          addr: 0x0a001000n,
          size: 0x1000,
          offset: 0x400,
          window: 0x200,
          windowFrom: 'device-tree',
        },
      ],
    });
    expect(byIndex.get(31)).toMatchObject({
      parent: 'a003e00.virtio_mmio',
      maps: [{ index: 0, addr: 0x0a003000n, size: 0x1000, offset: 0xe00, window: 0x200, windowFrom: 'device-tree' }],
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
        {
          index: 0,
          name: 'regs',
          addr: 0x40000000n,
          size: 0x10000,
          offset: 0,
          window: 0x10000,
          windowFrom: 'uio-map',
          windowNote: 'no device-tree node',
        },
        {
          index: 1,
          name: '',
          addr: 0x40100000n,
          size: 0x2000,
          offset: 0,
          window: 0x2000,
          windowFrom: 'uio-map',
          windowNote: 'no device-tree node',
        },
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
    expect(virtio[QEMU_TRANSPORTS]).toMatchObject({
      index: 33,
      name: 'something',
      compatible: ['acme,something', 'virtio,mmio'],
    });
    expect(virtio[QEMU_TRANSPORTS + 1]).toMatchObject({
      index: 34,
      name: 'virtio_mmio',
      parent: 'LNRO0005:00',
      compatible: [],
    });
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
    const sysfs = makeTree(newRoot(), [
      {
        index: 0,
        name: 'virtio_mmio\n',
        version: 'devicetree\n',
        parent: 'a000000.virtio_mmio',
        compatible: 'virtio,mmio\0',
        maps: [{ addr: pa(0x0a000000), size: pa(0x1000), name: 'virtio_mmio@a000000\n' }],
      },
    ]);
    expect(sysfs.read(0).maps).toEqual([
      {
        index: 0,
        name: 'virtio_mmio@a000000',
        addr: 0x0a000000n,
        size: 0x1000,
        offset: 0,
        window: 0x1000,
        windowFrom: 'uio-map',
        windowNote: expect.stringMatching(/no reg property/),
      },
    ]);
  });

  it('a device without a maps directory has maps []', () => {
    const sysfs = makeTree(newRoot(), [
      {
        index: 5,
        name: 'virtio_mmio\n',
        version: 'devicetree\n',
        parent: 'a000a00.virtio_mmio',
        compatible: 'virtio,mmio\0',
      },
    ]);
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
    const sysfs = makeTree(newRoot(), [
      { index: 0, name: 'x\n', maps: [{ addr: '4096\n', size: '8192\n', offset: '16\n', name: '\n' }] },
    ]);
    expect(sysfs.read(0).maps).toEqual([
      {
        index: 0,
        name: '',
        addr: 4096n,
        size: 8192,
        offset: 16,
        window: 8192 - 16,
        windowFrom: 'uio-map',
        windowNote: 'no device-tree node',
      },
    ]);
  });

  it('keeps a 64-bit addr above 2^53 exact as a bigint', () => {
    const sysfs = makeTree(newRoot(), [
      { index: 0, name: 'x\n', maps: [{ addr: '0xfffffffffffff000\n', size: pa(0x1000), offset: '0x0\n' }] },
    ]);
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
    const brokenTransport = makeTree(newRoot(), [
      qemuTransport(0),
      { ...qemuTransport(1), maps: [{ addr: pa(0x0a000200), size: 'banana\n' }] },
    ]);
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
    return {
      index: 7,
      name: 'virtio_mmio',
      version: 'devicetree',
      devicePath,
      sysfsPath: '/nonexistent/uio7',
      compatible: ['virtio,mmio'],
      maps,
    };
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

  it("reads the older kernels' layout (unaligned addr, raw size) as a window of `size` bytes", () => {
    const region = track(
      MmioWindow.openUio(device([{ index: 0, name: '', addr: 0x0a000200n, size: 0x200, offset: 0x200 }])),
    );
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
    const region = track(
      MmioWindow.openUio(
        device([{ index: 0, name: 'virtio_mmio', addr: 0x0a000000n, size: 0x1000, offset: 0x200 }]),
        0,
      ),
    );
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
    const region = track(
      MmioWindow.openUio(device([{ index: 0, name: '', addr: 0n, size: 0x1000, offset: 0x200 }]), 0),
    );
    expect(() => region.writel(0xe00, 1)).toThrow(expect.objectContaining({ name: 'RangeError' }));
    expect(() => region.writeb(0xe00, 1)).toThrow(expect.objectContaining({ name: 'RangeError' }));
    region.writeb(0xdff, 0x77);
    const bytes = fs.readFileSync(devicePath);
    expect(bytes[0xfff]).toBe(0x77);
    expect(bytes.readUInt32LE(0x1000)).toBe(0);
  });

  it('map 1 maps the second page (mmap offset 1 * pageSize) plus its offset', () => {
    const region = track(
      MmioWindow.openUio(
        device([
          { index: 0, name: 'first', addr: 0x0a000000n, size: 0x1000, offset: 0x200 },
          { index: 1, name: 'second', addr: 0x0b000000n, size: 0x1000, offset: 0x100 },
        ]),
        1,
      ),
    );
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
    const region = track(
      MmioWindow.openUio(
        device([
          { index: 0, name: '', addr: 0n, size: 0x1000, offset: 0 },
          { index: 1, name: '', addr: 0n, size: 0x1000, offset: 0 },
        ]),
        1,
      ),
    );
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

describe('register windows from the device tree (uio_pdrv_genirq page-rounds each map)', () => {
  const page = native.pageSize;
  const open: RegisterBlock[] = [];

  function track(region: RegisterBlock): RegisterBlock {
    open.push(region);
    return region;
  }

  afterEach(() => {
    for (const r of open.splice(0)) if (!r.closed) r.close();
  });

  /**
   * A one-map device whose node sits at `node` with `reg`; the map as uio_pdrv_genirq makes it for a register block at
   * `start`.
   */
  function boardDevice(
    start: number,
    regSize: number,
    reg: Buffer | undefined,
    node = `device@${start.toString(16)}`,
  ): FakeDevice {
    const offs = start % KERNEL_PAGE;
    return {
      index: 0,
      name: 'virtio_mmio\n',
      version: 'devicetree\n',
      parent: `${start.toString(16)}.virtio_mmio`,
      compatible: 'virtio,mmio\0',
      reg,
      node,
      maps: [
        {
          addr: pa(start - offs),
          size: pa(Math.ceil((offs + regSize) / KERNEL_PAGE) * KERNEL_PAGE),
          offset: `0x${offs.toString(16)}\n`,
          name: '\n',
        },
      ],
    };
  }

  /** What the map says about its window, without the other fields. */
  const windowOf = (map: UioMap): Pick<UioMap, 'window' | 'windowFrom' | 'windowNote'> => {
    const { window, windowFrom, windowNote } = map;
    return windowNote === undefined ? { window, windowFrom } : { window, windowFrom, windowNote };
  };

  it("QEMU virt: every one of the 32 transports gets reg's 0x200, whatever its in-page offset", () => {
    const sysfs = makeTree(
      newRoot(),
      Array.from({ length: QEMU_TRANSPORTS }, (_, i) => qemuTransport(i)),
    );
    for (const d of sysfs.listVirtioMmio()) {
      expect(windowOf(d.maps[0])).toEqual({ window: 0x200, windowFrom: 'device-tree' });
      expect(MmioWindow.uioWindow(d)).toMatchObject({ size: 0x200, from: 'device-tree' });
    }
  });

  it('in-page offset 0, reg size 0x200: window 0x200; access at 0x200 is a RangeError, neighbour untouched', () => {
    const root = newRoot();
    const sysfs = makeTree(root, [qemuTransport(0), qemuTransport(1)]);
    // /dev/uio0's page: our registers at 0, the neighbour's (uio1, a000200) at 0x200.
    const image = Buffer.alloc(page);
    image.writeUInt32LE(0x74726976, 0);
    image.writeUInt32LE(0x74726976, 0x200);
    image.writeUInt32LE(0x0f, 0x270); // the neighbour's Status: DRIVER_OK and more, set by its own driver
    fs.writeFileSync(path.join(root, 'dev', 'uio0'), image);
    const d = sysfs.read(0);
    expect(d.maps[0]).toMatchObject({
      addr: 0x0a000000n,
      size: 0x1000,
      offset: 0,
      window: 0x200,
      windowFrom: 'device-tree',
    });
    const region = track(MmioWindow.openUio(d));
    expect(region.size).toBe(0x200);
    expect(region.readl(0)).toBe(0x74726976);
    region.writel(0x1fc, 0x11223344); // the last register word of our own block
    for (const access of [
      () => region.readl(0x200),
      () => region.readb(0x200),
      () => region.writel(0x270, 0),
      () => region.writeb(0x270, 0),
      () => region.readl(0xffc),
    ]) {
      expect(access).toThrow(RangeError);
    }
    expect(() => region.copyOut(0x1f0, new Uint8Array(0x20), 4)).toThrow(RangeError);
    const after = fs.readFileSync(path.join(root, 'dev', 'uio0'));
    expect(after.readUInt32LE(0x1fc)).toBe(0x11223344);
    expect(after.subarray(0x200).equals(image.subarray(0x200))).toBe(true);
  });

  it('in-page offset 0xe00 (the last QEMU transport): 0x200 from the device tree, registers at file byte 0xe00', () => {
    const root = newRoot();
    const sysfs = makeTree(root, [qemuTransport(31)]);
    fs.writeFileSync(path.join(root, 'dev', 'uio31'), Buffer.alloc(page));
    const d = sysfs.read(31);
    expect(d.maps[0]).toMatchObject({ offset: 0xe00, window: 0x200, windowFrom: 'device-tree' });
    const region = track(MmioWindow.openUio(d));
    expect(region.size).toBe(0x200);
    region.writel(0x1fc, 0xcafef00d);
    expect(fs.readFileSync(d.devicePath).readUInt32LE(0xffc)).toBe(0xcafef00d);
    expect(() => region.readl(0x200)).toThrow(RangeError);
  });

  it('no of_node (ACPI, a platform device made by code): the page-rounded map, said so', () => {
    const root = newRoot();
    const acpi: FakeDevice = {
      index: 0,
      name: 'virtio_mmio\n',
      version: '0.1\n',
      parent: 'LNRO0005:00',
      maps: [{ addr: pa(0x0a010000), size: pa(0x1000), offset: '0x0\n', name: '\n' }],
    };
    const noDeviceLink: FakeDevice = {
      index: 1,
      name: 'virtio_mmio\n',
      maps: [{ addr: pa(0x0a011000), size: pa(0x1000), offset: '0x200\n', name: '\n' }],
    };
    const sysfs = makeTree(root, [acpi, noDeviceLink]);
    expect(windowOf(sysfs.read(0).maps[0])).toEqual({
      window: 0x1000,
      windowFrom: 'uio-map',
      windowNote: 'no device-tree node',
    });
    expect(windowOf(sysfs.read(1).maps[0])).toEqual({
      window: 0xe00,
      windowFrom: 'uio-map',
      windowNote: 'no device-tree node',
    });
    fs.writeFileSync(path.join(root, 'dev', 'uio0'), Buffer.alloc(page));
    const region = track(MmioWindow.openUio(sysfs.read(0)));
    expect(region.size).toBe(0x1000);
    expect(MmioWindow.uioWindow(sysfs.read(0))).toMatchObject({
      size: 0x1000,
      from: 'uio-map',
      note: 'no device-tree node',
    });
  });

  it('a 1-cell bus (#address-cells 1, #size-cells 1 on the parent, empty ranges): reg <addr 0x100>', () => {
    const root = newRoot();
    dtProperty(root, 'soc', '#address-cells', cells(1));
    dtProperty(root, 'soc', '#size-cells', cells(1));
    dtProperty(root, 'soc', 'ranges', Buffer.alloc(0));
    const sysfs = makeTree(root, [boardDevice(0x1c130000, 0x100, cells(0x1c130000, 0x100), 'soc/virtio@1c130000')]);
    const d = sysfs.read(0);
    expect(d.maps[0]).toMatchObject({
      addr: 0x1c130000n,
      size: 0x1000,
      offset: 0,
      window: 0x100,
      windowFrom: 'device-tree',
    });
    fs.writeFileSync(d.devicePath, Buffer.alloc(page));
    const region = track(MmioWindow.openUio(d));
    expect(region.size).toBe(0x100);
    expect(() => region.readl(0x100)).toThrow(RangeError);
  });

  it('1-cell reg straight under a 1-cell root', () => {
    const sysfs = makeTree(newRoot(), [boardDevice(0x10001200, 0x200, cells(0x10001200, 0x200))], [1, 1]);
    expect(windowOf(sysfs.read(0).maps[0])).toEqual({ window: 0x200, windowFrom: 'device-tree' });
  });

  it('a 2-cell address above 4 GiB with a 2-cell size', () => {
    const root = newRoot();
    const start = 0x1_2000_0800;
    const device = boardDevice(start, 0x800, cells(0x1, 0x2000_0800, 0x0, 0x800));
    const sysfs = makeTree(root, [device]);
    expect(sysfs.read(0).maps[0]).toMatchObject({
      addr: 0x1_2000_0000n,
      offset: 0x800,
      window: 0x800,
      windowFrom: 'device-tree',
    });
  });

  it("cells come from the nearest ancestor that has them (the kernel's of_n_addr_cells walks up), else 2 and 1", () => {
    // The bus has no #address-cells/#size-cells of its own: the root's 1 and 1 apply.
    const root = newRoot();
    dtProperty(root, 'bus', 'ranges', Buffer.alloc(0));
    const inherited = makeTree(
      root,
      [boardDevice(0x20000000, 0x100, cells(0x20000000, 0x100), 'bus/dev@20000000')],
      [1, 1],
    );
    expect(windowOf(inherited.read(0).maps[0])).toEqual({ window: 0x100, windowFrom: 'device-tree' });
    // Nobody says: #address-cells 2, #size-cells 1 (3 cells per entry).
    const defaults = makeTree(newRoot(), [boardDevice(0x20000000, 0x100, cells(0, 0x20000000, 0x100))], null);
    expect(windowOf(defaults.read(0).maps[0])).toEqual({ window: 0x100, windowFrom: 'device-tree' });
  });

  it("a translating bus (ranges <0x7e000000 0x0 0x3f000000 0x1000000>): reg's bus address maps to UIO's", () => {
    const root = newRoot();
    dtProperty(root, 'soc', '#address-cells', cells(1));
    dtProperty(root, 'soc', '#size-cells', cells(1));
    dtProperty(root, 'soc', 'ranges', cells(0x7e000000, 0x0, 0x3f000000, 0x01000000));
    const sysfs = makeTree(root, [boardDevice(0x3f00b200, 0x100, cells(0x7e00b200, 0x100), 'soc/virtio@7e00b200')]);
    expect(sysfs.read(0).maps[0]).toMatchObject({
      addr: 0x3f00b000n,
      offset: 0x200,
      window: 0x100,
      windowFrom: 'device-tree',
    });
  });

  it('several maps: each takes the reg entry at its own physical address', () => {
    const root = newRoot();
    const device: FakeDevice = {
      ...boardDevice(0x10000000, 0x100, cells(0, 0x10000000, 0, 0x100, 0, 0x10002800, 0, 0x800)),
      maps: [
        { addr: pa(0x10000000), size: pa(0x1000), offset: '0x0\n', name: 'regs\n' },
        { addr: pa(0x10002000), size: pa(0x1000), offset: '0x800\n', name: 'more\n' },
      ],
    };
    const sysfs = makeTree(root, [device]);
    const d = sysfs.read(0);
    expect(d.maps.map(windowOf)).toEqual([
      { window: 0x100, windowFrom: 'device-tree' },
      { window: 0x800, windowFrom: 'device-tree' },
    ]);
    fs.writeFileSync(d.devicePath, Buffer.alloc(2 * page));
    const second = track(MmioWindow.openUio(d, 1));
    expect(second.size).toBe(0x800);
    second.writel(0x7fc, 0x5a5a5a5a);
    expect(fs.readFileSync(d.devicePath).readUInt32LE(page + 0xffc)).toBe(0x5a5a5a5a);
    expect(() => second.readl(0x800)).toThrow(RangeError);
  });

  it('a reg larger than the map is cut to the map, with the reason', () => {
    const root = newRoot();
    const device = boardDevice(0x0a000000, 0x1000, cells(0, 0x0a000000, 0, 0x4000));
    const sysfs = makeTree(root, [device]);
    const [map] = sysfs.read(0).maps;
    expect(map).toMatchObject({ size: 0x1000, window: 0x1000, windowFrom: 'uio-map' });
    expect(map.windowNote).toMatch(/reg size 0x4000 is larger than the 0x1000 bytes the map holds .*cut to the map/);
    fs.writeFileSync(path.join(root, 'dev', 'uio0'), Buffer.alloc(page));
    expect(track(MmioWindow.openUio(sysfs.read(0))).size).toBe(0x1000);
  });

  it.each<[string, (root: string) => FakeDevice, RegExp]>([
    [
      "no reg entry at the map's address",
      () => boardDevice(0x0a000000, 0x200, cells(0, 0x0b000000, 0, 0x200)),
      /no reg entry of .* is at 0xa000000/,
    ],
    [
      'a reg of 5 bytes',
      () => boardDevice(0x0a000000, 0x200, Buffer.from([0, 0, 0, 0, 1])),
      /has 5 bytes, not a non-zero multiple of 16/,
    ],
    ['an empty reg', () => boardDevice(0x0a000000, 0x200, Buffer.alloc(0)), /has 0 bytes/],
    [
      'a reg written for 1+1 cells under a 2+2 parent',
      () => boardDevice(0x0a000000, 0x200, cells(0x0a000000, 0x200, 0x0a000400)),
      /not a non-zero multiple of 16/,
    ],
    ['no reg property', () => boardDevice(0x0a000000, 0x200, undefined), /no reg property/],
    ['a reg entry of size 0', () => boardDevice(0x0a000000, 0x200, cells(0, 0x0a000000, 0, 0)), /size 0/],
    [
      'a 3-byte #address-cells',
      (root) => {
        dtProperty(root, 'bad', '#address-cells', Buffer.from([0, 0, 1]));
        return boardDevice(0x0a000000, 0x200, cells(0x0a000000, 0x200), 'bad/dev@a000000');
      },
      /#address-cells has 3 bytes/,
    ],
    [
      '#size-cells 0',
      (root) => {
        dtProperty(root, 'bad', '#size-cells', cells(0));
        return boardDevice(0x0a000000, 0x200, cells(0, 0x0a000000), 'bad/dev@a000000');
      },
      /#size-cells is 0/,
    ],
    [
      '#address-cells 9',
      (root) => {
        dtProperty(root, 'bad', '#address-cells', cells(9));
        return boardDevice(0x0a000000, 0x200, cells(0x0a000000, 0x200), 'bad/dev@a000000');
      },
      /#address-cells is 9/,
    ],
    [
      'a bus with no ranges (not translatable)',
      (root) => {
        dtProperty(root, 'bus', '#address-cells', cells(1));
        dtProperty(root, 'bus', '#size-cells', cells(1));
        return boardDevice(0x0a000000, 0x200, cells(0x0a000000, 0x200), 'bus/dev@a000000');
      },
      /no reg entry of .* is at 0xa000000/,
    ],
    [
      'ranges of the wrong length',
      (root) => {
        dtProperty(root, 'bus', '#address-cells', cells(1));
        dtProperty(root, 'bus', '#size-cells', cells(1));
        dtProperty(root, 'bus', 'ranges', cells(0, 0, 0x0a000000));
        return boardDevice(0x0a000000, 0x200, cells(0, 0x200), 'bus/dev@0');
      },
      /ranges has 12 bytes, not a multiple of 16/,
    ],
  ])('a malformed or unmatched node (%s): the page-rounded map, the reason, no exception', (_label, make, note) => {
    const root = newRoot();
    const sysfs = makeTree(root, [make(root)]);
    const [d] = sysfs.listVirtioMmio();
    expect(d.maps[0]).toMatchObject({ size: 0x1000, offset: 0, window: 0x1000, windowFrom: 'uio-map' });
    expect(d.maps[0].windowNote).toMatch(note);
    fs.writeFileSync(d.devicePath, Buffer.alloc(page));
    expect(track(MmioWindow.openUio(d)).size).toBe(0x1000);
  });

  it('an of_node link that leads nowhere, or outside any devicetree root: the page-rounded map, no exception', () => {
    const root = newRoot();
    const sysfs = makeTree(root, [qemuTransport(0)]);
    const link = path.join(root, 'sys', 'devices', 'platform', 'a000000.virtio_mmio', 'of_node');
    fs.rmSync(link);
    fs.symlinkSync(path.join(root, 'nowhere'), link);
    expect(windowOf(sysfs.read(0).maps[0])).toEqual({
      window: 0x1000,
      windowFrom: 'uio-map',
      windowNote: 'no device-tree node',
    });
    const elsewhere = path.join(root, 'elsewhere', 'virtio_mmio@a000000');
    write(path.join(elsewhere, 'reg'), cells(0, 0x0a000000, 0, 0x200));
    fs.rmSync(link);
    fs.symlinkSync(elsewhere, link);
    expect(windowOf(sysfs.read(0).maps[0])).toEqual({
      window: 0x1000,
      windowFrom: 'uio-map',
      windowNote: expect.stringMatching(/^device tree not used: .* is not inside a devicetree\/base directory/),
    });
  });

  describe("the caller's windowSize", () => {
    let root: string;
    let d: UioDeviceInfo;
    beforeAll(() => {
      root = newRoot();
      d = makeTree(root, [qemuTransport(0)]).read(0);
    });
    beforeEach(() => {
      fs.writeFileSync(d.devicePath, Buffer.alloc(page));
    });

    it('wins over the device tree, up to what the map holds', () => {
      expect(MmioWindow.uioWindow(d, 0, { windowSize: 0x100 })).toMatchObject({ size: 0x100, from: 'caller' });
      expect(track(MmioWindow.openUio(d, 0, { windowSize: 0x100 })).size).toBe(0x100);
      // The whole page, as before this fix: the neighbours become reachable, on purpose.
      const page0 = track(MmioWindow.openUio(d, 0, { windowSize: 0x1000 }));
      expect(page0.size).toBe(0x1000);
      page0.writel(0xffc, 7);
      expect(fs.readFileSync(d.devicePath).readUInt32LE(0xffc)).toBe(7);
      // Without it: the device tree.
      expect(MmioWindow.uioWindow(d)).toMatchObject({ size: 0x200, from: 'device-tree' });
    });

    it.each([0, 0x1001, 0x2000, -1, 1.5, Number.NaN])('windowSize %p is a RangeError', (windowSize) => {
      expect(() => MmioWindow.openUio(d, 0, { windowSize })).toThrow(RangeError);
      expect(() => MmioWindow.uioWindow(d, 0, { windowSize })).toThrow(RangeError);
    });

    it('a windowSize that is not a number is a TypeError', () => {
      expect(() => MmioWindow.openUio(d, 0, { windowSize: '0x200' as unknown as number })).toThrow(TypeError);
    });
  });

  it('a hand-made map without window gets its extent; one with a window beyond the extent is cut', () => {
    const info = (map: Partial<UioMap>): UioDeviceInfo => ({
      index: 0,
      name: 'x',
      version: '',
      devicePath: '/dev/null',
      sysfsPath: '/nonexistent',
      compatible: [],
      maps: [{ index: 0, name: '', addr: 0x0a000000n, size: 0x1000, offset: 0x200, ...map }],
    });
    expect(MmioWindow.uioWindow(info({}))).toEqual(expect.objectContaining({ size: 0xe00, from: 'uio-map' }));
    expect(MmioWindow.uioWindow(info({ window: 0x200, windowFrom: 'device-tree' }))).toEqual(
      expect.objectContaining({ size: 0x200, from: 'device-tree' }),
    );
    expect(MmioWindow.uioWindow(info({ window: 0x2000, windowFrom: 'device-tree' }))).toMatchObject({
      size: 0xe00,
      from: 'uio-map',
      note: expect.stringMatching(/cut to the map/),
    });
  });
});
