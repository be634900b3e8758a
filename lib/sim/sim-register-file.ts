import type { AccessWidth } from '../platform';
import {
  DeviceStatus,
  FeatureBit,
  MMIO_MAGIC_VALUE,
  MmioRegister,
  parseNotificationData,
  SHM_LEN_ABSENT,
  type RegisterEntry,
} from '../spec';
import type { DeviceStatusRegisters } from './device-status';
import type { RegisterFaults } from './register-faults';
import type { SimQueueRegisters } from './queue-registers';
import type { SimConfigSpace } from './sim-config-space';
import type { SimInterrupts } from './sim-interrupts';
import type { SimDeviceModel } from './sim-model';
import type { SimStats } from './sim-options';
import type { SimQueue } from './sim-queue';
import type { SimObserver } from './strict-observer';
import type { WorkScheduler } from './work-scheduler';

const { DRIVER_OK } = DeviceStatus;
const low = (value: bigint): number => Number(value & 0xffff_ffffn);
const high = (value: bigint): number => Number((value >> 32n) & 0xffff_ffffn);

/** The device's parts the register file dispatches to (SimDevice's constructor). */
export interface RegisterFileParts {
  readonly version: 1 | 2;
  readonly table: ReadonlyMap<number, RegisterEntry>;
  readonly magic: number;
  readonly versionValue: number;
  readonly vendorId: number;
  readonly identityValid: boolean;
  readonly empty: boolean;
  readonly model?: SimDeviceModel;
  readonly deviceStatus: DeviceStatusRegisters;
  readonly queueRegisters: SimQueueRegisters;
  readonly queues: readonly SimQueue[];
  readonly config: SimConfigSpace;
  readonly interrupts: SimInterrupts;
  readonly shmRegions: readonly { id: number; base: bigint; length: bigint }[];
  readonly stats: SimStats;
  readonly suppressNotifications: boolean;
  readonly completeOnNotify: boolean;
  readonly scheduler: WorkScheduler;
  /** Strict mode, told of every access (absent when strict is off). */
  readonly observer?: SimObserver;
  /** Hostile mode's register-level lies (absent when off). */
  readonly faults?: RegisterFaults;
  negotiatedFeatures(): bigint;
  negotiated(bit: number): boolean;
  run(pickUpWork: boolean): void;
}

/**
 * The register window of §4.2.2 (Version 2) or §4.2.4 (Version 1) as an
 * honest device answers it: each access goes to the part that owns the
 * register. Strict mode observes each access before its effect; hostile
 * mode's register faults are asked at fixed points.
 */
export class SimRegisterFile {
  private shmSel = 0;
  /** Last value written to each control register, for the best effort of narrow writes. */
  private readonly written = new Map<number, number>();

  constructor(private readonly device: RegisterFileParts) {}

  read(offset: number, width: AccessWidth): number {
    if (this.device.faults?.allOnes) return width === 4 ? 0xffff_ffff : width === 2 ? 0xffff : 0xff;
    this.device.observer?.access(offset, width, true, 0);
    const register = offset >= MmioRegister.Config ? offset : offset & ~3;
    if (!this.admits(register, true)) return 0;
    if (offset >= MmioRegister.Config) return this.device.config.read(offset - MmioRegister.Config, width);
    if (width === 4) return this.readRegister(offset);
    const shift = 8 * (offset & 3);
    return (this.readRegister(register) >>> shift) & (width === 1 ? 0xff : 0xffff);
  }

  write(offset: number, width: AccessWidth, value: number): void {
    if (this.device.faults?.allOnes) return; // the device is gone: writes go nowhere
    this.device.observer?.access(offset, width, false, value);
    const register = offset >= MmioRegister.Config ? offset : offset & ~3;
    if (!this.admits(register, false)) return;
    if (offset >= MmioRegister.Config) {
      if (this.device.config.write(offset - MmioRegister.Config, width, value))
        this.device.model?.configWritten?.(offset - MmioRegister.Config, width);
      return;
    }
    if (width === 4) return this.writeRegister(offset, value);
    // Best effort for a narrow write: the other bytes keep what was last written there.
    const shift = 8 * (offset & 3);
    const mask = (width === 1 ? 0xff : 0xffff) << shift;
    const base = register === MmioRegister.Status ? this.device.deviceStatus.value : (this.written.get(register) ?? 0);
    this.writeRegister(register, ((base & ~mask) | (value << shift)) >>> 0);
  }

  /**
   * §4.2.2.2, §4.2.3.1.1: a device with a bad MagicValue or Version answers nothing else; an empty slot only DeviceID
   * more.
   */
  private admits(register: number, read: boolean): boolean {
    if (read && (register === MmioRegister.MagicValue || register === MmioRegister.Version)) return true;
    if (!this.device.identityValid) return false;
    return (read && register === MmioRegister.DeviceID) || !this.device.empty;
  }

  private readRegister(offset: number): number {
    this.device.observer?.register(offset, true, 0);
    const entry = this.device.table.get(offset);
    if (!entry || entry.direction === 'W') return 0;
    const R = MmioRegister;
    switch (offset) {
      case R.MagicValue:
        this.device.faults?.identityRead(offset, this.device.magic, MMIO_MAGIC_VALUE);
        return this.device.magic;
      case R.Version:
        this.device.faults?.identityRead(offset, this.device.versionValue, this.device.version);
        return this.device.versionValue;
      case R.DeviceID: {
        const id = this.device.empty ? 0 : (this.device.model?.deviceId ?? 0);
        this.device.faults?.identityRead(offset, id, this.device.model?.deviceId ?? 0);
        return id;
      }
      case R.VendorID:
        return this.device.vendorId;
      case R.DeviceFeatures:
        return this.device.deviceStatus.readDeviceFeatures();
      case R.QueueNumMax:
      case R.QueueReady:
      case R.QueuePFN:
      case R.QueueReset: {
        const value = this.device.queueRegisters.read(offset);
        const queue = this.device.queueRegisters.selected;
        this.device.faults?.queueRead(offset, value, queue, queue && this.device.model!.queueSizes[queue.index]);
        return value;
      }
      case R.InterruptStatus:
        return this.device.interrupts.status | (this.device.faults?.unknownBits ?? 0);
      case R.Status:
        return this.device.deviceStatus.read();
      case R.SHMLenLow:
        return low(this.shmRegion()?.length ?? SHM_LEN_ABSENT);
      case R.SHMLenHigh:
        return high(this.shmRegion()?.length ?? SHM_LEN_ABSENT);
      case R.SHMBaseLow:
        return low(this.shmRegion()?.base ?? SHM_LEN_ABSENT);
      case R.SHMBaseHigh:
        return high(this.shmRegion()?.base ?? SHM_LEN_ABSENT);
      case R.ConfigGeneration:
        return this.device.config.readGeneration();
      default:
        return 0;
    }
  }

  private writeRegister(offset: number, value: number): void {
    this.device.observer?.register(offset, false, value);
    const entry = this.device.table.get(offset);
    if (!entry || entry.direction === 'R') return;
    this.written.set(offset, value);
    const R = MmioRegister;
    switch (offset) {
      case R.DeviceFeaturesSel:
        this.device.deviceStatus.deviceFeaturesSel = value;
        return;
      case R.DriverFeaturesSel:
        this.device.deviceStatus.driverFeaturesSel = value;
        return;
      case R.DriverFeatures:
        this.device.deviceStatus.writeDriverFeatures(value);
        return;
      case R.QueueNotify:
        this.writeQueueNotify(value);
        return;
      case R.InterruptACK:
        this.device.interrupts.ack(value);
        this.device.faults?.afterInterruptAck(value);
        return;
      case R.Status:
        this.writeStatus(value);
        this.device.faults?.afterStatusWrite(value);
        return;
      case R.SHMSel:
        this.shmSel = value;
        return;
      default:
        // QueueSel, QueueNum, QueueReady, the queue addresses, QueueReset; GuestPageSize, QueueAlign, QueuePFN.
        this.device.queueRegisters.write(offset, value);
    }
  }

  /** §2.1, §2.4, §3.1: 0 resets the device; other values add the driver's status bits. */
  private writeStatus(value: number): void {
    if (value === 0) {
      this.device.deviceStatus.reset();
      this.shmSel = 0;
      this.device.interrupts.status = 0;
      this.device.faults?.reset();
      this.device.queueRegisters.reset();
      this.device.model?.reset?.();
      return;
    }
    const before = this.device.deviceStatus.value;
    const adding = this.device.deviceStatus.write(value);
    this.device.observer?.statusWritten(before, value, this.device.deviceStatus.value);
    if (adding & DRIVER_OK) {
      this.device.model?.driverOk?.(this.device.negotiatedFeatures());
      // Buffers made available before DRIVER_OK are picked up now.
      if (!this.device.suppressNotifications) this.device.scheduler.schedule(true);
    }
  }

  /** §4.2.3.3; with VIRTIO_F_NOTIFICATION_DATA the value carries the driver's ring position (§2.9). */
  private writeQueueNotify(value: number): void {
    const data = this.device.negotiated(FeatureBit.NOTIFICATION_DATA) ? parseNotificationData(value) : undefined;
    const index = data ? data.queueIndex : value;
    const queue = this.device.queues[index];
    if (queue) this.device.stats.notifications[index]++;
    if (!queue?.ready) return;
    if (data) queue.checkNotificationData(data.nextOff, data.nextWrap);
    if (this.device.suppressNotifications) return;
    if (this.device.completeOnNotify) this.device.run(true);
    else this.device.scheduler.schedule(true);
  }

  private shmRegion(): { id: number; base: bigint; length: bigint } | undefined {
    return this.device.shmRegions.find((region) => region.id === this.shmSel);
  }
}
