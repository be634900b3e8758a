import type { QueueRequest } from './queue-types';

/** One submitted request, from submit() until it is settled and its buffers are its owner's again. */
export class Pending {
  /** The caller was answered early (timeout, abort, detach): the result is discarded. */
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
  /** Removes the AbortSignal listener. */
  cleanup?: () => void;
  constructor(
    public resolve: (len: number) => void,
    public reject: (error: unknown) => void,
  ) {}

  /** Makes a settled Pending (resolved, nothing left referring to it) fit to stand for a new request. */
  reuse(resolve: (len: number) => void, reject: (error: unknown) => void): void {
    this.resolve = resolve;
    this.reject = reject;
    this.orphaned = false;
    this.id = -1;
    this.held = false;
    this.reclaim = undefined;
    this.deadline = Infinity;
    this.timeoutMs = 0;
    this.cleanup = undefined;
  }
}

function settled(): void {}

/**
 * Pendings of requests that resolved, kept for the next requests (a
 * request then allocates no bookkeeping of its own). Only a Pending no
 * deadline, abort listener, waiter or in-flight table refers to any more
 * is put back: one whose request completed normally.
 */
export class PendingPool {
  private readonly spare: Pending[] = [];

  constructor(private readonly limit: number) {}

  take(resolve: (len: number) => void, reject: (error: unknown) => void): Pending {
    const pending = this.spare.pop();
    if (pending === undefined) return new Pending(resolve, reject);
    pending.reuse(resolve, reject);
    return pending;
  }

  /** `pending`'s request completed and its caller was answered. */
  put(pending: Pending): void {
    if (this.spare.length >= this.limit) return;
    // Its callbacks (and what they hold) are not kept alive by the pool.
    pending.resolve = settled;
    pending.reject = settled;
    pending.reclaim = undefined;
    pending.cleanup = undefined;
    this.spare.push(pending);
  }
}

/** A request waiting for room in the ring (FIFO). */
export interface Waiter {
  request: QueueRequest;
  count: number;
  pending: Pending;
}

/** Requests waiting for room in the ring, first come first placed (FIFO). */
export class WaitingRoom {
  private readonly line: Waiter[] = [];

  get length(): number {
    return this.line.length;
  }

  push(waiter: Waiter): void {
    this.line.push(waiter);
  }

  /** Takes `waiter` out of the line; false when it is no longer there (placed meanwhile). */
  remove(waiter: Waiter): boolean {
    const at = this.line.indexOf(waiter);
    if (at < 0) return false;
    this.line.splice(at, 1);
    return true;
  }

  /** Places waiters from the front while `fits` says the first one fits; stops at the first that does not. */
  drain(fits: (count: number) => boolean, place: (waiter: Waiter) => void): void {
    while (this.line.length > 0 && fits(this.line[0].count)) place(this.line.shift()!);
  }

  /** Empties the line; returns who was in it. */
  takeAll(): Waiter[] {
    return this.line.splice(0);
  }

  /** A copy of the line (for a sweep that may change it). */
  list(): Waiter[] {
    return [...this.line];
  }
}
