import type { DeviceMemory, EventfdInterruptSource } from '../platform';
import type { SimDeviceModel, SimViolation } from './sim-model';
import type { UsedElement } from './sim-queue';

export interface SimOptions {
  /** The device type; absent (or DeviceID 0) makes an empty slot. */
  model?: SimDeviceModel;
  /** How the device reaches DMA memory by device address. */
  memory: DeviceMemory;
  /** Register layout: 2 (default, §4.2.2) or 1, the legacy layout (§4.2.4). */
  version?: 1 | 2;
  /** Default SIM_VENDOR_ID ("VIMM"). */
  vendorId?: number;
  /**
   * Transport feature bits offered besides the model's. Default, Version 2:
   * VERSION_1 | INDIRECT_DESC | EVENT_IDX | RING_RESET | NOTIFICATION_DATA;
   * Version 1: INDIRECT_DESC | EVENT_IDX.
   */
  transportFeatures?: bigint;
  /** Record violations of driver requirements (default true). */
  strict?: boolean;
  /** Called with each violation as it is recorded (e.g. to throw and get a stack). */
  onViolation?: (violation: SimViolation) => void;
  /** The interrupt line; created (and closed by close()) when absent. */
  interrupt?: EventfdInterruptSource;
  label?: string;
  /** Shared memory regions (§2.10) for SHMSel/SHMLen/SHMBase. */
  shmRegions?: readonly { id: number; base: bigint; length: bigint }[];
  /** What MagicValue and Version read (probe tests); the register layout still follows `version`. */
  magic?: number;
  versionValue?: number;
  /** The device's FEATURES_OK decision; default: a subset of the offered bits, with VERSION_1 on Version 2. */
  acceptFeatures?: (driverFeatures: bigint) => boolean;
  /**
   * Status keeps reading its old value (DEVICE_NEEDS_RESET if that was 0) for
   * this many reads after a reset (default 0; Infinity: never completes).
   */
  resetLatency?: number;
  /** QueueReset reads 1 this many times after a queue reset (default 0; Infinity: never completes). */
  queueResetLatency?: number;
  /** The next N reads of ConfigGeneration each return a new value (default 0; Infinity: never settles). */
  configGenerationChurn?: number;
  faults?: SimFaults;
  /**
   * The device asks not to be notified (§2.7.10): used.flags NO_NOTIFY, or
   * with EVENT_IDX an avail_event that never matches. Notifications are then
   * counted but start nothing; only process() picks up work.
   */
  suppressNotifications?: boolean;
}

export interface SimStats {
  /** QueueNotify writes per queue index. */
  readonly notifications: number[];
  /** Interrupts raised (used buffer and configuration change). */
  interrupts: number;
  /** Used buffer notifications the driver's avail flags or used_event suppressed. */
  interruptsSuppressed: number;
  /** Chains handed to the model. */
  requests: number;
}

export interface SimFaults {
  /** Rewrites a used element just before the device writes it (validation tests of drivers). */
  usedElement?(queue: number, element: UsedElement): UsedElement;
}
