import type { DmaAllocator, DmaRegion } from '../platform';
import type { Virtqueue } from '../queue';

/**
 * Device-readable copies on their way to a device: each send copies the
 * bytes into DMA memory and frees it when the device has taken them. At
 * close, what is still in flight is freed only if the device let go (it
 * was reset); otherwise it stays with the allocator, whose close() takes
 * it back.
 */
export class TransmitBuffers {
  private readonly inFlight = new Set<DmaRegion>();

  constructor(
    private readonly memory: DmaAllocator,
    private readonly closed: () => boolean,
    /** SubmitOptions.timeoutMs of each send. */
    private readonly timeoutMs?: number,
  ) {}

  /** Sends a copy of `bytes` on `queue`; resolves when the device has used it. */
  send(queue: Virtqueue, bytes: Uint8Array): Promise<void> {
    const region = this.memory.allocate(bytes.length);
    new Uint8Array(region.view, region.offset, bytes.length).set(bytes);
    this.inFlight.add(region);
    const settle = (): void => {
      // After close, release() has dealt with it.
      if (this.inFlight.delete(region)) this.memory.free(region);
    };
    return queue.submit({ readable: [{ region }] }, { timeoutMs: this.timeoutMs }).then(settle, (error: unknown) => {
      if (!this.closed()) settle();
      throw error;
    });
  }

  /** At close: frees what is in flight when `deviceReleased`; forgets it either way. */
  release(deviceReleased: boolean): void {
    if (deviceReleased) for (const region of this.inFlight) this.memory.free(region);
    this.inFlight.clear();
  }
}
