import { CanceledError, ClosedError, DeviceBrokenError, DeviceGoneError } from '../errors';
import { trace, tracing } from '../trace';

/**
 * Whether a queue can still take requests, and if not, the error that
 * says why: broken by its device (sticky, DeviceBrokenError with the
 * RingViolation as reason), detached by its transport (reset, close, the
 * device failing), or closed.
 */
export class QueueState {
  /** Why the device broke the ring, if it did. */
  brokenBy?: { reason: string; message: string };
  private detachedBy?: Error;
  /** close() ran. */
  closed = false;

  constructor(private readonly index: number) {}

  get unusable(): boolean {
    return this.brokenBy !== undefined || this.detachedBy !== undefined || this.closed;
  }

  get detached(): boolean {
    return this.detachedBy !== undefined;
  }

  markBroken(reason: string, message: string): void {
    if (tracing) trace('broken', 'queue %d: %s: %s', this.index, reason, message);
    this.brokenBy = { reason, message };
  }

  markDetached(error: Error): void {
    this.detachedBy = error;
  }

  /** A reset of this queue completed and it was set up again: neither broken nor detached any more (§2.6.1). */
  revive(): void {
    this.brokenBy = undefined;
    this.detachedBy = undefined;
  }

  /** The error a request on an unusable queue gets (undefined while usable). */
  refusal(): Error | undefined {
    if (this.brokenBy) return this.brokenError();
    if (this.detachedBy || this.closed) return this.detachedError();
    return undefined;
  }

  brokenError(): DeviceBrokenError {
    const { reason, message } = this.brokenBy!;
    return new DeviceBrokenError(reason, `queue ${this.index} is broken: ${message}`);
  }

  detachedError(): Error {
    const cause = this.detachedBy;
    // A device that failed (gone, broken) keeps saying so; a reset or close is a cancellation.
    if (cause instanceof DeviceBrokenError || cause instanceof DeviceGoneError) return cause;
    if (this.closed) return new ClosedError(`queue ${this.index} is closed`);
    return new CanceledError(`queue ${this.index} is detached (${cause?.message})`, cause ? { cause } : undefined);
  }
}
