import type { Readable, Writable } from 'node:stream';
import { AbortError, CanceledError, invalidArgType, outOfRange } from '../errors';
import { freeIfLive, type DmaRegion } from '../platform';
import type { QueueBuffer } from '../queue';
import { BLK_SECTOR_SIZE, BlkRequestType } from '../spec/blk';
import { DeviceId } from '../spec/device-ids';
import type { VirtioTransport } from '../transport';
import type { BlkInfo } from './blk-info';
import { checkLength, checkRange, checkWritable, sectorInRange } from './blk-sectors';
import {
  createBlkReadStream,
  createBlkWriteStream,
  type BlkReadStreamOptions,
  type BlkWriteStreamOptions,
} from './blk-streams';
import { DriverSetup } from './driver-setup';
import { BlkRequestQueue, NO_HOOKS, type BlkCallback, type Transfer, type TransferHooks } from './blk-request-queue';
import { abortable } from './slot-pool';
import type { StartedDevice } from './virtio-driver';
import {
  VirtioBlkBase,
  checkBlkOptions,
  setUpBlk,
  type BlkRequestOptions,
  type VirtioBlkOptions,
} from './virtio-blk-base';

export type { BlkRange, BlkRequestOptions, VirtioBlkOptions } from './virtio-blk-base';

/** The default of every request's options: made once, not per call. */
const NO_OPTIONS: BlkRequestOptions = Object.freeze({});

/**
 * The block device (virtio 1.2 §5.2). Reads and writes take sector
 * numbers (512 bytes each) and lengths in whole sectors; ranges are checked
 * against the capacity before anything is sent. Buffers from allocBuffer()
 * go to the device as they are; others are copied through DMA memory.
 * Requests run in parallel up to the queue size; more wait their turn.
 *
 * This file is the data path (read, write, readInto, writeFrom); opening,
 * buffers, FLUSH, GET_ID, DISCARD, WRITE_ZEROES and close are its base class
 * (virtio-blk-base.ts).
 */
export class VirtioBlk extends VirtioBlkBase {
  static readonly deviceId = DeviceId.BLOCK;

  private constructor(started: StartedDevice, info: BlkInfo, options: VirtioBlkOptions) {
    super(started, info, options);
  }

  /** Initializes the device on `transport` (which must hold a block device). */
  static open(transport: VirtioTransport, options: VirtioBlkOptions): VirtioBlk {
    checkBlkOptions(options);
    const setup = DriverSetup.begin(transport, options);
    try {
      const info = setUpBlk(setup, transport);
      return new VirtioBlk(setup.finish(), info, options);
    } catch (error) {
      throw setup.abandon(error);
    }
  }

  /** Reads `length` bytes (a multiple of 512) from `sector`, or fills `target` (its length a multiple of 512). */
  read(
    sector: number | bigint,
    lengthOrTarget: number | Uint8Array,
    options: BlkRequestOptions = NO_OPTIONS,
  ): Promise<Buffer> {
    let target: Buffer;
    let start: bigint;
    try {
      this.checkOpen();
      target =
        typeof lengthOrTarget === 'number' ? Buffer.allocUnsafe(checkLength(lengthOrTarget)) : asBuffer(lengthOrTarget);
      start = this.rangeStart(sector, target.length);
    } catch (error) {
      return Promise.reject(error);
    }
    if (target.length === 0) return Promise.resolve(target);
    // One request: its promise is the caller's.
    if (target.length <= this.maxRequestBytes) return this.transferIn(start, target, options, target);
    return this.split(start, target, (at, part) => this.transferIn(at, part, options, undefined)).then(() => target);
  }

  /** checkRange(), its common case in plain numbers first (about a sixth of the time; no bigint arithmetic). */
  private rangeStart(sector: number | bigint, bytes: number): bigint {
    const fast = sectorInRange(sector, bytes, this.fastCapacity);
    return fast >= 0 ? BigInt(fast) : checkRange(this.info, sector, bytes);
  }

  /** Writes `data` (its length a multiple of 512) at `sector`. */
  write(sector: number | bigint, data: Uint8Array, options: BlkRequestOptions = NO_OPTIONS): Promise<void> {
    let source: Buffer;
    let start: bigint;
    try {
      this.checkOpen();
      checkWritable(this.info, 'write');
      source = asBuffer(data);
      start = this.rangeStart(sector, source.length);
    } catch (error) {
      return Promise.reject(error);
    }
    if (source.length === 0) return Promise.resolve();
    if (source.length <= this.maxRequestBytes) return this.transferOut(start, source, options);
    return this.split(start, source, (at, part) => this.transferOut(at, part, options));
  }

  /**
   * read() into `target` with a Node-style callback instead of a promise,
   * for loops where a promise per request is what the GC has to collect
   * (see README "Benchmarks"). `callback(null, target)` or
   * `callback(error)` is called once, never from within this call. With a
   * buffer from allocBuffer(), one segment and a free slot, the request
   * allocates nothing in the library; otherwise it goes through read().
   */
  readInto(
    sector: number | bigint,
    target: Uint8Array,
    callback: BlkCallback<Buffer>,
    options: BlkRequestOptions = NO_OPTIONS,
  ): void {
    if (typeof callback !== 'function') throw invalidArgType('callback must be a function');
    this.transferWithCallback(BlkRequestType.IN, sector, target, callback as BlkCallback<unknown>, options);
  }

  /**
   * write() with a Node-style callback (see readInto()): `callback(null)` or `callback(error)`, once, never from within
   * this call.
   */
  writeFrom(
    sector: number | bigint,
    data: Uint8Array,
    callback: BlkCallback<void>,
    options: BlkRequestOptions = NO_OPTIONS,
  ): void {
    if (typeof callback !== 'function') throw invalidArgType('callback must be a function');
    this.transferWithCallback(BlkRequestType.OUT, sector, data, callback as BlkCallback<unknown>, options);
  }

  /**
   * readInto() (IN, called back with the buffer) and writeFrom() (OUT):
   * an allocBuffer() buffer, a safe-integer sector within the disk and a
   * free slot go out at once, in plain numbers; anything else through
   * checkRange() and, if need be, read() or write().
   */
  private transferWithCallback(
    type: number,
    sector: number | bigint,
    data: Uint8Array,
    callback: BlkCallback<unknown>,
    options: BlkRequestOptions,
  ): void {
    const reading = type === BlkRequestType.IN;
    const region = data instanceof Buffer && (reading || !this.info.readOnly) ? this.ownBuffers.get(data) : undefined;
    const start = region === undefined || this.closed ? -1 : sectorInRange(sector, data.length, this.fastCapacity);
    if (
      start >= 0 &&
      this.sendDirect(type, start, data as Buffer, region!, options, reading ? data : undefined, callback)
    )
      return;
    this.transferChecked(type, sector, data, callback, options);
  }

  /**
   * transferWithCallback() past its fast path: checkRange(), then the
   * callback path or read()/write(). A function of its own because its
   * closures capture `callback` and `result`: V8 10.2 (Node 18) allocates
   * the context that holds them at the entry of the function that declares
   * them (48 bytes), also when the fast path returns before any closure is
   * made.
   */
  private transferChecked(
    type: number,
    sector: number | bigint,
    data: Uint8Array,
    callback: BlkCallback<unknown>,
    options: BlkRequestOptions,
  ): void {
    const reading = type === BlkRequestType.IN;
    let buffer: Buffer;
    let checked: bigint;
    try {
      this.checkOpen();
      if (!reading) checkWritable(this.info, 'write');
      buffer = asBuffer(data);
      checked = checkRange(this.info, sector, buffer.length);
    } catch (error) {
      process.nextTick(callback, error);
      return;
    }
    const result = reading ? buffer : undefined;
    const own = this.ownBuffers.get(buffer);
    if (own !== undefined && this.sendDirect(type, checked, buffer, own, options, result, callback)) return;
    // Out of the promise chain, so that a callback that throws is an uncaught exception, as on the direct path.
    (reading ? this.read(checked, buffer, options) : this.write(checked, buffer, options)).then(
      () => process.nextTick(callback, null, result),
      (error: Error) => process.nextTick(callback, error),
    );
  }

  /**
   * Sequential reads from byte `start` to `end` (default: the end of the
   * disk), both sector aligned, as safe integers or bigints. The range may
   * span the whole disk; each read in it is at most `chunkSize` bytes.
   */
  createReadStream(options: BlkReadStreamOptions = {}): Readable {
    return createBlkReadStream(this, options);
  }

  /**
   * Sequential writes from byte `start` (sector aligned, a safe integer or a bigint); the total written must be whole
   * sectors.
   */
  createWriteStream(options: BlkWriteStreamOptions = {}): Writable {
    return createBlkWriteStream(this, options);
  }

  // ---- internals ----

  /** Runs `each` over request-sized parts of `data` in parallel; the first failure stops the rest. */
  private async split(
    start: bigint,
    data: Buffer,
    each: (sector: bigint, part: Buffer) => Promise<void>,
  ): Promise<void> {
    const parts: Promise<void>[] = [];
    for (let offset = 0; offset < data.length; offset += this.maxRequestBytes) {
      const part = data.subarray(offset, Math.min(offset + this.maxRequestBytes, data.length));
      parts.push(each(start + BigInt(offset / BLK_SECTOR_SIZE), part));
    }
    const results = await Promise.allSettled(parts);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  private transferIn<T>(sector: bigint, target: Buffer, options: BlkRequestOptions, result: T): Promise<T> {
    const direct = this.directRegion(target);
    const region = direct ?? this.memory.allocate(target.length, 64);
    const hooks: TransferHooks = direct
      ? NO_HOOKS
      : {
          complete: () => target.set(new Uint8Array(region.view, region.offset, target.length)),
          release: () => freeIfLive(this.memory, region),
        };
    return this.submitData(BlkRequestType.IN, sector, region, target.length, options, hooks, result);
  }

  private transferOut(sector: bigint, source: Buffer, options: BlkRequestOptions): Promise<void> {
    const direct = this.directRegion(source);
    const region = direct ?? this.memory.allocate(source.length, 64);
    if (!direct) new Uint8Array(region.view, region.offset, source.length).set(source);
    const hooks: TransferHooks = direct ? NO_HOOKS : { release: () => freeIfLive(this.memory, region) };
    return this.submitData(BlkRequestType.OUT, sector, region, source.length, options, hooks, undefined);
  }

  /**
   * A read or write of `length` bytes at the start of `region`: in one
   * segment, with a slot free now and no signal to watch, it goes out
   * through BlkRequestQueue.sendOne (nothing allocated but the promise);
   * otherwise as a Transfer through submit().
   */
  private submitData<T>(
    type: number,
    sector: bigint,
    region: DmaRegion,
    length: number,
    options: BlkRequestOptions,
    hooks: TransferHooks,
    result: T,
  ): Promise<T> {
    const ready = this.readyQueue(options, length);
    if (ready)
      return ready.sendOne(
        ready.slots.tryAcquire(),
        type,
        sector,
        region,
        length,
        this.requestTimeoutMs,
        hooks,
        result,
      );
    const data = this.segments(region, length);
    return this.submit(
      type === BlkRequestType.IN ? { type, sector, in: data } : { type, sector, out: data },
      options,
      hooks,
      result,
    );
  }

  /**
   * The callback path of readInto()/writeFrom(): a buffer from
   * allocBuffer() of one segment, with a slot free now and no signal or
   * queue asked for, goes out at once; false leaves it to the promise path.
   */
  private sendDirect<T>(
    type: number,
    sector: number | bigint,
    buffer: Buffer,
    region: DmaRegion,
    options: BlkRequestOptions,
    result: T,
    callback: BlkCallback<T>,
  ): boolean {
    if (buffer.length === 0) return false;
    const ready = this.readyQueue(options, buffer.length);
    if (!ready) return false;
    ready.sendOneCallback(
      ready.slots.tryAcquire(),
      type,
      sector,
      region,
      buffer.length,
      this.requestTimeoutMs,
      NO_HOOKS,
      result,
      callback,
    );
    return true;
  }

  /**
   * The request queue a one-segment request of `length` bytes goes out on
   * at once — the next in the round robin, with a slot free now, no signal
   * to watch and no queue asked for — or undefined (the slower paths).
   */
  private readyQueue(options: BlkRequestOptions, length: number): BlkRequestQueue | undefined {
    if (options.signal !== undefined || options.queue !== undefined || this.closed) return undefined;
    if (length > this.maxRequestBytes || length > (this.info.sizeMax ?? Infinity)) return undefined;
    const requestQueue = this.requestQueues[this.next];
    if (!requestQueue.slots.hasFree()) return undefined;
    this.next = (this.next + 1) % this.requestQueues.length;
    return requestQueue;
  }

  /** A region-shaped window on `view` when it lies in our DMA memory (no copy needed), else undefined. */
  private directRegion(view: Buffer): DmaRegion | undefined {
    // A Buffer from allocBuffer() is its region, as it is (no lookup, nothing made).
    const own = this.ownBuffers.get(view);
    if (own !== undefined) return own;
    const iova = this.memory.addressOf?.(view);
    return iova === undefined
      ? undefined
      : { view: view.buffer as ArrayBuffer, offset: view.byteOffset, size: view.byteLength, iova };
  }

  /** Splits a data area into segments of at most size_max bytes (§5.2.4). */
  private segments(region: DmaRegion, length: number): QueueBuffer[] {
    const max = this.info.sizeMax ?? length;
    const out = new Array<QueueBuffer>(Math.ceil(length / max));
    for (let i = 0, at = 0; at < length; i++, at += max)
      out[i] = { region, offset: at, length: Math.min(max, length - at) };
    return out;
  }

  /**
   * One request (BlkRequestQueue.send) on the picked queue, in a free slot
   * at once or, when none is free, after waiting for one (FIFO; the signal
   * stops the wait). Resolves with `result`. hooks.release runs once the
   * device no longer holds the buffers (see TransferHooks), at once when
   * the request never reached it.
   */
  protected submit<T>(transfer: Transfer, options: BlkRequestOptions, hooks: TransferHooks, result: T): Promise<T> {
    let requestQueue: BlkRequestQueue;
    const { signal } = options;
    try {
      this.checkOpen();
      requestQueue = this.requestQueues[this.pickQueue(options.queue)];
      if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason });
    } catch (error) {
      hooks.release?.();
      return Promise.reject(error);
    }
    const slot = signal === undefined ? requestQueue.slots.tryAcquire() : -1;
    if (slot >= 0) return requestQueue.send(slot, transfer, this.requestTimeoutMs, hooks, result);
    const sent = requestQueue.slots.acquire(signal).then(
      (slot) => {
        if (this.closed) {
          requestQueue.slots.release(slot);
          hooks.release?.();
          throw new CanceledError('virtio-blk closed while the request waited for a slot');
        }
        return requestQueue.send(slot, transfer, this.requestTimeoutMs, hooks, result);
      },
      (error: unknown) => {
        hooks.release?.();
        throw error;
      },
    );
    return abortable(sent, signal);
  }

  private pickQueue(requested?: number): number {
    if (requested !== undefined) {
      if (!Number.isInteger(requested) || requested < 0 || requested >= this.requestQueues.length) {
        throw outOfRange(`queue must be an integer in [0, ${this.requestQueues.length - 1}], got ${requested}`);
      }
      return requested;
    }
    const index = this.next;
    this.next = (this.next + 1) % this.requestQueues.length;
    return index;
  }
}

function asBuffer(data: Uint8Array): Buffer {
  if (!(data instanceof Uint8Array)) throw invalidArgType('data must be a Buffer or Uint8Array');
  return Buffer.isBuffer(data) ? data : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
}
