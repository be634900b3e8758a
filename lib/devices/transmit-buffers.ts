import { freeIfLive, type DmaAllocator } from '../platform';
import type { Virtqueue } from '../queue';

/**
 * Device-readable copies on their way to a device: each send copies the
 * bytes into DMA memory, which is freed when the device has taken them —
 * never earlier: a send that timed out, was aborted or was rejected by a
 * reset or close frees its copy only when the device gives the chain back
 * or a reset completes (SubmitOptions.reclaim).
 */
export class TransmitBuffers {
  /** Copies the device holds or still may hold, and their bytes. */
  private outstanding = 0;
  private outstandingBytes = 0;

  constructor(
    private readonly memory: DmaAllocator,
    /** SubmitOptions.timeoutMs of each send. */
    private readonly timeoutMs?: number,
    /** Bounds for trySend(): copies and bytes not yet given back. */
    private readonly limits: { count: number; bytes: number } = { count: Infinity, bytes: Infinity },
  ) {}

  /** Copies in DMA memory not yet given back (diagnostics, tests). */
  get inFlight(): number {
    return this.outstanding;
  }

  /**
   * send(), unless the copies not yet given back would pass the limits
   * (a device that never takes them must not grow our memory): undefined then.
   */
  trySend(queue: Virtqueue, bytes: Uint8Array): Promise<void> | undefined {
    if (this.outstanding + 1 > this.limits.count || this.outstandingBytes + bytes.length > this.limits.bytes)
      return undefined;
    return this.send(queue, bytes);
  }

  /** Sends a copy of `bytes` on `queue`; resolves when the device has used it. */
  send(queue: Virtqueue, bytes: Uint8Array): Promise<void> {
    const region = this.memory.allocate(bytes.length);
    new Uint8Array(region.view, region.offset, bytes.length).set(bytes);
    this.outstanding++;
    this.outstandingBytes += bytes.length;
    const giveBack = (): void => {
      this.outstanding--;
      this.outstandingBytes -= bytes.length;
      freeIfLive(this.memory, region);
    };
    return queue.submit({ readable: [{ region }] }, { timeoutMs: this.timeoutMs, reclaim: giveBack }).then(giveBack);
  }
}
