import '../disposable';
import { native, type NativePollSet } from './addon';
import { invalidArgValue } from '../errors';

export type ReadyHandler = (events: number) => void;
/** What the loop watches fds with: the addon's PollSet (an fd per libuv poll handle), or a test's fake. */
export type PollSetFactory = (onReady: (fd: number, events: number) => void) => NativePollSet;

/**
 * The fds of one thread watched on its event loop, dispatching ready fds to
 * their handlers. It keeps the process alive only while some watched fd is
 * marked keep-alive (the default) and the loop as a whole is not unref'd.
 * Each fd is polled by libuv directly (one epoll wait per wake-up, no
 * nested set); see NativePollSet for what EPOLLET means here.
 */
export class EpollLoop {
  private static shared?: EpollLoop;
  /** Per fd: its handler and whether it keeps the process alive (a flag, not a Set: toggled per request at QD1). */
  private readonly watches = new Map<number, { handler: ReadyHandler; keepAlive: boolean }>();
  private keepAlives = 0;
  private set?: NativePollSet;
  private unrefd = false;
  private refd?: boolean;

  constructor(private readonly factory: PollSetFactory = (onReady) => new native.PollSet(onReady)) {}

  /** The loop of this thread (each worker has its own module instance). */
  static default(): EpollLoop {
    EpollLoop.shared ??= new EpollLoop();
    return EpollLoop.shared;
  }

  get size(): number {
    return this.watches.size;
  }

  /** Watched fds that keep the process alive (leak checks: none once every driver is idle or closed). */
  get keepAliveCount(): number {
    return this.keepAlives;
  }

  watch(fd: number, events: number, handler: ReadyHandler, options: { keepAlive?: boolean } = {}): void {
    if (this.watches.has(fd)) throw invalidArgValue(`fd ${fd} is already watched`, 'range');
    this.set ??= this.factory((fd, ready) => this.watches.get(fd)?.handler(ready));
    this.set.add(fd, events);
    const keepAlive = options.keepAlive !== false;
    this.watches.set(fd, { handler, keepAlive });
    if (keepAlive) this.keepAlives++;
    this.updateRef();
  }

  unwatch(fd: number): void {
    const watch = this.watches.get(fd);
    if (!watch) return;
    this.watches.delete(fd);
    if (watch.keepAlive) this.keepAlives--;
    this.set?.remove(fd);
    this.updateRef();
  }

  /** Whether a watched fd keeps the process alive (like timer.ref()/unref() for one fd). */
  setKeepAlive(fd: number, keepAlive: boolean): void {
    const watch = this.watches.get(fd);
    if (!watch || watch.keepAlive === keepAlive) return;
    watch.keepAlive = keepAlive;
    this.keepAlives += keepAlive ? 1 : -1;
    this.updateRef();
  }

  /** Let the process exit even while fds are watched (like timer.unref()). */
  unref(): void {
    this.unrefd = true;
    this.updateRef();
  }

  ref(): void {
    this.unrefd = false;
    this.updateRef();
  }

  /** close(), for `using` (explicit resource management): disposed at the end of the enclosing block. */
  [Symbol.dispose](): void {
    this.close();
  }

  close(): void {
    this.watches.clear();
    this.keepAlives = 0;
    this.set?.close();
    this.set = undefined;
    this.refd = undefined;
    if (EpollLoop.shared === this) EpollLoop.shared = undefined;
  }

  private updateRef(): void {
    if (!this.set) return;
    const want = !this.unrefd && this.keepAlives > 0;
    if (want === this.refd) return;
    this.refd = want;
    if (want) this.set.ref();
    else this.set.unref();
  }
}
