import { native, type EpollEvent, type NativeEpollSet } from './addon';

export type ReadyHandler = (events: number) => void;
export type EpollSetFactory = (callback: (events: EpollEvent[]) => void) => NativeEpollSet;

/**
 * One epoll set per thread, dispatching ready fds to their handlers. It
 * keeps the process alive only while some fd is watched (and not unref'd).
 */
export class EpollLoop {
  private static shared?: EpollLoop;
  private readonly handlers = new Map<number, ReadyHandler>();
  private set?: NativeEpollSet;

  constructor(private readonly factory: EpollSetFactory = (cb) => new native.EpollSet(cb)) {}

  /** The loop of this thread (each worker has its own module instance). */
  static default(): EpollLoop {
    EpollLoop.shared ??= new EpollLoop();
    return EpollLoop.shared;
  }

  get size(): number {
    return this.handlers.size;
  }

  watch(fd: number, events: number, handler: ReadyHandler): void {
    if (this.handlers.has(fd)) throw new RangeError(`fd ${fd} is already watched`);
    this.set ??= this.factory((batch) => this.dispatch(batch));
    this.set.add(fd, events);
    this.handlers.set(fd, handler);
  }

  unwatch(fd: number): void {
    if (!this.handlers.delete(fd)) return;
    this.set?.remove(fd);
  }

  /** Let the process exit even while fds are watched (like timer.unref()). */
  unref(): void {
    this.set?.unref();
  }

  ref(): void {
    this.set?.ref();
  }

  close(): void {
    this.handlers.clear();
    this.set?.close();
    this.set = undefined;
    if (EpollLoop.shared === this) EpollLoop.shared = undefined;
  }

  private dispatch(batch: EpollEvent[]): void {
    for (const { fd, events } of batch) {
      // A handler earlier in the batch may have unwatched this fd.
      this.handlers.get(fd)?.(events);
    }
  }
}
