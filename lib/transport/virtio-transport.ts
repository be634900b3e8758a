/**
 * What a driver and the request layer need of a virtio transport, whatever
 * carries it (virtio 1.2 §4: MMIO here; PCI or channel I/O would fit the
 * same shape). Drivers and queues depend on this interface only;
 * MmioTransport implements it.
 */

/** Where a queue's areas must go (§2.7 alignment; legacy §2.7.2 contiguity). */
export type QueueLayout =
  { readonly legacy: false } | { readonly legacy: true; readonly align: number; readonly pageSize: number };

export interface QueueAddresses {
  size: number;
  /** Descriptor Area (legacy: start of the one contiguous area). */
  desc: bigint;
  /** Driver Area (avail ring). */
  driver: bigint;
  /** Device Area (used ring). */
  device: bigint;
}

/** What the transport needs of an active queue. */
export interface QueueEndpoint {
  /** Used Buffer Notification (InterruptStatus bit 0); returns the requests it settled. */
  onUsedBuffer(): number;
  /** Requests completed so far, however found (interrupt or polling). */
  readonly stats?: { readonly completed: number };
  /** The device was reset, closed or went away: reject everything pending with `error`. */
  detach(error: Error): void;
  /**
   * A reset of the device (or of this queue) has completed since detach():
   * the device holds none of the queue's memory any more, which may go back
   * to its owners. Not called while the device may still write it.
   */
  reclaimAll?(): void;
}

export interface ShmRegion {
  id: number;
  base: bigint;
  length: bigint;
}

export interface TransportStats {
  /** Interrupts with a defined InterruptStatus bit set. */
  interrupts: number;
  /** Wake-ups with InterruptStatus 0. */
  spuriousInterrupts: number;
  /** Wake-ups with InterruptStatus bits outside the two §4.2.2 defines (those bits are not acknowledged). */
  unknownInterruptBits: number;
  /** Interrupts delivered while the device was not live (before DRIVER_OK, after a reset): not dispatched. */
  ignoredInterrupts: number;
  configChanges: number;
}

/** The device-specific configuration space (§2.5): reads inside a stable generation, writes after FEATURES_OK. */
export interface DeviceConfig {
  /** Bytes of config space the transport exposes. */
  readonly size: number;
  read8(offset: number): number;
  read16(offset: number): number;
  read32(offset: number): number;
  read64(offset: number): bigint;
  readBytes(offset: number, length: number): Uint8Array;
  write8(offset: number, value: number): void;
  write16(offset: number, value: number): void;
  write32(offset: number, value: number): void;
  write64(offset: number, value: bigint): void;
  /** Runs `read` until the generation is the same before and after it (§2.5.1). */
  atomic<T>(read: () => T): T;
}

/** What a queue needs of its transport: set-up, teardown, notifications, keep-alive. */
export interface QueueTransport {
  activateQueue(index: number, addresses: QueueAddresses, endpoint: QueueEndpoint): void;
  deactivateQueue(index: number): void;
  /** `nextAvail`: bits 0–14 the next offset, bit 15 its wrap bit (split: avail.idx; packed: slot and wrap counter). */
  notify(index: number, nextAvail: number): void;
  /** Whether someone waits for queue `index`: the interrupt line keeps the process alive only then. */
  setBusy(index: number, busy: boolean): void;
  /** The device broke this queue's protocol: the transport resets it and fails the device (optional). */
  deviceBroken?(error: Error): void;
  /** Whether a live queue can be reset alone now (VIRTIO_F_RING_RESET negotiated and working; optional). */
  readonly queueResettable?: boolean;
  /**
   * Resets queue `index` alone (§2.6.1): detaches its endpoint with
   * `reason`, waits for the reset, then reclaimAll(); throws when the reset
   * did not complete or was ignored (optional).
   */
  resetQueue?(index: number, reason?: Error): void;
}

/**
 * One virtio device behind its transport: the status machine of §3.1.1
 * (reset, negotiate, driverOk, markFailed), config access, queue
 * set-up/teardown/reset, notifications and interrupt hook-up.
 */
export interface VirtioTransport extends QueueTransport {
  /** Where the device is (a UIO node, a physical window, a sim), for messages. */
  readonly label: string;
  /** Virtio device ID (§5). */
  readonly deviceId: number;
  readonly vendorId: number;
  /** Transport revision: 1 legacy, 2 modern (MMIO Version register). */
  readonly version: number;
  readonly closed: boolean;
  /** Whether DRIVER_OK is set and the device is live. */
  readonly live: boolean;
  /** Features the device offered at the last negotiation. */
  readonly deviceFeatures: bigint;
  /** Features negotiated (0n before negotiate()). */
  readonly features: bigint;
  hasFeature(bit: number): boolean;
  /** The Status register, as read now. */
  readonly status: number;
  readonly stats: TransportStats;
  /** Why the live device failed (interrupt line lost, NEEDS_RESET, storm), if it did; reset() clears it. */
  readonly failure: Error | undefined;
  readonly config: DeviceConfig;
  /** Where queue memory must be placed on this transport. */
  readonly queueLayout: QueueLayout;

  /** Status ← 0 and wait for it (§2.4); detaches every queue with `reason`. */
  reset(reason?: Error): void;
  /** §3.1.1 steps 1–6; returns the negotiated features (NegotiationError on refusal). */
  negotiate(wanted: bigint, required?: bigint): bigint;
  /** §3.1.1 step 8. */
  driverOk(): void;
  /** Sets FAILED (§2.1). */
  markFailed(): void;
  /** QueueNumMax of queue `index` (0: no such queue); the queue must not be in use. */
  queueNumMax(index: number): number;
  /** Resets one queue (VIRTIO_F_RING_RESET, §2.6.1); its pending requests reject with `reason`. */
  resetQueue(index: number, reason?: Error): void;
  readonly queueResettable: boolean;
  onConfigChange(listener: () => void): () => void;
  onError(listener: (error: Error) => void): () => void;
  shmRegion(id: number): ShmRegion | undefined;
  shmRegions(): ShmRegion[];
  /** Resets (if it can) and releases; returns whether the device is known to have let go of its queues. */
  close(reason?: Error): boolean;
}
