import { DeviceIoError, ProtocolError } from '../errors';
import type { DmaRegion } from '../platform';
import type { QueueBuffer, QueueRequest, Virtqueue } from '../queue';
import { BLK_REQ_HEADER_SIZE, BlkRequestType, BlkStatus } from '../spec/blk';
import { SlotPool } from './slot-pool';

/** Per request: the 16-byte header, then the status byte, in one small DMA slot. */
export const SLOT_BYTES = 32;
const STATUS_AT = BLK_REQ_HEADER_SIZE;
const NONE: readonly QueueBuffer[] = [];

/** One virtio-blk request (§5.2.6) before it has a slot. */
export interface Transfer {
  type: number;
  sector: bigint;
  /** Device-readable data after the header. */
  out?: QueueBuffer[];
  /** Device-writable data before the status byte. */
  in?: QueueBuffer[];
}

/**
 * `complete` runs when the device completed the request successfully (the
 * data may be read then); `release` runs exactly once when the device no
 * longer holds the buffers: at completion; for a request that timed out,
 * was aborted or was rejected by a reset or close, when the device gives
 * the chain back or a reset completes (never, if none does); at once when
 * the request never reached the device.
 */
export interface TransferHooks {
  complete?: () => void;
  release?: () => void;
}

/** Hooks of a request with nothing to copy or free. */
export const NO_HOOKS: TransferHooks = Object.freeze({});

/**
 * One slot's request while it is in flight. Made once per slot with its
 * callbacks and chain arrays, and reused by each request in the slot: a
 * request costs its caller's promise and nothing else made here. What a
 * request sets lives until the device gives the slot back (release).
 */
class SlotRequest {
  type = 0;
  sector: number | bigint = 0;
  /** Bytes the device must write before the status byte when it reports OK. */
  dataIn = 0;
  hooks: TransferHooks = NO_HOOKS;
  result: unknown = undefined;
  resolve: (value: unknown) => void = ignore;
  reject: (error: unknown) => void = ignore;
  /** A request sent by sendOneCallback(): settled through this instead of resolve and reject. */
  callback: BlkCallback<unknown> | undefined = undefined;
  /** The data buffer of a one-segment request (its fields are rewritten per request). */
  readonly data: { region: DmaRegion; offset: number; length: number };
  /** Header + data readable, status writable; header readable, data + status writable; header, status. */
  readonly outChain: QueueRequest;
  readonly inChain: QueueRequest;
  readonly bareChain: QueueRequest;
  readonly options: { timeoutMs: number | undefined; reclaim: () => void };
  readonly done: (len: number) => void;
  readonly failed: (error: unknown) => void;

  constructor(owner: BlkRequestQueue, slot: number, memory: DmaRegion) {
    const header: QueueBuffer = { region: memory, offset: slot * SLOT_BYTES, length: BLK_REQ_HEADER_SIZE };
    const status: QueueBuffer = { region: memory, offset: slot * SLOT_BYTES + STATUS_AT, length: 1 };
    this.data = { region: memory, offset: 0, length: 0 };
    this.outChain = { readable: [header, this.data], writable: [status] };
    this.inChain = { readable: [header], writable: [this.data, status] };
    this.bareChain = { readable: [header], writable: [status] };
    this.options = { timeoutMs: undefined, reclaim: () => owner.giveBack(slot) };
    this.done = (len) => owner.finish(slot, len);
    this.failed = (error) => {
      const callback = this.callback;
      if (!callback) return this.reject(error);
      try {
        callback(error as Error);
      } catch (thrown) {
        // Called while the queue rejects many (a reset, a close): a throwing callback must not stop that; it surfaces
        // as uncaught.
        queueMicrotask(() => {
          throw thrown;
        });
      }
    };
  }
}

function ignore(): void {}

/** A request's Node-style callback: an error, or null and the result. */
export type BlkCallback<T> = (error: Error | null, result?: T) => void;

/**
 * One request queue of a virtio-blk device and its request slots: a
 * header and a status byte per chain the ring can hold, in one DMA region
 * the driver allocated. Each slot's header view, buffers and callbacks are
 * made once.
 */
export class BlkRequestQueue {
  readonly slots: SlotPool;
  private readonly headers: DataView[];
  private readonly requests: SlotRequest[];
  /** Filled by capture() from inside `new Promise` (no executor closure per request). */
  private captured: { resolve: (value: unknown) => void; reject: (error: unknown) => void } = {
    resolve: ignore,
    reject: ignore,
  };
  private readonly capture = (resolve: (value: unknown) => void, reject: (error: unknown) => void): void => {
    this.captured.resolve = resolve;
    this.captured.reject = reject;
  };

  constructor(
    readonly queue: Virtqueue,
    /** queue.size × SLOT_BYTES, 16-byte aligned. */
    readonly memory: DmaRegion,
  ) {
    const count = queue.size;
    this.slots = new SlotPool(count);
    this.headers = Array.from(
      { length: count },
      (_, slot) => new DataView(memory.view, memory.offset + slot * SLOT_BYTES, SLOT_BYTES),
    );
    this.requests = Array.from({ length: count }, (_, slot) => new SlotRequest(this, slot, memory));
  }

  /**
   * Sends `transfer` in `slot` (acquired from `slots`): header, data,
   * status byte. Resolves with `result` when the device reports OK; rejects
   * with DeviceIoError for another status, ProtocolError when the used
   * length says the status (or the data) was not written. The slot goes
   * back, and hooks.release runs, when the device no longer holds the
   * buffers (see TransferHooks). The status is read once, before the slot
   * is reused.
   */
  send<T>(
    slot: number,
    transfer: Transfer,
    timeoutMs: number | undefined,
    hooks: TransferHooks,
    result: T,
  ): Promise<T> {
    // Arrays of their exact length (a push would grow them past it).
    const out = transfer.out ?? NONE;
    const into = transfer.in ?? NONE;
    const request = this.requests[slot];
    const readable = new Array<QueueBuffer>(1 + out.length);
    readable[0] = request.bareChain.readable![0];
    for (let i = 0; i < out.length; i++) readable[1 + i] = out[i];
    const writable = new Array<QueueBuffer>(into.length + 1);
    for (let i = 0; i < into.length; i++) writable[i] = into[i];
    writable[into.length] = request.bareChain.writable![0];
    const dataIn = transfer.type === BlkRequestType.IN ? dataBytes(into) : 0;
    return this.start(slot, transfer.type, transfer.sector, dataIn, { readable, writable }, timeoutMs, hooks, result);
  }

  /**
   * send() of a request with one data buffer: `length` bytes at the start
   * of `region` (device-writable for IN, readable otherwise), in the slot's
   * own chain. Nothing is allocated but the promise.
   */
  sendOne<T>(
    slot: number,
    type: number,
    sector: bigint,
    region: DmaRegion,
    length: number,
    timeoutMs: number | undefined,
    hooks: TransferHooks,
    result: T,
  ): Promise<T> {
    return this.start(
      slot,
      type,
      sector,
      type === BlkRequestType.IN ? length : 0,
      this.oneBufferChain(slot, type, region, length),
      timeoutMs,
      hooks,
      result,
    );
  }

  /**
   * sendOne() without a promise: `callback` is called once, later (never
   * from within this call), with null and `result` or with the error.
   * Nothing is allocated for the request.
   */
  sendOneCallback<T>(
    slot: number,
    type: number,
    sector: number | bigint,
    region: DmaRegion,
    length: number,
    timeoutMs: number | undefined,
    hooks: TransferHooks,
    result: T,
    callback: BlkCallback<T>,
  ): void {
    const chain = this.oneBufferChain(slot, type, region, length);
    this.prepare(slot, type, sector, type === BlkRequestType.IN ? length : 0, hooks, result);
    const request = this.requests[slot];
    request.callback = callback as BlkCallback<unknown>;
    const refused = this.place(request, chain, timeoutMs);
    // Refused before the device saw it (enqueue ran reclaim already): answered later, as promised.
    if (refused !== undefined) process.nextTick(callback, refused.error);
  }

  /** The slot's chain for one data buffer, `region` in it. */
  private oneBufferChain(slot: number, type: number, region: DmaRegion, length: number): QueueRequest {
    const request = this.requests[slot];
    request.data.region = region;
    request.data.length = length;
    return type === BlkRequestType.IN ? request.inChain : request.outChain;
  }

  /**
   * Hands `chain` to the queue with the slot's callbacks; what enqueue
   * threw when it refused the request (it ran reclaim, giveBack, already).
   */
  private place(
    request: SlotRequest,
    chain: QueueRequest,
    timeoutMs: number | undefined,
  ): { error: unknown } | undefined {
    request.options.timeoutMs = timeoutMs;
    try {
      // The queue copies the chain (ChainRecords, descriptors): the slot's arrays are free for its next request.
      this.queue.enqueue(chain, request.done, request.failed, request.options);
      return undefined;
    } catch (error) {
      return { error };
    } finally {
      // Not kept past the placement: a caller's region is not held alive by an idle slot.
      request.data.region = this.memory;
    }
  }

  /** Writes the request header and the slot's record of the request. */
  private prepare(
    slot: number,
    type: number,
    sector: number | bigint,
    dataIn: number,
    hooks: TransferHooks,
    result: unknown,
  ): void {
    const header = this.headers[slot];
    header.setUint32(0, type, true);
    header.setUint32(4, 0, true);
    // A safe-integer sector in two 32-bit halves: no bigint made per request (the callback path).
    if (typeof sector === 'number') {
      header.setUint32(8, sector % 2 ** 32, true);
      header.setUint32(12, Math.floor(sector / 2 ** 32), true);
    } else header.setBigUint64(8, sector, true);
    header.setUint8(STATUS_AT, 0xff);
    const request = this.requests[slot];
    request.type = type;
    request.sector = sector;
    request.dataIn = dataIn;
    request.hooks = hooks;
    request.result = result;
  }

  private start<T>(
    slot: number,
    type: number,
    sector: bigint,
    dataIn: number,
    chain: QueueRequest,
    timeoutMs: number | undefined,
    hooks: TransferHooks,
    result: T,
  ): Promise<T> {
    this.prepare(slot, type, sector, dataIn, hooks, result);
    const request = this.requests[slot];
    request.callback = undefined;
    const promise = new Promise<T>(
      this.capture as (resolve: (value: T) => void, reject: (error: unknown) => void) => void,
    );
    const reject = this.captured.reject;
    request.resolve = this.captured.resolve;
    request.reject = reject;
    // Refused: giveBack has forgotten the slot's callbacks, so the promise is rejected through its own.
    const refused = this.place(request, chain, timeoutMs);
    if (refused !== undefined) reject(refused.error);
    return promise;
  }

  /** The device completed the request in `slot` with `len` bytes written (Virtqueue.enqueue's done). */
  finish(slot: number, len: number): void {
    const request = this.requests[slot];
    const status = this.headers[slot].getUint8(STATUS_AT);
    const failure = checkCompletion(request, status, len);
    if (failure === undefined) request.hooks.complete?.();
    const { resolve, reject, result, callback } = request;
    this.giveBack(slot);
    if (callback) callback(failure ?? null, result);
    else if (failure === undefined) resolve(result);
    else reject(failure);
  }

  /**
   * The device no longer holds `slot`'s buffers (completion, or the
   * reclaim of a request answered early): the owner's release hook runs,
   * then the slot is free for the next request.
   */
  giveBack(slot: number): void {
    const request = this.requests[slot];
    const release = request.hooks.release;
    request.hooks = NO_HOOKS;
    request.result = undefined;
    request.resolve = ignore;
    request.reject = ignore;
    request.callback = undefined;
    release?.();
    this.slots.release(slot);
  }
}

/** The error a completed request stands for, or undefined when it succeeded (§5.2.6). */
function checkCompletion(request: SlotRequest, status: number, len: number): Error | undefined {
  // The device writes the data, then the status byte; a len short of that means it did not.
  const expected = request.dataIn + 1;
  // A failed request may write only its status byte (the data is not valid then): only len 0 is short.
  const short = status === BlkStatus.OK ? len < expected : len < 1;
  if (short) {
    return new ProtocolError(
      len === 0 ? 'blk-status-missing' : 'blk-short-read',
      `virtio-blk request type ${request.type} at sector ${request.sector}: the device reported ${len} bytes ` +
        `written, ${expected} expected`,
    );
  }
  if (status === BlkStatus.OK) return undefined;
  const what =
    status === BlkStatus.IOERR
      ? 'an I/O error'
      : status === BlkStatus.UNSUPP
        ? 'unsupported request'
        : `unknown status ${status}`;
  return new DeviceIoError(`virtio-blk request type ${request.type} at sector ${request.sector}: ${what}`, status);
}

function dataBytes(buffers: readonly QueueBuffer[]): number {
  let total = 0;
  for (const b of buffers) total += b.length ?? b.region.size - (b.offset ?? 0);
  return total;
}
