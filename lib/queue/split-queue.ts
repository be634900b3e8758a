import { endianness } from 'node:os';
import { AbortError, CanceledError, DeviceBrokenError, QueueFullError, TransportError } from '../errors';
import { nativeBarriers, type Barriers, type DmaAllocator, type DmaRegion } from '../platform';
import {
  FeatureBit,
  SplitRing,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_USED_F_NO_NOTIFY,
  VirtqDesc,
  availEventOffset,
  availRingBytes,
  descTableBytes,
  hasFeature,
  isPowerOfTwo,
  legacyLayout,
  needEvent,
  usedEventOffset,
} from '../spec';
import type { QueueAddresses, QueueEndpoint, QueueLayout } from '../transport';
import type { QueueBuffer, QueueRequest, QueueStats, SubmitOptions } from './queue-types';

// The rings are little-endian (§2.7) and are accessed through host-order typed arrays.
if (endianness() !== 'LE') throw new Error('virtio-mmio: split rings are only implemented for little-endian hosts');

/** What a queue needs of its transport (MmioTransport provides it). */
export interface QueueTransport {
  activateQueue(index: number, addresses: QueueAddresses, endpoint: QueueEndpoint): void;
  deactivateQueue(index: number): void;
  notify(index: number, nextAvail: number): void;
  setBusy(index: number, busy: boolean): void;
}

export interface SplitQueueOptions {
  /** Queue index on the device. */
  index: number;
  /** Queue Size: a power of two ≤ QueueNumMax (§2.7). */
  size: number;
  memory: DmaAllocator;
  layout: QueueLayout;
  /** Negotiated features; INDIRECT_DESC and EVENT_IDX change how the queue works. */
  features: bigint;
  barriers?: Barriers;
  /** Longest chain sent as one indirect table (default 32); longer chains go direct. */
  indirectMax?: number;
}

const TWO_32 = 4294967296;
const MAX_ADDRESS = Number.MAX_SAFE_INTEGER;

class Pending {
  orphaned = false;
  cleanup?: () => void;
  constructor(
    readonly resolve: (len: number) => void,
    readonly reject: (error: unknown) => void,
  ) {}
}

interface Waiter {
  request: QueueRequest;
  count: number;
  pending: Pending;
}

/**
 * A split virtqueue (virtio 1.2 §2.7), driver side. Requests are
 * descriptor chains; completions resolve their promises with the used
 * length. The free list and per-request state are private shadow arrays;
 * device-written memory is read once per used element and validated before
 * it indexes anything.
 *
 * Publication is batched: requests submitted in the same tick are made
 * visible with one avail.idx store and at most one notification, in a
 * microtask (or at once with flush()).
 *
 * When the ring is full, submit() waits (FIFO) for room; with
 * `{ wait: false }` it throws QueueFullError (retryable) instead. An
 * AbortSignal rejects the promise with AbortError: a waiting request is
 * dropped; a request already given to the device keeps its descriptors
 * and buffers until the device returns them, and its result is discarded.
 */
export class SplitQueue implements QueueEndpoint {
  readonly index: number;
  readonly size: number;
  readonly stats: QueueStats = { submitted: 0, completed: 0, publishes: 0, notifications: 0, notificationsSuppressed: 0, atomics: 0, indirect: 0 };

  private readonly mask: number;
  private readonly memory: DmaAllocator;
  private readonly barriers: Barriers;
  private readonly ring: DmaRegion;
  private readonly ringAddresses: QueueAddresses;
  private readonly desc32: Uint32Array;
  private readonly desc16: Uint16Array;
  private readonly avail16: Uint16Array;
  private readonly used16: Uint16Array;
  private readonly used32: Uint32Array;
  private readonly usedEventIndex: number;
  private readonly availEventIndex: number;
  private readonly eventIdx: boolean;
  private readonly indirectAllowed: boolean;
  private readonly indirectMax: number;
  private indirectSlab?: { region: DmaRegion; d32: Uint32Array; d16: Uint16Array; iova: number };

  // Driver-private shadow state (never read back from the rings).
  private readonly next: Uint16Array;
  private readonly chainLength: Uint16Array;
  private readonly writableBytes: Float64Array;
  private readonly pending: (Pending | undefined)[];
  private freeHead = 0;
  private numFree: number;
  private availIdx = 0;
  private publishedIdx = 0;
  private lastUsed = 0;
  private outstanding = 0;
  private flushScheduled = false;
  private interruptsEnabled = true;
  private readonly waiters: Waiter[] = [];

  private transport?: QueueTransport;
  private brokenReason?: { reason: string; message: string };
  private detachedBy?: Error;
  private released = false;

  constructor(options: SplitQueueOptions) {
    const { index, size, memory, layout } = options;
    if (!isPowerOfTwo(size) || size > SplitRing.MAX_SIZE) throw new RangeError(`Queue Size must be a power of two ≤ ${SplitRing.MAX_SIZE}, got ${size}`);
    this.index = index;
    this.size = size;
    this.mask = size - 1;
    this.memory = memory;
    this.barriers = options.barriers ?? nativeBarriers;
    this.eventIdx = hasFeature(options.features, FeatureBit.EVENT_IDX);
    this.indirectAllowed = hasFeature(options.features, FeatureBit.INDIRECT_DESC);
    this.indirectMax = options.indirectMax ?? 32;
    if (!Number.isInteger(this.indirectMax) || this.indirectMax < 2 || this.indirectMax > 0xffff) {
      throw new RangeError(`indirectMax must be an integer in [2, 65535], got ${this.indirectMax}`);
    }

    // Legacy: one area, used ring at QueueAlign (§2.7.2). Modern: packed tight at the §2.7 alignments.
    const availOffset = descTableBytes(size);
    let usedOffset: number;
    let bytes: number;
    let align: number;
    if (layout.legacy) {
      ({ usedOffset, bytes } = legacyLayout(size, layout.align));
      align = layout.pageSize;
    } else {
      usedOffset = Math.ceil((availOffset + availRingBytes(size)) / SplitRing.USED_ALIGN) * SplitRing.USED_ALIGN;
      bytes = usedOffset + 6 + SplitRing.USED_ELEM_SIZE * size;
      align = SplitRing.DESC_ALIGN;
    }
    this.ring = memory.allocate(bytes, align);
    const { view, offset, iova } = this.ring;
    this.desc32 = new Uint32Array(view, offset, 4 * size);
    this.desc16 = new Uint16Array(view, offset, 8 * size);
    this.avail16 = new Uint16Array(view, offset + availOffset, 3 + size);
    this.used16 = new Uint16Array(view, offset + usedOffset, 3 + 4 * size);
    this.used32 = new Uint32Array(view, offset + usedOffset, 1 + 2 * size);
    this.usedEventIndex = usedEventOffset(size) / 2;
    this.availEventIndex = availEventOffset(size) / 2;
    this.ringAddresses = { size, desc: iova, driver: iova + BigInt(availOffset), device: iova + BigInt(usedOffset) };

    this.next = new Uint16Array(size);
    for (let i = 0; i < size - 1; i++) this.next[i] = i + 1;
    this.chainLength = new Uint16Array(size);
    this.writableBytes = new Float64Array(size);
    this.pending = new Array<Pending | undefined>(size).fill(undefined);
    this.numFree = size;
  }

  /** The areas' device addresses, for the transport's queue registers. */
  get addresses(): QueueAddresses {
    return this.ringAddresses;
  }

  /** Free descriptors right now. */
  get free(): number {
    return this.numFree;
  }

  /** Requests given to the device and not yet returned. */
  get inFlight(): number {
    return this.outstanding;
  }

  get broken(): boolean {
    return this.brokenReason !== undefined;
  }

  /** Hands the queue to the device through `transport` (QueueNum, addresses, QueueReady / QueuePFN). */
  attach(transport: QueueTransport): void {
    if (this.released) throw new CanceledError(`queue ${this.index} is closed`);
    transport.activateQueue(this.index, this.ringAddresses, this);
    this.transport = transport;
  }

  // ---- Submitting ----

  /**
   * Sends one request; resolves with the number of bytes the device wrote
   * (the used element's len, validated ≤ the writable bytes posted).
   */
  submit(request: QueueRequest, options: SubmitOptions = {}): Promise<number> {
    try {
      const count = this.validate(request);
      const signal = options.signal;
      if (signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
      const needed = this.descriptorsFor(count);
      if (this.waiters.length === 0 && this.numFree >= needed) {
        return new Promise<number>((resolve, reject) => {
          const pending = new Pending(resolve, reject);
          this.place(request, count, pending);
          if (signal) this.watchAbort(pending, signal);
        });
      }
      if (options.wait === false) {
        throw new QueueFullError(`queue ${this.index}: ${needed} descriptor(s) needed, ${this.numFree} free`);
      }
      return new Promise<number>((resolve, reject) => {
        const waiter: Waiter = { request, count, pending: new Pending(resolve, reject) };
        this.waiters.push(waiter);
        if (signal) this.watchAbort(waiter.pending, signal, waiter);
      });
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /** Publishes what was submitted and notifies the device now (normally done in a microtask). */
  flush(): void {
    this.flushScheduled = false;
    if (this.publishedIdx === this.availIdx || this.unusable()) return;
    const old = this.publishedIdx;
    const now = this.availIdx;
    // §2.7.13.2–3: descriptors and ring entries before the index, the index before the notification check.
    this.barriers.dmaWmb();
    Atomics.store(this.avail16, 1, now);
    this.stats.atomics++;
    this.publishedIdx = now;
    this.stats.publishes++;
    this.barriers.mb();
    // §2.7.10: avail_event (EVENT_IDX) or VRING_USED_F_NO_NOTIFY; both device-written, read once.
    const notify = this.eventIdx ? needEvent(this.used16[this.availEventIndex], now, old) : (this.used16[0] & VRING_USED_F_NO_NOTIFY) === 0;
    if (notify) {
      this.stats.notifications++;
      try {
        this.transport?.notify(this.index, now);
      } catch (error) {
        // Runs in a microtask: a window closed under us must not become an uncaught exception.
        this.detach(error instanceof Error ? error : new Error(String(error)));
      }
    } else {
      this.stats.notificationsSuppressed++;
    }
  }

  private validate(request: QueueRequest): number {
    if (this.brokenReason) throw this.brokenError();
    if (this.detachedBy || this.released) throw this.detachedError();
    if (!this.transport) throw new TransportError(TransportError.STATE, `queue ${this.index} is not attached to a transport (call attach())`);
    if (request === null || typeof request !== 'object') throw new TypeError('a queue request must be an object { readable?, writable? }');
    const readable = request.readable ?? [];
    const writable = request.writable ?? [];
    if (!Array.isArray(readable) || !Array.isArray(writable)) throw new TypeError('readable and writable must be arrays of buffers');
    const count = readable.length + writable.length;
    if (count === 0) throw new RangeError('a queue request needs at least one buffer');
    if (count > this.size && (!this.indirectAllowed || count > this.indirectMax)) {
      throw new RangeError(`a chain of ${count} buffers cannot fit queue ${this.index} (size ${this.size})`);
    }
    let total = 0;
    for (const buffer of readable) total += checkBuffer(buffer);
    for (const buffer of writable) total += checkBuffer(buffer);
    // §2.7.4.2: a chain's total length must fit in 32 bits.
    if (total > 0xffff_ffff) throw new RangeError(`a chain may carry at most 2^32 - 1 bytes, got ${total}`);
    return count;
  }

  private descriptorsFor(count: number): number {
    return this.useIndirect(count) ? 1 : count;
  }

  private useIndirect(count: number): boolean {
    return this.indirectAllowed && count > 1 && count <= this.indirectMax;
  }

  private place(request: QueueRequest, count: number, pending: Pending): void {
    const head = this.freeHead;
    const readable = request.readable ?? [];
    const writable = request.writable ?? [];
    let writableTotal = 0;
    if (this.useIndirect(count)) {
      const slab = this.indirect();
      const base = head * this.indirectMax;
      let i = 0;
      for (const buffer of readable) writeDesc(slab.d32, slab.d16, base + i, buffer, (++i < count ? VirtqDesc.F_NEXT : 0), i);
      for (const buffer of writable) {
        writableTotal += writeDesc(slab.d32, slab.d16, base + i, buffer, VirtqDesc.F_WRITE | (++i < count ? VirtqDesc.F_NEXT : 0), i);
      }
      const tableAddress = slab.iova + base * SplitRing.DESC_SIZE;
      this.desc32[head * 4] = tableAddress % TWO_32;
      this.desc32[head * 4 + 1] = Math.floor(tableAddress / TWO_32);
      this.desc32[head * 4 + 2] = count * SplitRing.DESC_SIZE;
      this.desc16[head * 8 + 6] = VirtqDesc.F_INDIRECT;
      this.desc16[head * 8 + 7] = 0;
      this.freeHead = this.next[head];
      this.numFree -= 1;
      this.chainLength[head] = 1;
      this.stats.indirect++;
    } else {
      let slot = head;
      let i = 0;
      for (const buffer of readable) {
        i++;
        writeDesc(this.desc32, this.desc16, slot, buffer, i < count ? VirtqDesc.F_NEXT : 0, this.next[slot]);
        slot = this.next[slot];
      }
      for (const buffer of writable) {
        i++;
        writableTotal += writeDesc(this.desc32, this.desc16, slot, buffer, VirtqDesc.F_WRITE | (i < count ? VirtqDesc.F_NEXT : 0), this.next[slot]);
        slot = this.next[slot];
      }
      this.freeHead = slot;
      this.numFree -= count;
      this.chainLength[head] = count;
    }
    this.writableBytes[head] = writableTotal;
    this.pending[head] = pending;
    this.avail16[2 + (this.availIdx & this.mask)] = head;
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.stats.submitted++;
    if (this.outstanding++ === 0) this.transport?.setBusy(this.index, true);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flushScheduled && this.flush());
    }
  }

  private indirect(): NonNullable<SplitQueue['indirectSlab']> {
    if (!this.indirectSlab) {
      const region = this.memory.allocate(this.size * this.indirectMax * SplitRing.DESC_SIZE, SplitRing.DESC_ALIGN);
      const entries = this.size * this.indirectMax;
      this.indirectSlab = {
        region,
        d32: new Uint32Array(region.view, region.offset, entries * 4),
        d16: new Uint16Array(region.view, region.offset, entries * 8),
        iova: Number(region.iova),
      };
    }
    return this.indirectSlab;
  }

  private watchAbort(pending: Pending, signal: AbortSignal, waiter?: Waiter): void {
    const onAbort = (): void => {
      if (waiter) {
        const at = this.waiters.indexOf(waiter);
        if (at >= 0) this.waiters.splice(at, 1);
        // A waiter that was placed meanwhile is in flight: orphan it instead.
      }
      pending.orphaned = true;
      pending.cleanup = undefined;
      pending.reject(new AbortError(undefined, { cause: signal.reason }));
      this.drainWaiters();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    pending.cleanup = () => signal.removeEventListener('abort', onAbort);
  }

  // ---- Completing ----

  /** InterruptStatus bit 0 (QueueEndpoint). */
  onUsedBuffer(): void {
    this.processUsed();
  }

  /** Consumes what the device has used, without waiting for an interrupt. Returns the number consumed. */
  poll(): number {
    return this.processUsed();
  }

  private processUsed(): number {
    if (this.unusable()) return 0;
    let usedIdx = Atomics.load(this.used16, 1);
    this.stats.atomics++;
    let consumed = 0;
    while (usedIdx !== this.lastUsed) {
      // §2.7.13.3.1 / §2.7.14: the index before the elements it covers.
      this.barriers.dmaRmb();
      const count = (usedIdx - this.lastUsed) & 0xffff;
      if (count > this.outstanding) {
        this.breakQueue('used-idx-jump', `used.idx moved by ${count} with ${this.outstanding} request(s) outstanding`);
        return consumed;
      }
      for (let n = 0; n < count; n++) {
        const slot = this.lastUsed & this.mask;
        // Each device-written value read once, into locals.
        const id = this.used32[1 + 2 * slot];
        const len = this.used32[2 + 2 * slot];
        if (id >= this.size) {
          this.breakQueue('used-id-out-of-range', `used element id ${id} is outside the queue (size ${this.size})`);
          return consumed;
        }
        const pending = this.pending[id];
        if (pending === undefined) {
          this.breakQueue('used-id-not-head', `used element id ${id} is not the head of an outstanding chain`);
          return consumed;
        }
        if (len > this.writableBytes[id]) {
          this.breakQueue('used-len-too-long', `used element for chain ${id} reports ${len} bytes written into ${this.writableBytes[id]} writable bytes`);
          return consumed;
        }
        this.lastUsed = (this.lastUsed + 1) & 0xffff;
        this.pending[id] = undefined;
        this.release(id);
        consumed++;
        if (!pending.orphaned) {
          pending.cleanup?.();
          pending.resolve(len);
        }
      }
      if (this.eventIdx && this.interruptsEnabled) {
        // §2.7.10: interrupt me when the next element after these is used.
        this.avail16[this.usedEventIndex] = this.lastUsed;
        if (this.outstanding === 0) break;
        // A completion may have raced with the store above: look once more.
        this.barriers.mb();
        usedIdx = Atomics.load(this.used16, 1);
        this.stats.atomics++;
      }
    }
    if (consumed > 0) this.drainWaiters();
    return consumed;
  }

  private release(head: number): void {
    let last = head;
    for (let n = this.chainLength[head]; n > 1; n--) last = this.next[last];
    this.next[last] = this.freeHead;
    this.freeHead = head;
    this.numFree += this.chainLength[head];
    this.stats.completed++;
    if (--this.outstanding === 0) this.transport?.setBusy(this.index, false);
  }

  private drainWaiters(): void {
    while (this.waiters.length > 0 && !this.unusable()) {
      const waiter = this.waiters[0];
      if (this.numFree < this.descriptorsFor(waiter.count)) return;
      this.waiters.shift();
      this.place(waiter.request, waiter.count, waiter.pending);
    }
  }

  // ---- Interrupt suppression (§2.7.7, §2.7.10) ----

  /** Asks the device not to interrupt for this queue (a hint; poll() to consume). */
  disableInterrupts(): void {
    this.interruptsEnabled = false;
    if (this.eventIdx) this.avail16[this.usedEventIndex] = (this.lastUsed - 1) & 0xffff;
    else this.avail16[0] = VRING_AVAIL_F_NO_INTERRUPT;
  }

  /** Asks for interrupts again and consumes whatever was used meanwhile. */
  enableInterrupts(): number {
    this.interruptsEnabled = true;
    if (this.eventIdx) this.avail16[this.usedEventIndex] = this.lastUsed;
    else this.avail16[0] = 0;
    this.barriers.mb();
    return this.processUsed();
  }

  // ---- Failure and teardown ----

  private brokenError(): DeviceBrokenError {
    const { reason, message } = this.brokenReason!;
    return new DeviceBrokenError(reason, `queue ${this.index} is broken: ${message}`);
  }

  private detachedError(): Error {
    const cause = this.detachedBy;
    return new CanceledError(`queue ${this.index} is ${this.released ? 'closed' : `detached (${cause?.message})`}`, cause ? { cause } : undefined);
  }

  private unusable(): boolean {
    return this.brokenReason !== undefined || this.detachedBy !== undefined || this.released;
  }

  /** Marks the queue broken (sticky) and rejects every pending request. */
  private breakQueue(reason: string, message: string): void {
    this.brokenReason = { reason, message };
    this.rejectAll(() => this.brokenError());
  }

  /** The transport was reset, closed, or lost its interrupt (QueueEndpoint). */
  detach(error: Error): void {
    if (this.detachedBy) return;
    this.detachedBy = error;
    this.transport = undefined;
    this.rejectAll(() => error);
  }

  private rejectAll(makeError: () => Error): void {
    const waiters = this.waiters.splice(0);
    const pending = this.pending.filter((p): p is Pending => p !== undefined && !p.orphaned);
    for (let id = 0; id < this.size; id++) this.pending[id] = undefined;
    if (this.outstanding > 0) {
      this.outstanding = 0;
      this.transport?.setBusy(this.index, false);
    }
    for (const p of [...pending, ...waiters.map((w) => w.pending)]) {
      p.cleanup?.();
      p.reject(makeError());
    }
  }

  /**
   * Takes the queue back from the device (if still attached), rejects what
   * is pending with CanceledError and frees the ring memory. Idempotent.
   * If the device does not let go (QueueReady does not read back 0), the
   * memory is not freed — the device may still write it — and the error is
   * thrown; it goes back with the allocator's close().
   */
  close(): void {
    if (this.released) return;
    const transport = this.transport;
    this.transport = undefined;
    this.released = true;
    this.rejectAll(() => new CanceledError(`queue ${this.index} closed`));
    transport?.deactivateQueue(this.index);
    this.memory.free(this.ring);
    if (this.indirectSlab) this.memory.free(this.indirectSlab.region);
    this.indirectSlab = undefined;
  }
}

/** Checks one buffer at the public edge; returns its length. */
function checkBuffer(buffer: QueueBuffer): number {
  if (buffer === null || typeof buffer !== 'object' || buffer.region === null || typeof buffer.region !== 'object') {
    throw new TypeError('a queue buffer must be { region: DmaRegion, offset?, length? }');
  }
  const { region } = buffer;
  const offset = buffer.offset ?? 0;
  const length = buffer.length ?? region.size - offset;
  if (!Number.isInteger(offset) || offset < 0 || !Number.isInteger(length) || length < 1 || offset + length > region.size) {
    throw new RangeError(`buffer [${offset}, ${offset}+${length}) is empty or outside its ${region.size}-byte DMA region`);
  }
  // Number arithmetic, as writeDesc uses; no BigInt work per buffer on the submit path.
  if (Number(region.iova) + offset + length > MAX_ADDRESS) throw new RangeError('buffer device address beyond 2^53');
  return length;
}

/** Fills descriptor `slot`; returns the buffer's length. */
function writeDesc(d32: Uint32Array, d16: Uint16Array, slot: number, buffer: QueueBuffer, flags: number, next: number): number {
  const offset = buffer.offset ?? 0;
  const length = buffer.length ?? buffer.region.size - offset;
  const address = Number(buffer.region.iova) + offset;
  d32[slot * 4] = address % TWO_32;
  d32[slot * 4 + 1] = Math.floor(address / TWO_32);
  d32[slot * 4 + 2] = length;
  d16[slot * 8 + 6] = flags;
  d16[slot * 8 + 7] = flags & VirtqDesc.F_NEXT ? next : 0;
  return length;
}
