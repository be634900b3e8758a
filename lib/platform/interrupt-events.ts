import type { InterruptEvent, InterruptListener, InterruptSource } from './interrupt-source';

/** What interruptEvents() needs of a source beyond its public interface. */
export interface EventSourceHooks {
  source: InterruptSource;
  /** Called (and removed) when the source closes. */
  onClose: Set<() => void>;
  /** The listener the source holds now, so only our own is removed. */
  currentListener(): InterruptListener | undefined;
}

/**
 * InterruptSource.events() for any source built on listen(): interrupts
 * not yet taken by the consumer are coalesced into one pending event whose
 * `count` grows (a slow consumer builds no queue). Ends when the iterator
 * is returned or the source closes; rejects once the line fails.
 */
export function interruptEvents({
  source,
  onClose,
  currentListener,
}: EventSourceHooks): AsyncIterableIterator<InterruptEvent> {
  let pending: InterruptEvent | undefined;
  const waiting: { resolve: (r: IteratorResult<InterruptEvent>) => void; reject: (e: unknown) => void }[] = [];
  let failure: Error | undefined;
  let finished = false;
  const onInterrupt: InterruptListener = (event) => {
    const w = waiting.shift();
    if (w) w.resolve({ value: event, done: false });
    else if (pending) pending.count += event.count;
    else pending = { count: event.count };
  };
  const finish = (): void => {
    if (finished) return;
    finished = true;
    onClose.delete(finish);
    if (currentListener() === onInterrupt) source.unlisten();
    for (const w of waiting.splice(0)) w.resolve({ value: undefined, done: true });
  };
  source.listen(onInterrupt, (error) => {
    failure = error;
    finished = true;
    onClose.delete(finish);
    for (const w of waiting.splice(0)) w.reject(error);
  });
  // Registered only once listening worked, so a failed listen() leaves nothing behind.
  onClose.add(finish);
  const iterator: AsyncIterableIterator<InterruptEvent> = {
    next: () => {
      const event = pending;
      if (event) {
        pending = undefined;
        return Promise.resolve({ value: event, done: false });
      }
      if (failure) return Promise.reject(failure);
      if (finished || source.closed) return Promise.resolve({ value: undefined, done: true });
      return new Promise((resolve, reject) => waiting.push({ resolve, reject }));
    },
    return: () => {
      finish();
      return Promise.resolve({ value: undefined, done: true });
    },
    [Symbol.asyncIterator]: () => iterator,
  };
  return iterator;
}
