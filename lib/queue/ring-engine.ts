import { endianness } from 'node:os';
import { FeatureBit, hasFeature } from '../spec/features';
import { RingViolation } from '../spec/ring-violations';
import type { Barriers, DmaAllocator, DmaRegion } from '../platform';
import type { QueueAddresses, QueueLayout } from '../transport';
import { IndirectSlab } from './descriptors';
import { hex } from '../util/hex';
import { type OutstandingDump, type QueueDump, type TableReader } from './queue-dump';
import type { QueueRequest, QueueStats } from './queue-types';
import { AvailOrder, IdState, checkUsedEntry, type RingBreak } from './used-entry';
import { invalidArgValue, outOfRange } from '../errors';

// The rings are little-endian (§2.7, §2.8) and are accessed through host-order typed arrays.
if (endianness() !== 'LE') throw new Error('virtio-mmio: virtqueues are only implemented for little-endian hosts');

export interface RingEngineOptions {
  /** Queue Size (§2.7: a power of two for the split ring). */
  size: number;
  memory: DmaAllocator;
  layout: QueueLayout;
  /** Negotiated features: INDIRECT_DESC, EVENT_IDX and IN_ORDER change how the ring is used. */
  features: bigint;
  barriers: Barriers;
  /** Longest chain sent as one indirect table; longer chains go direct. */
  indirectMax: number;
  /** Counters the engine adds to (publishes, suppressed notifications, Atomics, indirect tables). */
  stats: QueueStats;
  /**
   * Receives each used entry reap() validated, in the order the device used
   * them; the id is free again. Returns false when settling it made the
   * queue unusable (a callback closed it): the reap stops there.
   */
  onUsed: (id: number, len: number) => boolean | void;
}

/** Builds the ring engine of a format (SplitRingEngine, PackedRingEngine). */
export type RingEngineFactory = (options: RingEngineOptions) => RingEngine;

/** What a dump needs of the layer above: the requests in flight, each with an empty chain to fill. */
export type DumpPart = Pick<QueueDump, 'shadow' | 'ring' | 'outstanding'>;

/**
 * A ring engine: the driver side of one ring format (virtio 1.2 §2.7 split,
 * §2.8 packed), synchronous and self-contained. It owns the ring memory
 * and the driver's private shadow state, places a request's buffers as a
 * chain and returns its id (< size), publishes what was placed and says
 * whether the device wants a notification, reaps used entries — each
 * validated against the shadow before it indexes anything — and turns
 * used-buffer notifications on and off. It keeps no promises, timers or
 * references to the event loop, and allocates nothing per request: every
 * per-id array is made when the engine is built.
 *
 * A violation of the ring's rules stops reaping: `violation` says which
 * (a RingViolation) and the engine does nothing more until reset().
 */
export abstract class RingEngine {
  abstract readonly format: 'split' | 'packed';
  readonly size: number;
  readonly eventIdx: boolean;
  readonly inOrder: boolean;
  readonly indirectMax: number;
  /** Ring memory, laid out by the format; the device's from attach until it lets go. */
  readonly ring: DmaRegion;
  readonly addresses: QueueAddresses;
  readonly indirect?: IndirectSlab;
  /** The first violation found by reap(), if any. */
  violation?: RingBreak;

  protected readonly stats: QueueStats;
  protected readonly barriers: Barriers;
  protected readonly onUsed: (id: number, len: number) => boolean | void;
  /** Bytes the device may write, per id in flight (the used len's bound). */
  protected readonly writableBytes: Float64Array;
  /** Per id: FREE, PLACED (written, not yet published: the device cannot have seen it) or PUBLISHED. */
  protected readonly inFlightIds: Uint8Array;
  /** Ids placed and not yet used, published or not. */
  protected inFlight = 0;
  /** Ids placed since the last publish(), in placement order. */
  private readonly unpublishedIds: Uint16Array;
  private unpublishedCount = 0;
  protected notificationsEnabled = true;
  private readonly order?: AvailOrder;

  protected constructor(
    options: RingEngineOptions,
    maxSize: number,
    layOut: (size: number) => { bytes: number; align: number; driver: number; device: number },
  ) {
    const { size, memory } = options;
    if (!Number.isInteger(size) || size < 1 || size > maxSize)
      throw outOfRange(`Queue Size must be an integer in [1, ${maxSize}], got ${size}`);
    this.size = size;
    this.stats = options.stats;
    this.barriers = options.barriers;
    this.onUsed = options.onUsed;
    this.eventIdx = hasFeature(options.features, FeatureBit.EVENT_IDX);
    this.inOrder = hasFeature(options.features, FeatureBit.IN_ORDER);
    this.indirectMax = options.indirectMax;
    this.writableBytes = new Float64Array(size);
    this.inFlightIds = new Uint8Array(size);
    this.unpublishedIds = new Uint16Array(size);
    if (this.inOrder) this.order = new AvailOrder(size);
    const { bytes, align, driver, device } = layOut(size);
    this.ring = memory.allocate(bytes, align);
    // §2.7, §2.8.4: a ring starts zeroed (indexes 0, no descriptor available or used in any wrap state).
    new Uint8Array(this.ring.view, this.ring.offset, this.ring.size).fill(0);
    try {
      if (hasFeature(options.features, FeatureBit.INDIRECT_DESC))
        this.indirect = new IndirectSlab(memory, size, this.indirectMax);
    } catch (error) {
      memory.free(this.ring);
      throw error;
    }
    const iova = this.ring.iova;
    this.addresses = { size, desc: iova, driver: iova + BigInt(driver), device: iova + BigInt(device) };
  }

  /** Free descriptors right now. */
  abstract get free(): number;

  /** Requests placed and not yet used. */
  get outstanding(): number {
    return this.inFlight;
  }

  /** Whether a request of `count` buffers fits now. */
  abstract hasRoom(count: number): boolean;

  /**
   * Writes the request's chain (`count` buffers, checked by the caller) and returns its id; not visible to the device
   * until publish().
   */
  abstract place(request: QueueRequest, count: number): number;

  /**
   * Makes what was placed visible to the device (§2.7.13, §2.8.21).
   * Returns -1 when the device needs no notification (nothing new, or it
   * asked for none), else the notification's next-available value (bits
   * 0–14 offset, bit 15 wrap: §4.2.3.3 NOTIFICATION_DATA).
   */
  abstract publish(): number;

  /** Takes every used entry the device published, validated, to onUsed; returns how many requests were settled. */
  abstract reap(): number;

  /** Asks the device for used-buffer notifications (§2.7.10, §2.8.10) or not; a hint the device may ignore. */
  setNotifications(enabled: boolean): void {
    this.notificationsEnabled = enabled;
    this.writeSuppression(enabled);
  }

  get notifications(): boolean {
    return this.notificationsEnabled;
  }

  /**
   * Back to the state of a new ring: every id free, indexes and wrap
   * counters at their start, the ring memory zeroed. Only once the device
   * has let go of the ring (a completed device or queue reset, §2.4, §2.6.1).
   */
  reset(): void {
    new Uint8Array(this.ring.view, this.ring.offset, this.ring.size).fill(0);
    this.inFlightIds.fill(IdState.FREE);
    this.inFlight = 0;
    this.unpublishedCount = 0;
    this.order?.clear();
    this.violation = undefined;
    this.resetShadow();
    this.writeSuppression(this.notificationsEnabled);
  }

  /** Ring descriptors a request of `count` buffers takes. */
  descriptorsFor(count: number): number {
    return this.useIndirect(count) ? 1 : count;
  }

  /** The memory the device reads and writes for this ring: the ring itself and the indirect tables. */
  get regions(): DmaRegion[] {
    return this.indirect ? [this.ring, this.indirect.region] : [this.ring];
  }

  /** The format's shadow state, ring words and chains of the requests in `outstanding`, for QueueDump. */
  abstract dump(outstanding: OutstandingDump[]): DumpPart;

  protected abstract writeSuppression(enabled: boolean): void;
  protected abstract resetShadow(): void;
  /** Takes back the descriptors (and id) of request `id`, which the device has used. */
  protected abstract reclaim(id: number): void;

  protected useIndirect(count: number): boolean {
    return this.indirect !== undefined && count > 1 && count <= this.indirectMax;
  }

  /** Requests the device may have seen: published and not yet used (what a used entry may name). */
  protected get published(): number {
    return this.inFlight - this.unpublishedCount;
  }

  /** Requests placed and not yet published. */
  get unpublished(): number {
    return this.unpublishedCount;
  }

  /** Bookkeeping of a chain just placed as `id`. */
  protected placed(id: number, writable: number): void {
    this.writableBytes[id] = writable;
    this.inFlightIds[id] = IdState.PLACED;
    this.unpublishedIds[this.unpublishedCount++] = id;
    this.inFlight++;
    this.order?.push(id);
  }

  /** The chains placed since the last publication are now visible to the device (a format's publish()). */
  protected markPublished(): void {
    for (let i = 0; i < this.unpublishedCount; i++) this.inFlightIds[this.unpublishedIds[i]] = IdState.PUBLISHED;
    this.unpublishedCount = 0;
  }

  /**
   * A used entry, validated (checkUsedEntry), its id freed and handed on;
   * false when it broke a rule (`violation` set) or onUsed made the queue
   * unusable: the reap stops.
   */
  protected settle(id: number, len: number): boolean {
    const violation = checkUsedEntry(id, len, this.inFlightIds, this.writableBytes);
    if (violation) {
      // A chain the device may not write at all: its len can index nothing and is taken as 0, counted
      // (QEMU's virtio-input reports 8 for each statusq buffer; Linux ignores such a len).
      if (violation.reason !== RingViolation.USED_LEN_TOO_LONG || this.writableBytes[id] !== 0) {
        this.violation = violation;
        return false;
      }
      this.stats.usedLenIgnored++;
      len = 0;
    }
    this.inFlightIds[id] = IdState.FREE;
    this.inFlight--;
    this.reclaim(id);
    return this.onUsed(id, len) !== false;
  }

  /**
   * IN_ORDER: one used entry naming `id` stands for every request made
   * available before it and still in flight, and for `id` itself (§2.7 and
   * §2.8, "In-order use of descriptors"): the earlier ones were used
   * completely, `id` reports `len`. Settles them oldest first, at most
   * `limit`; returns how many, or -1 on a violation.
   */
  protected settleInOrder(id: number, len: number, limit: number): number {
    const order = this.order!;
    // Not a request in flight: settle() names the violation.
    if (id >= this.size || this.inFlightIds[id] !== IdState.PUBLISHED) return this.settle(id, len) ? 1 : -1;
    const batch = order.batchTo(id);
    if (batch > limit) {
      this.violation = {
        reason: RingViolation.USED_IDX_JUMP,
        message: `an in-order used element for request ${id} covers ${batch} requests, the device reported ${limit}`,
      };
      return -1;
    }
    if (batch > 1) {
      this.stats.inOrderBatches++;
      this.stats.inOrderBatched += batch;
    }
    for (let n = 1; n <= batch; n++) {
      const next = order.shift();
      if (!this.settle(next, n === batch ? len : this.writableBytes[next])) return -1;
    }
    return batch;
  }

  /** Reads an indirect table back from this engine's own slab (the only place it puts them), for dumps. */
  protected readonly readOwnTable: TableReader = (address, length) => {
    const slab = this.indirect;
    const offset = slab ? address - slab.region.iova : -1n;
    if (!slab || offset < 0n || offset + BigInt(length) > BigInt(slab.region.size)) {
      throw invalidArgValue(`${hex(address)} (+${length}) is not in this queue's indirect tables`, 'range');
    }
    return new DataView(slab.region.view, slab.region.offset + Number(offset), length);
  };
}
