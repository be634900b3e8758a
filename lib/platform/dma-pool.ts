import '../disposable';
import { ClosedError, DmaError, invalidArgValue, outOfRange } from '../errors';
import { native, type NativeDmaMemory } from './addon';
import type { DeviceMemory, DmaAllocator, DmaRegion } from './dma-allocator';

/** Makes a new chunk of at least `minSize` bytes, or throws. */
export type ChunkSource = (minSize: number) => NativeDmaMemory;

interface Range {
  offset: number;
  size: number;
}

interface Chunk {
  memory: NativeDmaMemory;
  free: Range[]; // sorted by offset, coalesced
}

interface Live {
  chunk: Chunk;
  offset: number;
  size: number;
}

/**
 * Chunks a pool was closed with while a device still held bytes in them:
 * never freed (the device may still write there until it is reset, and the
 * pages must not go to anyone else), kept reachable here so that no
 * collection unmaps them either.
 */
const quarantined: NativeDmaMemory[] = [];

/** Chunks closed pools left mapped because a device held bytes in them (diagnostics, tests). */
export const quarantinedChunks = (): number => quarantined.length;

const GRANULE = 16;
const MAX_ALIGN = 1 << 21;

const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;
const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;

/**
 * A first-fit sub-allocator over chunks of native DMA memory, so many small
 * ring areas share one hugepage or one reserved carve-out. Alignment is in
 * device-address space (what the device checks), which equals view-offset
 * alignment for page-aligned chunks.
 */
export class DmaPool implements DmaAllocator, DeviceMemory {
  private readonly chunks: Chunk[] = [];
  private readonly live = new Map<DmaRegion, Live>();
  private readonly freed = new WeakSet<DmaRegion>();
  /**
   * Byte ranges [start, end) of chunk views a device still holds (hold()), by view; a range may appear more than once.
   */
  private readonly held = new Map<ArrayBuffer, number[]>();
  private holds = 0;
  /** Regions freed while some of their bytes were held: given back when the last hold in them goes. */
  private readonly deferred = new Map<DmaRegion, Live>();
  private closed = false;

  constructor(
    private readonly source: ChunkSource,
    private readonly growable = true,
  ) {}

  /** Hugetlb chunks (one hugepage each unless a region needs more). */
  static hugetlb(chunkSize = 2 * 1024 * 1024): DmaPool {
    return new DmaPool((minSize) => native.allocHugetlb(Math.max(minSize, chunkSize)));
  }

  /** One reserved physical carve-out mapped through /dev/mem; it does not grow. */
  static physical(base: bigint, size: number, options: { cached?: boolean } = {}): DmaPool {
    // Mapped now, so that /dev/mem problems show at construction.
    const memory = native.mapPhysical(base, size, options.cached ?? false);
    const pool = new DmaPool(() => memory, false);
    pool.addChunk(0);
    return pool;
  }

  /**
   * Ordinary memory with made-up device addresses starting at `iovaBase`
   * (for the software device and tests, where "the device" is this process).
   */
  static anonymous(iovaBase = 0x4000_0000n, chunkSize = 1024 * 1024): DmaPool {
    let next = iovaBase;
    return new DmaPool((minSize) => {
      const size = roundUp(Math.max(minSize, chunkSize), native.pageSize);
      const memory = native.allocAnonymous(size, next);
      next += BigInt(size);
      return memory;
    });
  }

  allocate(size: number, align = GRANULE): DmaRegion {
    if (this.closed) throw new ClosedError('DMA pool is closed');
    if (typeof size !== 'number' || !Number.isInteger(size) || size <= 0 || size > 2 ** 34) {
      throw outOfRange(`DMA size must be an integer in [1, 2^34], got ${size}`);
    }
    if (!isPowerOfTwo(align) || align > MAX_ALIGN) {
      throw invalidArgValue(`DMA alignment must be a power of two up to ${MAX_ALIGN}, got ${align}`, 'range');
    }
    const want = roundUp(size, GRANULE);
    const alignment = Math.max(align, GRANULE);
    for (const chunk of this.chunks) {
      const region = this.carve(chunk, size, want, alignment);
      if (region) return region;
    }
    if (!this.growable && this.chunks.length > 0) {
      throw new DmaError(DmaError.EXHAUSTED, `no ${want} free bytes aligned to ${align} left in the DMA pool`);
    }
    // Chunks start page-aligned; only a larger alignment needs slack.
    const chunk = this.addChunk(want + (alignment > native.pageSize ? alignment : 0));
    const region = this.carve(chunk, size, want, alignment);
    if (!region)
      throw new DmaError(DmaError.EXHAUSTED, `a new chunk of ${chunk.memory.size} bytes could not hold ${want} bytes`);
    return region;
  }

  /** Gives `region` back; after close() this is a ClosedError (everything was freed then). */
  free(region: DmaRegion): void {
    if (this.closed) throw new ClosedError('DMA pool is closed');
    const live = this.live.get(region);
    if (!live) throw invalidArgValue('this DMA region was not allocated by this pool, or was freed already', 'range');
    this.live.delete(region);
    this.freed.add(region);
    // A device may still write part of it: the bytes are not handed out again until it gives them back.
    if (this.holds > 0 && this.overlapsHeld(region.view, live.offset, live.offset + live.size)) {
      this.deferred.set(region, live);
      return;
    }
    this.giveBack(live);
  }

  hold(region: DmaRegion, offset: number, length: number): void {
    if (this.closed || !this.chunks.some((chunk) => chunk.memory.view === region.view)) return;
    const start = region.offset + offset;
    let ranges = this.held.get(region.view);
    if (!ranges) this.held.set(region.view, (ranges = []));
    ranges.push(start, start + length);
    this.holds++;
  }

  unhold(region: DmaRegion, offset: number, length: number): void {
    const ranges = this.held.get(region.view);
    if (!ranges) return;
    const start = region.offset + offset;
    for (let i = 0; i < ranges.length; i += 2) {
      if (ranges[i] !== start || ranges[i + 1] !== start + length) continue;
      ranges.splice(i, 2);
      this.holds--;
      if (ranges.length === 0) this.held.delete(region.view);
      break;
    }
    for (const [freedRegion, live] of this.deferred) {
      if (freedRegion.view !== region.view || this.overlapsHeld(region.view, live.offset, live.offset + live.size))
        continue;
      this.deferred.delete(freedRegion);
      this.giveBack(live);
    }
  }

  isHeld(region: DmaRegion, offset: number, length: number): boolean {
    if (this.holds === 0) return false;
    const start = region.offset + offset;
    return this.overlapsHeld(region.view, start, start + length);
  }

  private overlapsHeld(view: ArrayBuffer, start: number, end: number): boolean {
    const ranges = this.held.get(view);
    if (!ranges) return false;
    for (let i = 0; i < ranges.length; i += 2) if (ranges[i] < end && start < ranges[i + 1]) return true;
    return false;
  }

  /** Puts a live range back on its chunk's free list, coalescing with its neighbours. */
  private giveBack(live: Live): void {
    const { free } = live.chunk;
    let i = 0;
    while (i < free.length && free[i].offset < live.offset) i++;
    free.splice(i, 0, { offset: live.offset, size: live.size });
    // Coalesce with the following, then the preceding neighbour.
    if (i + 1 < free.length && free[i].offset + free[i].size === free[i + 1].offset) {
      free[i].size += free[i + 1].size;
      free.splice(i + 1, 1);
    }
    if (i > 0 && free[i - 1].offset + free[i - 1].size === free[i].offset) {
      free[i - 1].size += free[i].size;
      free.splice(i, 1);
    }
  }

  /** Whether `region` is one this pool handed out and has not freed since (O(1); false after close()). */
  isLive(region: DmaRegion): boolean {
    return this.live.has(region);
  }

  /** Whether `region` was handed out by this pool and freed since (or the pool closed). */
  wasFreed(region: DmaRegion): boolean {
    return this.freed.has(region);
  }

  /** close(), for `using` (explicit resource management): disposed at the end of the enclosing block. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Frees every chunk and detaches every view — except a chunk in which a
   * device still holds bytes (hold()): that one stays mapped for the life of
   * the process, since the device may still write it.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const region of this.live.keys()) this.freed.add(region);
    this.live.clear();
    this.deferred.clear();
    for (const chunk of this.chunks) {
      if (this.held.has(chunk.memory.view)) quarantined.push(chunk.memory);
      else chunk.memory.free();
    }
    this.held.clear();
    this.holds = 0;
    this.chunks.length = 0;
  }

  addressOf(view: ArrayBufferView): bigint | undefined {
    // Ordinary Buffers (the common case) are turned away without a walk over the live regions.
    if (!this.chunks.some((chunk) => chunk.memory.view === view.buffer)) return undefined;
    const start = view.byteOffset;
    const end = start + view.byteLength;
    for (const [region, live] of this.live) {
      if (region.view !== view.buffer) continue;
      if (start >= live.offset && end <= live.offset + region.size) return live.chunk.memory.iova + BigInt(start);
    }
    return undefined;
  }

  resolve(iova: bigint, length: number): Uint8Array | undefined {
    if (!Number.isInteger(length) || length < 0) return undefined;
    for (const { memory } of this.chunks) {
      if (iova < memory.iova) continue;
      const offset = iova - memory.iova;
      if (offset + BigInt(length) > BigInt(memory.size)) continue;
      return new Uint8Array(memory.view, Number(offset), length);
    }
    return undefined;
  }

  /**
   * Bytes handed out and chunks held (leak checks, diagnostics). `regions`
   * and `bytesInUse` count live regions; `deferredRegions` and
   * `bytesDeferred` those freed while a device still held some of their
   * bytes (not reusable yet); `holds` the byte ranges devices hold.
   */
  stats(): {
    chunks: number;
    regions: number;
    bytesInUse: number;
    bytesTotal: number;
    deferredRegions: number;
    bytesDeferred: number;
    holds: number;
  } {
    let bytesInUse = 0;
    for (const live of this.live.values()) bytesInUse += live.size;
    let bytesDeferred = 0;
    for (const live of this.deferred.values()) bytesDeferred += live.size;
    const bytesTotal = this.chunks.reduce((sum, c) => sum + c.memory.size, 0);
    return {
      chunks: this.chunks.length,
      regions: this.live.size,
      bytesInUse,
      bytesTotal,
      deferredRegions: this.deferred.size,
      bytesDeferred,
      holds: this.holds,
    };
  }

  private addChunk(minSize: number): Chunk {
    const memory = this.source(minSize);
    const chunk: Chunk = { memory, free: [{ offset: 0, size: memory.size }] };
    this.chunks.push(chunk);
    return chunk;
  }

  /** Takes `reserved` bytes (size rounded to the granule) from the first range that fits. */
  private carve(chunk: Chunk, size: number, reserved: number, align: number): DmaRegion | undefined {
    const base = chunk.memory.iova;
    const bigAlign = BigInt(align);
    for (let i = 0; i < chunk.free.length; i++) {
      const range = chunk.free[i];
      const address = base + BigInt(range.offset);
      const pad = Number((bigAlign - (address % bigAlign)) % bigAlign);
      if (pad + reserved > range.size) continue;
      const offset = range.offset + pad;
      const tail = range.size - pad - reserved;
      const replacement: Range[] = [];
      if (pad > 0) replacement.push({ offset: range.offset, size: pad });
      if (tail > 0) replacement.push({ offset: offset + reserved, size: tail });
      chunk.free.splice(i, 1, ...replacement);
      new Uint8Array(chunk.memory.view, offset, reserved).fill(0);
      const region: DmaRegion = Object.freeze({ view: chunk.memory.view, offset, size, iova: base + BigInt(offset) });
      this.live.set(region, { chunk, offset, size: reserved });
      return region;
    }
    return undefined;
  }
}
