import type { DeviceMemory } from '../platform';
import { SplitRing, VirtqDesc } from '../spec';
import type { SimRule } from './strict-rules';

export interface ChainSource {
  /** The queue's descriptor table (Queue Size entries). */
  readonly table: DataView;
  readonly size: number;
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  readonly indirect: boolean;
  readonly memory: DeviceMemory;
}

export interface ChainBuffers {
  readonly readable: Uint8Array[];
  readonly writable: Uint8Array[];
  readonly readableBytes: number;
  readonly writableBytes: number;
}

/**
 * A walked chain: its buffers, or the rule it broke. `descriptors` lists
 * the entries of the queue's own table that the chain went through (the
 * ones the device owns until the chain is used), as far as the walk got.
 */
export type ChainWalk =
  | ({ readonly ok: true; readonly descriptors: number[] } & ChainBuffers)
  | { readonly ok: false; readonly descriptors: number[]; readonly rule: SimRule; readonly message: string };

const MAX_CHAIN_BYTES = 2 ** 32;

const viewOf = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/**
 * Walks the descriptor chain starting at `head` (virtio 1.2 §2.7.5), with
 * a time-to-live so that a looping chain ends: at most Queue Size entries
 * of the queue's table, and at most len/16 entries of an indirect table
 * (§2.7.5.3). Every driver-side rule of the walk is checked; the first
 * broken one ends it.
 */
export function walkDescriptorChain(source: ChainSource, head: number): ChainWalk {
  const descriptors: number[] = [];
  const readable: Uint8Array[] = [];
  const writable: Uint8Array[] = [];
  let readableBytes = 0;
  let writableBytes = 0;
  const fail = (rule: SimRule, message: string): ChainWalk => ({ ok: false, descriptors, rule, message });

  let table = source.table;
  let entries = source.size;
  let inIndirect = false;
  let ttl = source.size;
  let index = head;
  let where = (i: number): string => `descriptor ${i}`;
  for (;;) {
    if (index >= entries) {
      return fail(
        'descriptor-index-out-of-range',
        `chain from head ${head}: ${inIndirect ? 'indirect table index' : 'descriptor index'} ${index} is not below ${entries}`,
      );
    }
    if (ttl-- === 0) {
      return fail('descriptor-loop', `chain from head ${head} is longer than ${inIndirect ? 'its indirect table' : 'the queue'} (${entries} entries): it loops`);
    }
    if (!inIndirect) descriptors.push(index);
    const at = index * SplitRing.DESC_SIZE;
    const addr = table.getBigUint64(at + SplitRing.DESC_ADDR, true);
    const len = table.getUint32(at + SplitRing.DESC_LEN, true);
    const flags = table.getUint16(at + SplitRing.DESC_FLAGS, true);
    const next = table.getUint16(at + SplitRing.DESC_NEXT, true);

    if (flags & VirtqDesc.F_INDIRECT) {
      if (inIndirect) return fail('nested-indirect', `chain from head ${head}: ${where(index)} sets INDIRECT inside an indirect table`);
      if (!source.indirect) return fail('indirect-not-negotiated', `chain from head ${head}: ${where(index)} sets INDIRECT but VIRTIO_F_INDIRECT_DESC was not negotiated`);
      if (flags & VirtqDesc.F_NEXT) return fail('indirect-with-next', `chain from head ${head}: ${where(index)} sets both INDIRECT and NEXT`);
      if (len === 0 || len % SplitRing.DESC_SIZE !== 0) {
        return fail('indirect-len', `chain from head ${head}: ${where(index)} points to an indirect table of ${len} bytes, not a positive multiple of 16`);
      }
      const bytes = source.memory.resolve(addr, len);
      if (!bytes) return fail('buffer-unreachable', `chain from head ${head}: indirect table at 0x${addr.toString(16)} (${len} bytes) is not in device-reachable memory`);
      // The WRITE flag of the descriptor naming the table is ignored (§2.7.5.3.2).
      table = viewOf(bytes);
      entries = len / SplitRing.DESC_SIZE;
      ttl = entries;
      inIndirect = true;
      index = 0;
      where = (i) => `indirect descriptor ${i}`;
      continue;
    }

    const buffer = len === 0 ? (source.memory.resolve(addr, 0) ?? new Uint8Array(0)) : source.memory.resolve(addr, len);
    if (!buffer) return fail('buffer-unreachable', `chain from head ${head}: ${where(index)} buffer at 0x${addr.toString(16)} (${len} bytes) is not in device-reachable memory`);
    if (flags & VirtqDesc.F_WRITE) {
      writable.push(buffer);
      writableBytes += len;
    } else {
      if (writable.length > 0) return fail('readable-after-writable', `chain from head ${head}: ${where(index)} is device-readable but follows a device-writable one`);
      readable.push(buffer);
      readableBytes += len;
    }
    if (readableBytes + writableBytes > MAX_CHAIN_BYTES) {
      return fail('chain-too-long', `chain from head ${head} describes more than 2^32 bytes`);
    }
    if (!(flags & VirtqDesc.F_NEXT)) return { ok: true, descriptors, readable, writable, readableBytes, writableBytes };
    index = next;
  }
}
