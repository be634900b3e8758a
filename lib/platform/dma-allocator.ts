/**
 * A piece of DMA memory: `size` bytes at `view[offset]`, which the device
 * sees at `iova`. Build typed arrays over it with
 * `new Uint16Array(region.view, region.offset + x, n)`.
 */
export interface DmaRegion {
  readonly view: ArrayBuffer;
  readonly offset: number;
  readonly size: number;
  readonly iova: bigint;
}

/** Hands out DMA memory; regions come back zeroed and aligned in device-address space. */
export interface DmaAllocator {
  allocate(size: number, align?: number): DmaRegion;
  free(region: DmaRegion): void;
  /** Frees everything; views of all regions are detached. */
  close(): void;
  /**
   * The device address of `view` when it lies wholly inside one live region
   * of this allocator (so it can be handed to the device without a copy);
   * undefined otherwise.
   */
  addressOf?(view: ArrayBufferView): bigint | undefined;
  /**
   * Whether `region` came from this allocator and has not been freed (nor
   * the allocator closed), so it may still be handed to the device. O(1).
   */
  isLive?(region: DmaRegion): boolean;
  /**
   * Whether this allocator handed out `region` and took it back since (or
   * was closed). Region-shaped windows the caller made itself are not
   * known, so not freed. O(1); the queues refuse freed regions with it.
   */
  wasFreed?(region: DmaRegion): boolean;
  /**
   * A device keeps `length` bytes at `offset` in `region` although the
   * request they belonged to was settled (timeout, abort, detach): until
   * unhold(), free() of the region they lie in is deferred — the memory is
   * not handed out again — and isHeld() says so. Counted; `region` may be a
   * region-shaped window inside one of this allocator's regions. Regions it
   * does not know are ignored.
   */
  hold?(region: DmaRegion, offset: number, length: number): void;
  /** Undoes one hold(); a free() deferred meanwhile takes effect when nothing in its region is held. */
  unhold?(region: DmaRegion, offset: number, length: number): void;
  /** Whether any of those bytes are held. O(1) while nothing is. */
  isHeld?(region: DmaRegion, offset: number, length: number): boolean;
}

/**
 * Frees `region` unless `memory` no longer has it live — typically because
 * the allocator was closed (and took everything back) while the device
 * still held it. For release paths that may run late (SubmitOptions.reclaim).
 */
export function freeIfLive(memory: DmaAllocator, region: DmaRegion): void {
  if (memory.isLive?.(region) ?? true) memory.free(region);
}

/**
 * DMA memory seen from the device side: how a software device reaches the
 * bytes behind a device address (the sim reads rings and buffers this way).
 */
export interface DeviceMemory {
  /** The `length` bytes at device address `iova`, or undefined when they are not all backed by memory. */
  resolve(iova: bigint, length: number): Uint8Array | undefined;
}
