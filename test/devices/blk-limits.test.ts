/**
 * Ranges against what the disk holds, not what one request carries, and
 * the device's segment limits as the driver uses them (finding 9): a read
 * stream over a disk larger than 2 GiB, stream offsets as bigints, a
 * discard of more than 2 GiB, and size_max / seg_max values no request of
 * whole sectors could honour.
 */
import { VirtioBlk } from '../../lib/devices';
import { BlkModel, type SimDeviceModel, type SimRequest } from '../../lib/sim';
import {
  BLK_REQ_HEADER_SIZE,
  BlkConfig,
  BlkFeature,
  BlkRequestType,
  BlkStatus,
  DeviceId,
  feature,
} from '../../lib/spec';
import { sameBytes } from '../support/contracts/contract';
import { SIM_VARIANTS, simRig, type SimRig } from '../support/sim-rig';

const SECTOR = 512;
const GiB = 1024 ** 3;

/**
 * A block device (§5.2) whose capacity is far beyond any array the test can
 * allocate: sector s reads as its number (le64) in its first 8 bytes, then
 * zeroes, unless written; writes are kept per sector. DISCARD completes OK
 * and records its ranges.
 */
class SparseDisk implements SimDeviceModel {
  readonly deviceId = DeviceId.BLOCK;
  readonly features = feature(BlkFeature.DISCARD);
  readonly queueSizes = [128];
  readonly config = new Uint8Array(BlkConfig.SIZE);
  readonly written = new Map<bigint, Buffer>();
  readonly discarded: { sector: bigint; sectors: number }[] = [];

  constructor(readonly bytes: bigint) {
    const view = new DataView(this.config.buffer);
    view.setBigUint64(BlkConfig.capacity, bytes / BigInt(SECTOR), true);
    view.setUint32(BlkConfig.max_discard_sectors, 0xffff_ffff, true);
    view.setUint32(BlkConfig.max_discard_seg, 1, true);
  }

  /** What sector `s` holds. */
  sector(s: bigint): Buffer {
    const written = this.written.get(s);
    if (written) return written;
    const data = Buffer.alloc(SECTOR);
    data.writeBigUInt64LE(s, 0);
    return data;
  }

  handle(request: SimRequest): number {
    const readable = Buffer.concat(request.readable.map((b) => Buffer.from(b)));
    const type = readable.readUInt32LE(0);
    const sector = readable.readBigUInt64LE(8);
    const writable = request.writable;
    const dataOut = request.writableBytes - 1;
    const status = (value: number): void => {
      const last = writable[writable.length - 1];
      last[last.length - 1] = value;
    };
    if (type === BlkRequestType.IN) {
      const data = Buffer.concat(Array.from({ length: dataOut / SECTOR }, (_, i) => this.sector(sector + BigInt(i))));
      let at = 0;
      for (const target of writable) {
        const n = Math.min(target.length, data.length - at);
        target.set(data.subarray(at, at + n));
        at += n;
      }
      status(BlkStatus.OK);
      return dataOut + 1;
    }
    if (type === BlkRequestType.OUT) {
      const data = readable.subarray(BLK_REQ_HEADER_SIZE);
      for (let i = 0; i < data.length / SECTOR; i++)
        this.written.set(sector + BigInt(i), Buffer.from(data.subarray(i * SECTOR, (i + 1) * SECTOR)));
      status(BlkStatus.OK);
      return 1;
    }
    if (type === BlkRequestType.DISCARD) {
      const segment = readable.subarray(BLK_REQ_HEADER_SIZE);
      this.discarded.push({ sector: segment.readBigUInt64LE(0), sectors: segment.readUInt32LE(8) });
      status(BlkStatus.OK);
      return 1;
    }
    status(BlkStatus.UNSUPP);
    return 1;
  }
}

/** Sector number tags of each 512-byte sector in `data`. */
const tags = (data: Buffer): bigint[] =>
  Array.from({ length: data.length / SECTOR }, (_, i) => data.readBigUInt64LE(i * SECTOR));
const range = (from: bigint, count: number): bigint[] => Array.from({ length: count }, (_, i) => from + BigInt(i));

describe.each(SIM_VARIANTS)('virtio-blk ranges and limits on the %s sim', (_label, variant) => {
  let rig: SimRig | undefined;
  let blk: VirtioBlk | undefined;
  afterEach(() => {
    blk?.close();
    const violations = rig?.close() ?? [];
    blk = undefined;
    rig = undefined;
    expect(violations).toEqual([]);
  });

  function open(model: SimDeviceModel): VirtioBlk {
    rig = simRig(variant, model);
    blk = VirtioBlk.open(rig.transport, { memory: rig.pool });
    return blk;
  }

  test('finding 9: createReadStream() over a 5 GiB disk does not throw; reads chunkSize pieces from 0', async () => {
    const disk = open(new SparseDisk(5n * BigInt(GiB)));
    const stream = disk.createReadStream({ chunkSize: 4096 });
    const chunks: Buffer[] = [];
    for await (const chunk of stream) {
      chunks.push(chunk as Buffer);
      if (chunks.length === 3) break;
    }
    expect(chunks.map((c) => c.length)).toEqual([4096, 4096, 4096]);
    expect(tags(Buffer.concat(chunks))).toEqual(range(0n, 24));
  });

  test('finding 9: a read stream at the end of a 5 GiB disk (bigint or number bounds) reads right', async () => {
    const model = new SparseDisk(5n * BigInt(GiB) + 8192n);
    const disk = open(model);
    const end = model.bytes;
    const start = end - 3n * 4096n - 1024n;
    for (const [from, to] of [
      [start, end],
      [Number(start), Number(end)],
    ] as const) {
      const chunks: Buffer[] = [];
      for await (const chunk of disk.createReadStream({ start: from, end: to, chunkSize: 4096 }))
        chunks.push(chunk as Buffer);
      expect(chunks.map((c) => c.length)).toEqual([4096, 4096, 4096, 1024]);
      expect(tags(Buffer.concat(chunks))).toEqual(range(start / BigInt(SECTOR), 26));
    }
    // Without an end: to the end of the disk.
    const tail: Buffer[] = [];
    for await (const chunk of disk.createReadStream({ start: end - 1024n })) tail.push(chunk as Buffer);
    expect(tags(Buffer.concat(tail))).toEqual(range(end / BigInt(SECTOR) - 2n, 2));
  });

  test('finding 9: stream offsets past capacity, unaligned, negative or beyond safe integers refused up front', () => {
    const model = new SparseDisk(5n * BigInt(GiB));
    const disk = open(model);
    expect(() => disk.createReadStream({ end: model.bytes + 512n })).toThrow(RangeError);
    expect(() => disk.createReadStream({ start: model.bytes + 512n, end: model.bytes + 1024n })).toThrow(RangeError);
    expect(() => disk.createReadStream({ start: 2 ** 53 })).toThrow(RangeError);
    expect(() => disk.createReadStream({ start: 100n })).toThrow(RangeError);
    expect(() => disk.createReadStream({ start: -512 })).toThrow(RangeError);
    expect(() => disk.createReadStream({ start: 1024n, end: 512n })).toThrow(RangeError);
    expect(() => disk.createReadStream({ start: '0' as unknown as number })).toThrow(TypeError);
    expect(() => disk.createWriteStream({ start: model.bytes + 512n })).toThrow(RangeError);
    expect(() => disk.createWriteStream({ start: -512 })).toThrow(RangeError);
  });

  test('finding 9: a write stream at a bigint offset past 4 GiB lands there', async () => {
    const model = new SparseDisk(5n * BigInt(GiB));
    const disk = open(model);
    const at = 4n * BigInt(GiB) + 512n;
    const data = Buffer.alloc(3 * SECTOR, 0x5a);
    await new Promise<void>((resolve, reject) => {
      const stream = disk.createWriteStream({ start: at });
      stream.on('error', reject).on('finish', resolve);
      stream.end(data);
    });
    sameBytes(Buffer.concat(range(at / BigInt(SECTOR), 3).map((s) => model.sector(s))), data, 'the disk');
    sameBytes(await disk.read(at / BigInt(SECTOR), 3 * SECTOR), data);
  });

  test('finding 9: a discard over 2 GiB is checked against the capacity, not the per-request length', async () => {
    const model = new SparseDisk(5n * BigInt(GiB));
    const disk = open(model);
    const sectors = Number((4n * BigInt(GiB)) / BigInt(SECTOR));
    await disk.discard([{ sector: 1n, sectors }]);
    expect(model.discarded).toEqual([{ sector: 1n, sectors }]);
    await expect(disk.discard([{ sector: model.bytes / BigInt(SECTOR) - 1n, sectors: 2 }])).rejects.toThrow(RangeError);
  });

  /** A BlkModel that enforces size_max 4096 and seg_max 4, whose config then says otherwise. */
  function lyingLimits(field: 'size_max' | 'seg_max', value: number): BlkModel {
    const disk = new Uint8Array(1 << 20);
    for (let i = 0; i < disk.length; i++) disk[i] = (i * 7) & 0xff;
    const model = new BlkModel({ disk, sizeMax: 4096, segMax: 4 });
    new DataView(model.config.buffer, model.config.byteOffset).setUint32(BlkConfig[field], value, true);
    return model;
  }

  test.each([1, 100, 511])(
    'finding 9: a size_max of %i (below a sector) is raised to 512, so I/O goes within seg_max',
    async (sizeMax) => {
      const model = lyingLimits('size_max', sizeMax);
      const disk = open(model);
      expect(disk.info.sizeMax).toBe(SECTOR);
      const data = Buffer.alloc(8192, 0xc3);
      await disk.write(8, data);
      sameBytes(await disk.read(8, 8192), data);
      sameBytes(model.disk.subarray(8 * SECTOR, 8 * SECTOR + 8192), data, 'the disk');
    },
  );

  test('finding 9: seg_max 0 counts as 1 (as Linux), so requests fit a device that takes few segments', async () => {
    const model = lyingLimits('seg_max', 0);
    const disk = open(model);
    expect(disk.info.segMax).toBe(1);
    sameBytes(await disk.read(0, 64 * 1024), model.disk.subarray(0, 64 * 1024));
  });

  test('a seg_max of 2^32 - 1 is cut to what a chain can hold: big reads still go', async () => {
    const disk = new Uint8Array(1 << 20).fill(0x42);
    const model = new BlkModel({ disk, segMax: 0xffff_ffff, sizeMax: 4096 });
    const blkDev = open(model);
    expect(blkDev.info.segMax).toBe(0xffff_ffff);
    sameBytes(await blkDev.read(0, 1 << 20), disk);
  });
});
