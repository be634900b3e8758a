import { ClosedError } from '../errors';
import { native } from './addon';
import { EpollLoop } from './epoll-loop';
import { FdInterruptSource } from './fd-interrupt-source';

/**
 * An interrupt line made of an eventfd: the software device raises it,
 * the driver side receives it through the same epoll path as a UIO fd.
 * disable() masks by not watching; interrupts raised meanwhile stay counted
 * and arrive on enable(). After close(), enable(), disable() and raise()
 * are ClosedErrors.
 *
 * Watched edge-triggered, the counter never read (one syscall less per
 * interrupt): an eventfd wakes its waiters on every write. raise() is the
 * only writer, so the interrupts not yet delivered are counted here; a
 * wake-up with none (the fd, never read, is still readable when it is
 * watched again) is not an interrupt. The kernel's counter grows by one
 * per interrupt and cannot reach its 2^64 - 2 limit.
 */
export class EventfdInterruptSource extends FdInterruptSource {
  protected override readonly edgeTriggered = true;
  private masked = false;
  private readonly eventfd: number;
  /** Raised and not yet delivered. */
  private undelivered = 0;

  constructor(label = 'eventfd interrupt', loop: EpollLoop = EpollLoop.default()) {
    super(label, loop);
    this.eventfd = native.eventfdCreate(0, false);
  }

  /** The device side: signal `count` interrupts. */
  raise(count = 1): void {
    if (this.isClosed) throw new ClosedError(`${this.label} is closed`);
    native.eventfdWrite(this.eventfd, count);
    this.undelivered += count;
  }

  protected override edgeCount(): number | null {
    const count = this.undelivered;
    this.undelivered = 0;
    return count > 0 ? count : null;
  }

  protected get fd(): number {
    return this.eventfd;
  }

  /** Only after an error flag (an eventfd raises none): the counter is drained, the count is ours. */
  protected consume(): number | null {
    native.eventfdRead(this.eventfd);
    return this.edgeCount();
  }

  protected rearm(): void {}

  protected override wantsWatch(): boolean {
    return !this.masked;
  }

  enable(): void {
    if (this.isClosed) throw new ClosedError(`${this.label} is closed`);
    this.masked = false;
    this.updateWatch();
  }

  disable(): void {
    if (this.isClosed) throw new ClosedError(`${this.label} is closed`);
    this.masked = true;
    this.updateWatch();
  }

  protected release(): void {
    native.closeFd(this.eventfd);
  }
}
