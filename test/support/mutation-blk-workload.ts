import { VirtioBlk } from '../../lib/devices';
import { BlkModel } from '../../lib/sim';
import { BLK_SECTOR_SIZE } from '../../lib/spec';
import type { Workload, WorkloadContext, WorkloadKind } from './mutation-workloads';

const DISK_SECTORS = 64;

export const blkWorkload: WorkloadKind = {
  device: 'blk',
  model: (random) =>
    new BlkModel({
      disk: new Uint8Array(DISK_SECTORS * BLK_SECTOR_SIZE),
      queueSize: random.pick([4, 8, 16]),
      numQueues: random.chance(0.3) ? 2 : 1,
      latency: random.chance(0.5) ? 'async' : 'sync',
      segMax: random.chance(0.3) ? 1 + random.int(4) : undefined,
      sizeMax: random.chance(0.3) ? random.pick([512, 1024]) : undefined,
      writeZeroes: random.chance(0.3) ? { maxSectors: 8, maxSegments: 2 } : undefined,
    }),
  open(transport, options, context) {
    const blk = VirtioBlk.open(transport, { ...options, maxRequestBytes: context.random.pick([512, 1024, 4096]) });
    return new BlkWorkload(blk, context);
  },
};

/**
 * virtio-blk reads, writes, flushes, GET_ID and WRITE_ZEROES. Every write
 * carries bytes unique to it and its sector, so a read can be checked:
 * each sector must hold the last write that completed, or one whose outcome
 * is unknown (rejected or aborted: the device may still do it), or zeroes.
 * Operations in flight together never write a sector another one uses.
 */
class BlkWorkload implements Workload {
  private readonly definite: Buffer[] = Array.from({ length: DISK_SECTORS }, () => Buffer.alloc(BLK_SECTOR_SIZE));
  private readonly maybe: Buffer[][] = Array.from({ length: DISK_SECTORS }, () => []);
  private readonly writing = new Uint8Array(DISK_SECTORS);
  private readonly reading = new Uint16Array(DISK_SECTORS);
  private serial = 0;

  constructor(
    private readonly blk: VirtioBlk,
    private readonly context: WorkloadContext,
  ) {}

  start(signal?: AbortSignal): Promise<void> {
    const { random, tracker } = this.context;
    const roll = random.next();
    if (roll < 0.4)
      return this.write(signal) ?? this.read(signal) ?? tracker.track('blk flush', this.blk.flush({ signal }));
    if (roll < 0.8) return this.read(signal) ?? tracker.track('blk flush', this.blk.flush({ signal }));
    if (roll < 0.88) return tracker.track('blk flush', this.blk.flush({ signal }));
    if (roll < 0.94) {
      return tracker.track('blk get id', this.blk.getId({ signal }), (id) => {
        if (id !== 'sim-blk') this.context.mismatch(`GET_ID returned ${JSON.stringify(id)}`);
      });
    }
    return this.writeZeroes(signal) ?? this.read(signal) ?? tracker.track('blk flush', this.blk.flush({ signal }));
  }

  close(): void {
    this.blk.close();
  }

  /** A range no write in flight touches (and, for a write, no read either); undefined when none was found. */
  private range(forWrite: boolean): { first: number; count: number } | undefined {
    const { random } = this.context;
    for (let attempt = 0; attempt < 6; attempt++) {
      const count = 1 + random.int(4);
      const first = random.int(DISK_SECTORS - count + 1);
      let free = true;
      for (let s = first; s < first + count; s++) if (this.writing[s] || (forWrite && this.reading[s])) free = false;
      if (free) return { first, count };
    }
    return undefined;
  }

  private write(signal?: AbortSignal): Promise<void> | undefined {
    const range = this.range(true);
    if (!range) return undefined;
    const { first, count } = range;
    const serial = ++this.serial;
    const sectors = Array.from({ length: count }, (_, i) => this.content(serial, first + i));
    const direct = this.context.random.chance(0.2) ? this.blk.allocBuffer(count * BLK_SECTOR_SIZE) : undefined;
    const data = direct ?? Buffer.alloc(count * BLK_SECTOR_SIZE);
    Buffer.concat(sectors).copy(data);
    for (let s = first; s < first + count; s++) this.writing[s] = 1;
    const done = (ok: boolean): void => {
      for (let i = 0; i < count; i++) {
        const s = first + i;
        this.writing[s] = 0;
        if (ok) this.definite[s] = sectors[i];
        else this.maybe[s].push(sectors[i]);
      }
      // A buffer of a request that failed or was aborted may still be the device's: it is never freed (close() takes it
      // back).
      if (direct && ok) this.blk.freeBuffer(direct);
    };
    const request = this.blk.write(first, data, { signal });
    request.then(
      () => done(true),
      () => done(false),
    );
    return this.context.tracker.track('blk write', request);
  }

  private read(signal?: AbortSignal): Promise<void> | undefined {
    const range = this.range(false);
    if (!range) return undefined;
    const { first, count } = range;
    for (let s = first; s < first + count; s++) this.reading[s]++;
    const direct = this.context.random.chance(0.2) ? this.blk.allocBuffer(count * BLK_SECTOR_SIZE) : undefined;
    const request = this.blk.read(first, direct ?? count * BLK_SECTOR_SIZE, { signal });
    let ok = false;
    const settle = (): void => {
      for (let s = first; s < first + count; s++) this.reading[s]--;
      // Freed after the check, and only when the device is done with it (not after a failure or an abort).
      if (direct && ok) this.blk.freeBuffer(direct);
    };
    return this.context.tracker
      .track('blk read', request, (data) => {
        ok = true;
        for (let i = 0; i < count; i++) {
          const s = first + i;
          const got = data.subarray(i * BLK_SECTOR_SIZE, (i + 1) * BLK_SECTOR_SIZE);
          if (!this.definite[s].equals(got) && !this.maybe[s].some((b) => b.equals(got))) {
            this.context.mismatch(
              `blk read of sector ${s} returned bytes no write put there (${describeSector(got)}: ` +
                `${got.subarray(0, 16).toString('hex')})`,
            );
          }
        }
      })
      .then(settle);
  }

  private writeZeroes(signal?: AbortSignal): Promise<void> | undefined {
    if (!this.blk.info.writeZeroes || this.blk.info.readOnly) return undefined;
    const range = this.range(true);
    if (!range) return undefined;
    const { first, count } = range;
    for (let s = first; s < first + count; s++) this.writing[s] = 1;
    const request = this.blk.writeZeroes([{ sector: first, sectors: count }], { signal });
    const zero = Buffer.alloc(BLK_SECTOR_SIZE);
    request.then(
      () => this.settleWrite(first, count, zero, true),
      () => this.settleWrite(first, count, zero, false),
    );
    return this.context.tracker.track('blk write zeroes', request);
  }

  private settleWrite(first: number, count: number, bytes: Buffer, ok: boolean): void {
    for (let s = first; s < first + count; s++) {
      this.writing[s] = 0;
      if (ok) this.definite[s] = bytes;
      else this.maybe[s].push(bytes);
    }
  }

  /** Sector `sector` as written by write `serial`: a tag naming both, then seeded bytes. */
  private content(serial: number, sector: number): Buffer {
    const bytes = this.context.random.bytes(BLK_SECTOR_SIZE);
    bytes.write('MUTW', 0, 'latin1');
    bytes.writeUInt32LE(serial, 4);
    bytes.writeUInt32LE(sector, 8);
    return bytes;
  }
}

function describeSector(bytes: Buffer): string {
  if (bytes.every((b) => b === 0)) return 'zeroes';
  if (bytes.toString('latin1', 0, 4) === 'MUTW')
    return `write ${bytes.readUInt32LE(4)} of sector ${bytes.readUInt32LE(8)}`;
  return 'unknown bytes';
}
