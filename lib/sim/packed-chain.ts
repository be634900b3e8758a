import type { DeviceMemory } from '../platform';
import { PackedDesc, PackedRing } from '../spec';
import { ChainBuilder, type ChainBuffers, type ChainFault } from './chain-builder';
import type { SimRule } from './strict-rules';

export interface PackedChainSource {
  /** The descriptor ring (Queue Size descriptors). */
  readonly ring: DataView;
  /** Flags of the descriptor in `slot`, read as one 16-bit load. */
  flagsAt(slot: number): number;
  readonly size: number;
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  readonly indirect: boolean;
  readonly memory: DeviceMemory;
  /** Descriptors from the start on that the driver may make available: Queue Size less those the device still owns. */
  readonly room: number;
}

/**
 * A walked packed list: its buffers, the Buffer ID (from its last
 * descriptor, §2.8.6) and how many ring descriptors it took, or the rule
 * it broke. `notes` are broken rules the device only records.
 */
export type PackedChainWalk =
  | ({ readonly ok: true; readonly id: number; readonly count: number; readonly notes: ChainFault[] } & ChainBuffers)
  | { readonly ok: false; readonly rule: SimRule; readonly message: string };

const { F_NEXT, F_WRITE, F_INDIRECT, F_AVAIL, F_USED } = PackedDesc;

const viewOf = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/**
 * Walks the list whose first descriptor, in `start`, the device has seen
 * available with wrap counter `wrap` (virtio 1.2 §2.8.6, §2.8.7). The list
 * continues over consecutive slots while NEXT is set, wrapping to slot 0
 * with the wrap counter flipped; every later descriptor must be available
 * for its own lap too (§2.8.17: the driver makes the first descriptor
 * available last). An indirect descriptor is a list on its own: its table
 * holds len/16 descriptors, all of them used, in order.
 */
export function walkPackedChain(
  source: PackedChainSource,
  start: number,
  wrap: boolean,
  headFlags: number,
): PackedChainWalk {
  const buffers = new ChainBuilder(source.memory, 'packed-readable-after-writable');
  const fail = (rule: SimRule, message: string): PackedChainWalk => ({ ok: false, rule, message });
  const list = `list from descriptor ${start}`;
  let slot = start;
  let lapWrap = wrap;
  let flags = headFlags;
  for (let count = 1; ; count++) {
    const at = slot * PackedRing.DESC_SIZE;
    const addr = source.ring.getBigUint64(at + PackedRing.DESC_ADDR, true);
    const len = source.ring.getUint32(at + PackedRing.DESC_LEN, true);
    const id = source.ring.getUint16(at + PackedRing.DESC_ID, true);
    if (flags & F_INDIRECT) {
      if (!source.indirect)
        return fail(
          'packed-indirect-not-negotiated',
          `${list}: descriptor ${slot} sets INDIRECT but VIRTIO_F_INDIRECT_DESC was not negotiated`,
        );
      if (count > 1 || flags & F_NEXT)
        return fail('packed-indirect-with-next', `${list}: descriptor ${slot} sets INDIRECT in a list linked by NEXT`);
      return walkIndirect(source, buffers, `${list}: indirect descriptor`, addr, len, id);
    }
    const fault = buffers.add(addr, len, (flags & F_WRITE) !== 0, `${list}: descriptor ${slot}`);
    if (fault) return fail(fault.rule, fault.message);
    if (!(flags & F_NEXT)) return { ok: true, id, count, notes: [], ...buffers.result() };

    if (count === source.size)
      return fail('packed-chain-too-long', `${list} goes on past ${source.size} descriptors, the queue size`);
    if (count === source.room) {
      return fail(
        'packed-ring-overrun',
        `${list} goes on past ${source.room} descriptors, into descriptors the device has not used yet`,
      );
    }
    slot++;
    if (slot === source.size) {
      slot = 0;
      lapWrap = !lapWrap;
    }
    flags = source.flagsAt(slot);
    const avail = (flags & F_AVAIL) !== 0;
    const used = (flags & F_USED) !== 0;
    if (avail !== lapWrap)
      return fail(
        'packed-chain-incomplete',
        `${list}: descriptor ${slot} of the list is not available (AVAIL ${+avail}, wrap counter ${+lapWrap})`,
      );
    if (used === lapWrap)
      return fail(
        'packed-desc-flags-inconsistent',
        `${list}: descriptor ${slot} has AVAIL = USED = ${+lapWrap}, the marking of a used descriptor`,
      );
  }
}

/**
 * The table of an indirect descriptor (§2.8.7): only WRITE is valid in it; other flags and the Buffer IDs are ignored.
 */
function walkIndirect(
  source: PackedChainSource,
  buffers: ChainBuilder,
  what: string,
  addr: bigint,
  len: number,
  id: number,
): PackedChainWalk {
  if (len === 0 || len % PackedRing.DESC_SIZE !== 0) {
    return {
      ok: false,
      rule: 'packed-indirect-len',
      message: `${what} points to a table of ${len} bytes, not a positive multiple of 16`,
    };
  }
  const bytes = source.memory.resolve(addr, len);
  if (!bytes)
    return {
      ok: false,
      rule: 'buffer-unreachable',
      message: `${what}: table at 0x${addr.toString(16)} (${len} bytes) is not in device-reachable memory`,
    };
  const table = viewOf(bytes);
  const notes: ChainFault[] = [];
  for (let i = 0; i < len / PackedRing.DESC_SIZE; i++) {
    const at = i * PackedRing.DESC_SIZE;
    const flags = table.getUint16(at + PackedRing.DESC_FLAGS, true);
    if (flags & ~F_WRITE && notes.length === 0) {
      notes.push({
        rule: 'packed-indirect-flags',
        message:
          `${what}: table entry ${i} has flags 0x${flags.toString(16)}` + `; only WRITE is valid in an indirect table`,
      });
    }
    const fault = buffers.add(
      table.getBigUint64(at + PackedRing.DESC_ADDR, true),
      table.getUint32(at + PackedRing.DESC_LEN, true),
      (flags & F_WRITE) !== 0,
      `${what} entry ${i}`,
    );
    if (fault) return { ok: false, rule: fault.rule, message: fault.message };
  }
  return { ok: true, id, count: 1, notes, ...buffers.result() };
}
