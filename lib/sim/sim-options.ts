import type { DeviceMemory, InterruptSource } from '../platform';
import type { HostileOptions } from './hostile';
import type { SimDeviceModel, SimViolation } from './sim-model';
import type { UsedElement } from './sim-ring';

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
   * Version 1: INDIRECT_DESC | EVENT_IDX. RING_PACKED and IN_ORDER are
   * implemented but offered only when listed here; a Version 1 device
   * never offers RING_PACKED (the legacy interface has no packed ring).
   */
  transportFeatures?: bigint;
  /** Record violations of driver requirements (default true). */
  strict?: boolean;
  /** Called with each violation as it is recorded (e.g. to throw and get a stack). */
  onViolation?: (violation: SimViolation) => void;
  /** The interrupt line; an eventfd line is created (and closed by close()) when absent. */
  interrupt?: SimInterruptLine;
  label?: string;
  /** Shared memory regions (§2.10) for SHMSel/SHMLen/SHMBase. */
  shmRegions?: readonly { id: number; base: bigint; length: bigint }[];
  /**
   * What MagicValue and Version read (probe tests); the register layout still follows `version`. Any-value form of
   * FAULT_CATALOGUE's bad-identity.
   */
  magic?: number;
  versionValue?: number;
  /** The device's FEATURES_OK decision; default: a subset of the offered bits, with VERSION_1 on Version 2. */
  acceptFeatures?: (driverFeatures: bigint) => boolean;
  /**
   * Status keeps reading its old value (DEVICE_NEEDS_RESET if that was 0) for
   * this many reads after a reset (default 0; Infinity: never completes,
   * FAULT_CATALOGUE's reset-never-completes 'device').
   */
  resetLatency?: number;
  /**
   * QueueReset reads 1 this many times after a queue reset (default 0; Infinity: never completes, reset-never-completes
   * 'queue').
   */
  queueResetLatency?: number;
  /**
   * QueueReset writes are ignored and it reads 0, while RING_RESET is still
   * offered: the queue stays live (QueueReady 1). What QEMU's virtio-mmio
   * does (7.2 and 10.0 in the lab); a driver must not take such a reset as
   * complete (§4.2.2.1: QueueReady reads 0 after it).
   */
  queueResetIgnored?: boolean;
  /**
   * The next N reads of ConfigGeneration each return a new value (default 0; Infinity: never settles). Any-value form
   * of config-generation-churn.
   */
  configGenerationChurn?: number;
  faults?: SimFaults;
  /**
   * The device asks not to be notified (§2.7.10): used.flags NO_NOTIFY, or
   * with EVENT_IDX an avail_event that never matches. Notifications are then
   * counted but start nothing; only process() picks up work.
   */
  suppressNotifications?: boolean;
  /**
   * Work a notification starts is done within the QueueNotify write, not
   * on the next turn of the event loop (default false): a device that
   * answers before the driver's next instruction, as a fast device seems
   * to a driver that spins ('poll', 'hybrid') on another CPU.
   */
  completeOnNotify?: boolean;
  /**
   * With VIRTIO_F_IN_ORDER negotiated: the most buffers one used element
   * covers (§2.7.9, §2.8.8), default 1. Consecutive buffers that are
   * complete when the device publishes are used in batches of up to this
   * many, each batch as one used element naming its last buffer; a buffer
   * the model did not fill (len below its writable bytes) ends its batch.
   */
  inOrderBatch?: number;
  /**
   * Hostile mode: the device misbehaves on purpose, one switch per FAULT_CATALOGUE entry (fault-catalogue.ts). Off when
   * absent.
   */
  hostile?: HostileOptions;
}

/**
 * What the sim needs of its interrupt line: the driver's side (an
 * InterruptSource the transport listens on) and the device's: raise(),
 * and for hostile `device-gone` hangUp(), after which the driver's side
 * reports EPOLLHUP (an eventfd cannot hang up; a pipe can).
 */
export interface SimInterruptLine extends InterruptSource {
  raise(count?: number): void;
  hangUp?(): void;
}

export interface SimStats {
  /** QueueNotify writes per queue index. */
  readonly notifications: number[];
  /** Interrupts raised (used buffer and configuration change). */
  interrupts: number;
  /**
   * Used buffer notifications the driver suppressed (avail flags or used_event; packed: the driver event suppression
   * structure).
   */
  interruptsSuppressed: number;
  /** Chains handed to the model. */
  requests: number;
}

/** Your own lies, for the used-ring faults 1–5 of FAULT_CATALOGUE. */
export interface SimFaults {
  /**
   * Rewrites a used element just before the device writes it (validation
   * tests of drivers): a split used ring entry, or the id and len of a used
   * packed descriptor (its WRITE flag then follows the rewritten len).
   */
  usedElement?(queue: number, element: UsedElement): UsedElement;
}
