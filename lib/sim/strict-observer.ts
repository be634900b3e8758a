import type { AccessWidth } from '../platform';
import {
  describeFeatures,
  describeStatus,
  DeviceStatus,
  FeatureBit,
  hasFeature,
  MMIO_INTERRUPT_DEFINED,
  MmioRegister,
  parseNotificationData,
  type RegisterEntry,
} from '../spec';
import type { StrictRules } from './strict-rules';
import { hex } from '../util/hex';

const { ACKNOWLEDGE, DRIVER, DRIVER_OK, FEATURES_OK, DEVICE_NEEDS_RESET, FAILED } = DeviceStatus;
/** The status bits a driver sets (§2.1). */
export const DRIVER_STATUS_BITS = ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK | FAILED;
/**
 * DEVICE_NEEDS_RESET is the device's: a driver that writes back what it
 * read (read-modify-write) echoes it, which is ignored, not a violation.
 */
export const ECHOED_STATUS_BITS = DEVICE_NEEDS_RESET;

/** The device state that changes with each access (DeviceStatusRegisters). */
export interface SimStatusState {
  readonly value: number;
  readonly driverFeatures: bigint;
  readonly deviceFeaturesSel?: number;
  readonly driverFeaturesSel?: number;
  /** A device reset was written and Status has not read 0 yet (§2.4.2). */
  readonly resetPending: boolean;
}

/** What the observer may see of the device: its state before the access it is told about. */
export interface SimDeviceView {
  readonly version: 1 | 2;
  readonly state: SimStatusState;
  readonly deviceFeatures: bigint;
  readonly magic: number;
  readonly versionValue: number;
  /** MagicValue and Version are ones a driver may go on with (§4.2.2.2). */
  readonly identityValid: boolean;
  /** DeviceID 0: an empty slot (§4.2.3.1.1). */
  readonly empty: boolean;
  readonly registers: ReadonlyMap<number, RegisterEntry>;
  /** Whether queue `index` is live; undefined when it does not exist. */
  queueReady(index: number): boolean | undefined;
}

/**
 * What the device tells an observer, at fixed points of every register
 * access. The device acts the same whether or not anyone observes it.
 */
export interface SimObserver {
  /** Any access that reached the window, before the device decides whether to answer it. */
  access(offset: number, width: AccessWidth, read: boolean, value: number): void;
  /** A control register read or written as a whole 32-bit word (a narrow write merged), before its effect. */
  register(offset: number, read: boolean, value: number): void;
  /** A Status write other than 0 (a reset), after the device decided: `after` is what Status holds now. */
  statusWritten(before: number, value: number, after: number): void;
}

/**
 * Strict mode: an observer that checks each access against the driver
 * requirements of virtio 1.2 and records each broken rule (SIM_RULES).
 * Rules of the queue registers, rings and config fields are checked by
 * those parts, which share the same StrictRules.
 */
export class StrictObserver implements SimObserver {
  private readonly probed = { magic: false, version: false, deviceId: false };
  private probeReported = false;

  constructor(
    private readonly device: SimDeviceView,
    private readonly rules: StrictRules,
  ) {}

  access(offset: number, width: AccessWidth, read: boolean, value: number): void {
    const config = offset >= MmioRegister.Config;
    const register = config ? offset : offset & ~3;
    if (!this.discovery(register, read)) return;
    const { device, rules } = this;
    // §2.4.2: setting FAILED is how a driver gives up on a reset that does not complete; a new reset is fine too.
    const givingUp = register === MmioRegister.Status && (value === 0 || (value & FAILED) !== 0);
    if (!read && device.state.resetPending && !givingUp) {
      rules.record(
        'reset-not-complete',
        `write at ${hex(offset)} while the reset is under way (Status has not read 0 yet)`,
      );
    }
    if (config) {
      if (!read && device.version === 2 && !(device.state.value & FEATURES_OK)) {
        rules.record('config-write-before-features-ok', `config write at ${hex(offset)} before FEATURES_OK`);
      }
      return;
    }
    if (width !== 4) {
      const verb = read ? 'read' : 'write';
      rules.record(
        'register-width',
        `${width * 8}-bit ${verb} at ${hex(offset)} (` +
          `${this.nameOf(register)}): control registers are ` +
          `${verb === 'read' ? 'read' : 'written'} 32 bits wide`,
      );
    }
  }

  register(offset: number, read: boolean, value: number): void {
    const { device, rules } = this;
    const entry = device.registers.get(offset);
    if (!entry) {
      const what = read ? 'read' : `write of ${hex(value)}`;
      rules.record(
        'undefined-register',
        `${what} at ${hex(offset)}: no register there in the Version ${device.version} layout`,
      );
      return;
    }
    if (read && entry.direction === 'W') {
      rules.record('read-write-only', `read of the write-only register ${entry.name}`);
      return;
    }
    if (!read && entry.direction === 'R') {
      rules.record('write-read-only', `write of ${hex(value)} to the read-only register ${entry.name}`);
      return;
    }
    const R = MmioRegister;
    if (read) {
      if (offset === R.DeviceFeatures && device.state.deviceFeaturesSel === undefined) {
        rules.record('device-features-sel-unset', 'DeviceFeatures read before any DeviceFeaturesSel write');
      }
      return;
    }
    if (offset === R.DriverFeatures) this.driverFeatures(value);
    else if (offset === R.QueueNotify) this.queueNotify(value);
    else if (offset === R.InterruptACK) {
      const undefinedBits = value & ~MMIO_INTERRUPT_DEFINED;
      if (undefinedBits)
        rules.record(
          'interrupt-ack-undefined-bits',
          `InterruptACK ${hex(value)} sets undefined bits ${hex(undefinedBits)}`,
        );
    }
  }

  statusWritten(before: number, value: number, after: number): void {
    const { device, rules } = this;
    const cleared = before & ~value & ~ECHOED_STATUS_BITS;
    if (cleared)
      rules.record(
        'status-bit-cleared',
        `Status write ${describeStatus(value)} clears ${describeStatus(cleared)} (only a reset clears status bits)`,
      );
    const added = value & ~before;
    const reserved = added & ~(DRIVER_STATUS_BITS | ECHOED_STATUS_BITS);
    if (reserved)
      rules.record(
        'status-reserved-bit',
        `Status write sets ${hex(reserved)}, which is not a driver status bit; ignored`,
      );
    const adding = added & DRIVER_STATUS_BITS;
    if (before & FAILED && adding & ~FAILED) {
      rules.record(
        'status-after-failed',
        `Status write sets ${describeStatus(adding)} after FAILED, without a reset first`,
      );
    }
    // §3.1.1: each step needs the one before it.
    const next = before | adding;
    for (const [bit, needs] of [
      [DRIVER, ACKNOWLEDGE],
      [FEATURES_OK, DRIVER],
      [DRIVER_OK, DRIVER],
    ] as const) {
      if (adding & bit && !(next & needs))
        rules.record(
          'status-order',
          `${describeStatus(bit)} set before ${describeStatus(needs)} (status was ${describeStatus(before)})`,
        );
    }
    if (adding & FEATURES_OK) {
      if (device.version === 1) {
        rules.record('legacy-features-ok', 'FEATURES_OK set on a legacy (Version 1) device, which has no such step');
      } else if (
        hasFeature(device.deviceFeatures, FeatureBit.VERSION_1) &&
        !hasFeature(device.state.driverFeatures, FeatureBit.VERSION_1)
      ) {
        rules.record('version-1-not-accepted', 'FEATURES_OK set without accepting the offered VIRTIO_F_VERSION_1');
      }
    }
    if (adding & DRIVER_OK && device.version === 2 && !(after & FEATURES_OK)) {
      rules.record('driver-ok-without-features-ok', 'DRIVER_OK set while FEATURES_OK is not set');
    }
  }

  /**
   * §4.2.2.2, §4.2.3.1.1: MagicValue and Version first, nothing else on a bad identity, only DeviceID more on an empty
   * slot.
   */
  private discovery(register: number, read: boolean): boolean {
    const R = MmioRegister;
    if (read && register === R.MagicValue) return (this.probed.magic = true);
    if (read && register === R.Version) return (this.probed.version = true);
    const { device, rules } = this;
    const what = `${read ? 'read' : 'write'} at ${hex(register)} (${this.nameOf(register)})`;
    if (!device.identityValid) {
      rules.record(
        'ignored-device-access',
        `${what} on a device with MagicValue ${hex(device.magic)} and Version ${device.versionValue}, which ` +
          `the driver must ignore`,
      );
      return false;
    }
    if (read && register === R.DeviceID) return (this.probed.deviceId = true);
    if (device.empty) {
      rules.record('empty-slot-access', `${what} on an empty slot (DeviceID 0)`);
      return false;
    }
    const { magic, version, deviceId } = this.probed;
    if (!(magic && version && deviceId) && !this.probeReported) {
      this.probeReported = true;
      const missing = [!magic && 'MagicValue', !version && 'Version', !deviceId && 'DeviceID']
        .filter(Boolean)
        .join(', ');
      rules.record('init-without-probe', `${what} before the driver read ${missing}`);
    }
    return true;
  }

  /** §2.2.1, §3.1.1, §4.2.2.2. */
  private driverFeatures(value: number): void {
    const { device, rules } = this;
    if (device.state.driverFeaturesSel === undefined)
      rules.record(
        'driver-features-sel-unset',
        `DriverFeatures ${hex(value)} written before any DriverFeaturesSel write`,
      );
    const sel = device.state.driverFeaturesSel ?? 0;
    const fixedBy = device.version === 2 ? FEATURES_OK : DRIVER_OK;
    if (device.state.value & fixedBy) {
      rules.record(
        'driver-features-too-late',
        `DriverFeatures word ${sel} written after ${describeStatus(fixedBy)}; the write is ignored`,
      );
      return;
    }
    if (!(device.state.value & DRIVER)) {
      rules.record(
        'features-before-driver',
        `DriverFeatures word ${sel} written before the DRIVER status bit was set (status ` +
          `${describeStatus(device.state.value)})`,
      );
    }
    if (sel > 3) {
      if (value !== 0)
        rules.record('feature-not-offered', `DriverFeatures word ${sel} = ${hex(value)}: no features exist there`);
      return;
    }
    const unoffered = (BigInt(value) << BigInt(32 * sel)) & ~device.deviceFeatures;
    if (unoffered !== 0n)
      rules.record(
        'feature-not-offered',
        `DriverFeatures accepts features the device did not offer: ${describeFeatures(unoffered)}`,
      );
  }

  /** §3.1.1, §4.2.3.3. */
  private queueNotify(value: number): void {
    const { device, rules } = this;
    const index = hasFeature(device.state.driverFeatures & device.deviceFeatures, FeatureBit.NOTIFICATION_DATA)
      ? parseNotificationData(value).queueIndex
      : value;
    if (device.version === 2 && !(device.state.value & DRIVER_OK))
      rules.record('notify-before-driver-ok', `QueueNotify for queue ${index} before DRIVER_OK`);
    const ready = device.queueReady(index);
    if (!ready)
      rules.record(
        'notify-queue-not-ready',
        `QueueNotify for queue ${index}, which ${ready === false ? 'is not ready' : 'does not exist'}`,
      );
  }

  private nameOf(offset: number): string {
    if (offset >= MmioRegister.Config) return `config offset ${offset - MmioRegister.Config}`;
    return this.device.registers.get(offset & ~3)?.name ?? 'no register';
  }
}
