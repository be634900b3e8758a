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
    readonly resolve: (len: number) => void,
    readonly reject: (error: unknown) => void,
  ) {}
}

/** A request waiting for room in the ring (FIFO). */
export interface Waiter {
  request: QueueRequest;
  count: number;
  pending: Pending;
}
