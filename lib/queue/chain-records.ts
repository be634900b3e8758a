import type { DmaAllocator, DmaRegion } from '../platform';
import type { QueueBuffer, QueueRequest } from './queue-types';

/**
 * The buffers of each placed request id (region, offset, length), copied
 * at placement so that holding them later does not trust the caller's
 * objects. Arrays are reused per id: nothing is allocated once they have
 * grown. Holding asks the allocator to defer free() of that memory
 * (DmaAllocator.hold) while the device may still write it.
 */
export class ChainRecords {
  private readonly regions: DmaRegion[][];
  private readonly ranges: number[][];

  constructor(
    size: number,
    private readonly memory: DmaAllocator,
  ) {
    this.regions = Array.from({ length: size }, () => []);
    this.ranges = Array.from({ length: size }, () => []);
  }

  /** Records the buffers of the request placed as `id`. */
  record(id: number, request: QueueRequest): void {
    const regions = this.regions[id];
    const ranges = this.ranges[id];
    let n = 0;
    if (request.readable) n = recordBuffers(request.readable, regions, ranges, n);
    if (request.writable) n = recordBuffers(request.writable, regions, ranges, n);
    // Assigning length is a runtime call even when it does not change: only when it does.
    if (regions.length !== n) {
      regions.length = n;
      ranges.length = 2 * n;
    }
  }

  /** The allocator defers free() of request `id`'s buffers (the device keeps them though their caller was answered). */
  hold(id: number): void {
    this.each(id, this.memory.hold);
  }

  /** Undoes hold(id): the device gave the buffers back, or a reset completed. */
  unhold(id: number): void {
    this.each(id, this.memory.unhold);
  }

  /** Calls the allocator's `method` (hold or unhold; optional in DmaAllocator) for each buffer of `id`. */
  private each(id: number, method: DmaAllocator['hold']): void {
    if (!method) return;
    const regions = this.regions[id];
    const ranges = this.ranges[id];
    for (let i = 0; i < regions.length; i++) method.call(this.memory, regions[i], ranges[2 * i], ranges[2 * i + 1]);
  }
}

/** Writes `list` into one id's record from position `n`; returns the next position. */
function recordBuffers(list: readonly QueueBuffer[], regions: DmaRegion[], ranges: number[], n: number): number {
  for (let i = 0; i < list.length; i++, n++) {
    const buffer = list[i];
    const offset = buffer.offset ?? 0;
    regions[n] = buffer.region;
    ranges[2 * n] = offset;
    ranges[2 * n + 1] = buffer.length ?? buffer.region.size - offset;
  }
  return n;
}
