/**
 * The contract between the software virtio-mmio device (SimDevice) and the
 * device models plugged into it. A model is the device-type part (rng, blk,
 * console, net, or a user's own); the SimDevice does the transport and the
 * rings.
 */

/** One descriptor chain popped from a queue, as the device sees it (virtio 1.2 §2.7.4; a packed list, §2.8.5). */
export interface SimRequest {
  /** The queue it came from. */
  readonly queue: number;
  /**
   * What goes back in the used element's id: the head descriptor index (split ring) or the Buffer ID (packed ring,
   * §2.8.6).
   */
  readonly head: number;
  /** Device-readable buffers, in chain order, as views straight into DMA memory. */
  readonly readable: readonly Uint8Array[];
  /** Device-writable buffers, in chain order, as views straight into DMA memory. */
  readonly writable: readonly Uint8Array[];
  readonly readableBytes: number;
  readonly writableBytes: number;
}

/** A field of the device-specific configuration space, for strict access-width checks (§4.2.2.2). */
export interface SimConfigField {
  offset: number;
  /** 1, 2, 4 or 8 bytes; 8-byte fields are accessed as two aligned 32-bit halves. */
  width: 1 | 2 | 4 | 8;
  /** Whether the driver may write it. */
  writable?: boolean;
}

export interface SimDeviceModel {
  /** Virtio device ID (§5); 0 makes the transport an empty slot. */
  readonly deviceId: number;
  /** Device-type feature bits offered (bits 0–23 and 50–127 by §6); transport bits are the SimDevice's. */
  readonly features: bigint;
  /** QueueNumMax of each queue index; 0 marks an absent queue. */
  readonly queueSizes: readonly number[];
  /** The configuration space bytes (0x100 onwards); the SimDevice reads and writes them in place. */
  readonly config: Uint8Array;
  /** Field layout of `config` for strict width checks; without it any aligned access is accepted. */
  readonly configFields?: readonly SimConfigField[];
  /**
   * Handles one request. Returns the number of bytes written into the
   * writable buffers (the used element's len), now or later. A promise
   * that rejects is recorded as a device error and completes with len 0.
   */
  handle(request: SimRequest): number | Promise<number>;
  /** Called after the driver writes to a writable config field. */
  configWritten?(offset: number, width: number): void;
  /** Called when the driver sets DRIVER_OK, with the negotiated features. */
  driverOk?(features: bigint): void;
  /** Called on device reset (Status written 0); drop all in-flight state. */
  reset?(): void;
  /** Called when one queue is reset with QueueReset (§2.6.1). */
  resetQueue?(queue: number): void;
}

/** A driver-side MUST the driver broke, as recorded by strict mode. */
export interface SimViolation {
  /** Stable identifier of the rule, e.g. 'register-width', 'queue-num-above-max'. */
  readonly rule: string;
  /** What happened, for people. */
  readonly message: string;
  /** The spec section the rule comes from, e.g. '4.2.2.2'. */
  readonly section: string;
}
