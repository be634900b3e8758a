import { CanceledError, DeviceIoError, invalidArgValue, outOfRange } from '../errors';
import { freeIfLive, type DmaRegion } from '../platform';
import { DEFAULT_INDIRECT_MAX } from '../queue/indirect-max';
import {
  BLK_DISCARD_SEGMENT_SIZE,
  BLK_ID_BYTES,
  BLK_SECTOR_SIZE,
  BLK_WRITE_ZEROES_FLAG_UNMAP,
  BlkFeature,
  BlkRequestType,
  BlkStatus,
} from '../spec/blk';
import { DeviceId } from '../spec/device-ids';
import { FeatureBit, features, hasFeature } from '../spec/features';
import type { VirtioTransport } from '../transport';
import { configBytes, readInfo, type BlkInfo } from './blk-info';
import { BlkRequestQueue, SLOT_BYTES, type Transfer, type TransferHooks } from './blk-request-queue';
import { checkRange, checkWritable, fastCapacity } from './blk-sectors';
import type { DriverSetup } from './driver-setup';
import { VirtioDriver, type DriverOptions, type StartedDevice } from './virtio-driver';

export interface BlkRange {
  /** First 512-byte sector. */
  sector: number | bigint;
  /** Number of sectors. */
  sectors: number;
}

export interface BlkRequestOptions {
  signal?: AbortSignal;
  /** Request queue to use (MQ); default: round robin. */
  queue?: number;
}

export interface VirtioBlkOptions extends DriverOptions {
  /** Largest transfer per request in bytes (default 256 KiB); bigger reads and writes are split. */
  maxRequestBytes?: number;
}

/** The device features VirtioBlk asks for (virtio 1.2 §5.2.3). */
const WANTED = features(
  BlkFeature.SIZE_MAX,
  BlkFeature.SEG_MAX,
  BlkFeature.RO,
  BlkFeature.BLK_SIZE,
  BlkFeature.FLUSH,
  BlkFeature.TOPOLOGY,
  BlkFeature.MQ,
  BlkFeature.DISCARD,
  BlkFeature.WRITE_ZEROES,
);

/** Checks VirtioBlk.open()'s own options before the device is touched. */
export function checkBlkOptions(options: VirtioBlkOptions): void {
  const max = options?.maxRequestBytes;
  if (max !== undefined && (!Number.isInteger(max) || max < BLK_SECTOR_SIZE || max > 1 << 26)) {
    throw outOfRange(`maxRequestBytes must be an integer in [512, 64 MiB], got ${max}`);
  }
}

/**
 * Steps 4–8 of virtio 1.2 §3.1.1 for a block device on `setup`: features,
 * the configuration read (blk-info.ts), the request queues, DRIVER_OK.
 */
export function setUpBlk(setup: DriverSetup, transport: VirtioTransport): BlkInfo {
  const features = setup.negotiate(DeviceId.BLOCK, WANTED);
  setup.requireConfig(configBytes(features), 'virtio-blk');
  const info = readInfo(transport, features);
  // §5.2.2: requestq1..requestqN at indices 0..N-1.
  setup.setUpQueues(
    Array.from({ length: info.queues }, (_, i) => i),
    128,
  );
  setup.driverOk();
  return info;
}

/**
 * VirtioBlk outside its data path: its request queues and their header
 * slots, the request size limits, DMA buffers (allocBuffer), the requests
 * of §5.2.6 that carry no data (FLUSH, GET_ID) or a segment table
 * (DISCARD, WRITE_ZEROES), and close. The data path (virtio-blk.ts)
 * extends it; the fields are shared, so the data path reads them directly.
 */
export abstract class VirtioBlkBase extends VirtioDriver {
  readonly info: BlkInfo;
  protected readonly requestQueues: BlkRequestQueue[];
  private readonly slotMemory: DmaRegion[];
  protected readonly maxRequestBytes: number;
  private readonly maxSegments: number;
  protected next = 0;
  protected readonly ownBuffers = new WeakMap<ArrayBufferView, DmaRegion>();
  /** The capacity as readInto()/writeFrom() check it without bigints (blk-sectors fastCapacity()). */
  protected readonly fastCapacity: number;

  protected constructor(started: StartedDevice, info: BlkInfo, options: VirtioBlkOptions) {
    super(started);
    this.info = info;
    this.fastCapacity = fastCapacity(info);
    this.slotMemory = [];
    try {
      this.requestQueues = Array.from({ length: info.queues }, (_, i) => {
        const queue = this.queue(i);
        const region = this.memory.allocate(queue.size * SLOT_BYTES, 16);
        this.slotMemory.push(region);
        return new BlkRequestQueue(queue, region);
      });
    } catch (error) {
      // The device has seen none of them; open()'s abandon() closes it.
      for (const region of this.slotMemory) this.memory.free(region);
      throw error;
    }
    // Descriptors per request: header + data segments + status; indirect tables hold up to indirectMax.
    const indirect = hasFeature(this.features, FeatureBit.INDIRECT_DESC);
    const perChain = Math.max(
      ...this.requestQueues.map((q) => q.queue.size),
      indirect ? (options.indirectMax ?? DEFAULT_INDIRECT_MAX) : 0,
    );
    this.maxSegments = Math.max(1, Math.min(info.segMax ?? Infinity, perChain - 2));
    const limit = info.sizeMax !== undefined ? this.maxSegments * info.sizeMax : Infinity;
    this.maxRequestBytes = Math.max(
      BLK_SECTOR_SIZE,
      floorSectors(Math.min(options.maxRequestBytes ?? 256 * 1024, limit)),
    );
  }

  /** A Buffer in DMA memory: reads into it and writes from it need no copy. Give it back with freeBuffer(). */
  allocBuffer(size: number): Buffer {
    const region = this.memory.allocate(size, BLK_SECTOR_SIZE);
    const buffer = Buffer.from(region.view, region.offset, size);
    this.ownBuffers.set(buffer, region);
    return buffer;
  }

  freeBuffer(buffer: Buffer): void {
    const region = this.ownBuffers.get(buffer);
    if (!region) throw invalidArgValue('this buffer did not come from allocBuffer() of this device', 'range');
    this.ownBuffers.delete(buffer);
    this.memory.free(region);
  }

  /** Makes written data durable (FLUSH); without the feature the device writes through and this resolves at once. */
  async flush(options: BlkRequestOptions = {}): Promise<void> {
    this.checkOpen();
    if (!this.info.flush) return;
    await this.submit({ type: BlkRequestType.FLUSH, sector: 0n }, options, {}, undefined);
  }

  /** The device ID string (GET_ID, up to 20 ASCII characters). */
  async getId(options: BlkRequestOptions = {}): Promise<string> {
    this.checkOpen();
    const region = this.memory.allocate(BLK_ID_BYTES);
    let id = '';
    await this.submit(
      { type: BlkRequestType.GET_ID, sector: 0n, in: [{ region }] },
      options,
      {
        complete: () => {
          const bytes = Buffer.from(new Uint8Array(region.view, region.offset, BLK_ID_BYTES));
          const end = bytes.indexOf(0);
          id = bytes.subarray(0, end < 0 ? BLK_ID_BYTES : end).toString('latin1');
        },
        release: () => freeIfLive(this.memory, region),
      },
      undefined,
    );
    return id;
  }

  /** Tells the device these ranges are unused (DISCARD). */
  discard(ranges: readonly BlkRange[], options: BlkRequestOptions = {}): Promise<void> {
    const limits = this.info.discard;
    if (!limits)
      return Promise.reject(
        new DeviceIoError('the device does not support discard (VIRTIO_BLK_F_DISCARD)', BlkStatus.UNSUPP),
      );
    return this.segmentsRequest(BlkRequestType.DISCARD, ranges, limits, 0, options);
  }

  /** Writes zeroes over these ranges (WRITE_ZEROES); `unmap` lets the device deallocate them. */
  writeZeroes(ranges: readonly BlkRange[], options: BlkRequestOptions & { unmap?: boolean } = {}): Promise<void> {
    const limits = this.info.writeZeroes;
    if (!limits)
      return Promise.reject(
        new DeviceIoError('the device does not support write zeroes (VIRTIO_BLK_F_WRITE_ZEROES)', BlkStatus.UNSUPP),
      );
    return this.segmentsRequest(
      BlkRequestType.WRITE_ZEROES,
      ranges,
      limits,
      options.unmap ? BLK_WRITE_ZEROES_FLAG_UNMAP : 0,
      options,
    );
  }

  override close(): void {
    if (this.closed) return;
    super.close();
    for (const q of this.requestQueues ?? [])
      q.slots.fail(new CanceledError('virtio-blk closed while the request waited for a slot'));
    if (this.deviceReleased) for (const region of this.slotMemory ?? []) this.memory.free(region);
  }

  /** One request on a request queue (VirtioBlk: a free slot at once, or after waiting for one). */
  protected abstract submit<T>(
    transfer: Transfer,
    options: BlkRequestOptions,
    hooks: TransferHooks,
    result: T,
  ): Promise<T>;

  private async segmentsRequest(
    type: number,
    ranges: readonly BlkRange[],
    limits: { maxSectors: number; maxSegments: number },
    flags: number,
    options: BlkRequestOptions,
  ): Promise<void> {
    this.checkOpen();
    checkWritable(this.info, type === BlkRequestType.DISCARD ? 'discard' : 'write zeroes');
    if (!Array.isArray(ranges) || ranges.length === 0) throw invalidArgValue('at least one range is needed', 'range');
    if (ranges.length > limits.maxSegments)
      throw outOfRange(`${ranges.length} ranges, the device takes at most ${limits.maxSegments} per request`);
    const sectors = ranges.map((range, i) => {
      if (!Number.isInteger(range?.sectors) || range.sectors < 1 || range.sectors > limits.maxSectors) {
        throw outOfRange(`range ${i}: sectors must be an integer in [1, ${limits.maxSectors}], got ${range?.sectors}`);
      }
      return checkRange(this.info, range.sector, range.sectors * BLK_SECTOR_SIZE);
    });
    const region = this.memory.allocate(ranges.length * BLK_DISCARD_SEGMENT_SIZE);
    const view = new DataView(region.view, region.offset, region.size);
    ranges.forEach((range, i) => {
      view.setBigUint64(i * BLK_DISCARD_SEGMENT_SIZE, sectors[i], true);
      view.setUint32(i * BLK_DISCARD_SEGMENT_SIZE + 8, range.sectors, true);
      view.setUint32(i * BLK_DISCARD_SEGMENT_SIZE + 12, flags, true);
    });
    await this.submit(
      { type, sector: 0n, out: [{ region }] },
      options,
      { release: () => freeIfLive(this.memory, region) },
      undefined,
    );
  }
}

const floorSectors = (n: number): number => Math.floor(n / BLK_SECTOR_SIZE) * BLK_SECTOR_SIZE;
