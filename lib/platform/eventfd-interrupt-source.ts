import { ClosedError } from '../errors';
import { native } from './addon';
import { EpollLoop } from './epoll-loop';
import { FdInterruptSource } from './fd-interrupt-source';

/**
 * An interrupt line made of an eventfd: the software device raises it,
 * the driver side receives it through the same epoll path as a UIO fd.
 * disable() masks by not watching; interrupts raised meanwhile stay counted
 * in the eventfd and arrive on enable(). After close(), enable(), disable()
 * and raise() are ClosedErrors.
 */
export class EventfdInterruptSource extends FdInterruptSource {
  private masked = false;
  private readonly eventfd: number;

  constructor(label = 'eventfd interrupt', loop: EpollLoop = EpollLoop.default()) {
    super(label, loop);
    this.eventfd = native.eventfdCreate(0, false);
  }

  /** The device side: signal `count` interrupts. */
  raise(count = 1): void {
    if (this.isClosed) throw new ClosedError(`${this.label} is closed`);
    native.eventfdWrite(this.eventfd, count);
  }

  protected get fd(): number {
    return this.eventfd;
  }

  protected consume(): number | null {
    const value = native.eventfdRead(this.eventfd);
    return value === null ? null : Number(value);
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
