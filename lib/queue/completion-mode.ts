/**
 * How a queue learns of completions: 'interrupt' (the device's used buffer
 * notifications, the default), 'poll' (the device is asked for no
 * notifications, §2.7.10 / §2.8.10, and the used ring is polled on the
 * event loop while requests are outstanding — lowest latency, a busy CPU),
 * or 'hybrid' (interrupts while idle; after a completion the ring is polled
 * for `spinMicros`, and interrupts come back when nothing more arrives).
 */
export type QueueMode = 'interrupt' | 'poll' | 'hybrid';

/** Throws TypeError unless `mode` is a QueueMode; `name` is what the caller called it. */
export function checkQueueMode(mode: unknown, name = 'queue mode'): asserts mode is QueueMode {
  if (mode !== 'interrupt' && mode !== 'poll' && mode !== 'hybrid') throw new TypeError(`${name} must be 'interrupt', 'poll' or 'hybrid', got ${String(mode)}`);
}

export interface QueueModeOptions {
  /** 'hybrid': how long to keep polling after the last completion (default 50 µs). */
  spinMicros?: number;
  /** 'poll': run the polling loop on the event loop (default true); false leaves poll() to the caller. */
  loop?: boolean;
}

/** What the poller needs of its queue. */
export interface PollTarget {
  poll(): number;
  /** In-flight requests someone waits for: the loop runs only while there are some. */
  readonly awaited: number;
  disableInterrupts(): void;
  enableInterrupts(): number;
  readonly stats: { polls: number; polledCompletions: number };
}

/**
 * The polling loop of 'poll' and 'hybrid' modes. Each turn is one
 * setImmediate, so timers and other I/O keep running; the loop stops when
 * nothing is outstanding (an idle process can exit) and starts again on the
 * next submission (poll) or interrupt (hybrid).
 */
export class CompletionPoller {
  private scheduled?: NodeJS.Immediate;
  private windowEnd = 0n;
  /** Hybrid: interrupts are off and the ring is polled until windowEnd. */
  private spinning = false;
  private readonly spinNs: bigint;
  private readonly loop: boolean;

  constructor(
    private readonly queue: PollTarget,
    readonly mode: Exclude<QueueMode, 'interrupt'>,
    options: QueueModeOptions = {},
  ) {
    const spin = options.spinMicros ?? 50;
    if (!Number.isFinite(spin) || spin < 0 || spin > 1e6) throw new RangeError(`spinMicros must be in [0, 1e6], got ${spin}`);
    this.spinNs = BigInt(Math.round(spin * 1000));
    this.loop = options.loop ?? true;
    if (mode === 'poll') queue.disableInterrupts();
  }

  /** A request was placed. */
  submitted(): void {
    if (this.mode === 'poll') {
      if (this.loop) this.schedule();
    } else if (this.spinning) {
      // Within the window the request is polled for; after it, interrupts come back first.
      if (process.hrtime.bigint() < this.windowEnd) this.schedule();
      else this.backToInterrupts();
    }
  }

  /** An interrupt delivered completions (or tried to): hybrid starts a polling window. */
  interrupted(): void {
    if (this.mode !== 'hybrid') return;
    if (!this.spinning) {
      this.spinning = true;
      this.queue.disableInterrupts();
    }
    this.windowEnd = process.hrtime.bigint() + this.spinNs;
    if (this.queue.awaited > 0) this.schedule();
  }

  /** Stops the loop (mode change, close). */
  stop(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
  }

  private backToInterrupts(): void {
    this.spinning = false;
    // enableInterrupts() consumes what arrived meanwhile.
    this.queue.stats.polledCompletions += this.queue.enableInterrupts();
  }

  private schedule(): void {
    if (!this.scheduled) this.scheduled = setImmediate(() => this.turn());
  }

  private turn(): void {
    this.scheduled = undefined;
    const got = this.queue.poll();
    this.queue.stats.polls++;
    this.queue.stats.polledCompletions += got;
    if (this.mode === 'poll') {
      if (this.queue.awaited > 0) this.schedule();
      return;
    }
    const now = process.hrtime.bigint();
    if (got > 0) this.windowEnd = now + this.spinNs;
    if (now >= this.windowEnd) this.backToInterrupts();
    else if (this.queue.awaited > 0) this.schedule();
    // Idle within the window: interrupts stay off (nothing is outstanding); the next submit decides.
  }
}
