import '../disposable';
import { ClosedError, DeviceGoneError, invalidArgType, outOfRange, TransportError } from '../errors';
import { interruptEvents } from './interrupt-events';
import type { InterruptErrorListener, InterruptEvent, InterruptListener, InterruptSource } from './interrupt-source';
import { INT31_MAX, inInt31Range } from '../util/int31';

export interface PollingInterruptSourceOptions {
  /** Milliseconds between ticks; an integer in [1, 2^31 - 1]. Default 1. */
  intervalMs?: number;
  /** For messages. Default "polled interrupt". */
  label?: string;
}

/**
 * An interrupt "line" for a register window that has none, such as a
 * /dev/mem window (user space gets no IRQ without UIO): while listening,
 * a timer delivers `{ count: 1 }` every `intervalMs`. The listener then
 * reads InterruptStatus as after a real interrupt, and a 0 there is an
 * ordinary spurious wake-up.
 *
 * disable() pauses the ticks and enable() resumes them. ref()/unref() are
 * the timer's: a ticking source keeps the process alive only while ref'd
 * (the default; the transport unrefs it while no request is outstanding).
 * If the listener throws, the source stops listening and reports the
 * exception to the error listener as a DeviceGoneError (its cause), so a
 * broken handler is not re-run every tick.
 */
export class PollingInterruptSource implements InterruptSource {
  readonly label: string;
  readonly intervalMs: number;
  private onInterrupt?: InterruptListener;
  private onError?: InterruptErrorListener;
  private timer?: NodeJS.Timeout;
  private masked = false;
  private keepAlive = true;
  private isClosed = false;
  private readonly onClose = new Set<() => void>();

  constructor(options: PollingInterruptSourceOptions = {}) {
    const intervalMs = options.intervalMs ?? 1;
    if (typeof intervalMs !== 'number') throw invalidArgType(`intervalMs must be a number, got ${typeof intervalMs}`);
    if (!inInt31Range(intervalMs, { min: 1, integer: true })) {
      throw outOfRange(`intervalMs must be an integer in [1, ${INT31_MAX}], got ${intervalMs}`);
    }
    this.intervalMs = intervalMs;
    this.label = options.label ?? 'polled interrupt';
  }

  get closed(): boolean {
    return this.isClosed;
  }

  get listening(): boolean {
    return this.onInterrupt !== undefined;
  }

  /** Whether the timer is running (listening, enabled, not closed). */
  get ticking(): boolean {
    return this.timer !== undefined;
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
    this.updateTimer();
  }

  unlisten(): void {
    this.onInterrupt = undefined;
    this.onError = undefined;
    this.updateTimer();
  }

  /** Resumes ticking (the counterpart of unmasking a line). */
  enable(): void {
    if (this.isClosed) throw new ClosedError(`${this.label} is closed`);
    this.masked = false;
    this.updateTimer();
  }

  /** Pauses ticking; nothing is delivered until enable(). */
  disable(): void {
    if (this.isClosed) throw new ClosedError(`${this.label} is closed`);
    this.masked = true;
    this.updateTimer();
  }

  /** Whether a running timer keeps the process alive (ref()'d and ticking). */
  get keepsAlive(): boolean {
    return this.timer?.hasRef() ?? false;
  }

  ref(): void {
    this.keepAlive = true;
    this.timer?.ref();
  }

  unref(): void {
    this.keepAlive = false;
    this.timer?.unref();
  }

  /** close(), for `using` (explicit resource management): disposed at the end of the enclosing block. */
  [Symbol.dispose](): void {
    this.close();
  }

  close(): void {
    if (this.isClosed) return;
    this.unlisten();
    this.isClosed = true;
    for (const hook of this.onClose) hook();
    this.onClose.clear();
  }

  private updateTimer(): void {
    const want = !this.isClosed && !this.masked && this.onInterrupt !== undefined;
    if (want && !this.timer) {
      this.timer = setInterval(() => this.tick(), this.intervalMs);
      if (!this.keepAlive) this.timer.unref();
    } else if (!want && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private tick(): void {
    const listener = this.onInterrupt;
    if (!listener) return;
    try {
      listener({ count: 1 });
    } catch (error) {
      const onError = this.onError;
      this.unlisten();
      const message = error instanceof Error ? error.message : String(error);
      onError?.(new DeviceGoneError(`${this.label}: the interrupt handler threw: ${message}`, { cause: error }));
    }
  }

  events(): AsyncIterableIterator<InterruptEvent> {
    return interruptEvents({ source: this, onClose: this.onClose, currentListener: () => this.onInterrupt });
  }
}
