import { DeviceStatus, describeFeatures, FeatureBit, feature, features, hasFeature } from '../spec';
import type { Hostile } from './hostile';
import { DRIVER_STATUS_BITS } from './strict-observer';
import { hex } from '../util/hex';

const { DRIVER_OK, FEATURES_OK, DEVICE_NEEDS_RESET } = DeviceStatus;
const low = (value: bigint): number => Number(value & 0xffff_ffffn);

/**
 * The feature bits a device offers: the model's, the transport's (default,
 * Version 2: VERSION_1 | INDIRECT_DESC | EVENT_IDX | RING_RESET |
 * NOTIFICATION_DATA; Version 1: INDIRECT_DESC | EVENT_IDX), and those a
 * config-out-of-range patch needs, less VERSION_1 under features-bad
 * 'version-1-missing'.
 */
export function offeredFeatures(
  version: 1 | 2,
  model: bigint,
  transport: bigint | undefined,
  plan: { patch?: { features: bigint }; withdrawVersion1: boolean },
): bigint {
  const base =
    transport ??
    (version === 2
      ? features(
          FeatureBit.VERSION_1,
          FeatureBit.INDIRECT_DESC,
          FeatureBit.EVENT_IDX,
          FeatureBit.RING_RESET,
          FeatureBit.NOTIFICATION_DATA,
        )
      : features(FeatureBit.INDIRECT_DESC, FeatureBit.EVENT_IDX));
  // A legacy device has no packed ring: the legacy interface lays queues out by QueuePFN (§4.2.4, §2.7.2), so bit 34 is
  // never offered.
  let offered =
    (model | base | (plan.patch?.features ?? 0n)) & (version === 1 ? ~feature(FeatureBit.RING_PACKED) : -1n);
  if (plan.withdrawVersion1) offered &= ~feature(FeatureBit.VERSION_1);
  return offered;
}

export interface DeviceStatusOptions {
  version: 1 | 2;
  /** The feature bits the device offers. */
  offered: bigint;
  resetLatency: number;
  /**
   * The device's FEATURES_OK decision (§3.1.1 step 6); default: a subset of the offered bits, with VERSION_1 on Version
   * 2.
   */
  acceptFeatures?: (driverFeatures: bigint) => boolean;
  /** features-bad lies (fault-plan.ts), logged on `hostile`. */
  claimedFeatures: bigint;
  claimAlternately: boolean;
  dropFeaturesOk: boolean;
  hostile?: Hostile;
}

/**
 * The honest device status and feature negotiation (§2.1, §2.2, §3.1):
 * Status, DeviceFeatures/DeviceFeaturesSel, DriverFeatures/DriverFeaturesSel,
 * and a reset that may take several Status reads to complete (§2.4.2).
 */
export class DeviceStatusRegisters {
  value = 0;
  driverFeatures = 0n;
  deviceFeaturesSel?: number;
  driverFeaturesSel?: number;
  /** The driver features of every FEATURES_OK kept, oldest first. */
  readonly accepted: bigint[] = [];
  /** Status reads after a reset write before it reads 0 (Infinity: never). */
  resetLatency: number;
  private duringReset = 0;
  private readsLeft = 0;
  private deviceFeatureReads = 0;
  private readonly accept: (driverFeatures: bigint) => boolean;

  constructor(private readonly options: DeviceStatusOptions) {
    this.resetLatency = options.resetLatency;
    const { version, offered, claimedFeatures, hostile } = options;
    const honest =
      options.acceptFeatures ??
      ((driver: bigint) =>
        (driver & ~(offered | claimedFeatures)) === 0n && (version === 1 || hasFeature(driver, FeatureBit.VERSION_1)));
    this.accept = options.dropFeaturesOk
      ? (driver) => {
          hostile!.record('features-bad', `FEATURES_OK dropped for driver features ${describeFeatures(driver)}`);
          return false;
        }
      : honest;
  }

  /** A reset was written and Status has not read 0 yet. */
  get resetPending(): boolean {
    return this.readsLeft > 0;
  }

  read(): number {
    if (this.readsLeft === 0) return this.value;
    this.readsLeft--;
    if (this.options.hostile?.options('reset-never-completes')?.kind === 'device')
      this.options.hostile.record('reset-never-completes', `Status read ${hex(this.duringReset)} after the reset`);
    return this.duringReset;
  }

  /**
   * A non-zero Status write: the driver's bits are added (only a reset clears them, §2.1.1); returns the bits added.
   */
  write(value: number): number {
    const before = this.value;
    const adding = value & ~before & DRIVER_STATUS_BITS;
    let next = before | adding;
    // The device's decision (§3.1.1 step 6): a refused set does not keep FEATURES_OK. A legacy device has no such step
    // (§3.1.2).
    if (adding & FEATURES_OK && this.options.version === 2) {
      if (!this.accept(this.driverFeatures)) next &= ~FEATURES_OK;
      else this.accepted.push(this.driverFeatures);
    }
    this.value = next;
    return adding;
  }

  /**
   * §2.4: Status, features and selectors to their initial values; until the reset completes Status reads what it read
   * before, never 0.
   */
  reset(): void {
    if (this.resetLatency > 0) {
      // A device reset from status 0 shows DEVICE_NEEDS_RESET meanwhile.
      if (this.readsLeft === 0) this.duringReset = this.value || DEVICE_NEEDS_RESET;
      this.readsLeft = this.resetLatency;
    }
    this.value = 0;
    this.driverFeatures = 0n;
    this.deviceFeaturesSel = undefined;
    this.driverFeaturesSel = undefined;
  }

  readDeviceFeatures(): number {
    const sel = this.deviceFeaturesSel ?? 0;
    if (sel > 3) return 0;
    const honest = low(this.options.offered >> BigInt(32 * sel));
    const claimed = low(this.options.claimedFeatures >> BigInt(32 * sel));
    // features-bad echo-unoffered: the claimed bits show on every read, or on every other one, so two reads disagree.
    if (claimed === 0 || (this.options.claimAlternately && this.deviceFeatureReads++ % 2 === 1)) return honest;
    this.options.hostile!.record('features-bad', `DeviceFeatures word ${sel} read with unoffered bits ${hex(claimed)}`);
    return (honest | claimed) >>> 0;
  }

  /**
   * A DriverFeatures word; ignored once FEATURES_OK (Version 2) or DRIVER_OK (Version 1) fixed the set (§3.1.1), and
   * above word 3.
   */
  writeDriverFeatures(value: number): void {
    const sel = this.driverFeaturesSel ?? 0;
    if (this.value & (this.options.version === 2 ? FEATURES_OK : DRIVER_OK) || sel > 3) return;
    const shift = BigInt(32 * sel);
    this.driverFeatures = (this.driverFeatures & ~(0xffff_ffffn << shift)) | (BigInt(value) << shift);
  }
}
