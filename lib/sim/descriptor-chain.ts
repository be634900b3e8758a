import type { DeviceMemory } from '../platform';
import { SplitRing, VirtqDesc } from '../spec';
import { ChainBuilder, type ChainBuffers } from './chain-builder';
import type { SimRule } from './strict-rules';

export type { ChainBuffers } from './chain-builder';

export interface ChainSource {
  /** The queue's descriptor table (Queue Size entries). */
  readonly table: DataView;
  readonly size: number;
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  readonly indirect: boolean;
  readonly memory: DeviceMemory;
  /**
   * VIRTIO_F_IN_ORDER negotiated: `next` must be x + 1 (0 after the last
   * entry) in the table (§2.7.5.2) and i + 1 in an indirect table
   * (§2.7.5.3.1). Each miss is noted; the walk follows `next` anyway.
   */
  readonly inOrder?: boolean;
  note?(rule: SimRule, message: string): void;
}

/**
 * A walked chain: its buffers, or the rule it broke. `descriptors` lists
 * the entries of the queue's own table that the chain went through (the
 * ones the device owns until the chain is used), as far as the walk got.
 */
export type ChainWalk =
  | ({ readonly ok: true; readonly descriptors: number[] } & ChainBuffers)
  | { readonly ok: false; readonly descriptors: number[]; readonly rule: SimRule; readonly message: string };

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
  const buffers = new ChainBuilder(source.memory, 'readable-after-writable');
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
        `chain from head ${head}: ${inIndirect ? 'indirect table index' : 'descriptor index'} ${index} ` +
          `is not below ${entries}`,
      );
    }
    if (ttl-- === 0) {
      return fail(
        'descriptor-loop',
        `chain from head ${head} is longer than ${inIndirect ? 'its indirect table' : 'the queue'} (${entries} ` +
          `entries): it loops`,
      );
    }
    if (!inIndirect) descriptors.push(index);
    const at = index * SplitRing.DESC_SIZE;
    const addr = table.getBigUint64(at + SplitRing.DESC_ADDR, true);
    const len = table.getUint32(at + SplitRing.DESC_LEN, true);
    const flags = table.getUint16(at + SplitRing.DESC_FLAGS, true);
    const next = table.getUint16(at + SplitRing.DESC_NEXT, true);

    if (flags & VirtqDesc.F_INDIRECT) {
      if (inIndirect)
        return fail(
          'nested-indirect',
          `chain from head ${head}: ${where(index)} sets INDIRECT inside an indirect table`,
        );
      if (!source.indirect)
        return fail(
          'indirect-not-negotiated',
          `chain from head ${head}: ${where(index)} sets INDIRECT but VIRTIO_F_INDIRECT_DESC was not negotiated`,
        );
      if (flags & VirtqDesc.F_NEXT)
        return fail('indirect-with-next', `chain from head ${head}: ${where(index)} sets both INDIRECT and NEXT`);
      if (len === 0 || len % SplitRing.DESC_SIZE !== 0) {
        return fail(
          'indirect-len',
          `chain from head ${head}: ${where(index)} points to an indirect table of ${len} bytes, not a ` +
            `positive multiple of 16`,
        );
      }
      const bytes = source.memory.resolve(addr, len);
      if (!bytes)
        return fail(
          'buffer-unreachable',
          `chain from head ${head}: indirect table at 0x${addr.toString(16)} (${len} bytes) is not in ` +
            `device-reachable memory`,
        );
      // The WRITE flag of the descriptor naming the table is ignored (§2.7.5.3.2).
      table = viewOf(bytes);
      entries = len / SplitRing.DESC_SIZE;
      ttl = entries;
      inIndirect = true;
      index = 0;
      where = (i) => `indirect descriptor ${i}`;
      continue;
    }

    const fault = buffers.add(addr, len, (flags & VirtqDesc.F_WRITE) !== 0, `chain from head ${head}: ${where(index)}`);
    if (fault) return fail(fault.rule, fault.message);
    if (!(flags & VirtqDesc.F_NEXT)) return { ok: true, descriptors, ...buffers.result() };
    if (source.inOrder) checkInOrderNext(source, head, index, next, inIndirect);
    index = next;
  }
}

/** IN_ORDER: the next entry is the following one, in the ring table (wrapping) and in an indirect table. */
function checkInOrderNext(source: ChainSource, head: number, index: number, next: number, inIndirect: boolean): void {
  const expected = inIndirect ? index + 1 : (index + 1) % source.size;
  if (next === expected) return;
  if (inIndirect) {
    source.note?.(
      'in-order-indirect-next',
      `chain from head ${head}: indirect descriptor ${index} has next ${next}; with VIRTIO_F_IN_ORDER ` +
        `it must be ${expected}`,
    );
  } else {
    source.note?.(
      'in-order-next',
      `chain from head ${head}: descriptor ${index} has next ${next}; with VIRTIO_F_IN_ORDER it must be ${expected}`,
    );
  }
}
