import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

import { UioSysfs } from '../../lib/platform';
import { native } from '../../lib/platform/addon';
import { commandHelp, packageVersion, runCli, USAGE } from '../../lib/cli/main';
import { parseTarget } from '../../lib/cli/targets';
import type { ScanEntry } from '../../lib/cli/scan';

/** A sysfs with no UIO class at all (the host running the tests has none bound). */
const NO_UIO = new UioSysfs('/nonexistent/sys/class/uio', '/nonexistent/dev');

async function cli(...argv: string[]): Promise<{ status: number; out: string; err: string }> {
  return cliWith(NO_UIO, ...argv);
}

async function cliWith(sysfs: UioSysfs, ...argv: string[]): Promise<{ status: number; out: string; err: string }> {
  return cliOn({ sysfs, cmdline: '' }, ...argv);
}

/** The CLI with a sysfs and a kernel command line of the test's own (never the host's /proc/cmdline). */
async function cliOn(
  env: { sysfs: UioSysfs; cmdline: string },
  ...argv: string[]
): Promise<{ status: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const status = await runCli(argv, {
    stdout: { write: (t: string) => (out += t) },
    stderr: { write: (t: string) => (err += t) },
    ...env,
  });
  return { status, out, err };
}

describe('virtio-mmio scan', () => {
  test('--json lists each transport with version, device, vendor and status', async () => {
    const { status, out, err } = await cli(
      'scan',
      '--sim',
      'rng',
      '--sim',
      'blk:1',
      '--sim',
      'sim:net:packed',
      '--sim',
      'empty',
      '--json',
    );
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

  // Windows the kernel refuses to map whatever the host (the offset is negative as an off_t), so no real memory is
  // read.
  const FAR = ['0x200@0xfffffffffffff000:5', '0x200@0xffffffffffffe000:6:1'];

  test("lists the kernel command line's virtio_mmio.device= entries, each through its /dev/mem window", async () => {
    const cmdline =
      `console=ttyS0 virtio_mmio.device=${FAR[0]} root=/dev/vda virtio_mmio.device=${FAR[1]} -- ` +
      `virtio_mmio.device=0x200@0x1000:7`;
    const { status, out } = await cliOn({ sysfs: NO_UIO, cmdline }, 'scan', '--json', '--sim', 'rng');
    const entries = JSON.parse(out) as ScanEntry[];
    expect(entries.map((e) => [e.where, e.kind])).toEqual([
      [FAR[0], 'physical'],
      [FAR[1], 'physical'],
      ['sim:rng', 'sim'],
    ]);
    // The windows cannot be opened here: reported per entry, exit 1.
    expect(entries[0].error?.code).toMatch(/^E[A-Z]+$/);
    expect(status).toBe(1);
  });

  test('a window also given with --device is listed once; --no-cmdline leaves the command line out', async () => {
    const cmdline = `virtio_mmio.device=${FAR[0]} virtio_mmio.device=${FAR[1]}`;
    const both = JSON.parse(
      (await cliOn({ sysfs: NO_UIO, cmdline }, 'scan', '--json', '--device', '0x200@0xfffffffffffff000')).out,
    ) as ScanEntry[];
    expect(both.map((e) => e.where)).toEqual([FAR[1], '0x200@0xfffffffffffff000']);
    const none = await cliOn({ sysfs: NO_UIO, cmdline }, 'scan', '--json', '--no-cmdline', '--sim', 'rng');
    expect((JSON.parse(none.out) as ScanEntry[]).map((e) => e.where)).toEqual(['sim:rng']);
    expect(none.status).toBe(0);
  });

  test('a malformed command-line entry is one failed entry naming it, the other devices still listed', async () => {
    const { status, out } = await cliOn(
      { sysfs: NO_UIO, cmdline: 'virtio_mmio.device=0x200@0x1001:5' },
      'scan',
      '--json',
      '--sim',
      'rng',
    );
    const entries = JSON.parse(out) as ScanEntry[];
    expect(entries.map((e) => e.where)).toEqual(['sim:rng', 'kernel command line']);
    expect(entries[1].error).toEqual({
      code: 'ERR_VIRTIO_DISCOVERY',
      message: expect.stringMatching(/entry 1: .*not 4-byte aligned/),
    });
    expect(status).toBe(1);
  });

  test('with nothing to scan it says how to bind transports to UIO', async () => {
    const { status, out } = await cli('scan');
    expect(status).toBe(0);
    expect(out).toContain('0 virtio-mmio transports');
    expect(out).toContain('uio_pdrv_genirq of_id=virtio,mmio');
  });
});

describe('virtio-mmio inspect', () => {
  test.each(['sim:blk:1', 'sim:blk', 'sim:blk:packed'])(
    '%s --json: identity, features by name, config and queues, device left as it was',
    async (device) => {
      const { status, out, err } = await cli('inspect', device, '--json');
      expect({ status, err }).toEqual({ status: 0, err: '' });
      const report = JSON.parse(out);
      expect(JSON.stringify(report)).toContain('VIRTIO_BLK_F_FLUSH');
      expect(JSON.stringify(report)).toContain('"capacity"');
      expect(report.problem).toBeUndefined();
      expect(report.writes.every((w: string) => /Sel/.test(w))).toBe(true);
    },
  );

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
    const cells = (...values: number[]): Buffer =>
      Buffer.concat(values.map((v) => Buffer.from([v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff])));
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
    fs.symlinkSync(
      path.relative(path.join(root, 'sys', 'class', 'uio'), uio),
      path.join(root, 'sys', 'class', 'uio', 'uio0'),
    );
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
    expect(JSON.parse(out)).toEqual([
      expect.objectContaining({ kind: 'uio', device: 'ENTROPY', window: '0x200', windowFrom: 'device-tree' }),
    ]);
  });

  test("inspect says the window is the device tree's 0x200 bytes, not the page", async () => {
    const { out } = await cliWith(sysfs, 'inspect', 'uio0');
    expect(out.split('\n')[0]).toBe(
      `${path.join(root, 'dev', 'uio0')}@0x0: window of 0x200 bytes (device-tree reg), MagicValue 0x74726976 ` +
        `("virt"), Version 2`,
    );
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
    expect(err).toBe(
      'virtio-mmio rng: ERR_VIRTIO_WRONG_DEVICE: sim:blk: this driver is for ENTROPY (4), the device is BLOCK (2)\n',
    );
  });
});

describe('usage', () => {
  test.each([
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['scan', '--bogus'], /scan has no option --bogus/],
    [['rng'], /rng takes one device, got 0/],
    [['rng', 'sim:rng', '--bytes', '0'], /--bytes must be an integer/],
  ])("%j: exit 2 with the reason and the usage (the command's own, when there is a command)", async (argv, reason) => {
    const { status, err } = await cli(...argv);
    expect(status).toBe(2);
    expect(err).toMatch(reason);
    expect(err).toContain(commandHelp(argv[0]) ?? USAGE);
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
    ['sim:toaster', 'ERR_VIRTIO_USAGE', /bad sim device/],
    ['sim:rng:3', 'ERR_VIRTIO_USAGE', /bad sim device/],
    ['banana', 'ERR_VIRTIO_USAGE', /'banana' is not a device name; a device is \/dev\/uioN/],
    ['/dev/null', 'ERR_VIRTIO_USAGE', /'\/dev\/null' is not a device name/],
    ['4K@0x1001', 'ERR_VIRTIO_USAGE', /UsageError .*not 4-byte aligned/],
    ['/dev/uio7', 'ERR_VIRTIO_DISCOVERY', /\/dev\/uio7 does not exist: bind the transports to UIO/],
    ['uio7', 'ERR_VIRTIO_DISCOVERY', /\/dev\/uio7 does not exist/],
  ])('%s is refused with %s and a reason', (text, code, reason) => {
    expect(() => parseTarget(text, NO_UIO)).toThrow(expect.objectContaining({ code }));
    try {
      parseTarget(text, NO_UIO);
    } catch (error) {
      expect(`${(error as Error).name} ${(error as Error).message}`).toMatch(reason);
    }
  });
});

describe('--version and --help', () => {
  test('--version prints the package version, exit 0', async () => {
    const version = JSON.parse(fs.readFileSync(path.join(__dirname, '../../package.json'), 'utf8')).version as string;
    expect(packageVersion()).toBe(version);
    expect(await cli('--version')).toEqual({ status: 0, out: `virtio-mmio ${version}\n`, err: '' });
  });

  const commands = ['scan', 'inspect', 'rng', 'blk', 'dump', 'selftest', 'queue'];
  test.each(commands)(
    '%s --help, "help <command>" and --help after other arguments: that command\'s help on stdout, exit 0',
    async (command) => {
      const help = commandHelp(command)!;
      expect(help).toMatch(new RegExp(`^usage: virtio-mmio ${command} `));
      expect(help).toContain('exit status: 0 ok, 1 the device or the operation failed, 2 bad usage');
      // Every option of the command's synopsis in USAGE is in its help.
      const synopsis = USAGE.split('\n').find((l) => l.startsWith(`  ${command} `))!;
      for (const option of synopsis.match(/--[a-z-]+/g) ?? []) expect(help).toContain(option);
      expect(await cli(command, '--help')).toEqual({ status: 0, out: help, err: '' });
      expect(await cli('help', command)).toEqual({ status: 0, out: help, err: '' });
      expect(await cli(command, 'sim:rng', '--bogus', '-h')).toEqual({ status: 0, out: help, err: '' });
    },
  );

  test.each([
    [['scan', '--bogus'], 'scan has no option --bogus (virtio-mmio scan --help lists the options)'],
    [['scan', 'sim:rng'], "scan takes no arguments besides its options, got 'sim:rng'"],
    [['rng', 'sim:rng', '--bytes'], '--bytes needs a value'],
    [['rng', 'sim:rng', '--json=yes'], '--json takes no value'],
    [
      ['queue', 'sim:rng', '--queue', '0', '--out', '-1'],
      "--out needs a value; write --out=VALUE for a value that starts with '-'",
    ],
  ])("%j: Node's parseArgs refusal in our words, exit 2", async (argv, message) => {
    const { status, err } = await cli(...argv);
    expect(status).toBe(2);
    expect(err.split('\n')[0]).toBe(`virtio-mmio ${argv[0]}: ERR_VIRTIO_USAGE: ${message}`);
    expect(err).not.toMatch(/Unknown option|Unexpected argument|argument missing|does not take an argument|To specify/);
  });
});

describe('exit status 2 for a device name that does not parse, 1 for a device that is not there', () => {
  test.each([
    ['rng', 'banana', []],
    ['inspect', 'sim:foo', []],
    ['selftest', '/dev/null', []],
    ['dump', 'banana', ['--queue', '0']],
    ['blk', 'sim:foo', ['info']],
    ['queue', '/dev/null', ['--queue', '0', '--in', '8']],
  ])('%s %s: exit 2, ERR_VIRTIO_USAGE', async (command, device, more) => {
    const { status, out, err } = await cli(command, device, ...(more as string[]));
    expect(status).toBe(2);
    expect(out).toBe('');
    expect(err).toMatch(
      new RegExp(`^virtio-mmio ${command}( info)?: ERR_VIRTIO_USAGE: .*${device.replace(/[/]/g, '\\/')}`),
    );
  });

  test('scan --device banana: exit 2; rng /dev/uio7 (a name that parses, no such device): exit 1', async () => {
    expect((await cli('scan', '--device', 'banana')).status).toBe(2);
    const missing = await cli('rng', '/dev/uio7');
    expect(missing.status).toBe(1);
    expect(missing.err).toMatch(/^virtio-mmio rng: ERR_VIRTIO_DISCOVERY: \/dev\/uio7 does not exist/);
  });
});

describe('every failure: one line on stderr with its code; with --json, a JSON object on stdout', () => {
  test.each([
    [['rng', 'sim:blk'], 'rng', 'ERR_VIRTIO_WRONG_DEVICE'],
    [['blk', 'sim:rng', 'info'], 'blk info', 'ERR_VIRTIO_WRONG_DEVICE'],
    [['dump', 'sim:empty', '--queue', '0'], 'dump', 'ERR_VIRTIO_EMPTY_SLOT'],
    [['inspect', 'uio3'], 'inspect', 'ERR_VIRTIO_DISCOVERY'],
    [['queue', 'sim:rng', '--queue', '5', '--in', '8'], 'queue', 'ERR_VIRTIO_QUEUE_UNAVAILABLE'],
  ])('%j', async (argv, prefix, code) => {
    const plain = await cli(...argv);
    expect(plain.status).toBe(1);
    expect(plain.err).toMatch(new RegExp(`^virtio-mmio ${prefix}: ${code}: [^\n]+\n$`));
    const json = await cli(...argv, '--json');
    expect(json.status).toBe(1);
    expect(json.err).toBe(plain.err);
    expect(JSON.parse(json.out)).toEqual({
      error: { code, message: plain.err.slice(`virtio-mmio ${prefix}: ${code}: `.length, -1) },
    });
  });

  test('a usage error with --json: exit 2, the JSON object on stdout too', async () => {
    const { status, out, err } = await cli('selftest', 'banana', '--json');
    expect(status).toBe(2);
    expect(err).toMatch(/^virtio-mmio selftest: ERR_VIRTIO_USAGE: 'banana' is not a device name/);
    expect(JSON.parse(out)).toEqual({
      error: { code: 'ERR_VIRTIO_USAGE', message: expect.stringMatching(/^'banana' is not a device name/) },
    });
    expect(JSON.parse((await cli('frob', '--json')).out)).toEqual({
      error: { code: 'ERR_VIRTIO_USAGE', message: "unknown command 'frob'" },
    });
  });
});
