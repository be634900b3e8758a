import { Duplex } from 'node:stream';
import type { DmaRegion } from '../platform';
import type { SplitQueue } from '../queue';
import { ConsoleConfig, ConsoleFeature, ConsoleQueue, DeviceId, feature, hasFeature } from '../spec';
import type { MmioTransport } from '../transport';
import { VirtioDriver, type DriverOptions } from './virtio-driver';

export interface VirtioConsoleOptions extends DriverOptions {
  /** Receive buffers kept posted (default: the receive queue's size, at most 64). */
  receiveBuffers?: number;
  /** Bytes per receive buffer (default 4096). */
  receiveBufferBytes?: number;
  /** Largest transmit buffer; longer writes are split (default 4096). */
  transmitBufferBytes?: number;
}

export interface ConsoleSize {
  cols: number;
  rows: number;
}

/**
 * The console device (virtio 1.2 §5.3), port 0: a Duplex stream of bytes.
 * Receive buffers stay posted while the reader keeps up; when the stream's
 * buffer is full, completed buffers are held back (not re-posted) until it
 * drains, so the device stops sending instead of bytes being lost. A write
 * completes when the device has taken its bytes.
 */
export class VirtioConsole extends VirtioDriver {
  static readonly deviceId = DeviceId.CONSOLE;

  /** The port-0 byte stream. */
  readonly stream: Duplex;
  private readonly rx: SplitQueue;
  private readonly tx: SplitQueue;
  private readonly rxMemory: DmaRegion;
  private readonly rxBytes: number;
  private readonly txBytes: number;
  private readonly held: number[] = [];
  private reading = true;
  private currentSize?: ConsoleSize;

  private constructor(transport: MmioTransport, options: VirtioConsoleOptions) {
    super(
      VirtioDriver.start(
        transport,
        { deviceId: DeviceId.CONSOLE, features: feature(ConsoleFeature.SIZE), queues: [ConsoleQueue.RECEIVE0, ConsoleQueue.TRANSMIT0], queueSize: 64 },
        options,
      ),
    );
    this.rx = this.queue(ConsoleQueue.RECEIVE0);
    this.tx = this.queue(ConsoleQueue.TRANSMIT0);
    this.rxBytes = options.receiveBufferBytes ?? 4096;
    this.txBytes = options.transmitBufferBytes ?? 4096;
    const count = Math.min(options.receiveBuffers ?? 64, this.rx.size);
    this.rxMemory = this.memory.allocate(count * this.rxBytes, 64);
    this.currentSize = this.readSize();
    this.stream = new Duplex({
      read: () => this.resume(),
      write: (chunk: Buffer, _encoding, callback) => {
        this.send(chunk).then(() => callback(), callback);
      },
      destroy: (error, callback) => {
        this.close();
        callback(error);
      },
    });
    this.onConfigChange(() => {
      const size = this.readSize();
      if (size && (size.cols !== this.currentSize?.cols || size.rows !== this.currentSize?.rows)) {
        this.currentSize = size;
        this.stream.emit('resize', size);
      }
    });
    for (let slot = 0; slot < count; slot++) this.post(slot);
  }

  /** Initializes the device on `transport` (which must hold a console device). */
  static open(transport: MmioTransport, options: VirtioConsoleOptions): VirtioConsole {
    for (const name of ['receiveBufferBytes', 'transmitBufferBytes', 'receiveBuffers'] as const) {
      const value = options?.[name];
      if (value !== undefined && (!Number.isInteger(value) || value < 1 || value > 1 << 20)) throw new RangeError(`${name} must be an integer in [1, 1 MiB], got ${value}`);
    }
    return new VirtioConsole(transport, options);
  }

  /** Columns and rows, when the device offers VIRTIO_CONSOLE_F_SIZE; the stream emits 'resize' on change. */
  get size(): ConsoleSize | undefined {
    return this.currentSize;
  }

  override close(): void {
    if (this.closed) return;
    super.close();
    if (this.deviceReleased && this.rxMemory) this.memory.free(this.rxMemory);
    if (this.stream && !this.stream.destroyed) this.stream.destroy();
  }

  private readSize(): ConsoleSize | undefined {
    if (!hasFeature(this.features, ConsoleFeature.SIZE)) return undefined;
    return this.transport.config.atomic(() => ({ cols: this.transport.config.read16(ConsoleConfig.cols), rows: this.transport.config.read16(ConsoleConfig.rows) }));
  }

  /** Posts receive buffer `slot`; its completion pushes the bytes and re-posts it (unless the reader is full). */
  private post(slot: number): void {
    if (this.closed) return;
    this.rx.submit({ writable: [{ region: this.rxMemory, offset: slot * this.rxBytes, length: this.rxBytes }] }).then(
      (len) => {
        if (len > 0) {
          const bytes = Buffer.from(new Uint8Array(this.rxMemory.view, this.rxMemory.offset + slot * this.rxBytes, len));
          if (!this.stream.push(bytes)) this.reading = false;
        }
        if (this.reading) this.post(slot);
        else this.held.push(slot);
      },
      (error: unknown) => {
        if (!this.closed) this.stream.destroy(error as Error);
      },
    );
  }

  private resume(): void {
    this.reading = true;
    for (const slot of this.held.splice(0)) this.post(slot);
  }

  private async send(data: Buffer): Promise<void> {
    const parts: Promise<void>[] = [];
    for (let at = 0; at < data.length; at += this.txBytes) {
      const part = data.subarray(at, Math.min(at + this.txBytes, data.length));
      const region = this.memory.allocate(part.length);
      new Uint8Array(region.view, region.offset, part.length).set(part);
      parts.push(
        this.tx.submit({ readable: [{ region }] }).then(
          () => this.memory.free(region),
          (error: unknown) => {
            // After a reset the device no longer holds it; after a broken queue it is left to the pool.
            if (this.deviceReleased || !this.closed) this.memory.free(region);
            throw error;
          },
        ),
      );
    }
    const results = await Promise.allSettled(parts);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }
}
