import { performance } from 'node:perf_hooks';
import type { InFlightRequests } from './in-flight';
import type { Pending, Waiter } from './pending-request';
import { INT31_MAX } from '../util/int31';

/**
 * The time limits of a queue's requests (SubmitOptions.timeoutMs): one
 * timer for the earliest deadline, re-armed by the queue after each
 * expiry. The timer is always unref'd: while a request is awaited the
 * queue's busy interrupt line (or its polling loop) keeps the process
 * alive, so the timer need not, and a request costs no ref/unref pair
 * (two native calls) on its way in and out.
 */
export class RequestDeadlines {
  /** Requests (placed or waiting) with a deadline. */
  private timed = 0;
  private timer?: NodeJS.Timeout;
  private armedFor = Infinity;

  /** `onDue` runs when the earliest deadline may have passed; it settles what expired and calls arm() for the next. */
  constructor(private readonly onDue: () => void) {}

  /** Whether any request has a deadline. */
  get active(): boolean {
    return this.timed > 0;
  }

  add(pending: Pending, timeoutMs: number): void {
    pending.timeoutMs = timeoutMs;
    pending.deadline = performance.now() + timeoutMs;
    this.timed++;
    if (pending.deadline < this.armedFor) this.arm(pending.deadline);
  }

  /** Counts `pending` again with the deadline it has (after clear(), for a request that stays). */
  keep(pending: Pending): void {
    this.timed++;
    if (pending.deadline < this.armedFor) this.arm(pending.deadline);
  }

  remove(pending: Pending): void {
    pending.deadline = Infinity;
    // With nothing timed the timer may still fire once, and find nothing.
    this.timed--;
  }

  /** Fires at `deadline` (performance.now() time). */
  arm(deadline: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.armedFor = deadline;
    // Clamped: rounding can make the largest timeoutMs (2^31 - 1) one more than setTimeout takes.
    this.timer = setTimeout(
      () => this.fire(),
      Math.min(INT31_MAX, Math.max(1, Math.ceil(deadline - performance.now()))),
    );
    this.timer.unref();
  }

  /**
   * Calls `late` for every request (waiting, or in flight and not yet an
   * orphan) whose deadline has passed; arms the timer for the earliest left.
   */
  sweep(
    waiting: readonly Waiter[],
    inFlight: InFlightRequests,
    late: (pending: Pending, waiter?: Waiter) => void,
  ): void {
    const now = performance.now();
    let next = Infinity;
    const check = (pending: Pending, waiter?: Waiter): void => {
      if (pending.orphaned || pending.deadline === Infinity) return;
      if (pending.deadline <= now) late(pending, waiter);
      else next = Math.min(next, pending.deadline);
    };
    for (const waiter of waiting) check(waiter.pending, waiter);
    inFlight.forEach((pending) => check(pending));
    if (next !== Infinity) this.arm(next);
  }

  /** Forgets every deadline (the requests were all settled otherwise). */
  clear(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.armedFor = Infinity;
    this.timed = 0;
  }

  /** Whether the timer (if any) keeps the process alive. */
  get holdsProcess(): boolean {
    return this.timer?.hasRef() ?? false;
  }

  private fire(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    if (this.timed > 0) this.onDue();
  }
}
