import type { Barriers, DmaAllocator, DmaRegion } from '../platform';
import type { QueueLayout } from '../transport';

/**
 * A piece of DMA memory for one descriptor: `length` bytes (default: the
 * rest of the region) from `offset` (default 0) in `region`.
 */
export interface QueueBuffer {
  region: DmaRegion;
  offset?: number;
  length?: number;
}

/**
 * One request: device-readable buffers first, then device-writable ones
 * (virtio 1.2 §2.7.4.2), sent as one descriptor chain.
 */
export interface QueueRequest {
  readable?: readonly QueueBuffer[];
  writable?: readonly QueueBuffer[];
}

export interface SubmitOptions {
  /** Stops waiting: rejects with AbortError (see SplitQueue.submit). */
  signal?: AbortSignal;
  /** When the ring is full: wait for room (default) or throw QueueFullError at once. */
  wait?: boolean;
  /**
   * Rejects with TimeoutError if the request is not completed within this
   * many milliseconds (waiting for room included). The buffers stay with the
   * device until it uses them; the result is then discarded.
   */
  timeoutMs?: number;
  /**
   * Runs once when the buffers of a request whose promise *rejected* are
   * the caller's again: at once when the device never got them (it waited
   * for room, or the queue was unusable); otherwise when the device returns
   * the chain (late) or a reset of the device or of this queue completes.
   * Never, while the device may still write them (a reset that did not
   * complete). A request that resolved does not call it: its buffers are
   * the caller's when the promise resolves. Until then the allocator defers
   * free() of those buffers (DmaAllocator.hold) and the queue refuses them
   * as writable buffers (BufferHeldError).
   */
  reclaim?: () => void;
}

export interface QueueStats {
  /** Requests put in the avail ring. */
  submitted: number;
  /** Used elements consumed. */
  completed: number;
  /** avail.idx publications (each may carry many requests). */
  publishes: number;
  /** QueueNotify writes. */
  notifications: number;
  /** Publications where the device asked not to be notified. */
  notificationsSuppressed: number;
  /** Atomics.load/store calls on ring indices (target: ≤ 2 per batch). */
  atomics: number;
  /** Requests that went out as an indirect table. */
  indirect: number;
  /** Turns of the polling loop ('poll' and 'hybrid' modes). */
  polls: number;
  /** Completions the polling loop or a spin found (rather than an interrupt). */
  polledCompletions: number;
  /** Synchronous spins on the used ring after a publication ('poll' and 'hybrid'). */
  spins: number;
  /** Spins that found a completion. */
  spinHits: number;
  /** Used entries of chains with no device-writable buffer whose len was not 0: taken as 0 (§2.7.8.1). */
  usedLenIgnored: number;
  /** Resets of this queue alone (§2.6.1) after which it was handed to the device again (Virtqueue.reset). */
  resets: number;
  /**
   * VIRTIO_F_IN_ORDER: used elements that stood for more than one request
   * (a batch, virtio 1.2 §2.7.9 split, §2.8.20 packed), and the requests
   * those covered. A device that writes one element per buffer leaves both 0.
   */
  inOrderBatches: number;
  inOrderBatched: number;
}

export interface VirtqueueOptions {
  /** Queue index on the device. */
  index: number;
  /** Queue Size: ≤ QueueNumMax; a power of two for the split ring (§2.7). */
  size: number;
  memory: DmaAllocator;
  layout: QueueLayout;
  /** Negotiated features; INDIRECT_DESC, EVENT_IDX and IN_ORDER change how the queue works. */
  features: bigint;
  barriers?: Barriers;
  /** Longest chain sent as one indirect table (default 32); longer chains go direct. */
  indirectMax?: number;
  /**
   * What this queue does when its transport can reset one queue
   * (VIRTIO_F_RING_RESET): 'reset-broken' (default) resets it alone and goes
   * on when the device breaks the ring (Virtqueue.reset), where otherwise
   * the whole device would be failed; 'reset-broken-or-stuck' also when a
   * request the device has passes its deadline — once nothing else in
   * flight is awaited, the queue is reset, which gives the late request's
   * memory back; 'none' keeps a broken queue sticky (the device is failed)
   * and a timed-out request holding its descriptors until the device
   * returns them.
   */
  recovery?: QueueRecovery;
}

/** See VirtqueueOptions.recovery. */
export type QueueRecovery = 'reset-broken' | 'reset-broken-or-stuck' | 'none';
