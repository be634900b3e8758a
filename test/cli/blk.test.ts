import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BLK_USAGE, blkCommand, runBlk, type BlkDependencies } from '../../lib/cli/blk';
import type { BenchResult } from '../../lib/cli/blk-bench';
import type { CliIo } from '../../lib/cli/cli-io';
import { UioSysfs } from '../../lib/platform';
import { BlkModel, type SimDeviceModel, type SimRequest } from '../../lib/sim';
import { BlkRequestType } from '../../lib/spec';
import { SIM_VARIANTS, simRig, type SimRig, type SimVariant } from '../support/sim-rig';

const NO_UIO = new UioSysfs('/nonexistent/sys/class/uio', '/nonexistent/dev');
const SECTOR = 512;

interface Ran {
  status: number;
  out: string;
  /** Raw bytes written to stdout (--out -). */
  raw: Buffer[];
  err: string;
}

function captureIo(isTTY = false): { io: CliIo; result: Omit<Ran, 'status'> } {
  const result = { out: '', raw: [] as Buffer[], err: '' };
  const io: CliIo = {
    stdout: {
      write: (t: string | Uint8Array) => (typeof t === 'string' ? (result.out += t) : result.raw.push(Buffer.from(t))),
    },
    stderr: { write: (t: string) => (result.err += t) },
    sysfs: NO_UIO,
    isTTY,
  };
  return { io, result };
}

/** The command as main.ts runs it: a fresh sim device per call. */
async function blk(args: string[], options: { isTTY?: boolean } = {}): Promise<Ran> {
  const { io, result } = captureIo(options.isTTY);
  const status = await blkCommand(args, io);
  return { status, ...result };
}

/** A sim of our own (to look at its model and counters) opened through the command's injection point. */
interface Injected {
  deps: BlkDependencies;
  opened: number;
  closed: number;
  violations: unknown[];
  rig?: SimRig;
}

function injected(variant: SimVariant, model: SimDeviceModel, now?: () => number): Injected {
  const state: Injected = {
    opened: 0,
    closed: 0,
    violations: [],
    deps: {
      open: () => {
        state.opened++;
        const rig = simRig(variant, model);
        state.rig = rig;
        return {
          where: 'test-rig',
          transport: rig.transport,
          memory: rig.pool,
          close() {
            state.closed++;
            state.violations.push(...rig.close());
          },
        };
      },
      ...(now ? { now } : {}),
    },
  };
  return state;
}

async function onRig(state: Injected, args: string[], options: { isTTY?: boolean } = {}): Promise<Ran> {
  const { io, result } = captureIo(options.isTTY);
  const status = await runBlk(['sim:blk', ...args], io, state.deps);
  return { status, ...result };
}

/** Expected hex dump lines of `bytes` at device byte offset `base`, formatted here independently of the command. */
function dumpLines(bytes: Uint8Array, base: number): string[] {
  const lines: string[] = [];
  for (let at = 0; at < bytes.length; at += 16) {
    const row = [...bytes.subarray(at, at + 16)];
    // A short last row keeps the columns: missing bytes are two spaces each.
    const hex = Array.from({ length: 16 }, (_, i) => (i < row.length ? row[i].toString(16).padStart(2, '0') : '  '));
    const ascii = row.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : '.')).join('');
    lines.push(
      `${(base + at).toString(16).padStart(8, '0')}  ${hex.slice(0, 8).join(' ')}  ` +
        `${hex.slice(8).join(' ')}  |${ascii}|`,
    );
  }
  return lines;
}

/** A disk of pseudo-random bytes (a fixed LCG): no two sectors, nor two 1 MiB parts, alike. */
function patternedDisk(bytes: number): Uint8Array {
  const disk = new Uint8Array(bytes);
  let x = 12345;
  for (let i = 0; i < bytes; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    disk[i] = x >>> 24;
  }
  return disk;
}

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), 'virtio-mmio-blk-cli-'));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const DEVICES: readonly (readonly [string, SimVariant])[] = SIM_VARIANTS.map(
  ([, variant]) => [variant === 2 ? 'sim:blk' : `sim:blk:${variant}`, variant] as const,
);

describe.each(DEVICES)('virtio-mmio blk on %s', (device, variant) => {
  // The sim's BlkModel starts as 1 MiB of zeroes (lib/sim/blk-model.ts).
  const initial = new BlkModel().disk;

  test('write --pattern --verify --flush --json: exit 0, the JSON says verified and flushed', async () => {
    const r = await blk([device, 'write', '8', '--pattern', '0xa5', '--sectors', '4', '--verify', '--flush', '--json']);
    expect({ status: r.status, err: r.err }).toEqual({ status: 0, err: '' });
    expect(JSON.parse(r.out)).toMatchObject({
      where: device,
      sector: '8',
      bytes: 4 * SECTOR,
      verified: true,
      flushed: true,
    });
  });

  test('read prints a hex dump of the sectors asked, as the model holds them', async () => {
    const r = await blk([device, 'read', '3', '--sectors', '2']);
    expect({ status: r.status, err: r.err }).toEqual({ status: 0, err: '' });
    expect(r.out.split('\n')).toEqual([...dumpLines(initial.subarray(3 * SECTOR, 5 * SECTOR), 3 * SECTOR), '']);
  });

  test('read --bytes N shows exactly N bytes, also when N is not a whole number of sectors', async () => {
    const r = await blk([device, 'read', '1', '--bytes', '100']);
    expect({ status: r.status, err: r.err }).toEqual({ status: 0, err: '' });
    expect(r.out.split('\n')).toEqual([...dumpLines(initial.subarray(SECTOR, SECTOR + 100), SECTOR), '']);
    const json = await blk([device, 'read', '1', '--bytes', '700', '--json']);
    expect(JSON.parse(json.out)).toMatchObject({
      bytes: 700,
      hex: Buffer.from(initial.subarray(SECTOR, SECTOR + 700)).toString('hex'),
    });
  });

  test('read --json gives the bytes in hex', async () => {
    const r = await blk([device, 'read', '0', '--bytes', '1024', '--json']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({
      sector: '0',
      bytes: 1024,
      hex: Buffer.from(initial.subarray(0, 1024)).toString('hex'),
    });
  });

  test('read --out FILE writes the bytes, byte for byte', async () => {
    const file = join(tmp, `read-${variant}.bin`);
    const r = await blk([device, 'read', '2040', '--sectors', '8', '--out', file]);
    expect({ status: r.status, err: r.err }).toEqual({ status: 0, err: '' });
    expect(readFileSync(file)).toEqual(Buffer.from(initial.subarray(2040 * SECTOR, 2048 * SECTOR)));
    expect(r.out).toContain(`written to ${file}`);
  });

  test("info --json: the model's capacity, its ID string, the ring in use", async () => {
    const r = await blk([device, 'info', '--json']);
    expect({ status: r.status, err: r.err }).toEqual({ status: 0, err: '' });
    const info = JSON.parse(r.out);
    expect(BigInt(info.capacity)).toBe(BigInt(initial.length / SECTOR));
    expect(BigInt(info.bytes)).toBe(BigInt(initial.length));
    expect(info).toMatchObject({
      blockSize: 512,
      readOnly: false,
      queues: 1,
      flush: true,
      id: 'sim-blk',
      ring: variant === 'packed' ? 'packed' : 'split',
    });
    expect(info.features).toContain('VIRTIO_BLK_F_FLUSH');
    expect(info.features.includes('VIRTIO_F_VERSION_1')).toBe(variant !== 1);
  });

  test('bench --seconds 0.3 --depth 4 --json: requests, IOPS and latencies that agree with each other', async () => {
    const r = await blk([device, 'bench', '--seconds', '0.3', '--depth', '4', '--json']);
    expect({ status: r.status, err: r.err }).toEqual({ status: 0, err: '' });
    const b = JSON.parse(r.out) as BenchResult;
    expect(b).toMatchObject({
      where: device,
      depth: 4,
      size: 4096,
      write: false,
      mode: 'interrupt',
      ring: variant === 'packed' ? 'packed' : 'split',
    });
    expect(b.requests).toBeGreaterThan(0);
    expect(b.seconds).toBeGreaterThanOrEqual(0.3);
    // What the printed rounding allows: IOPS to 0.1 and MB/s to 0.01, and seconds to 1 µs (which moves a rate by rate ×
    // 0.5 µs / seconds).
    const slack = (rate: number, half: number): number => half + (rate * 5e-7) / b.seconds + 1e-9;
    expect(Math.abs(b.iops - b.requests / b.seconds)).toBeLessThanOrEqual(slack(b.requests / b.seconds, 0.05));
    expect(Math.abs(b.mbPerSecond - (b.requests * 4096) / b.seconds / 1e6)).toBeLessThanOrEqual(
      slack((b.requests * 4096) / b.seconds / 1e6, 0.005),
    );
    expect(b.p50Us!).toBeGreaterThan(0);
    expect(b.p50Us!).toBeLessThanOrEqual(b.p99Us!);
    expect(b.notificationsPerRequest!).toBeGreaterThan(0);
  });

  test('bench: the sim counts exactly the requests the bench reports (warm-up included)', async () => {
    const model = new BlkModel();
    const state = injected(variant, model);
    const r = await onRig(state, ['bench', '--seconds', '0.3', '--depth', '4', '--json']);
    expect({ status: r.status, err: r.err }).toEqual({ status: 0, err: '' });
    const b = JSON.parse(r.out) as BenchResult;
    expect(b.requests).toBeGreaterThan(0);
    expect(state.rig!.sim.stats.requests).toBe(b.warmupRequests + b.requests);
    expect(model.stats.byType[BlkRequestType.IN]).toBe(b.warmupRequests + b.requests);
    expect(model.stats.byType[BlkRequestType.OUT]).toBeUndefined();
    expect(model.disk.every((byte) => byte === 0)).toBe(true);
    expect(state.violations).toEqual([]);
    expect(state.closed).toBe(1);
  });

  test('bench --write writes: the device has changed and the sim counted the writes', async () => {
    const model = new BlkModel();
    const state = injected(variant, model);
    const r = await onRig(state, ['bench', '--seconds', '0.2', '--depth', '2', '--size', '1024', '--write', '--json']);
    expect({ status: r.status, err: r.err }).toEqual({ status: 0, err: '' });
    const b = JSON.parse(r.out) as BenchResult;
    expect(b).toMatchObject({ write: true, size: 1024 });
    expect(model.stats.byType[BlkRequestType.OUT]).toBe(b.warmupRequests + b.requests);
    expect(model.stats.byType[BlkRequestType.IN]).toBeUndefined();
    expect(model.disk.some((byte) => byte !== 0)).toBe(true);
    expect(state.violations).toEqual([]);
  });
});

describe('blk read on a disk with contents', () => {
  test.each(SIM_VARIANTS)("%s: hex dump, --json and --out FILE / - give the disk's bytes", async (_label, variant) => {
    const disk = patternedDisk(64 * 1024);
    const expected = Buffer.from(disk.subarray(5 * SECTOR, 8 * SECTOR));
    const state = injected(variant, new BlkModel({ disk }));

    const dump = await onRig(state, ['read', '5', '--sectors', '3']);
    expect(dump.status).toBe(0);
    expect(dump.out.split('\n')).toEqual([...dumpLines(expected, 5 * SECTOR), '']);

    const file = join(tmp, `patterned-${variant}.bin`);
    const toFile = await onRig(state, ['read', '5', '--bytes', String(3 * SECTOR), '--out', file, '--json']);
    expect(toFile.status).toBe(0);
    expect(readFileSync(file)).toEqual(expected);
    expect(JSON.parse(toFile.out)).toMatchObject({ bytes: 3 * SECTOR, out: file });

    const raw = await onRig(state, ['read', '5', '--sectors', '3', '--out', '-']);
    expect({ status: raw.status, out: raw.out }).toEqual({ status: 0, out: '' });
    expect(Buffer.concat(raw.raw)).toEqual(expected);
    expect(state.violations).toEqual([]);
    expect(state.closed).toBe(3);
  });

  test('a large read goes in parts and still comes back whole', async () => {
    const disk = patternedDisk(5 * 1024 * 1024);
    const state = injected(2, new BlkModel({ disk }));
    const file = join(tmp, 'large.bin');
    const r = await onRig(state, ['read', '1', '--bytes', String(4 * 1024 * 1024 + SECTOR), '--out', file]);
    expect({ status: r.status, err: r.err }).toEqual({ status: 0, err: '' });
    expect(readFileSync(file).equals(Buffer.from(disk.subarray(SECTOR, SECTOR + 4 * 1024 * 1024 + SECTOR)))).toBe(true);
    expect(state.violations).toEqual([]);
  });
});

describe('blk write', () => {
  test("--in FILE writes the file's bytes where asked", async () => {
    const model = new BlkModel();
    const state = injected(2, model);
    const data = Buffer.from(patternedDisk(3 * SECTOR).map((b) => b ^ 0x5a));
    const file = join(tmp, 'in.bin');
    writeFileSync(file, data);
    const r = await onRig(state, ['write', '10', '--in', file, '--verify']);
    expect({ status: r.status, err: r.err }).toEqual({ status: 0, err: '' });
    expect(Buffer.from(model.disk.subarray(10 * SECTOR, 13 * SECTOR))).toEqual(data);
    expect(model.disk.subarray(0, 10 * SECTOR).every((b) => b === 0)).toBe(true);
    expect(model.disk.subarray(13 * SECTOR).every((b) => b === 0)).toBe(true);
    expect(r.out).toContain('verified');
  });

  test('--in FILE not whole sectors: exit 2; a missing file: exit 1; the device not opened either way', async () => {
    const state = injected(2, new BlkModel());
    const file = join(tmp, 'odd.bin');
    writeFileSync(file, Buffer.alloc(700));
    const odd = await onRig(state, ['write', '0', '--in', file]);
    expect(odd.status).toBe(2);
    expect(odd.err).toContain(`--in ${file}: its size must be a non-zero multiple of 512 bytes up to 1 GiB, it is 700`);
    const missing = await onRig(state, ['write', '0', '--in', join(tmp, 'absent.bin')]);
    expect(missing.status).toBe(1);
    expect(missing.err).toMatch(/^virtio-mmio blk write: ENOENT: no such file or directory, open '.*absent\.bin'\n$/);
    expect(state.opened).toBe(0);
  });

  test('--pattern random --bytes N writes N bytes, not all alike', async () => {
    const model = new BlkModel();
    const state = injected('packed', model);
    const r = await onRig(state, ['write', '0', '--pattern', 'random', '--bytes', '2048', '--verify', '--json']);
    expect(r.status).toBe(0);
    expect(JSON.parse(r.out)).toMatchObject({ bytes: 2048, verified: true });
    expect(new Set(model.disk.subarray(0, 2048)).size).toBeGreaterThan(16);
    expect(model.disk.subarray(2048).every((b) => b === 0)).toBe(true);
  });

  test('--verify finds a device that loses a byte: exit 1, the first differing offset', async () => {
    // A disk that zeroes byte 700 of sector 4 after every request: the write seems to work, the read-back shows it did
    // not.
    const inner = new BlkModel();
    const lossy: SimDeviceModel = {
      deviceId: inner.deviceId,
      features: inner.features,
      queueSizes: inner.queueSizes,
      config: inner.config,
      configFields: inner.configFields,
      handle(request: SimRequest) {
        const len = inner.handle(request) as number;
        inner.disk[4 * SECTOR + 700] = 0;
        return len;
      },
    };
    const state = injected(2, lossy);
    const r = await onRig(state, ['write', '4', '--pattern', '0x5a', '--sectors', '2', '--verify', '--json']);
    expect(r.status).toBe(1);
    expect(JSON.parse(r.out)).toMatchObject({
      verified: false,
      mismatch: { offset: 700, deviceOffset: String(4 * SECTOR + 700), wrote: 0x5a, read: 0 },
    });
    expect(r.err).toContain('virtio-mmio blk write: ERR_VIRTIO_VERIFY: verify failed: first difference at byte 700');
    expect(state.closed).toBe(1);
  });

  test('--flush on a device without VIRTIO_BLK_F_FLUSH: no FLUSH sent, a note says so', async () => {
    const model = new BlkModel({ flush: false });
    const state = injected(2, model);
    const r = await onRig(state, ['write', '0', '--pattern', '1', '--flush', '--json']);
    expect(r.status).toBe(0);
    const result = JSON.parse(r.out);
    expect(result.flushed).toBe(false);
    expect(result.notes.join(' ')).toContain('VIRTIO_BLK_F_FLUSH');
    expect(model.stats.byType[BlkRequestType.FLUSH]).toBeUndefined();

    const flushing = new BlkModel();
    const r2 = await onRig(injected(2, flushing), ['write', '0', '--pattern', '1', '--flush']);
    expect(r2.status).toBe(0);
    expect(r2.out).toContain('flushed');
    expect(flushing.stats.flushes).toBe(1);
  });

  test.each([
    ['write', ['write', '0', '--pattern', '1']],
    ['bench --write', ['bench', '--seconds', '0.1', '--write']],
  ])('%s on a read-only device: a typed error before anything is sent', async (_what, args) => {
    const model = new BlkModel({ readOnly: true });
    const state = injected(2, model);
    const r = await onRig(state, args);
    expect(r.status).toBe(1);
    expect(r.err).toMatch(/: ERR_VIRTIO_READ_ONLY: .*read-only/);
    expect(model.stats.requests).toBe(0);
    expect(state.closed).toBe(1);
  });
});

describe('blk errors', () => {
  const usageCases: [string, string[], RegExp][] = [
    ['no action', ['sim:blk'], /needs a device and an action/],
    ['an unknown action', ['sim:blk', 'frob'], /unknown blk action 'frob'/],
    ['no sector', ['sim:blk', 'read'], /takes one sector number/],
    ['a sector that is not a number', ['sim:blk', 'read', 'x1'], /sector must be a non-negative integer/],
    ['--bytes and --sectors', ['sim:blk', 'read', '0', '--bytes', '512', '--sectors', '1'], /not both/],
    ['--json with --out -', ['sim:blk', 'read', '0', '--out', '-', '--json'], /both write to stdout/],
    ['an option of another action', ['sim:blk', 'info', '--bytes', '512'], /does not take --bytes/],
    ['an unknown option', ['sim:blk', 'read', '0', '--frob'], /frob/],
    ['write without data', ['sim:blk', 'write', '0'], /--in FILE or --pattern/],
    [
      'a pattern byte above 255',
      ['sim:blk', 'write', '0', '--pattern', '256'],
      /--pattern must be an integer in \[0, 255\]/,
    ],
    [
      'write bytes not a multiple of 512',
      ['sim:blk', 'write', '0', '--pattern', '1', '--bytes', '513'],
      /multiple of 512/,
    ],
    ['depth 0', ['sim:blk', 'bench', '--depth', '0'], /--depth must be an integer in \[1, 1024\]/],
    ['depth 1025', ['sim:blk', 'bench', '--depth', '1025'], /--depth must be an integer in \[1, 1024\]/],
    ['seconds 0', ['sim:blk', 'bench', '--seconds', '0'], /--seconds must be/],
    ['seconds above 3600', ['sim:blk', 'bench', '--seconds', '3600.5'], /--seconds must be/],
    ['seconds not a number', ['sim:blk', 'bench', '--seconds', 'soon'], /--seconds must be/],
    ['a bench size not a multiple of 512', ['sim:blk', 'bench', '--size', '1000'], /--size must be a multiple of 512/],
    ['an unknown mode', ['sim:blk', 'bench', '--mode', 'spin'], /--mode must be interrupt, poll or hybrid/],
  ];

  test.each(usageCases)('%s: exit 2 with the usage text, the device not opened', async (_what, args, message) => {
    const state = injected(2, new BlkModel());
    const { io, result } = captureIo();
    const status = await runBlk(args, io, state.deps);
    expect(status).toBe(2);
    expect(result.err).toMatch(message);
    expect(result.err).toContain(BLK_USAGE);
    // With --json the failure is also a JSON object on stdout.
    const jsonAndOut = '--json and --out - would both write to stdout';
    expect(result.out).toBe(
      args.includes('--json')
        ? `${JSON.stringify({ error: { code: 'ERR_VIRTIO_USAGE', message: jsonAndOut } })}\n`
        : '',
    );
    expect(state.opened).toBe(0);
  });

  test('a read past the end: exit 1, the error named on stderr, nothing sent', async () => {
    const model = new BlkModel();
    const state = injected(2, model);
    const r = await onRig(state, ['read', '2047', '--sectors', '2']);
    expect(r.status).toBe(1);
    expect(r.err).toBe(
      "virtio-mmio blk read: ERR_OUT_OF_RANGE: sectors 2047..2049 are beyond the device's capacity of 2048 sectors\n",
    );
    expect(r.out).toBe('');
    expect(model.stats.requests).toBe(0);
    expect(state.closed).toBe(1);
    // Through blkCommand too (the path main.ts takes).
    const direct = await blk(['sim:blk:1', 'read', '2048']);
    expect(direct.status).toBe(1);
    expect(direct.err).toContain('beyond the device');
  });

  test('a large write that runs past the end is refused whole: no part of it is written', async () => {
    const model = new BlkModel({ disk: new Uint8Array(2 << 20) });
    const state = injected(2, model);
    const r = await onRig(state, ['write', '1', '--pattern', '9', '--bytes', String(2 << 20)]);
    expect(r.status).toBe(1);
    expect(r.err).toContain("ERR_OUT_OF_RANGE: sectors 1..4097 are beyond the device's capacity of 4096 sectors");
    expect(model.stats.requests).toBe(0);
    expect(model.disk.every((b) => b === 0)).toBe(true);
  });

  test("a device I/O error midway through a large write: exit 1 with the library's code, all closed", async () => {
    const failSectors = new Set([2.5 * 2048]);
    const state = injected(2, new BlkModel({ disk: new Uint8Array(4 << 20), failSectors }));
    const r = await onRig(state, ['write', '0', '--pattern', '7', '--bytes', String(3 << 20), '--progress']);
    expect(r.status).toBe(1);
    expect(r.err).toMatch(/virtio-mmio blk write: ERR_VIRTIO_IO: .*an I\/O error\n$/);
    // The bar stops where the write stopped, and ends its line before the message.
    // (Redrawn once or more, as fast as the write went: a loaded machine draws more often.)
    expect(r.err).toMatch(/^(\rwrite \[[# ]+\] +\d+ % [^\r\n]*)+\nvirtio-mmio blk write: /);
    expect(r.err).not.toContain('100 %');
    expect(r.out).toBe('');
    expect(state.closed).toBe(1);
    expect(state.violations).toEqual([]);
  });

  test('a device name that is not one: exit 2, a usage error', async () => {
    const r = await blk(['sim:frob', 'info']);
    expect(r.status).toBe(2);
    expect(r.err).toMatch(/^virtio-mmio blk info: ERR_VIRTIO_USAGE: bad sim device 'sim:frob'/);
  });

  test('info on a device that is not a block device: exit 1, typed', async () => {
    const r = await blk(['sim:rng', 'info']);
    expect(r.status).toBe(1);
    expect(r.err).toMatch(/^virtio-mmio blk info: ERR_VIRTIO_WRONG_DEVICE: sim:rng: this driver is for BLOCK/);
  });
});

describe('blk progress bar', () => {
  /** A clock that moves 40 ms each time it is read. */
  const steppingClock = (): (() => number) => {
    let t = 0;
    return () => (t += 40);
  };
  const FOUR_MIB = String(4 << 20);

  test('--progress on a read of a few MiB: \\r redraws on stderr, the last at 100 %, then a newline', async () => {
    const state = injected(2, new BlkModel({ disk: new Uint8Array(5 << 20) }), steppingClock());
    const r = await onRig(state, ['read', '0', '--bytes', FOUR_MIB, '--out', join(tmp, 'progress.bin'), '--progress']);
    expect(r.status).toBe(0);
    const draws = r.err.split('\r').slice(1);
    expect(draws.length).toBeGreaterThanOrEqual(2);
    expect(r.err.startsWith('\r')).toBe(true);
    expect(r.err.endsWith('\n')).toBe(true);
    expect(r.err.indexOf('\n')).toBe(r.err.length - 1);
    expect(draws[draws.length - 1]).toMatch(
      /^read \[#{30}\] 100 % {2}4\.0 MiB \/ 4\.0 MiB {2}[\d.]+ (?:KiB|MiB|GiB)\/s *\n$/,
    );
    expect(draws[0]).not.toContain('100 %');
    // stdout has only the summary line.
    expect(r.out).not.toContain('\r');
  });

  test('without a terminal and without --progress there is no bar', async () => {
    const state = injected(2, new BlkModel({ disk: new Uint8Array(5 << 20) }), steppingClock());
    const r = await onRig(state, ['read', '0', '--bytes', FOUR_MIB, '--out', join(tmp, 'quiet.bin')]);
    expect({ status: r.status, err: r.err }).toEqual({ status: 0, err: '' });
  });

  test('on a terminal: a bar for a long read, none for a short one, none with --json', async () => {
    const disk = new Uint8Array(5 << 20);
    const long = await onRig(
      injected(2, new BlkModel({ disk }), steppingClock()),
      ['read', '0', '--bytes', FOUR_MIB, '--out', join(tmp, 'tty.bin')],
      { isTTY: true },
    );
    expect(long.err).toContain('100 %');
    const short = await onRig(
      injected(2, new BlkModel({ disk }), steppingClock()),
      ['read', '0', '--out', join(tmp, 'tty-short.bin')],
      { isTTY: true },
    );
    expect(short.err).toBe('');
    const json = await onRig(
      injected(2, new BlkModel({ disk }), steppingClock()),
      ['read', '0', '--bytes', FOUR_MIB, '--out', join(tmp, 'tty-json.bin'), '--json'],
      { isTTY: true },
    );
    expect(json.err).toBe('');
    expect(JSON.parse(json.out).bytes).toBe(4 << 20);
  });

  test('bench draws a bar of seconds on a terminal, every time', async () => {
    const r = await onRig(injected(2, new BlkModel()), ['bench', '--seconds', '0.25', '--warmup', '0'], {
      isTTY: true,
    });
    expect(r.status).toBe(0);
    expect(r.err).toMatch(/^\rbench read \[/);
    expect(r.err).toMatch(/100 % {2}0\.3 s \/ 0\.3 s *\n$/);
    expect(r.out.split('\n')).toEqual([
      expect.stringMatching(/^test-rig: random reads of 4096 bytes, depth 1, interrupt mode, split ring$/),
      expect.stringMatching(/^requests \d+ in [\d.]+ s \(after 0 warm-up requests\)$/),
      expect.stringMatching(/^IOPS [\d.]+, [\d.]+ MB\/s$/),
      expect.stringMatching(/^latency µs: mean [\d.]+, p50 [\d.]+, p99 [\d.]+$/),
      expect.stringMatching(/^per request: [\d.]+ notifications, [\d.]+ interrupts, 0 polled completions$/),
      '',
    ]);
  });
});
