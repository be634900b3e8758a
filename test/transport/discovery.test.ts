import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { DiscoveryError, SyscallError, TransportError } from '../../lib/errors';
import {
  MmioWindow,
  PollingInterruptSource,
  UioInterruptSource,
  UioSysfs,
  type UioDeviceInfo,
} from '../../lib/platform';
import { native } from '../../lib/platform/addon';
import { DeviceStatus, MMIO_MAGIC_VALUE, MmioInterrupt, MmioRegister as R } from '../../lib/spec';
import {
  MmioTransport,
  describeSpec,
  discoverUio,
  openTransport,
  parseDeviceSpec,
  probeAll,
  type DeviceSpec,
  type PhysicalDeviceSpec,
  type UioDeviceSpec,
} from '../../lib/transport';

const page = native.pageSize;
const openFds = (): number => fs.readdirSync('/proc/self/fd').length;
const settle = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const refdTimers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'virtio-mmio-discovery-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

let roots = 0;
function newRoot(): string {
  const root = path.join(tmp, `root${roots++}`);
  fs.mkdirSync(root);
  return root;
}

// ---- A fake sysfs + /dev, laid out as uio_pdrv_genirq makes it ----

interface Registers {
  magic?: number;
  version?: number;
  deviceId?: number;
  vendorId?: number;
  /** DeviceFeatures as a file reads it: the same word for either DeviceFeaturesSel. */
  deviceFeatures?: number;
}

interface FakeUio {
  index: number;
  name?: string;
  /** Platform device (the `device` link target); undefined: no link. */
  parent?: string;
  /** of_node/compatible bytes; undefined: no of_node. */
  compatible?: string;
  /** Physical start of the registers; the map is its page, the offset its in-page part. */
  start?: number;
  /** Contents of <root>/dev/uioN; undefined: no such file. */
  registers?: Registers;
  /** Size of the /dev file. Default: one page. */
  fileSize?: number;
}

function registerImage(regs: Registers, at = 0, fileSize = page): Buffer {
  const image = Buffer.alloc(Math.max(fileSize, at + 0x200));
  image.writeUInt32LE(regs.magic ?? MMIO_MAGIC_VALUE, at + R.MagicValue);
  image.writeUInt32LE(regs.version ?? 2, at + R.Version);
  image.writeUInt32LE(regs.deviceId ?? 4, at + R.DeviceID);
  image.writeUInt32LE(regs.vendorId ?? 0x554d4551, at + R.VendorID); // "QEMU"
  image.writeUInt32LE(regs.deviceFeatures ?? 0, at + R.DeviceFeatures);
  return image.subarray(0, fileSize);
}

function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text, 'latin1');
}

function makeTree(root: string, devices: FakeUio[]): UioSysfs {
  const sys = path.join(root, 'sys');
  const classDir = path.join(sys, 'class', 'uio');
  const devDir = path.join(root, 'dev');
  fs.mkdirSync(classDir, { recursive: true });
  fs.mkdirSync(devDir, { recursive: true });
  for (const d of devices) {
    const uio = `uio${d.index}`;
    const parentDir = path.join(sys, 'devices', 'platform', d.parent ?? `virtual-${uio}`);
    const uioDir = path.join(parentDir, 'uio', uio);
    fs.mkdirSync(uioDir, { recursive: true });
    write(path.join(uioDir, 'name'), `${d.name ?? 'virtio_mmio'}\n`);
    write(path.join(uioDir, 'version'), 'devicetree\n');
    if (d.parent !== undefined) fs.symlinkSync(path.join('..', '..', '..', d.parent), path.join(uioDir, 'device'));
    if (d.compatible !== undefined) {
      const node = path.join(sys, 'firmware', 'devicetree', 'base', `node-${uio}`);
      write(path.join(node, 'compatible'), d.compatible);
      fs.symlinkSync(path.relative(parentDir, node), path.join(parentDir, 'of_node'));
    }
    const start = d.start ?? 0x0a000000 + 0x200 * d.index;
    const offset = start % 0x1000;
    const map = path.join(uioDir, 'maps', 'map0');
    write(path.join(map, 'addr'), `0x${(start - offset).toString(16).padStart(16, '0')}\n`);
    write(path.join(map, 'size'), '0x0000000000001000\n');
    write(path.join(map, 'offset'), `0x${offset.toString(16)}\n`);
    write(path.join(map, 'name'), `virtio_mmio@${start.toString(16)}\n`);
    fs.symlinkSync(path.relative(classDir, uioDir), path.join(classDir, uio));
    if (d.registers !== undefined)
      fs.writeFileSync(path.join(devDir, uio), registerImage(d.registers, offset, d.fileSize ?? page));
  }
  return new UioSysfs(classDir, devDir);
}

/** A QEMU-virt-like transport: name virtio_mmio, DT compatible, parent "<addr>.virtio_mmio". */
function transport(index: number, registers?: Registers, extra: Partial<FakeUio> = {}): FakeUio {
  const start = 0x0a000000 + 0x200 * index;
  return {
    index,
    parent: `${start.toString(16)}.virtio_mmio`,
    compatible: 'virtio,mmio\0',
    start,
    registers,
    ...extra,
  };
}

// ---- parseDeviceSpec ----

describe('parseDeviceSpec', () => {
  it.each<[string, PhysicalDeviceSpec]>([
    ['4K@0x10000000', { kind: 'physical', size: 4096, base: 0x10000000n }],
    ['0x200@0xa003e00', { kind: 'physical', size: 0x200, base: 0xa003e00n }],
    ['1M@0x1c130000:48:7', { kind: 'physical', size: 1 << 20, base: 0x1c130000n, irq: 48, id: 7 }],
    // the kernel-parameters.txt example
    ['1K@0x100b0000:48:7', { kind: 'physical', size: 1024, base: 0x100b0000n, irq: 48, id: 7 }],
    ['1k@4096', { kind: 'physical', size: 1024, base: 4096n }],
    ['2m@0x40000000', { kind: 'physical', size: 2 << 20, base: 0x40000000n }],
    ['1g@0', { kind: 'physical', size: 1 << 30, base: 0n }],
    ['1G@0x0', { kind: 'physical', size: 1 << 30, base: 0n }],
    ['512@167772160:16', { kind: 'physical', size: 512, base: 0xa000000n, irq: 16 }],
    ['0x200@0xa003e00:0x30:0x1', { kind: 'physical', size: 0x200, base: 0xa003e00n, irq: 48, id: 1 }],
    ['0X200@0XA003E00', { kind: 'physical', size: 0x200, base: 0xa003e00n }],
    ['0x1K@0x1000', { kind: 'physical', size: 1024, base: 0x1000n }],
    ['0x100@0x8', { kind: 'physical', size: 0x100, base: 8n }],
    ['0x1000@0xfffffffffffff000', { kind: 'physical', size: 0x1000, base: 0xfffffffffffff000n }],
    ['0x200@0x1000:0:0', { kind: 'physical', size: 0x200, base: 0x1000n, irq: 0, id: 0 }],
    [
      '0x200@0x1000:4294967295:2147483647',
      { kind: 'physical', size: 0x200, base: 0x1000n, irq: 0xffffffff, id: 0x7fffffff },
    ],
    ['  virtio_mmio.device=0x200@0xa003e00:48\n', { kind: 'physical', size: 0x200, base: 0xa003e00n, irq: 48 }],
  ])('parses %p', (text, expected) => {
    const spec = parseDeviceSpec(text);
    expect(spec).toStrictEqual(expected);
    expect(typeof spec.base).toBe('bigint');
  });

  it('leaves irq and id out when absent (no undefined-valued keys)', () => {
    const spec = parseDeviceSpec('4K@0x10000000');
    expect(Object.keys(spec).sort()).toEqual(['base', 'kind', 'size']);
    expect(Object.keys(parseDeviceSpec('4K@0x10000000:5')).sort()).toEqual(['base', 'irq', 'kind', 'size']);
  });

  it.each<[string, RegExp]>([
    ['', /empty; expected <size>@<baseaddr>\[:<irq>\[:<id>\]\]/],
    ['   ', /empty/],
    ['virtio_mmio.device=', /empty/],
    ['4K', /no "@" between size and base address/],
    ['4K@0x1000@0x2000', /more than one "@"/],
    ['@0x1000', /size is missing/],
    ['4K@', /base address is missing/],
    ['4K@:5', /base address is missing/],
    ['4K@0x1000:', /irq is missing/],
    ['4K@0x1000::7', /irq is missing/],
    ['4K@0x1000:5:', /id is missing/],
    ['4K@0x1000:5:6:7', /too many ":" fields in "0x1000:5:6:7"/],
    ['4Q@0x1000', /size "4Q" is not a decimal or 0x-hex number, optionally followed by K, M or G/],
    ['4KB@0x1000', /size "4KB" is not/],
    ['4 K@0x1000', /size "4 K" is not/],
    ['-1@0x1000', /size "-1" is not/],
    ['0x@0x1000', /size "0x" is not/],
    ['1.5K@0x1000', /size "1.5K" is not/],
    ['K@0x1000', /size "K" is not/],
    ['4T@0x1000', /size "4T" is not/],
    ['4K@0xg000', /base address "0xg000" is not a decimal or 0x-hex number$/],
    ['4K@1G', /base address "1G" takes no K\/M\/G suffix \(only the size does\)/],
    ['4K@0x1000:1K', /irq "1K" takes no K\/M\/G suffix/],
    ['4K@0x1000:5:2m', /id "2m" takes no K\/M\/G suffix/],
    ['4K@0x1000:-1', /irq "-1" is not/],
    ['4K@0x1000:5:-1', /id "-1" is not/],
    ['4K@0x1000:eth0', /irq "eth0" is not/],
    ['0@0x1000', /size "0" is 0/],
    ['0x0@0x1000', /size "0x0" is 0/],
    ['0K@0x1000', /size "0K" is 0/],
    ['0xff@0x1000', /size "0xff" \(255 bytes\) is smaller than the 0x100-byte virtio-mmio register block/],
    ['2G@0', /size "2G" \(0x80000000 bytes\) is larger than 1 GiB/],
    ['0x40000001@0', /size "0x40000001" .* is larger than 1 GiB/],
    ['99999999999999999999999K@0', /larger than 1 GiB/],
    ['0x200@0x10000000000000000', /base address "0x10000000000000000" does not fit in 64 bits/],
    [
      '0x2000@0xfffffffffffff000',
      /base address "0xfffffffffffff000" \+ size "0x2000" runs past the end of the 64-bit address space/,
    ],
    ['0x200@0xa003e02', /base address "0xa003e02" is not 4-byte aligned/],
    ['0x200@010', /base address "010" has a leading zero \(octal to Linux\)/],
    ['0200@0x1000', /size "0200" has a leading zero/],
    ['0x200@0x1000:010', /irq "010" has a leading zero/],
    ['0x200@0x1000:0x100000000', /irq "0x100000000" does not fit in 32 bits/],
    ['0x200@0x1000:1:2147483648', /id "2147483648" is larger than 2147483647/],
    ['virtio_mmio.device=0x200', /no "@"/],
  ])('refuses %p with a DiscoveryError saying why', (text, reason) => {
    let error: unknown;
    try {
      parseDeviceSpec(text);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(DiscoveryError);
    const { code, message } = error as DiscoveryError;
    expect(code).toBe('ERR_VIRTIO_DISCOVERY');
    // The message quotes the whole input, then the bad part.
    expect(message.startsWith(`virtio_mmio device spec "${text}": `)).toBe(true);
    expect(message).toMatch(reason);
  });

  it('refuses a non-string with TypeError', () => {
    expect(() => parseDeviceSpec(0x200 as unknown as string)).toThrow(TypeError);
    expect(() => parseDeviceSpec(undefined as unknown as string)).toThrow(TypeError);
  });
});

// ---- describeSpec ----

describe('describeSpec', () => {
  const device = (over: Partial<UioDeviceInfo> = {}): UioDeviceInfo => ({
    index: 3,
    name: 'virtio_mmio',
    version: 'devicetree',
    devicePath: '/dev/uio3',
    sysfsPath: '/sys/class/uio/uio3',
    parent: 'a003e00.virtio_mmio',
    compatible: ['virtio,mmio'],
    maps: [{ index: 0, name: 'virtio_mmio@a003e00', addr: 0xa003000n, size: 0x1000, offset: 0xe00 }],
    ...over,
  });

  it('names a UIO device by node and parent, and a non-zero map', () => {
    expect(describeSpec({ kind: 'uio', device: device(), map: 0 })).toBe('/dev/uio3 (a003e00.virtio_mmio)');
    expect(describeSpec({ kind: 'uio', device: device() })).toBe('/dev/uio3 (a003e00.virtio_mmio)');
    expect(describeSpec({ kind: 'uio', device: device(), map: 1 })).toBe('/dev/uio3 (a003e00.virtio_mmio) map 1');
    expect(describeSpec({ kind: 'uio', device: device({ parent: undefined }) })).toBe('/dev/uio3 (virtio_mmio)');
    expect(describeSpec({ kind: 'uio', device: device({ parent: undefined, name: '' }) })).toBe('/dev/uio3');
  });

  it('writes a physical device in the virtio_mmio.device= syntax', () => {
    expect(describeSpec({ kind: 'physical', size: 0x200, base: 0xa003e00n })).toBe('0x200@0xa003e00');
    expect(describeSpec({ kind: 'physical', size: 0x1000, base: 0x100b0000n, irq: 48, id: 7 })).toBe(
      '0x1000@0x100b0000:48:7',
    );
    expect(describeSpec({ kind: 'physical', size: 0x1000, base: 0n, irq: 5 })).toBe('0x1000@0x0:5');
  });

  it.each(['4K@0x10000000', '1M@0x1c130000:48:7', '0x200@0xa003e00:0x30', '0x1000@0xfffffffffffff000:0:0'])(
    'parseDeviceSpec reads back what it writes for %p',
    (text) => {
      const spec = parseDeviceSpec(text);
      expect(parseDeviceSpec(describeSpec(spec))).toStrictEqual(spec);
    },
  );

  it('refuses a spec of unknown kind with TypeError', () => {
    expect(() => describeSpec({ kind: 'pci' } as unknown as DeviceSpec)).toThrow(/kind 'uio' or 'physical', got 'pci'/);
    expect(() => describeSpec({} as unknown as DeviceSpec)).toThrow(TypeError);
    expect(() => describeSpec(null as unknown as DeviceSpec)).toThrow(TypeError);
  });
});

// ---- discoverUio ----

describe('discoverUio', () => {
  it('returns a map-0 UIO spec for each virtio-mmio transport, by name or compatible, in index order', () => {
    const root = newRoot();
    const sysfs = makeTree(root, [
      transport(10),
      { index: 1, name: 'my_fpga', parent: 'my_fpga.0', start: 0x40000000 },
      transport(2),
      {
        index: 3,
        name: 'something',
        parent: 'c000000.something',
        compatible: 'acme,something\0virtio,mmio\0',
        start: 0x0c000000,
      },
      { index: 4, name: 'virtio_mmio', parent: 'LNRO0005:00', start: 0x0a010000 },
    ]);
    const specs = discoverUio(sysfs);
    expect(specs.map((s) => s.device.index)).toEqual([2, 3, 4, 10]);
    expect(specs.every((s) => s.kind === 'uio' && s.map === 0)).toBe(true);
    expect(specs).toEqual(sysfs.listVirtioMmio().map((device) => ({ kind: 'uio', device, map: 0 })));
    expect(specs[3].device).toMatchObject({
      devicePath: path.join(root, 'dev', 'uio10'),
      parent: 'a001400.virtio_mmio',
      maps: [{ index: 0, addr: 0x0a001000n, size: 0x1000, offset: 0x400 }],
    });
    expect(specs.map(describeSpec)).toEqual([
      `${path.join(root, 'dev', 'uio2')} (a000400.virtio_mmio)`,
      `${path.join(root, 'dev', 'uio3')} (c000000.something)`,
      `${path.join(root, 'dev', 'uio4')} (LNRO0005:00)`,
      `${path.join(root, 'dev', 'uio10')} (a001400.virtio_mmio)`,
    ]);
  });

  it('returns [] without a UIO class directory, and [] when no UIO device is a transport', () => {
    expect(discoverUio(new UioSysfs(path.join(newRoot(), 'nope'), '/dev'))).toEqual([]);
    expect(discoverUio(makeTree(newRoot(), [{ index: 0, name: 'my_fpga', start: 0x40000000 }]))).toEqual([]);
  });

  it('reads /sys/class/uio by default', () => {
    const expected = new UioSysfs().listVirtioMmio().map((device) => ({ kind: 'uio', device, map: 0 }));
    expect(discoverUio()).toEqual(expected);
  });
});

// ---- probeAll and openTransport over fake UIO devices ----

describe('probeAll over fake UIO devices (register images in regular files)', () => {
  let root: string;
  let specs: UioDeviceSpec[];

  beforeAll(() => {
    root = newRoot();
    const sysfs = makeTree(root, [
      transport(0, { version: 2, deviceId: 4, vendorId: 0x554d4551 }),
      transport(31, { version: 1, deviceId: 2, vendorId: 0x1af4 }), // registers at 0xe00 in the page
      transport(2, { version: 2, deviceId: 0, vendorId: 0x554d4551 }),
      transport(3, { magic: 0xdeadbeef }),
      transport(4, { version: 3 }),
      transport(5), // no /dev/uio5
      transport(6, {}, { fileSize: 0x100 }), // shorter than the mapping
    ]);
    specs = discoverUio(sysfs);
    expect(specs.map((s) => s.device.index)).toEqual([0, 2, 3, 4, 5, 6, 31]);
  });

  const byIndex = (index: number): UioDeviceSpec => specs.find((s) => s.device.index === index) as UioDeviceSpec;

  it('reports each device, in order, without throwing', () => {
    const reports = probeAll(specs);
    expect(reports.map((r) => r.spec)).toEqual(specs);
    const [modern, empty, badMagic, badVersion, missing, short, legacy] = reports;

    expect(modern).toEqual({
      spec: byIndex(0),
      result: { version: 2, deviceId: 4, vendorId: 0x554d4551, empty: false },
    });
    expect(legacy).toEqual({ spec: byIndex(31), result: { version: 1, deviceId: 2, vendorId: 0x1af4, empty: false } });

    // An empty slot is a result, not an error; its VendorID is not read (§4.2.3.1.1).
    expect(empty).toEqual({ spec: byIndex(2), result: { version: 2, deviceId: 0, vendorId: 0, empty: true } });

    expect(badMagic.result).toBeUndefined();
    expect(badMagic.error).toBeInstanceOf(TransportError);
    expect(badMagic.error).toMatchObject({ code: TransportError.BAD_MAGIC });
    expect(badMagic.error?.message).toMatch(/MagicValue is 0xdeadbeef, not 0x74726976/);

    expect(badVersion.error).toMatchObject({ code: TransportError.BAD_VERSION });
    expect(badVersion.error?.message).toMatch(/Version 3 is not supported/);

    expect(missing.error).toBeInstanceOf(SyscallError);
    expect(missing.error).toMatchObject({ code: 'ENOENT', syscall: 'open', path: path.join(root, 'dev', 'uio5') });

    expect(short.error).toBeInstanceOf(RangeError);
    expect(short.error?.message).toMatch(/beyond the end of/);
  });

  it('closes every window and opens no interrupt fd', () => {
    const before = openFds();
    for (let i = 0; i < 20; i++) probeAll(specs);
    expect(openFds()).toBe(before);
  });

  it('writes no register', () => {
    const files = specs.map((s) => s.device.devicePath).filter((p) => fs.existsSync(p));
    const before = files.map((f) => fs.readFileSync(f));
    probeAll(specs);
    files.forEach((f, i) => expect(fs.readFileSync(f).equals(before[i])).toBe(true));
  });

  it('reports a window that cannot be opened and a spec of unknown kind as errors', () => {
    const noMap: UioDeviceSpec = { kind: 'uio', device: byIndex(0).device, map: 1 };
    const bogus = { kind: 'pci' } as unknown as DeviceSpec;
    const [mapReport, bogusReport] = probeAll([noMap, bogus]);
    expect(mapReport.error).toBeInstanceOf(RangeError);
    expect(mapReport.error?.message).toMatch(/has no map 1 \(maps: 0\)/);
    expect(bogusReport.error).toBeInstanceOf(TypeError);
    expect(probeAll([])).toEqual([]);
  });

  it('opens a transport on the UIO device, owning the window and the UIO interrupt', () => {
    const before = openFds();
    const t = openTransport(byIndex(0));
    try {
      expect(t).toBeInstanceOf(MmioTransport);
      expect(t).toMatchObject({ version: 2, deviceId: 4, vendorId: 0x554d4551 });
      expect(t.label).toBe(`${path.join(root, 'dev', 'uio0')}@0x0`);
      expect(t.interrupts).toBeInstanceOf(UioInterruptSource);
      expect(t.interrupts?.label).toBe(path.join(root, 'dev', 'uio0'));
      expect(t.interrupts?.listening).toBe(false);
      // The window's fd is closed once mapped; the interrupt fd stays open.
      expect(openFds()).toBe(before + 1);
    } finally {
      t.close();
    }
    expect(t.closed).toBe(true);
    expect(t.regs.closed).toBe(true);
    expect(t.interrupts?.closed).toBe(true);
    expect(openFds()).toBe(before);
  });

  it('opens the legacy transport at offset 0xe00 and passes the transport options on', () => {
    const t = openTransport(byIndex(31), { guestPageSize: 0x10000, queueAlign: 0x10000 });
    try {
      expect(t).toMatchObject({ version: 1, deviceId: 2, vendorId: 0x1af4 });
      expect(t.regs.size).toBe(0x200);
      expect(t.queueLayout).toEqual({ legacy: true, align: 0x10000, pageSize: 0x10000 });
    } finally {
      t.close();
    }
  });

  it("passes a UIO spec's windowSize to the window (openTransport, probeAll), refuses one larger than the map", () => {
    // These fake nodes have no reg: without windowSize, the window is what the map holds from its offset.
    expect(byIndex(0).device.maps[0]).toMatchObject({ window: 0x1000, windowFrom: 'uio-map' });
    const whole = openTransport(byIndex(0));
    const sized = openTransport({ ...byIndex(0), windowSize: 0x200 });
    try {
      expect(whole.regs.size).toBe(0x1000);
      expect(sized.regs.size).toBe(0x200);
      expect(sized).toMatchObject({ version: 2, deviceId: 4 });
    } finally {
      whole.close();
      sized.close();
    }
    const [tooBig, tooSmall] = probeAll([
      { ...byIndex(31), windowSize: 0x400 },
      { ...byIndex(0), windowSize: 8 },
    ]);
    expect(tooBig.error).toBeInstanceOf(RangeError);
    expect(tooBig.error?.message).toMatch(/windowSize 0x400 .* must be in \[1, 0x200\]/);
    // Probing reads up to VendorID (0x00c): an 8-byte window stops it with a RangeError, not a read beyond.
    expect(tooSmall.error).toBeInstanceOf(RangeError);
  });

  it.each<[string, number, string, RegExp]>([
    ['a bad magic', 3, TransportError.BAD_MAGIC, /MagicValue is 0xdeadbeef/],
    ['a bad version', 4, TransportError.BAD_VERSION, /Version 3 is not supported/],
    ['an empty slot', 2, TransportError.EMPTY_SLOT, /empty virtio-mmio slot/],
    ['a missing device node', 5, 'ENOENT', /uio5/],
  ])('refuses %s and leaves no fd open', (_label, index, code, message) => {
    const before = openFds();
    expect(() => openTransport(byIndex(index))).toThrow(
      expect.objectContaining({ code, message: expect.stringMatching(message) }),
    );
    expect(openFds()).toBe(before);
  });

  it('closes the window and the interrupt fd when the transport refuses its options', () => {
    const before = openFds();
    expect(() => openTransport(byIndex(0), { guestPageSize: 3 })).toThrow(/guestPageSize must be a power of two/);
    expect(openFds()).toBe(before);
  });

  it('refuses a spec of unknown kind with TypeError', () => {
    expect(() => openTransport({ kind: 'pci' } as unknown as DeviceSpec)).toThrow(TypeError);
  });
});

// ---- Physical windows (/dev/mem) ----

describe('physical specs', () => {
  // Past the end of any real address space: if /dev/mem exists, mmap refuses
  // the offset, so no test ever maps physical memory.
  const unreachable: PhysicalDeviceSpec = { kind: 'physical', size: 0x200, base: 0xfffffffffffff000n, irq: 48 };
  const devMemMissing = !fs.existsSync('/dev/mem');

  it('openTransport fails with a SyscallError and leaves no fd open', () => {
    const before = openFds();
    let error: unknown;
    try {
      openTransport(unreachable, { pollIntervalMs: 5 }).close();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SyscallError);
    const failure = error as SyscallError;
    expect(['ENOENT', 'EACCES', 'EPERM', 'EINVAL', 'EOVERFLOW']).toContain(failure.code);
    if (devMemMissing) {
      expect(failure).toMatchObject({ code: 'ENOENT', syscall: 'open', path: '/dev/mem' });
      expect(failure.hint).toMatch(/CONFIG_DEVMEM/);
    }
    expect(openFds()).toBe(before);
  });

  it('no timer is left behind by a failed open', () => {
    const timers = refdTimers();
    expect(() => openTransport(unreachable)).toThrow(SyscallError);
    expect(refdTimers()).toBe(timers);
  });

  it('openTransport checks pollIntervalMs before opening anything', () => {
    const before = openFds();
    expect(() => openTransport(unreachable, { pollIntervalMs: 0 })).toThrow(RangeError);
    expect(() => openTransport(unreachable, { pollIntervalMs: 0 })).toThrow(/intervalMs must be an integer/);
    expect(openFds()).toBe(before);
  });

  it('probeAll reports the failure per device', () => {
    const before = openFds();
    const [report] = probeAll([unreachable]);
    expect(report.spec).toBe(unreachable);
    expect(report.result).toBeUndefined();
    expect(report.error).toBeInstanceOf(SyscallError);
    if (devMemMissing) expect(report.error).toMatchObject({ code: 'ENOENT', path: '/dev/mem' });
    expect(openFds()).toBe(before);
  });
});

// ---- What openTransport builds for a physical spec, over a file window ----

describe('a polled transport (what openTransport builds for a physical spec), over a file window', () => {
  it('polls InterruptStatus while live, dispatches what it finds, and lets the process exit while idle', async () => {
    const file = path.join(newRoot(), 'regs');
    // DeviceFeatures reads 1 for either DeviceFeaturesSel: bit 0 and bit 32 (VERSION_1).
    fs.writeFileSync(file, registerImage({ version: 2, deviceId: 4, deviceFeatures: 1 }));
    const timers = refdTimers();
    const polling = new PollingInterruptSource({ intervalMs: 1, label: 'file (polled)' });
    const t = new MmioTransport(MmioWindow.openFile(file, 0, 0x200), { interrupts: polling, owns: true });
    try {
      t.negotiate(0n);
      expect(polling.ticking).toBe(false);
      t.driverOk();
      expect(t.status & DeviceStatus.DRIVER_OK).toBe(DeviceStatus.DRIVER_OK);
      expect(polling.listening).toBe(true);
      expect(polling.ticking).toBe(true);
      // Idle: the transport unref'd the timer.
      expect(refdTimers()).toBe(timers);
      t.setBusy(0, true);
      expect(refdTimers()).toBe(timers + 1);
      t.setBusy(0, false);
      // Unref'd one turn later, so that a request submitted from a completion costs no ref/unref pair.
      // (Checked on the source itself: other timers in the process may come and go across a turn.)
      expect(polling.keepsAlive).toBe(true);
      await new Promise((resolve) => setImmediate(resolve));
      expect(polling.keepsAlive).toBe(false);
      t.setBusy(0, true);
      t.setBusy(0, false);
      t.setBusy(0, true); // busy again within the turn: still ref'd, the pending unref dropped
      await new Promise((resolve) => setImmediate(resolve));
      expect(polling.keepsAlive).toBe(true);
      t.setBusy(0, false);
      await new Promise((resolve) => setImmediate(resolve));
      expect(polling.keepsAlive).toBe(false);

      await settle(20);
      expect(t.stats.spuriousInterrupts).toBeGreaterThan(0);
      expect(t.stats.interrupts).toBe(0);

      const changed = new Promise<void>((resolve) => t.onConfigChange(resolve));
      t.regs.writel(R.InterruptStatus, MmioInterrupt.CONFIG);
      await changed;
      expect(t.stats.configChanges).toBeGreaterThan(0);
      // The handler acknowledged what it read.
      expect(fs.readFileSync(file).readUInt32LE(R.InterruptACK)).toBe(MmioInterrupt.CONFIG);

      // Closing with a request outstanding takes the ref'd timer away.
      t.setBusy(0, true);
      const busy = refdTimers();
      t.close();
      expect(refdTimers()).toBe(busy - 1);
    } finally {
      t.close();
    }
    expect(polling.closed).toBe(true);
    expect(polling.ticking).toBe(false);
    expect(t.regs.closed).toBe(true);
  });
});
