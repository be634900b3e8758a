import type { DeviceMemory, DmaAllocator, DmaPool, DmaRegion } from '../../lib/platform';
import { MutationRandom } from './mutation-random';

/** Damage found in a guard of a live region, or in a freed (quarantined) region. */
export interface CanaryDamage {
  /** 'guard': bytes just before or after a region were written; 'freed': a freed region was written. */
  readonly kind: 'guard' | 'freed';
  /** Which guard, for kind 'guard'. */
  readonly side?: 'before' | 'after';
  /** The region's device address and size. */
  readonly iova: bigint;
  readonly size: number;
  /** Offset of the first changed byte from the region's start (negative: in the guard before it). */
  readonly at: number;
}

export interface CanaryMemoryOptions {
  /** Seeds the guard and poison patterns. */
  seed: number;
  /** Guard bytes on each side (default 64); the one before is rounded up to the alignment. */
  guardBytes?: number;
  /**
   * Freed regions are not given back to the pool until close(): they are
   * filled with a poison pattern, and a later write to them is reported as
   * 'freed' damage. Memory is then never reused within one run, so a
   * device that writes late through an old descriptor lands in memory of
   * the same shape, never in a guard. Default true.
   */
  quarantine?: boolean;
  /**
   * Self-test only: regions are this many bytes longer than their guards
   * allow, so whoever fills a region writes into its guard (default 0).
   */
  overhang?: number;
}

interface Record {
  readonly outer: DmaRegion;
  readonly before: number;
  readonly inner: DmaRegion;
  readonly guardBefore: Uint8Array;
  readonly guardAfter: Uint8Array;
  damaged: boolean;
}

interface Quarantined {
  readonly outer: DmaRegion;
  readonly inner: DmaRegion;
  readonly poison: Uint8Array;
  damaged: boolean;
}

const roundUp = (n: number, to: number): number => Math.ceil(n / to) * to;

/**
 * A DmaAllocator and DeviceMemory over a DmaPool that puts seeded guard
 * bytes before and after every region it hands out, so a write outside a
 * region — by the driver, or by the device through a descriptor the driver
 * filled — shows as changed guard bytes. Guards are checked on free(), on
 * check() and on close(). The device side (resolve) is the pool's.
 */
export class CanaryMemory implements DmaAllocator, DeviceMemory {
  readonly damage: CanaryDamage[] = [];
  private readonly live = new Map<DmaRegion, Record>();
  private readonly quarantined: Quarantined[] = [];
  private readonly deferred = new Set<Record>();
  private readonly handedOut = new WeakSet<DmaRegion>();
  private closed = false;
  private readonly random: MutationRandom;
  private readonly guardBytes: number;
  private readonly quarantine: boolean;
  private readonly overhang: number;
  private allocations = 0;

  constructor(
    private readonly pool: DmaPool,
    options: CanaryMemoryOptions,
  ) {
    this.random = new MutationRandom(options.seed);
    this.guardBytes = options.guardBytes ?? 64;
    this.quarantine = options.quarantine ?? true;
    this.overhang = options.overhang ?? 0;
  }

  /** Regions handed out so far. */
  get allocated(): number {
    return this.allocations;
  }

  get liveRegions(): number {
    return this.live.size;
  }

  allocate(size: number, align = 16): DmaRegion {
    // Arguments the pool refuses are refused the same way (RangeError).
    if (!Number.isInteger(size) || size <= 0) return this.pool.allocate(size, align);
    const before = roundUp(this.guardBytes, Math.max(align, 16));
    const after = this.guardBytes;
    const outer = this.pool.allocate(before + size + after, align);
    const inner: DmaRegion = Object.freeze({
      view: outer.view,
      offset: outer.offset + before,
      size: size + this.overhang,
      iova: outer.iova + BigInt(before),
    });
    const guardBefore = this.random.bytes(before);
    const guardAfter = this.random.bytes(after);
    new Uint8Array(outer.view, outer.offset, before).set(guardBefore);
    new Uint8Array(outer.view, outer.offset + before + size, after).set(guardAfter);
    this.live.set(inner, { outer, before, inner, guardBefore, guardAfter, damaged: false });
    this.handedOut.add(inner);
    this.allocations++;
    return inner;
  }

  free(region: DmaRegion): void {
    const record = this.live.get(region);
    if (!record) throw new RangeError('this DMA region was not allocated by this allocator, or was freed already');
    this.live.delete(region);
    this.checkGuards(record);
    // As DmaPool does: memory a device still holds is given back (quarantined) only when it lets go.
    if (this.pool.isHeld(record.outer, 0, record.outer.size)) {
      this.deferred.add(record);
      return;
    }
    this.retire(record);
  }

  hold(region: DmaRegion, offset: number, length: number): void {
    this.pool.hold(region, offset, length);
  }

  unhold(region: DmaRegion, offset: number, length: number): void {
    this.pool.unhold(region, offset, length);
    for (const record of this.deferred) {
      if (this.pool.isHeld(record.outer, 0, record.outer.size)) continue;
      this.deferred.delete(record);
      this.retire(record);
    }
  }

  isHeld(region: DmaRegion, offset: number, length: number): boolean {
    return this.pool.isHeld(region, offset, length);
  }

  /** Regions freed while a device held part of them, not retired yet. */
  get deferredRegions(): number {
    return this.deferred.size;
  }

  private retire(record: Record): void {
    if (!this.quarantine) {
      this.pool.free(record.outer);
      return;
    }
    this.checkGuards(record);
    const poison = this.random.bytes(record.outer.size);
    new Uint8Array(record.outer.view, record.outer.offset, record.outer.size).set(poison);
    this.quarantined.push({ outer: record.outer, inner: record.inner, poison, damaged: false });
  }

  /** Checks every live guard and every quarantined region; returns the damage found by this call. */
  check(): CanaryDamage[] {
    const before = this.damage.length;
    for (const record of this.live.values()) this.checkGuards(record);
    for (const q of this.quarantined) {
      if (q.damaged) continue;
      const at = firstDifference(new Uint8Array(q.outer.view, q.outer.offset, q.outer.size), q.poison);
      if (at >= 0) {
        q.damaged = true;
        this.damage.push({
          kind: 'freed',
          iova: q.inner.iova,
          size: q.inner.size,
          at: at - Number(q.inner.iova - q.outer.iova),
        });
      }
    }
    return this.damage.slice(before);
  }

  /** Checks everything, then closes the pool (all views are detached). */
  close(): void {
    this.check();
    this.closed = true;
    this.live.clear();
    this.quarantined.length = 0;
    this.pool.close();
  }

  addressOf(view: ArrayBufferView): bigint | undefined {
    const start = view.byteOffset;
    const end = start + view.byteLength;
    for (const region of this.live.keys()) {
      if (region.view !== view.buffer) continue;
      if (start >= region.offset && end <= region.offset + region.size)
        return region.iova + BigInt(start - region.offset);
    }
    return undefined;
  }

  isLive(region: DmaRegion): boolean {
    return !this.closed && this.live.has(region);
  }

  wasFreed(region: DmaRegion): boolean {
    return this.handedOut.has(region) && (this.closed || !this.live.has(region));
  }

  resolve(iova: bigint, length: number): Uint8Array | undefined {
    return this.pool.resolve(iova, length);
  }

  private checkGuards(record: Record): void {
    if (record.damaged) return;
    const { outer, before, inner, guardBefore, guardAfter } = record;
    const size = inner.size - this.overhang;
    const head = firstDifference(new Uint8Array(outer.view, outer.offset, before), guardBefore);
    const tail = firstDifference(
      new Uint8Array(outer.view, outer.offset + before + size, guardAfter.length),
      guardAfter,
    );
    if (head >= 0) this.damage.push({ kind: 'guard', side: 'before', iova: inner.iova, size, at: head - before });
    if (tail >= 0) this.damage.push({ kind: 'guard', side: 'after', iova: inner.iova, size, at: size + tail });
    record.damaged = head >= 0 || tail >= 0;
  }
}

function firstDifference(actual: Uint8Array, expected: Uint8Array): number {
  if (Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(expected)) return -1;
  for (let i = 0; i < expected.length; i++) if (actual[i] !== expected[i]) return i;
  return -1;
}
