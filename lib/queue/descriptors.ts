import type { DmaAllocator, DmaRegion } from '../platform';
import type { QueueBuffer } from './queue-types';

const TWO_32 = 4294967296;

/** Stands for an absent readable or writable list (nothing allocated per request). */
export const NO_BUFFERS: readonly QueueBuffer[] = Object.freeze([]);

/**
 * Fills the 16-byte descriptor at `slot`: address and length (the same
 * place in both formats, §2.7.5 and §2.8.13), then the two 16-bit words at
 * 12 and 14 — split: flags, next; packed: id, flags. Returns the length.
 */
export function writeDescriptor(
  d32: Uint32Array,
  d16: Uint16Array,
  slot: number,
  buffer: QueueBuffer,
  word12: number,
  word14: number,
): number {
  const offset = buffer.offset ?? 0;
  const length = buffer.length ?? buffer.region.size - offset;
  const address = Number(buffer.region.iova) + offset;
  d32[slot * 4] = address % TWO_32;
  d32[slot * 4 + 1] = Math.floor(address / TWO_32);
  d32[slot * 4 + 2] = length;
  d16[slot * 8 + 6] = word12;
  d16[slot * 8 + 7] = word14;
  return length;
}

/** Writes address and length of a descriptor (the flags word is written by the caller, later for a packed head). */
export function writeAddress(d32: Uint32Array, slot: number, address: number, length: number): void {
  d32[slot * 4] = address % TWO_32;
  d32[slot * 4 + 1] = Math.floor(address / TWO_32);
  d32[slot * 4 + 2] = length;
}

/**
 * Indirect descriptor tables (§2.7.5.3, §2.8.19): `perId` 16-byte entries
 * for each request id, in one region allocated when the ring is built, so
 * that placing a request never allocates (nor fails to).
 */
export class IndirectSlab {
  readonly region: DmaRegion;
  readonly d32: Uint32Array;
  readonly d16: Uint16Array;
  private readonly iova: number;

  constructor(
    memory: DmaAllocator,
    size: number,
    readonly perId: number,
  ) {
    const entries = size * perId;
    this.region = memory.allocate(entries * 16, 16);
    this.d32 = new Uint32Array(this.region.view, this.region.offset, entries * 4);
    this.d16 = new Uint16Array(this.region.view, this.region.offset, entries * 8);
    this.iova = Number(this.region.iova);
  }

  /** First entry of request `id`'s table. */
  base(id: number): number {
    return id * this.perId;
  }

  /** Device address of request `id`'s table. */
  address(id: number): number {
    return this.iova + id * this.perId * 16;
  }
}
