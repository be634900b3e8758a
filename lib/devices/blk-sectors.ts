import { invalidArgType, invalidArgValue, outOfRange, ReadOnlyError } from '../errors';
import { BLK_SECTOR_SIZE } from '../spec/blk';
import type { BlkInfo } from './blk-info';

/**
 * What a block request may address (virtio 1.2 §5.2.6: 512-byte sectors
 * within the capacity, whole blocks of blk_size (§5.2.4) where that is
 * above 512, no writes to a VIRTIO_BLK_F_RO device), checked before
 * anything is sent.
 */

export const SECTOR_BIG = BigInt(BLK_SECTOR_SIZE);
const MAX_SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

/** The length of one buffer read(n) allocates, or of a stream's chunk: what one Buffer holds here. */
export function checkLength(length: number): number {
  if (!Number.isInteger(length) || length < 1 || length % BLK_SECTOR_SIZE !== 0 || length > 2 ** 31) {
    throw invalidArgValue(
      `length must be a positive multiple of ${BLK_SECTOR_SIZE} bytes up to 2 GiB, got ${length}`,
      'range',
    );
  }
  return length;
}

/** A byte offset on the disk: a safe integer or a bigint, ≥ 0, on a sector boundary. */
export function toByteOffset(name: string, value: number | bigint): bigint {
  let offset: bigint;
  if (typeof value === 'bigint') offset = value;
  else if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw outOfRange(`${name} must be a safe integer or a bigint, got ${value}`);
    offset = BigInt(value);
  } else throw invalidArgType(`${name} must be a number or a bigint, got ${typeof value}`);
  if (offset < 0n || offset % SECTOR_BIG !== 0n)
    throw invalidArgValue(`${name} must be a sector-aligned byte offset ≥ 0, got ${offset}`, 'range');
  return offset;
}

export function toSector(sector: number | bigint): bigint {
  if (typeof sector === 'bigint') {
    if (sector < 0n) throw outOfRange(`sector must be ≥ 0, got ${sector}`);
    return sector;
  }
  if (!Number.isSafeInteger(sector) || sector < 0)
    throw outOfRange(`sector must be a non-negative integer, got ${sector}`);
  return BigInt(sector);
}

/**
 * The capacity sectorInRange() checks against: the capacity in sectors as
 * a number (at most 2^53 - 1), or -1 for a disk whose logical blocks are
 * larger than 512 bytes (alignment is checkRange()'s to judge).
 */
export function fastCapacity(info: BlkInfo): number {
  return info.blockSize > BLK_SECTOR_SIZE ? -1 : Number(info.capacity > MAX_SAFE_BIG ? MAX_SAFE_BIG : info.capacity);
}

/**
 * checkRange()'s common case in plain numbers, for the callback path that
 * allocates nothing per request: `sector` when it is a safe integer and
 * [sector, sector + bytes/512) lies within `capacity` (from
 * fastCapacity()), else -1 — checkRange() then decides, and throws what it
 * refuses.
 */
export function sectorInRange(sector: number | bigint, bytes: number, capacity: number): number {
  if (typeof sector !== 'number' || !Number.isSafeInteger(sector) || sector < 0 || bytes % BLK_SECTOR_SIZE !== 0)
    return -1;
  return sector + bytes / BLK_SECTOR_SIZE <= capacity ? sector : -1;
}

/**
 * Validates [sector, sector + bytes/512) against the capacity and the block
 * size (BlkInfo.blockSize: start and length in whole blocks); returns the
 * sector as bigint. A range, not a request: it may be as large as the
 * disk (a stream, a discard); VirtioBlk cuts requests to maxRequestBytes,
 * and read(n) caps what it allocates with checkLength().
 */
export function checkRange(info: BlkInfo, sector: number | bigint, bytes: number | bigint): bigint {
  // The common case in plain numbers (no bigint arithmetic per request); anything else, and every refusal, below.
  if (
    typeof sector === 'number' &&
    typeof bytes === 'number' &&
    Number.isSafeInteger(sector) &&
    sector >= 0 &&
    Number.isSafeInteger(bytes) &&
    bytes >= 0 &&
    bytes % BLK_SECTOR_SIZE === 0
  ) {
    const end = sector + bytes / BLK_SECTOR_SIZE;
    const block = info.blockSize;
    if (
      end <= Number.MAX_SAFE_INTEGER &&
      end <= Number(info.capacity) &&
      (block === BLK_SECTOR_SIZE || (bytes % block === 0 && sector % (block / BLK_SECTOR_SIZE) === 0))
    ) {
      return BigInt(sector);
    }
  }
  const start = toSector(sector);
  const length = typeof bytes === 'bigint' ? bytes : Number.isSafeInteger(bytes) ? BigInt(bytes) : -1n;
  if (length < 0n || length % SECTOR_BIG !== 0n)
    throw invalidArgValue(`length must be a multiple of ${BLK_SECTOR_SIZE} bytes, got ${String(bytes)}`, 'range');
  const end = start + length / SECTOR_BIG;
  if (end > info.capacity) {
    throw outOfRange(`sectors ${start}..${end} are beyond the device's capacity of ${info.capacity} sectors`);
  }
  const block = BigInt(info.blockSize);
  if (start % (block / SECTOR_BIG) !== 0n || length % block !== 0n) {
    // The logical block size (blk_size, which Linux's virtio_blk and QEMU take as such): a device fails a request
    // that does not start and end on a block boundary, so it is refused here before anything is sent.
    throw invalidArgValue(
      `sectors ${start}..${end} are not aligned to the device's ${info.blockSize}-byte blocks (blk_size)`,
      'range',
    );
  }
  return start;
}

/** ReadOnlyError for `what` on a read-only device (VIRTIO_BLK_F_RO). */
export function checkWritable(info: BlkInfo, what: string): void {
  if (info.readOnly) throw new ReadOnlyError(`${what}: the device is read-only (VIRTIO_BLK_F_RO)`);
}
