import { performance } from 'node:perf_hooks';
import { invalidArgValue, outOfRange } from '../errors';
/**
 * How a queue learns of completions: 'interrupt' (the device's used buffer
 * notifications, the default), 'poll' (the device is asked for no
 * notifications, §2.7.10 / §2.8.10, and the used ring is polled while
 * requests are outstanding — lowest latency, a busy CPU), or 'hybrid'
 * (polls while the device answers quickly, interrupts while it does not).
 */
export type QueueMode = 'interrupt' | 'poll' | 'hybrid';

/** Throws TypeError unless `mode` is a QueueMode; `name` is what the caller called it. */
export function checkQueueMode(mode: unknown, name = 'queue mode'): asserts mode is QueueMode {
  if (mode !== 'interrupt' && mode !== 'poll' && mode !== 'hybrid')
    throw invalidArgValue(`${name} must be 'interrupt', 'poll' or 'hybrid', got ${String(mode)}`);
}

export interface QueueModeOptions {
  /**
   * 'poll' and 'hybrid': the longest a notification is followed by a
   * synchronous spin on the used ring, in µs (default 200; 0: never spin).
   * The spin adapts below this to the device's recent completion latency.
   */
  spinMicros?: number;
  /**
   * The longest run of synchronous spins, with the completions they find
   * and the work those start, before the event loop gets a turn (timers,
   * other I/O), in µs (default 2000).
   */
  burstMicros?: number;
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
  readonly stats: { polls: number; polledCompletions: number; spins: number; spinHits: number };
}

/** Misses in a row after which spins are skipped for a while (doubling up to 2^MAX_BACKOFF notifications). */
const MISSES_BEFORE_BACKOFF = 3;
/** Polls between two clock reads in a spin. */
const POLLS_PER_CLOCK = 4;
const MAX_BACKOFF = 8;

/**
 * The completion side of 'poll' and 'hybrid'. After a notification the
 * used ring is spun on synchronously, for a bound learnt from the latency
 * of recent spins that found something (a device that answers in tens of
 * µs is found within the same turn: no event-loop iteration, no syscall).
 * Spins that keep missing (a device that answers later, or only on a
 * later turn) are skipped for a doubling number of notifications, up to
 * 2^MAX_BACKOFF, then tried again. Synchronous spinning is bounded per
 * event-loop turn (burstMicros), so timers and I/O still run.
 *
 * poll: interrupts stay off; besides the spins, one poll per event-loop
 * turn (setImmediate) while requests are awaited; the loop stops when idle.
 * hybrid: interrupts are turned off for a request that will be spun for
 * and back on when the spin misses, so a device slower than the spin is
 * left to its interrupts.
 */
export class CompletionPoller {
  private scheduled?: NodeJS.Immediate;
  private readonly capUs: number;
  private readonly burstMs: number;
  private readonly loop: boolean;
  /**
   * Notification → completion latency of recent spin hits, µs (exponentially weighted). Declared with a number: a
   * field that first holds undefined (ES2022 class fields) boxes each double stored in it in a new heap number; one
   * that starts as a number is updated in place.
   */
  private latencyUs = 0;
  private misses = 0;
  private skipLeft = 0;
  /** performance.now() when the current run of synchronous spins began (0: none). */
  private burstStart = 0;
  /** performance.now() at the end of the last spin. */
  private lastNow = 0;
  private readonly endBurst = (): void => {
    this.burstStart = 0;
  };
  private readonly onTurn = (): void => this.turn();
  /** Hybrid: interrupts are off because completions are being spun or polled for. */
  private polling = false;
  /** beforePublish() decided the publication is spun for. */
  private spinPlanned = false;

  constructor(
    private readonly queue: PollTarget,
    readonly mode: Exclude<QueueMode, 'interrupt'>,
    options: QueueModeOptions = {},
  ) {
    const spin = options.spinMicros ?? 200;
    if (!Number.isFinite(spin) || spin < 0 || spin > 1e6)
      throw outOfRange(`spinMicros must be in [0, 1e6], got ${spin}`);
    this.capUs = spin;
    const burst = options.burstMicros ?? 2000;
    if (!Number.isFinite(burst) || burst < 0 || burst > 1e7)
      throw outOfRange(`burstMicros must be in [0, 1e7], got ${burst}`);
    this.burstMs = burst / 1000;
    this.latencyUs = spin / 2;
    this.loop = options.loop ?? true;
    if (mode === 'poll') queue.disableInterrupts();
  }

  /** The bound of the next spin, µs: twice the recent latency, within the cap. */
  get spinBoundUs(): number {
    return Math.min(this.capUs, 2 * this.latencyUs + 5);
  }

  /** A request was placed. */
  submitted(): void {
    // The loop runs while anything is awaited (at most one turn per event-loop iteration); a spin may find it first.
    if (this.mode === 'poll' && this.loop) this.schedule();
  }

  /**
   * New requests are about to be published (and the device perhaps
   * notified): decides whether they will be spun for. Hybrid: a request
   * that will be spun for must not also interrupt.
   */
  beforePublish(): void {
    this.spinPlanned = this.queue.awaited > 0 && this.decide();
    if (this.spinPlanned && this.mode === 'hybrid' && !this.polling) {
      this.polling = true;
      this.queue.disableInterrupts();
    }
  }

  /** New requests were published: spins for their completion now, or leaves them to the loop or the interrupt. */
  published(): void {
    if (this.queue.awaited === 0) return;
    if (this.spinPlanned && this.spin()) return;
    if (this.mode === 'poll') {
      if (this.loop) this.schedule();
    } else if (this.polling) {
      // Out of burst budget: one poll on the next turn. A miss: interrupts back on.
      if (!this.spinPlanned) this.schedule();
      else this.backToInterrupts();
    }
  }

  /** Stops the loop (mode change, close). */
  stop(): void {
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
  }

  /** Whether to spin now: a cap, burst budget left, no backoff pending (counted down here). */
  private decide(): boolean {
    if (this.capUs === 0) return false;
    // The clock as the last spin left it: a burst may overrun its budget by what ran since (completions, callbacks).
    if (this.burstStart !== 0 && this.lastNow - this.burstStart > this.burstMs) return false;
    if (this.skipLeft > 0) {
      this.skipLeft--;
      return false;
    }
    return true;
  }

  /** Spins on the used ring for up to the bound; true when something completed. */
  private spin(): boolean {
    const start = performance.now();
    if (this.burstStart === 0) {
      this.burstStart = start;
      setImmediate(this.endBurst);
    }
    const end = start + this.spinBoundUs / 1000;
    const stats = this.queue.stats;
    stats.spins++;
    let got = 0;
    let now = start;
    let polls = 0;
    do {
      got = this.queue.poll();
      // The clock every POLLS_PER_CLOCK polls, and at a hit: a clock read costs more than a poll that finds nothing
      // (and allocates an array on Node 18, through process.hrtime()).
      if (got !== 0 || ++polls % POLLS_PER_CLOCK === 0) now = performance.now();
    } while (got === 0 && now < end);
    this.lastNow = now;
    if (got === 0) {
      // The device took longer than the bound: the next spin waits twice as long, up to the cap.
      this.latencyUs = Math.max(this.latencyUs, this.spinBoundUs);
      this.missed();
      return false;
    }
    stats.spinHits++;
    stats.polledCompletions += got;
    this.misses = 0;
    this.sample(now - start);
    // More awaited (QD > 1): the next publish spins again; meanwhile the loop keeps looking.
    if (this.queue.awaited > 0 && (this.mode === 'hybrid' || this.loop)) this.schedule();
    return true;
  }

  private missed(): void {
    if (++this.misses >= MISSES_BEFORE_BACKOFF)
      this.skipLeft = 2 ** Math.min(this.misses - MISSES_BEFORE_BACKOFF + 1, MAX_BACKOFF);
  }

  /**
   * One notification → completion latency seen by a spin; a single outlier (a GC pause) counts as twice the cap at
   * most.
   */
  private sample(ms: number): void {
    const us = ms * 1000;
    if (us >= 0) this.latencyUs += (Math.min(us, 2 * this.capUs) - this.latencyUs) / 8;
  }

  private backToInterrupts(): void {
    this.polling = false;
    // enableInterrupts() consumes what arrived meanwhile.
    this.queue.stats.polledCompletions += this.queue.enableInterrupts();
  }

  private schedule(): void {
    if (!this.scheduled) this.scheduled = setImmediate(this.onTurn);
  }

  private turn(): void {
    this.scheduled = undefined;
    // The event loop has had its turn: a new burst may start here. Left to endBurst, which can be queued after this
    // immediate, a spent burst would skip this turn's spin and cost one more event-loop iteration per request or two.
    this.burstStart = 0;
    const got = this.queue.poll();
    this.queue.stats.polls++;
    this.queue.stats.polledCompletions += got;
    if (this.queue.awaited === 0) {
      if (this.polling) this.backToInterrupts();
      return;
    }
    const found = got > 0 || (this.decide() && this.spin());
    if (this.mode === 'poll') {
      if (this.loop) this.schedule();
    } else if (this.polling) {
      if (found) this.schedule();
      else this.backToInterrupts();
    }
  }
}
