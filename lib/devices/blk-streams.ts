import { Writable, type Readable } from 'node:stream';
import { BLK_SECTOR_SIZE } from '../spec';
import type { BlkInfo } from './blk-info';
import { SECTOR_BIG, checkLength, checkRange, checkWritable, toByteOffset } from './blk-sectors';
import { requestStream } from './slot-pool';
import { invalidArgValue } from '../errors';

/** What the streams need of a block driver (VirtioBlk). */
export interface BlkStreamDevice {
  readonly info: BlkInfo;
  read(sector: bigint, length: number, options: { signal?: AbortSignal }): Promise<Buffer>;
  write(sector: bigint, data: Buffer): Promise<void>;
}

export interface BlkReadStreamOptions {
  /** First byte (sector aligned; default 0). */
  start?: number | bigint;
  /** Byte after the last (sector aligned; default: the end of the disk). */
  end?: number | bigint;
  /** Bytes per read (a multiple of 512; default 64 KiB). */
  chunkSize?: number;
  highWaterMark?: number;
}

export interface BlkWriteStreamOptions {
  /** First byte (sector aligned; default 0). */
  start?: number | bigint;
  highWaterMark?: number;
}

/**
 * Sequential reads of [start, end) of the disk, each at most `chunkSize` bytes; destroying the stream aborts the read
 * in flight.
 */
export function createBlkReadStream(device: BlkStreamDevice, options: BlkReadStreamOptions): Readable {
  const chunk = checkLength(options.chunkSize ?? 65536);
  const start = toByteOffset('start', options.start ?? 0);
  const end = options.end === undefined ? device.info.bytes : toByteOffset('end', options.end);
  if (start > end) throw invalidArgValue(`stream start ${start} is after its end ${end}`, 'range');
  checkRange(device.info, start / SECTOR_BIG, end - start);
  let at = start;
  return requestStream(options.highWaterMark ?? chunk * 2, (_size, signal) => {
    if (at >= end) return null;
    const n = end - at < BigInt(chunk) ? Number(end - at) : chunk;
    const sector = at / SECTOR_BIG;
    at += BigInt(n);
    return device.read(sector, n, { signal });
  });
}

/**
 * Sequential writes from byte `start`; whole sectors go out as they fill, and the stream must end on a sector boundary.
 */
export function createBlkWriteStream(device: BlkStreamDevice, options: BlkWriteStreamOptions): Writable {
  let at = toByteOffset('start', options.start ?? 0);
  checkRange(device.info, at / SECTOR_BIG, 0);
  checkWritable(device.info, 'write');
  let held: Buffer = Buffer.alloc(0);
  const flushWhole = async (final: boolean): Promise<void> => {
    const whole = final ? held.length : held.length - (held.length % BLK_SECTOR_SIZE);
    if (final && whole % BLK_SECTOR_SIZE !== 0)
      throw invalidArgValue(
        `${whole % BLK_SECTOR_SIZE} bytes left over: a block stream must end on a sector boundary`,
        'range',
      );
    if (whole === 0) return;
    const data = held.subarray(0, whole);
    held = held.subarray(whole);
    await device.write(at / SECTOR_BIG, data);
    at += BigInt(whole);
  };
  return new Writable({
    highWaterMark: options.highWaterMark ?? 256 * 1024,
    write: (chunk: Buffer, _encoding, callback) => {
      held = held.length ? Buffer.concat([held, chunk]) : chunk;
      flushWhole(false).then(() => callback(), callback);
    },
    final: (callback) => {
      flushWhole(true).then(() => callback(), callback);
    },
  });
}
