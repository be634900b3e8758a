import { PackedDesc, PackedRing, RingEventFlags, isPackedUsed, packEventOffWrap, packedAvailFlags, packedRingBytes, unpackEventOffWrap } from '../spec';
import { eventSuppression, packedSlotState, walkPackedChain, type QueueDump } from './queue-dump';
import type { QueueRequest } from './queue-types';
import { Virtqueue, writeAddress, writeDescriptor, type VirtqueueOptions } from './virtqueue';

export type PackedQueueOptions = VirtqueueOptions;

/**
 * A packed virtqueue (virtio 1.2 §2.8), driver side. Descriptors are
 * written in ring order with the driver's wrap counter in their AVAIL/USED
 * bits; a chain's first descriptor gets its flags last, after a barrier,
 * so the device never sees part of a chain. Buffer IDs come from a private
 * free stack; each id's descriptor count is kept in shadow state to skip to
 * the next used descriptor. Event suppression uses the driver and device
 * areas (§2.8.10): ENABLE/DISABLE, or DESC positions with EVENT_IDX.
 *
 * Ring positions are compared in a space of 2 × size, (slot, wrap) ↦ slot
 * for wrap 1 and slot + size for wrap 0: an event position was crossed by
 * a batch when it lies in [old, new) modulo 2 × size.
 */
export class PackedQueue extends Virtqueue {
  readonly format = 'packed' as const;
  private readonly desc32: Uint32Array;
  private readonly desc16: Uint16Array;
  /** Driver event suppression (the driver area), written by us. */
  private readonly driverEvent: Uint16Array;
  /** Device event suppression (the device area), written by the device. */
  private readonly deviceEvent: Uint16Array;

  // Driver-private shadow state.
  private readonly freeIds: Uint16Array;
  private freeIdCount: number;
  private readonly chainLength: Uint16Array;
  private freeSlots: number;
  private nextAvail = 0;
  private availWrap = true;
  private nextUsed = 0;
  private usedWrap = true;
  /** Position (2 × size space) at the last publication. */
  private publishedPosition = 0;
  /** Head slots and their flags, written at publication (§2.8.6: the first descriptor last). */
  private readonly heads: number[] = [];

  constructor(options: PackedQueueOptions) {
    super(options, PackedRing.MAX_SIZE);
    const { size, memory } = options;
    const descBytes = packedRingBytes(size);
    const ring = memory.allocate(descBytes + 2 * PackedRing.EVENT_SIZE, PackedRing.DESC_ALIGN);
    const { view, offset, iova } = ring;
    // §2.8.4: the descriptor ring is zero-initialized (no AVAIL bit in any wrap state of ours).
    new Uint8Array(view, offset, ring.size).fill(0);
    this.desc32 = new Uint32Array(view, offset, 4 * size);
    this.desc16 = new Uint16Array(view, offset, 8 * size);
    this.driverEvent = new Uint16Array(view, offset + descBytes, 2);
    this.deviceEvent = new Uint16Array(view, offset + descBytes + PackedRing.EVENT_SIZE, 2);
    this.placeRing(ring, { size, desc: iova, driver: iova + BigInt(descBytes), device: iova + BigInt(descBytes + PackedRing.EVENT_SIZE) });
    this.freeIds = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.freeIds[i] = size - 1 - i; // id 0 first
    this.freeIdCount = size;
    this.chainLength = new Uint16Array(size);
    this.freeSlots = size;
    this.suppressInterrupts(true);
  }


  get free(): number {
    return this.freeIdCount > 0 ? this.freeSlots : 0;
  }

  protected hasRoom(count: number): boolean {
    return this.freeIdCount > 0 && this.freeSlots >= this.descriptorsFor(count);
  }

  protected place(request: QueueRequest, count: number): number {
    const id = this.freeIds[--this.freeIdCount];
    const readable = request.readable ?? [];
    const writable = request.writable ?? [];
    const headSlot = this.nextAvail;
    let headFlags: number;
    let writableTotal = 0;
    if (this.useIndirect(count)) {
      // §2.8.7: only F_WRITE inside the table; the ring descriptor carries INDIRECT and the id.
      const { slab, base, address } = this.indirectTable(id);
      let i = 0;
      for (const buffer of readable) writeDescriptor(slab.d32, slab.d16, base + i++, buffer, 0, 0);
      for (const buffer of writable) writableTotal += writeDescriptor(slab.d32, slab.d16, base + i++, buffer, 0, PackedDesc.F_WRITE);
      writeAddress(this.desc32, headSlot, address, count * PackedRing.DESC_SIZE);
      this.desc16[headSlot * 8 + 6] = id;
      this.desc16[headSlot * 8 + 7] = this.unpublished();
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
        writeDescriptor(this.desc32, this.desc16, this.nextAvail, buffer, id, i === 1 ? this.unpublished() : flags);
        this.advanceAvail();
      }
      for (const buffer of writable) {
        const flags = PackedDesc.F_WRITE | (++i < count ? PackedDesc.F_NEXT : 0) | packedAvailFlags(this.availWrap);
        if (i === 1) headFlags = flags;
        writableTotal += writeDescriptor(this.desc32, this.desc16, this.nextAvail, buffer, id, i === 1 ? this.unpublished() : flags);
        this.advanceAvail();
      }
      this.chainLength[id] = count;
    }
    this.freeSlots -= this.chainLength[id];
    this.writableBytes[id] = writableTotal;
    this.heads.push(headSlot, headFlags);
    return id;
  }

  /**
   * Flags for a head slot until its publication: AVAIL ≠ USED (never "used"
   * to us) and AVAIL ≠ the current wrap (never "available" to the device).
   * Zero would not do: in a round with wrap 0 it reads as used.
   */
  private unpublished(): number {
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

  protected publish(): void {
    if (this.heads.length === 0) return;
    // §2.8.21.1: every descriptor before the flags that expose it.
    this.barriers.dmaWmb();
    const heads = this.heads;
    for (let i = 0; i < heads.length; i += 2) this.desc16[heads[i] * 8 + 7] = heads[i + 1];
    heads.length = 0;
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
    if (notify) this.notifyDevice(this.nextAvail | (this.availWrap ? 0x8000 : 0));
    else this.stats.notificationsSuppressed++;
  }

  /** Whether `event` lies in [old, now) in the 2 × size position space. */
  private crossed(event: number, old: number, now: number): boolean {
    const span = 2 * this.size;
    return (event - old + span) % span < (now - old + span) % span;
  }

  protected reap(): number {
    let consumed = 0;
    for (;;) {
      const slot = this.nextUsed;
      const flags = Atomics.load(this.desc16, slot * 8 + 7);
      this.stats.atomics++;
      if (this.outstanding === 0 || !isPackedUsed(flags, this.usedWrap)) {
        if (consumed > 0 && this.eventIdx && this.interruptsEnabled) {
          // §2.8.10: interrupt me when this slot is used next; a completion may have raced with that store.
          this.driverEvent[0] = packEventOffWrap(this.nextUsed, this.usedWrap);
          if (this.outstanding > 0) {
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
      // count as 0. With F_WRITE, len is checked strictly (complete() breaks the queue on too much).
      const raw = this.desc32[slot * 4 + 2];
      const len = flags & PackedDesc.F_WRITE || (id < this.size && raw <= this.writableBytes[id]) ? raw : 0;
      let skip = 0;
      if (this.inOrder) {
        const before = this.freeSlots;
        const settled = this.completeInOrder(id, len, this.outstanding);
        if (settled < 0) return consumed;
        consumed += settled;
        skip = this.freeSlots - before;
      } else {
        const length = id < this.size ? this.chainLength[id] : 0;
        if (!this.complete(id, len)) return consumed;
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
    this.freeSlots += this.chainLength[id];
    this.freeIds[this.freeIdCount++] = id;
  }

  dump(): QueueDump {
    const common = this.dumpCommon();
    const ring = new DataView(this.desc32.buffer, this.desc32.byteOffset, this.desc32.byteLength + 2 * PackedRing.EVENT_SIZE);
    const descBytes = this.desc32.byteLength;
    const outstanding = this.pendingDumps();
    const byId = new Map(outstanding.map((entry) => [entry.id, entry]));
    // The slots in flight run from the next used slot for as many slots as are not free. Walk them
    // in ring order: a used descriptor stands for its buffer's chain length (§2.8.7), anything else
    // starts a chain as the driver wrote it (its Buffer ID in each descriptor).
    let slot = this.nextUsed;
    let wrap = this.usedWrap;
    for (let left = this.size - this.freeSlots; left > 0; ) {
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
        const chain = walkPackedChain(ring, this.size, slot, wrap, known || left, this.readOwnTable, this.indirectMax, known > 0);
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
      if (entry.descriptors.length === 0) entry.problem = 'its descriptors are no longer in the ring: the device has written used descriptors over them (§2.8.7)';
    }
    return {
      ...common,
      format: this.format,
      shadow: {
        nextAvail: this.nextAvail,
        availWrap: this.availWrap ? 1 : 0,
        nextUsed: this.nextUsed,
        usedWrap: this.usedWrap ? 1 : 0,
        freeSlots: this.freeSlots,
        freeIds: this.freeIdCount,
        unpublished: this.heads.length / 2,
      },
      ring: { format: 'packed', driverEvent: eventSuppression(ring, descBytes), deviceEvent: eventSuppression(ring, descBytes + PackedRing.EVENT_SIZE) },
      outstanding,
    };
  }

  protected suppressInterrupts(enabled: boolean): void {
    if (!enabled) {
      this.driverEvent[1] = RingEventFlags.DISABLE;
    } else if (this.eventIdx) {
      this.driverEvent[0] = packEventOffWrap(this.nextUsed, this.usedWrap);
      this.driverEvent[1] = RingEventFlags.DESC;
    } else {
      this.driverEvent[1] = RingEventFlags.ENABLE;
    }
  }

}
