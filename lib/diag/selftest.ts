import { randomBytes } from 'node:crypto';
import { DeviceIoError, PortError, VirtioError } from '../errors';
import type {
  ConsolePort,
  VirtioBlk,
  VirtioConsole,
  VirtioInput,
  VirtioNet,
  VirtioRng,
  VirtioDriver,
} from '../devices';
import { POLL_TIMEOUT_MAX_MS } from '../platform/register-block';
import type { DmaAllocator, RegisterBlock } from '../platform';
import type { MmioTransport, OpenTransportOptions } from '../transport';
import { DeviceId, FeatureBit, NetFeature, deviceTypeName, hasFeature, macText } from '../spec';
import { nameFeatures } from './inspect';
import { DEVICE_RULES, DeviceRuleWatch, type DeviceRuleViolation } from './device-rules';
import { DRIVERS } from './drivers';
import { describeInput, inputStatusEcho, inputSummary } from './input-steps';

/** One step of a selftest: what it did, whether it passed, how long it took. */
export interface SelftestStep {
  step: string;
  ok: boolean;
  /** Passed without proving anything (e.g. no echo from a console nobody loops back). */
  skipped?: boolean;
  ms: number;
  detail?: string;
  error?: { code?: string; message: string };
}

export interface SelftestReport {
  where: string;
  device?: string;
  deviceId?: number;
  version?: 1 | 2;
  ring?: 'split' | 'packed';
  features?: string[];
  steps: SelftestStep[];
  /**
   * With --strict: the rules checked and the ones the device broke;
   * `stoppedAt`, the step that failed (the rules were watched only until
   * then, and not at all when it is 'identify').
   */
  strict?: { rules: number; violations: DeviceRuleViolation[]; stoppedAt?: string };
  /** Every step passed, and with --strict no MUST rule was broken. */
  ok: boolean;
}

export interface SelftestOptions {
  /** Watch the device for DEVICE_RULES violations. */
  strict?: boolean;
  /**
   * Time limit for each request, in ms, and for the resets (at most POLL_TIMEOUT_MAX_MS, the most pollUntil waits).
   * Default 5000.
   */
  timeoutMs?: number;
  /** How long to wait for a console echo (and an input status echo), in ms. Default 2000. */
  echoTimeoutMs?: number;
}

/** What a selftest runs on: a device it can open for a driver, once. */
export interface SelftestSubject {
  /** How the report names the device. */
  readonly where: string;
  /**
   * A transport on the device with DMA memory for its driver; `close`
   * releases both. With `wrapRegisters` the transport's registers go
   * through the returned window (--strict watches the device through one).
   */
  open(options: {
    wrapRegisters?: (regs: RegisterBlock) => RegisterBlock;
    transport: Pick<OpenTransportOptions, 'resetTimeoutMs' | 'queueResetTimeoutMs'>;
  }): { transport: MmioTransport; memory: DmaAllocator; close(): void };
}

/** A failure as a report shows it: its stable code, when it has one, and its message. */
export function describeError(error: unknown): { code?: string; message: string } {
  const code = error instanceof VirtioError ? error.code : (error as { code?: unknown })?.code;
  const message = error instanceof Error ? error.message : String(error);
  return typeof code === 'string' ? { code, message } : { message };
}

/**
 * The quiet spell of --strict, and how many interrupts in it look like a storm rather than traffic (a receive queue may
 * get some).
 */
const IDLE_MS = 100;
const IDLE_INTERRUPT_LIMIT = 50;

const round = (ms: number): number => Math.round(ms * 1000) / 1000;

/**
 * Runs the device type's driver through negotiation and a few requests —
 * rng bytes, a blk read of sector 0, a console echo when the far end loops
 * back, the net link status, the input device's config and a status
 * event — timing each step, then closes (a reset).
 * Nothing is written to a block device.
 */
export async function selftest(subject: SelftestSubject, options: SelftestOptions = {}): Promise<SelftestReport> {
  const timeoutMs = options.timeoutMs ?? 5000;
  // A reset is waited for with pollUntil, which blocks the thread and takes no more than its limit.
  const resetTimeoutMs = Math.min(timeoutMs, POLL_TIMEOUT_MAX_MS);
  const report: SelftestReport = { where: subject.where, steps: [], ok: false };
  let watch: DeviceRuleWatch | undefined;
  let opened: ReturnType<SelftestSubject['open']> | undefined;
  let driver: VirtioDriver | undefined;
  /** Whole-device failures the driver reported between steps (a storm, DEVICE_NEEDS_RESET, a lost line). */
  const deviceErrors: Error[] = [];

  /** Runs one step; its error (if any) is kept, and with --strict read for what it says about the device. */
  const step = async (
    name: string,
    run: () => Promise<string | { skipped: string } | undefined> | string | { skipped: string } | undefined,
  ): Promise<boolean> => {
    const started = performance.now();
    try {
      const outcome = await run();
      const entry: SelftestStep = { step: name, ok: true, ms: round(performance.now() - started) };
      if (typeof outcome === 'string') entry.detail = outcome;
      else if (outcome) Object.assign(entry, { skipped: true, detail: outcome.skipped });
      report.steps.push(entry);
      return true;
    } catch (error) {
      watch?.noteError(error);
      report.steps.push({ step: name, ok: false, ms: round(performance.now() - started), error: describeError(error) });
      return false;
    }
  };

  try {
    const identified = await step('identify', () => {
      opened = subject.open({
        wrapRegisters: options.strict ? (regs) => (watch = new DeviceRuleWatch(regs)) : undefined,
        transport: { resetTimeoutMs, queueResetTimeoutMs: resetTimeoutMs },
      });
      const { transport } = opened;
      Object.assign(report, {
        device: deviceTypeName(transport.deviceId) ?? `device ${transport.deviceId}`,
        deviceId: transport.deviceId,
        version: transport.version,
      });
      return `${report.device} (${transport.deviceId}), virtio-mmio Version ${transport.version}`;
    });
    if (identified && opened) {
      const { transport, memory } = opened;
      const open = DRIVERS[transport.deviceId];
      const steps = STEPS[transport.deviceId];
      if (!open || !steps) {
        report.steps.push({
          step: 'negotiate',
          ok: false,
          ms: 0,
          error: {
            message:
              `no selftest for device type ${transport.deviceId}: ` + 'only rng, blk, console, net and input have one',
          },
        });
      } else if (
        await step('negotiate', () => {
          driver = open(transport, { memory, requestTimeoutMs: timeoutMs });
          driver.onError((error) => deviceErrors.push(error));
          const { features } = driver;
          report.features = nameFeatures(transport.deviceId, features).map((f) => f.name);
          report.ring = hasFeature(features, FeatureBit.RING_PACKED) ? 'packed' : 'split';
          return `${report.ring} ring; ${report.features.join(' ')}`;
        })
      ) {
        for (const [name, run] of steps) {
          if (!(await step(name, () => run(driver!, options)))) break;
        }
      }
      if (options.strict && driver) {
        // §2.7.8.1: a len on a chain the device may not write is taken as 0 by the ring, but it is the device's fault.
        for (const index of driver.queueIndices) {
          const ignored = driver.queueStats(index).usedLenIgnored;
          if (ignored > 0)
            watch?.note(
              'used-len-valid',
              `queue ${index}: ${ignored} used element(s) with a len for a chain it may not write (taken as 0)`,
            );
        }
        // A quiet spell: wake-ups the device raised after the last request are handled, and a line that keeps firing
        // shows.
        await step('idle 100 ms', async () => {
          const before = transport.stats.interrupts;
          await new Promise((resolve) => setTimeout(resolve, IDLE_MS));
          const during = transport.stats.interrupts - before;
          if (deviceErrors.length) throw deviceErrors[0];
          if (during > IDLE_INTERRUPT_LIMIT) {
            const message = `${during} interrupts in ${IDLE_MS} ms with no request outstanding: the line keeps firing`;
            watch?.note('interrupts-with-cause', message);
            throw new Error(message);
          }
          return `${during} interrupts`;
        });
      }
      await step('reset', () => {
        const d = driver;
        driver = undefined;
        if (d) d.close();
        else transport.reset();
        const { interrupts, spuriousInterrupts } = transport.stats;
        watch?.noteInterrupts(transport.stats);
        return `interrupts ${interrupts}, spurious ${spuriousInterrupts}`;
      });
    }
  } finally {
    try {
      (driver as VirtioDriver | undefined)?.close();
    } finally {
      (opened as { close(): void } | undefined)?.close();
    }
  }
  const stepsOk = report.steps.every((s) => s.ok);
  if (watch) {
    const violations = watch.violations;
    const stoppedAt = report.steps.find((s) => !s.ok)?.step;
    report.strict = { rules: Object.keys(DEVICE_RULES).length, violations, ...(stoppedAt ? { stoppedAt } : {}) };
    report.ok = stepsOk && !violations.some((v) => v.level === 'must');
  } else {
    report.ok = stepsOk;
  }
  return report;
}

type StepRun = (
  driver: VirtioDriver,
  options: SelftestOptions,
) => Promise<string | { skipped: string } | undefined> | string | { skipped: string };
/** The steps of each device type's selftest, after negotiation. */
const STEPS: Partial<Record<number, [string, StepRun][]>> = {
  [DeviceId.ENTROPY]: [
    [
      'read 64 random bytes',
      async (driver) => {
        const data = await (driver as VirtioRng).read(64);
        if (data.length !== 64) throw new Error(`asked for 64 bytes, got ${data.length}`);
        if (data.every((b) => b === data[0])) throw new Error(`all 64 bytes are 0x${data[0].toString(16)}: not random`);
        return data.subarray(0, 16).toString('hex') + '…';
      },
    ],
  ],
  [DeviceId.BLOCK]: [
    [
      'read sector 0',
      async (driver) => {
        const blk = driver as VirtioBlk;
        const data = await blk.read(0, 512);
        const zero = data.every((b) => b === 0);
        return (
          `capacity ${blk.info.capacity} sectors (${Number(blk.info.capacity) * 512} bytes)` +
          `${blk.info.readOnly ? ', read-only' : ''}` +
          `; sector 0 ${zero ? 'all zero' : `starts ${data.subarray(0, 16).toString('hex')}`}`
        );
      },
    ],
    [
      'device ID',
      async (driver) => {
        try {
          const id = await (driver as VirtioBlk).getId();
          return id.length > 0 ? `"${id}"` : 'empty';
        } catch (error) {
          // GET_ID is optional: an old device answers UNSUPP (§5.2.6).
          if (error instanceof DeviceIoError)
            return { skipped: `the device does not support GET_ID (${error.message})` };
          throw error;
        }
      },
    ],
  ],
  [DeviceId.CONSOLE]: [
    ['echo on port 0', (driver, options) => consoleEcho(driver as VirtioConsole, options.echoTimeoutMs ?? 2000)],
  ],
  [DeviceId.NET]: [
    [
      'link status',
      (driver) => {
        const net = driver as VirtioNet;
        const status = hasFeature(net.features, NetFeature.STATUS);
        return (
          `MAC ${macText(net.mac)}` +
          `${hasFeature(net.features, NetFeature.MAC) ? '' : ' (made up: no VIRTIO_NET_F_MAC)'}` +
          `; link ${net.linkUp ? 'up' : 'down'}${status ? '' : ' (assumed: no VIRTIO_NET_F_STATUS)'}`
        );
      },
    ],
  ],
  [DeviceId.INPUT]: [
    ['read config', (driver) => inputSummary(describeInput(driver as VirtioInput))],
    ['status event', (driver, options) => inputStatusEcho(driver as VirtioInput, options.echoTimeoutMs ?? 2000)],
  ],
};

/** Writes a probe line to port 0 and waits for it to come back; no echo is a skip, not a failure. */
async function consoleEcho(console: VirtioConsole, echoTimeoutMs: number): Promise<string | { skipped: string }> {
  const started = performance.now();
  let port: ConsolePort;
  try {
    // With MULTIPORT, port 0 is there once the device has added it (§5.3.6.2).
    port = await console.waitForPort(0, { timeoutMs: echoTimeoutMs });
  } catch (error) {
    if (error instanceof PortError && error.code === PortError.NOT_FOUND)
      return { skipped: `the device did not add port 0 within ${echoTimeoutMs} ms` };
    throw error;
  }
  const waitMs = Math.max(1, echoTimeoutMs - (performance.now() - started));
  const stream = port.open();
  const probe = Buffer.from(`virtio-mmio selftest ${randomBytes(6).toString('hex')}\n`);
  let received = Buffer.alloc(0);
  try {
    const found = await new Promise<boolean>((resolve, reject) => {
      const timer = setTimeout(() => done(false), waitMs);
      const onData = (chunk: Buffer): void => {
        received = Buffer.concat([received, chunk]);
        if (received.includes(probe)) done(true);
      };
      const onError = (error: Error): void => {
        clearTimeout(timer);
        stream.off('data', onData);
        reject(error);
      };
      function done(value: boolean): void {
        clearTimeout(timer);
        stream.off('data', onData);
        stream.off('error', onError);
        resolve(value);
      }
      stream.on('data', onData);
      stream.once('error', onError);
      stream.write(probe, (error) => error && onError(error));
    });
    if (found) return `${probe.length} bytes sent and echoed`;
    return {
      skipped: received.length
        ? `${received.length} bytes came back within ${echoTimeoutMs} ms, not the probe: the far end is not an echo`
        : `nothing came back within ${echoTimeoutMs} ms: the console is not looped back`,
    };
  } finally {
    port.close();
  }
}
