import { DriverSetup, VirtioDriver, type DriverOptions, type StartedDevice } from '../devices';
import { UsageError } from '../errors';
import { freeIfLive, type DmaAllocator, type DmaRegion, type RegisterBlock } from '../platform';
import { POLL_TIMEOUT_MAX_MS } from '../platform/register-block';
import { FeatureBit, deviceIdName, feature, hasFeature } from '../spec';
import type { OpenTransportOptions, VirtioTransport } from '../transport';
import { DEVICE_RULES, DeviceRuleWatch, type DeviceRuleViolation } from './device-rules';
import { describeFailure } from './failure';
import { featureBitByName, nameFeatures, vendorText } from './inspect';

/** What a bring-up runs on: a device it can open for a driver, once (the CLI's targets are one such opener). */
export interface QueueBringUpSubject {
  /**
   * A transport on the device with DMA memory for its driver, and how the report names it; `close` releases both.
   * With `wrapRegisters` the transport's registers go through the returned window (`strict` watches the device
   * through one).
   */
  open(options: {
    wrapRegisters?: (regs: RegisterBlock) => RegisterBlock;
    transport: Pick<OpenTransportOptions, 'resetTimeoutMs' | 'queueResetTimeoutMs'>;
  }): { readonly where: string; readonly transport: VirtioTransport; readonly memory: DmaAllocator; close(): void };
}

/** What to post, on which queue, with which features. */
export interface QueueBringUpPlan {
  /** The queue index (QueueSel). */
  queue: number;
  /** Device-readable bytes: one descriptor. A chain needs `out`, `ins` or both. */
  out?: Uint8Array;
  /** The size of each device-writable buffer, one descriptor each. */
  ins: readonly number[];
  /**
   * Features to ask for besides the transport features the library implements, and transport features not to ask
   * for: comma-separated bit numbers or names of the device's type (a name's meaning is known once the device is
   * open); a bad item is a UsageError naming the list as the CLI option (--features, --exclude).
   */
  features?: string;
  exclude?: string;
  /** How many such chains to post at once, each with its own buffers (default 1). */
  chains?: number;
  /** The queue size (default QueueNumMax up to 256). */
  size?: number;
  /** How long each chain may take, in ms (default 5000); the resets wait at most POLL_TIMEOUT_MAX_MS. */
  timeoutMs?: number;
  /** Also watch the device for DEVICE_RULES violations. */
  strict?: boolean;
}

/** One chain's outcome. */
export interface QueueChainResult {
  chain: number;
  /** Device-readable bytes, and the size of each device-writable buffer. */
  out: number;
  in: number[];
  /** The used element's len (§2.7.8): bytes the device wrote; and those bytes, in hex. */
  usedLen?: number;
  hex?: string;
  ms?: number;
  error?: { code: string; message: string };
}

export interface QueueBringUpReport {
  where: string;
  deviceId: number;
  device: string;
  version: number;
  vendorId: string;
  /** DeviceFeatures as 0x hex, and the features negotiated by name. */
  offered: string;
  features: string[];
  queue: { index: number; size: number; ring: 'split' | 'packed' };
  chains: QueueChainResult[];
  interrupts: number;
  strict?: { rules: number; violations: DeviceRuleViolation[] };
  /** Every chain came back, and with `strict` no MUST rule was broken. */
  ok: boolean;
}

const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_QUEUE_SIZE = 256;

/** A feature list as a mask: bit numbers (0–63) or names of the device's type or of the transport. */
function featureMask(option: string, text: string | undefined, deviceId: number): bigint {
  if (text === undefined) return 0n;
  let mask = 0n;
  for (const item of text.split(',').map((s) => s.trim())) {
    const bit = /^\d+$/.test(item) ? Number(item) : featureBitByName(deviceId, item);
    if (bit === undefined || bit > 63)
      throw new UsageError(
        `--${option}: '${item}' is neither a feature bit number (0-63) nor a feature name of ` +
          `${deviceIdName(deviceId)} or of the transport`,
      );
    mask |= feature(bit);
  }
  return mask;
}

/**
 * A driver for any device type: it negotiates the features it is told,
 * sets up the one queue it is told, and sends chains as they are given.
 * Built as a user's driver is, on DriverSetup and VirtioDriver.
 */
class BringUpDriver extends VirtioDriver {
  private constructor(
    started: StartedDevice,
    readonly index: number,
  ) {
    super(started);
  }

  static open(
    transport: VirtioTransport,
    options: DriverOptions,
    plan: { features: bigint; queue: number; size: number },
  ): BringUpDriver {
    const setup = DriverSetup.begin(transport, options);
    try {
      // §3.1.1 steps 1–6, for whatever type the device is; every feature named must be offered.
      setup.negotiate(transport.deviceId, plan.features, plan.features);
      // Step 7: the one queue (§4.2.3.2).
      setup.setUpQueues([plan.queue], plan.size);
      // Step 8.
      setup.driverOk();
      return new BringUpDriver(setup.finish(), plan.queue);
    } catch (error) {
      throw setup.abandon(error);
    }
  }

  get size(): number {
    return this.queue(this.index).size;
  }

  /**
   * One chain: `out` device-readable, then a device-writable buffer of each of `ins` bytes (§2.7.4.2); what the device
   * wrote.
   */
  async send(
    out: Uint8Array | undefined,
    ins: readonly number[],
    timeoutMs: number,
  ): Promise<{ usedLen: number; written: Buffer }> {
    const readable = out ? [this.memory.allocate(out.length)] : [];
    if (out) new Uint8Array(readable[0].view, readable[0].offset, out.length).set(out);
    const writable: DmaRegion[] = [];
    try {
      for (const size of ins) writable.push(this.memory.allocate(size));
      const usedLen = await this.queue(this.index).submit(
        { readable: readable.map((region) => ({ region })), writable: writable.map((region) => ({ region })) },
        { timeoutMs },
      );
      // The queue has checked usedLen ≤ the writable bytes (§2.7.8.1); the device wrote that much, in chain order.
      const written = Buffer.concat(
        writable.map((r) => Buffer.from(new Uint8Array(r.view, r.offset, r.size))),
      ).subarray(0, usedLen);
      return { usedLen, written };
    } finally {
      // A chain the device still holds (a timeout) keeps its memory: the allocator defers these frees until it comes
      // back or a reset completes.
      for (const region of [...readable, ...writable]) freeIfLive(this.memory, region);
    }
  }
}

/**
 * The bring-up of a device the library may have no driver for: the init
 * sequence (virtio 1.2 §3.1.1) with the features asked for, one queue set
 * up, `plan.chains` chains posted at once (§2.7.4), and for each the used
 * length and the bytes the device wrote; the device is reset (§2.4) and
 * closed before the report is final. A chain's failure is in its result;
 * a failure to open or negotiate rejects.
 */
export async function bringUpQueue(subject: QueueBringUpSubject, plan: QueueBringUpPlan): Promise<QueueBringUpReport> {
  const timeoutMs = plan.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  let watch: DeviceRuleWatch | undefined;
  const resetTimeoutMs = Math.min(timeoutMs, POLL_TIMEOUT_MAX_MS);
  const opened = subject.open({
    wrapRegisters: plan.strict ? (regs: RegisterBlock) => (watch = new DeviceRuleWatch(regs)) : undefined,
    transport: { resetTimeoutMs, queueResetTimeoutMs: resetTimeoutMs },
  });
  let driver: BringUpDriver | undefined;
  try {
    const { transport } = opened;
    const features = featureMask('features', plan.features, transport.deviceId);
    const exclude = featureMask('exclude', plan.exclude, transport.deviceId);
    try {
      driver = BringUpDriver.open(
        transport,
        {
          memory: opened.memory,
          requestTimeoutMs: timeoutMs,
          excludeFeatures: exclude,
          ...(plan.size ? { queueSize: plan.size } : {}),
        },
        { features, queue: plan.queue, size: plan.size ?? DEFAULT_QUEUE_SIZE },
      );
    } catch (error) {
      watch?.noteError(error);
      throw error;
    }
    const failures: Error[] = [];
    driver.onError((error) => failures.push(error));
    const d = driver;
    const ins = [...plan.ins];
    const chains = await Promise.all(
      Array.from({ length: plan.chains ?? 1 }, async (_, chain): Promise<QueueChainResult> => {
        const result: QueueChainResult = { chain, out: plan.out?.length ?? 0, in: ins };
        const started = performance.now();
        try {
          const { usedLen, written } = await d.send(plan.out, plan.ins, timeoutMs);
          return {
            ...result,
            usedLen,
            hex: written.toString('hex'),
            ms: Math.round((performance.now() - started) * 1000) / 1000,
          };
        } catch (error) {
          watch?.noteError(error);
          return { ...result, error: describeFailure(error) };
        }
      }),
    );
    for (const error of failures) watch?.noteError(error);
    const report: QueueBringUpReport = {
      where: opened.where,
      deviceId: transport.deviceId,
      device: deviceIdName(transport.deviceId),
      version: transport.version,
      vendorId:
        `0x${(transport.vendorId >>> 0).toString(16)}` +
        `${vendorText(transport.vendorId) ? ` "${vendorText(transport.vendorId)}"` : ''}`,
      offered: `0x${transport.deviceFeatures.toString(16)}`,
      features: nameFeatures(transport.deviceId, driver.features).map((f) => f.name),
      queue: {
        index: plan.queue,
        size: driver.size,
        ring: hasFeature(driver.features, FeatureBit.RING_PACKED) ? 'packed' : 'split',
      },
      chains,
      interrupts: 0,
      ok: false,
    };
    // The reset (§2.4) before the report is final: what it and the interrupts showed counts with `strict`.
    driver = undefined;
    d.close();
    report.interrupts = transport.stats.interrupts;
    watch?.noteInterrupts(transport.stats);
    const chainsOk = chains.every((c) => !c.error);
    if (watch) {
      report.strict = { rules: Object.keys(DEVICE_RULES).length, violations: watch.violations };
      report.ok = chainsOk && !report.strict.violations.some((v) => v.level === 'must');
    } else report.ok = chainsOk;
    return report;
  } finally {
    try {
      driver?.close();
    } finally {
      opened.close();
    }
  }
}
