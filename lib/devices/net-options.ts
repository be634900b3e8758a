import { invalidArgType, outOfRange } from '../errors';
import { NET_MAX_FRAME, NET_MQ_PAIRS_MAX } from '../spec';
import type { DriverOptions } from './virtio-driver';

export interface VirtioNetOptions extends DriverOptions {
  /** Receive buffers kept posted per receive queue (default: the queue's size, at most 256). */
  receiveBuffers?: number;
  /**
   * Bytes of each receive buffer, header included (virtio 1.2 §5.1.6.3.1).
   * Default: 2048 (with MRG_RXBUF a larger frame spans several; without
   * it, at least header + largest frame). Small values with MRG_RXBUF make frames span
   * buffers; without MRG_RXBUF less than a whole frame is refused.
   */
  receiveBufferBytes?: number;
  /** Queue pairs to use (VIRTIO_NET_F_MQ, §5.1.6.5.5; default 1, at most max_virtqueue_pairs). */
  queuePairs?: number;
  /**
   * Complete a received frame's partial checksum (NEEDS_CSUM, virtio 1.2
   * §5.1.6.4.1) before handing it over, so every frame is as it would be
   * on the wire: it then carries no `needsChecksum` (default false: the
   * frame comes as the device wrote it, with `needsChecksum` for the user).
   */
  completeChecksums?: boolean;
  /** Received frames kept for a slow consumer (default 1024). */
  maxQueuedFrames?: number;
  /** Bytes of received frames kept for a slow consumer (default 4 MiB; at least one largest frame). */
  maxQueuedBytes?: number;
}

/** RangeError for an option out of range, TypeError for one of the wrong type (device bounds: open()). */
export function validateNetOptions(options: VirtioNetOptions): void {
  if (options?.completeChecksums !== undefined && typeof options.completeChecksums !== 'boolean')
    throw invalidArgType(`completeChecksums must be a boolean, got ${typeof options.completeChecksums}`);
  const ranges = {
    receiveBuffers: [1, 65536],
    maxQueuedFrames: [1, 65536],
    receiveBufferBytes: [1, 65562],
    queuePairs: [1, NET_MQ_PAIRS_MAX],
    maxQueuedBytes: [NET_MAX_FRAME, 2 ** 31],
  } as const;
  for (const [name, [min, max]] of Object.entries(ranges)) {
    const value = options?.[name as keyof typeof ranges];
    if (value !== undefined && (!Number.isInteger(value) || value < min || value > max))
      throw outOfRange(`${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
}
