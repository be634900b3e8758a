import { BufferHeldError, ClosedError, invalidArgType, invalidArgValue, outOfRange } from '../errors';
import type { DmaAllocator } from '../platform';
import { NO_BUFFERS } from './descriptors';
import type { QueueBuffer, QueueRequest } from './queue-types';
import { inInt31Range } from '../util/int31';

const MAX_ADDRESS = Number.MAX_SAFE_INTEGER;
/** A time limit is above 0 (made once: the check runs for every request). */
const TIMEOUT_BOUNDS = { min: 0, minExclusive: true } as const;

/** What a request must fit: the queue's size and, with INDIRECT_DESC, its indirect table length (0 without). */
export interface RequestLimits {
  index: number;
  size: number;
  indirectMax: number;
}

/**
 * Checks a request at the public edge before anything is written
 * (virtio 1.2 §2.7.4.2: readable buffers first, a chain's total within 32
 * bits); returns its buffer count. Memory that was freed, or that a device
 * still holds from a request given up on, is refused as a buffer it may write.
 */
export function checkRequest(request: QueueRequest, limits: RequestLimits, memory: DmaAllocator): number {
  if (request === null || typeof request !== 'object')
    throw invalidArgType('a queue request must be an object { readable?, writable? }');
  const readable = request.readable ?? NO_BUFFERS;
  const writable = request.writable ?? NO_BUFFERS;
  if (!Array.isArray(readable) || !Array.isArray(writable))
    throw invalidArgType('readable and writable must be arrays of buffers');
  const count = readable.length + writable.length;
  if (count === 0) throw invalidArgValue('a queue request needs at least one buffer', 'range');
  if (count > limits.size && count > limits.indirectMax) {
    throw invalidArgValue(
      `a chain of ${count} buffers cannot fit queue ${limits.index} (size ${limits.size})`,
      'range',
    );
  }
  let total = 0;
  for (const buffer of readable) total += checkOwnedBuffer(buffer, false, memory);
  for (const buffer of writable) total += checkOwnedBuffer(buffer, true, memory);
  // §2.7.4.2: a chain's total length must fit in 32 bits.
  if (total > 0xffff_ffff) throw outOfRange(`a chain may carry at most 2^32 - 1 bytes, got ${total}`);
  return count;
}

function checkOwnedBuffer(buffer: QueueBuffer, writable: boolean, memory: DmaAllocator): number {
  const length = checkBuffer(buffer);
  // A freed region may already belong to someone else: the device must never get it.
  if (memory.wasFreed?.(buffer.region))
    throw new ClosedError('a buffer of this request lies in a DMA region that was freed');
  // Memory a device still holds from a request given up on may still be written by it: not a second time.
  if (writable && memory.isHeld?.(buffer.region, buffer.offset ?? 0, length)) {
    throw new BufferHeldError(
      `a writable buffer of this request overlaps memory the device still holds from a request that was given ` +
        `up on (timeout, abort, detach); wait for SubmitOptions.reclaim`,
    );
  }
  return length;
}

/** Checks one buffer's shape; returns its length. */
function checkBuffer(buffer: QueueBuffer): number {
  if (buffer === null || typeof buffer !== 'object' || buffer.region === null || typeof buffer.region !== 'object') {
    throw invalidArgType('a queue buffer must be { region: DmaRegion, offset?, length? }');
  }
  const { region } = buffer;
  const offset = buffer.offset ?? 0;
  const length = buffer.length ?? region.size - offset;
  if (
    !Number.isInteger(offset) ||
    offset < 0 ||
    !Number.isInteger(length) ||
    length < 1 ||
    offset + length > region.size
  ) {
    throw outOfRange(`buffer [${offset}, ${offset}+${length}) is empty or outside its ${region.size}-byte DMA region`);
  }
  // Number arithmetic, as writeDescriptor uses; no BigInt work per buffer on the submit path.
  if (Number(region.iova) + offset + length > MAX_ADDRESS) throw outOfRange('buffer device address beyond 2^53');
  return length;
}

/** Checks SubmitOptions.timeoutMs and reclaim. */
export function checkSubmitOptions(timeoutMs: unknown, reclaim: unknown): void {
  if (timeoutMs !== undefined && !inInt31Range(timeoutMs, TIMEOUT_BOUNDS)) {
    throw outOfRange(`timeoutMs must be a number in (0, 2^31 - 1], got ${String(timeoutMs)}`);
  }
  if (reclaim !== undefined && typeof reclaim !== 'function') throw invalidArgType('reclaim must be a function');
}

/** A copy of `request` with each buffer's offset and length fixed (for requests placed later). */
export function snapshotRequest(request: QueueRequest): QueueRequest {
  const copy = (list: readonly QueueBuffer[] | undefined): QueueBuffer[] =>
    (list ?? []).map(({ region, offset = 0, length }) => ({ region, offset, length: length ?? region.size - offset }));
  return { readable: copy(request.readable), writable: copy(request.writable) };
}
