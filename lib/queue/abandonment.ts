import { AbortError, TimeoutError } from '../errors';
import type { InFlightRequests } from './in-flight';
import type { Pending, Waiter, WaitingRoom } from './pending-request';
import type { RequestDeadlines } from './request-deadlines';

/** What RequestAbandonment needs of its queue. */
export interface AbandonmentHost {
  readonly index: number;
  readonly waiters: WaitingRoom;
  readonly inFlight: InFlightRequests;
  readonly deadlines: RequestDeadlines;
  /** Re-derives whether the queue holds the process (someone waits for it). */
  updateBusy(): void;
  /** Places the waiters that fit now. */
  drainWaiters(): void;
  /** Takes what the device used, so that a late interrupt does not turn into a timeout. */
  consume(): void;
  /** A request the device has was given up on at its deadline (it may be stuck in the device). */
  timedOut(): void;
}

/**
 * Requests whose caller stopped waiting — an AbortSignal, a deadline, or a
 * queue that failed or closed — under the ownership rule: a waiter is
 * dropped and its buffers are the caller's again at once; a request the
 * device has becomes an orphan, whose descriptors and buffers stay with
 * the device until it uses them or a reset completes, and whose result is
 * discarded.
 */
export class RequestAbandonment {
  constructor(private readonly queue: AbandonmentHost) {}

  /** Gives `pending` up with AbortError when `signal` aborts (until it settles: pending.cleanup). */
  watchAbort(pending: Pending, signal: AbortSignal, waiter?: Waiter): void {
    const onAbort = (): void => {
      this.giveUp(pending, new AbortError(undefined, { cause: signal.reason }), waiter);
      this.queue.drainWaiters();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    pending.cleanup = () => signal.removeEventListener('abort', onAbort);
  }

  /** The caller no longer waits for `pending` (still waiting for room as `waiter`, or in flight). */
  giveUp(pending: Pending, error: Error, waiter?: Waiter): void {
    const { waiters, inFlight: inFlightRequests, deadlines } = this.queue;
    // A waiter that was placed meanwhile is in flight: orphan it instead.
    const inFlight = !(waiter && waiters.remove(waiter));
    if (!inFlight && waiters.length === 0) this.queue.updateBusy();
    if (pending.deadline !== Infinity) deadlines.remove(pending);
    pending.cleanup = undefined;
    if (inFlight) {
      inFlightRequests.orphan(pending);
      this.queue.updateBusy();
    } else pending.orphaned = true;
    pending.reject(error);
    // Never given to the device: its buffers are the caller's again at once.
    if (!inFlight) inFlightRequests.giveBack(pending);
  }

  /** Rejects every request past its deadline with TimeoutError; re-arms for the next deadline. */
  expire(): void {
    const { index, waiters, inFlight, deadlines } = this.queue;
    this.queue.consume();
    let inDevice = false;
    const late = (pending: Pending, waiter?: Waiter): void => {
      inDevice ||= waiter === undefined;
      this.giveUp(
        pending,
        new TimeoutError(
          `queue ${index}: the device did not complete the request within ${pending.timeoutMs} ms`,
          pending.timeoutMs,
        ),
        waiter,
      );
    };
    deadlines.sweep(waiters.list(), inFlight, late);
    this.queue.drainWaiters();
    if (inDevice) this.queue.timedOut();
  }

  /** Rejects everything; requests the device had are retained (and held) until the queue's reclaimAll(). */
  rejectAll(makeError: () => Error): void {
    const { waiters, inFlight, deadlines } = this.queue;
    deadlines.clear();
    const waiting = waiters.takeAll();
    // Kept (and held) until the device is known to have let go.
    const inDevice = inFlight.takeAll();
    this.queue.updateBusy();
    const reject = (p: Pending): void => {
      p.orphaned = true;
      p.cleanup?.();
      p.reject(makeError());
    };
    // An orphan's caller was answered already; a waiter's buffers never reached the device.
    for (const p of inDevice) if (!p.orphaned) reject(p);
    for (const { pending } of waiting) {
      reject(pending);
      inFlight.giveBack(pending);
    }
  }
}
