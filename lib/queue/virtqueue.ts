import '../disposable';
import { AbortError, CanceledError, QueueFullError } from '../errors';
import type { QueueEndpoint } from '../transport';
import type { Pending, Waiter } from './pending-request';
import type { QueueRequest, SubmitOptions, VirtqueueOptions } from './queue-types';
import { checkRequest, checkSubmitOptions, snapshotRequest } from './request-checks';
import type { RingEngineFactory } from './ring-engine';
import { VirtqueueLifecycle, notAttached } from './virtqueue-lifecycle';

const RESOLVED = Promise.resolve();

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
 *
 * This file is the request path (submit, publish, notify, reap, complete);
 * construction, completion modes, the dump and teardown are its base class
 * (virtqueue-lifecycle.ts).
 */
export class Virtqueue extends VirtqueueLifecycle implements QueueEndpoint {
  private busy = false;
  /** Whether requests in flight keep the process alive (setKeepAlive). */
  private holdsProcess = true;
  private flushScheduled = false;
  /**
   * > 0 while completions are dispatched (consume) or a flush runs: what
   * the callbacks place meanwhile is published when the outermost ends —
   * by flush()'s own loop, or a flush right after the reap — with no
   * microtask per request (a callback that submits its next request, the
   * QD1 loop of VirtioBlk.readInto()).
   */
  private batching = 0;
  /** A flush is owed by the batching scope (no microtask was queued for it). */
  private flushOwed = false;
  private readonly flushTask = (): void => {
    if (!this.flushScheduled) return;
    try {
      this.flush();
    } catch (error) {
      // A failure surfaces as uncaught, as from queueMicrotask, not as a rejection nobody handles.
      queueMicrotask(() => {
        throw error;
      });
    }
  };
  private quietCheckQueued = false;
  private readonly quietCheck = (): void => {
    this.quietCheckQueued = false;
    this.resetIfQuiet();
  };
  private readonly fits = (count: number): boolean =>
    !this.state.unusable && !this.resetWanted && this.engine.hasRoom(count);
  private readonly placeWaiter = (waiter: Waiter): void =>
    this.placeRequest(waiter.request, waiter.count, waiter.pending);

  constructor(options: VirtqueueOptions, makeEngine: RingEngineFactory) {
    super(options, makeEngine);
  }

  /**
   * In-flight requests someone still waits for: those not aborted or timed
   * out, or all of them while a request waits for room (any completion
   * makes room for it).
   */
  get awaited(): number {
    const { outstanding, orphans } = this.inFlightRequests;
    return this.waiters.length > 0 ? outstanding : outstanding - orphans;
  }

  // ---- Submitting ----

  /**
   * Sends one request; resolves with the number of bytes the device wrote
   * (the used len, validated ≤ the writable bytes posted).
   */
  submit(request: QueueRequest, options: SubmitOptions = {}): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      try {
        this.enqueue(request, resolve, reject, options);
      } catch (error) {
        reject(error);
      }
    });
  }

  /**
   * submit() without a promise of its own, for drivers on the hot path:
   * exactly one of `done(len)` and `failed(error)` is called later (never
   * from within this call, never from within the other's). A request
   * refused at once (bad input, a closed or broken queue, `{ wait: false }`
   * on a full ring, an aborted signal) throws here instead, after
   * SubmitOptions.reclaim ran.
   */
  enqueue(
    request: QueueRequest,
    done: (len: number) => void,
    failed: (error: unknown) => void,
    options: SubmitOptions = {},
  ): void {
    try {
      this.checkUsable();
      const count = checkRequest(request, this.limits, this.memory);
      const { signal, timeoutMs, reclaim } = options;
      checkSubmitOptions(timeoutMs, reclaim);
      if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
      const pending = this.pendings.take(done, failed);
      pending.reclaim = reclaim;
      if (this.waiters.length === 0 && !this.resetWanted && this.engine.hasRoom(count)) {
        if (timeoutMs !== undefined) this.deadlines.add(pending, timeoutMs);
        this.placeRequest(request, count, pending);
        if (signal) this.abandonment.watchAbort(pending, signal);
        return;
      }
      if (options.wait === false) {
        throw new QueueFullError(
          `queue ${this.index}: ${this.engine.descriptorsFor(count)} descriptor(s) needed, ${this.free} free`,
        );
      }
      // Placed later: a copy, so that the caller changing its objects meanwhile cannot change what was validated.
      const waiter: Waiter = { request: snapshotRequest(request), count, pending };
      if (timeoutMs !== undefined) this.deadlines.add(pending, timeoutMs);
      this.waiters.push(waiter);
      if (signal) this.abandonment.watchAbort(pending, signal, waiter);
      // Orphans now hold room someone waits for: they keep the line busy and the polling loop going.
      if (this.waiters.length === 1 && this.inFlightRequests.orphans > 0) {
        this.updateBusy();
        this.poller?.submitted();
      }
    } catch (error) {
      // Refused (or aborted) before the device saw anything: the buffers are the caller's again.
      const reclaim = options?.reclaim;
      if (typeof reclaim === 'function') reclaim();
      throw error;
    }
  }

  /** Publishes what was submitted and notifies the device now (normally done in a microtask). */
  flush(): void {
    this.batching++;
    try {
      // Again while a spin's completions placed new requests: a loop, not a microtask each. It ends when a spin
      // finds nothing or is not tried (the poller's burst budget spent): nothing else completes requests in here.
      do {
        this.flushScheduled = false;
        this.flushOwed = false;
        if (this.state.unusable) return;
        const fresh = this.engine.unpublished > 0;
        if (fresh) this.poller?.beforePublish();
        const notify = this.engine.publish();
        if (notify >= 0) this.notifyDevice(notify);
        // 'poll' and 'hybrid': a device that answers quickly is found by a spin, within this turn.
        if (fresh && !this.state.unusable) this.poller?.published();
      } while (this.flushOwed);
    } finally {
      this.batching--;
    }
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
    const refusal = this.state.refusal();
    if (refusal) throw refusal;
    if (!this.transport) throw notAttached(this.index);
  }

  private placeRequest(request: QueueRequest, count: number, pending: Pending): void {
    this.inFlightRequests.add(this.engine.place(request, count), pending, request);
    this.stats.submitted++;
    if (!this.busy) this.updateBusy();
    this.poller?.submitted();
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      if (this.batching > 0) {
        this.flushOwed = true;
        return;
      }
      // A resolved promise's then(), not queueMicrotask(): Node wraps each queueMicrotask callback in an
      // AsyncResource and a bound function, several times the cost per request.
      RESOLVED.then(this.flushTask);
    }
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

  /**
   * Tells the transport whether someone waits for this queue (the interrupt
   * line keeps the process alive only then).
   */
  protected updateBusy(): void {
    const busy = this.holdsProcess && this.awaited > 0;
    if (busy === this.busy) return;
    this.busy = busy;
    this.transport?.setBusy(this.index, busy);
  }

  // ---- Completing ----

  /** InterruptStatus bit 0 (QueueEndpoint). */
  onUsedBuffer(): number {
    return this.consume();
  }

  /** Consumes what the device has used, without waiting for an interrupt. Returns the number consumed. */
  poll(): number {
    return this.consume();
  }

  protected consume(): number {
    if (this.state.unusable) return 0;
    this.batching++;
    let consumed: number;
    try {
      consumed = this.engine.reap();
      const violation = this.engine.violation;
      if (violation) this.breakQueue(violation.reason, violation.message);
      else if (consumed > 0) this.drainWaiters();
    } finally {
      // What the completions placed goes out now, as the microtask would have sent it right after this turn.
      if (--this.batching === 0 && this.flushOwed) this.flushTask();
    }
    return consumed;
  }

  /**
   * A used entry the engine validated (onUsed): settles request `id` with
   * `len`; false when a callback made the queue unusable.
   */
  protected complete(id: number, len: number): boolean {
    const pending = this.inFlightRequests.settle(id);
    this.stats.completed++;
    if (!pending.orphaned) {
      if (pending.deadline !== Infinity) this.deadlines.remove(pending);
      pending.cleanup?.();
      try {
        pending.resolve(len);
      } catch (error) {
        // An enqueue() callback that throws must not stop the reap halfway: it surfaces as uncaught, later.
        queueMicrotask(() => {
          throw error;
        });
      }
      // Settled and answered, referred to by nothing: the next request may use it.
      this.pendings.put(pending);
    }
    if (this.busy && this.awaited === 0) this.updateBusy();
    if (this.resetWanted && !this.quietCheckQueued) {
      // Not inside the reap: the ring is read on after this entry.
      this.quietCheckQueued = true;
      queueMicrotask(this.quietCheck);
    }
    // The callback may have closed the queue, and its owner freed the ring: the engine reads no further.
    return !this.state.unusable;
  }

  // ---- Recovery from a stuck request (VirtqueueOptions.recovery) ----

  /**
   * A request the device has timed out (RequestAbandonment.expire): its
   * descriptors stay the device's. With recovery and a transport that can
   * reset one queue, new requests wait while the others in flight finish,
   * then the queue is reset (§2.6.1), which gives the timed-out requests'
   * memory back, and the waiting requests go out on the new ring.
   */
  protected timedOut(): void {
    if (this.recovery !== 'reset-broken-or-stuck' || !this.transport?.queueResettable) return;
    this.resetWanted = true;
    this.resetIfQuiet();
  }

  private resetIfQuiet(): void {
    const { outstanding, orphans } = this.inFlightRequests;
    if (!this.resetWanted || outstanding > orphans) return;
    this.resetWanted = false;
    // The late requests came back meanwhile, or the queue failed otherwise: nothing to reset.
    if (orphans === 0 || this.state.unusable || !this.transport?.queueResettable) {
      this.drainWaiters();
      return;
    }
    try {
      this.reset(
        new CanceledError(`queue ${this.index} was reset: the device kept ${orphans} request(s) past their deadline`),
      );
    } catch {
      // The queue reset failed: reset() failed the device as a whole, which its error listeners hear of.
    }
  }

  protected drainWaiters(): void {
    if (this.waiters.length === 0) return;
    this.waiters.drain(this.fits, this.placeWaiter);
    // The last waiter placed: orphans no longer hold room someone waits for.
    if (this.waiters.length === 0) this.updateBusy();
  }

  // ---- Used-buffer notifications (§2.7.7, §2.7.10, §2.8.10) ----

  /** Asks the device not to interrupt for this queue (a hint; poll() to consume). */
  disableInterrupts(): void {
    // After close the ring memory is back in the allocator: never write it.
    if (this.state.closed) return;
    this.engine.setNotifications(false);
  }

  /** Asks for interrupts again and consumes whatever was used meanwhile. */
  enableInterrupts(): number {
    if (this.state.closed) return 0;
    this.engine.setNotifications(true);
    this.barriers.mb();
    return this.consume();
  }
}
