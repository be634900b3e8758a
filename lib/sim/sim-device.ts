import { EventfdInterruptSource, type AccessWidth } from '../platform';
import {
  deviceIdName,
  DeviceStatus,
  hasFeature,
  MMIO_MAGIC_VALUE,
  MmioInterrupt,
  MmioRegister,
  mmioRegisterTable,
} from '../spec';
import { invalidArgType, invalidArgValue, outOfRange } from '../errors';
import { DeviceStatusRegisters, offeredFeatures } from './device-status';
import { faultPlan } from './fault-plan';
import { FAULT_CATALOGUE } from './fault-catalogue';
import { Hostile, type HostileBehaviour, type HostileEvent } from './hostile';
import { LateWork } from './late-work';
import { RegisterFaults } from './register-faults';
import { SimQueueRegisters } from './queue-registers';
import { SimRegisterFile } from './sim-register-file';
import { RegisterWindow } from './register-window';
import { SimConfigSpace } from './sim-config-space';
import type { SimViolation } from './sim-model';
import type { SimInterruptLine, SimOptions, SimStats } from './sim-options';
import { SimQueue, type SimQueueState } from './sim-queue';
import { SimInterrupts } from './sim-interrupts';
import { simQueueHost } from './sim-queue-host';
import { StrictObserver } from './strict-observer';
import { StrictRules } from './strict-rules';
import { WorkScheduler } from './work-scheduler';

/** "VIMM" as a little-endian 32-bit word: the VendorID the sim reads by default. */
export const SIM_VENDOR_ID = 0x4d4d4956;

/** Reads pollUntil tries beyond the configured latencies before it gives up. */
const POLL_SPARE_READS = 1024;
const { DRIVER_OK, DEVICE_NEEDS_RESET } = DeviceStatus;
const finite = (n: number): number => (Number.isFinite(n) ? n : 0);

/**
 * A software virtio-mmio device: the register window of §4.2.2 (or the
 * legacy one of §4.2.4) as a RegisterBlock, the device side of the split
 * (§2.7) or, with VIRTIO_F_RING_PACKED, packed (§2.8) rings in DMA memory
 * reached through DeviceMemory (IN_ORDER on both), and an eventfd
 * interrupt line watched by the same epoll path as a UIO fd. The device
 * type is a SimDeviceModel.
 *
 * The honest device is this file (wiring and the public API) with
 * sim-register-file.ts (register dispatch), device-status.ts,
 * sim-interrupts.ts, queue-registers.ts, sim-config-space.ts,
 * work-scheduler.ts and the rings (sim-queue.ts and below). Strict mode (the default) is an
 * observer (strict-observer.ts) told of every access; each broken driver
 * requirement of virtio 1.2 is recorded in `violations` (rule ids:
 * SIM_RULES) and the device carries on as a forgiving device would.
 * Faults (FAULT_CATALOGUE) are resolved once (fault-plan.ts) and act
 * through register-faults.ts, hostile-ring.ts and late-work.ts.
 *
 * Work is done on the event loop: a notification schedules one processing
 * pass (setImmediate, coalesced); process() runs one now. The device
 * consumes buffers and raises interrupts only while DRIVER_OK is set
 * (§2.1.2), in both versions.
 */
export class SimDevice extends RegisterWindow {
  readonly size: number;
  readonly label: string;
  readonly version: 1 | 2;
  /**
   * The interrupt line the driver's transport listens on (raise() is the device side, for tests of spurious wake-ups).
   */
  readonly interrupt: SimInterruptLine;
  readonly stats: SimStats;
  /** Errors of the model (handle() threw or rejected, or returned a bad length); the request completed with len 0. */
  readonly modelErrors: Error[] = [];
  /** How many times each hostile behaviour actually misbehaved (all 0 when hostile mode is off). */
  readonly hostileLog: Readonly<Record<HostileBehaviour, number>>;

  private readonly rules: StrictRules;
  private readonly config: SimConfigSpace;
  private readonly queues: SimQueue[];
  private readonly line: SimInterruptLine;
  private readonly ownsLine: boolean;
  private readonly offered: bigint;
  private readonly pollReads: number;
  private readonly deviceStatus: DeviceStatusRegisters;
  private readonly hostile?: Hostile;
  private readonly faults?: RegisterFaults;
  private readonly late: LateWork;
  private readonly interrupts: SimInterrupts;
  private readonly scheduler = new WorkScheduler((pickUp) => this.run(pickUp));
  private readonly registers: SimRegisterFile;
  private isClosed = false;

  constructor(options: SimOptions) {
    super();
    if (!options || typeof options.memory?.resolve !== 'function')
      throw invalidArgType('SimDevice needs options.memory (a DeviceMemory)');
    const version = options.version ?? 2;
    if (version !== 1 && version !== 2)
      throw invalidArgValue(`version must be 1 or 2, got ${String(version)}`, 'range');
    const inOrderBatch = options.inOrderBatch ?? 1;
    if (!Number.isInteger(inOrderBatch) || inOrderBatch < 1)
      throw outOfRange(`inOrderBatch must be a positive integer, got ${String(options.inOrderBatch)}`);
    this.version = version;
    const model = options.model;
    const hostile = options.hostile ? new Hostile(options.hostile) : undefined;
    if (hostile?.has('device-gone') && typeof options.interrupt?.hangUp !== 'function') {
      throw invalidArgValue(
        'hostile device-gone needs an interrupt line that can hang up (options.interrupt with hangUp(), e.g. a pipe)',
      );
    }
    this.hostile = hostile;
    const plan = faultPlan(options, version, hostile);
    const empty = !model || model.deviceId === 0 || plan.hideDeviceId;
    const table = mmioRegisterTable(version);
    this.label = options.label ?? `sim ${empty ? 'empty slot' : deviceIdName(model!.deviceId)}`;
    const rules = (this.rules = new StrictRules(options.strict ?? true, this.label, options.onViolation));
    const config = (this.config = new SimConfigSpace(
      plan.configBytes,
      model?.configFields,
      rules,
      plan.configGenerationChurn,
      {
        patch: plan.patch,
        patched: (offset) => hostile!.record('config-out-of-range', `config read at offset ${offset} patched`),
        churned: hostile?.has('config-generation-churn')
          ? (generation) => hostile.record('config-generation-churn', `ConfigGeneration read ${generation}`)
          : undefined,
      },
    ));
    // The window ends with the configuration space (rounded up to a word), so a config access past it is a RangeError.
    this.size = MmioRegister.Config + Math.ceil(plan.configBytes.length / 4) * 4;
    const offered = (this.offered = offeredFeatures(version, model?.features ?? 0n, options.transportFeatures, plan));
    const { magic, versionValue } = plan;
    const identityValid = magic === MMIO_MAGIC_VALUE && (versionValue === 1 || versionValue === 2);
    const deviceStatus = (this.deviceStatus = new DeviceStatusRegisters({
      version,
      offered,
      acceptFeatures: options.acceptFeatures,
      hostile,
      ...plan,
    }));
    const observer =
      (options.strict ?? true)
        ? new StrictObserver(
            {
              version,
              state: deviceStatus,
              deviceFeatures: offered,
              magic,
              versionValue,
              identityValid,
              empty,
              registers: table,
              queueReady: (i) => this.queues[i]?.ready,
            },
            rules,
          )
        : undefined;
    this.pollReads =
      POLL_SPARE_READS +
      finite(plan.resetLatency) +
      finite(plan.queueResetLatency) +
      finite(plan.configGenerationChurn);
    const suppressNotifications = options.suppressNotifications ?? false;
    this.ownsLine = options.interrupt === undefined;
    this.line = this.interrupt = options.interrupt ?? new EventfdInterruptSource(`${this.label} interrupt`);
    const stats: SimStats = (this.stats = { notifications: [], interrupts: 0, interruptsSuppressed: 0, requests: 0 });
    const live = (): boolean => (deviceStatus.value & DRIVER_OK) !== 0;
    const interrupts = (this.interrupts = new SimInterrupts(this.line, live, stats));
    const faults = (this.faults =
      hostile && new RegisterFaults(hostile, { interrupts, live, needsReset: () => this.needsReset() }));
    this.late = new LateWork(hostile);

    const sizes = empty ? [] : (faults?.queueSizes(model!.queueSizes) ?? model!.queueSizes);
    const host = simQueueHost({
      memory: options.memory,
      model: () => model!,
      rules,
      suppressNotifications,
      inOrderBatch,
      negotiated: (bit) => this.negotiated(bit),
      usedElement: plan.usedElement,
      stats,
      signal: (bit) => interrupts.signal(bit),
      queueBroken: () => version === 2 && this.needsReset(),
      scheduleFlush: () => this.scheduler.schedule(false),
      modelError: (error) => this.modelErrors.push(error),
      hostile,
      faults,
      late: this.late,
      resetIncomplete: () => deviceStatus.resetPending || (faults?.queueResetNever ?? false),
    });
    const queues = (this.queues = sizes.map((max, index) => new SimQueue(index, max, host)));
    stats.notifications.push(...sizes.map(() => 0));
    const queueRegisters = new SimQueueRegisters(queues, {
      version,
      rules,
      queueResetLatency: plan.queueResetLatency,
      queueResetIgnored: options.queueResetIgnored ?? false,
      driverOk: live,
      negotiated: (bit) => this.negotiated(bit),
      queueReset: (index) => model?.resetQueue?.(index),
      liveBeforeSetup:
        hostile?.options('queue-num-max-bad')?.kind === 'already-live' ? faults!.liveBeforeSetup : undefined,
    });
    this.registers = new SimRegisterFile({
      version,
      table,
      magic,
      versionValue,
      vendorId: options.vendorId ?? SIM_VENDOR_ID,
      identityValid,
      empty,
      model,
      deviceStatus,
      queueRegisters,
      queues,
      config,
      interrupts,
      shmRegions: options.shmRegions ?? [],
      stats,
      suppressNotifications,
      completeOnNotify: options.completeOnNotify ?? false,
      scheduler: this.scheduler,
      observer,
      faults,
      negotiatedFeatures: () => this.negotiatedFeatures,
      negotiated: (bit) => this.negotiated(bit),
      run: (pickUp) => this.run(pickUp),
    });
    this.hostileLog =
      hostile?.log ?? (Object.fromEntries(FAULT_CATALOGUE.map((b) => [b.name, 0])) as Record<HostileBehaviour, number>);
  }

  /** What hostile mode did, in order (the first 1000 events). */
  get hostileEvents(): readonly HostileEvent[] {
    return this.hostile?.events ?? [];
  }

  /**
   * Status reads after a reset write before it reads 0 (Infinity: never). May be changed at any time, e.g. to make a
   * later reset hang.
   */
  get resetLatency(): number {
    return this.deviceStatus.resetLatency;
  }

  set resetLatency(value: number) {
    this.deviceStatus.resetLatency = value;
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
    return this.deviceStatus.value;
  }

  /** The driver features as written (DriverFeatures words). */
  get driverFeatures(): bigint {
    return this.deviceStatus.driverFeatures;
  }

  /**
   * The driver features of every FEATURES_OK the device kept (§3.1.1 step 6; Version 2 only), oldest first; resets do
   * not clear it.
   */
  get acceptedFeatures(): readonly bigint[] {
    return this.deviceStatus.accepted;
  }

  /** Driver features the device also offered: what the rings run with. */
  get negotiatedFeatures(): bigint {
    return this.deviceStatus.driverFeatures & this.offered;
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
    this.interrupts.signal(MmioInterrupt.CONFIG);
  }

  /** Runs pending ring work now: every live queue's new chains, then publishes used elements. */
  process(): void {
    this.assertOpen();
    this.run(true);
  }

  /** Chains held back by hostile late-completion and not done yet. */
  get lateHeld(): number {
    return this.late.held;
  }

  /**
   * Hostile late-completion: does the work of up to `count` held chains now
   * (default all), in a seeded order — the buffers are written, then each
   * chain is used if its ring still lives. Returns how many were done.
   */
  completeLate(count = Infinity): number {
    return this.late.complete(count);
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.scheduler.close();
    for (const queue of this.queues) queue.reset();
    if (this.ownsLine) this.line.close();
  }

  /** pollUntil: once the configured latencies are read through (plus a margin), no further read can match. */
  protected pollReadLimit(): number {
    return this.pollReads;
  }

  protected readAt(offset: number, width: AccessWidth): number {
    return this.registers.read(offset, width);
  }

  protected writeAt(offset: number, width: AccessWidth, value: number): void {
    this.registers.write(offset, width, value);
  }

  private negotiated(bit: number): boolean {
    return hasFeature(this.negotiatedFeatures, bit);
  }

  /** §2.1.2: DEVICE_NEEDS_RESET, announced by a configuration change notification. */
  private needsReset(): void {
    this.deviceStatus.value |= DEVICE_NEEDS_RESET;
    this.interrupts.signal(MmioInterrupt.CONFIG);
  }

  private run(pickUpWork: boolean): void {
    // §2.1.2: no buffers consumed before DRIVER_OK
    if (!(this.deviceStatus.value & DRIVER_OK) || this.faults?.halted) return;
    for (const queue of this.queues) {
      if (pickUpWork) queue.pass();
      else queue.flush();
    }
  }
}
