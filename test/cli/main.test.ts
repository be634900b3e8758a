import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { UioSysfs } from '../../lib/platform';
import { native } from '../../lib/platform/addon';
import { runCli, USAGE } from '../../lib/cli/main';
import { parseTarget } from '../../lib/cli/targets';
import type { ScanEntry } from '../../lib/cli/scan';

/** A sysfs with no UIO class at all (the host running the tests has none bound). */
const NO_UIO = new UioSysfs('/nonexistent/sys/class/uio', '/nonexistent/dev');

async function cli(...argv: string[]): Promise<{ status: number; out: string; err: string }> {
  return cliWith(NO_UIO, ...argv);
}

async function cliWith(sysfs: UioSysfs, ...argv: string[]): Promise<{ status: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const status = await runCli(argv, { stdout: { write: (t: string) => (out += t) }, stderr: { write: (t: string) => (err += t) }, sysfs });
  return { status, out, err };
}

describe('virtio-mmio scan', () => {
  test('--json lists each transport with version, device, vendor and status', async () => {
    const { status, out, err } = await cli('scan', '--sim', 'rng', '--sim', 'blk:1', '--sim', 'sim:net:packed', '--sim', 'empty', '--json');
    expect({ status, err }).toEqual({ status: 0, err: '' });
    const entries = JSON.parse(out) as ScanEntry[];
    expect(entries.map((e) => [e.where, e.kind, e.version, e.deviceId, e.device, e.empty])).toEqual([
      ['sim:rng', 'sim', 2, 4, 'ENTROPY', false],
      ['sim:blk:1', 'sim', 1, 2, 'BLOCK', false],
      ['sim:net:packed', 'sim', 2, 1, 'NET', false],
      ['sim:empty', 'sim', 2, 0, 'empty', true],
    ]);
    // The sim's vendor is "VIMM"; a device nobody drives has status 0.
    expect(entries[0]).toMatchObject({ vendor: 'VIMM', status: '0x0', statusBits: '0' });
    expect(entries[3].vendorId).toBeUndefined();
  });

  test('one line per device, the empty slots summed up', async () => {
    const { status, out } = await cli('scan', '--sim', 'rng', '--sim', 'empty', '--sim', 'empty');
    expect(status).toBe(0);
    expect(out.split('\n')).toEqual([
      '3 virtio-mmio transports: 1 with a device, 2 empty',
      'sim:rng: ENTROPY (4), virtio-mmio Version 2, vendor 0x4d4d4956 "VIMM", status 0x0 (0)',
      '(2 empty slots: DeviceID 0)',
      '',
    ]);
  });

  test('with nothing to scan it says how to bind transports to UIO', async () => {
    const { status, out } = await cli('scan');
    expect(status).toBe(0);
    expect(out).toContain('0 virtio-mmio transports');
    expect(out).toContain('uio_pdrv_genirq of_id=virtio,mmio');
  });
});

describe('virtio-mmio inspect', () => {
  test.each(['sim:blk:1', 'sim:blk', 'sim:blk:packed'])('%s --json: identity, features by name, config and queues, device left as it was', async (device) => {
    const { status, out, err } = await cli('inspect', device, '--json');
    expect({ status, err }).toEqual({ status: 0, err: '' });
    const report = JSON.parse(out);
    expect(JSON.stringify(report)).toContain('VIRTIO_BLK_F_FLUSH');
    expect(JSON.stringify(report)).toContain('"capacity"');
    expect(report.problem).toBeUndefined();
    expect(report.writes.every((w: string) => /Sel/.test(w))).toBe(true);
  });

  test('the human form names the device and its features', async () => {
    const { status, out } = await cli('inspect', 'sim:net');
    expect(status).toBe(0);
    expect(out).toContain('NET');
    expect(out).toContain('VIRTIO_NET_F_MAC');
  });

  test('an empty slot says so and exits 0', async () => {
    const { status, out } = await cli('inspect', 'sim:empty', '--json');
    expect(status).toBe(0);
    expect(JSON.parse(out)).toMatchObject({ empty: true });
  });
});

describe('scan and inspect on a UIO transport at in-page offset 0 (fake sysfs with its device-tree node)', () => {
  // /dev/uio0 as uio_pdrv_genirq shows QEMU virt's first transport: map0 addr
  // 0xa000000, size 0x1000 (page-rounded), offset 0; its node's reg is 0x200.
  let root: string;
  let sysfs: UioSysfs;
  beforeAll(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'virtio-mmio-cli-uio-'));
    const put = (file: string, data: string | Buffer): void => {
      fs.mkdirSync(path.dirname(file), { recursive: true });
      fs.writeFileSync(file, data);
    };
    const cells = (...values: number[]): Buffer => Buffer.concat(values.map((v) => Buffer.from([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff])));
    const base = path.join(root, 'sys', 'firmware', 'devicetree', 'base');
    put(path.join(base, '#address-cells'), cells(2));
    put(path.join(base, '#size-cells'), cells(2));
    const node = path.join(base, 'virtio_mmio@a000000');
    put(path.join(node, 'compatible'), 'virtio,mmio\0');
    put(path.join(node, 'reg'), cells(0, 0x0a000000, 0, 0x200));
    const platform = path.join(root, 'sys', 'devices', 'platform', 'a000000.virtio_mmio');
    const uio = path.join(platform, 'uio', 'uio0');
    put(path.join(uio, 'name'), 'virtio_mmio\n');
    put(path.join(uio, 'maps', 'map0', 'addr'), '0x000000000a000000\n');
    put(path.join(uio, 'maps', 'map0', 'size'), '0x0000000000001000\n');
    put(path.join(uio, 'maps', 'map0', 'offset'), '0x0\n');
    fs.symlinkSync(path.relative(platform, node), path.join(platform, 'of_node'));
    fs.symlinkSync('../../../a000000.virtio_mmio', path.join(uio, 'device'));
    fs.mkdirSync(path.join(root, 'sys', 'class', 'uio'), { recursive: true });
    fs.symlinkSync(path.relative(path.join(root, 'sys', 'class', 'uio'), uio), path.join(root, 'sys', 'class', 'uio', 'uio0'));
    // An rng at 0, Version 2, and the neighbour's registers at 0x200 in the same page.
    const image = Buffer.alloc(native.pageSize);
    for (const at of [0, 0x200]) {
      image.writeUInt32LE(0x74726976, at);
      image.writeUInt32LE(2, at + 4);
      image.writeUInt32LE(4, at + 8);
      image.writeUInt32LE(0x554d4551, at + 0xc);
    }
    put(path.join(root, 'dev', 'uio0'), image);
    sysfs = new UioSysfs(path.join(root, 'sys', 'class', 'uio'), path.join(root, 'dev'));
  });
  afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

  test('scan --json gives the window and where its size came from', async () => {
    const { status, out, err } = await cliWith(sysfs, 'scan', '--json');
    expect({ status, err }).toEqual({ status: 0, err: '' });
    expect(JSON.parse(out)).toEqual([expect.objectContaining({ kind: 'uio', device: 'ENTROPY', window: '0x200', windowFrom: 'device-tree' })]);
  });

  test('inspect says the window is the device tree\'s 0x200 bytes, not the page', async () => {
    const { out } = await cliWith(sysfs, 'inspect', 'uio0');
    expect(out.split('\n')[0]).toBe(`${path.join(root, 'dev', 'uio0')}@0x0: window of 0x200 bytes (device-tree reg), MagicValue 0x74726976 ("virt"), Version 2`);
    const json = JSON.parse((await cliWith(sysfs, 'inspect', 'uio0', '--json')).out);
    expect(json).toMatchObject({ windowSize: 0x200, windowFrom: 'device-tree' });
    expect(json.windowNote).toBeUndefined();
  });
});

describe('virtio-mmio rng', () => {
  test.each(['sim:rng:1', 'sim:rng', 'sim:rng:packed'])('%s: --bytes N gives N bytes', async (device) => {
    const { status, out, err } = await cli('rng', device, '--bytes', '100', '--json');
    expect({ status, err }).toEqual({ status: 0, err: '' });
    const result = JSON.parse(out) as { where: string; bytes: number; hex: string };
    expect(result).toMatchObject({ where: device, bytes: 100 });
    expect(result.hex).toMatch(/^[0-9a-f]{200}$/);
  });

  test('on a device of another type: a typed failure, exit 1', async () => {
    const { status, err } = await cli('rng', 'sim:blk');
    expect(status).toBe(1);
    expect(err).toMatch(/^virtio-mmio rng: .*this driver is for ENTROPY \(4\), the device is BLOCK \(2\)/);
  });
});

describe('usage', () => {
  test.each([
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['scan', '--bogus'], /Unknown option '--bogus'/],
    [['rng'], /rng takes one device, got 0/],
    [['rng', 'sim:rng', '--bytes', '0'], /--bytes must be an integer/],
  ])('%j: exit 2 with the reason and the usage', async (argv, reason) => {
    const { status, err } = await cli(...argv);
    expect(status).toBe(2);
    expect(err).toMatch(reason);
    expect(err).toContain(USAGE);
  });

  test('help prints the usage, exit 0; no command at all, exit 2', async () => {
    expect(await cli('help')).toMatchObject({ status: 0, out: USAGE });
    expect(await cli()).toMatchObject({ status: 2, out: USAGE });
  });
});

describe('device names', () => {
  test.each([
    ['sim:rng', { kind: 'sim', type: 'rng', version: 2 }],
    ['sim:console:1', { kind: 'sim', type: 'console', version: 1 }],
    ['0x200@0xa003e00:48', { kind: 'device', spec: { kind: 'physical', size: 0x200, base: 0xa003e00n, irq: 48 } }],
  ])('%s', (text, expected) => {
    expect(parseTarget(text, NO_UIO)).toMatchObject(expected);
  });

  test.each([
    ['sim:toaster', /bad sim device/],
    ['sim:rng:3', /bad sim device/],
    ['/dev/uio7', /\/dev\/uio7 does not exist: bind the transports to UIO/],
    ['uio7', /\/dev\/uio7 does not exist/],
    ['4K@0x1001', /DiscoveryError|aligned/],
  ])('%s is refused with DiscoveryError and a reason', (text, reason) => {
    expect(() => parseTarget(text, NO_UIO)).toThrow(expect.objectContaining({ code: 'ERR_VIRTIO_DISCOVERY' }));
    try {
      parseTarget(text, NO_UIO);
    } catch (error) {
      expect(`${(error as Error).name} ${(error as Error).message}`).toMatch(reason);
    }
  });
});
