import { EventfdInterruptSource, type AccessWidth, type DeviceMemory } from '../platform';
import {
  describeFeatures,
  describeStatus,
  deviceIdName,
  DeviceStatus,
  FeatureBit,
  feature,
  features,
  hasFeature,
  MMIO_INTERRUPT_DEFINED,
  MMIO_MAGIC_VALUE,
  MmioInterrupt,
  MmioRegister,
  parseNotificationData,
  SHM_LEN_ABSENT,
} from '../spec';
import { Hostile, HOSTILE_BEHAVIOURS, type HostileBehaviour, type HostileEvent } from './hostile';
import { configPatch, patchBytes } from './hostile-config';
import { mmioRegisterTable, type RegisterEntry } from '../spec';
import { SimQueueRegisters } from './queue-registers';
import { RegisterWindow } from './register-window';
import { SimConfigSpace } from './sim-config-space';
import type { SimDeviceModel, SimViolation } from './sim-model';
import type { SimFaults, SimInterruptLine, SimOptions, SimStats } from './sim-options';
import { SimQueue, type SimQueueHost, type SimQueueState } from './sim-queue';
import { StrictRules } from './strict-rules';
import { invalidArgType, invalidArgValue, outOfRange } from '../errors';

/** "VIMM" as a little-endian 32-bit word: the VendorID the sim reads by default. */
export const SIM_VENDOR_ID = 0x4d4d4956;

/** Reads pollUntil tries beyond the configured latencies before it gives up. */
const POLL_SPARE_READS = 1024;

const { ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK, DEVICE_NEEDS_RESET, FAILED } = DeviceStatus;
/** The status bits a driver sets (§2.1). */
const DRIVER_STATUS_BITS = ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK | FAILED;
/**
 * DEVICE_NEEDS_RESET is the device's: a driver that writes back what it
 * read (read-modify-write) echoes it, which is ignored, not a violation.
 */
const ECHOED_STATUS_BITS = DEVICE_NEEDS_RESET;

function latency(name: string, value: number | undefined): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !(value >= 0) || (!Number.isInteger(value) && value !== Infinity)) {
    throw outOfRange(`${name} must be a non-negative integer or Infinity, got ${String(value)}`);
  }
  return value;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/**
 * A software virtio-mmio device: the register window of §4.2.2 (or the
 * legacy one of §4.2.4) as a RegisterBlock, the device side of the split
 * (§2.7) or, with VIRTIO_F_RING_PACKED, packed (§2.8) rings in DMA memory
 * reached through DeviceMemory (IN_ORDER on both), and an eventfd
 * interrupt line watched by the same epoll path as a UIO fd. The device
 * type is a SimDeviceModel.
 *
 * In strict mode (the default) every access is checked against the
 * driver requirements of the virtio 1.2 specification; each broken rule is
 * recorded in `violations` (rule ids: SIM_RULES) and the device carries on
 * as a forgiving device would, so one test can see several mistakes.
 *
 * Work is done on the event loop: a notification schedules one processing
 * pass (setImmediate, coalesced); process() runs one now. The device
 * consumes buffers and raises interrupts only while DRIVER_OK is set
 * (§2.1.2), in both versions: a legacy driver that makes buffers available
 * earlier sees them used once it sets DRIVER_OK.
 */
export class SimDevice extends RegisterWindow {
  readonly size: number;
  readonly label: string;
  readonly version: 1 | 2;
  /** The interrupt line the driver's transport listens on (raise() is the device side, for tests of spurious wake-ups). */
  readonly interrupt: SimInterruptLine;
  readonly stats: SimStats;
  /** Errors of the model (handle() threw or rejected, or returned a bad length); the request completed with len 0. */
  readonly modelErrors: Error[] = [];

  private readonly model?: SimDeviceModel;
  private readonly empty: boolean;
  private readonly memory: DeviceMemory;
  private readonly table: ReadonlyMap<number, RegisterEntry>;
  private readonly rules: StrictRules;
  private readonly config: SimConfigSpace;
  private readonly queues: SimQueue[];
  private readonly queueRegisters: SimQueueRegisters;
  private readonly line: SimInterruptLine;
  private readonly ownsLine: boolean;
  private readonly offered: bigint;
  private readonly magic: number;
  private readonly versionValue: number;
  private readonly vendorId: number;
  private readonly identityValid: boolean;
  private readonly shmRegions: readonly { id: number; base: bigint; length: bigint }[];
  private readonly acceptFeatures: (driverFeatures: bigint) => boolean;
  /**
   * Status reads after a reset write before it reads 0 (Infinity: never).
   * May be changed at any time, e.g. to make a later reset hang.
   */
  resetLatency: number;
  private readonly pollReads: number;
  private readonly faults?: SimFaults;
  private readonly suppressNotifications: boolean;
  private readonly completeOnNotify: boolean;
  private readonly inOrderBatch: number;
  /** Hostile mode (SimOptions.hostile); absent when off. */
  private readonly hostile?: Hostile;
  /** Hostile bad-identity 'device-id-0': DeviceID reads 0 (the device acts as an empty slot). */
  private readonly hideDeviceId: boolean = false;
  /** Hostile echo-unoffered: feature bits DeviceFeatures shows that the device does not offer. */
  private readonly claimedFeatures: bigint = 0n;
  /** Seeded: the claimed bits show on every other read only (two reads of one word disagree). */
  private readonly claimAlternately: boolean = false;
  private deviceFeatureReads = 0;
  /** Hostile needs-reset / device-gone happened (once per device). */
  private tripped = false;
  /** Hostile needs-reset / device-gone: no ring work until reset (needs-reset) or ever (device-gone). */
  private halted = false;
  /** Hostile device-gone with registers 'all-ones'. */
  private allOnes = false;
  /** Hostile interrupt-storm: re-raises left. */
  private stormLeft = 0;
  private stormBits = 0;
  /** Hostile spurious-interrupts: undefined InterruptStatus bits shown until the next InterruptACK. */
  private unknownBits = 0;

  private statusValue = 0;
  /** What Status reads while a reset is still under way (resetReadsLeft > 0). */
  private statusDuringReset = 0;
  private resetReadsLeft = 0;
  private driverFeaturesValue = 0n;
  private readonly featuresAccepted: bigint[] = [];
  private deviceFeaturesSel?: number;
  private driverFeaturesSel?: number;
  private shmSel = 0;
  private interruptStatus = 0;
  /** Last value written to each control register, for the best effort of narrow writes. */
  private readonly written = new Map<number, number>();
  private readonly probed = { magic: false, version: false, deviceId: false };
  private probeReported = false;
  private immediate?: NodeJS.Immediate;
  private processRequested = false;
  private isClosed = false;

  constructor(options: SimOptions) {
    super();
    if (!options || typeof options.memory?.resolve !== 'function') throw invalidArgType('SimDevice needs options.memory (a DeviceMemory)');
    const version = options.version ?? 2;
    if (version !== 1 && version !== 2) throw invalidArgValue(`version must be 1 or 2, got ${String(version)}`, 'range');
    this.version = version;
    this.model = options.model;
    const hostile = options.hostile ? new Hostile(options.hostile) : undefined;
    this.hostile = hostile;
    this.hideDeviceId = hostile?.options('bad-identity')?.kind === 'device-id-0';
    this.empty = !this.model || this.model.deviceId === 0 || this.hideDeviceId;
    this.memory = options.memory;
    this.table = mmioRegisterTable(version);
    this.label = options.label ?? `sim ${this.empty ? 'empty slot' : deviceIdName(this.model!.deviceId)}`;
    this.rules = new StrictRules(options.strict ?? true, this.label, options.onViolation);
    let configBytes = this.model?.config ?? new Uint8Array(0);
    const shortWindow = hostile?.options('config-window-short');
    if (shortWindow) {
      const { configBytes: n } = shortWindow;
      if (!Number.isInteger(n) || n < 0 || n > configBytes.length) throw outOfRange(`config-window-short configBytes must be an integer in [0, ${configBytes.length}], got ${String(n)}`);
      configBytes = configBytes.subarray(0, n);
    }
    const patch = hostile ? configPatch(hostile) : undefined;
    if (patch && (patch.offset < 0 || patch.offset + patch.width > configBytes.length)) {
      throw outOfRange(`config-out-of-range: ${patch.width} bytes at config offset ${patch.offset} lie outside the ${configBytes.length}-byte config space`);
    }
    const churn = hostile?.has('config-generation-churn')
      ? (hostile.options('config-generation-churn')?.reads ?? Infinity)
      : options.configGenerationChurn;
    this.config = new SimConfigSpace(configBytes, this.model?.configFields, this.rules, latency('configGenerationChurn', churn), {
      patch: patch && { offset: patch.offset, bytes: patchBytes(patch) },
      patched: (offset) => hostile!.record('config-out-of-range', `config read at offset ${offset} patched`),
      churned: hostile?.has('config-generation-churn') ? (generation) => hostile.record('config-generation-churn', `ConfigGeneration read ${generation}`) : undefined,
    });
    if (shortWindow) hostile!.record('config-window-short', `the window ends ${configBytes.length} bytes into the config space of ${this.model?.config.length ?? 0}`);
    // The window ends with the configuration space (rounded up to a word), so a config access past it is a RangeError.
    this.size = MmioRegister.Config + Math.ceil(configBytes.length / 4) * 4;

    const transport =
      options.transportFeatures ??
      (version === 2
        ? features(FeatureBit.VERSION_1, FeatureBit.INDIRECT_DESC, FeatureBit.EVENT_IDX, FeatureBit.RING_RESET, FeatureBit.NOTIFICATION_DATA)
        : features(FeatureBit.INDIRECT_DESC, FeatureBit.EVENT_IDX));
    // A legacy device has no packed ring: the legacy interface lays queues out by QueuePFN (§4.2.4, §2.7.2), so bit 34 is never offered.
    this.offered = ((this.model?.features ?? 0n) | transport | (patch?.features ?? 0n)) & (version === 1 ? ~feature(FeatureBit.RING_PACKED) : -1n);
    const identity = hostile?.options('bad-identity')?.kind;
    const featuresBad = hostile?.options('features-bad')?.kind;
    if (featuresBad === 'version-1-missing') this.offered &= ~feature(FeatureBit.VERSION_1);
    if (featuresBad === 'echo-unoffered') {
      // Reserved transport bits (§6: 41–49 are not defined by virtio 1.2, 41 is ADMIN_VQ in 1.3): a nonempty seeded subset of 42–49.
      this.claimedFeatures = BigInt(hostile!.int(1, 255)) << 42n;
      this.claimAlternately = hostile!.random() < 0.5;
    }
    this.magic = options.magic ?? (identity === 'magic' ? (MMIO_MAGIC_VALUE ^ hostile!.int(1, 0xffff_ffff)) >>> 0 : MMIO_MAGIC_VALUE);
    this.versionValue = options.versionValue ?? (identity === 'version-3' ? 3 : version);
    this.identityValid = this.magic === MMIO_MAGIC_VALUE && (this.versionValue === 1 || this.versionValue === 2);
    this.vendorId = options.vendorId ?? SIM_VENDOR_ID;
    this.shmRegions = options.shmRegions ?? [];
    const honestAccept =
      options.acceptFeatures ??
      ((driver: bigint) => (driver & ~(this.offered | this.claimedFeatures)) === 0n && (version === 1 || hasFeature(driver, FeatureBit.VERSION_1)));
    this.acceptFeatures =
      featuresBad === 'features-ok-dropped'
        ? (driver) => {
            hostile!.record('features-bad', `FEATURES_OK dropped for driver features ${describeFeatures(driver)}`);
            return false;
          }
        : honestAccept;
    const resetNever = hostile?.options('reset-never-completes')?.kind;
    this.resetLatency = resetNever === 'device' ? Infinity : latency('resetLatency', options.resetLatency);
    const queueResetLatency = resetNever === 'queue' ? Infinity : latency('queueResetLatency', options.queueResetLatency);
    const finite = (n: number): number => (Number.isFinite(n) ? n : 0);
    this.pollReads = POLL_SPARE_READS + finite(this.resetLatency) + finite(queueResetLatency) + finite(options.configGenerationChurn ?? 0);
    this.faults = options.faults;
    this.suppressNotifications = options.suppressNotifications ?? false;
    this.completeOnNotify = options.completeOnNotify ?? false;
    this.inOrderBatch = options.inOrderBatch ?? 1;
    if (!Number.isInteger(this.inOrderBatch) || this.inOrderBatch < 1) {
      throw outOfRange(`inOrderBatch must be a positive integer, got ${String(options.inOrderBatch)}`);
    }

    const host = this.queueHost();
    const sizes = this.empty ? [] : this.hostileQueueSizes(this.model!.queueSizes);
    this.queues = sizes.map((max, index) => new SimQueue(index, max, host));
    this.queueRegisters = new SimQueueRegisters(this.queues, {
      version,
      rules: this.rules,
      queueResetLatency,
      driverOk: () => (this.statusValue & DRIVER_OK) !== 0,
      negotiated: (bit) => this.negotiated(bit),
      queueReset: (index) => this.model?.resetQueue?.(index),
      liveBeforeSetup:
        hostile?.options('queue-num-max-bad')?.kind === 'already-live'
          ? (index) => {
              if (!hostile.targets(index)) return false;
              hostile.record('queue-num-max-bad', `queue ${index} reads as live before setup`, index);
              return true;
            }
          : undefined,
    });
    this.stats = { notifications: sizes.map(() => 0), interrupts: 0, interruptsSuppressed: 0, requests: 0 };

    if (hostile?.has('device-gone') && typeof options.interrupt?.hangUp !== 'function') {
      throw invalidArgValue('hostile device-gone needs an interrupt line that can hang up (options.interrupt with hangUp(), e.g. a pipe)');
    }
    this.ownsLine = options.interrupt === undefined;
    this.line = options.interrupt ?? new EventfdInterruptSource(`${this.label} interrupt`);
    this.interrupt = this.line;
    this.hostileLog = hostile?.log ?? (Object.fromEntries(HOSTILE_BEHAVIOURS.map((b) => [b.name, 0])) as Record<HostileBehaviour, number>);
  }

  /** How many times each hostile behaviour actually misbehaved (all 0 when hostile mode is off). */
  readonly hostileLog: Readonly<Record<HostileBehaviour, number>>;

  /** What hostile mode did, in order (the first 1000 events). */
  get hostileEvents(): readonly HostileEvent[] {
    return this.hostile?.events ?? [];
  }

  /** Hostile queue-num-max-bad 'zero' and 'not-power-of-two': the QueueNumMax values the device shows. */
  private hostileQueueSizes(sizes: readonly number[]): readonly number[] {
    const hostile = this.hostile;
    const option = hostile?.options('queue-num-max-bad');
    if (!hostile || !option || option.kind === 'already-live') return sizes;
    return sizes.map((max, index) => {
      if (!hostile.targets(index) || max === 0) return max;
      if (option.kind === 'zero') return 0;
      if (option.value !== undefined) return option.value;
      // Above half of a power-of-two maximum and below it, no value is a power of two.
      const value = max < 4 ? 3 : hostile.int(Math.floor(max / 2) + 1, max - 1);
      return isPowerOfTwoNumber(value) ? value - 1 : value;
    });
  }

  get closed(): boolean {
    return this.isClosed;
  }

  get violations(): readonly SimViolation[] {
    return this.rules.violations;
  }

  clearViolations(): void {
    this.rules.clear();
  }

  /** The device status as the device holds it (Status may read an older value while a reset is under way). */
  get status(): number {
    return this.statusValue;
  }

  /** The driver features as written (DriverFeatures words). */
  get driverFeatures(): bigint {
    return this.driverFeaturesValue;
  }

  /** The driver features of every FEATURES_OK the device kept (§3.1.1 step 6; Version 2 only), oldest first; resets do not clear it. */
  get acceptedFeatures(): readonly bigint[] {
    return this.featuresAccepted;
  }

  /** Driver features the device also offered: what the rings run with. */
  get negotiatedFeatures(): bigint {
    return this.driverFeaturesValue & this.offered;
  }

  /** Device features offered (model bits and transport bits). */
  get deviceFeatures(): bigint {
    return this.offered;
  }

  queueState(index: number): SimQueueState {
    const queue = this.queues[index];
    if (!queue) throw invalidArgValue(`${this.label} has no queue ${index} (it has ${this.queues.length})`, 'range');
    return queue.state();
  }

  /**
   * A configuration change (§4.2.2.1, §3.2.1): `mutate` edits the config
   * bytes, ConfigGeneration changes, and once DRIVER_OK is set the
   * Configuration Change Notification (InterruptStatus bit 1) is raised.
   */
  raiseConfigChange(mutate?: (config: Uint8Array) => void): void {
    this.assertOpen();
    mutate?.(this.config.bytes);
    this.config.changed();
    this.signal(MmioInterrupt.CONFIG);
  }

  /** Runs pending ring work now: every live queue's new chains, then publishes used elements. */
  process(): void {
    this.assertOpen();
    this.run(true);
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = undefined;
    for (const queue of this.queues) queue.reset();
    if (this.ownsLine) this.line.close();
  }

  /** pollUntil: once the configured latencies are read through (plus a margin), no further read can match. */
  protected pollReadLimit(): number {
    return this.pollReads;
  }

  // --- Register dispatch -------------------------------------------------

  protected readAt(offset: number, width: AccessWidth): number {
    if (this.allOnes) return width === 4 ? 0xffff_ffff : width === 2 ? 0xffff : 0xff;
    const register = offset >= MmioRegister.Config ? offset : offset & ~3;
    if (!this.admits(register, true)) return 0;
    if (offset >= MmioRegister.Config) return this.config.read(offset - MmioRegister.Config, width);
    if (width === 4) return this.readRegister(offset);
    this.rules.record('register-width', `${width * 8}-bit read at ${hex(offset)} (${this.nameOf(register)}): control registers are read 32 bits wide`);
    const shift = 8 * (offset & 3);
    return (this.readRegister(register) >>> shift) & (width === 1 ? 0xff : 0xffff);
  }

  protected writeAt(offset: number, width: AccessWidth, value: number): void {
    if (this.allOnes) return; // the device is gone: writes go nowhere
    const register = offset >= MmioRegister.Config ? offset : offset & ~3;
    if (!this.admits(register, false)) return;
    // Setting FAILED is how a driver gives up on a reset that does not complete; a new reset is fine too.
    const givingUp = register === MmioRegister.Status && (value === 0 || (value & FAILED) !== 0);
    if (this.resetReadsLeft > 0 && !givingUp) {
      this.rules.record('reset-not-complete', `write at ${hex(offset)} while the reset is under way (Status has not read 0 yet)`);
    }
    if (offset >= MmioRegister.Config) {
      this.writeConfig(offset - MmioRegister.Config, width, value);
      return;
    }
    if (width === 4) {
      this.writeRegister(offset, value);
      return;
    }
    this.rules.record('register-width', `${width * 8}-bit write at ${hex(offset)} (${this.nameOf(register)}): control registers are written 32 bits wide`);
    // Best effort: the other bytes keep what was last written there.
    const shift = 8 * (offset & 3);
    const mask = (width === 1 ? 0xff : 0xffff) << shift;
    const base = register === MmioRegister.Status ? this.statusValue : (this.written.get(register) ?? 0);
    this.writeRegister(register, ((base & ~mask) | (value << shift)) >>> 0);
  }

  /**
   * Discovery rules: MagicValue and Version first (§4.2.3.1.1), nothing
   * else on a device whose MagicValue or Version is wrong (§4.2.2.2), and
   * only DeviceID more on an empty slot.
   */
  private admits(offset: number, read: boolean): boolean {
    if (read && offset === MmioRegister.MagicValue) {
      this.probed.magic = true;
      return true;
    }
    if (read && offset === MmioRegister.Version) {
      this.probed.version = true;
      return true;
    }
    const what = `${read ? 'read' : 'write'} at ${hex(offset)} (${this.nameOf(offset)})`;
    if (!this.identityValid) {
      this.rules.record('ignored-device-access', `${what} on a device with MagicValue ${hex(this.magic)} and Version ${this.versionValue}, which the driver must ignore`);
      return false;
    }
    if (read && offset === MmioRegister.DeviceID) {
      this.probed.deviceId = true;
      return true;
    }
    if (this.empty) {
      this.rules.record('empty-slot-access', `${what} on an empty slot (DeviceID 0)`);
      return false;
    }
    const { magic, version, deviceId } = this.probed;
    if (!(magic && version && deviceId) && !this.probeReported) {
      this.probeReported = true;
      const missing = [!magic && 'MagicValue', !version && 'Version', !deviceId && 'DeviceID'].filter(Boolean).join(', ');
      this.rules.record('init-without-probe', `${what} before the driver read ${missing}`);
    }
    return true;
  }

  private nameOf(offset: number): string {
    if (offset >= MmioRegister.Config) return `config offset ${offset - MmioRegister.Config}`;
    return this.table.get(offset & ~3)?.name ?? 'no register';
  }

  private readRegister(offset: number): number {
    const entry = this.table.get(offset);
    if (!entry) {
      this.rules.record('undefined-register', `read at ${hex(offset)}: no register there in the Version ${this.version} layout`);
      return 0;
    }
    if (entry.direction === 'W') {
      this.rules.record('read-write-only', `read of the write-only register ${entry.name}`);
      return 0;
    }
    const R = MmioRegister;
    switch (offset) {
      case R.MagicValue:
        if (this.magic !== MMIO_MAGIC_VALUE && this.hostile) this.hostile.record('bad-identity', `MagicValue read ${hex(this.magic)}`);
        return this.magic;
      case R.Version:
        if (this.hostile?.options('bad-identity')?.kind === 'version-3') this.hostile.record('bad-identity', `Version read ${this.versionValue}`);
        return this.versionValue;
      case R.DeviceID:
        if (this.hideDeviceId) {
          this.hostile!.record('bad-identity', 'DeviceID read 0');
          return 0;
        }
        return this.model?.deviceId ?? 0;
      case R.VendorID:
        return this.vendorId;
      case R.DeviceFeatures:
        return this.readDeviceFeatures();
      case R.QueueNumMax:
      case R.QueueReady:
      case R.QueuePFN:
      case R.QueueReset:
        return this.hostileQueueRead(offset, this.queueRegisters.read(offset));
      case R.InterruptStatus:
        return this.interruptStatus | this.unknownBits;
      case R.Status:
        return this.readStatus();
      case R.SHMLenLow:
        return low(this.shmRegion()?.length ?? SHM_LEN_ABSENT);
      case R.SHMLenHigh:
        return high(this.shmRegion()?.length ?? SHM_LEN_ABSENT);
      case R.SHMBaseLow:
        return low(this.shmRegion()?.base ?? SHM_LEN_ABSENT);
      case R.SHMBaseHigh:
        return high(this.shmRegion()?.base ?? SHM_LEN_ABSENT);
      case R.ConfigGeneration:
        return this.config.readGeneration();
      default:
        return 0;
    }
  }

  private writeRegister(offset: number, value: number): void {
    const entry = this.table.get(offset);
    if (!entry) {
      this.rules.record('undefined-register', `write of ${hex(value)} at ${hex(offset)}: no register there in the Version ${this.version} layout`);
      return;
    }
    if (entry.direction === 'R') {
      this.rules.record('write-read-only', `write of ${hex(value)} to the read-only register ${entry.name}`);
      return;
    }
    this.written.set(offset, value);
    const R = MmioRegister;
    switch (offset) {
      case R.DeviceFeaturesSel:
        this.deviceFeaturesSel = value;
        return;
      case R.DriverFeaturesSel:
        this.driverFeaturesSel = value;
        return;
      case R.DriverFeatures:
        this.writeDriverFeatures(value);
        return;
      case R.QueueNotify:
        this.writeQueueNotify(value);
        return;
      case R.InterruptACK:
        this.writeInterruptAck(value);
        return;
      case R.Status:
        this.writeStatus(value);
        return;
      case R.SHMSel:
        this.shmSel = value;
        return;
      default:
        // QueueSel, QueueNum, QueueReady, the queue addresses, QueueReset; GuestPageSize, QueueAlign, QueuePFN.
        this.queueRegisters.write(offset, value);
    }
  }

  // --- Features (§2.2, §4.2.2) -------------------------------------------

  private readDeviceFeatures(): number {
    if (this.deviceFeaturesSel === undefined) {
      this.rules.record('device-features-sel-unset', 'DeviceFeatures read before any DeviceFeaturesSel write');
    }
    const sel = this.deviceFeaturesSel ?? 0;
    if (sel > 3) return 0;
    const honest = low(this.offered >> BigInt(32 * sel));
    const claimed = low(this.claimedFeatures >> BigInt(32 * sel));
    // Hostile echo-unoffered: the claimed bits show on every read, or (seeded) on every other one, so two reads disagree.
    if (claimed === 0 || (this.claimAlternately && this.deviceFeatureReads++ % 2 === 1)) return honest;
    this.hostile!.record('features-bad', `DeviceFeatures word ${sel} read with unoffered bits ${hex(claimed)}`);
    return (honest | claimed) >>> 0;
  }

  private writeDriverFeatures(value: number): void {
    if (this.driverFeaturesSel === undefined) {
      this.rules.record('driver-features-sel-unset', `DriverFeatures ${hex(value)} written before any DriverFeaturesSel write`);
    }
    const sel = this.driverFeaturesSel ?? 0;
    const fixedBy = this.version === 2 ? FEATURES_OK : DRIVER_OK;
    if (this.statusValue & fixedBy) {
      this.rules.record('driver-features-too-late', `DriverFeatures word ${sel} written after ${describeStatus(fixedBy)}; the write is ignored`);
      return;
    }
    if (!(this.statusValue & DRIVER)) {
      this.rules.record('features-before-driver', `DriverFeatures word ${sel} written before the DRIVER status bit was set (status ${describeStatus(this.statusValue)})`);
    }
    if (sel > 3) {
      if (value !== 0) this.rules.record('feature-not-offered', `DriverFeatures word ${sel} = ${hex(value)}: no features exist there`);
      return;
    }
    const shift = BigInt(32 * sel);
    const word = BigInt(value) << shift;
    const unoffered = word & ~this.offered;
    if (unoffered !== 0n) {
      this.rules.record('feature-not-offered', `DriverFeatures accepts features the device did not offer: ${describeFeatures(unoffered)}`);
    }
    this.driverFeaturesValue = (this.driverFeaturesValue & ~(0xffff_ffffn << shift)) | word;
  }

  private negotiated(bit: number): boolean {
    return hasFeature(this.negotiatedFeatures, bit);
  }

  // --- Device status (§2.1, §3.1) -----------------------------------------

  private readStatus(): number {
    if (this.resetReadsLeft > 0) {
      this.resetReadsLeft--;
      if (this.hostile?.options('reset-never-completes')?.kind === 'device') this.hostile.record('reset-never-completes', `Status read ${hex(this.statusDuringReset)} after the reset`);
      return this.statusDuringReset;
    }
    return this.statusValue;
  }

  private writeStatus(value: number): void {
    this.writeStatusHonestly(value);
    if (this.hostile) this.afterStatusWrite(value);
  }

  private writeStatusHonestly(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    const before = this.statusValue;
    const cleared = before & ~value & ~ECHOED_STATUS_BITS;
    if (cleared) this.rules.record('status-bit-cleared', `Status write ${describeStatus(value)} clears ${describeStatus(cleared)} (only a reset clears status bits)`);
    const added = value & ~before;
    const reserved = added & ~(DRIVER_STATUS_BITS | ECHOED_STATUS_BITS);
    if (reserved) this.rules.record('status-reserved-bit', `Status write sets ${hex(reserved)}, which is not a driver status bit; ignored`);
    const adding = added & DRIVER_STATUS_BITS;
    if (before & FAILED && adding & ~FAILED) {
      this.rules.record('status-after-failed', `Status write sets ${describeStatus(adding)} after FAILED, without a reset first`);
    }
    let next = before | adding;
    const order = (bit: number, needs: number): void => {
      if (adding & bit && !(next & needs)) {
        this.rules.record('status-order', `${describeStatus(bit)} set before ${describeStatus(needs)} (status was ${describeStatus(before)})`);
      }
    };
    order(DRIVER, ACKNOWLEDGE);
    order(FEATURES_OK, DRIVER);
    order(DRIVER_OK, DRIVER);
    if (adding & FEATURES_OK) {
      if (this.version === 1) {
        this.rules.record('legacy-features-ok', 'FEATURES_OK set on a legacy (Version 1) device, which has no such step');
      } else {
        if (hasFeature(this.offered, FeatureBit.VERSION_1) && !hasFeature(this.driverFeaturesValue, FeatureBit.VERSION_1)) {
          this.rules.record('version-1-not-accepted', 'FEATURES_OK set without accepting the offered VIRTIO_F_VERSION_1');
        }
        // The device's decision (§3.1.1 step 6): a refused set does not keep FEATURES_OK.
        if (!this.acceptFeatures(this.driverFeaturesValue)) next &= ~FEATURES_OK;
        else this.featuresAccepted.push(this.driverFeaturesValue);
      }
    }
    if (adding & DRIVER_OK && this.version === 2 && !(next & FEATURES_OK)) {
      this.rules.record('driver-ok-without-features-ok', 'DRIVER_OK set while FEATURES_OK is not set');
    }
    this.statusValue = next;
    if (adding & DRIVER_OK) {
      this.model?.driverOk?.(this.negotiatedFeatures);
      // Buffers made available before DRIVER_OK are picked up now.
      if (!this.suppressNotifications) this.schedule(true);
    }
  }

  /** Device reset (§2.4, §4.2.2.1): status, features, selectors, queues and InterruptStatus to their initial values. */
  private reset(): void {
    if (this.resetLatency > 0) {
      // Until the reset completes Status reads what it read before, never 0:
      // a device reset from status 0 shows DEVICE_NEEDS_RESET meanwhile.
      if (this.resetReadsLeft === 0) this.statusDuringReset = this.statusValue || DEVICE_NEEDS_RESET;
      this.resetReadsLeft = this.resetLatency;
    }
    this.statusValue = 0;
    this.driverFeaturesValue = 0n;
    this.deviceFeaturesSel = undefined;
    this.driverFeaturesSel = undefined;
    this.shmSel = 0;
    this.interruptStatus = 0;
    this.unknownBits = 0;
    this.stormLeft = 0;
    // A reset clears DEVICE_NEEDS_RESET's halt; a gone device stays gone.
    if (!this.allOnes && !this.hostile?.has('device-gone')) this.halted = false;
    this.queueRegisters.reset();
    this.model?.reset?.();
  }

  // --- Notifications and interrupts (§4.2.3.3, §4.2.3.4) ------------------

  private writeQueueNotify(value: number): void {
    const data = this.negotiated(FeatureBit.NOTIFICATION_DATA) ? parseNotificationData(value) : undefined;
    const index = data ? data.queueIndex : value;
    if (this.version === 2 && !(this.statusValue & DRIVER_OK)) {
      this.rules.record('notify-before-driver-ok', `QueueNotify for queue ${index} before DRIVER_OK`);
    }
    const queue = this.queues[index];
    if (!queue || !queue.ready) {
      this.rules.record('notify-queue-not-ready', `QueueNotify for queue ${index}, which ${queue ? 'is not ready' : 'does not exist'}`);
      if (queue) this.stats.notifications[index]++;
      return;
    }
    this.stats.notifications[index]++;
    if (data) queue.checkNotificationData(data.nextOff, data.nextWrap);
    if (this.suppressNotifications) return;
    if (this.completeOnNotify) this.run(true);
    else this.schedule(true);
  }

  private writeInterruptAck(value: number): void {
    const undefinedBits = value & ~MMIO_INTERRUPT_DEFINED;
    if (undefinedBits) this.rules.record('interrupt-ack-undefined-bits', `InterruptACK ${hex(value)} sets undefined bits ${hex(undefinedBits)}`);
    this.interruptStatus &= ~value;
    if (this.hostile) this.afterInterruptAck(value);
  }

  /** Sets an InterruptStatus bit and raises the line; nothing before DRIVER_OK (§2.1.2). */
  private signal(bit: number): boolean {
    if (!(this.statusValue & DRIVER_OK)) return false;
    this.interruptStatus |= bit;
    this.stats.interrupts++;
    if (!this.line.closed) this.line.raise();
    return true;
  }

  // --- Configuration space (§4.2.2) ---------------------------------------

  private writeConfig(offset: number, width: AccessWidth, value: number): void {
    if (this.version === 2 && !(this.statusValue & FEATURES_OK)) {
      this.rules.record('config-write-before-features-ok', `config write at ${hex(MmioRegister.Config + offset)} before FEATURES_OK`);
    }
    if (this.config.write(offset, width, value)) this.model?.configWritten?.(offset, width);
  }

  private shmRegion(): { id: number; base: bigint; length: bigint } | undefined {
    return this.shmRegions.find((region) => region.id === this.shmSel);
  }

  // --- Ring work -----------------------------------------------------------

  /** Coalesces work into one pass on the next turn of the event loop. */
  private schedule(pickUpWork: boolean): void {
    if (pickUpWork) this.processRequested = true;
    if (this.immediate || this.isClosed) return;
    this.immediate = setImmediate(() => {
      this.immediate = undefined;
      const pickUp = this.processRequested;
      this.processRequested = false;
      if (!this.isClosed) this.run(pickUp);
    });
  }

  private run(pickUpWork: boolean): void {
    if (!(this.statusValue & DRIVER_OK) || this.halted) return; // §2.1.2: no buffers consumed before DRIVER_OK
    for (const queue of this.queues) {
      if (pickUpWork) queue.pass();
      else queue.flush();
    }
  }

  private queueHost(): SimQueueHost {
    const device = this; // for the getters below, whose `this` is the host object
    return {
      memory: this.memory,
      get model() {
        return device.model!;
      },
      rules: this.rules,
      suppressNotifications: this.suppressNotifications,
      get indirectDesc() {
        return device.negotiated(FeatureBit.INDIRECT_DESC);
      },
      get eventIdx() {
        return device.negotiated(FeatureBit.EVENT_IDX);
      },
      get packed() {
        return device.negotiated(FeatureBit.RING_PACKED);
      },
      get inOrder() {
        return device.negotiated(FeatureBit.IN_ORDER);
      },
      inOrderBatch: this.inOrderBatch,
      rewriteUsed: this.faults?.usedElement ? (queue, element) => this.faults!.usedElement!(queue, element) : undefined,
      notifyUsed: () => {
        this.signal(MmioInterrupt.VRING);
      },
      notifySuppressed: () => {
        this.stats.interruptsSuppressed++;
      },
      queueBroken: () => {
        // §2.1.2: DEVICE_NEEDS_RESET, announced by a configuration change notification.
        if (this.version === 2) {
          this.statusValue |= DEVICE_NEEDS_RESET;
          this.signal(MmioInterrupt.CONFIG);
        }
      },
      scheduleFlush: () => this.schedule(false),
      countRequest: () => {
        this.stats.requests++;
      },
      modelError: (error) => {
        this.modelErrors.push(error);
      },
      hostile: this.hostile,
      get halted() {
        return device.halted;
      },
      haltAtTake: (queue) => this.haltAtTake(queue),
      holdLate: (work) => this.holdLate(work),
      // A device whose reset has not completed (Status not yet 0, or QueueReset never 0) goes on with the work it took.
      resetIncomplete: () => this.resetReadsLeft > 0 || this.hostile?.options('reset-never-completes')?.kind === 'queue',
    };
  }

  /** Hostile late-completion: chains taken and not yet done. */
  private readonly lateWork: (() => void)[] = [];

  /** Chains held back by hostile late-completion and not done yet. */
  get lateHeld(): number {
    return this.lateWork.length;
  }

  /**
   * Hostile late-completion: does the work of up to `count` held chains now
   * (default all), in a seeded order — the buffers are written, then each
   * chain is used if its ring still lives. Returns how many were done.
   */
  completeLate(count = Infinity): number {
    let done = 0;
    while (done < count && this.lateWork.length > 0) {
      const at = this.hostile ? this.hostile.int(0, this.lateWork.length - 1) : 0;
      const [work] = this.lateWork.splice(at, 1);
      work();
      done++;
    }
    return done;
  }

  private holdLate(work: () => void): void {
    const delayMs = this.hostile?.options('late-completion')?.delayMs;
    if (delayMs === undefined) {
      this.lateWork.push(work);
      return;
    }
    const timer = setTimeout(() => {
      const at = this.lateWork.indexOf(work);
      if (at < 0) return;
      this.lateWork.splice(at, 1);
      work();
    }, this.hostile!.int(delayMs, 2 * delayMs));
    // A held chain must not keep a process alive that has nothing else to do.
    timer.unref();
    this.lateWork.push(work);
  }

  // --- Hostile mode (hostile.ts) -------------------------------------------

  /** needs-reset and device-gone start when a chain is taken mid-I/O (once `after` requests completed). */
  private haltAtTake(queue: number): boolean {
    const hostile = this.hostile!;
    if (this.tripped) return false;
    if (hostile.ringLive('needs-reset', queue)) {
      this.tripped = true;
      this.halted = true;
      hostile.record('needs-reset', `DEVICE_NEEDS_RESET set while taking a chain from queue ${queue}`, queue);
      // §2.1.2: DEVICE_NEEDS_RESET, announced by a configuration change notification.
      this.statusValue |= DEVICE_NEEDS_RESET;
      this.signal(MmioInterrupt.CONFIG);
      return true;
    }
    if (hostile.ringLive('device-gone', queue)) {
      this.tripped = true;
      this.halted = true;
      const ones = hostile.options('device-gone')?.registers === 'all-ones';
      hostile.record('device-gone', `interrupt line hung up${ones ? ', registers read all ones' : ''} while taking a chain from queue ${queue}`, queue);
      this.line.hangUp!();
      this.allOnes = ones;
      return true;
    }
    return false;
  }

  /** QueueNumMax/QueueReady/QueuePFN/QueueReset reads that hostile mode changed are logged. */
  private hostileQueueRead(offset: number, value: number): number {
    const hostile = this.hostile;
    const queue = this.queueRegisters.selected;
    if (!hostile || !queue || !hostile.targets(queue.index)) return value;
    const kind = hostile.options('queue-num-max-bad')?.kind;
    if (offset === MmioRegister.QueueNumMax && (kind === 'zero' || kind === 'not-power-of-two') && queue.numMax !== this.model!.queueSizes[queue.index]) {
      hostile.record('queue-num-max-bad', `QueueNumMax of queue ${queue.index} read ${value}`, queue.index);
    }
    if (offset === MmioRegister.QueueReset && value === 1 && hostile.options('reset-never-completes')?.kind === 'queue') {
      hostile.record('reset-never-completes', `QueueReset of queue ${queue.index} read 1`, queue.index);
    }
    return value;
  }

  /** interrupt-when-not-live: every Status write that leaves DRIVER_OK clear (a reset too) is followed by an interrupt; interrupt-storm starts at DRIVER_OK. */
  private afterStatusWrite(value: number): void {
    const hostile = this.hostile!;
    const live = (this.statusValue & DRIVER_OK) !== 0;
    if (!live && hostile.has('interrupt-when-not-live') && !this.line.closed) {
      const bits = hostile.pick([MmioInterrupt.VRING, MmioInterrupt.CONFIG, MmioInterrupt.VRING | MmioInterrupt.CONFIG]);
      this.interruptStatus |= bits;
      this.line.raise();
      hostile.record('interrupt-when-not-live', `InterruptStatus ${hex(bits)} raised after Status write ${describeStatus(value)}`);
    }
    if (live && value & DRIVER_OK && hostile.has('interrupt-storm') && this.stormLeft === 0) {
      this.stormLeft = hostile.options('interrupt-storm')?.limit ?? Infinity;
      this.stormBits = hostile.options('interrupt-storm')?.bits ?? hostile.pick([MmioInterrupt.VRING, MmioInterrupt.VRING, MmioInterrupt.VRING | MmioInterrupt.CONFIG]);
      this.storm();
    }
  }

  /** interrupt-storm: the acknowledged interrupt comes straight back; spurious-interrupts: a wake-up with nothing (or only undefined bits) to report. */
  private afterInterruptAck(value: number): void {
    const hostile = this.hostile!;
    this.unknownBits = 0;
    if (!(value & MMIO_INTERRUPT_DEFINED) || this.line.closed || !(this.statusValue & DRIVER_OK)) return;
    if (this.stormLeft > 0) {
      this.storm();
      return;
    }
    if (hostile.has('spurious-interrupts')) {
      const variant = hostile.options('spurious-interrupts')?.variant ?? hostile.pick(['zero', 'unknown-bits'] as const);
      if (variant === 'unknown-bits') this.unknownBits = (hostile.int(1, 63) << 2) & ~MMIO_INTERRUPT_DEFINED;
      else if (this.interruptStatus !== 0) return;
      this.line.raise();
      hostile.record('spurious-interrupts', `line raised with InterruptStatus ${hex(this.interruptStatus | this.unknownBits)}`);
    }
  }

  private storm(): void {
    this.stormLeft--;
    this.interruptStatus |= this.stormBits;
    this.line.raise();
    this.hostile!.record('interrupt-storm', `InterruptStatus ${hex(this.stormBits)} raised with no used buffers`);
  }
}

const low = (value: bigint): number => Number(value & 0xffff_ffffn);
const isPowerOfTwoNumber = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;
const high = (value: bigint): number => Number((value >> 32n) & 0xffff_ffffn);
