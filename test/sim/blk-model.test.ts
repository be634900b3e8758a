import { DmaPool } from '../../lib/platform';
import { BlkModel, SimDevice, type BlkModelOptions, type SimRequest } from '../../lib/sim';
import {
  BLK_ID_BYTES,
  BlkConfig,
  BlkFeature,
  BlkRequestType as T,
  BlkStatus,
  DeviceId,
  features,
  MMIO_MAGIC_VALUE,
  MmioRegister,
} from '../../lib/spec';
import { nextInterrupt, R, turns, useTestDrivers, VirtqDesc } from './sim-test-driver';

const { OK, IOERR, UNSUPP } = BlkStatus;
const SECTOR = 512;

/** The 16-byte request header: le32 type, le32 reserved, le64 sector. */
function header(type: number, sector: number | bigint = 0): Uint8Array {
  const bytes = new Uint8Array(16);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, type, true);
  view.setBigUint64(8, BigInt(sector), true);
  return bytes;
}

/** DISCARD / WRITE_ZEROES segments: le64 sector, le32 num_sectors, le32 flags. */
function segments(...list: [sector: number | bigint, sectors: number, flags?: number][]): Uint8Array {
  const bytes = new Uint8Array(16 * list.length);
  const view = new DataView(bytes.buffer);
  list.forEach(([sector, sectors, flags = 0], i) => {
    view.setBigUint64(16 * i, BigInt(sector), true);
    view.setUint32(16 * i + 8, sectors, true);
    view.setUint32(16 * i + 12, flags, true);
  });
  return bytes;
}

const request = (readable: Uint8Array[], writable: Uint8Array[], queue = 0): SimRequest => ({
  queue,
  head: 0,
  readable,
  writable,
  readableBytes: readable.reduce((n, b) => n + b.length, 0),
  writableBytes: writable.reduce((n, b) => n + b.length, 0),
});

/** Bytes i..i+n of a recognisable pattern (never all zero in a sector). */
const pattern = (n: number, seed = 1): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => ((i * 7 + seed) % 251) + 1);

/** A disk of `sectors` sectors, each filled with a pattern seeded by its number. */
function patternedDisk(sectors: number): Uint8Array {
  const disk = new Uint8Array(sectors * SECTOR);
  for (let s = 0; s < sectors; s++) disk.set(pattern(SECTOR, s), s * SECTOR);
  return disk;
}

const concat = (...parts: Uint8Array[]): Uint8Array => Uint8Array.from(Buffer.concat(parts));
const sync = (result: number | Promise<number>): number => {
  if (typeof result !== 'number') throw new Error('expected a synchronous completion');
  return result;
};

/** Runs a request whose status byte is its own buffer; returns [len, status]. */
function run(model: BlkModel, readable: Uint8Array[], data: Uint8Array[] = []): [number, number] {
  const status = Uint8Array.of(0xee);
  const len = sync(model.handle(request(readable, [...data, status])));
  return [len, status[0]];
}

const configOf = (model: BlkModel): DataView =>
  new DataView(model.config.buffer, model.config.byteOffset, model.config.byteLength);

describe('BlkModel (virtio 1.2 §5.2)', () => {
  describe('identity, features and configuration', () => {
    test('defaults: a 1 MiB block device with one 128-entry queue, BLK_SIZE and FLUSH', () => {
      const model = new BlkModel();
      expect(model.deviceId).toBe(DeviceId.BLOCK);
      expect(model.queueSizes).toEqual([128]);
      expect(model.features).toBe(features(BlkFeature.BLK_SIZE, BlkFeature.FLUSH));
      expect(model.disk.length).toBe(1 << 20);
      expect(model.config.length).toBe(BlkConfig.SIZE);
      const config = configOf(model);
      expect(config.getBigUint64(BlkConfig.capacity, true)).toBe(2048n);
      expect(config.getUint32(BlkConfig.blk_size, true)).toBe(512);
      // Nothing else is set.
      const rest = [...model.config].map((b, i) =>
        i < 8 || (i >= BlkConfig.blk_size && i < BlkConfig.blk_size + 4) ? 0 : b,
      );
      expect(rest.every((b) => b === 0)).toBe(true);
    });

    test.each<[string, BlkModelOptions, bigint]>([
      ['readOnly', { readOnly: true }, features(BlkFeature.BLK_SIZE, BlkFeature.FLUSH, BlkFeature.RO)],
      ['flush: false', { flush: false }, features(BlkFeature.BLK_SIZE)],
      ['segMax', { segMax: 4 }, features(BlkFeature.BLK_SIZE, BlkFeature.FLUSH, BlkFeature.SEG_MAX)],
      ['sizeMax', { sizeMax: 4096 }, features(BlkFeature.BLK_SIZE, BlkFeature.FLUSH, BlkFeature.SIZE_MAX)],
      ['numQueues: 1', { numQueues: 1 }, features(BlkFeature.BLK_SIZE, BlkFeature.FLUSH)],
      ['numQueues: 3', { numQueues: 3 }, features(BlkFeature.BLK_SIZE, BlkFeature.FLUSH, BlkFeature.MQ)],
      [
        'discard',
        { discard: { maxSectors: 8, maxSegments: 2 } },
        features(BlkFeature.BLK_SIZE, BlkFeature.FLUSH, BlkFeature.DISCARD),
      ],
      [
        'writeZeroes',
        { writeZeroes: { maxSectors: 8, maxSegments: 2 } },
        features(BlkFeature.BLK_SIZE, BlkFeature.FLUSH, BlkFeature.WRITE_ZEROES),
      ],
    ])('features for %s', (_, options, expected) => {
      expect(new BlkModel(options).features).toBe(expected);
    });

    test('config bytes follow each option', () => {
      const model = new BlkModel({
        disk: new Uint8Array(40 * SECTOR),
        blkSize: 4096,
        segMax: 7,
        sizeMax: 65536,
        numQueues: 3,
        queueSize: 16,
        discard: { maxSectors: 1000, maxSegments: 5, alignment: 16 },
        writeZeroes: { maxSectors: 2000, maxSegments: 6, mayUnmap: true },
      });
      const config = configOf(model);
      expect(config.getBigUint64(BlkConfig.capacity, true)).toBe(40n);
      expect(config.getUint32(BlkConfig.size_max, true)).toBe(65536);
      expect(config.getUint32(BlkConfig.seg_max, true)).toBe(7);
      expect(config.getUint32(BlkConfig.blk_size, true)).toBe(4096);
      expect(config.getUint16(BlkConfig.num_queues, true)).toBe(3);
      expect(config.getUint32(BlkConfig.max_discard_sectors, true)).toBe(1000);
      expect(config.getUint32(BlkConfig.max_discard_seg, true)).toBe(5);
      expect(config.getUint32(BlkConfig.discard_sector_alignment, true)).toBe(16);
      expect(config.getUint32(BlkConfig.max_write_zeroes_sectors, true)).toBe(2000);
      expect(config.getUint32(BlkConfig.max_write_zeroes_seg, true)).toBe(6);
      expect(config.getUint8(BlkConfig.write_zeroes_may_unmap)).toBe(1);
      expect(config.getUint8(BlkConfig.writeback)).toBe(0);
      expect(model.queueSizes).toEqual([16, 16, 16]);
    });

    test('discard alignment defaults to blk_size in sectors; may_unmap to 0; one queue leaves num_queues 0', () => {
      const model = new BlkModel({
        blkSize: 4096,
        discard: { maxSectors: 8, maxSegments: 1 },
        writeZeroes: { maxSectors: 8, maxSegments: 1 },
      });
      const config = configOf(model);
      expect(config.getUint32(BlkConfig.discard_sector_alignment, true)).toBe(8);
      expect(config.getUint8(BlkConfig.write_zeroes_may_unmap)).toBe(0);
      expect(config.getUint16(BlkConfig.num_queues, true)).toBe(0);
      expect(config.getUint32(BlkConfig.seg_max, true)).toBe(0);
      expect(config.getUint32(BlkConfig.size_max, true)).toBe(0);
    });

    test('configFields lists every field once, read-only, capacity as 64-bit, padding left out', () => {
      const fields = new BlkModel().configFields;
      const named = Object.entries(BlkConfig).filter(([name]) => name !== 'SIZE');
      expect(fields.map((f) => f.offset).sort((a, b) => a - b)).toEqual(
        named.map(([, offset]) => offset).sort((a, b) => a - b),
      );
      expect(fields.find((f) => f.offset === BlkConfig.capacity)?.width).toBe(8);
      expect(fields.find((f) => f.offset === BlkConfig.num_queues)?.width).toBe(2);
      expect(fields.find((f) => f.offset === BlkConfig.writeback)?.width).toBe(1);
      expect(fields.some((f) => f.writable)).toBe(false);
      const covered = new Set(fields.flatMap((f) => Array.from({ length: f.width }, (_, i) => f.offset + i)));
      expect(covered.size).toBe(fields.reduce((n, f) => n + f.width, 0)); // no overlaps
      for (const padding of [33, 57, 58, 59]) expect(covered.has(padding)).toBe(false);
    });

    test('the disk given is used in place', () => {
      const disk = new Uint8Array(4 * SECTOR);
      const model = new BlkModel({ disk });
      expect(model.disk).toBe(disk);
      disk.set(pattern(SECTOR), SECTOR);
      const data = new Uint8Array(SECTOR);
      expect(run(model, [header(T.IN, 1)], [data])).toEqual([SECTOR + 1, OK]);
      expect(data).toEqual(pattern(SECTOR));
    });

    test('bad options are RangeErrors or TypeErrors', () => {
      expect(() => new BlkModel({ disk: new Uint8Array(513) })).toThrow(RangeError);
      expect(() => new BlkModel({ id: 'x'.repeat(21) })).toThrow(RangeError);
      expect(() => new BlkModel({ id: 'näh' })).toThrow(RangeError);
      expect(() => new BlkModel({ id: 'a\0b' })).toThrow(RangeError);
      expect(() => new BlkModel({ blkSize: 256 })).toThrow(RangeError);
      expect(() => new BlkModel({ blkSize: 1536 })).toThrow(RangeError);
      expect(() => new BlkModel({ segMax: 0 })).toThrow(RangeError);
      expect(() => new BlkModel({ sizeMax: 1.5 })).toThrow(RangeError);
      expect(() => new BlkModel({ queueSize: 0 })).toThrow(RangeError);
      expect(() => new BlkModel({ queueSize: 32769 })).toThrow(RangeError);
      expect(() => new BlkModel({ numQueues: 0 })).toThrow(RangeError);
      expect(() => new BlkModel({ numQueues: 65536 })).toThrow(RangeError);
      expect(() => new BlkModel({ discard: { maxSectors: 0, maxSegments: 1 } })).toThrow(RangeError);
      expect(() => new BlkModel({ writeZeroes: { maxSectors: 1, maxSegments: -1 } })).toThrow(RangeError);
      expect(() => new BlkModel({ latency: 'later' as 'async' })).toThrow(RangeError);
      expect(() => new BlkModel({ disk: [0] as unknown as Uint8Array })).toThrow(TypeError);
      expect(() => new BlkModel({ failSectors: [1] as unknown as Set<number> })).toThrow(TypeError);
      expect(new BlkModel({ id: 'x'.repeat(20), disk: new Uint8Array(0) }).deviceId).toBe(2);
    });
  });

  describe('IN and OUT', () => {
    test('IN copies sectors into data split over several buffers; len is data + status', () => {
      const model = new BlkModel({ disk: patternedDisk(8) });
      const parts = [new Uint8Array(100), new Uint8Array(600), new Uint8Array(324)];
      expect(run(model, [header(T.IN, 2)], parts)).toEqual([1025, OK]);
      expect(concat(...parts)).toEqual(concat(pattern(SECTOR, 2), pattern(SECTOR, 3)));
    });

    test('OUT copies data split over several buffers onto the disk; len is 1', () => {
      const model = new BlkModel({ disk: patternedDisk(8) });
      const data = pattern(1024, 99);
      expect(run(model, [header(T.OUT, 5), data.subarray(0, 10), data.subarray(10, 700), data.subarray(700)])).toEqual([
        1,
        OK,
      ]);
      expect(model.disk.subarray(5 * SECTOR, 7 * SECTOR)).toEqual(data);
      // Neighbours untouched.
      expect(model.disk.subarray(4 * SECTOR, 5 * SECTOR)).toEqual(pattern(SECTOR, 4));
      expect(model.disk.subarray(7 * SECTOR, 8 * SECTOR)).toEqual(pattern(SECTOR, 7));
    });

    test('a write then a read round-trips', () => {
      const model = new BlkModel();
      const data = pattern(3 * SECTOR, 5);
      expect(run(model, [header(T.OUT, 100), data])).toEqual([1, OK]);
      const back = [new Uint8Array(SECTOR), new Uint8Array(2 * SECTOR)];
      expect(run(model, [header(T.IN, 100)], back)).toEqual([3 * SECTOR + 1, OK]);
      expect(concat(...back)).toEqual(data);
    });

    test('the header may be split over buffers and share one with the data', () => {
      const model = new BlkModel({ disk: patternedDisk(4) });
      const data = pattern(SECTOR, 77);
      const chain = concat(header(T.OUT, 3), data);
      // 5 header bytes, then 11 header bytes and the first 100 data bytes, then the rest.
      expect(run(model, [chain.subarray(0, 5), chain.subarray(5, 116), chain.subarray(116)])).toEqual([1, OK]);
      expect(model.disk.subarray(3 * SECTOR)).toEqual(data);

      const read = header(T.IN, 1);
      const out = new Uint8Array(SECTOR);
      expect(run(model, [read.subarray(0, 9), read.subarray(9)], [out])).toEqual([SECTOR + 1, OK]);
      expect(out).toEqual(pattern(SECTOR, 1));
    });

    test('the status byte may share the last data buffer', () => {
      const model = new BlkModel({ disk: patternedDisk(4) });
      const first = new Uint8Array(200);
      const last = new Uint8Array(2 * SECTOR - 200 + 1).fill(0xee);
      expect(sync(model.handle(request([header(T.IN, 1)], [first, last])))).toBe(2 * SECTOR + 1);
      expect(last[last.length - 1]).toBe(OK);
      expect(concat(first, last.subarray(0, -1))).toEqual(concat(pattern(SECTOR, 1), pattern(SECTOR, 2)));

      const only = new Uint8Array(SECTOR + 1).fill(0xee);
      expect(sync(model.handle(request([header(T.IN, 3)], [only])))).toBe(SECTOR + 1);
      expect(only[SECTOR]).toBe(OK);
      expect(only.subarray(0, SECTOR)).toEqual(pattern(SECTOR, 3));
    });

    test('a zero-length read at the end of the disk is OK', () => {
      const model = new BlkModel({ disk: new Uint8Array(4 * SECTOR) });
      expect(run(model, [header(T.IN, 4)])).toEqual([1, OK]);
    });

    test('beyond capacity is IOERR and nothing moves', () => {
      const model = new BlkModel({ disk: patternedDisk(8) });
      const data = new Uint8Array(2 * SECTOR).fill(0xaa);
      expect(run(model, [header(T.IN, 7)], [data])).toEqual([1, IOERR]);
      expect(data.every((b) => b === 0xaa)).toBe(true);
      expect(run(model, [header(T.IN, 8)], [new Uint8Array(SECTOR)])).toEqual([1, IOERR]);
      // A sector near 2^64 must not wrap around.
      expect(run(model, [header(T.IN, 0xffff_ffff_ffff_ffffn)], [new Uint8Array(SECTOR)])).toEqual([1, IOERR]);
      expect(run(model, [header(T.OUT, 7), new Uint8Array(2 * SECTOR)])).toEqual([1, IOERR]);
      expect(model.disk).toEqual(patternedDisk(8));
    });

    test('data that is not a multiple of 512 bytes is IOERR', () => {
      const model = new BlkModel({ disk: patternedDisk(4) });
      const data = new Uint8Array(511).fill(0xaa);
      expect(run(model, [header(T.IN, 0)], [data])).toEqual([1, IOERR]);
      expect(data.every((b) => b === 0xaa)).toBe(true);
      expect(run(model, [header(T.OUT, 0), new Uint8Array(513)])).toEqual([1, IOERR]);
      expect(run(model, [header(T.OUT, 0), new Uint8Array(SECTOR), new Uint8Array(1)])).toEqual([1, IOERR]);
      expect(model.disk).toEqual(patternedDisk(4));
    });

    test('data in the wrong direction is IOERR', () => {
      const model = new BlkModel({ disk: patternedDisk(4) });
      // A read with device-readable data after the header.
      expect(run(model, [header(T.IN, 0), new Uint8Array(SECTOR)], [new Uint8Array(SECTOR)])).toEqual([1, IOERR]);
      // A write with device-writable bytes before the status.
      expect(run(model, [header(T.OUT, 0), new Uint8Array(SECTOR)], [new Uint8Array(SECTOR)])).toEqual([1, IOERR]);
      expect(model.disk).toEqual(patternedDisk(4));
    });

    test('SEG_MAX and SIZE_MAX bound the data buffers of IN and OUT', () => {
      const model = new BlkModel({ segMax: 2, sizeMax: 1024 });
      // Header and status buffers do not count; a buffer shared with the header counts for its data part.
      expect(run(model, [header(T.OUT, 0), new Uint8Array(SECTOR), new Uint8Array(SECTOR)])).toEqual([1, OK]);
      expect(run(model, [concat(header(T.OUT, 0), new Uint8Array(SECTOR)), new Uint8Array(SECTOR)])).toEqual([1, OK]);
      expect(
        run(model, [header(T.OUT, 0), new Uint8Array(SECTOR), new Uint8Array(SECTOR), new Uint8Array(SECTOR)]),
      ).toEqual([1, IOERR]);
      expect(
        run(model, [header(T.IN, 0)], [new Uint8Array(SECTOR), new Uint8Array(SECTOR), new Uint8Array(SECTOR)]),
      ).toEqual([1, IOERR]);
      expect(run(model, [header(T.OUT, 0), new Uint8Array(1024)])).toEqual([1, OK]);
      expect(run(model, [header(T.OUT, 0), new Uint8Array(1536)])).toEqual([1, IOERR]);
      expect(run(model, [header(T.IN, 0)], [new Uint8Array(1536)])).toEqual([1, IOERR]);
      // Without the options there are no such limits.
      expect(
        run(
          new BlkModel(),
          [header(T.IN, 0)],
          [new Uint8Array(8 * SECTOR), ...Array.from({ length: 8 }, () => new Uint8Array(SECTOR))],
        ),
      ).toEqual([16 * SECTOR + 1, OK]);
    });
  });

  describe('malformed chains', () => {
    test('no writable byte: len 0, nothing written', () => {
      const model = new BlkModel({ disk: patternedDisk(2) });
      expect(model.handle(request([header(T.OUT, 0), new Uint8Array(SECTOR)], []))).toBe(0);
      expect(model.handle(request([header(T.IN, 0)], [new Uint8Array(0)]))).toBe(0);
      expect(model.disk).toEqual(patternedDisk(2));
    });

    test('fewer than 16 readable bytes: IOERR in the status byte', () => {
      const model = new BlkModel();
      expect(run(model, [header(T.IN, 0).subarray(0, 15)], [new Uint8Array(SECTOR)])).toEqual([1, IOERR]);
      expect(run(model, [])).toEqual([1, IOERR]);
      expect(model.stats.requests).toBe(2);
      expect(model.stats.byType).toEqual({});
    });

    test('empty buffers in the chain are skipped', () => {
      const model = new BlkModel({ disk: patternedDisk(2) });
      const data = new Uint8Array(SECTOR);
      const status = Uint8Array.of(0xee);
      const len = model.handle(
        request(
          [new Uint8Array(0), header(T.IN, 1), new Uint8Array(0)],
          [data, new Uint8Array(0), status, new Uint8Array(0)],
        ),
      );
      expect([len, status[0]]).toEqual([SECTOR + 1, OK]);
      expect(data).toEqual(pattern(SECTOR, 1));
    });
  });

  describe('FLUSH, GET_ID and unsupported types', () => {
    test('FLUSH completes with OK and is counted', () => {
      const model = new BlkModel();
      expect(run(model, [header(T.FLUSH)])).toEqual([1, OK]);
      expect(run(model, [header(T.FLUSH)])).toEqual([1, OK]);
      expect(model.stats.flushes).toBe(2);
      expect(model.stats.byType[T.FLUSH]).toBe(2);
    });

    test('FLUSH with a non-zero sector is IOERR; without the feature it is UNSUPP', () => {
      const model = new BlkModel();
      expect(run(model, [header(T.FLUSH, 1)])).toEqual([1, IOERR]);
      expect(model.stats.flushes).toBe(0);
      expect(run(new BlkModel({ flush: false }), [header(T.FLUSH)])).toEqual([1, UNSUPP]);
    });

    test('GET_ID writes the NUL-padded id into 20 bytes', () => {
      const model = new BlkModel();
      const id = new Uint8Array(BLK_ID_BYTES).fill(0xaa);
      expect(run(model, [header(T.GET_ID)], [id])).toEqual([21, OK]);
      expect(Buffer.from(id)).toEqual(Buffer.concat([Buffer.from('sim-blk'), Buffer.alloc(13)]));
    });

    test('a 20-byte id has no NUL, and may be split over buffers', () => {
      const model = new BlkModel({ id: 'ABCDEFGHIJKLMNOPQRST' });
      const a = new Uint8Array(7);
      const b = new Uint8Array(14).fill(0xee); // 13 id bytes and the status
      expect(sync(model.handle(request([header(T.GET_ID)], [a, b])))).toBe(21);
      expect(Buffer.from(concat(a, b.subarray(0, 13))).toString('latin1')).toBe('ABCDEFGHIJKLMNOPQRST');
      expect(b[13]).toBe(OK);
    });

    test('GET_ID with other than 20 data bytes is IOERR', () => {
      const model = new BlkModel();
      const short = new Uint8Array(19).fill(0xaa);
      expect(run(model, [header(T.GET_ID)], [short])).toEqual([1, IOERR]);
      expect(short.every((b) => b === 0xaa)).toBe(true);
      expect(run(model, [header(T.GET_ID)], [new Uint8Array(21)])).toEqual([1, IOERR]);
      expect(run(model, [header(T.GET_ID), new Uint8Array(4)], [new Uint8Array(20)])).toEqual([1, IOERR]);
    });

    test.each([
      ['GET_LIFETIME', T.GET_LIFETIME],
      ['SECURE_ERASE', T.SECURE_ERASE],
      ['DISCARD (not offered)', T.DISCARD],
      ['WRITE_ZEROES (not offered)', T.WRITE_ZEROES],
      ['ZONE_REPORT', 16],
      ['unknown 3', 3],
      ['unknown 0xffffffff', 0xffff_ffff],
    ])('%s is UNSUPP', (_, type) => {
      const model = new BlkModel({ disk: patternedDisk(4) });
      const data = new Uint8Array(SECTOR).fill(0xaa);
      expect(run(model, [header(type), segments([0, 1])], [])).toEqual([1, UNSUPP]);
      expect(run(model, [header(type)], [data])).toEqual([1, UNSUPP]);
      expect(data.every((b) => b === 0xaa)).toBe(true);
      expect(model.disk).toEqual(patternedDisk(4));
      expect(model.stats.byType[type]).toBe(2);
    });
  });

  describe('DISCARD and WRITE_ZEROES', () => {
    const limits = { maxSectors: 4, maxSegments: 2 };

    test.each([
      ['DISCARD', T.DISCARD],
      ['WRITE_ZEROES', T.WRITE_ZEROES],
    ])('%s zeroes every segment (discard zeroes in the sim)', (_, type) => {
      const model = new BlkModel({ disk: patternedDisk(16), discard: limits, writeZeroes: limits });
      const segs = segments([2, 3], [10, 4]);
      // Segments split over buffers, one sharing the header's buffer.
      const chain = concat(header(type), segs);
      expect(run(model, [chain.subarray(0, 20), chain.subarray(20)])).toEqual([1, OK]);
      const expected = patternedDisk(16);
      expected.fill(0, 2 * SECTOR, 5 * SECTOR);
      expected.fill(0, 10 * SECTOR, 14 * SECTOR);
      expect(model.disk).toEqual(expected);
    });

    test.each([
      ['DISCARD', T.DISCARD],
      ['WRITE_ZEROES', T.WRITE_ZEROES],
    ])('%s beyond its limits or the disk is IOERR and changes nothing', (_, type) => {
      const model = new BlkModel({ disk: patternedDisk(16), discard: limits, writeZeroes: limits });
      expect(run(model, [header(type), segments([0, 1], [2, 1], [4, 1])])).toEqual([1, IOERR]); // 3 segments > 2
      expect(run(model, [header(type), segments([0, 1], [2, 5])])).toEqual([1, IOERR]); // 5 sectors > 4
      expect(run(model, [header(type), segments([14, 3])])).toEqual([1, IOERR]); // past the end
      expect(run(model, [header(type), segments([0xffff_ffff_ffff_fffen, 2])])).toEqual([1, IOERR]);
      expect(run(model, [header(type)])).toEqual([1, IOERR]); // no segment
      expect(run(model, [header(type), segments([0, 1]).subarray(0, 15)])).toEqual([1, IOERR]); // partial segment
      expect(run(model, [header(type), segments([0, 1])], [new Uint8Array(16)])).toEqual([1, IOERR]); // writable data
      expect(model.disk).toEqual(patternedDisk(16));
      // The limits themselves are fine.
      expect(run(model, [header(type), segments([0, 4], [12, 4])])).toEqual([1, OK]);
    });

    test('unmap on DISCARD is UNSUPP; on WRITE_ZEROES it is allowed', () => {
      const model = new BlkModel({ disk: patternedDisk(8), discard: limits, writeZeroes: limits });
      expect(run(model, [header(T.DISCARD), segments([0, 1], [1, 1, 1])])).toEqual([1, UNSUPP]);
      expect(model.disk).toEqual(patternedDisk(8));
      expect(run(model, [header(T.WRITE_ZEROES), segments([0, 1, 1])])).toEqual([1, OK]);
      expect(model.disk.subarray(0, SECTOR).every((b) => b === 0)).toBe(true);
    });

    test.each([
      ['DISCARD', T.DISCARD],
      ['WRITE_ZEROES', T.WRITE_ZEROES],
    ])('%s with a reserved flag bit is UNSUPP', (_, type) => {
      const model = new BlkModel({ disk: patternedDisk(8), discard: limits, writeZeroes: limits });
      expect(run(model, [header(type), segments([0, 1], [1, 1, 2])])).toEqual([1, UNSUPP]);
      expect(run(model, [header(type), segments([0, 1, 0x8000_0000])])).toEqual([1, UNSUPP]);
      expect(model.disk).toEqual(patternedDisk(8));
    });
  });

  describe('read-only and failing sectors', () => {
    test('a read-only device fails every write and changes nothing; reads and flushes work', () => {
      const limits = { maxSectors: 4, maxSegments: 2 };
      const model = new BlkModel({ disk: patternedDisk(4), readOnly: true, discard: limits, writeZeroes: limits });
      expect(run(model, [header(T.OUT, 0), new Uint8Array(SECTOR)])).toEqual([1, IOERR]);
      expect(run(model, [header(T.DISCARD), segments([0, 1])])).toEqual([1, IOERR]);
      expect(run(model, [header(T.WRITE_ZEROES), segments([1, 1])])).toEqual([1, IOERR]);
      expect(model.disk).toEqual(patternedDisk(4));
      const data = new Uint8Array(SECTOR);
      expect(run(model, [header(T.IN, 2)], [data])).toEqual([SECTOR + 1, OK]);
      expect(data).toEqual(pattern(SECTOR, 2));
      expect(run(model, [header(T.FLUSH)])).toEqual([1, OK]);
    });

    test('a request touching a failing sector is IOERR; its neighbours work; the set is live', () => {
      const failSectors = new Set([5]);
      const limits = { maxSectors: 8, maxSegments: 2 };
      const model = new BlkModel({ disk: patternedDisk(8), failSectors, discard: limits, writeZeroes: limits });
      const data = new Uint8Array(2 * SECTOR).fill(0xaa);
      expect(run(model, [header(T.IN, 4)], [data])).toEqual([1, IOERR]);
      expect(data.every((b) => b === 0xaa)).toBe(true);
      expect(run(model, [header(T.IN, 3)], [data])).toEqual([2 * SECTOR + 1, OK]);
      expect(run(model, [header(T.OUT, 5), new Uint8Array(SECTOR)])).toEqual([1, IOERR]);
      expect(run(model, [header(T.WRITE_ZEROES), segments([0, 1], [4, 2])])).toEqual([1, IOERR]);
      expect(run(model, [header(T.DISCARD), segments([5, 1])])).toEqual([1, IOERR]);
      expect(model.disk).toEqual(patternedDisk(8));
      expect(run(model, [header(T.OUT, 6), new Uint8Array(SECTOR)])).toEqual([1, OK]);
      failSectors.delete(5);
      expect(run(model, [header(T.OUT, 5), new Uint8Array(SECTOR)])).toEqual([1, OK]);
      expect(model.disk.subarray(5 * SECTOR, 7 * SECTOR).every((b) => b === 0)).toBe(true);
    });
  });

  describe('stats and latency', () => {
    test('stats count chains, types and flushes', () => {
      const model = new BlkModel();
      run(model, [header(T.OUT, 0), new Uint8Array(SECTOR)]);
      run(model, [header(T.IN, 0)], [new Uint8Array(SECTOR)]);
      run(model, [header(T.IN, 0)], [new Uint8Array(SECTOR)]);
      run(model, [header(T.FLUSH)]);
      run(model, [header(99)]);
      model.handle(request([header(T.IN, 0)], []));
      expect(model.stats).toEqual({ requests: 6, byType: { [T.IN]: 2, [T.OUT]: 1, [T.FLUSH]: 1, 99: 1 }, flushes: 1 });
    });

    test("'async' completes later, out of order, with the data moved at completion", async () => {
      const model = new BlkModel({ disk: patternedDisk(4), latency: 'async' });
      const order: number[] = [];
      const buffers = [0, 1, 2, 3].map(() => new Uint8Array(SECTOR + 1).fill(0xee));
      const results = buffers.map((buffer, i) => {
        const result = model.handle(request([header(T.IN, i)], [buffer]));
        expect(result).toBeInstanceOf(Promise);
        return (result as Promise<number>).then((len) => {
          order.push(i);
          return len;
        });
      });
      // Nothing happens synchronously.
      expect(buffers.every((b) => b[SECTOR] === 0xee && b[0] === 0xee)).toBe(true);
      expect(await Promise.all(results)).toEqual([513, 513, 513, 513]);
      expect(order).toEqual([0, 2, 1, 3]);
      buffers.forEach((b, i) => {
        expect(b.subarray(0, SECTOR)).toEqual(pattern(SECTOR, i));
        expect(b[SECTOR]).toBe(OK);
      });
      expect(model.stats.byType[T.IN]).toBe(4);
    });

    test("'async' requests in flight at reset or queue reset complete with 0 and touch nothing", async () => {
      const model = new BlkModel({ disk: patternedDisk(4), latency: 'async', numQueues: 2 });
      const onQueue0 = new Uint8Array(SECTOR + 1).fill(0xee);
      const onQueue1 = new Uint8Array(SECTOR + 1).fill(0xee);
      const first = model.handle(request([header(T.IN, 0)], [onQueue0], 0));
      const second = model.handle(request([header(T.IN, 1)], [onQueue1], 1));
      model.resetQueue(1);
      expect(await second).toBe(0);
      expect(await first).toBe(SECTOR + 1);
      expect(onQueue1.every((b) => b === 0xee)).toBe(true);
      expect(onQueue0.subarray(0, SECTOR)).toEqual(pattern(SECTOR, 0));

      const write = model.handle(request([header(T.OUT, 2), new Uint8Array(SECTOR)], [Uint8Array.of(0xee)]));
      model.reset();
      expect(await write).toBe(0);
      expect(model.disk).toEqual(patternedDisk(4));
      // Later requests run normally.
      expect(await model.handle(request([header(T.FLUSH)], [Uint8Array.of(0xee)]))).toBe(1);
    });
  });

  describe('behind a SimDevice', () => {
    const driver = useTestDrivers();

    test('reads DeviceID 2 and the capacity at 0x100', () => {
      const pool = DmaPool.anonymous();
      const sim = new SimDevice({ memory: pool, model: new BlkModel({ disk: new Uint8Array(0x1234 * SECTOR) }) });
      try {
        expect(sim.readl(MmioRegister.MagicValue)).toBe(MMIO_MAGIC_VALUE);
        expect(sim.readl(MmioRegister.Version)).toBe(2);
        expect(sim.readl(MmioRegister.DeviceID)).toBe(DeviceId.BLOCK);
        expect(sim.readl(MmioRegister.Config + BlkConfig.capacity)).toBe(0x1234);
        expect(sim.readl(MmioRegister.Config + BlkConfig.capacity + 4)).toBe(0);
        expect(sim.readl(MmioRegister.Config + BlkConfig.blk_size)).toBe(512);
        expect(sim.violations).toEqual([]);
      } finally {
        sim.close();
        pool.close();
      }
    });

    test.each(['sync', 'async'] as const)('a write then a read through a split ring (%s)', async (latency) => {
      const model = new BlkModel({ disk: new Uint8Array(64 * SECTOR), latency });
      const r = driver(model);
      const negotiated = r.init();
      expect(negotiated & model.features).toBe(model.features);
      const ring = r.setupQueue(0, 8);
      r.driverOk();

      const data = pattern(2 * SECTOR, 42);
      const out = { header: r.buffer(header(T.OUT, 10)), data: r.buffer(data), status: r.buffer(Uint8Array.of(0xee)) };
      ring.setDesc(0, { addr: out.header.iova, len: 16, flags: VirtqDesc.F_NEXT, next: 1 });
      ring.setDesc(1, { addr: out.data.iova, len: data.length, flags: VirtqDesc.F_NEXT, next: 2 });
      ring.setDesc(2, { addr: out.status.iova, len: 1, flags: VirtqDesc.F_WRITE });
      const inn = { header: r.buffer(header(T.IN, 10)), data: r.buffer(2 * SECTOR + 1) };
      ring.setDesc(3, { addr: inn.header.iova, len: 16, flags: VirtqDesc.F_NEXT, next: 4 });
      ring.setDesc(4, { addr: inn.data.iova, len: 2 * SECTOR + 1, flags: VirtqDesc.F_WRITE });

      ring.publish(0);
      let interrupt = nextInterrupt(r.sim);
      r.notify(0);
      await interrupt;
      r.ack();
      expect(ring.usedIdx).toBe(1);
      expect(ring.usedElement(0)).toEqual({ id: 0, len: 1 });
      expect(r.bytes(out.status)[0]).toBe(OK);
      expect(model.disk.subarray(10 * SECTOR, 12 * SECTOR)).toEqual(data);

      // EVENT_IDX is negotiated: ask for an interrupt after the next used element.
      ring.usedEvent = ring.usedIdx;
      ring.publish(3);
      interrupt = nextInterrupt(r.sim);
      r.notify(0);
      await interrupt;
      expect(ring.usedElement(1)).toEqual({ id: 3, len: 2 * SECTOR + 1 });
      const back = r.bytes(inn.data);
      expect(Uint8Array.from(back.subarray(0, 2 * SECTOR))).toEqual(data);
      expect(back[2 * SECTOR]).toBe(OK);
      await turns();
      expect(r.sim.violations).toEqual([]);
      expect(r.sim.modelErrors).toEqual([]);
      expect(r.sim.readl(R.DeviceID)).toBe(DeviceId.BLOCK);
    });
  });
});
