import '../disposable';
import { native, type NativePollSet } from './addon';
import { invalidArgValue } from '../errors';

export type ReadyHandler = (events: number) => void;
/** What the loop watches fds with: the addon's PollSet (an fd per libuv poll handle), or a test's fake. */
export type EpollSetFactory = (onReady: (fd: number, events: number) => void) => NativePollSet;

/**
 * The fds of one thread watched on its event loop, dispatching ready fds to
 * their handlers. It keeps the process alive only while some watched fd is
 * marked keep-alive (the default) and the loop as a whole is not unref'd.
 * Each fd is polled by libuv directly (one epoll wait per wake-up, no
 * nested set); see NativePollSet for what EPOLLET means here.
 */
export class EpollLoop {
  private static shared?: EpollLoop;
  private readonly handlers = new Map<number, ReadyHandler>();
  private readonly idleFds = new Set<number>();
  private set?: NativePollSet;
  private unrefd = false;
  private refd?: boolean;

  constructor(private readonly factory: EpollSetFactory = (onReady) => new native.PollSet(onReady)) {}

  /** The loop of this thread (each worker has its own module instance). */
  static default(): EpollLoop {
    EpollLoop.shared ??= new EpollLoop();
    return EpollLoop.shared;
  }

  get size(): number {
    return this.handlers.size;
  }

  /** Watched fds that keep the process alive (leak checks: none once every driver is idle or closed). */
  get keepAliveCount(): number {
    return this.handlers.size - this.idleFds.size;
  }

  watch(fd: number, events: number, handler: ReadyHandler, options: { keepAlive?: boolean } = {}): void {
    if (this.handlers.has(fd)) throw invalidArgValue(`fd ${fd} is already watched`, 'range');
    this.set ??= this.factory((fd, ready) => this.handlers.get(fd)?.(ready));
    this.set.add(fd, events);
    this.handlers.set(fd, handler);
    if (options.keepAlive === false) this.idleFds.add(fd);
    this.updateRef();
  }

  unwatch(fd: number): void {
    if (!this.handlers.delete(fd)) return;
    this.idleFds.delete(fd);
    this.set?.remove(fd);
    this.updateRef();
  }

  /** Whether a watched fd keeps the process alive (like timer.ref()/unref() for one fd). */
  setKeepAlive(fd: number, keepAlive: boolean): void {
    if (!this.handlers.has(fd)) return;
    if (keepAlive) this.idleFds.delete(fd);
    else this.idleFds.add(fd);
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
    this.handlers.clear();
    this.idleFds.clear();
    this.set?.close();
    this.set = undefined;
    this.refd = undefined;
    if (EpollLoop.shared === this) EpollLoop.shared = undefined;
  }

  private updateRef(): void {
    if (!this.set) return;
    const want = !this.unrefd && this.handlers.size > this.idleFds.size;
    if (want === this.refd) return;
    this.refd = want;
    if (want) this.set.ref();
    else this.set.unref();
  }
}
