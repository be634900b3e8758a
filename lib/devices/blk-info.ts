import { TransportError } from '../errors';
import { BLK_SECTOR_SIZE, BlkConfig, BlkFeature, hasFeature } from '../spec';
import type { VirtioTransport } from '../transport';

/** What the device told about itself (virtio 1.2 §5.2.4), as negotiated. */
export interface BlkInfo {
  /** Size in 512-byte sectors. */
  readonly capacity: bigint;
  readonly bytes: bigint;
  /** Block size (BLK_SIZE), else 512: requests start and end on it (a misaligned one is a RangeError, nothing sent). */
  readonly blockSize: number;
  readonly readOnly: boolean;
  /** Most data segments per request (SEG_MAX), if limited; a seg_max of 0 reads as 1. */
  readonly segMax?: number;
  /** Largest data segment in bytes (SIZE_MAX), if limited; a size_max of 1..511 is raised to 512 (see sizeMaxUsed). */
  readonly sizeMax?: number;
  readonly flush: boolean;
  readonly discard?: { maxSectors: number; maxSegments: number; alignment: number };
  readonly writeZeroes?: { maxSectors: number; maxSegments: number; mayUnmap: boolean };
  readonly topology?: { physicalBlockExp: number; alignmentOffset: number; minIoSize: number; optIoSize: number };
  /** Request queues in use (MQ: num_queues, else 1). */
  readonly queues: number;
}

/** Request queues used at most; a device offering more has the rest left idle (§5.2.6.2 lets the driver use fewer). */
const MAX_QUEUES = 64;
/** Largest capacity whose byte count fits 64 bits. */
const MAX_CAPACITY = (1n << 55n) - 1n;

/** Bytes of config space the fields valid under `negotiated` reach (§5.2.4). */
export function configBytes(negotiated: bigint): number {
  const ends: [number, number][] = [
    [-1, BlkConfig.capacity + 8],
    [BlkFeature.SIZE_MAX, BlkConfig.size_max + 4],
    [BlkFeature.SEG_MAX, BlkConfig.seg_max + 4],
    [BlkFeature.BLK_SIZE, BlkConfig.blk_size + 4],
    [BlkFeature.TOPOLOGY, BlkConfig.topology_opt_io_size + 4],
    [BlkFeature.MQ, BlkConfig.num_queues + 2],
    [BlkFeature.DISCARD, BlkConfig.discard_sector_alignment + 4],
    [BlkFeature.WRITE_ZEROES, BlkConfig.write_zeroes_may_unmap + 1],
  ];
  return Math.max(...ends.filter(([bit]) => bit < 0 || hasFeature(negotiated, bit)).map(([, end]) => end));
}

/** Reads the config fields the negotiated features make valid (§5.2.4), in one generation. */
export function readInfo(transport: VirtioTransport, negotiated: bigint): BlkInfo {
  const has = (bit: number): boolean => hasFeature(negotiated, bit);
  const c = transport.config;
  return c.atomic(() => {
    const capacity = c.read64(BlkConfig.capacity);
    if (capacity > MAX_CAPACITY)
      throw new TransportError(
        TransportError.CONFIG_INVALID,
        `${transport.label}: capacity ${capacity} sectors is more bytes than 64 bits count`,
      );
    const offered = has(BlkFeature.MQ) ? c.read16(BlkConfig.num_queues) : 1;
    if (offered < 1)
      throw new TransportError(
        TransportError.CONFIG_INVALID,
        `${transport.label}: num_queues is 0 with VIRTIO_BLK_F_MQ`,
      );
    const queues = Math.min(offered, MAX_QUEUES);
    const blockSize = has(BlkFeature.BLK_SIZE) ? c.read32(BlkConfig.blk_size) : BLK_SECTOR_SIZE;
    return {
      capacity,
      bytes: capacity * BigInt(BLK_SECTOR_SIZE),
      // The logical block size, as Linux's virtio_blk takes it (blk_queue_logical_block_size): requests start and end
      // on it (blk-sectors.ts). Linux refuses a device whose blk_size is not a power of two in [512, page size]
      // (blk_validate_block_size); here such a value reads as 512.
      blockSize: blockSize >= BLK_SECTOR_SIZE && (blockSize & (blockSize - 1)) === 0 ? blockSize : BLK_SECTOR_SIZE,
      readOnly: has(BlkFeature.RO),
      // Linux's virtio_blk takes a seg_max of 0 as 1 ("at least one SG element, whatever they say"); so do we.
      // A huge one is cut to the descriptors a chain can have (VirtioBlk's maxSegments).
      segMax: has(BlkFeature.SEG_MAX) ? Math.max(1, c.read32(BlkConfig.seg_max)) : undefined,
      sizeMax: has(BlkFeature.SIZE_MAX) ? sizeMaxUsed(c.read32(BlkConfig.size_max)) : undefined,
      flush: has(BlkFeature.FLUSH),
      discard: has(BlkFeature.DISCARD)
        ? {
            maxSectors: positive(c.read32(BlkConfig.max_discard_sectors)) ?? 1,
            maxSegments: positive(c.read32(BlkConfig.max_discard_seg)) ?? 1,
            alignment: c.read32(BlkConfig.discard_sector_alignment),
          }
        : undefined,
      writeZeroes: has(BlkFeature.WRITE_ZEROES)
        ? {
            maxSectors: positive(c.read32(BlkConfig.max_write_zeroes_sectors)) ?? 1,
            maxSegments: positive(c.read32(BlkConfig.max_write_zeroes_seg)) ?? 1,
            mayUnmap: c.read8(BlkConfig.write_zeroes_may_unmap) !== 0,
          }
        : undefined,
      topology: has(BlkFeature.TOPOLOGY)
        ? {
            physicalBlockExp: c.read8(BlkConfig.topology_physical_block_exp),
            alignmentOffset: c.read8(BlkConfig.topology_alignment_offset),
            minIoSize: c.read16(BlkConfig.topology_min_io_size),
            optIoSize: c.read32(BlkConfig.topology_opt_io_size),
          }
        : undefined,
      queues,
    };
  });
}

/** A device-given limit of 0 means none was given. */
const positive = (n: number): number | undefined => (n > 0 ? n : undefined);

/**
 * The size_max used (§5.2.4: the largest data segment). Linux's virtio_blk
 * hands it to the block layer as max_segment_size: a value below a page
 * was raised to a page (blk_queue_max_segment_size, "set to minimum");
 * since the queue_limits rework 0 takes the block layer's default and
 * 1..page-1 makes blk_validate_limits refuse the device. Here 0 means no
 * limit given, and 1..511 is raised to one sector: below that a request of
 * whole sectors may need more segments than seg_max allows, and every I/O
 * would fail. BlkInfo.sizeMax is the value used.
 */
function sizeMaxUsed(sizeMax: number): number | undefined {
  return sizeMax === 0 ? undefined : Math.max(BLK_SECTOR_SIZE, sizeMax);
}
