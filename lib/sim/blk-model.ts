import {
  BLK_DISCARD_SEGMENT_SIZE,
  BLK_ID_BYTES,
  BLK_REQ_HEADER_SIZE,
  BLK_SECTOR_SIZE,
  BLK_WRITE_ZEROES_FLAG_UNMAP,
  BlkConfig,
  BlkFeature,
  BlkRequestType,
  BlkStatus,
  DeviceId,
  feature,
  hasFeature,
} from '../spec';
import type { SimConfigField, SimDeviceModel, SimRequest } from './sim-model';
import { eachPiece, gather, pieces, total, view } from './scatter-gather';
import { invalidArgType, invalidArgValue, outOfRange } from '../errors';

export interface BlkModelOptions {
  /**
   * The disk, used in place (not copied): its length must be a multiple of 512 (capacity = length / 512). Default: 1
   * MiB of zeroes.
   */
  disk?: Uint8Array;
  /** Offers VIRTIO_BLK_F_RO; OUT, DISCARD and WRITE_ZEROES then complete with IOERR and change nothing. */
  readOnly?: boolean;
  /** The GET_ID string: at most 20 ASCII bytes, no NUL (default 'sim-blk'). */
  id?: string;
  /** blk_size, always offered with VIRTIO_BLK_F_BLK_SIZE: a power of two ≥ 512 (default 512). */
  blkSize?: number;
  /** Offers VIRTIO_BLK_F_SEG_MAX: at most this many data buffers per IN/OUT request. */
  segMax?: number;
  /** Offers VIRTIO_BLK_F_SIZE_MAX: no data buffer of an IN/OUT request longer than this. */
  sizeMax?: number;
  /** Offers VIRTIO_BLK_F_FLUSH (default true). */
  flush?: boolean;
  /** Offers VIRTIO_BLK_F_DISCARD with these limits (alignment in sectors, default blkSize / 512). */
  discard?: { maxSectors: number; maxSegments: number; alignment?: number };
  /** Offers VIRTIO_BLK_F_WRITE_ZEROES with these limits; mayUnmap sets write_zeroes_may_unmap (default false). */
  writeZeroes?: { maxSectors: number; maxSegments: number; mayUnmap?: boolean };
  /** QueueNumMax of every request queue (default 128). */
  queueSize?: number;
  /** Number of request queues (default 1); more than 1 offers VIRTIO_BLK_F_MQ with num_queues. */
  numQueues?: number;
  /** 'async' completes each request on a later event-loop turn, not always in order (default 'sync'). */
  latency?: 'sync' | 'async';
  /** Any request touching one of these sectors completes with IOERR and changes nothing; the set is read live. */
  failSectors?: Set<number>;
}

export interface BlkModelStats {
  /** Chains handed to handle(). */
  requests: number;
  /** Requests executed, by the type in their header. */
  byType: Record<number, number>;
  /** FLUSH requests completed with OK. */
  flushes: number;
}

const U32_MAX = 0xffff_ffff;
const { OK, IOERR, UNSUPP } = BlkStatus;

/** Every field of struct virtio_blk_config up to write_zeroes_may_unmap (§5.2.4); padding is not listed. */
const CONFIG_FIELDS: readonly SimConfigField[] = [
  { offset: BlkConfig.capacity, width: 8 },
  { offset: BlkConfig.size_max, width: 4 },
  { offset: BlkConfig.seg_max, width: 4 },
  { offset: BlkConfig.geometry_cylinders, width: 2 },
  { offset: BlkConfig.geometry_heads, width: 1 },
  { offset: BlkConfig.geometry_sectors, width: 1 },
  { offset: BlkConfig.blk_size, width: 4 },
  { offset: BlkConfig.topology_physical_block_exp, width: 1 },
  { offset: BlkConfig.topology_alignment_offset, width: 1 },
  { offset: BlkConfig.topology_min_io_size, width: 2 },
  { offset: BlkConfig.topology_opt_io_size, width: 4 },
  // Read-only here: CONFIG_WCE is not offered.
  { offset: BlkConfig.writeback, width: 1 },
  { offset: BlkConfig.num_queues, width: 2 },
  { offset: BlkConfig.max_discard_sectors, width: 4 },
  { offset: BlkConfig.max_discard_seg, width: 4 },
  { offset: BlkConfig.discard_sector_alignment, width: 4 },
  { offset: BlkConfig.max_write_zeroes_sectors, width: 4 },
  { offset: BlkConfig.max_write_zeroes_seg, width: 4 },
  { offset: BlkConfig.write_zeroes_may_unmap, width: 1 },
];

function integer(name: string, value: number, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw outOfRange(`${name} must be an integer in [${min}, ${max}], got ${String(value)}`);
  }
  return value;
}

/** One request as parsed: the header, and the data byte counts in each direction. */
interface Parsed {
  readonly request: SimRequest;
  readonly type: number;
  readonly sector: bigint;
  /** Driver-to-device data: readable bytes after the header. */
  readonly dataIn: number;
  /** Device-to-driver data: writable bytes before the status byte. */
  readonly dataOut: number;
}

/** What a request came to: the status, and the data bytes written before the status byte. */
interface Outcome {
  status: number;
  written: number;
}

const fail = (status: number): Outcome => ({ status, written: 0 });

/** An async request not yet completed; canceled by reset, so it never touches memory the driver took back. */
interface Pending {
  readonly queue: number;
  canceled: boolean;
}

/**
 * The block device (virtio 1.2 §5.2) over an in-memory disk. Each request
 * is the chain of §5.2.6: a 16-byte header (le32 type, le32 reserved, le64
 * sector) at the start of the readable bytes, data, and a status byte as
 * the last writable byte; any part may be split over several buffers or
 * share one. The used length is the data bytes written plus the status.
 *
 * The model is also a checker: a request that breaks a driver requirement
 * of §5.2.6.1 (lengths, ranges, segment limits, data in the wrong
 * direction) completes with IOERR, an unknown or unoffered type or flag
 * with UNSUPP; a chain without a status byte completes with length 0.
 * Failed requests change nothing. DISCARD zeroes its ranges here (the
 * spec leaves discarded data undefined; drivers must not rely on zeroes).
 */
export class BlkModel implements SimDeviceModel {
  readonly deviceId = DeviceId.BLOCK;
  readonly features: bigint;
  readonly queueSizes: readonly number[];
  readonly config = new Uint8Array(BlkConfig.SIZE);
  readonly configFields = CONFIG_FIELDS;
  /** The disk, live: tests may read and fill it. */
  readonly disk: Uint8Array;
  readonly stats: BlkModelStats = { requests: 0, byType: {}, flushes: 0 };

  /** Capacity in 512-byte sectors. */
  private readonly capacity: bigint;
  private readonly readOnly: boolean;
  private readonly idBytes = new Uint8Array(BLK_ID_BYTES);
  private readonly segMax?: number;
  private readonly sizeMax?: number;
  private readonly discard?: { maxSectors: number; maxSegments: number };
  private readonly writeZeroes?: { maxSectors: number; maxSegments: number };
  private readonly async: boolean;
  private readonly failSectors?: Set<number>;
  private readonly pending = new Set<Pending>();
  private sequence = 0;

  constructor(options: BlkModelOptions = {}) {
    const disk = options.disk ?? new Uint8Array(1 << 20);
    if (!(disk instanceof Uint8Array)) throw invalidArgType('disk must be a Uint8Array');
    if (disk.length % BLK_SECTOR_SIZE !== 0)
      throw invalidArgValue(`disk length must be a multiple of ${BLK_SECTOR_SIZE}, got ${disk.length}`, 'range');
    this.disk = disk;
    this.capacity = BigInt(disk.length / BLK_SECTOR_SIZE);
    this.readOnly = options.readOnly ?? false;

    const id = options.id ?? 'sim-blk';
    if (typeof id !== 'string' || id.length > BLK_ID_BYTES || !isAsciiWithoutNul(id)) {
      throw outOfRange(`id must be at most ${BLK_ID_BYTES} ASCII characters without NUL, got ${JSON.stringify(id)}`);
    }
    for (let i = 0; i < id.length; i++) this.idBytes[i] = id.charCodeAt(i);

    const blkSize = integer('blkSize', options.blkSize ?? BLK_SECTOR_SIZE, BLK_SECTOR_SIZE, 0x8000_0000);
    if ((blkSize & (blkSize - 1)) !== 0)
      throw invalidArgValue(`blkSize must be a power of two, got ${blkSize}`, 'range');
    const queueSize = integer('queueSize', options.queueSize ?? 128, 1, 32768);
    const numQueues = integer('numQueues', options.numQueues ?? 1, 1, 0xffff);
    this.queueSizes = Array.from({ length: numQueues }, () => queueSize);
    const latency = options.latency ?? 'sync';
    if (latency !== 'sync' && latency !== 'async')
      throw invalidArgValue(`latency must be 'sync' or 'async', got ${String(latency)}`, 'range');
    this.async = latency === 'async';
    if (options.failSectors !== undefined && !(options.failSectors instanceof Set))
      throw invalidArgType('failSectors must be a Set of sector numbers');
    this.failSectors = options.failSectors;

    const config = view(this.config);
    config.setBigUint64(BlkConfig.capacity, this.capacity, true);
    config.setUint32(BlkConfig.blk_size, blkSize, true);
    let offered = feature(BlkFeature.BLK_SIZE);
    if (this.readOnly) offered |= feature(BlkFeature.RO);
    if (options.flush ?? true) offered |= feature(BlkFeature.FLUSH);
    if (options.sizeMax !== undefined) {
      this.sizeMax = integer('sizeMax', options.sizeMax, 1, U32_MAX);
      config.setUint32(BlkConfig.size_max, this.sizeMax, true);
      offered |= feature(BlkFeature.SIZE_MAX);
    }
    if (options.segMax !== undefined) {
      this.segMax = integer('segMax', options.segMax, 1, U32_MAX);
      config.setUint32(BlkConfig.seg_max, this.segMax, true);
      offered |= feature(BlkFeature.SEG_MAX);
    }
    if (numQueues > 1) {
      config.setUint16(BlkConfig.num_queues, numQueues, true);
      offered |= feature(BlkFeature.MQ);
    }
    if (options.discard) {
      const { maxSectors, maxSegments, alignment = blkSize / BLK_SECTOR_SIZE } = options.discard;
      this.discard = {
        maxSectors: integer('discard.maxSectors', maxSectors, 1, U32_MAX),
        maxSegments: integer('discard.maxSegments', maxSegments, 1, U32_MAX),
      };
      config.setUint32(BlkConfig.max_discard_sectors, maxSectors, true);
      config.setUint32(BlkConfig.max_discard_seg, maxSegments, true);
      config.setUint32(BlkConfig.discard_sector_alignment, integer('discard.alignment', alignment, 0, U32_MAX), true);
      offered |= feature(BlkFeature.DISCARD);
    }
    if (options.writeZeroes) {
      const { maxSectors, maxSegments, mayUnmap = false } = options.writeZeroes;
      this.writeZeroes = {
        maxSectors: integer('writeZeroes.maxSectors', maxSectors, 1, U32_MAX),
        maxSegments: integer('writeZeroes.maxSegments', maxSegments, 1, U32_MAX),
      };
      config.setUint32(BlkConfig.max_write_zeroes_sectors, maxSectors, true);
      config.setUint32(BlkConfig.max_write_zeroes_seg, maxSegments, true);
      config.setUint8(BlkConfig.write_zeroes_may_unmap, mayUnmap ? 1 : 0);
      offered |= feature(BlkFeature.WRITE_ZEROES);
    }
    this.features = offered;
  }

  handle(request: SimRequest): number | Promise<number> {
    this.stats.requests++;
    if (!this.async) return this.execute(request);
    // One or two turns, alternately: consecutive requests complete out of order.
    let turns = 1 + (this.sequence++ % 2);
    const pending: Pending = { queue: request.queue, canceled: false };
    this.pending.add(pending);
    return new Promise((resolve) => {
      const step = (): void => {
        if (pending.canceled || --turns === 0) {
          this.pending.delete(pending);
          resolve(pending.canceled ? 0 : this.execute(request));
        } else {
          setImmediate(step);
        }
      };
      setImmediate(step);
    });
  }

  /** Device reset: requests still in flight are dropped without touching their buffers. */
  reset(): void {
    for (const pending of this.pending) pending.canceled = true;
  }

  resetQueue(queue: number): void {
    for (const pending of this.pending) if (pending.queue === queue) pending.canceled = true;
  }

  /** Runs one request now; returns the used length (data written + status byte, or 0 without a status byte). */
  private execute(request: SimRequest): number {
    const writableBytes = total(request.writable);
    // No status byte: nothing can be reported.
    if (writableBytes === 0) return 0;
    const readableBytes = total(request.readable);
    let outcome: Outcome;
    if (readableBytes < BLK_REQ_HEADER_SIZE) {
      outcome = fail(IOERR);
    } else {
      const header = view(gather(request.readable, 0, BLK_REQ_HEADER_SIZE));
      const type = header.getUint32(0, true);
      this.stats.byType[type] = (this.stats.byType[type] ?? 0) + 1;
      outcome = this.run({
        request,
        type,
        sector: header.getBigUint64(8, true),
        dataIn: readableBytes - BLK_REQ_HEADER_SIZE,
        dataOut: writableBytes - 1,
      });
    }
    eachPiece(request.writable, writableBytes - 1, 1, (piece) => (piece[0] = outcome.status));
    return outcome.written + 1;
  }

  private run(req: Parsed): Outcome {
    switch (req.type) {
      case BlkRequestType.IN:
        return this.read(req);
      case BlkRequestType.OUT:
        return this.write(req);
      case BlkRequestType.FLUSH:
        return this.flush(req);
      case BlkRequestType.GET_ID:
        return this.getId(req);
      case BlkRequestType.DISCARD:
        return this.discard ? this.zeroRanges(req, this.discard, false) : fail(UNSUPP);
      case BlkRequestType.WRITE_ZEROES:
        return this.writeZeroes ? this.zeroRanges(req, this.writeZeroes, true) : fail(UNSUPP);
      default:
        // GET_LIFETIME, SECURE_ERASE, zone requests and unknown types: not offered (§5.2.6.2).
        return fail(UNSUPP);
    }
  }

  /**
   * IN and OUT data checks (§5.2.6.1): a multiple of 512 bytes, within
   * capacity, within seg_max/size_max when offered, no failing sector.
   * Returns the first byte offset on the disk, or a failure.
   */
  private transfer(req: Parsed, start: number, length: number, buffers: readonly Uint8Array[]): number | Outcome {
    if (length % BLK_SECTOR_SIZE !== 0) return fail(IOERR);
    const sectors = length / BLK_SECTOR_SIZE;
    if (req.sector + BigInt(sectors) > this.capacity) return fail(IOERR);
    if (this.segMax !== undefined || this.sizeMax !== undefined) {
      const { count, largest } = pieces(buffers, start, length);
      if (count > (this.segMax ?? Infinity) || largest > (this.sizeMax ?? Infinity)) return fail(IOERR);
    }
    const sector = Number(req.sector);
    if (this.touchesFailing(sector, sectors)) return fail(IOERR);
    return sector * BLK_SECTOR_SIZE;
  }

  private read(req: Parsed): Outcome {
    // Device-readable data after the header has no place in a read.
    if (req.dataIn !== 0) return fail(IOERR);
    const at = this.transfer(req, 0, req.dataOut, req.request.writable);
    if (typeof at !== 'number') return at;
    eachPiece(req.request.writable, 0, req.dataOut, (piece, offset) =>
      piece.set(this.disk.subarray(at + offset, at + offset + piece.length)),
    );
    return { status: OK, written: req.dataOut };
  }

  private write(req: Parsed): Outcome {
    // A write's only device-writable byte is the status.
    if (req.dataOut !== 0) return fail(IOERR);
    // §5.2.6.2: with RO offered, a write fails and writes nothing.
    if (this.readOnly) return fail(IOERR);
    const at = this.transfer(req, BLK_REQ_HEADER_SIZE, req.dataIn, req.request.readable);
    if (typeof at !== 'number') return at;
    eachPiece(req.request.readable, BLK_REQ_HEADER_SIZE, req.dataIn, (piece, offset) =>
      this.disk.set(piece, at + offset),
    );
    return { status: OK, written: 0 };
  }

  /** The disk is memory, so every completed write is already stable; FLUSH only checks and counts. */
  private flush(req: Parsed): Outcome {
    if (!hasFeature(this.features, BlkFeature.FLUSH)) return fail(UNSUPP);
    // §5.2.6.1: sector MUST be 0; data is only a SHOULD NOT and is ignored.
    if (req.sector !== 0n) return fail(IOERR);
    this.stats.flushes++;
    return { status: OK, written: 0 };
  }

  private getId(req: Parsed): Outcome {
    // §5.2.6.1: the data is exactly 20 device-writable bytes.
    if (req.dataIn !== 0 || req.dataOut !== BLK_ID_BYTES) return fail(IOERR);
    eachPiece(req.request.writable, 0, BLK_ID_BYTES, (piece, at) =>
      piece.set(this.idBytes.subarray(at, at + piece.length)),
    );
    return { status: OK, written: BLK_ID_BYTES };
  }

  /**
   * DISCARD and WRITE_ZEROES: one or more 16-byte segments (le64 sector,
   * le32 num_sectors, le32 flags). The whole request is checked before any
   * range is zeroed, so a failed request changes nothing.
   */
  private zeroRanges(req: Parsed, limits: { maxSectors: number; maxSegments: number }, unmapAllowed: boolean): Outcome {
    if (req.dataOut !== 0) return fail(IOERR);
    if (this.readOnly) return fail(IOERR);
    if (req.dataIn === 0 || req.dataIn % BLK_DISCARD_SEGMENT_SIZE !== 0) return fail(IOERR);
    const count = req.dataIn / BLK_DISCARD_SEGMENT_SIZE;
    if (count > limits.maxSegments) return fail(IOERR);
    const bytes = view(gather(req.request.readable, BLK_REQ_HEADER_SIZE, req.dataIn));
    const ranges: { sector: bigint; sectors: number; flags: number }[] = [];
    for (let i = 0; i < count; i++) {
      const at = i * BLK_DISCARD_SEGMENT_SIZE;
      ranges.push({
        sector: bytes.getBigUint64(at, true),
        sectors: bytes.getUint32(at + 8, true),
        flags: bytes.getUint32(at + 12, true),
      });
    }
    // §5.2.6.2: unknown flags, or unmap on a discard, are UNSUPP.
    const known = unmapAllowed ? BLK_WRITE_ZEROES_FLAG_UNMAP : 0;
    if (ranges.some((r) => (r.flags & ~known) !== 0)) return fail(UNSUPP);
    for (const r of ranges) {
      if (r.sectors > limits.maxSectors || r.sector + BigInt(r.sectors) > this.capacity) return fail(IOERR);
      if (this.touchesFailing(Number(r.sector), r.sectors)) return fail(IOERR);
    }
    for (const r of ranges) {
      const start = Number(r.sector) * BLK_SECTOR_SIZE;
      this.disk.fill(0, start, start + r.sectors * BLK_SECTOR_SIZE);
    }
    return { status: OK, written: 0 };
  }

  private touchesFailing(sector: number, sectors: number): boolean {
    if (!this.failSectors) return false;
    for (const s of this.failSectors) if (s >= sector && s < sector + sectors) return true;
    return false;
  }
}

/** Every UTF-16 unit in 0x01..0x7f: the ASCII, NUL-free text the device ID field holds (virtio 1.2 §5.2.6). */
function isAsciiWithoutNul(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const unit = text.charCodeAt(i);
    if (unit === 0 || unit > 0x7f) return false;
  }
  return true;
}
