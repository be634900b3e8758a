import { ConsoleConfig, ConsoleFeature, DeviceId, feature } from '../spec';
import { HeldReceives, fillWritable } from './held-receives';
import type { SimConfigField, SimDeviceModel, SimRequest } from './sim-model';

export interface ConsoleModelOptions {
  /** Offer VIRTIO_CONSOLE_F_SIZE with these columns and rows. */
  size?: { cols: number; rows: number };
  /** Send every byte the driver transmits straight back (default false). */
  echo?: boolean;
  /** QueueNumMax of both port-0 queues (default 64). */
  queueSize?: number;
}

/**
 * A console device (virtio 1.2 §5.3), port 0 only. What the driver
 * transmits is collected in `output` (and echoed back with `echo`); send()
 * delivers bytes to the driver through the receive buffers it has posted,
 * holding them while none is posted — like a terminal with flow control.
 */
export class ConsoleModel implements SimDeviceModel {
  readonly deviceId = DeviceId.CONSOLE;
  readonly features: bigint;
  readonly queueSizes: readonly number[];
  readonly config = new Uint8Array(ConsoleConfig.SIZE);
  readonly configFields: readonly SimConfigField[] = [
    { offset: ConsoleConfig.cols, width: 2 },
    { offset: ConsoleConfig.rows, width: 2 },
    { offset: ConsoleConfig.max_nr_ports, width: 4 },
    { offset: ConsoleConfig.emerg_wr, width: 4, writable: true },
  ];
  /** Everything the driver transmitted, in order. */
  output: Buffer = Buffer.alloc(0);
  private readonly echo: boolean;
  private readonly receives = new HeldReceives(() => this.deliver());
  private waiting: Buffer = Buffer.alloc(0);
  private readonly outputWaiters: { bytes: number; resolve: (data: Buffer) => void }[] = [];

  constructor(options: ConsoleModelOptions = {}) {
    const queueSize = options.queueSize ?? 64;
    this.queueSizes = [queueSize, queueSize];
    this.echo = options.echo ?? false;
    this.features = options.size ? feature(ConsoleFeature.SIZE) : 0n;
    if (options.size) this.setSize(options.size);
  }

  /** Changes cols/rows (the caller raises the config change on the SimDevice). */
  setSize(size: { cols: number; rows: number }): void {
    const view = new DataView(this.config.buffer, this.config.byteOffset, this.config.byteLength);
    view.setUint16(ConsoleConfig.cols, size.cols, true);
    view.setUint16(ConsoleConfig.rows, size.rows, true);
  }

  /** Bytes for the driver: they fill its posted receive buffers in order. */
  send(data: Uint8Array): void {
    this.waiting = Buffer.concat([this.waiting, data]);
    this.deliver();
  }

  /** Receive buffers the driver has posted and the device holds. */
  get postedReceives(): number {
    return this.receives.length;
  }

  /** Bytes sent and not yet delivered (no receive buffer posted). */
  get undelivered(): number {
    return this.waiting.length;
  }

  /** Resolves once `output` holds at least `bytes` bytes; with those bytes. */
  outputOf(bytes: number): Promise<Buffer> {
    if (this.output.length >= bytes) return Promise.resolve(this.output.subarray(0, bytes));
    return new Promise((resolve) => this.outputWaiters.push({ bytes, resolve }));
  }

  handle(request: SimRequest): number | Promise<number> {
    if (request.queue === 1) {
      const data = Buffer.concat(request.readable.map((b) => Buffer.from(b)));
      this.output = Buffer.concat([this.output, data]);
      for (const waiter of [...this.outputWaiters]) {
        if (this.output.length >= waiter.bytes) {
          this.outputWaiters.splice(this.outputWaiters.indexOf(waiter), 1);
          waiter.resolve(this.output.subarray(0, waiter.bytes));
        }
      }
      if (this.echo) this.send(data);
      return 0;
    }
    if (request.queue !== 0) return 0;
    return this.receives.hold(request);
  }

  reset(): void {
    this.receives.clear();
    this.waiting = Buffer.alloc(0);
  }

  resetQueue(queue: number): void {
    if (queue === 0) this.receives.clear();
  }

  private deliver(): void {
    while (this.waiting.length > 0 && this.receives.length > 0) {
      const [{ request, complete }] = this.receives.take();
      const written = fillWritable(request, this.waiting);
      this.waiting = this.waiting.subarray(written);
      complete(written);
    }
  }
}
