/**
 * armExitWrite: a register window that writes a value by itself when its
 * thread's environment tears down (native/exit_write.cc) — the reset of a
 * worker that is terminated, where no JavaScript runs. The windows here are
 * regular files, so the parent reads what the window wrote after the thread
 * (and the child process running it) is gone. Each case runs in a child
 * process that loads the addon directly.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

import { ClosedError } from '../../lib/errors';
import type { NativeMmioRegion } from '../../lib/platform/addon';
import { MmioWindow } from '../../lib/platform/mmio-window';

const addonPath = resolve(__dirname, '../../build/Release/virtio_mmio.node');
const STATUS = 0x70;
/** What the "device" holds before the end: anything but the armed value. */
const LIVE = 0x0f;

let dir: string;
let files = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'exit-write-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A one-page register file with LIVE in the Status word and in the word after it. */
function registerFile(): string {
  const file = join(dir, `regs${files++}`);
  const image = Buffer.alloc(4096);
  image.writeUInt32LE(LIVE, STATUS);
  image.writeUInt32LE(LIVE, STATUS + 4);
  writeFileSync(file, image);
  return file;
}
const wordIn = (file: string, offset = STATUS): number => readFileSync(file).readUInt32LE(offset);

interface Ended {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

function runChild(script: string, flags: readonly string[] = []): Ended {
  const child = spawnSync(process.execPath, [...flags, '-e', script], { encoding: 'utf8', timeout: 15_000 });
  return { status: child.status, signal: child.signal, stdout: child.stdout, stderr: child.stderr };
}

/** Opens `file` as a 0x200-byte window in the code that runs it. */
const open = (file: string): string =>
  `new (require(${JSON.stringify(addonPath)}).MmioRegion)(${JSON.stringify(file)}, 0, 0, 0x200, false)`;

/**
 * A child whose worker runs `setup` (with `open(file)` windows), tells the
 * main thread it is ready and then spins on a timer until `end` does
 * something to it: 'terminate' (worker.terminate()), 'main-exit' (the main
 * thread calls process.exit(0) with the worker still running), or 'return'
 * (the worker's code ends and so does the worker).
 */
function workerChild(setup: string, end: 'terminate' | 'main-exit' | 'return'): Ended {
  const worker = `
    ${setup}
    require('node:worker_threads').parentPort.postMessage('ready');
    ${end === 'return' ? '' : 'setInterval(() => {}, 1000);'}
  `;
  return runChild(`
    const { Worker } = require('node:worker_threads');
    const w = new Worker(${JSON.stringify(worker)}, { eval: true });
    w.on('error', (e) => process.stdout.write('worker error: ' + e.message + '\\n'));
    w.on('exit', (code) => process.stdout.write('worker exit ' + code + '\\n'));
    w.on('message', () => {
      ${end === 'terminate' ? 'w.terminate();' : end === 'main-exit' ? 'process.exit(0);' : ''}
    });
  `);
}

describe('armExitWrite at the teardown of a worker', () => {
  test('worker.terminate(): the armed value is written at the armed offset, and nothing else', () => {
    const file = registerFile();
    const child = workerChild(`const r = ${open(file)}; r.armExitWrite(${STATUS}, 0x5a);`, 'terminate');
    expect(child.stderr).toBe('');
    expect(child.stdout).toBe('worker exit 1\n');
    expect(wordIn(file)).toBe(0x5a);
    expect(wordIn(file, STATUS + 4)).toBe(LIVE);
  });

  test('a worker still running when the main thread calls process.exit() (Node terminates it)', () => {
    const file = registerFile();
    const child = workerChild(`const r = ${open(file)}; r.armExitWrite(${STATUS}, 0);`, 'main-exit');
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(wordIn(file)).toBe(0);
  });

  test('a worker that ends by itself', () => {
    const file = registerFile();
    const child = workerChild(`const r = ${open(file)}; r.armExitWrite(${STATUS}, 0);`, 'return');
    expect(child.stdout).toBe('worker exit 0\n');
    expect(wordIn(file)).toBe(0);
  });

  test('an unreachable armed window stays mapped and is still written', () => {
    const file = registerFile();
    const child = runChild(
      `
      const { Worker } = require('node:worker_threads');
      const w = new Worker(${JSON.stringify(`
        (() => { ${open(file)}.armExitWrite(${STATUS}, 0x77); })();
        for (let i = 0; i < 5; i++) global.gc();
        require('node:worker_threads').parentPort.postMessage('ready');
        setInterval(() => {}, 1000);
      `)}, { eval: true });
      w.on('message', () => w.terminate());
    `,
      ['--expose-gc'],
    );
    expect(child.stderr).toBe('');
    expect(wordIn(file)).toBe(0x77);
  });

  test('arming again replaces the write', () => {
    const file = registerFile();
    const child = workerChild(
      `const r = ${open(file)}; r.armExitWrite(${STATUS + 4}, 1); r.armExitWrite(${STATUS}, 2);`,
      'terminate',
    );
    expect(child.stdout).toBe('worker exit 1\n');
    expect([wordIn(file), wordIn(file, STATUS + 4)]).toEqual([2, LIVE]);
  });

  test('disarmed: untouched; armed again after disarm: written', () => {
    const [untouched, rearmed] = [registerFile(), registerFile()];
    const children = [
      workerChild(
        `const r = ${open(untouched)}; r.armExitWrite(${STATUS}, 0); r.disarmExitWrite(); r.disarmExitWrite();`,
        'terminate',
      ),
      workerChild(
        `const r = ${open(rearmed)}; r.armExitWrite(${STATUS}, 0); r.disarmExitWrite(); r.armExitWrite(${STATUS}, 3);`,
        'terminate',
      ),
    ];
    expect(children.map((c) => c.stdout)).toEqual(['worker exit 1\n', 'worker exit 1\n']);
    expect(wordIn(untouched)).toBe(LIVE);
    expect(wordIn(rearmed)).toBe(3);
  });

  test('a window closed while armed is not touched (another window of the file writes a marker after it)', () => {
    const file = registerFile();
    const child = workerChild(
      `const r = ${open(file)}; r.armExitWrite(${STATUS}, 0); r.close(); r.disarmExitWrite(); const m = ${open(file)}` +
        `; m.writel(${STATUS}, 0x40); m.close();`,
      'terminate',
    );
    expect(child.stderr).toBe('');
    expect(child.stdout).toBe('worker exit 1\n');
    expect(wordIn(file)).toBe(0x40);
  });

  test('1,000 arm/disarm cycles, 64 armed windows in a worker: each armed one written once, disarmed untouched', () => {
    const file = registerFile();
    const child = workerChild(
      `
      const r = ${open(file)};
      for (let i = 0; i < 1000; i++) { r.armExitWrite(${STATUS + 4}, i); r.disarmExitWrite(); }
      const many = Array.from({ length: 64 }, (_, i) => {
        const w = ${open(file)};
        w.armExitWrite(0x100 + 4 * i, 0x1000 + i);
        return w;
      });
      `,
      'terminate',
    );
    expect(child.stderr).toBe('');
    expect(child.stdout).toBe('worker exit 1\n');
    const image = readFileSync(file);
    expect(image.readUInt32LE(STATUS + 4)).toBe(LIVE);
    expect(Array.from({ length: 64 }, (_, i) => image.readUInt32LE(0x100 + 4 * i))).toEqual(
      Array.from({ length: 64 }, (_, i) => 0x1000 + i),
    );
  });
});

describe('armExitWrite at the teardown of the main thread', () => {
  test('the event loop runs dry: written (Node tears the main environment down)', () => {
    const file = registerFile();
    const child = runChild(`${open(file)}.armExitWrite(${STATUS}, 0);`);
    expect(child.stderr).toBe('');
    expect(wordIn(file)).toBe(0);
  });

  test("process.exit() on the main thread: not written — no environment teardown ('exit' listener covers it)", () => {
    const file = registerFile();
    const child = runChild(`${open(file)}.armExitWrite(${STATUS}, 0); process.exit(5);`);
    expect(child.status).toBe(5);
    expect(wordIn(file)).toBe(LIVE);
  });
});

describe('armExitWrite arguments and state', () => {
  let file: string;
  let region: NativeMmioRegion;
  beforeEach(() => {
    file = registerFile();
    region = MmioWindow.openFile(file, 0, 0x200) as NativeMmioRegion;
  });
  afterEach(() => region.close());

  test('exitWriteArmed follows arm, disarm and close; disarm is idempotent and allowed after close', () => {
    expect(region.exitWriteArmed).toBe(false);
    region.armExitWrite(STATUS, 0);
    expect(region.exitWriteArmed).toBe(true);
    region.disarmExitWrite();
    region.disarmExitWrite();
    expect(region.exitWriteArmed).toBe(false);
    region.armExitWrite(STATUS, 0, 0);
    region.close();
    expect(region.exitWriteArmed).toBe(false);
    expect(() => region.disarmExitWrite()).not.toThrow();
    expect(wordIn(file)).toBe(LIVE); // arming writes nothing now
  });

  test.each([
    ['past the end', 0x200, /offset 0x200 .*outside the window/],
    ['straddling the end', 0x1fe, /outside the window/],
    ['not aligned', 0x72, /not naturally aligned/],
    ['negative', -4, /not a non-negative integer/],
    ['fractional', 4.5, /not a non-negative integer/],
    ['NaN', NaN, /not a non-negative integer/],
  ])('offset %s: RangeError, as writel', (_name, offset, message) => {
    expect(() => region.armExitWrite(offset, 0)).toThrow(RangeError);
    expect(() => region.armExitWrite(offset, 0)).toThrow(message);
    expect(() => region.writel(offset, 0)).toThrow(RangeError);
    expect(region.exitWriteArmed).toBe(false);
  });

  test('a value that does not fit 32 bits or is not an integer: RangeError; not a number: TypeError', () => {
    for (const value of [2 ** 32, -(2 ** 31) - 1, 1.5])
      expect(() => region.armExitWrite(STATUS, value)).toThrow(RangeError);
    expect(() => region.armExitWrite(STATUS, '0' as never)).toThrow(TypeError);
    expect(() => region.armExitWrite(STATUS, undefined as never)).toThrow(TypeError);
    expect(() => region.armExitWrite('0x70' as never, 0)).toThrow(TypeError);
    expect(region.exitWriteArmed).toBe(false);
    region.armExitWrite(STATUS, -1); // as writel: ~0 and 0xffffffff both mean all ones
    region.armExitWrite(STATUS, 0xffffffff);
    expect(region.exitWriteArmed).toBe(true);
  });

  test('pollMs: an integer in [0, 1000]', () => {
    expect(() => region.armExitWrite(STATUS, 0, 1001)).toThrow(RangeError);
    expect(() => region.armExitWrite(STATUS, 0, -1)).toThrow(RangeError);
    expect(() => region.armExitWrite(STATUS, 0, 'x' as never)).toThrow(TypeError);
    region.armExitWrite(STATUS, 0, 1000);
    region.armExitWrite(STATUS, 0, 0);
    expect(region.exitWriteArmed).toBe(true);
  });

  test('a closed window: ClosedError', () => {
    region.close();
    expect(() => region.armExitWrite(STATUS, 0)).toThrow(ClosedError);
    expect(region.exitWriteArmed).toBe(false);
  });

  test('a failed arm leaves an earlier arm as it was', () => {
    region.armExitWrite(STATUS, 0);
    expect(() => region.armExitWrite(0x200, 0)).toThrow(RangeError);
    expect(region.exitWriteArmed).toBe(true);
  });
});
