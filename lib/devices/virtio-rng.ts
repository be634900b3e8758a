import { setMaxListeners } from 'node:events';
import type { Readable } from 'node:stream';
import { CanceledError, outOfRange, ProtocolError } from '../errors';
import type { DmaRegion } from '../platform';
import { DeviceId } from '../spec';
import type { VirtioTransport } from '../transport';
import { DriverSetup } from './driver-setup';
import { VirtioDriver, type DriverOptions, type StartedDevice } from './virtio-driver';
import { SlotPool, abortable, requestStream } from './slot-pool';
import { inInt31Range } from '../util/int31';

/** A read length is a whole number of bytes (made once: checked on every read). */
const WHOLE = { integer: true } as const;

export interface VirtioRngOptions extends DriverOptions {
  /** Bytes asked of the device per request (default 4096). */
  requestBytes?: number;
}

const REQUEST_QUEUE = 0;
/** Empty completions in a row before a read gives up (a device that never delivers must not hang us). */
const MAX_EMPTY_COMPLETIONS = 64;

/**
 * The entropy device (virtio 1.2 §5.4): one queue of device-writable
 * buffers that the device fills with random bytes. A read is split into
 * requests that run in parallel up to the queue size.
 */
export class VirtioRng extends VirtioDriver {
  static readonly deviceId = DeviceId.ENTROPY;

  private readonly requestBytes: number;
  private readonly buffers: DmaRegion;
  private readonly bufferBytes: Uint8Array;
  private readonly slots: SlotPool;

  private constructor(started: StartedDevice, requestBytes: number) {
    super(started);
    this.requestBytes = requestBytes;
    const { size } = this.queue(REQUEST_QUEUE);
    // Should this fail, open()'s abandon() closes the device.
    this.buffers = this.memory.allocate(size * this.requestBytes, 64);
    this.bufferBytes = new Uint8Array(this.buffers.view, this.buffers.offset, this.buffers.size);
    this.slots = new SlotPool(size);
  }

  /** Initializes the device on `transport` (which must hold an entropy device). */
  static open(transport: VirtioTransport, options: VirtioRngOptions): VirtioRng {
    const requestBytes = options?.requestBytes ?? 4096;
    if (!Number.isInteger(requestBytes) || requestBytes < 1 || requestBytes > 1 << 20) {
      throw outOfRange(`requestBytes must be an integer in [1, 1 MiB], got ${requestBytes}`);
    }
    const setup = DriverSetup.begin(transport, options);
    try {
      setup.negotiate(DeviceId.ENTROPY, 0n);
      // §5.4.2: one queue, requestq.
      setup.setUpQueues([REQUEST_QUEUE], 64);
      setup.driverOk();
      return new VirtioRng(setup.finish(), requestBytes);
    } catch (error) {
      throw setup.abandon(error);
    }
  }

  /** `length` random bytes from the device. */
  read(length: number, options: { signal?: AbortSignal } = {}): Promise<Buffer> {
    try {
      this.checkOpen();
      if (!inInt31Range(length, WHOLE)) throw outOfRange(`length must be an integer in [0, 2^31 - 1], got ${length}`);
    } catch (error) {
      return Promise.reject(error);
    }
    // One request in a slot free now: its promise is the caller's.
    if (length > 0 && length <= this.requestBytes && options.signal === undefined) {
      const slot = this.slots.tryAcquire();
      if (slot >= 0) return this.readOne(slot, length);
    }
    return this.readParts(length, options);
  }

  private async readParts(length: number, options: { signal?: AbortSignal }): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    // One failing part stops the others.
    const stop = new AbortController();
    const signal = stop.signal;
    // Every part listens on it (slot wait and completion wait).
    setMaxListeners(0, signal);
    const outer = options.signal;
    if (outer?.aborted) stop.abort(outer.reason);
    const forward = (): void => stop.abort(outer?.reason);
    outer?.addEventListener('abort', forward, { once: true });
    const parts: Promise<void>[] = [];
    for (let start = 0; start < length; start += this.requestBytes) {
      parts.push(this.fill(out, start, Math.min(this.requestBytes, length - start), signal));
    }
    const results = await Promise.allSettled(
      parts.map((part) =>
        part.catch((error: unknown) => {
          stop.abort(error);
          throw error;
        }),
      ),
    );
    outer?.removeEventListener('abort', forward);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw options.signal?.aborted ? firstAbort(results, failed) : rootCause(results, failed);
    return out;
  }

  /** An endless stream of random bytes; destroy it to stop. */
  createReadStream(options: { highWaterMark?: number } = {}): Readable {
    return requestStream(options.highWaterMark ?? 16384, (size, signal) =>
      this.read(Math.min(size, this.requestBytes * this.queue(REQUEST_QUEUE).size), { signal }),
    );
  }

  override close(): void {
    if (this.closed) return;
    super.close();
    this.slots?.fail(new CanceledError('virtio-rng is closed'));
    if (this.buffers && this.deviceReleased) this.memory.free(this.buffers);
  }

  /**
   * One request of `length` (≤ requestBytes) bytes in `slot`; what the
   * device returns short (an empty or partial buffer) is read on as a
   * part would be.
   */
  private readOne(slot: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    const offset = slot * this.requestBytes;
    // The slot goes back only when the device has returned the buffer (see fill).
    const release = (): void => this.slots.release(slot);
    return new Promise<Buffer>((resolve, reject) => {
      this.queue(REQUEST_QUEUE).enqueue(
        { writable: [{ region: this.buffers, offset, length }] },
        (len) => {
          out.set(this.bufferBytes.subarray(offset, offset + len), 0);
          release();
          resolve(
            len === length ? out : this.fill(out, len, length - len, undefined, len === 0 ? 1 : 0).then(() => out),
          );
        },
        reject,
        { timeoutMs: this.requestTimeoutMs, reclaim: release },
      );
    });
  }

  /**
   * Fills out[start, start + length) request by request; `signal` (none: the rest of a one-request read) stops the slot
   * wait and the completion wait.
   */
  private async fill(
    out: Buffer,
    start: number,
    length: number,
    signal: AbortSignal | undefined,
    empty = 0,
  ): Promise<void> {
    let done = 0;
    const queue = this.queue(REQUEST_QUEUE);
    const view = this.bufferBytes;
    while (done < length) {
      const slot = await this.slots.acquire(signal);
      if (this.closed) {
        this.slots.release(slot);
        throw new CanceledError('virtio-rng closed during the read');
      }
      const offset = slot * this.requestBytes;
      const at = start + done;
      const release = (): void => this.slots.release(slot);
      // The slot goes back only when the device has returned the buffer — at completion, after the
      // copy, or for a request given up on when the device gives it back late or is reset (reclaim).
      const copied = queue
        .submit(
          { writable: [{ region: this.buffers, offset, length: length - done }] },
          { timeoutMs: this.requestTimeoutMs, reclaim: release },
        )
        .then((len) => {
          out.set(view.subarray(offset, offset + len), at);
          release();
          return len;
        });
      const len = await abortable(copied, signal);
      done += len;
      if (len > 0) empty = 0;
      else if (++empty >= MAX_EMPTY_COMPLETIONS) {
        throw new ProtocolError('rng-empty', `virtio-rng returned ${MAX_EMPTY_COMPLETIONS} empty buffers in a row`);
      }
    }
  }
}

function rootCause(results: PromiseSettledResult<void>[], first: PromiseRejectedResult): unknown {
  // Parts stopped by our own controller fail with AbortError; report what stopped them.
  const real = results.find(
    (r): r is PromiseRejectedResult => r.status === 'rejected' && (r.reason as { code?: string })?.code !== 'ABORT_ERR',
  );
  return (real ?? first).reason;
}

function firstAbort(results: PromiseSettledResult<void>[], first: PromiseRejectedResult): unknown {
  const aborted = results.find(
    (r): r is PromiseRejectedResult => r.status === 'rejected' && (r.reason as { code?: string })?.code === 'ABORT_ERR',
  );
  return (aborted ?? first).reason;
}
