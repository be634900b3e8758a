import { readFileSync } from 'node:fs';
import { DriverSetup, VirtioDriver, type DriverOptions, type StartedDevice } from '../devices';
import { freeIfLive, type DmaAllocator, type DmaRegion, type RegisterBlock } from '../platform';
import { POLL_TIMEOUT_MAX_MS } from '../platform/register-block';
import { FeatureBit, deviceIdName, feature, hasFeature } from '../spec';
import type { VirtioTransport } from '../transport';
import {
  UsageError,
  describeFailure,
  integerOption,
  oneTarget,
  parseOptions,
  reportFailure,
  wantsJson,
  type CliIo,
  type Command,
} from './cli-io';
import { DEVICE_RULES, DeviceRuleWatch, type DeviceRuleViolation } from '../diag';
import { hexDump } from './hex-dump';
import { featureBitByName, nameFeatures } from './inspect';
import { vendorText } from '../diag';
import { openForDriver, type OpenForDriverOptions, type Target } from './targets';

export const QUEUE_USAGE =
  'usage: virtio-mmio queue <dev> --queue N [--out HEX|@FILE] [--in SIZE]... [--features LIST] [--exclude LIST] ' +
  `[--chains K] [--size N] [--timeout MS] [--strict] [--json]

  Bring-up of a device the library may have no driver for (an FPGA or SoC block, a new
  device type): the init sequence of virtio 1.2 §3.1.1 with the features chosen, queue N
  set up, then descriptor chains posted (§2.7.4: the device-readable buffer first, then the
  device-writable ones), the device notified, and for each chain the used length and the
  bytes the device wrote. The device is reset at the end.

  --queue N          the queue index (QueueSel)
  --out HEX|@FILE    device-readable bytes: hex digits (spaces, ':' and a 0x prefix allowed),
                     or @FILE for a file's bytes; one descriptor
  --in SIZE          a device-writable buffer of SIZE bytes (1 to 1 MiB); repeat it for more
                     descriptors. A chain needs --out, --in or both
  --features LIST    features to ask for besides the transport features the library
                     implements (the default asks for those only): comma-separated bit numbers,
                     or names (VIRTIO_F_… or VIRTIO_BLK_F_RO / RO for a type the library knows);
                     the device must offer each
  --exclude LIST     transport features not to ask for, same form (e.g. RING_PACKED,EVENT_IDX)
  --chains K         post K such chains at once (default 1, at most 1024), each with its own buffers
  --size N           the queue size (default QueueNumMax up to 256; split rings: a power of two)
  --timeout MS       how long each chain may take (default 5000)
  --strict           also watch the device for the spec rules selftest --strict checks (exit 1 on
                     a broken MUST)
  --json             one JSON object: device, features, queue, and each chain's used length and
                     the bytes written, in hex
`;

/** What the command works on: an opened target as openForDriver() gives it (tests give their own sim). */
export interface QueueTarget {
  readonly where: string;
  readonly transport: VirtioTransport;
  readonly memory: DmaAllocator;
  close(): void;
}

export interface QueueDependencies {
  /** Opens the named target (default openForDriver); `options.wrapRegisters` is how --strict watches the device. */
  open(target: Target, options: OpenForDriverOptions): QueueTarget;
}

/** One chain's outcome. */
export interface ChainResult {
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

export interface QueueReport {
  where: string;
  deviceId: number;
  device: string;
  version: number;
  vendorId: string;
  /** DeviceFeatures as 0x hex, and the features negotiated by name. */
  offered: string;
  features: string[];
  queue: { index: number; size: number; ring: 'split' | 'packed' };
  chains: ChainResult[];
  interrupts: number;
  strict?: { rules: number; violations: DeviceRuleViolation[] };
  /** Every chain came back, and with --strict no MUST rule was broken. */
  ok: boolean;
}

interface QueuePlan {
  queue: number;
  out?: Buffer;
  ins: number[];
  /** --features and --exclude as given: what a name means depends on the device's type, known once it is open. */
  features?: string;
  exclude?: string;
  chains: number;
  size?: number;
  timeoutMs: number;
  strict: boolean;
  json: boolean;
}

const MAX_BUFFER = 1 << 20;
const MAX_CHAINS = 1024;
const DEFAULT_TIMEOUT_MS = 5000;
const DEFAULT_QUEUE_SIZE = 256;

/** `virtio-mmio queue …` on real targets. */
export const queueCommand: Command = (args, io) => runQueue(args, io, { open: openForDriver });

/**
 * Runs `queue` with the target opened by `deps.open`; resolves with the
 * exit status (0 ok, 1 failed, 2 bad usage). Usage mistakes are found
 * before the device is opened.
 */
export async function runQueue(args: readonly string[], io: CliIo, deps: QueueDependencies): Promise<number> {
  let plan: QueuePlan;
  let target: Target;
  try {
    ({ plan, target } = parse(args, io));
  } catch (error) {
    return reportFailure(io, 'queue', error, { json: wantsJson(args), usage: QUEUE_USAGE });
  }
  try {
    const report = await bringUp(target, plan, deps);
    io.stdout.write(plan.json ? `${JSON.stringify(report, null, 2)}\n` : formatQueue(report));
    return report.ok ? 0 : 1;
  } catch (error) {
    return reportFailure(io, 'queue', error, { json: plan.json });
  }
}

function parse(args: readonly string[], io: CliIo): { plan: QueuePlan; target: Target } {
  const { values, positionals } = parseOptions('queue', {
    args: [...args],
    options: {
      queue: { type: 'string' },
      out: { type: 'string' },
      in: { type: 'string', multiple: true },
      features: { type: 'string' },
      exclude: { type: 'string' },
      chains: { type: 'string' },
      size: { type: 'string' },
      timeout: { type: 'string' },
      strict: { type: 'boolean' },
      json: { type: 'boolean' },
    },
    allowPositionals: true,
  });
  if (values.queue === undefined) throw new UsageError('queue needs --queue N');
  const ins = (values.in ?? []).map((text) => integerOption('in', text, 1, MAX_BUFFER));
  const out = values.out === undefined ? undefined : outBytes(values.out);
  if (!out && ins.length === 0)
    throw new UsageError('queue needs something to post: --out HEX|@FILE, --in SIZE, or both');
  const target = oneTarget(positionals, io, 'queue');
  return {
    target,
    plan: {
      queue: integerOption('queue', values.queue, 0, 0xffff),
      out,
      ins,
      features: values.features,
      exclude: values.exclude,
      chains: values.chains === undefined ? 1 : integerOption('chains', values.chains, 1, MAX_CHAINS),
      size: values.size === undefined ? undefined : integerOption('size', values.size, 1, 32768),
      timeoutMs:
        values.timeout === undefined ? DEFAULT_TIMEOUT_MS : integerOption('timeout', values.timeout, 1, 600_000),
      strict: values.strict ?? false,
      json: values.json ?? false,
    },
  };
}

/** --out: hex digits (whitespace, ':' separators and a 0x prefix allowed) or @FILE. */
function outBytes(text: string): Buffer {
  if (text.startsWith('@')) {
    const data = readFileSync(text.slice(1));
    if (data.length === 0 || data.length > MAX_BUFFER)
      throw new UsageError(`--out ${text}: the file must hold 1 byte to 1 MiB, it holds ${data.length}`);
    return data;
  }
  const digits = text.replace(/^0x/i, '').replace(/[\s:]/g, '');
  if (!/^(?:[0-9a-f]{2})+$/i.test(digits) || digits.length / 2 > MAX_BUFFER)
    throw new UsageError(`--out must be hex bytes (an even number of hex digits, up to 1 MiB) or @FILE, got '${text}'`);
  return Buffer.from(digits, 'hex');
}

/** A --features / --exclude list as a mask: bit numbers (0–63) or names of the device's type. */
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

async function bringUp(target: Target, plan: QueuePlan, deps: QueueDependencies): Promise<QueueReport> {
  let watch: DeviceRuleWatch | undefined;
  const resetTimeoutMs = Math.min(plan.timeoutMs, POLL_TIMEOUT_MAX_MS);
  const opened = deps.open(target, {
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
          requestTimeoutMs: plan.timeoutMs,
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
    const chains = await Promise.all(
      Array.from({ length: plan.chains }, async (_, chain): Promise<ChainResult> => {
        const result: ChainResult = { chain, out: plan.out?.length ?? 0, in: plan.ins };
        const started = performance.now();
        try {
          const { usedLen, written } = await d.send(plan.out, plan.ins, plan.timeoutMs);
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
    const report: QueueReport = {
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
    // The reset (§2.4) before the report is final: what it and the interrupts showed counts with --strict.
    driver = undefined;
    d.close();
    const { interrupts, spuriousInterrupts, unknownInterruptBits } = transport.stats;
    report.interrupts = interrupts;
    if (spuriousInterrupts > 0)
      watch?.note(
        'interrupts-with-cause',
        `${spuriousInterrupts} of ${interrupts + spuriousInterrupts} wake-ups found InterruptStatus 0`,
      );
    if (unknownInterruptBits > 0)
      watch?.note(
        'interrupt-status-defined-bits',
        `${unknownInterruptBits} wake-ups found undefined InterruptStatus bits`,
      );
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

/** Human-readable report: the device, what was negotiated, each chain with a hex dump of what the device wrote. */
export function formatQueue(report: QueueReport): string {
  const lines = [
    `${report.where}: ${report.device}, virtio-mmio Version ${report.version}, vendor ${report.vendorId}`,
    `features offered ${report.offered}; negotiated: ${report.features.length ? report.features.join(', ') : 'none'}`,
    `queue ${report.queue.index}: ${report.queue.size} entries, ${report.queue.ring} ring`,
  ];
  for (const c of report.chains) {
    const posted = `${c.out} bytes out, ${c.in.length ? `${c.in.join(' + ')} bytes in` : 'nothing in'}`;
    if (c.error) {
      lines.push(
        `chain ${c.chain} (${posted}): FAILED ` +
          `${c.error.message.startsWith(`${c.error.code}:`) ? c.error.message : `${c.error.code}: ${c.error.message}`}`,
      );
      continue;
    }
    lines.push(`chain ${c.chain} (${posted}): used len ${c.usedLen} in ${c.ms!.toFixed(1)} ms`);
    const dump = hexDump(Buffer.from(c.hex!, 'hex'), 0n, '  ');
    if (dump) lines.push(dump.trimEnd());
  }
  lines.push(`interrupts: ${report.interrupts}`);
  if (report.strict) {
    const { rules, violations } = report.strict;
    if (violations.length === 0) lines.push(`strict: ${rules} device rules checked, none broken`);
    else {
      lines.push(`strict: ${rules} device rules checked, ${violations.length} broken:`);
      for (const v of violations)
        lines.push(
          `  ${v.level.toUpperCase()} §${v.section} ${v.rule}: ${v.text}\n      ` +
            `${v.count === 1 ? '' : `${v.count} times; first: `}${v.detail}`,
        );
    }
  }
  lines.push(report.ok ? 'ok' : 'FAILED');
  return `${lines.join('\n')}\n`;
}
