import type { QueueAddresses, ShmRegion } from './virtio-transport';

/**
 * The register-level operations a transport provides, and all that the
 * status machine (DeviceStatusMachine) and interrupt dispatch
 * (InterruptDispatch) touch of a device. Each is one access or one fixed
 * sequence of accesses with no driver-side state; what the values mean,
 * and which errors follow, is decided by the caller. MmioOps implements
 * them for virtio-mmio (virtio 1.2 §4.2.2; legacy §4.2.4).
 */
export interface TransportOps {
  /** The registers are gone (window closed): no access can be made. */
  readonly closed: boolean;

  // ---- Device status (§2.1) ----
  readStatus(): number;
  writeStatus(status: number): void;
  /** Status ← 0, then waits at most `timeoutMs` for Status to read 0 (§2.4.1); whether it did. */
  reset(timeoutMs: number): boolean;
  /**
   * Has the transport write Status ← 0 by itself when this thread is torn
   * down without running JavaScript, waiting at most `pollMs` for it to read
   * 0 (RegisterBlock.armExitWrite); nothing where it cannot.
   */
  armExitReset(pollMs: number): void;
  /** Undoes armExitReset (idempotent, never throws). */
  disarmExitReset(): void;

  // ---- Feature bits (§2.2) ----
  /** The 64 device feature bits. */
  readDeviceFeatures(): bigint;
  writeDriverFeatures(features: bigint): void;
  /** Legacy devices have no FEATURES_OK (§3.1.1 steps 5–6): what the transport does instead (§4.2.4: GuestPageSize). */
  completeLegacyFeatures(): void;

  // ---- Virtqueues (§2.6) ----
  /** Selects queue `index`: the queue operations below act on it. */
  selectQueue(index: number): void;
  /** Whether the selected queue is in use (the device holds a ring for it). */
  queueInUse(): boolean;
  /** The largest size the selected queue takes (QueueNumMax); 0 when it does not exist. */
  queueNumMax(): number;
  /**
   * Hands the selected queue, number `index`, to the device with `addresses`.
   * Throws RangeError, before any register changes, for areas the transport
   * cannot express. Returns whether the device took the queue.
   */
  enableQueue(index: number, addresses: QueueAddresses): boolean;
  /** Takes the selected queue back from the device; whether it reads as no longer in use. */
  disableQueue(): boolean;
  /** Resets the selected queue (§2.6.1), waiting at most `timeoutMs` for it to complete; whether it did. */
  resetQueue(timeoutMs: number): boolean;
  /** Available Buffer Notification of queue `index` carrying `data`: the index, or the §2.9 notification data. */
  notify(index: number, data: number): void;

  // ---- Notifications from the device (§2.3) ----
  /** The pending interrupt causes (InterruptStatus). */
  readInterruptStatus(): number;
  /** Acknowledges the causes `bits` (InterruptACK). */
  ackInterrupt(bits: number): void;

  // ---- Shared memory regions (§2.10) ----
  /** Region `id` (an integer in [0, 255]), or undefined when the device has none with that id. */
  shmRegion(id: number): ShmRegion | undefined;

  /** Releases the registers (closes the window). */
  close(): void;
}
