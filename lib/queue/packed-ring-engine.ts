import {
  PackedDesc,
  PackedRing,
  RingEventFlags,
  isPackedUsed,
  packEventOffWrap,
  packedAvailFlags,
  packedRingBytes,
  unpackEventOffWrap,
} from '../spec/packed-ring';
import { NO_BUFFERS, writeAddress, writeDescriptor } from './descriptors';
import { eventSuppression, packedSlotState, walkPackedChain, type OutstandingDump } from './queue-dump';
import type { QueueRequest } from './queue-types';
import { RingEngine, type DumpPart, type RingEngineOptions } from './ring-engine';

/** The descriptor ring, then the driver and device event suppression areas (§2.8.10), each 4 bytes. */
function packedLayout(size: number): { bytes: number; align: number; driver: number; device: number } {
  const descBytes = packedRingBytes(size);
  return {
    bytes: descBytes + 2 * PackedRing.EVENT_SIZE,
    align: PackedRing.DESC_ALIGN,
    driver: descBytes,
    device: descBytes + PackedRing.EVENT_SIZE,
  };
}

/**
 * The packed ring (virtio 1.2 §2.8), driver side. Descriptors are written
 * in ring order with the driver's wrap counter in their AVAIL/USED bits; a
 * chain's first descriptor gets its flags last, after a barrier, so the
 * device never sees part of a chain. Buffer IDs come from a private free
 * stack; each id's descriptor count is kept in shadow state to skip to the
 * next used descriptor. Event suppression uses the driver and device areas
 * (§2.8.10): ENABLE/DISABLE, or DESC positions with EVENT_IDX.
 *
 * Ring positions are compared in a space of 2 × size, (slot, wrap) ↦ slot
 * for wrap 1 and slot + size for wrap 0: an event position was crossed by
 * a batch when it lies in [old, new) modulo 2 × size.
 */
export class PackedRingEngine extends RingEngine {
  readonly format = 'packed' as const;
  private readonly desc32: Uint32Array;
  private readonly desc16: Uint16Array;
  /** Driver event suppression (the driver area), written by us. */
  private readonly driverEvent: Uint16Array;
  /** Device event suppression (the device area), written by the device. */
  private readonly deviceEvent: Uint16Array;

  // Driver-private shadow state.
  private readonly freeIds: Uint16Array;
  private freeIdCount = 0;
  private readonly chainLength: Uint16Array;
  private freeSlots = 0;
  /** Descriptor slots reclaim() has given back, ever: what an in-order used descriptor covers (reap). */
  private slotsReclaimed = 0;
  private nextAvail = 0;
  private availWrap = true;
  private nextUsed = 0;
  private usedWrap = true;
  /** Position (2 × size space) at the last publication. */
  private publishedPosition = 0;
  /** Head slots and their flags, written at publication (§2.8.6: the first descriptor last). */
  private readonly heads: Uint32Array;
  private headCount = 0;

  constructor(options: RingEngineOptions) {
    super(options, PackedRing.MAX_SIZE, packedLayout);
    const { size } = this;
    const { view, offset } = this.ring;
    const descBytes = packedRingBytes(size);
    this.desc32 = new Uint32Array(view, offset, 4 * size);
    this.desc16 = new Uint16Array(view, offset, 8 * size);
    this.driverEvent = new Uint16Array(view, offset + descBytes, 2);
    this.deviceEvent = new Uint16Array(view, offset + descBytes + PackedRing.EVENT_SIZE, 2);
    this.freeIds = new Uint16Array(size);
    this.chainLength = new Uint16Array(size);
    this.heads = new Uint32Array(2 * size);
    this.resetShadow();
    this.writeSuppression(true);
  }

  protected resetShadow(): void {
    for (let i = 0; i < this.size; i++) this.freeIds[i] = this.size - 1 - i; // id 0 first
    this.freeIdCount = this.size;
    this.chainLength.fill(0);
    this.freeSlots = this.size;
    this.nextAvail = 0;
    this.availWrap = true;
    this.nextUsed = 0;
    this.usedWrap = true;
    this.publishedPosition = 0;
    this.headCount = 0;
  }

  get free(): number {
    return this.freeIdCount > 0 ? this.freeSlots : 0;
  }

  hasRoom(count: number): boolean {
    return this.freeIdCount > 0 && this.freeSlots >= this.descriptorsFor(count);
  }

  place(request: QueueRequest, count: number): number {
    const id = this.freeIds[--this.freeIdCount];
    const readable = request.readable ?? NO_BUFFERS;
    const writable = request.writable ?? NO_BUFFERS;
    const headSlot = this.nextAvail;
    let headFlags: number;
    let writableTotal = 0;
    if (this.useIndirect(count)) {
      // §2.8.7: only F_WRITE inside the table; the ring descriptor carries INDIRECT and the id.
      const slab = this.indirect!;
      const base = slab.base(id);
      this.stats.indirect++;
      let i = 0;
      for (const buffer of readable) writeDescriptor(slab.d32, slab.d16, base + i++, buffer, 0, 0);
      for (const buffer of writable)
        writableTotal += writeDescriptor(slab.d32, slab.d16, base + i++, buffer, 0, PackedDesc.F_WRITE);
      writeAddress(this.desc32, headSlot, slab.address(id), count * PackedRing.DESC_SIZE);
      this.desc16[headSlot * 8 + 6] = id;
      this.desc16[headSlot * 8 + 7] = this.hiddenHeadFlags();
      headFlags = PackedDesc.F_INDIRECT | packedAvailFlags(this.availWrap);
      this.advanceAvail();
      this.chainLength[id] = 1;
    } else {
      // §2.8.6: consecutive slots, F_NEXT on all but the last, the id in each (the device reads the last's).
      headFlags = 0;
      let i = 0;
      for (const buffer of readable) {
        const flags = (++i < count ? PackedDesc.F_NEXT : 0) | packedAvailFlags(this.availWrap);
        if (i === 1) headFlags = flags;
        writeDescriptor(this.desc32, this.desc16, this.nextAvail, buffer, id, i === 1 ? this.hiddenHeadFlags() : flags);
        this.advanceAvail();
      }
      for (const buffer of writable) {
        const flags = PackedDesc.F_WRITE | (++i < count ? PackedDesc.F_NEXT : 0) | packedAvailFlags(this.availWrap);
        if (i === 1) headFlags = flags;
        writableTotal += writeDescriptor(
          this.desc32,
          this.desc16,
          this.nextAvail,
          buffer,
          id,
          i === 1 ? this.hiddenHeadFlags() : flags,
        );
        this.advanceAvail();
      }
      this.chainLength[id] = count;
    }
    this.freeSlots -= this.chainLength[id];
    this.placed(id, writableTotal);
    this.heads[this.headCount++] = headSlot;
    this.heads[this.headCount++] = headFlags;
    return id;
  }

  /**
   * Flags for a head slot until its publication: AVAIL ≠ USED (never "used"
   * to us) and AVAIL ≠ the current wrap (never "available" to the device).
   * Zero would not do: in a round with wrap 0 it reads as used.
   */
  private hiddenHeadFlags(): number {
    return packedAvailFlags(!this.availWrap);
  }

  private advanceAvail(): void {
    if (++this.nextAvail === this.size) {
      this.nextAvail = 0;
      this.availWrap = !this.availWrap;
    }
  }

  /** (slot, wrap) as a position in the 2 × size space. */
  private position(slot: number, wrap: boolean): number {
    return wrap ? slot : slot + this.size;
  }

  publish(): number {
    if (this.headCount === 0) return -1;
    // §2.8.21.1: every descriptor before the flags that expose it.
    this.barriers.dmaWmb();
    const heads = this.heads;
    for (let i = 0; i < this.headCount; i += 2) this.desc16[heads[i] * 8 + 7] = heads[i + 1];
    this.markPublished();
    this.headCount = 0;
    this.stats.publishes++;
    const old = this.publishedPosition;
    const now = this.position(this.nextAvail, this.availWrap);
    this.publishedPosition = now;
    // §2.8.21.3: the flags before reading the device's event suppression.
    this.barriers.mb();
    const flags = this.deviceEvent[1] & 3;
    let notify: boolean;
    if (flags === RingEventFlags.DISABLE) notify = false;
    else if (flags === RingEventFlags.DESC && this.eventIdx) {
      const { offset, wrap } = unpackEventOffWrap(this.deviceEvent[0]);
      // An offset outside the ring is the device's error: notify rather than risk a stall.
      notify = offset >= this.size || this.crossed(this.position(offset, wrap), old, now);
    } else notify = true;
    if (notify) return this.nextAvail | (this.availWrap ? 0x8000 : 0);
    this.stats.notificationsSuppressed++;
    return -1;
  }

  /** Whether `event` lies in [old, now) in the 2 × size position space. */
  private crossed(event: number, old: number, now: number): boolean {
    const span = 2 * this.size;
    return (event - old + span) % span < (now - old + span) % span;
  }

  reap(): number {
    if (this.violation) return 0;
    let consumed = 0;
    for (;;) {
      const slot = this.nextUsed;
      const flags = Atomics.load(this.desc16, slot * 8 + 7);
      this.stats.atomics++;
      if (this.published === 0 || !isPackedUsed(flags, this.usedWrap)) {
        if (consumed > 0 && this.eventIdx && this.notificationsEnabled) {
          // §2.8.10: interrupt me when this slot is used next; a completion may have raced with that store.
          this.driverEvent[0] = packEventOffWrap(this.nextUsed, this.usedWrap);
          if (this.published > 0) {
            this.barriers.mb();
            if (isPackedUsed(Atomics.load(this.desc16, slot * 8 + 7), this.usedWrap)) continue;
          }
        }
        return consumed;
      }
      // §2.8.22: the flags before the id and len they cover; each read once.
      this.barriers.dmaRmb();
      const id = this.desc16[slot * 8 + 6];
      // §2.8.2 reserves len when F_WRITE is clear, but QEMU (7.2) never sets F_WRITE in a used
      // descriptor and Linux reads len regardless: without F_WRITE, a len that fits is taken, others
      // count as 0. With F_WRITE, len is checked strictly (settle() breaks the queue on too much).
      const raw = this.desc32[slot * 4 + 2];
      const len = flags & PackedDesc.F_WRITE || (id < this.size && raw <= this.writableBytes[id]) ? raw : 0;
      let skip = 0;
      if (this.inOrder) {
        // Counted by reclaim(), not read off freeSlots: a completion callback may place a request meanwhile.
        const before = this.slotsReclaimed;
        const settled = this.settleInOrder(id, len, this.published);
        if (settled < 0) return consumed;
        consumed += settled;
        skip = this.slotsReclaimed - before;
      } else {
        const length = id < this.size ? this.chainLength[id] : 0;
        if (!this.settle(id, len)) return consumed;
        consumed++;
        skip = length;
      }
      this.nextUsed += skip;
      if (this.nextUsed >= this.size) {
        this.nextUsed -= this.size;
        this.usedWrap = !this.usedWrap;
      }
    }
  }

  protected reclaim(id: number): void {
    this.slotsReclaimed += this.chainLength[id];
    this.freeSlots += this.chainLength[id];
    this.freeIds[this.freeIdCount++] = id;
  }

  protected writeSuppression(enabled: boolean): void {
    if (!enabled) {
      this.driverEvent[1] = RingEventFlags.DISABLE;
    } else if (this.eventIdx) {
      this.driverEvent[0] = packEventOffWrap(this.nextUsed, this.usedWrap);
      this.driverEvent[1] = RingEventFlags.DESC;
    } else {
      this.driverEvent[1] = RingEventFlags.ENABLE;
    }
  }

  dump(outstanding: OutstandingDump[]): DumpPart {
    const ring = new DataView(
      this.desc32.buffer,
      this.desc32.byteOffset,
      this.desc32.byteLength + 2 * PackedRing.EVENT_SIZE,
    );
    const descBytes = this.desc32.byteLength;
    const byId = new Map(outstanding.map((entry) => [entry.id, entry]));
    // The slots in flight run from the next used slot for as many slots as are not free. Walk them
    // in ring order: a used descriptor stands for its buffer's chain length (§2.8.7), anything else
    // starts a chain as the driver wrote it (its Buffer ID in each descriptor).
    let slot = this.nextUsed;
    let wrap = this.usedWrap;
    for (let left = this.size - this.freeSlots; left > 0;) {
      const flags = this.desc16[slot * 8 + 7];
      const id = this.desc16[slot * 8 + 6];
      let step = 1;
      const state = packedSlotState(flags, wrap);
      if (state === 'used') {
        const entry = byId.get(id);
        if (entry && !entry.used) entry.used = { len: this.desc32[slot * 4 + 2] };
        if (entry) step = Math.max(1, this.chainLength[id]);
      } else if (state !== 'used-earlier') {
        const known = byId.has(id) ? Math.min(this.chainLength[id], left) : 0;
        const chain = walkPackedChain(
          ring,
          this.size,
          slot,
          wrap,
          known || left,
          this.readOwnTable,
          this.indirectMax,
          known > 0,
        );
        const entry = byId.get(chain[chain.length - 1].id!);
        if (entry && entry.descriptors.length === 0) entry.descriptors = chain;
        step = chain.length;
      }
      left -= step;
      slot += step;
      if (slot >= this.size) {
        slot -= this.size;
        wrap = !wrap;
      }
    }
    for (const entry of outstanding) {
      if (entry.descriptors.length === 0)
        entry.problem =
          'its descriptors are no longer in the ring: the device has written used descriptors over them (§2.8.7)';
    }
    return {
      shadow: {
        nextAvail: this.nextAvail,
        availWrap: this.availWrap ? 1 : 0,
        nextUsed: this.nextUsed,
        usedWrap: this.usedWrap ? 1 : 0,
        freeSlots: this.freeSlots,
        freeIds: this.freeIdCount,
        unpublished: this.headCount / 2,
      },
      ring: {
        format: 'packed',
        driverEvent: eventSuppression(ring, descBytes),
        deviceEvent: eventSuppression(ring, descBytes + PackedRing.EVENT_SIZE),
      },
      outstanding,
    };
  }
}
