import { PackedDesc, PackedRing, RingEventFlags, SplitRing, VirtqDesc, unpackEventOffWrap } from '../spec';
import type { QueueMode } from './completion-mode';
import type { QueueStats } from './queue-types';
import type { RingEngine } from './ring-engine';
import type { QueueAddresses } from '../transport/virtio-transport';
import { hex } from '../util/hex';

/**
 * The state of one virtqueue as plain JSON data (numbers and strings;
 * device addresses as "0x…" strings): what the driver keeps privately and
 * what the rings hold right now, so that a reader sees at once where the
 * device's view and the driver's differ. Made on demand (Virtqueue.dump(),
 * readLiveQueue()); nothing here runs on the request path.
 */

export type RingFormat = 'split' | 'packed';

/**
 * Packed ring descriptors: what a slot's AVAIL and USED bits say for the
 * round (wrap counter) that slot is in (virtio 1.2 §2.8.1):
 * 'available' AVAIL = wrap ≠ USED; 'used' AVAIL = USED = wrap;
 * 'not-yet-available' AVAIL ≠ wrap = USED (a head the driver has written
 * but not yet exposed); 'used-earlier' AVAIL = USED ≠ wrap (a used
 * descriptor of the previous round, or never written).
 */
export type PackedSlotState = 'available' | 'used' | 'not-yet-available' | 'used-earlier';

/** One descriptor as it is in memory (§2.7.5 split, §2.8.13 packed). */
export interface DescriptorDump {
  /** Its index in the descriptor table / ring, or in its indirect table. */
  slot: number;
  addr: string;
  len: number;
  flags: number;
  /** NEXT, WRITE, INDIRECT (and for packed AVAIL, USED) — the bits set in `flags`. */
  flagNames: string[];
  /** Split: the next field. */
  next?: number;
  /** Packed: the Buffer ID field. */
  id?: number;
  /** Packed ring descriptors (not indirect entries): see PackedSlotState. */
  state?: PackedSlotState;
  /** INDIRECT: the entries of the table it points to (§2.7.5.3, §2.8.7). */
  indirect?: DescriptorDump[];
  /** Something about this descriptor that breaks the spec, or could not be read. */
  problem?: string;
}

/** A buffer given to the device and not yet returned (driver side), or one the rings show as available (live). */
export interface OutstandingDump {
  /** Split: the head descriptor index; packed: the Buffer ID. */
  id: number;
  /** Driver side: the caller gave up (abort, timeout); the device still owns the buffers. */
  orphan?: boolean;
  /** The chain in ring order. */
  descriptors: DescriptorDump[];
  /**
   * Driver side: the device has returned it (a used element / used descriptor) and the driver has not consumed that
   * yet.
   */
  used?: { len: number };
  problem?: string;
}

/** §2.7.6, §2.7.8, §2.7.10: the split ring's index and flag words as they are in memory. */
export interface SplitRingState {
  format: 'split';
  availFlags: number;
  availIdx: number;
  usedFlags: number;
  usedIdx: number;
  /** Driver-written, meaningful with VIRTIO_F_EVENT_IDX. */
  usedEvent?: number;
  /** Device-written, meaningful with VIRTIO_F_EVENT_IDX. */
  availEvent?: number;
}

/** A struct pvirtq_event_suppress (§2.8.10): desc = offset (15 bits) | wrap (bit 15). */
export interface EventSuppressionDump {
  desc: number;
  offset: number;
  wrap: number;
  flags: number;
  /** ENABLE, DISABLE, DESC, or "reserved (3)". */
  flagName: string;
}

export interface PackedRingState {
  format: 'packed';
  /** The driver area: written by the driver, read by the device. */
  driverEvent: EventSuppressionDump;
  /** The device area: written by the device, read by the driver. */
  deviceEvent: EventSuppressionDump;
}

export type RingState = SplitRingState | PackedRingState;

/** The split queue driver's private state (never read back from the rings). */
export interface SplitShadow {
  /** avail.idx after the entries placed so far. */
  nextAvailIdx: number;
  /** avail.idx as last stored in the ring; below nextAvailIdx until the next publication. */
  publishedIdx: number;
  /** used.idx up to which the driver has consumed. */
  lastUsedIdx: number;
  free: number;
  freeHead: number;
}

/** The packed queue driver's private state. */
export interface PackedShadow {
  nextAvail: number;
  availWrap: number;
  nextUsed: number;
  usedWrap: number;
  /** Free descriptor slots. */
  freeSlots: number;
  /** Free Buffer IDs. */
  freeIds: number;
  /** Heads placed but not yet exposed (their flags are written at the next publication). */
  unpublished: number;
}

export interface QueueDump {
  index: number;
  format: RingFormat;
  size: number;
  /** Negotiated ring features in effect. */
  features: { eventIdx: boolean; inOrder: boolean; indirect: boolean };
  mode: QueueMode;
  broken?: { reason: string; message: string };
  stats: QueueStats;
  /** Device addresses of the descriptor, driver and device areas. */
  addresses: { desc: string; driver: string; device: string };
  shadow: SplitShadow | PackedShadow;
  ring: RingState;
  /** Requests in flight, ascending id. */
  outstanding: OutstandingDump[];
}

/** What dumpQueue() reads of a queue besides its engine's view. */
export interface QueueDumpSource {
  index: number;
  size: number;
  format: RingFormat;
  mode: QueueMode;
  stats: QueueStats;
  addresses: QueueAddresses;
  brokenBy?: { reason: string; message: string };
  engine: Pick<RingEngine, 'eventIdx' | 'inOrder' | 'indirect' | 'dump'>;
}

/** A queue's QueueDump: its identity, features, mode, state and stats, then what its engine reads of the ring. */
export function dumpQueue(queue: QueueDumpSource, outstanding: OutstandingDump[]): QueueDump {
  const { index, size, engine, mode, brokenBy, stats, addresses, format } = queue;
  return {
    index,
    size,
    features: { eventIdx: engine.eventIdx, inOrder: engine.inOrder, indirect: engine.indirect !== undefined },
    mode,
    ...(brokenBy ? { broken: { ...brokenBy } } : {}),
    stats: { ...stats },
    addresses: { desc: hex(addresses.desc), driver: hex(addresses.driver), device: hex(addresses.device) },
    format,
    ...engine.dump(outstanding),
  } as QueueDump;
}

/** Reads the bytes of an indirect table the device was given; throws when they cannot be read. */
export type TableReader = (address: bigint, length: number) => DataView;

/** Re-exported for lib/queue/virtqueue.ts, which imports it from here. */
export { hex };

const FLAG_NAMES: readonly (readonly [number, string])[] = [
  [VirtqDesc.F_NEXT, 'NEXT'],
  [VirtqDesc.F_WRITE, 'WRITE'],
  [VirtqDesc.F_INDIRECT, 'INDIRECT'],
];
const PACKED_FLAG_NAMES: readonly (readonly [number, string])[] = [
  ...FLAG_NAMES,
  [PackedDesc.F_AVAIL, 'AVAIL'],
  [PackedDesc.F_USED, 'USED'],
];

/**
 * The names of the descriptor flag bits set in `flags` (§2.7.5; §2.8.1 adds AVAIL and USED); unknown bits as "bit N".
 */
export function descriptorFlagNames(flags: number, format: RingFormat): string[] {
  const table = format === 'packed' ? PACKED_FLAG_NAMES : FLAG_NAMES;
  const names: string[] = [];
  let known = 0;
  for (const [bit, name] of table) {
    known |= bit;
    if (flags & bit) names.push(name);
  }
  for (let bit = 0; bit < 16; bit++) if (flags & ~known & (1 << bit)) names.push(`bit ${bit}`);
  return names;
}

/** What a packed slot's flags say in round `wrap` (see PackedSlotState). */
export function packedSlotState(flags: number, wrap: boolean): PackedSlotState {
  const avail = (flags & PackedDesc.F_AVAIL) !== 0;
  const used = (flags & PackedDesc.F_USED) !== 0;
  if (avail === used) return used === wrap ? 'used' : 'used-earlier';
  return avail === wrap ? 'available' : 'not-yet-available';
}

const EVENT_NAMES = ['ENABLE', 'DISABLE', 'DESC'];

/** A struct pvirtq_event_suppress at `offset` of `view`. */
export function eventSuppression(view: DataView, offset: number): EventSuppressionDump {
  const desc = view.getUint16(offset + PackedRing.EVENT_DESC, true);
  const flags = view.getUint16(offset + PackedRing.EVENT_FLAGS, true);
  const { offset: at, wrap } = unpackEventOffWrap(desc);
  const mode = flags & 3;
  const name = mode <= RingEventFlags.DESC ? EVENT_NAMES[mode] : `reserved (${mode})`;
  return {
    desc,
    offset: at,
    wrap: wrap ? 1 : 0,
    flags,
    flagName: flags & ~3 ? `${name}, bits ${hex(flags & ~3)}` : name,
  };
}

/** One 16-byte descriptor at index `slot` of `view` (same address and length words in both formats). */
export function readDescriptor(view: DataView, slot: number, format: RingFormat): DescriptorDump {
  const at = slot * SplitRing.DESC_SIZE;
  const addr = view.getBigUint64(at + SplitRing.DESC_ADDR, true);
  const len = view.getUint32(at + SplitRing.DESC_LEN, true);
  if (format === 'split') {
    const flags = view.getUint16(at + SplitRing.DESC_FLAGS, true);
    return {
      slot,
      addr: hex(addr),
      len,
      flags,
      flagNames: descriptorFlagNames(flags, format),
      next: view.getUint16(at + SplitRing.DESC_NEXT, true),
    };
  }
  const flags = view.getUint16(at + PackedRing.DESC_FLAGS, true);
  return {
    slot,
    addr: hex(addr),
    len,
    flags,
    flagNames: descriptorFlagNames(flags, format),
    id: view.getUint16(at + PackedRing.DESC_ID, true),
  };
}

/**
 * The entries of the indirect table `descriptor` points to. Its len must
 * be a non-zero multiple of 16 (§2.7.5.3.1) and at most `maxEntries`
 * entries are read. Split: the entries are walked from 0 along NEXT (each
 * at most once); packed: entries in order (§2.8.7).
 */
function readIndirect(
  descriptor: DescriptorDump,
  format: RingFormat,
  maxEntries: number,
  readTable: TableReader,
): void {
  const { len } = descriptor;
  if (len === 0 || len % SplitRing.DESC_SIZE !== 0) {
    descriptor.problem = `an indirect table of ${len} bytes is not a whole number of 16-byte descriptors (§2.7.5.3.1)`;
    return;
  }
  const count = len / SplitRing.DESC_SIZE;
  if (count > maxEntries) {
    descriptor.problem = `an indirect table of ${count} descriptors is longer than the ${maxEntries} read`;
    return;
  }
  let table: DataView;
  try {
    table = readTable(BigInt(descriptor.addr), len);
  } catch (error) {
    descriptor.problem = `the indirect table could not be read: ${(error as Error).message}`;
    return;
  }
  const entries: DescriptorDump[] = [];
  if (format === 'packed') {
    for (let i = 0; i < count; i++) entries.push(readDescriptor(table, i, format));
  } else {
    entries.push(...followNext(table, 0, count, 'indirect table'));
  }
  for (const entry of entries)
    if (entry.flags & VirtqDesc.F_INDIRECT) entry.problem = 'INDIRECT inside an indirect table (§2.7.5.3.1)';
  descriptor.indirect = entries;
}

/**
 * The split-ring chain starting at `head` of a descriptor table of `size`
 * entries, along NEXT. Untrusted memory is fine: at most `size`
 * descriptors, each at most once, never outside the table.
 */
export function walkSplitChain(
  table: DataView,
  size: number,
  head: number,
  readTable: TableReader,
  maxIndirect: number,
): OutstandingDump {
  const chain: OutstandingDump = { id: head, descriptors: [] };
  if (head >= size) {
    chain.problem = `head ${head} is outside the ${size}-entry descriptor table`;
    return chain;
  }
  chain.descriptors = followNext(table, head, size, 'descriptor table', (descriptor) => {
    if (descriptor.flags & VirtqDesc.F_INDIRECT) readIndirect(descriptor, 'split', maxIndirect, readTable);
  });
  return chain;
}

/**
 * Split-format descriptors from `start` along NEXT in a table of `count`
 * entries: each at most once, never outside the table; where the walk had
 * to stop, the last descriptor says why.
 */
function followNext(
  table: DataView,
  start: number,
  count: number,
  what: string,
  visit?: (descriptor: DescriptorDump) => void,
): DescriptorDump[] {
  const descriptors: DescriptorDump[] = [];
  const seen = new Uint8Array(count);
  for (let slot = start; ;) {
    seen[slot] = 1;
    const descriptor = readDescriptor(table, slot, 'split');
    descriptors.push(descriptor);
    visit?.(descriptor);
    if (!(descriptor.flags & VirtqDesc.F_NEXT)) break;
    const next = descriptor.next!;
    if (next >= count) {
      descriptor.problem = `next ${next} is outside the ${count}-entry ${what}`;
      break;
    }
    if (seen[next]) {
      descriptor.problem = `next ${next} loops back into the chain`;
      break;
    }
    slot = next;
  }
  return descriptors;
}

/**
 * The packed-ring chain whose first descriptor is at `slot` (round
 * `wrap`): that descriptor and the ones after it in ring order while NEXT
 * is set, at most `limit` of them (§2.8.6) — or exactly `limit` when
 * `exact` (the driver knows its chains' lengths; a head it has not exposed
 * yet carries no NEXT).
 */
export function walkPackedChain(
  ring: DataView,
  size: number,
  slot: number,
  wrap: boolean,
  limit: number,
  readTable: TableReader,
  maxIndirect: number,
  exact = false,
): DescriptorDump[] {
  const chain: DescriptorDump[] = [];
  for (let n = 0; n < limit; n++) {
    const descriptor = readDescriptor(ring, slot, 'packed');
    descriptor.state = packedSlotState(descriptor.flags, wrap);
    chain.push(descriptor);
    if (descriptor.flags & PackedDesc.F_INDIRECT) readIndirect(descriptor, 'packed', maxIndirect, readTable);
    if (exact ? n === limit - 1 : !(descriptor.flags & PackedDesc.F_NEXT)) return chain;
    if (++slot === size) {
      slot = 0;
      wrap = !wrap;
    }
  }
  if (chain.length > 0) chain[chain.length - 1].problem = `the chain goes on past ${limit} descriptors`;
  return chain;
}
