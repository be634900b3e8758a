import type { InputEvent } from '../spec';

interface Waiter {
  resolve: (result: IteratorResult<InputEvent>) => void;
  reject: (error: unknown) => void;
}

/** One open events() iterator: its own bounded backlog and the next() calls waiting on it. */
class Subscriber {
  readonly backlog: InputEvent[] = [];
  readonly waiters: Waiter[] = [];
}

/**
 * The async iterators of VirtioInput.events(): each open iterator keeps
 * the events it has not taken yet, at most `limit` of them; past that the
 * oldest is dropped and counted (an input device does not wait for a slow
 * reader, as Linux's evdev does not). An iterator ends (done) once the
 * driver is closed and its backlog is taken; a failure rejects its waiting
 * and later next() calls.
 */
export class InputEventSubscribers {
  private readonly open = new Set<Subscriber>();
  private ended = false;
  private failure?: Error;
  /** Events dropped from a full iterator backlog. */
  overruns = 0;

  constructor(private readonly limit: number) {}

  /** A new iterator over the events delivered from now on. */
  iterator(): AsyncIterableIterator<InputEvent> {
    const subscriber = new Subscriber();
    if (!this.ended) this.open.add(subscriber);
    const finish = (): Promise<IteratorResult<InputEvent>> => {
      this.open.delete(subscriber);
      subscriber.backlog.length = 0;
      for (const waiter of subscriber.waiters.splice(0)) waiter.resolve({ value: undefined, done: true });
      return Promise.resolve({ value: undefined, done: true });
    };
    const iterator: AsyncIterableIterator<InputEvent> = {
      next: () => {
        const event = subscriber.backlog.shift();
        if (event) return Promise.resolve({ value: event, done: false });
        if (this.failure) return Promise.reject(this.failure);
        if (this.ended || !this.open.has(subscriber)) return Promise.resolve({ value: undefined, done: true });
        return new Promise((resolve, reject) => subscriber.waiters.push({ resolve, reject }));
      },
      return: finish,
      [Symbol.asyncIterator]: () => iterator,
    };
    return iterator;
  }

  deliver(event: InputEvent): void {
    for (const subscriber of this.open) {
      const waiter = subscriber.waiters.shift();
      if (waiter) {
        waiter.resolve({ value: { ...event }, done: false });
        continue;
      }
      subscriber.backlog.push({ ...event });
      if (subscriber.backlog.length > this.limit) {
        subscriber.backlog.shift();
        this.overruns++;
      }
    }
  }

  /** The driver closed: waiting next() calls end; backlogs are still handed out, then done. */
  end(): void {
    this.ended = true;
    for (const subscriber of this.open) {
      for (const waiter of subscriber.waiters.splice(0)) waiter.resolve({ value: undefined, done: true });
    }
    this.open.clear();
  }

  /** The event queue failed: waiting and later next() calls reject with `error` (after the backlog). */
  fail(error: Error): void {
    if (this.failure || this.ended) return;
    this.failure = error;
    for (const subscriber of this.open) {
      for (const waiter of subscriber.waiters.splice(0)) waiter.reject(error);
    }
  }
}
