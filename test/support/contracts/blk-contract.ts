import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { VirtioBlk, VirtioBlkOptions } from '../../../lib/devices';
import type { MmioTransport } from '../../../lib/transport';
import { sameBytes, type ContractCase } from './contract';

/** A virtio-blk device to check, opened fresh for each case; its contents may be overwritten. */
export interface BlkSubject {
  readonly label: string;
  open(options?: Partial<VirtioBlkOptions>): BlkHandle;
}

export interface BlkHandle {
  readonly blk: VirtioBlk;
  readonly transport: MmioTransport;
  close(): void;
}

async function withBlk(
  subject: BlkSubject,
  options: Partial<VirtioBlkOptions>,
  body: (h: BlkHandle) => Promise<void>,
): Promise<void> {
  const handle = subject.open(options);
  try {
    await body(handle);
  } finally {
    handle.close();
  }
}

const SECTOR = 512;

/** The virtio-blk contract (virtio 1.2 §5.2): what any block device must do with our driver. */
export function blkContract(subject: BlkSubject): ContractCase[] {
  return [
    {
      name: 'capacity and block size come from the config space',
      run: () =>
        withBlk(subject, {}, async ({ blk }) => {
          assert.ok(blk.info.capacity >= 2048n, `capacity ${blk.info.capacity} sectors (the subject promises ≥ 1 MiB)`);
          assert.equal(blk.info.bytes, blk.info.capacity * 512n);
          assert.ok(blk.info.blockSize >= 512 && (blk.info.blockSize & (blk.info.blockSize - 1)) === 0);
          assert.ok(blk.info.queues >= 1);
        }),
    },
    {
      name: 'written sectors read back, at the start, in the middle and at the very end',
      run: () =>
        withBlk(subject, {}, async ({ blk }) => {
          const last = blk.info.capacity - 1n;
          for (const [sector, sectors] of [
            [0n, 1],
            [7n, 3],
            [last, 1],
            [last - 7n, 8],
          ] as const) {
            const data = randomBytes(sectors * SECTOR);
            await blk.write(sector, data);
            sameBytes(await blk.read(sector, data.length), data, `sector ${sector}, ${sectors} sectors`);
          }
        }),
    },
    {
      name: 'transfers larger than one request are split and reassembled',
      run: () =>
        withBlk(subject, { maxRequestBytes: 16 * 1024 }, async ({ blk }) => {
          const data = randomBytes(256 * 1024);
          await blk.write(64, data);
          sameBytes(await blk.read(64, data.length), data);
        }),
    },
    {
      name: 'DMA buffers from allocBuffer go to the device without a copy and read back',
      run: () =>
        withBlk(subject, {}, async ({ blk }) => {
          const out = blk.allocBuffer(8 * SECTOR);
          const back = blk.allocBuffer(8 * SECTOR);
          try {
            randomBytes(out.length).copy(out);
            await blk.write(100, out);
            await blk.read(100, back);
            sameBytes(back, out);
          } finally {
            blk.freeBuffer(out);
            blk.freeBuffer(back);
          }
        }),
    },
    {
      name: 'more concurrent requests than the queue holds all complete, each with its own data',
      run: () =>
        withBlk(subject, { queueSize: 4 }, async ({ blk }) => {
          const blocks = Array.from({ length: 24 }, (_, i) => ({ sector: 200 + i * 8, data: randomBytes(4096) }));
          await Promise.all(blocks.map((b) => blk.write(b.sector, b.data)));
          const back = await Promise.all(blocks.map((b) => blk.read(b.sector, 4096)));
          back.forEach((data, i) => sameBytes(data, blocks[i].data, `block ${i}`));
        }),
    },
    {
      name: 'ranges beyond the capacity and partial sectors are refused before anything is sent',
      run: () =>
        withBlk(subject, {}, async ({ blk }) => {
          const end = blk.info.capacity;
          await assert.rejects(blk.read(end, SECTOR), RangeError);
          await assert.rejects(blk.read(end - 1n, 2 * SECTOR), RangeError);
          await assert.rejects(blk.write(0, Buffer.alloc(100)), RangeError);
          await assert.rejects(blk.read(-1, SECTOR), RangeError);
          assert.equal((await blk.read(end - 1n, SECTOR)).length, SECTOR);
        }),
    },
    {
      name: 'flush completes, and the ID string is readable',
      run: () =>
        withBlk(subject, {}, async ({ blk }) => {
          await blk.write(300, randomBytes(SECTOR));
          await blk.flush();
          const id = await blk.getId();
          assert.equal(typeof id, 'string');
          assert.ok(id.length <= 20);
        }),
    },
    {
      name: 'a write stream and a read stream round-trip',
      run: () =>
        withBlk(subject, {}, async ({ blk }) => {
          const data = randomBytes(40 * SECTOR);
          const writer = blk.createWriteStream({ start: 1024 * SECTOR });
          await new Promise<void>((resolve, reject) => {
            writer.on('error', reject);
            writer.on('finish', resolve);
            // Chunks that do not end on sector boundaries are held until they do.
            writer.write(data.subarray(0, 1000));
            writer.write(data.subarray(1000, 7000));
            writer.end(data.subarray(7000));
          });
          const chunks: Buffer[] = [];
          for await (const chunk of blk.createReadStream({ start: 1024 * SECTOR, end: 1064 * SECTOR, chunkSize: 4096 }))
            chunks.push(chunk as Buffer);
          sameBytes(Buffer.concat(chunks), data);
        }),
    },
    {
      name: 'write zeroes and discard, when offered, leave the range reading as zeroes',
      run: () =>
        withBlk(subject, {}, async ({ blk }) => {
          if (blk.info.writeZeroes) {
            await blk.write(400, randomBytes(8 * SECTOR));
            await blk.writeZeroes([{ sector: 400, sectors: 8 }]);
            sameBytes(await blk.read(400, 8 * SECTOR), Buffer.alloc(8 * SECTOR));
          }
          if (blk.info.discard) await blk.discard([{ sector: 400, sectors: 8 }]);
        }),
    },
    {
      name: 'an aborted request rejects with AbortError and the device stays usable',
      run: () =>
        withBlk(subject, {}, async ({ blk }) => {
          const controller = new AbortController();
          const pending = blk.read(0, 64 * SECTOR, { signal: controller.signal });
          controller.abort();
          await assert.rejects(pending, { code: 'ABORT_ERR' });
          const data = randomBytes(SECTOR);
          await blk.write(500, data);
          sameBytes(await blk.read(500, SECTOR), data);
        }),
    },
  ];
}
