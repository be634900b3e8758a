/**
 * Every exit path the process controls resets the devices it drives
 * (lib/transport/exit-reset.ts). The registry is tested here with fake
 * devices and with MmioTransport on the sim; the exit paths themselves only
 * in child processes, which run the compiled library (dist/, `npm run
 * build:ts`). Their device is either a sim whose Status the child prints
 * from an 'exit' listener, or a register window over a regular file
 * (MmioWindow.openFile) whose Status the parent reads from the file after
 * the child is gone — the only witness left after a worker is terminated
 * or a process killed by a signal. A terminated worker runs no JavaScript:
 * its device is reset by the write MmioTransport arms on the addon's window
 * (RegisterBlock.armExitWrite, an env cleanup hook; test/platform/exit-write.test.ts).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { TransportError } from '../../lib/errors';
import { DmaPool, MmioWindow } from '../../lib/platform';
import type { NativeMmioRegion } from '../../lib/platform/addon';
import { VirtioRng } from '../../lib/devices';
import { RngModel, SimDevice } from '../../lib/sim';
import { DeviceStatus, MMIO_MAGIC_VALUE, MmioRegister as R } from '../../lib/spec';
import { MmioTransport } from '../../lib/transport';
import {
  liveDeviceCount,
  resetDevicesOnSignals,
  resetLiveDevices,
  trackLiveDevice,
  type LiveDevice,
} from '../../lib/transport/exit-reset';

const LIVE = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | DeviceStatus.FEATURES_OK | DeviceStatus.DRIVER_OK;

/** A device that counts its resets (and can refuse them by throwing, against the contract). */
function fakeDevice(label: string, log: string[], throws = false): LiveDevice {
  return {
    label,
    emergencyReset() {
      log.push(label);
      if (throws) throw new Error(`${label} refuses`);
    },
  };
}

/** The 'exit' listeners added since `before` (a snapshot of process.listeners('exit')). */
const addedExitListeners = (before: readonly unknown[]): NodeJS.ExitListener[] =>
  process.listeners('exit').filter((l) => !before.includes(l));

afterEach(() => {
  // Nothing a test tracked may leak into the next one.
  resetLiveDevices();
  jest.restoreAllMocks();
});

describe('the registry of live devices', () => {
  test("installs one 'exit' listener, first in line, with the first device and removes it with the last", () => {
    const before = process.listeners('exit');
    const log: string[] = [];
    const untrackA = trackLiveDevice(fakeDevice('a', log));
    const [listener] = addedExitListeners(before);
    expect(addedExitListeners(before)).toHaveLength(1);
    expect(process.listeners('exit')[0]).toBe(listener);
    const untrackB = trackLiveDevice(fakeDevice('b', log));
    expect(addedExitListeners(before)).toHaveLength(1);
    expect(liveDeviceCount()).toBe(2);
    untrackA();
    untrackA(); // idempotent: b stays tracked
    expect(liveDeviceCount()).toBe(1);
    expect(addedExitListeners(before)).toHaveLength(1);
    untrackB();
    expect(liveDeviceCount()).toBe(0);
    expect(process.listeners('exit')).toEqual(before);
    expect(log).toEqual([]);
  });

  test("the 'exit' listener resets each device once, goes past one that throws, throws nothing, forgets them", () => {
    const before = process.listeners('exit');
    const log: string[] = [];
    trackLiveDevice(fakeDevice('a', log));
    const untrackB = trackLiveDevice(fakeDevice('b', log, true));
    trackLiveDevice(fakeDevice('c', log));
    const [listener] = addedExitListeners(before);
    expect(() => listener(0)).not.toThrow();
    expect(log).toEqual(['a', 'b', 'c']);
    expect(liveDeviceCount()).toBe(0);
    expect(process.listeners('exit')).toEqual(before);
    untrackB(); // an untrack after the reset is harmless
    expect(resetLiveDevices()).toEqual([]);
    expect(log).toEqual(['a', 'b', 'c']);
  });

  test('the same device tracked twice is two entries, each untracked by its own function', () => {
    const log: string[] = [];
    const device = fakeDevice('twice', log);
    const first = trackLiveDevice(device);
    trackLiveDevice(device);
    first();
    expect(liveDeviceCount()).toBe(1);
    expect(resetLiveDevices()).toEqual(['twice']);
  });

  test("10,000 track/untrack cycles never hold more than one 'exit' listener and leave them as they were", () => {
    // (A MaxListeners warning is not seen from inside jest's sandbox; a child process below checks stderr for it.)
    const before = process.listeners('exit');
    const log: string[] = [];
    for (let i = 0; i < 10_000; i++) {
      const untrack = trackLiveDevice(fakeDevice(`d${i}`, log));
      expect(process.listenerCount('exit')).toBe(before.length + 1);
      untrack();
    }
    expect(process.listeners('exit')).toEqual(before);
    expect(log).toEqual([]);
  });
});

describe('MmioTransport in the registry', () => {
  let pool: DmaPool;
  let sim: SimDevice;
  beforeEach(() => {
    pool = DmaPool.anonymous();
    sim = new SimDevice({ memory: pool, model: new RngModel() });
  });
  afterEach(() => {
    sim.close();
    pool.close();
  });

  const live = (): MmioTransport => {
    const transport = new MmioTransport(sim);
    transport.negotiate(0n);
    expect(liveDeviceCount()).toBe(0); // not before DRIVER_OK: the device may not use a queue before it (§3.1.1)
    transport.driverOk();
    expect(liveDeviceCount()).toBe(1);
    return transport;
  };

  test('tracked from DRIVER_OK; untracked by reset() and by close()', () => {
    const transport = live();
    transport.reset();
    expect(liveDeviceCount()).toBe(0);
    transport.negotiate(0n);
    transport.driverOk();
    expect(liveDeviceCount()).toBe(1);
    transport.close();
    expect(liveDeviceCount()).toBe(0);
  });

  test('untracked when the device fails while live (it was reset then)', () => {
    const transport = live();
    transport.deviceBroken(new Error('a broken ring'));
    expect(sim.status).toBe(0);
    expect(liveDeviceCount()).toBe(0);
    transport.close();
  });

  test('still tracked after markFailed(): FAILED does not stop a DRIVER_OK device (§2.1), only a reset does', () => {
    const transport = live();
    transport.markFailed();
    expect(sim.status).toBe(LIVE | DeviceStatus.FAILED);
    expect(resetLiveDevices()).toEqual([transport.label]);
    expect(sim.status).toBe(0);
    transport.close();
  });

  test('a driver: open tracks, close untracks', () => {
    const rng = VirtioRng.open(new MmioTransport(sim, { interrupts: sim.interrupt }), { memory: pool });
    expect(liveDeviceCount()).toBe(1);
    rng.close();
    expect(liveDeviceCount()).toBe(0);
  });

  test('emergencyReset writes Status 0 and changes nothing on the driver side', () => {
    const transport = live();
    transport.emergencyReset();
    expect(sim.status).toBe(0);
    expect(transport.live).toBe(true); // the process is ending: the transport is not told
    transport.close();
    expect(sim.violations).toEqual([]);
  });

  test('emergencyReset never throws and waits for Status at most 10 ms, never beyond resetTimeoutMs', () => {
    const transport = live();
    const polls: number[] = [];
    jest.spyOn(sim, 'pollUntil').mockImplementation((_offset, _mask, _expected, timeoutMs) => {
      polls.push(timeoutMs);
      return null; // a device that never reads 0
    });
    transport.emergencyReset();
    expect(polls).toEqual([10]);
    const quick = new MmioTransport(sim, { resetTimeoutMs: 2 });
    quick.emergencyReset();
    expect(polls).toEqual([10, 2]);
    jest.spyOn(sim, 'writel').mockImplementation(() => {
      throw new Error('bus error');
    });
    expect(() => transport.emergencyReset()).not.toThrow();
    jest.restoreAllMocks();
    sim.close();
    expect(() => transport.emergencyReset()).not.toThrow(); // window closed: nothing to write
    resetLiveDevices();
  });

  test("10,000 open/close cycles of a live transport leave the 'exit' listeners as they were", () => {
    const before = process.listeners('exit');
    for (let i = 0; i < 10_000; i++) {
      const transport = new MmioTransport(sim);
      transport.negotiate(0n);
      transport.driverOk();
      expect(process.listenerCount('exit')).toBe(before.length + 1);
      transport.close();
    }
    expect(process.listeners('exit')).toEqual(before);
    expect(liveDeviceCount()).toBe(0);
  });
});

describe("MmioTransport arms the teardown reset of the addon's windows (armExitWrite)", () => {
  /** A transport on a file window (see registerFile below), past FEATURES_OK, and its window. */
  const negotiated = (): [MmioTransport, NativeMmioRegion] => {
    const regs = MmioWindow.openFile(registerFile(), 0, 0x200) as NativeMmioRegion;
    const transport = new MmioTransport(regs, { owns: true });
    transport.negotiate(0n);
    expect(regs.exitWriteArmed).toBe(false);
    return [transport, regs];
  };

  test('armed from DRIVER_OK; disarmed by reset() and by close()', () => {
    const [transport, regs] = negotiated();
    transport.driverOk();
    expect(regs.exitWriteArmed).toBe(true);
    transport.reset();
    expect(regs.exitWriteArmed).toBe(false);
    transport.negotiate(0n);
    transport.driverOk();
    expect(regs.exitWriteArmed).toBe(true);
    transport.close();
    expect(regs.closed).toBe(true);
    expect(regs.exitWriteArmed).toBe(false);
  });

  test('what it arms: Status ← 0, then at most 10 ms (never past resetTimeoutMs) of read-back; one disarm', () => {
    // The addon's methods cannot be spied on (read-only): a sim window given the two methods stands in.
    const pool = DmaPool.anonymous();
    const sim = new SimDevice({ memory: pool, model: new RngModel() });
    try {
      const calls: unknown[][] = [];
      Object.assign(sim, {
        armExitWrite: (...args: unknown[]) => calls.push(['arm', ...args]),
        disarmExitWrite: () => calls.push(['disarm']),
      });
      for (const resetTimeoutMs of [1000, 3]) {
        const transport = new MmioTransport(sim, { resetTimeoutMs });
        transport.negotiate(0n);
        transport.driverOk();
        transport.reset();
        transport.close();
      }
      expect(calls).toEqual([['arm', R.Status, 0, 10], ['disarm'], ['arm', R.Status, 0, 3], ['disarm']]);
    } finally {
      sim.close();
      pool.close();
    }
  });

  test('disarmed when the device fails while live (it was reset then); still armed after markFailed()', () => {
    const [transport, regs] = negotiated();
    transport.driverOk();
    transport.markFailed();
    expect(regs.exitWriteArmed).toBe(true); // FAILED stops no device (§2.1)
    transport.close();
    const [broken, brokenRegs] = negotiated();
    broken.driverOk();
    broken.deviceBroken(new Error('a broken ring'));
    expect(brokenRegs.exitWriteArmed).toBe(false);
    broken.close();
  });

  test('a window closed under a live transport: disarmed by the close; the transport closes without throwing', () => {
    const [transport, regs] = negotiated();
    transport.driverOk();
    regs.close();
    expect(regs.exitWriteArmed).toBe(false);
    expect(() => transport.close()).not.toThrow();
  });
});

describe('resetDevicesOnSignals', () => {
  test('refuses signals it cannot handle as asked, and bad options', () => {
    expect(() => resetDevicesOnSignals({ signals: ['SIGKILL' as 'SIGINT'] })).toThrow(RangeError);
    expect(() => resetDevicesOnSignals({ signals: ['SIGUSR1' as 'SIGINT'] })).toThrow(RangeError);
    expect(() => resetDevicesOnSignals({ signals: [] })).toThrow(TypeError);
    expect(() => resetDevicesOnSignals({ onReset: 1 as never })).toThrow(TypeError);
    expect(() => resetDevicesOnSignals(null as never)).toThrow(TypeError);
  });

  test('installs one listener per signal, shared; the last uninstall removes it', () => {
    const before = {
      SIGINT: process.listeners('SIGINT'),
      SIGTERM: process.listeners('SIGTERM'),
      SIGHUP: process.listeners('SIGHUP'),
    };
    const first = resetDevicesOnSignals();
    const second = resetDevicesOnSignals({ signals: ['SIGTERM', 'SIGHUP', 'SIGTERM'] });
    expect(process.listenerCount('SIGINT')).toBe(before.SIGINT.length + 1);
    expect(process.listenerCount('SIGTERM')).toBe(before.SIGTERM.length + 1);
    expect(process.listenerCount('SIGHUP')).toBe(before.SIGHUP.length + 1);
    first();
    first();
    expect(process.listeners('SIGINT')).toEqual(before.SIGINT);
    expect(process.listenerCount('SIGTERM')).toBe(before.SIGTERM.length + 1);
    second();
    expect(process.listeners('SIGTERM')).toEqual(before.SIGTERM);
    expect(process.listeners('SIGHUP')).toEqual(before.SIGHUP);
  });

  test('on the signal: resets every device, reports their labels, exits with 128 + the signal number', () => {
    const before = process.listeners('SIGTERM');
    const exit = jest.spyOn(process, 'exit').mockImplementation((() => undefined) as never);
    const reports: [string, readonly string[]][] = [];
    const uninstall = resetDevicesOnSignals({
      onReset: (signal, labels) => {
        reports.push([signal, labels]);
        throw new Error('a reporter that throws does not stop the exit');
      },
    });
    try {
      const log: string[] = [];
      trackLiveDevice(fakeDevice('a', log));
      trackLiveDevice(fakeDevice('b', log));
      const [listener] = process.listeners('SIGTERM').filter((l) => !before.includes(l));
      (listener as () => void)();
      expect(log).toEqual(['a', 'b']);
      expect(reports).toEqual([['SIGTERM', ['a', 'b']]]);
      expect(exit).toHaveBeenCalledWith(143);
      expect(liveDeviceCount()).toBe(0);
    } finally {
      uninstall();
    }
  });
});

// ---- Child processes: the exit paths themselves ----

const dist = resolve(__dirname, '../../dist');
let dir: string;

beforeAll(() => {
  if (!existsSync(resolve(dist, 'transport/exit-reset.js')))
    throw new Error('dist/ is missing or stale: run `npm run build:ts`');
  dir = mkdtempSync(join(tmpdir(), 'exit-reset-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let files = 0;
/**
 * A register window in a file: a Version 2 entropy device offering VERSION_1 (DeviceFeatures reads 1 for either word).
 */
function registerFile(): string {
  const file = join(dir, `regs${files++}`);
  const image = Buffer.alloc(4096);
  image.writeUInt32LE(MMIO_MAGIC_VALUE, R.MagicValue);
  image.writeUInt32LE(2, R.Version);
  image.writeUInt32LE(4, R.DeviceID);
  image.writeUInt32LE(0x554d4551, R.VendorID);
  image.writeUInt32LE(1, R.DeviceFeatures);
  writeFileSync(file, image);
  return file;
}
const statusIn = (file: string): number => readFileSync(file).readUInt32LE(R.Status);

/** Child prelude: the library, and openLive(file) → a transport on a file window, past DRIVER_OK. */
const PRELUDE = `
  const lib = require(${JSON.stringify(dist)});
  const { SimDevice, RngModel } = require(${JSON.stringify(join(dist, 'sim'))});
  const { writeSync } = require('node:fs');
  function openLive(file) {
    const transport = new lib.MmioTransport(lib.MmioWindow.openFile(file, 0, 0x200), { owns: true });
    transport.negotiate(0n);
    transport.driverOk();
    return transport;
  }
`;

interface Ended {
  status: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

function runChild(body: string): Ended {
  const child = spawnSync(process.execPath, ['-e', PRELUDE + body], { encoding: 'utf8', timeout: 15_000 });
  return { status: child.status, signal: child.signal, stdout: child.stdout, stderr: child.stderr };
}

/** Starts a child, waits for `ready` on stdout, sends `signal`, resolves when it has ended. */
function signalChild(
  args: readonly string[],
  ready: RegExp,
  signal: NodeJS.Signals,
  where: 'stdout' | 'stderr' = 'stdout',
): Promise<Ended> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      fail(
        new Error(
          `the child did not ${sent ? 'end' : 'get ready'}; stdout ${JSON.stringify(stdout)}, stderr ` +
            `${JSON.stringify(stderr.slice(-2000))}`,
        ),
      );
    }, 30_000);
    const check = (): void => {
      if (!sent && ready.test(where === 'stdout' ? stdout : stderr)) {
        sent = true;
        child.kill(signal);
      }
    };
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      check();
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk;
      check();
    });
    child.on('close', (status, signalName) => {
      clearTimeout(timer);
      done({ status, signal: signalName, stdout, stderr });
    });
  });
}

describe('a process that ends with a device live (a sim device driven by VirtioRng)', () => {
  /** The sim reports its own Status from an 'exit' listener added after the library's. */
  const SIM_RNG = `
    const pool = lib.DmaPool.anonymous();
    const sim = new SimDevice({ memory: pool, model: new RngModel() });
    const rng = lib.VirtioRng.open(new lib.MmioTransport(sim, { interrupts: sim.interrupt }), { memory: pool });
    process.on('exit', (code) => writeSync(1, 'at exit: status ' + sim.status + ', code ' + code + '\\n'));
    writeSync(1, 'live: status ' + sim.status + '\\n');
  `;

  test('ending by itself: reset, exit code 0', () => {
    const child = runChild(`${SIM_RNG} rng.read(64).then((b) => writeSync(1, 'read ' + b.length + '\\n'));`);
    expect(child.stderr).toBe('');
    expect(child.stdout).toBe(`live: status ${LIVE}\nread 64\nat exit: status 0, code 0\n`);
    expect(child.status).toBe(0);
  });

  test('process.exit(3): reset, the code kept', () => {
    const child = runChild(`${SIM_RNG} rng.read(64).then(() => process.exit(3));`);
    expect(child.stderr).toBe('');
    expect(child.stdout).toBe(`live: status ${LIVE}\nat exit: status 0, code 3\n`);
    expect(child.status).toBe(3);
  });

  test('an uncaught exception: reset, the stack printed, exit code 1', () => {
    const child = runChild(
      `${SIM_RNG} rng.read(64).then(() => setTimeout(() => { throw new Error('boom from the child'); }));`,
    );
    expect(child.stdout).toBe(`live: status ${LIVE}\nat exit: status 0, code 1\n`);
    expect(child.stderr).toMatch(/Error: boom from the child\n\s+at /);
    expect(child.status).toBe(1);
    expect(child.signal).toBeNull();
  });

  test('an unhandled rejection: reset, reported, exit code 1', () => {
    const child = runChild(`${SIM_RNG} rng.read(64).then(() => { throw new Error('rejected in the child'); });`);
    expect(child.stdout).toBe(`live: status ${LIVE}\nat exit: status 0, code 1\n`);
    expect(child.stderr).toMatch(/Error: rejected in the child\n\s+at /);
    expect(child.status).toBe(1);
  });
});

describe('a process that opens and closes many devices', () => {
  test("10,000 open/close cycles, 20 live at a time: at most one 'exit' listener, no MaxListeners warning", () => {
    // Up to 20 live at a time (more than the 10 listeners Node warns at), each opened and closed 500 times.
    const child = runChild(`
      const pool = lib.DmaPool.anonymous();
      const sims = Array.from({ length: 20 }, () => new SimDevice({ memory: pool, model: new RngModel() }));
      let most = 0;
      for (let round = 0; round < 500; round++) {
        const rngs = sims.map((sim) => lib.VirtioRng.open(new lib.MmioTransport(sim), { memory: pool }));
        most = Math.max(most, process.listenerCount('exit'));
        for (const rng of rngs) rng.close();
      }
      writeSync(1, 'most exit listeners ' + most + ', now ' + process.listenerCount('exit') + '\\n');
    `);
    expect(child.stderr).toBe('');
    expect(child.stdout).toBe('most exit listeners 1, now 0\n');
    expect(child.status).toBe(0);
  });
});

describe('a process that ends with a device live (a register window in a file, read back by the parent)', () => {
  test('ending by itself, process.exit(3) and an uncaught exception each leave Status 0 behind', () => {
    const files = [registerFile(), registerFile(), registerFile()];
    const natural = runChild(`openLive(${JSON.stringify(files[0])}); writeSync(1, 'live\\n');`);
    const exited = runChild(`openLive(${JSON.stringify(files[1])}); process.exit(3);`);
    const thrown = runChild(`openLive(${JSON.stringify(files[2])}); throw new Error('thrown at top level');`);
    expect([natural.status, exited.status, thrown.status]).toEqual([0, 3, 1]);
    expect(natural.stdout).toBe('live\n');
    expect(thrown.stderr).toMatch(/Error: thrown at top level\n\s+at /);
    expect(files.map(statusIn)).toEqual([0, 0, 0]);
  });

  test('a device closed before the end is not touched again at exit', () => {
    const file = registerFile();
    // After close() the library writes nothing: the child sets a marker and no reset may clear it.
    const child = runChild(
      `const t = openLive(${JSON.stringify(file)}); t.close(); const w = lib.MmioWindow.openFile(` +
        `${JSON.stringify(file)}` +
        `, 0, 0x200); w.writel(0x70, 0x40); w.close();`,
    );
    expect(child.stderr).toBe('');
    expect(statusIn(file)).toBe(0x40);
  });

  describe('signals', () => {
    const LIVE_AND_WAITING = (file: string, optIn: boolean): string =>
      `${PRELUDE} ${optIn ? 'lib.resetDevicesOnSignals();' : ''} openLive(${JSON.stringify(file)}); ` +
      `setInterval(() => {}, 1000); writeSync(1, 'live\\n');`;

    test.each([
      ['SIGTERM', 143],
      ['SIGINT', 130],
    ] as const)('with resetDevicesOnSignals(), %s resets the device and exits %i', async (signal, code) => {
      const file = registerFile();
      const child = await signalChild(['-e', LIVE_AND_WAITING(file, true)], /live\n/, signal);
      expect(child.stderr).toBe('');
      expect(child.signal).toBeNull();
      expect(child.status).toBe(code);
      expect(statusIn(file)).toBe(0);
    });

    test.each(['SIGTERM', 'SIGINT'] as const)(
      'without it, %s kills the process as Node does by default, and the device stays live',
      async (signal) => {
        const file = registerFile();
        const child = await signalChild(['-e', LIVE_AND_WAITING(file, false)], /live\n/, signal);
        expect(child.signal).toBe(signal);
        expect(child.status).toBeNull();
        // No JavaScript runs for a signal nobody listens for (nor for SIGKILL): nothing can reset the device.
        expect(statusIn(file)).toBe(LIVE);
      },
    );
  });
});

describe('worker threads (the transport lives in the worker)', () => {
  /** A child whose worker opens the file window; `worker` is the worker's code after that, `main` the main thread's. */
  const withWorker = (file: string, worker: string, main: string): string => `
    const { Worker } = require('node:worker_threads');
    const w = new Worker(${JSON.stringify(`${PRELUDE} openLive(${JSON.stringify(file)}); ${worker}`)}, { eval: true });
    const status = () => require('node:fs').readFileSync(${JSON.stringify(file)}).readUInt32LE(0x70);
    w.on('error', (e) => writeSync(1, 'worker error: ' + e.message + '\\n'));
    w.on('exit', (code) => writeSync(1, 'worker exit ' + code + ', status ' + status() + '\\n'));
    ${main}
  `;

  test('a worker that ends by itself resets its device', () => {
    const file = registerFile();
    const child = runChild(withWorker(file, '', ''));
    expect(child.stderr).toBe('');
    expect(child.stdout).toBe('worker exit 0, status 0\n');
  });

  test('a worker that calls process.exit(4) resets its device, the code kept', () => {
    const child = runChild(withWorker(registerFile(), 'process.exit(4);', ''));
    expect(child.stdout).toBe('worker exit 4, status 0\n');
  });

  test('a worker that throws resets its device', () => {
    const child = runChild(withWorker(registerFile(), "throw new Error('thrown in the worker');", ''));
    expect(child.stdout).toBe('worker error: thrown in the worker\nworker exit 1, status 0\n');
  });

  test('a terminated worker resets its device: no JavaScript runs, the cleanup hook armed at DRIVER_OK does', () => {
    const child = runChild(
      withWorker(
        registerFile(),
        "setInterval(() => {}, 1000); require('node:worker_threads').parentPort.postMessage('live');",
        "w.on('message', () => w.terminate());",
      ),
    );
    expect(child.stderr).toBe('');
    expect(child.stdout).toBe('worker exit 1, status 0\n');
  });

  test('a worker still running when the main thread exits is terminated, and resets its device the same way', () => {
    const file = registerFile();
    const child = runChild(
      withWorker(
        file,
        "setInterval(() => {}, 1000); require('node:worker_threads').parentPort.postMessage('live');",
        "w.on('message', () => process.exit(0));",
      ),
    );
    expect(child.stderr).toBe('');
    expect(child.status).toBe(0);
    expect(statusIn(file)).toBe(0);
  });

  test('a terminated worker leaves alone devices it reset or closed (a marker from another window stays)', () => {
    const [live, wasReset, wasClosed] = [registerFile(), registerFile(), registerFile()];
    const marker = (file: string): string =>
      `{ const m = lib.MmioWindow.openFile(${JSON.stringify(file)}, 0, 0x200); m.writel(0x70, 0x40); m.close(); }`;
    const child = runChild(
      withWorker(
        live,
        `openLive(${JSON.stringify(wasReset)}).reset(); ${marker(wasReset)}
         openLive(${JSON.stringify(wasClosed)}).close(); ${marker(wasClosed)}
         setInterval(() => {}, 1000); require('node:worker_threads').parentPort.postMessage('live');`,
        "w.on('message', () => w.terminate());",
      ),
    );
    expect(child.stderr).toBe('');
    expect(child.stdout).toBe('worker exit 1, status 0\n');
    expect([statusIn(wasReset), statusIn(wasClosed)]).toEqual([0x40, 0x40]);
  });

  test('resetDevicesOnSignals() in a worker is refused: signals reach the main thread only', () => {
    const child = runChild(
      withWorker(
        registerFile(),
        'try { lib.resetDevicesOnSignals(); } catch (e) { ' +
          "require('node:worker_threads').parentPort.postMessage(e.code); }",
        "w.on('message', (code) => writeSync(1, code + '\\n'));",
      ),
    );
    expect(child.stdout).toBe(`${TransportError.STATE}\nworker exit 0, status 0\n`);
  });
});

describe('the CLI (node dist/cli/bin.js)', () => {
  /**
   * Test-only observer, preloaded into the CLI: each Status write to a sim device and the status the device then holds,
   * on stderr.
   */
  const OBSERVER = `
    const { writeSync } = require('node:fs');
    const { SimDevice } = require(${JSON.stringify(join(dist, 'sim'))});
    const writel = SimDevice.prototype.writel;
    SimDevice.prototype.writel = function (offset, value) {
      writel.call(this, offset, value);
      if (offset === 0x70) writeSync(2, '@@status ' + this.label + ' ' + this.status + '\\n');
    };
  `;

  test.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('blk bench on a sim device: %s resets the device and exits %i', async (signal, code) => {
    const observer = join(dir, 'observer.js');
    writeFileSync(observer, OBSERVER);
    const child = await signalChild(
      ['-r', observer, join(dist, 'cli/bin.js'), 'blk', 'sim:blk', 'bench', '--seconds', '60', '--progress'],
      /bench read \[/,
      signal,
      'stderr',
    );
    expect(child.signal).toBeNull();
    expect(child.status).toBe(code);
    expect(child.stdout).toBe('');
    const statuses = [...child.stderr.matchAll(/@@status sim:blk (\d+)\n/g)].map((m) => Number(m[1]));
    expect(statuses).toContain(LIVE);
    expect(statuses.at(-1)).toBe(0);
    expect(child.stderr).toMatch(new RegExp(`\\nvirtio-mmio: ${signal}: reset sim:blk\\n`));
  });
});
