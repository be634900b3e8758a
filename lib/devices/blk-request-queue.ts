import { DeviceIoError, ProtocolError } from '../errors';
import type { DmaRegion } from '../platform';
import type { QueueBuffer, Virtqueue } from '../queue';
import { BLK_REQ_HEADER_SIZE, BlkRequestType, BlkStatus } from '../spec';
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

/**
 * One request queue of a virtio-blk device and its request slots: a
 * header and a status byte per chain the ring can hold, in one DMA region
 * the driver allocated. Each slot's header view and buffers are made once;
 * a request costs its own promise and little else.
 */
export class BlkRequestQueue {
  readonly slots: SlotPool;
  private readonly headers: DataView[];
  private readonly headerBuffers: QueueBuffer[];
  private readonly statusBuffers: QueueBuffer[];

  constructor(
    readonly queue: Virtqueue,
    /** queue.size × SLOT_BYTES, 16-byte aligned. */
    readonly memory: DmaRegion,
  ) {
    const count = queue.size;
    this.slots = new SlotPool(count);
    this.headers = Array.from({ length: count }, (_, slot) => new DataView(memory.view, memory.offset + slot * SLOT_BYTES, SLOT_BYTES));
    this.headerBuffers = Array.from({ length: count }, (_, slot) => ({ region: memory, offset: slot * SLOT_BYTES, length: BLK_REQ_HEADER_SIZE }));
    this.statusBuffers = Array.from({ length: count }, (_, slot) => ({ region: memory, offset: slot * SLOT_BYTES + STATUS_AT, length: 1 }));
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
  send<T>(slot: number, transfer: Transfer, timeoutMs: number | undefined, hooks: TransferHooks, result: T): Promise<T> {
    const header = this.headers[slot];
    header.setUint32(0, transfer.type, true);
    header.setUint32(4, 0, true);
    header.setBigUint64(8, transfer.sector, true);
    header.setUint8(STATUS_AT, 0xff);
    // Arrays of their exact length (a push would grow them past it).
    const out = transfer.out ?? NONE;
    const into = transfer.in ?? NONE;
    const readable = new Array<QueueBuffer>(1 + out.length);
    readable[0] = this.headerBuffers[slot];
    for (let i = 0; i < out.length; i++) readable[1 + i] = out[i];
    const writable = new Array<QueueBuffer>(into.length + 1);
    for (let i = 0; i < into.length; i++) writable[i] = into[i];
    writable[into.length] = this.statusBuffers[slot];
    // The data buffers and the slot are the device's until it returns the chain or a reset completes:
    // a request that timed out or was rejected gives them back only then (reclaim).
    const giveBack = (): void => {
      hooks.release?.();
      this.slots.release(slot);
    };
    return new Promise<T>((resolve, reject) => {
      this.queue.enqueue(
        { readable, writable },
        (len) => {
          const status = header.getUint8(STATUS_AT);
          const failure = checkCompletion(transfer, status, len);
          if (failure === undefined) hooks.complete?.();
          giveBack();
          if (failure === undefined) resolve(result);
          else reject(failure);
        },
        reject,
        { timeoutMs, reclaim: giveBack },
      );
    });
  }
}

/** The error a completed request stands for, or undefined when it succeeded (§5.2.6). */
function checkCompletion(transfer: Transfer, status: number, len: number): Error | undefined {
  // The device writes the data, then the status byte; a len short of that means it did not.
  const expected = (transfer.type === BlkRequestType.IN ? dataBytes(transfer.in) : 0) + 1;
  // A failed request may write only its status byte (the data is not valid then): only len 0 is short.
  const short = status === BlkStatus.OK ? len < expected : len < 1;
  if (short) {
    return new ProtocolError(len === 0 ? 'blk-status-missing' : 'blk-short-read', `virtio-blk request type ${transfer.type} at sector ${transfer.sector}: the device reported ${len} bytes written, ${expected} expected`);
  }
  if (status === BlkStatus.OK) return undefined;
  const what = status === BlkStatus.IOERR ? 'an I/O error' : status === BlkStatus.UNSUPP ? 'unsupported request' : `unknown status ${status}`;
  return new DeviceIoError(`virtio-blk request type ${transfer.type} at sector ${transfer.sector}: ${what}`, status);
}

function dataBytes(buffers?: QueueBuffer[]): number {
  let total = 0;
  for (const b of buffers ?? []) total += b.length ?? b.region.size - (b.offset ?? 0);
  return total;
}
