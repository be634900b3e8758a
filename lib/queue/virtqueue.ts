import { endianness } from 'node:os';
import { AbortError, BufferHeldError, CanceledError, ClosedError, DeviceBrokenError, DeviceGoneError, QueueFullError, TimeoutError, TransportError } from '../errors';
import { nativeBarriers, type Barriers, type DmaAllocator, type DmaRegion } from '../platform';
import { FeatureBit, hasFeature } from '../spec';
import type { QueueAddresses, QueueEndpoint, QueueLayout, QueueTransport } from '../transport';
import { CompletionPoller, type QueueMode, type QueueModeOptions } from './completion-mode';
import { hex, type OutstandingDump, type QueueDump, type TableReader } from './queue-dump';
import type { QueueBuffer, QueueRequest, QueueStats, SubmitOptions } from './queue-types';

// The rings are little-endian (§2.7, §2.8) and are accessed through host-order typed arrays.
if (endianness() !== 'LE') throw new Error('virtio-mmio: virtqueues are only implemented for little-endian hosts');

export interface VirtqueueOptions {
  /** Queue index on the device. */
  index: number;
  /** Queue Size: ≤ QueueNumMax; a power of two for the split ring (§2.7). */
  size: number;
  memory: DmaAllocator;
  layout: QueueLayout;
  /** Negotiated features; INDIRECT_DESC, EVENT_IDX and IN_ORDER change how the queue works. */
  features: bigint;
  barriers?: Barriers;
  /** Longest chain sent as one indirect table (default 32); longer chains go direct. */
  indirectMax?: number;
}

const TWO_32 = 4294967296;
const MAX_ADDRESS = Number.MAX_SAFE_INTEGER;

class Pending {
  orphaned = false;
  /** The request's id once placed (-1 while waiting for room). */
  id = -1;
  /** Whether its buffers are held in the allocator (hold()) while the device keeps them. */
  held = false;
  /** SubmitOptions.reclaim. */
  reclaim?: () => void;
  /** performance.now() after which the request is rejected with TimeoutError (Infinity: never). */
  deadline = Infinity;
  timeoutMs = 0;
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

/** An indirect table slab: `indirectMax` 16-byte entries per request id. */
export interface IndirectSlab {
  region: DmaRegion;
  d32: Uint32Array;
  d16: Uint16Array;
  iova: number;
}

/**
 * What both ring formats share (virtio 1.2 §2.7, §2.8), driver side:
 * requests and their promises, waiting for room (FIFO), aborts, the
 * validation of what the device reports used (id in range and outstanding,
 * len within the writable bytes posted), the sticky broken state, teardown,
 * and interrupt suppression on/off. A ring format subclass places
 * descriptors, publishes them, and finds used entries.
 *
 * Requests are identified by an id < size: the split ring's head
 * descriptor index, the packed ring's Buffer ID. Per-id state lives in
 * private shadow arrays, never read back from device-writable memory.
 *
 * Publication is batched: requests submitted in the same tick are made
 * visible at once with at most one notification, in a microtask (or at
 * once with flush()).
 *
 * When the ring is full, submit() waits (FIFO) for room; with
 * `{ wait: false }` it throws QueueFullError (retryable) instead. An
 * AbortSignal rejects the promise with AbortError: a waiting request is
 * dropped; a request already given to the device keeps its descriptors
 * and buffers until the device returns them, and its result is discarded.
 */
export abstract class Virtqueue implements QueueEndpoint {
  readonly index: number;
  readonly size: number;
  readonly stats: QueueStats = { submitted: 0, completed: 0, publishes: 0, notifications: 0, notificationsSuppressed: 0, atomics: 0, indirect: 0, polls: 0, polledCompletions: 0 };
  /** 'split' or 'packed'. */
  abstract readonly format: 'split' | 'packed';

  protected readonly memory: DmaAllocator;
  protected readonly barriers: Barriers;
  protected readonly eventIdx: boolean;
  protected readonly inOrder: boolean;
  protected readonly indirectAllowed: boolean;
  protected readonly indirectMax: number;
  /** Bytes the device may write, per outstanding id (the used len's bound). */
  protected readonly writableBytes: Float64Array;
  protected outstanding = 0;
  /** Outstanding requests whose caller gave up (abort, timeout): they do not keep the process alive. */
  private orphans = 0;
  private busy = false;
  /** Whether requests in flight keep the process alive (setKeepAlive). */
  private holdsProcess = true;
  /** Pending and waiting requests with a deadline; the watchdog timer is ref'd only while there are some. */
  private timed = 0;
  private watchdog?: NodeJS.Timeout;
  private watchdogAt = Infinity;
  protected interruptsEnabled = true;
  protected transport?: QueueTransport;
  private readonly pending: (Pending | undefined)[];
  // IN_ORDER (§2.7 and §2.8, "In-order use of descriptors"): ids in the order they were made available.
  private readonly order: Uint16Array;
  private readonly sequence: Float64Array;
  private orderStart = 0;
  private orderLength = 0;
  private nextSequence = 0;
  private flushScheduled = false;
  private readonly waiters: Waiter[] = [];
  private indirectSlab?: IndirectSlab;
  private poller?: CompletionPoller;
  private brokenReason?: { reason: string; message: string };
  private detachedBy?: Error;
  private released = false;
  /**
   * The buffers of each placed id (region, offset, length), copied at
   * placement so that holding them later does not trust the caller's
   * objects; arrays reused per id, so no allocation in steady state.
   */
  private readonly chainRegions: DmaRegion[][];
  private readonly chainRanges: number[][];
  /** Requests rejected while the device still had them (detach, break, close): kept until a reset completes (reclaimAll). */
  private retained: Pending[] = [];
  /** Whether the device has let go of everything it was given (never attached, or a reset/teardown completed since). */
  private deviceLetGo = true;

  protected constructor(options: VirtqueueOptions, maxSize: number) {
    const { index, size } = options;
    if (!Number.isInteger(size) || size < 1 || size > maxSize) throw new RangeError(`Queue Size must be an integer in [1, ${maxSize}], got ${size}`);
    this.index = index;
    this.size = size;
    this.memory = options.memory;
    this.barriers = options.barriers ?? nativeBarriers;
    this.eventIdx = hasFeature(options.features, FeatureBit.EVENT_IDX);
    this.inOrder = hasFeature(options.features, FeatureBit.IN_ORDER);
    this.indirectAllowed = hasFeature(options.features, FeatureBit.INDIRECT_DESC);
    this.indirectMax = options.indirectMax ?? 32;
    if (!Number.isInteger(this.indirectMax) || this.indirectMax < 2 || this.indirectMax > 0xffff) {
      throw new RangeError(`indirectMax must be an integer in [2, 65535], got ${this.indirectMax}`);
    }
    this.writableBytes = new Float64Array(size);
    this.pending = new Array<Pending | undefined>(size).fill(undefined);
    this.order = new Uint16Array(this.inOrder ? size : 0);
    this.sequence = new Float64Array(this.inOrder ? size : 0);
    this.chainRegions = Array.from({ length: size }, () => []);
    this.chainRanges = Array.from({ length: size }, () => []);
  }

  /** The ring's memory and its areas' device addresses (placeRing). */
  private ring?: DmaRegion;
  private ringAddresses?: QueueAddresses;

  /** A ring format's constructor hands over the memory it laid its areas out in. */
  protected placeRing(ring: DmaRegion, addresses: QueueAddresses): void {
    this.ring = ring;
    this.ringAddresses = addresses;
  }

  /** The areas' device addresses, for the transport's queue registers. */
  get addresses(): QueueAddresses {
    return this.ringAddresses!;
  }

  /** Free descriptors right now. */
  abstract get free(): number;

  /** Requests given to the device and not yet returned. */
  get inFlight(): number {
    return this.outstanding;
  }

  /**
   * In-flight requests someone still waits for: those not aborted or timed
   * out, or all of them while a request waits for room (any completion
   * makes room for it).
   */
  get awaited(): number {
    return this.waiters.length > 0 ? this.outstanding : this.outstanding - this.orphans;
  }

  get broken(): boolean {
    return this.brokenReason !== undefined;
  }

  /** Hands the queue to the device through `transport` (QueueNum, addresses, QueueReady / QueuePFN). */
  attach(transport: QueueTransport): void {
    if (this.released) throw new CanceledError(`queue ${this.index} is closed`);
    // Indirect tables are allocated before the device sees the queue: an allocation failure
    // later, inside place(), would lose the id (packed) or escape from an interrupt handler.
    if (this.indirectAllowed && !this.indirectSlab) this.allocateIndirectSlab();
    this.deviceLetGo = false;
    transport.activateQueue(this.index, this.addresses, this);
    this.transport = transport;
  }

  // ---- Submitting ----

  /**
   * Sends one request; resolves with the number of bytes the device wrote
   * (the used len, validated ≤ the writable bytes posted).
   */
  submit(request: QueueRequest, options: SubmitOptions = {}): Promise<number> {
    try {
      const count = this.validate(request);
      const signal = options.signal;
      const timeoutMs = options.timeoutMs;
      if (timeoutMs !== undefined && !(typeof timeoutMs === 'number' && timeoutMs > 0 && timeoutMs <= 2 ** 31 - 1)) {
        throw new RangeError(`timeoutMs must be a number in (0, 2^31 - 1], got ${String(timeoutMs)}`);
      }
      const reclaim = options.reclaim;
      if (reclaim !== undefined && typeof reclaim !== 'function') throw new TypeError('reclaim must be a function');
      if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
      if (this.waiters.length === 0 && this.hasRoom(count)) {
        return new Promise<number>((resolve, reject) => {
          const pending = new Pending(resolve, reject);
          pending.reclaim = reclaim;
          if (timeoutMs !== undefined) this.setDeadline(pending, timeoutMs);
          this.placeRequest(request, count, pending);
          if (signal) this.watchAbort(pending, signal);
        });
      }
      if (options.wait === false) {
        throw new QueueFullError(`queue ${this.index}: ${this.descriptorsFor(count)} descriptor(s) needed, ${this.free} free`);
      }
      // Placed later: a copy, so that the caller changing its objects meanwhile cannot change what was validated.
      const snapshot = snapshotRequest(request);
      return new Promise<number>((resolve, reject) => {
        const waiter: Waiter = { request: snapshot, count, pending: new Pending(resolve, reject) };
        waiter.pending.reclaim = reclaim;
        if (timeoutMs !== undefined) this.setDeadline(waiter.pending, timeoutMs);
        this.waiters.push(waiter);
        if (signal) this.watchAbort(waiter.pending, signal, waiter);
        // Orphans now hold room someone waits for: they keep the line busy and the polling loop going.
        if (this.waiters.length === 1 && this.orphans > 0) {
          this.updateBusy();
          this.poller?.submitted();
        }
      });
    } catch (error) {
      // Refused (or aborted) before the device saw anything: the buffers are the caller's again.
      const reclaim = options?.reclaim;
      if (typeof reclaim === 'function') reclaim();
      return Promise.reject(error);
    }
  }

  /** Publishes what was submitted and notifies the device now (normally done in a microtask). */
  flush(): void {
    this.flushScheduled = false;
    if (this.unusable()) return;
    this.publish();
  }

  /** Makes placed requests visible to the device and notifies it unless it asked not to be (§2.7.13, §2.8.21). */
  protected abstract publish(): void;

  /** Whether a request of `count` buffers fits now. */
  protected abstract hasRoom(count: number): boolean;

  /** Writes the request's descriptors; returns its id. */
  protected abstract place(request: QueueRequest, count: number): number;

  /** Consumes used entries, settling each through complete(); returns how many requests were settled. */
  protected abstract reap(): number;

  /** Takes back the descriptors (and id) of request `id`, which the device has used. */
  protected abstract reclaim(id: number): void;

  /** Writes the driver's interrupt suppression state (§2.7.10, §2.8.10) for `enabled`. */
  protected abstract suppressInterrupts(enabled: boolean): void;

  /** Notifies the device (the publish step decided it must); a failure detaches the queue. */
  protected notifyDevice(nextAvail: number): void {
    this.stats.notifications++;
    try {
      this.transport?.notify(this.index, nextAvail);
    } catch (error) {
      // Runs in a microtask: a window closed under us must not become an uncaught exception.
      this.detach(error instanceof Error ? error : new Error(String(error)));
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
    for (const buffer of readable) total += this.checkBuffer(buffer, false);
    for (const buffer of writable) total += this.checkBuffer(buffer, true);
    // §2.7.4.2: a chain's total length must fit in 32 bits.
    if (total > 0xffff_ffff) throw new RangeError(`a chain may carry at most 2^32 - 1 bytes, got ${total}`);
    return count;
  }

  private checkBuffer(buffer: QueueBuffer, writable: boolean): number {
    const length = checkBuffer(buffer);
    // A freed region may already belong to someone else: the device must never get it.
    if (this.memory.wasFreed?.(buffer.region)) throw new ClosedError('a buffer of this request lies in a DMA region that was freed');
    // Memory a device still holds from a request given up on may still be written by it: not a second time.
    if (writable && this.memory.isHeld?.(buffer.region, buffer.offset ?? 0, length)) {
      throw new BufferHeldError(`a writable buffer of this request overlaps memory the device still holds from a request that was given up on (timeout, abort, detach); wait for SubmitOptions.reclaim`);
    }
    return length;
  }

  /** Ring descriptors a request of `count` buffers takes. */
  protected descriptorsFor(count: number): number {
    return this.useIndirect(count) ? 1 : count;
  }

  protected useIndirect(count: number): boolean {
    return this.indirectAllowed && count > 1 && count <= this.indirectMax;
  }

  private placeRequest(request: QueueRequest, count: number, pending: Pending): void {
    const id = this.place(request, count);
    this.pending[id] = pending;
    pending.id = id;
    this.recordChain(id, request);
    if (this.inOrder) {
      this.order[(this.orderStart + this.orderLength++) % this.size] = id;
      this.sequence[id] = this.nextSequence++;
    }
    this.stats.submitted++;
    this.outstanding++;
    if (!this.busy) this.updateBusy();
    this.poller?.submitted();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(() => this.flushScheduled && this.flush());
    }
  }

  private allocateIndirectSlab(): void {
    const entries = this.size * this.indirectMax;
    const region = this.memory.allocate(entries * 16, 16);
    this.indirectSlab = {
      region,
      d32: new Uint32Array(region.view, region.offset, entries * 4),
      d16: new Uint16Array(region.view, region.offset, entries * 8),
      iova: Number(region.iova),
    };
  }

  /** The indirect table entries of request `id` (the slab is allocated at attach(), before any placement). */
  protected indirectTable(id: number): { slab: IndirectSlab; base: number; address: number } {
    const slab = this.indirectSlab!;
    const base = id * this.indirectMax;
    this.stats.indirect++;
    return { slab, base, address: slab.iova + base * 16 };
  }

  /** Copies the buffers of the request placed as `id` into the per-id shadow (see chainRegions). */
  private recordChain(id: number, request: QueueRequest): void {
    const regions = this.chainRegions[id];
    const ranges = this.chainRanges[id];
    let n = 0;
    if (request.readable) n = recordBuffers(request.readable, regions, ranges, n);
    if (request.writable) n = recordBuffers(request.writable, regions, ranges, n);
    regions.length = n;
    ranges.length = 2 * n;
  }

  /** The device keeps the buffers of `pending` although its caller was answered: the allocator defers their free (hold()). */
  private holdChain(pending: Pending): void {
    if (pending.held || pending.id < 0) return;
    pending.held = true;
    const hold = this.memory.hold;
    if (!hold) return;
    const regions = this.chainRegions[pending.id];
    const ranges = this.chainRanges[pending.id];
    for (let i = 0; i < regions.length; i++) hold.call(this.memory, regions[i], ranges[2 * i], ranges[2 * i + 1]);
  }

  /**
   * The buffers of a request settled early are its owner's again (the device gave them back, or never had
   * them): unhold them, then tell the owner (SubmitOptions.reclaim). Before its id is reused.
   */
  private returnChain(pending: Pending): void {
    if (pending.held) {
      pending.held = false;
      const unhold = this.memory.unhold;
      const regions = this.chainRegions[pending.id];
      const ranges = this.chainRanges[pending.id];
      if (unhold) for (let i = 0; i < regions.length; i++) unhold.call(this.memory, regions[i], ranges[2 * i], ranges[2 * i + 1]);
    }
    const reclaim = pending.reclaim;
    pending.reclaim = undefined;
    if (!reclaim) return;
    try {
      reclaim();
    } catch (error) {
      // Runs inside interrupt handling and resets: an owner's failure must not unwind those.
      process.emitWarning(`virtio-mmio: queue ${this.index}: a SubmitOptions.reclaim callback threw: ${String((error as Error)?.message ?? error)}`, 'VirtioReclaimWarning');
    }
  }

  private watchAbort(pending: Pending, signal: AbortSignal, waiter?: Waiter): void {
    const onAbort = (): void => {
      this.giveUp(pending, new AbortError(undefined, { cause: signal.reason }), waiter);
      this.drainWaiters();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    pending.cleanup = () => signal.removeEventListener('abort', onAbort);
  }

  /**
   * The caller no longer waits for `pending`: a waiter is dropped; a
   * request in flight becomes an orphan, whose descriptors and buffers stay
   * with the device until it uses them and whose result is discarded.
   */
  private giveUp(pending: Pending, error: Error, waiter?: Waiter): void {
    let inFlight = true;
    if (waiter) {
      const at = this.waiters.indexOf(waiter);
      // A waiter that was placed meanwhile is in flight: orphan it instead.
      if (at >= 0) {
        this.waiters.splice(at, 1);
        inFlight = false;
        if (this.waiters.length === 0) this.updateBusy();
      }
    }
    pending.orphaned = true;
    if (pending.deadline !== Infinity) this.untime(pending);
    pending.cleanup = undefined;
    if (inFlight) {
      this.orphans++;
      this.holdChain(pending);
      this.updateBusy();
    }
    pending.reject(error);
    // Never given to the device: its buffers are the caller's again at once.
    if (!inFlight) this.returnChain(pending);
  }

  // ---- Timeouts ----

  private setDeadline(pending: Pending, timeoutMs: number): void {
    pending.timeoutMs = timeoutMs;
    pending.deadline = performance.now() + timeoutMs;
    if (this.timed++ === 0) this.watchdog?.ref();
    if (pending.deadline < this.watchdogAt) this.armWatchdog(pending.deadline);
  }

  private untime(pending: Pending): void {
    pending.deadline = Infinity;
    // With nothing timed the watchdog may still fire once (and find nothing) but keeps no process alive.
    if (--this.timed === 0) this.watchdog?.unref();
  }

  private armWatchdog(deadline: number): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdogAt = deadline;
    // Clamped: rounding can make the largest timeoutMs (2^31 - 1) one more than setTimeout takes.
    this.watchdog = setTimeout(() => this.expire(), Math.min(2 ** 31 - 1, Math.max(1, Math.ceil(deadline - performance.now()))));
    if (this.timed === 0) this.watchdog.unref();
  }

  private stopWatchdog(): void {
    if (this.watchdog) clearTimeout(this.watchdog);
    this.watchdog = undefined;
    this.watchdogAt = Infinity;
  }

  /** Rejects every request past its deadline with TimeoutError; re-arms for the next deadline. */
  private expire(): void {
    this.watchdog = undefined;
    this.watchdogAt = Infinity;
    if (this.timed === 0) return;
    // Whatever the device used meanwhile is taken first: a late interrupt must not turn into a timeout.
    this.consume();
    const now = performance.now();
    let next = Infinity;
    const timeout = (pending: Pending, waiter?: Waiter): void => {
      if (pending.orphaned || pending.deadline === Infinity) return;
      if (pending.deadline <= now) {
        this.giveUp(pending, new TimeoutError(`queue ${this.index}: the device did not complete the request within ${pending.timeoutMs} ms`, pending.timeoutMs), waiter);
      } else next = Math.min(next, pending.deadline);
    };
    for (const waiter of [...this.waiters]) timeout(waiter.pending, waiter);
    for (let id = 0; id < this.size; id++) {
      const pending = this.pending[id];
      if (pending) timeout(pending);
    }
    if (next !== Infinity) this.armWatchdog(next);
    this.drainWaiters();
  }

  /**
   * Whether this queue's requests keep the process alive while in flight
   * (default true). Receive queues whose buffers stay posted are turned off
   * by an unref()'d driver, as an unref()'d socket lets the process exit.
   */
  setKeepAlive(keepAlive: boolean): void {
    this.holdsProcess = keepAlive;
    this.updateBusy();
  }

  /** Tells the transport whether someone waits for this queue (the interrupt line keeps the process alive only then). */
  private updateBusy(): void {
    const busy = this.holdsProcess && this.awaited > 0;
    if (busy === this.busy) return;
    this.busy = busy;
    this.transport?.setBusy(this.index, busy);
  }

  // ---- Completing ----

  /** InterruptStatus bit 0 (QueueEndpoint). */
  onUsedBuffer(): number {
    const consumed = this.consume();
    this.poller?.interrupted();
    return consumed;
  }

  /** Consumes what the device has used, without waiting for an interrupt. Returns the number consumed. */
  poll(): number {
    return this.consume();
  }

  private consume(): number {
    if (this.unusable()) return 0;
    const consumed = this.reap();
    if (consumed > 0) this.drainWaiters();
    return consumed;
  }

  /**
   * Settles request `id` with `len` after validating both (device-written
   * values): reclaims its descriptors, then resolves it. On a violation the
   * queue breaks and false is returned.
   */
  protected complete(id: number, len: number): boolean {
    if (id >= this.size) {
      this.breakQueue('used-id-out-of-range', `used element id ${id} is outside the queue (size ${this.size})`);
      return false;
    }
    const pending = this.pending[id];
    if (pending === undefined) {
      this.breakQueue('used-id-not-head', `used element id ${id} is not an outstanding request`);
      return false;
    }
    if (len > this.writableBytes[id]) {
      this.breakQueue('used-len-too-long', `used element for request ${id} reports ${len} bytes written into ${this.writableBytes[id]} writable bytes`);
      return false;
    }
    this.pending[id] = undefined;
    this.reclaim(id);
    this.stats.completed++;
    this.outstanding--;
    if (pending.orphaned) {
      this.orphans--;
      this.returnChain(pending);
    } else {
      if (pending.deadline !== Infinity) this.untime(pending);
      pending.cleanup?.();
      pending.resolve(len);
    }
    if (this.busy && this.awaited === 0) this.updateBusy();
    return true;
  }

  /**
   * IN_ORDER: one used entry naming `id` covers every request made
   * available before it that is still outstanding, and `id` itself
   * (§2.7 and §2.8, "In-order use of descriptors"); the earlier ones were used
   * completely, `id` reports `len`. Settles them oldest first, at most
   * `limit` of them; returns how many, or -1 when the queue broke.
   */
  protected completeInOrder(id: number, len: number, limit: number): number {
    if (id >= this.size) return this.complete(id, len) ? 1 : -1;
    if (this.pending[id] === undefined || this.orderLength === 0) {
      this.breakQueue('used-id-not-head', `used element id ${id} is not an outstanding request`);
      return -1;
    }
    const batch = this.sequence[id] - this.sequence[this.order[this.orderStart]] + 1;
    if (batch > limit) {
      this.breakQueue('used-idx-jump', `an in-order used element for request ${id} covers ${batch} requests, the device reported ${limit}`);
      return -1;
    }
    for (let n = 1; n <= batch; n++) {
      const next = this.order[this.orderStart];
      this.orderStart = (this.orderStart + 1) % this.size;
      this.orderLength--;
      if (!this.complete(next, n === batch ? len : this.writableBytes[next])) return -1;
    }
    return batch;
  }

  private drainWaiters(): void {
    if (this.waiters.length === 0) return;
    while (this.waiters.length > 0 && !this.unusable()) {
      const waiter = this.waiters[0];
      if (!this.hasRoom(waiter.count)) return;
      this.waiters.shift();
      this.placeRequest(waiter.request, waiter.count, waiter.pending);
    }
    // The last waiter placed: orphans no longer hold room someone waits for.
    if (this.waiters.length === 0) this.updateBusy();
  }

  // ---- Interrupt suppression (§2.7.7, §2.7.10, §2.8.10) ----

  /** Asks the device not to interrupt for this queue (a hint; poll() to consume). */
  disableInterrupts(): void {
    // After close the ring memory is back in the allocator: never write it.
    if (this.released) return;
    this.interruptsEnabled = false;
    this.suppressInterrupts(false);
  }

  /** Asks for interrupts again and consumes whatever was used meanwhile. */
  enableInterrupts(): number {
    if (this.released) return 0;
    this.interruptsEnabled = true;
    this.suppressInterrupts(true);
    this.barriers.mb();
    return this.consume();
  }

  // ---- Completion modes ----

  /** How completions are found: 'interrupt' (default), 'poll' or 'hybrid' (see QueueMode). */
  get mode(): QueueMode {
    return this.poller?.mode ?? 'interrupt';
  }

  /** Switches the completion mode; takes effect at once. */
  setMode(mode: QueueMode, options: QueueModeOptions = {}): void {
    if (mode !== 'interrupt' && mode !== 'poll' && mode !== 'hybrid') throw new TypeError(`queue mode must be 'interrupt', 'poll' or 'hybrid', got ${String(mode)}`);
    if (this.released) throw new ClosedError(`queue ${this.index} is closed`);
    const poller = mode === 'interrupt' ? undefined : new CompletionPoller(this, mode, options);
    this.poller?.stop();
    this.poller = poller;
    if (mode === 'interrupt' && !this.interruptsEnabled) this.enableInterrupts();
    if (mode === 'poll' && this.outstanding > 0) poller!.submitted();
  }

  // ---- Dump (on demand only; nothing here runs per request) ----

  /** The queue's state as plain JSON data: shadow state, ring memory, requests in flight (see QueueDump). */
  abstract dump(): QueueDump;

  /** What both formats dump alike; a subclass adds its shadow, ring and chains. Throws ClosedError after close(). */
  protected dumpCommon(): Pick<QueueDump, 'index' | 'size' | 'features' | 'mode' | 'broken' | 'stats' | 'addresses'> {
    if (this.released) throw new ClosedError(`queue ${this.index} is closed`);
    const { desc, driver, device } = this.addresses;
    return {
      index: this.index,
      size: this.size,
      features: { eventIdx: this.eventIdx, inOrder: this.inOrder, indirect: this.indirectAllowed },
      mode: this.mode,
      ...(this.brokenReason ? { broken: { ...this.brokenReason } } : {}),
      stats: { ...this.stats },
      addresses: { desc: hex(desc), driver: hex(driver), device: hex(device) },
    };
  }

  /** The ids given to the device and not yet returned, ascending, each with an empty chain for the subclass to fill. */
  protected pendingDumps(): OutstandingDump[] {
    const ids: OutstandingDump[] = [];
    for (let id = 0; id < this.size; id++) {
      const pending = this.pending[id];
      if (pending) ids.push({ id, orphan: pending.orphaned, descriptors: [] });
    }
    return ids;
  }

  /** Reads an indirect table back from this queue's own slab (the only place the driver puts them). */
  protected readonly readOwnTable: TableReader = (address, length) => {
    const slab = this.indirectSlab;
    const offset = slab ? address - slab.region.iova : -1n;
    if (!slab || offset < 0n || offset + BigInt(length) > BigInt(slab.region.size)) {
      throw new RangeError(`${hex(address)} (+${length}) is not in this queue's indirect tables`);
    }
    return new DataView(slab.region.view, slab.region.offset + Number(offset), length);
  };

  // ---- Failure and teardown ----

  private brokenError(): DeviceBrokenError {
    const { reason, message } = this.brokenReason!;
    return new DeviceBrokenError(reason, `queue ${this.index} is broken: ${message}`);
  }

  private detachedError(): Error {
    const cause = this.detachedBy;
    // A device that failed (gone, broken) keeps saying so; a reset or close is a cancellation.
    if (cause instanceof DeviceBrokenError || cause instanceof DeviceGoneError) return cause;
    if (this.released) return new ClosedError(`queue ${this.index} is closed`);
    return new CanceledError(`queue ${this.index} is ${this.released ? 'closed' : `detached (${cause?.message})`}`, cause ? { cause } : undefined);
  }

  protected unusable(): boolean {
    return this.brokenReason !== undefined || this.detachedBy !== undefined || this.released;
  }

  /** Marks the queue broken (sticky) and rejects every pending request. */
  protected breakQueue(reason: string, message: string): void {
    this.brokenReason = { reason, message };
    // A device that lies may still write the buffers of what is pending, which their owners free once
    // rejected: the transport resets it first (and detaches every queue of it with this error).
    this.transport?.deviceBroken?.(this.brokenError());
    this.rejectAll(() => this.brokenError());
  }

  /**
   * The transport was reset, closed, or lost its interrupt (QueueEndpoint).
   * What the device had is rejected but stays held until reclaimAll() says
   * a reset completed.
   */
  detach(error: Error): void {
    if (this.detachedBy) return;
    this.detachedBy = error;
    this.transport = undefined;
    this.rejectAll(() => error);
  }

  /**
   * The device has let go of every buffer of this queue: a reset of the
   * device or of this queue completed, or the queue was taken back
   * (QueueEndpoint). The memory of requests rejected meanwhile goes back
   * to its owners (SubmitOptions.reclaim); a close() that waited for this
   * frees the ring now. Idempotent.
   */
  reclaimAll(): void {
    if (this.outstanding > 0) this.rejectAll(() => this.detachedError());
    this.deviceLetGo = true;
    const retained = this.retained;
    this.retained = [];
    for (const pending of retained) this.returnChain(pending);
    // A close() that came while the device held the ring frees it now.
    if (this.released) this.freeRing();
  }

  /** Rejects everything; requests the device had are retained (and held) until reclaimAll(). */
  private rejectAll(makeError: () => Error): void {
    this.poller?.stop();
    this.stopWatchdog();
    this.timed = 0;
    const waiters = this.waiters.splice(0);
    const inDevice: Pending[] = [];
    for (let id = 0; id < this.size; id++) {
      const p = this.pending[id];
      if (p === undefined) continue;
      this.pending[id] = undefined;
      this.holdChain(p);
      inDevice.push(p);
    }
    this.orderLength = 0;
    this.outstanding = 0;
    this.orphans = 0;
    this.updateBusy();
    for (const p of inDevice) {
      // Kept until the device is known to have let go; an orphan's caller was answered already.
      this.retained.push(p);
      if (p.orphaned) continue;
      p.orphaned = true;
      p.cleanup?.();
      p.reject(makeError());
    }
    for (const { pending: p } of waiters) {
      p.orphaned = true;
      p.cleanup?.();
      p.reject(makeError());
      this.returnChain(p);
    }
  }

  /**
   * Takes the queue back from the device (if still attached) and rejects
   * what is pending with CanceledError. Idempotent. The ring, the indirect
   * tables and the buffers of pending requests go back only once the
   * device has let go: at once when the queue is taken back (QueueReady
   * reads 0) or a reset completed before; otherwise when a reset completes
   * later (reclaimAll), or never — the allocator's close() takes them back
   * at process end. A device that does not let go makes this throw.
   */
  close(): void {
    if (this.released) return;
    const transport = this.transport;
    this.transport = undefined;
    this.released = true;
    this.rejectAll(() => new CanceledError(`queue ${this.index} closed`));
    if (transport) {
      transport.deactivateQueue(this.index);
      this.reclaimAll();
    } else if (this.deviceLetGo) this.freeRing();
  }

  /** Frees the ring and the indirect tables (once; only when the device let go). */
  private freeRing(): void {
    if (this.ring) this.memory.free(this.ring);
    this.ring = undefined;
    if (this.indirectSlab) this.memory.free(this.indirectSlab.region);
    this.indirectSlab = undefined;
  }
}

/** Writes `list` into the per-id shadow from position `n` (arrays reused: no allocation once grown); returns the next position. */
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

/** A copy of `request` with each buffer's offset and length fixed (for requests placed later). */
function snapshotRequest(request: QueueRequest): QueueRequest {
  const copy = (list: readonly QueueBuffer[] | undefined): QueueBuffer[] =>
    (list ?? []).map(({ region, offset = 0, length }) => ({ region, offset, length: length ?? region.size - offset }));
  return { readable: copy(request.readable), writable: copy(request.writable) };
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
  // Number arithmetic, as writeDescriptor uses; no BigInt work per buffer on the submit path.
  if (Number(region.iova) + offset + length > MAX_ADDRESS) throw new RangeError('buffer device address beyond 2^53');
  return length;
}

/**
 * Fills the 16-byte descriptor at `slot`: address and length (the same
 * place in both formats), then the two 16-bit words at 12 and 14 — split:
 * flags, next; packed: id, flags. Returns the buffer's length.
 */
export function writeDescriptor(d32: Uint32Array, d16: Uint16Array, slot: number, buffer: QueueBuffer, word12: number, word14: number): number {
  const offset = buffer.offset ?? 0;
  const length = buffer.length ?? buffer.region.size - offset;
  const address = Number(buffer.region.iova) + offset;
  d32[slot * 4] = address % TWO_32;
  d32[slot * 4 + 1] = Math.floor(address / TWO_32);
  d32[slot * 4 + 2] = length;
  d16[slot * 8 + 6] = word12;
  d16[slot * 8 + 7] = word14;
  return length;
}

/** Writes address and length of a descriptor (the flags word is written by the caller, later for a packed head). */
export function writeAddress(d32: Uint32Array, slot: number, address: number, length: number): void {
  d32[slot * 4] = address % TWO_32;
  d32[slot * 4 + 1] = Math.floor(address / TWO_32);
  d32[slot * 4 + 2] = length;
}
