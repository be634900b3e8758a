import { Readable } from 'node:stream';
import { AbortError } from '../errors';

/**
 * A fixed number of numbered slots handed out FIFO; acquire() waits for
 * one, and an AbortSignal stops the wait.
 */
export class SlotPool {
  private readonly free: number[];
  private readonly waiters: { resolve: (slot: number) => void; reject: (e: unknown) => void; cleanup?: () => void }[] =
    [];
  private failure?: Error;

  constructor(count: number) {
    this.free = Array.from({ length: count }, (_, i) => count - 1 - i);
  }

  /** Whether tryAcquire() would give a slot now. */
  hasFree(): boolean {
    return !this.failure && this.waiters.length === 0 && this.free.length > 0;
  }

  /** A free slot now, or -1 (none free, others waiting first, or failed). */
  tryAcquire(): number {
    return this.hasFree() ? this.free.pop()! : -1;
  }

  acquire(signal?: AbortSignal): Promise<number> {
    if (this.failure) return Promise.reject(this.failure);
    if (signal?.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
    if (this.waiters.length === 0 && this.free.length > 0) return Promise.resolve(this.free.pop()!);
    return new Promise((resolve, reject) => {
      const waiter: (typeof this.waiters)[number] = { resolve, reject };
      if (signal) {
        const onAbort = (): void => {
          const at = this.waiters.indexOf(waiter);
          if (at >= 0) this.waiters.splice(at, 1);
          reject(new AbortError(undefined, { cause: signal.reason }));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        waiter.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      this.waiters.push(waiter);
    });
  }

  release(slot: number): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      waiter.cleanup?.();
      waiter.resolve(slot);
    } else {
      this.free.push(slot);
    }
  }

  /** Rejects every waiter and all later acquires with `error`. */
  fail(error: Error): void {
    this.failure = error;
    for (const waiter of this.waiters.splice(0)) {
      waiter.cleanup?.();
      waiter.reject(error);
    }
  }
}

/**
 * A Readable whose every read() starts one request: `next(size, signal)`
 * returns its promise, or null at the end of the data. Destroying the
 * stream aborts the request in flight through `signal`.
 */
export function requestStream(
  highWaterMark: number,
  next: (size: number, signal: AbortSignal) => Promise<Buffer> | null,
): Readable {
  const controller = new AbortController();
  const stream: Readable = new Readable({
    highWaterMark,
    read: (size) => {
      const request = next(size, controller.signal);
      if (request === null) {
        stream.push(null);
        return;
      }
      request.then(
        (data) => stream.push(data),
        (error: unknown) => stream.destroy(error as Error),
      );
    },
    destroy: (error, callback) => {
      controller.abort(error ?? undefined);
      callback(error);
    },
  });
  return stream;
}

/** Settles like `promise`, or rejects with AbortError as soon as `signal` fires. */
export function abortable<T>(promise: Promise<T>, signal?: AbortSignal): Promise<T> {
  if (!signal) return promise;
  if (signal.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }));
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new AbortError(undefined, { cause: signal.reason }));
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(error);
      },
    );
  });
}
