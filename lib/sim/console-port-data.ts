import { HeldReceives, fillWritable } from './held-receives';
import type { SimRequest } from './sim-model';

/**
 * The data side of one console port (virtio 1.2 §5.3.6.1): the receive
 * buffers the driver posted on the port's receiveq, the bytes waiting for
 * them, and what the driver transmitted on its transmitq. Bytes go to the
 * driver only while `open()` says so; until then they wait, never dropped.
 */
export class ConsolePortData {
  /** Everything the driver transmitted on this port, in order. */
  output: Buffer = Buffer.alloc(0);
  private waiting: Buffer = Buffer.alloc(0);
  private readonly receives = new HeldReceives(() => this.deliver());
  private readonly outputWaiters: { bytes: number; resolve: (data: Buffer) => void }[] = [];

  constructor(private readonly open: () => boolean) {}

  /** Receive buffers the driver has posted and the device holds. */
  get posted(): number {
    return this.receives.length;
  }

  /** Bytes sent and not yet delivered. */
  get undelivered(): number {
    return this.waiting.length;
  }

  /** A chain from the port's receiveq: held until there are bytes for it. */
  hold(request: SimRequest): Promise<number> {
    return this.receives.hold(request);
  }

  /** Bytes for the driver, delivered in order when a buffer is posted and the port is open. */
  send(data: Uint8Array): void {
    this.waiting = Buffer.concat([this.waiting, data]);
    this.deliver();
  }

  /** Records bytes the driver transmitted and wakes outputOf() waiters. */
  transmitted(data: Buffer): void {
    this.output = Buffer.concat([this.output, data]);
    for (const waiter of [...this.outputWaiters]) {
      if (this.output.length >= waiter.bytes) {
        this.outputWaiters.splice(this.outputWaiters.indexOf(waiter), 1);
        waiter.resolve(this.output.subarray(0, waiter.bytes));
      }
    }
  }

  /** Resolves once `output` holds at least `bytes` bytes; with those bytes. */
  outputOf(bytes: number): Promise<Buffer> {
    if (this.output.length >= bytes) return Promise.resolve(this.output.subarray(0, bytes));
    return new Promise((resolve) => this.outputWaiters.push({ bytes, resolve }));
  }

  /** Drops the bytes not yet delivered (device reset, port removed). */
  dropWaiting(): void {
    this.waiting = Buffer.alloc(0);
  }

  /** Drops the held receive buffers (device or queue reset). */
  dropReceives(): void {
    this.receives.clear();
  }

  /** Fills posted buffers with waiting bytes while the port is open. */
  deliver(): void {
    while (this.waiting.length > 0 && this.receives.length > 0 && this.open()) {
      const [{ request, complete }] = this.receives.take();
      const written = fillWritable(request, this.waiting);
      this.waiting = this.waiting.subarray(written);
      complete(written);
    }
  }
}
