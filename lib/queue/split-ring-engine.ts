import { RingViolation } from '../spec/ring-violations';
import {
  SplitRing,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_USED_F_NO_NOTIFY,
  VirtqDesc,
  availEventOffset,
  availRingBytes,
  descTableBytes,
  isPowerOfTwo,
  legacyLayout,
  needEvent,
  usedEventOffset,
} from '../spec/split-ring';
import type { QueueLayout } from '../transport';
import { NO_BUFFERS, writeAddress, writeDescriptor } from './descriptors';
import { walkSplitChain, type OutstandingDump, type SplitRingState } from './queue-dump';
import type { QueueRequest } from './queue-types';
import { RingEngine, type DumpPart, type RingEngineOptions } from './ring-engine';
import { invalidArgValue } from '../errors';

/**
 * Where the three areas go: legacy, one area with the used ring at QueueAlign (§2.7.2); modern, tight at the §2.7
 * alignments.
 */
function splitLayout(
  layout: QueueLayout,
): (size: number) => { bytes: number; align: number; driver: number; device: number } {
  return (size) => {
    if (!isPowerOfTwo(size))
      throw invalidArgValue(`Queue Size must be a power of two ≤ ${SplitRing.MAX_SIZE}, got ${size}`, 'range');
    const driver = descTableBytes(size);
    if (layout.legacy) {
      const { usedOffset, bytes } = legacyLayout(size, layout.align);
      return { bytes, align: layout.pageSize, driver, device: usedOffset };
    }
    const device = Math.ceil((driver + availRingBytes(size)) / SplitRing.USED_ALIGN) * SplitRing.USED_ALIGN;
    return { bytes: device + 6 + SplitRing.USED_ELEM_SIZE * size, align: SplitRing.DESC_ALIGN, driver, device };
  };
}

/**
 * The split ring (virtio 1.2 §2.7), driver side: a descriptor table with a
 * free list in private shadow arrays, the avail ring published with one
 * avail.idx store per batch, the used ring read once per element. With
 * IN_ORDER, descriptors are taken in ring order and one used element may
 * stand for a batch (§2.7 "In-order use of descriptors").
 */
export class SplitRingEngine extends RingEngine {
  readonly format = 'split' as const;
  private readonly mask: number;
  private readonly desc32: Uint32Array;
  private readonly desc16: Uint16Array;
  private readonly avail16: Uint16Array;
  private readonly used16: Uint16Array;
  private readonly used32: Uint32Array;
  private readonly usedEventIndex: number;
  private readonly availEventIndex: number;

  // Driver-private shadow state (never read back from the rings).
  private readonly next: Uint16Array;
  private readonly chainLength: Uint16Array;
  private freeHead = 0;
  private numFree = 0;
  private availIdx = 0;
  private publishedIdx = 0;
  private lastUsed = 0;

  constructor(options: RingEngineOptions) {
    super(options, SplitRing.MAX_SIZE, splitLayout(options.layout));
    const { size } = this;
    this.mask = size - 1;
    const { view, offset } = this.ring;
    const availOffset = Number(this.addresses.driver - this.addresses.desc);
    const usedOffset = Number(this.addresses.device - this.addresses.desc);
    this.desc32 = new Uint32Array(view, offset, 4 * size);
    this.desc16 = new Uint16Array(view, offset, 8 * size);
    this.avail16 = new Uint16Array(view, offset + availOffset, 3 + size);
    this.used16 = new Uint16Array(view, offset + usedOffset, 3 + 4 * size);
    this.used32 = new Uint32Array(view, offset + usedOffset, 1 + 2 * size);
    this.usedEventIndex = usedEventOffset(size) / 2;
    this.availEventIndex = availEventOffset(size) / 2;
    this.next = new Uint16Array(size);
    this.chainLength = new Uint16Array(size);
    this.resetShadow();
  }

  protected resetShadow(): void {
    // The free list starts in ring order (x → x + 1, the last → 0); with
    // IN_ORDER it stays that way, since chains come back oldest first.
    for (let i = 0; i < this.size; i++) this.next[i] = (i + 1) & this.mask;
    this.chainLength.fill(0);
    this.freeHead = 0;
    this.numFree = this.size;
    this.availIdx = 0;
    this.publishedIdx = 0;
    this.lastUsed = 0;
  }

  get free(): number {
    return this.numFree;
  }

  hasRoom(count: number): boolean {
    return this.numFree >= this.descriptorsFor(count);
  }

  place(request: QueueRequest, count: number): number {
    const head = this.freeHead;
    const readable = request.readable ?? NO_BUFFERS;
    const writable = request.writable ?? NO_BUFFERS;
    let writableTotal = 0;
    if (this.useIndirect(count)) {
      const slab = this.indirect!;
      const base = slab.base(head);
      this.stats.indirect++;
      // Indirect entries are sequential (next = i + 1), as IN_ORDER requires and as suits any device.
      let i = 0;
      for (const buffer of readable) {
        i++;
        writeDescriptor(slab.d32, slab.d16, base + i - 1, buffer, i < count ? VirtqDesc.F_NEXT : 0, i < count ? i : 0);
      }
      for (const buffer of writable) {
        i++;
        writableTotal += writeDescriptor(
          slab.d32,
          slab.d16,
          base + i - 1,
          buffer,
          VirtqDesc.F_WRITE | (i < count ? VirtqDesc.F_NEXT : 0),
          i < count ? i : 0,
        );
      }
      writeAddress(this.desc32, head, slab.address(head), count * SplitRing.DESC_SIZE);
      this.desc16[head * 8 + 6] = VirtqDesc.F_INDIRECT;
      this.desc16[head * 8 + 7] = 0;
      this.freeHead = this.next[head];
      this.numFree -= 1;
      this.chainLength[head] = 1;
    } else {
      let slot = head;
      let i = 0;
      for (const buffer of readable) {
        i++;
        writeDescriptor(
          this.desc32,
          this.desc16,
          slot,
          buffer,
          i < count ? VirtqDesc.F_NEXT : 0,
          i < count ? this.next[slot] : 0,
        );
        slot = this.next[slot];
      }
      for (const buffer of writable) {
        i++;
        writableTotal += writeDescriptor(
          this.desc32,
          this.desc16,
          slot,
          buffer,
          VirtqDesc.F_WRITE | (i < count ? VirtqDesc.F_NEXT : 0),
          i < count ? this.next[slot] : 0,
        );
        slot = this.next[slot];
      }
      this.freeHead = slot;
      this.numFree -= count;
      this.chainLength[head] = count;
    }
    this.placed(head, writableTotal);
    this.avail16[2 + (this.availIdx & this.mask)] = head;
    this.availIdx = (this.availIdx + 1) & 0xffff;
    return head;
  }

  publish(): number {
    if (this.publishedIdx === this.availIdx) return -1;
    const old = this.publishedIdx;
    const now = this.availIdx;
    // §2.7.13.2–3: descriptors and ring entries before the index, the index before the notification check.
    this.barriers.dmaWmb();
    this.markPublished();
    Atomics.store(this.avail16, 1, now);
    this.stats.atomics++;
    this.publishedIdx = now;
    this.stats.publishes++;
    this.barriers.mb();
    // §2.7.10: avail_event (EVENT_IDX) or VRING_USED_F_NO_NOTIFY; both device-written, read once.
    const notify = this.eventIdx
      ? needEvent(this.used16[this.availEventIndex], now, old)
      : (this.used16[0] & VRING_USED_F_NO_NOTIFY) === 0;
    if (notify) return now;
    this.stats.notificationsSuppressed++;
    return -1;
  }

  reap(): number {
    if (this.violation) return 0;
    let usedIdx = Atomics.load(this.used16, 1);
    this.stats.atomics++;
    let consumed = 0;
    while (usedIdx !== this.lastUsed) {
      // §2.7.13.3.1 / §2.7.14: the index before the elements it covers.
      this.barriers.dmaRmb();
      let count = (usedIdx - this.lastUsed) & 0xffff;
      if (count > 0x8000) {
        // A move of more than half the index space forward is a move back (§2.7.8: used.idx only grows).
        this.violation = {
          reason: RingViolation.USED_IDX_BACKWARDS,
          message: `used.idx went back by ${0x10000 - count} (from ${this.lastUsed} to ${usedIdx})`,
        };
        return consumed;
      }
      if (count > this.published) {
        this.violation = {
          reason: RingViolation.USED_IDX_JUMP,
          message: `used.idx moved by ${count} with ${this.published} request(s) published and outstanding`,
        };
        return consumed;
      }
      while (count > 0) {
        const slot = this.lastUsed & this.mask;
        // Each device-written value read once, into locals.
        const id = this.used32[1 + 2 * slot];
        const len = this.used32[2 + 2 * slot];
        let settled: number;
        if (this.inOrder) {
          // One element may stand for a batch ending at `id`; used.idx moved by the batch's size.
          settled = this.settleInOrder(id, len, count);
          if (settled < 0) return consumed;
        } else {
          if (!this.settle(id, len)) return consumed;
          settled = 1;
        }
        this.lastUsed = (this.lastUsed + settled) & 0xffff;
        count -= settled;
        consumed += settled;
      }
      if (this.eventIdx && this.notificationsEnabled) {
        // §2.7.10: interrupt me when the next element after these is used.
        this.avail16[this.usedEventIndex] = this.lastUsed;
        if (this.published === 0) break;
        // A completion may have raced with the store above: look once more.
        this.barriers.mb();
        usedIdx = Atomics.load(this.used16, 1);
        this.stats.atomics++;
      }
    }
    return consumed;
  }

  protected reclaim(head: number): void {
    const length = this.chainLength[head];
    if (this.inOrder) {
      // Chains come back oldest first: the free range grows at its end, the x → x + 1 links stay.
      this.numFree += length;
      return;
    }
    let last = head;
    for (let n = length; n > 1; n--) last = this.next[last];
    this.next[last] = this.freeHead;
    this.freeHead = head;
    this.numFree += length;
  }

  protected writeSuppression(enabled: boolean): void {
    if (this.eventIdx) this.avail16[this.usedEventIndex] = enabled ? this.lastUsed : (this.lastUsed - 1) & 0xffff;
    else this.avail16[0] = enabled ? 0 : VRING_AVAIL_F_NO_INTERRUPT;
  }

  dump(outstanding: OutstandingDump[]): DumpPart {
    // Plain reads of the ring words: a snapshot, no barrier, nothing written.
    const ring: SplitRingState = {
      format: 'split',
      availFlags: this.avail16[0],
      availIdx: this.avail16[1],
      usedFlags: this.used16[0],
      usedIdx: this.used16[1],
    };
    if (this.eventIdx) {
      ring.usedEvent = this.avail16[this.usedEventIndex];
      ring.availEvent = this.used16[this.availEventIndex];
    }
    const table = new DataView(this.desc32.buffer, this.desc32.byteOffset, this.desc32.byteLength);
    const chains = outstanding.map((entry) => ({
      ...walkSplitChain(table, this.size, entry.id, this.readOwnTable, this.indirectMax),
      orphan: entry.orphan,
    }));
    // Used elements the device has published and the driver not yet consumed (at most one per request in flight).
    const ready = Math.min((ring.usedIdx - this.lastUsed) & 0xffff, this.inFlight);
    for (let n = 0; n < ready; n++) {
      const slot = (this.lastUsed + n) & this.mask;
      const entry = chains.find((o) => o.id === this.used32[1 + 2 * slot]);
      if (entry && !entry.used) entry.used = { len: this.used32[2 + 2 * slot] };
    }
    return {
      shadow: {
        nextAvailIdx: this.availIdx,
        publishedIdx: this.publishedIdx,
        lastUsedIdx: this.lastUsed,
        free: this.numFree,
        freeHead: this.freeHead,
      },
      ring,
      outstanding: chains,
    };
  }
}
