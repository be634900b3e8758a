import '../disposable';
import { ClosedError, DeviceGoneError, invalidArgType, TransportError } from '../errors';
import { native } from './addon';
import { EpollLoop } from './epoll-loop';
import { interruptEvents } from './interrupt-events';
import type { InterruptErrorListener, InterruptEvent, InterruptListener, InterruptSource } from './interrupt-source';

const { EPOLLIN, EPOLLERR, EPOLLHUP, EPOLLET } = native.constants;

/**
 * What the UIO and eventfd sources share: watching an fd on the epoll
 * loop, turning readiness into events or failures, re-arming after the
 * listener, and async iteration.
 */
export abstract class FdInterruptSource implements InterruptSource {
  private onInterrupt?: InterruptListener;
  private onError?: InterruptErrorListener;
  private watched = false;
  private keepAlive = true;
  private readonly onClose = new Set<() => void>();
  protected isClosed = false;
  /** An interrupt is being delivered (the listener runs). */
  private delivering = false;
  /** acknowledged() re-armed the line during this delivery (or tried: the error waits for the listener's return). */
  private rearmedEarly = false;
  private rearmError: unknown;

  protected constructor(
    readonly label: string,
    protected readonly loop: EpollLoop,
  ) {}

  /** The fd to watch for readability. */
  protected abstract get fd(): number;
  /** Reads what is pending: interrupts since the last call, or null if none (spurious wake-up). */
  protected abstract consume(): number | null;
  /**
   * Watched edge-triggered (EPOLLET): once the loop reports a wake-up with
   * EPOLLET (from the second on, see NativePollSet), each wake-up is one
   * event (count 1) and consume() is not called, one syscall less per
   * interrupt — unless the wake-up carries EPOLLERR or EPOLLHUP. Only for an
   * fd that wakes its waiters on every new event even while readable.
   */
  protected readonly edgeTriggered: boolean = false;
  /** Edge-triggered: what a wake-up stands for, without reading the fd (null: nothing new, skip it). */
  protected edgeCount(): number | null {
    return 1;
  }
  /** Called after each delivered interrupt. */
  protected abstract rearm(): void;
  /** Whether the fd should be watched at all (eventfd masking unwatches). */
  protected wantsWatch(): boolean {
    return true;
  }

  abstract enable(): void;
  abstract disable(): void;

  get closed(): boolean {
    return this.isClosed;
  }

  get listening(): boolean {
    return this.onInterrupt !== undefined;
  }

  /** One listener at a time: a second listen() before unlisten() is a TransportError STATE. */
  listen(onInterrupt: InterruptListener, onError: InterruptErrorListener): void {
    if (typeof onInterrupt !== 'function' || typeof onError !== 'function') {
      throw invalidArgType(`${this.label}: listen() needs an interrupt listener and an error listener (functions)`);
    }
    if (this.isClosed) throw new ClosedError(`${this.label} is closed`);
    if (this.onInterrupt) throw new TransportError(TransportError.STATE, `${this.label} already has a listener`);
    this.onInterrupt = onInterrupt;
    this.onError = onError;
    this.updateWatch();
  }

  unlisten(): void {
    this.onInterrupt = undefined;
    this.onError = undefined;
    this.updateWatch();
  }

  ref(): void {
    this.setKeepAlive(true);
  }

  unref(): void {
    this.setKeepAlive(false);
  }

  private setKeepAlive(keepAlive: boolean): void {
    if (keepAlive === this.keepAlive) return;
    this.keepAlive = keepAlive;
    if (this.watched) this.loop.setKeepAlive(this.fd, keepAlive);
  }

  /** close(), for `using` (explicit resource management): disposed at the end of the enclosing block. */
  [Symbol.dispose](): void {
    this.close();
  }

  close(): void {
    if (this.isClosed) return;
    this.unlisten();
    this.isClosed = true;
    this.release();
    for (const hook of this.onClose) hook();
    this.onClose.clear();
  }

  /** Releases the fd; called once by close(). */
  protected abstract release(): void;

  protected updateWatch(): void {
    const want = !this.isClosed && this.onInterrupt !== undefined && this.wantsWatch();
    if (want && !this.watched) {
      this.loop.watch(
        this.fd,
        this.edgeTriggered ? (EPOLLIN | EPOLLET) >>> 0 : EPOLLIN,
        (events) => this.ready(events),
        { keepAlive: this.keepAlive },
      );
    } else if (!want && this.watched) {
      this.loop.unwatch(this.fd);
    }
    this.watched = want;
  }

  private ready(events: number): void {
    const listener = this.onInterrupt;
    if (!listener) return;
    let count: number | null;
    const flagged = events & (EPOLLERR | EPOLLHUP);
    try {
      if (flagged && !(events & EPOLLIN)) throw this.goneError(events);
      // An error or hang-up flag (UIO reports -EIO as every bit once the device is unbound) is checked by a read even
      // when edge-triggered: the read fails for a device that is gone, and its registers must not be touched then. A
      // wake-up without EPOLLET comes from a level-triggered registration: the fd must be read.
      count = events & EPOLLET && !flagged ? this.edgeCount() : this.consume();
      // libuv reports a hang-up as readable too: with nothing left to read, the line is gone (and level-triggered,
      // it would wake the loop forever).
      if (count === null && flagged) throw this.goneError(events);
    } catch (error) {
      this.fail(error);
      return;
    }
    if (count === null) return;
    this.delivering = true;
    this.rearmedEarly = false;
    try {
      listener({ count });
    } finally {
      this.delivering = false;
      this.afterDelivery();
    }
  }

  private goneError(events: number): DeviceGoneError {
    return new DeviceGoneError(
      `${this.label}: the interrupt fd reported ${events & EPOLLERR ? 'EPOLLERR' : 'EPOLLHUP'}`,
    );
  }

  /** Re-arms the line unless acknowledged() did; reports a failed re-arm either way. */
  private afterDelivery(): void {
    const error = this.rearmError;
    this.rearmError = undefined;
    if (this.isClosed || !this.onInterrupt) return;
    if (this.rearmedEarly) {
      if (error !== undefined) this.fail(error);
      return;
    }
    try {
      this.rearm();
    } catch (error) {
      this.fail(error);
    }
  }

  /**
   * The listener has acknowledged the device: the line is re-armed now, not
   * when the listener returns, so that an interrupt raised meanwhile (for a
   * request the listener itself submitted) reaches an unmasked line. A
   * re-arm that fails is reported when the listener returns, as it would
   * have been without this call. Outside a delivery, or a second time in
   * one, it does nothing.
   */
  acknowledged(): void {
    if (!this.delivering || this.rearmedEarly || this.isClosed || !this.onInterrupt) return;
    this.rearmedEarly = true;
    try {
      this.rearm();
    } catch (error) {
      this.rearmError = error;
    }
  }

  private fail(error: unknown): void {
    const onError = this.onError;
    this.unlisten();
    const gone =
      error instanceof DeviceGoneError
        ? error
        : new DeviceGoneError(`${this.label}: ${(error as Error).message}`, { cause: error });
    onError?.(gone);
  }

  events(): AsyncIterableIterator<InterruptEvent> {
    return interruptEvents({ source: this, onClose: this.onClose, currentListener: () => this.onInterrupt });
  }
}
