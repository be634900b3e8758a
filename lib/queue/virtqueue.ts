import { endianness } from 'node:os';
import { AbortError, CanceledError, ClosedError, DeviceBrokenError, DeviceGoneError, QueueFullError, TimeoutError, TransportError } from '../errors';
import { nativeBarriers, type Barriers, type DmaAllocator } from '../platform';
import type { QueueAddresses, QueueEndpoint, QueueLayout, QueueTransport } from '../transport';
import { CompletionPoller, type QueueMode, type QueueModeOptions } from './completion-mode';
import { ChainRecords } from './chain-records';
import { Pending, type Waiter } from './pending-request';
import { hex, type OutstandingDump, type QueueDump } from './queue-dump';
import type { QueueRequest, QueueStats, SubmitOptions } from './queue-types';
import { checkRequest, checkSubmitOptions, snapshotRequest, type RequestLimits } from './request-checks';
import { RequestDeadlines } from './request-deadlines';
import type { RingEngine, RingEngineOptions } from './ring-engine';

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

/** Builds the ring engine of a format (SplitRingEngine, PackedRingEngine). */
export type RingEngineFactory = (options: RingEngineOptions) => RingEngine;

/**
 * The request layer of one virtqueue, over a ring engine (ring-engine.ts)
 * that does the ring itself: promises, waiting for room (FIFO), aborts,
 * deadlines, keep-alive, completion modes, the sticky broken state,
 * teardown — and the ownership rule: memory given to the device is the
 * device's until it comes back in the used ring or a reset completes.
 *
 * Publication is batched: requests submitted in the same tick are made
 * visible at once with at most one notification, in a microtask (or at
 * once with flush()).
 *
 * When the ring is full, submit() waits (FIFO) for room; with
 * `{ wait: false }` it throws QueueFullError (retryable) instead. An
 * AbortSignal or a deadline rejects the promise: a waiting request is
 * dropped; a request already given to the device becomes an orphan whose
 * buffers stay held until the device returns them, and whose result is
 * discarded.
 */
export class Virtqueue implements QueueEndpoint {
  readonly index: number;
  readonly size: number;
  readonly stats: QueueStats = { submitted: 0, completed: 0, publishes: 0, notifications: 0, notificationsSuppressed: 0, atomics: 0, indirect: 0, polls: 0, polledCompletions: 0 };
  /** The ring itself (synchronous; see RingEngine). */
  protected readonly engine: RingEngine;

  private readonly memory: DmaAllocator;
  private readonly barriers: Barriers;
  private readonly limits: RequestLimits;
  /** Requests given to the device and not yet settled (the engine's count until a detach rejects them). */
  private outstanding = 0;
  /** Outstanding requests whose caller gave up (abort, timeout): they do not keep the process alive. */
  private orphans = 0;
  private busy = false;
  /** Whether requests in flight keep the process alive (setKeepAlive). */
  private holdsProcess = true;
  private readonly deadlines: RequestDeadlines;
  private transport?: QueueTransport;
  private readonly pending: (Pending | undefined)[];
  private readonly records: ChainRecords;
  private flushScheduled = false;
  private readonly flushTask = (): void => {
    if (this.flushScheduled) this.flush();
  };
  private readonly waiters: Waiter[] = [];
  private poller?: CompletionPoller;
  private brokenReason?: { reason: string; message: string };
  private detachedBy?: Error;
  private released = false;
  /** Requests rejected while the device still had them (detach, break, close): kept until a reset completes (reclaimAll). */
  private retained: Pending[] = [];
  /** Whether the device has let go of everything it was given (never attached, or a reset/teardown completed since). */
  private deviceLetGo = true;
  private ringFreed = false;

  constructor(options: VirtqueueOptions, makeEngine: RingEngineFactory) {
    const { index, size } = options;
    this.index = index;
    this.memory = options.memory;
    this.barriers = options.barriers ?? nativeBarriers;
    const indirectMax = options.indirectMax ?? 32;
    if (!Number.isInteger(indirectMax) || indirectMax < 2 || indirectMax > 0xffff) {
      throw new RangeError(`indirectMax must be an integer in [2, 65535], got ${indirectMax}`);
    }
    this.engine = makeEngine({
      size,
      memory: options.memory,
      layout: options.layout,
      features: options.features,
      barriers: this.barriers,
      indirectMax,
      stats: this.stats,
      onUsed: (id, len) => this.complete(id, len),
    });
    this.size = this.engine.size;
    this.limits = { index, size: this.size, indirectMax: this.engine.indirect ? indirectMax : 0 };
    this.pending = new Array<Pending | undefined>(this.size).fill(undefined);
    this.records = new ChainRecords(this.size, options.memory);
    this.deadlines = new RequestDeadlines(() => this.expire());
  }

  /** 'split' or 'packed'. */
  get format(): 'split' | 'packed' {
    return this.engine.format;
  }

  /** The areas' device addresses, for the transport's queue registers. */
  get addresses(): QueueAddresses {
    return this.engine.addresses;
  }

  /** Free descriptors right now. */
  get free(): number {
    return this.engine.free;
  }

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
      this.checkUsable();
      const count = checkRequest(request, this.limits, this.memory);
      const { signal, timeoutMs, reclaim } = options;
      checkSubmitOptions(timeoutMs, reclaim);
      if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
      if (this.waiters.length === 0 && this.engine.hasRoom(count)) {
        return new Promise<number>((resolve, reject) => {
          const pending = new Pending(resolve, reject);
          pending.reclaim = reclaim;
          if (timeoutMs !== undefined) this.deadlines.add(pending, timeoutMs);
          this.placeRequest(request, count, pending);
          if (signal) this.watchAbort(pending, signal);
        });
      }
      if (options.wait === false) {
        throw new QueueFullError(`queue ${this.index}: ${this.engine.descriptorsFor(count)} descriptor(s) needed, ${this.free} free`);
      }
      // Placed later: a copy, so that the caller changing its objects meanwhile cannot change what was validated.
      const snapshot = snapshotRequest(request);
      return new Promise<number>((resolve, reject) => {
        const waiter: Waiter = { request: snapshot, count, pending: new Pending(resolve, reject) };
        waiter.pending.reclaim = reclaim;
        if (timeoutMs !== undefined) this.deadlines.add(waiter.pending, timeoutMs);
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
    const notify = this.engine.publish();
    if (notify >= 0) this.notifyDevice(notify);
  }

  /** Notifies the device (the engine decided it must); a failure detaches the queue. */
  private notifyDevice(nextAvail: number): void {
    this.stats.notifications++;
    try {
      this.transport?.notify(this.index, nextAvail);
    } catch (error) {
      // Runs in a microtask: a window closed under us must not become an uncaught exception.
      this.detach(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private checkUsable(): void {
    if (this.brokenReason) throw this.brokenError();
    if (this.detachedBy || this.released) throw this.detachedError();
    if (!this.transport) throw new TransportError(TransportError.STATE, `queue ${this.index} is not attached to a transport (call attach())`);
  }

  private placeRequest(request: QueueRequest, count: number, pending: Pending): void {
    const id = this.engine.place(request, count);
    this.pending[id] = pending;
    pending.id = id;
    this.records.record(id, request);
    this.stats.submitted++;
    this.outstanding++;
    if (!this.busy) this.updateBusy();
    this.poller?.submitted();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      queueMicrotask(this.flushTask);
    }
  }

  /** The device keeps the buffers of `pending` although its caller was answered: the allocator defers their free. */
  private holdChain(pending: Pending): void {
    if (pending.held || pending.id < 0) return;
    pending.held = true;
    this.records.hold(pending.id);
  }

  /**
   * The buffers of a request settled early are its owner's again (the device gave them back, or never had
   * them): unhold them, then tell the owner (SubmitOptions.reclaim). Before its id is reused.
   */
  private returnChain(pending: Pending): void {
    if (pending.held) {
      pending.held = false;
      this.records.unhold(pending.id);
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
    if (pending.deadline !== Infinity) this.deadlines.remove(pending);
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

  /** Rejects every request past its deadline with TimeoutError; re-arms for the next deadline. */
  private expire(): void {
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
    if (next !== Infinity) this.deadlines.arm(next);
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
    const consumed = this.engine.reap();
    const violation = this.engine.violation;
    if (violation) this.breakQueue(violation.reason, violation.message);
    else if (consumed > 0) this.drainWaiters();
    return consumed;
  }

  /** A used entry the engine validated (onUsed): settles request `id` with `len`. */
  private complete(id: number, len: number): void {
    const pending = this.pending[id]!;
    this.pending[id] = undefined;
    this.stats.completed++;
    this.outstanding--;
    if (pending.orphaned) {
      this.orphans--;
      this.returnChain(pending);
    } else {
      if (pending.deadline !== Infinity) this.deadlines.remove(pending);
      pending.cleanup?.();
      pending.resolve(len);
    }
    if (this.busy && this.awaited === 0) this.updateBusy();
  }

  private drainWaiters(): void {
    if (this.waiters.length === 0) return;
    while (this.waiters.length > 0 && !this.unusable()) {
      const waiter = this.waiters[0];
      if (!this.engine.hasRoom(waiter.count)) return;
      this.waiters.shift();
      this.placeRequest(waiter.request, waiter.count, waiter.pending);
    }
    // The last waiter placed: orphans no longer hold room someone waits for.
    if (this.waiters.length === 0) this.updateBusy();
  }

  // ---- Used-buffer notifications (§2.7.7, §2.7.10, §2.8.10) ----

  /** Asks the device not to interrupt for this queue (a hint; poll() to consume). */
  disableInterrupts(): void {
    // After close the ring memory is back in the allocator: never write it.
    if (this.released) return;
    this.engine.setNotifications(false);
  }

  /** Asks for interrupts again and consumes whatever was used meanwhile. */
  enableInterrupts(): number {
    if (this.released) return 0;
    this.engine.setNotifications(true);
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
    if (mode === 'interrupt' && !this.engine.notifications) this.enableInterrupts();
    if (mode === 'poll' && this.outstanding > 0) poller!.submitted();
  }

  // ---- Dump (on demand only; nothing here runs per request) ----

  /** The queue's state as plain JSON data: shadow state, ring memory, requests in flight (see QueueDump). Throws ClosedError after close(). */
  dump(): QueueDump {
    if (this.released) throw new ClosedError(`queue ${this.index} is closed`);
    const { desc, driver, device } = this.addresses;
    const outstanding: OutstandingDump[] = [];
    for (let id = 0; id < this.size; id++) {
      const pending = this.pending[id];
      if (pending) outstanding.push({ id, orphan: pending.orphaned, descriptors: [] });
    }
    return {
      index: this.index,
      size: this.size,
      features: { eventIdx: this.engine.eventIdx, inOrder: this.engine.inOrder, indirect: this.engine.indirect !== undefined },
      mode: this.mode,
      ...(this.brokenReason ? { broken: { ...this.brokenReason } } : {}),
      stats: { ...this.stats },
      addresses: { desc: hex(desc), driver: hex(driver), device: hex(device) },
      format: this.format,
      ...this.engine.dump(outstanding),
    } as QueueDump;
  }

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
    return new CanceledError(`queue ${this.index} is detached (${cause?.message})`, cause ? { cause } : undefined);
  }

  private unusable(): boolean {
    return this.brokenReason !== undefined || this.detachedBy !== undefined || this.released;
  }

  /** Marks the queue broken (sticky) and rejects every pending request. */
  private breakQueue(reason: string, message: string): void {
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
    this.deadlines.clear();
    const waiters = this.waiters.splice(0);
    const inDevice: Pending[] = [];
    for (let id = 0; id < this.size; id++) {
      const p = this.pending[id];
      if (p === undefined) continue;
      this.pending[id] = undefined;
      this.holdChain(p);
      inDevice.push(p);
    }
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
    if (this.ringFreed) return;
    this.ringFreed = true;
    this.engine.release(this.memory);
  }
}
