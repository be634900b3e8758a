import '../disposable';
import { CanceledError, ClosedError, TransportError } from '../errors';
import { nativeBarriers, type Barriers, type DmaAllocator } from '../platform';
import type { QueueAddresses, QueueEndpoint, QueueTransport } from '../transport';
import { RequestAbandonment } from './abandonment';
import { CompletionPoller, checkQueueMode, type QueueMode, type QueueModeOptions } from './completion-mode';
import { checkIndirectMax } from './indirect-max';
import { InFlightRequests } from './in-flight';
import { PendingPool, WaitingRoom } from './pending-request';
import { dumpQueue, type QueueDump } from './queue-dump';
import { QueueState } from './queue-state';
import type { QueueRecovery, QueueStats, VirtqueueOptions } from './queue-types';
import type { RequestLimits } from './request-checks';
import { RequestDeadlines } from './request-deadlines';
import type { RingEngine, RingEngineFactory } from './ring-engine';

/**
 * What a Virtqueue is outside its request path: the parts it is built from
 * (the ring engine, the in-flight records, deadlines, abandonment), its
 * attachment to a transport, completion modes, the dump, and teardown —
 * the ownership rule at the end of a queue's life: memory given to the
 * device goes back only once the device let go (a reset or the queue taken
 * back, virtio 1.2 §2.4, §2.6.1). The request path (virtqueue.ts) extends
 * it; the fields are shared, so the request path reads them directly.
 */
export abstract class VirtqueueLifecycle implements QueueEndpoint {
  readonly index: number;
  readonly size: number;
  readonly stats: QueueStats = {
    submitted: 0,
    completed: 0,
    publishes: 0,
    notifications: 0,
    notificationsSuppressed: 0,
    atomics: 0,
    indirect: 0,
    polls: 0,
    polledCompletions: 0,
    spins: 0,
    spinHits: 0,
    usedLenIgnored: 0,
    resets: 0,
    inOrderBatches: 0,
    inOrderBatched: 0,
  };
  /**
   * Called after each reset of this queue alone (reset()), once it is the
   * driver's again and handed back to the device, with the error its
   * pending requests were rejected with.
   */
  onReset?: (reason: Error) => void;
  /** The ring itself (synchronous; see RingEngine). */
  protected readonly engine: RingEngine;

  protected readonly memory: DmaAllocator;
  protected readonly barriers: Barriers;
  protected readonly limits: RequestLimits;
  protected readonly deadlines: RequestDeadlines;
  /** Aborts, timeouts and rejections of what is pending (the ownership rule for requests given up). */
  protected readonly abandonment: RequestAbandonment;
  protected transport?: QueueTransport;
  /** Requests the device has, and the ownership rule over their memory. */
  protected readonly inFlightRequests: InFlightRequests;
  protected readonly waiters = new WaitingRoom();
  protected readonly pendings: PendingPool;
  protected poller?: CompletionPoller;
  protected readonly state: QueueState;
  /** Whether the device has let go of everything it was given (never attached, or a reset/teardown completed since). */
  private deviceLetGo = true;
  private ringFreed = false;
  private ringHeld = false;
  protected readonly recovery: QueueRecovery;
  /** A request in flight timed out: the queue is reset once nothing else in flight is awaited (Virtqueue). */
  protected resetWanted = false;
  /** The errors reset() rejected requests with, for their owners to tell a recovery from a failure (recovered()). */
  private readonly resetReasons = new WeakSet<Error>();

  protected constructor(options: VirtqueueOptions, makeEngine: RingEngineFactory) {
    const { index, size } = options;
    this.index = index;
    this.memory = options.memory;
    this.recovery = options.recovery ?? 'reset-broken';
    this.barriers = options.barriers ?? nativeBarriers;
    const indirectMax = checkIndirectMax(options.indirectMax);
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
    this.inFlightRequests = new InFlightRequests(this.size, options.memory, index);
    this.pendings = new PendingPool(this.size);
    this.state = new QueueState(index);
    this.deadlines = new RequestDeadlines(() => this.abandonment.expire());
    this.abandonment = new RequestAbandonment({
      index,
      waiters: this.waiters,
      inFlight: this.inFlightRequests,
      deadlines: this.deadlines,
      updateBusy: () => this.updateBusy(),
      drainWaiters: () => this.drainWaiters(),
      consume: () => this.consume(),
      timedOut: () => this.timedOut(),
    });
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
    return this.inFlightRequests.outstanding;
  }

  get broken(): boolean {
    return this.state.brokenBy !== undefined;
  }

  /** Hands the queue to the device through `transport` (QueueNum, addresses, QueueReady / QueuePFN). */
  attach(transport: QueueTransport): void {
    if (this.state.closed) throw new CanceledError(`queue ${this.index} is closed`);
    this.deviceLetGo = false;
    transport.activateQueue(this.index, this.addresses, this);
    this.transport = transport;
  }

  /** In-flight requests someone still waits for (Virtqueue). */
  abstract get awaited(): number;
  /** Consumes what the device has used (Virtqueue). */
  abstract poll(): number;
  abstract onUsedBuffer(): number;
  abstract disableInterrupts(): void;
  abstract enableInterrupts(): number;
  protected abstract consume(): number;
  /** Settles request `id` with `len` (RingEngine onUsed); false when the queue became unusable. */
  protected abstract complete(id: number, len: number): boolean;
  protected abstract updateBusy(): void;
  protected abstract drainWaiters(): void;
  protected abstract timedOut(): void;

  // ---- Completion modes ----

  /** How completions are found: 'interrupt' (default), 'poll' or 'hybrid' (see QueueMode). */
  get mode(): QueueMode {
    return this.poller?.mode ?? 'interrupt';
  }

  /** Switches the completion mode; takes effect at once. */
  setMode(mode: QueueMode, options: QueueModeOptions = {}): void {
    checkQueueMode(mode);
    if (this.state.closed) throw new ClosedError(`queue ${this.index} is closed`);
    const poller = mode === 'interrupt' ? undefined : new CompletionPoller(this, mode, options);
    this.poller?.stop();
    this.poller = poller;
    if (mode === 'interrupt' && !this.engine.notifications) this.enableInterrupts();
    if (mode === 'poll' && this.inFlight > 0) poller!.submitted();
  }

  /**
   * The queue's state as plain JSON data: shadow state, ring memory,
   * requests in flight (see QueueDump); on demand only. ClosedError after
   * close().
   */
  dump(): QueueDump {
    if (this.state.closed) throw new ClosedError(`queue ${this.index} is closed`);
    const { index, size, engine, mode, stats, addresses, format } = this;
    return dumpQueue(
      { index, size, engine, mode, stats, addresses, format, brokenBy: this.state.brokenBy },
      this.inFlightRequests.dumpEntries(),
    );
  }

  // ---- Failure and teardown ----

  /**
   * Marks the queue broken and rejects every pending request. With recovery
   * and a transport that can reset one queue, this queue alone is reset and
   * goes on (reset()); otherwise the break is sticky.
   */
  protected breakQueue(reason: string, message: string): void {
    this.state.markBroken(reason, message);
    if (this.recovery !== 'none' && this.transport?.queueResettable) {
      try {
        this.reset(this.state.brokenError());
      } catch {
        // The queue reset failed: reset() failed the device as a whole, which its error listeners hear of.
      }
      return;
    }
    // A device that lies may still write the buffers of what is pending, which their owners free once
    // rejected: the transport resets it first (and detaches every queue of it with this error).
    this.transport?.deviceBroken?.(this.state.brokenError());
    this.rejectAll(() => this.state.brokenError());
  }

  /**
   * Resets this queue alone and hands it to the device again
   * (VIRTIO_F_RING_RESET, virtio 1.2 §2.6.1, §4.2.2.1); the device's other
   * queues are untouched. Requests in flight reject with `reason` (default
   * CanceledError) and their memory goes back to its owners only once
   * QueueReset and QueueReady read 0; requests waiting for room stay and go
   * out on the new ring. TransportError NOT_NEGOTIATED when the transport
   * cannot (no RING_RESET, or a queue reset failed before); a reset that
   * does not complete or that the device ignores (QUEUE_RESET_TIMEOUT,
   * QUEUE_RESET_IGNORED) fails the device as a whole — its reset is what
   * takes the memory back — and throws.
   */
  reset(reason?: Error): void {
    if (this.state.closed) throw new ClosedError(`queue ${this.index} is closed`);
    const transport = this.transport;
    if (!transport) throw this.state.refusal() ?? notAttached(this.index);
    if (!transport.resetQueue || !transport.queueResettable) {
      throw new TransportError(
        TransportError.NOT_NEGOTIATED,
        `queue ${this.index}: the transport cannot reset one queue (VIRTIO_F_RING_RESET not negotiated, or a ` +
          'queue reset failed since the device was reset)',
      );
    }
    const cause = reason ?? new CanceledError(`queue ${this.index} was reset`);
    this.resetReasons.add(cause);
    const waiting = this.waiters.takeAll();
    try {
      transport.resetQueue(this.index, cause);
      this.engine.reset();
      this.state.revive();
      this.attach(transport);
    } catch (error) {
      for (const waiter of waiting) this.waiters.push(waiter);
      const failure = error instanceof Error ? error : new Error(String(error));
      this.rejectAll(() => failure);
      transport.deviceBroken?.(failure);
      throw error;
    }
    this.stats.resets++;
    this.resetWanted = false;
    for (const waiter of waiting) {
      this.waiters.push(waiter);
      if (waiter.pending.deadline !== Infinity) this.deadlines.keep(waiter.pending);
    }
    this.drainWaiters();
    this.updateBusy();
    this.onReset?.(cause);
  }

  /** Whether `error` is one reset() rejected requests with: the queue went on; a receive buffer may be posted again. */
  recovered(error: unknown): boolean {
    return error instanceof Error && this.resetReasons.has(error);
  }

  /**
   * The transport was reset, closed, or lost its interrupt (QueueEndpoint).
   * What the device had is rejected but stays held until reclaimAll() says
   * a reset completed.
   */
  detach(error: Error): void {
    if (this.state.detached) return;
    this.state.markDetached(error);
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
    if (this.inFlight > 0) this.rejectAll(() => this.state.detachedError());
    this.deviceLetGo = true;
    this.inFlightRequests.reclaimRetained();
    // A close() that came while the device held the ring frees it now.
    if (this.state.closed) this.freeRing();
  }

  /** Rejects everything; requests the device had are retained (and held) until reclaimAll(). */
  private rejectAll(makeError: () => Error): void {
    this.poller?.stop();
    this.abandonment.rejectAll(makeError);
  }

  /** close(), for `using` (explicit resource management): disposed at the end of the enclosing block. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Takes the queue back from the device (if still attached) and rejects
   * what is pending with CanceledError. Idempotent. The ring, the indirect
   * tables and the buffers of pending requests go back only once the
   * device has let go: at once when the queue is taken back (QueueReady
   * reads 0) or a reset completed before; otherwise when a reset completes
   * later (reclaimAll), or never: until then they are held in the
   * allocator, whose close() keeps their chunks mapped. A device that does
   * not let go makes this throw.
   */
  close(): void {
    if (this.state.closed) return;
    const transport = this.transport;
    this.transport = undefined;
    this.state.closed = true;
    this.rejectAll(() => new CanceledError(`queue ${this.index} closed`));
    if (transport) {
      try {
        transport.deactivateQueue(this.index);
      } catch (error) {
        this.holdRing();
        throw error;
      }
      this.reclaimAll();
    } else if (this.deviceLetGo) this.freeRing();
    else this.holdRing();
  }

  /** A closed queue whose device still has the ring: its memory is held, so the allocator never hands it out. */
  private holdRing(): void {
    if (this.ringHeld || this.ringFreed) return;
    this.ringHeld = true;
    for (const region of this.engine.regions) this.memory.hold?.(region, 0, region.size);
  }

  /** Frees the ring and the indirect tables (once; only when the device let go). */
  private freeRing(): void {
    if (this.ringFreed) return;
    this.ringFreed = true;
    for (const region of this.engine.regions) {
      if (this.ringHeld) this.memory.unhold?.(region, 0, region.size);
      this.memory.free(region);
    }
    this.ringHeld = false;
  }
}

/** The refusal of a queue that was never attached, or whose transport let it go. */
export function notAttached(index: number): TransportError {
  return new TransportError(TransportError.STATE, `queue ${index} is not attached to a transport (call attach())`);
}
