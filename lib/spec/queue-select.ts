import { MmioRegister as R } from './mmio-registers';
import { isPowerOfTwo, legacyLayout } from './split-ring';

/**
 * The queue-select protocol of virtio-mmio, written once: QueueSel picks
 * the queue every other queue register speaks of (virtio 1.2 §4.2.2,
 * §4.2.3.2), each of the three areas (§2.6) is a Low/High register pair,
 * and a legacy device takes one page number instead (QueuePFN with
 * GuestPageSize and QueueAlign, §4.2.4, areas laid out as §2.7.2). Pure
 * knowledge and state, no register access: the transport writes with it,
 * the sim decodes with it, diagnostics and test harnesses follow a
 * driver's writes with QueueSelectTracker.
 */

/** The three areas of a virtqueue (§2.6): descriptor area, driver area, device area. */
export type QueueArea = 'desc' | 'driver' | 'device';

/** Where each area's address goes: its Low register; High is Low + 4 (§4.2.2). */
export const QUEUE_AREA_LOW: Readonly<Record<QueueArea, number>> = Object.freeze({
  desc: R.QueueDescLow,
  driver: R.QueueDriverLow,
  device: R.QueueDeviceLow,
});

/** The three areas' device addresses. */
export interface QueueAreaAddresses {
  desc: bigint;
  driver: bigint;
  device: bigint;
}

const AREA_OF: ReadonlyMap<number, { area: QueueArea; high: boolean }> = new Map(
  (Object.entries(QUEUE_AREA_LOW) as [QueueArea, number][]).flatMap(
    ([area, low]): [number, { area: QueueArea; high: boolean }][] => [
      [low, { area, high: false }],
      [low + 4, { area, high: true }],
    ],
  ),
);

/** Which area, and which half of its address, a register offset holds; undefined for any other register. */
export function queueAreaHalf(offset: number): { readonly area: QueueArea; readonly high: boolean } | undefined {
  return AREA_OF.get(offset);
}

/** `address` with one 32-bit half replaced by `value`. */
export function withHalf(address: bigint, high: boolean, value: number): bigint {
  const word = BigInt(value >>> 0);
  return high ? (address & 0xffff_ffffn) | (word << 32n) : (address & ~0xffff_ffffn) | word;
}

/**
 * The register whose non-zero value says a queue is live: QueueReady (Version 2, §4.2.2), QueuePFN (Version 1, §4.2.4).
 */
export function queueLiveRegister(version: 1 | 2): number {
  return version === 2 ? R.QueueReady : R.QueuePFN;
}

/** Version 1: the areas a QueuePFN places, for a queue of `size` entries (§4.2.4, layout §2.7.2). */
export function legacyQueueAreas(pfn: number, pageSize: number, size: number, align: number): QueueAreaAddresses {
  const desc = BigInt(pfn) * BigInt(pageSize);
  const layout = legacyLayout(size, align);
  return { desc, driver: desc + BigInt(layout.availOffset), device: desc + BigInt(layout.usedOffset) };
}

/**
 * Version 1: the QueuePFN that places `areas`, or undefined when no page
 * number can (not one page-aligned block laid out as §2.7.2, page 0, or a
 * page number above 32 bits).
 */
export function legacyQueuePfn(
  areas: QueueAreaAddresses,
  pageSize: number,
  size: number,
  align: number,
): number | undefined {
  const page = BigInt(pageSize);
  const pfn = areas.desc / page;
  if (areas.desc % page !== 0n || pfn === 0n || pfn > 0xffff_ffffn) return undefined;
  const expected = legacyQueueAreas(Number(pfn), pageSize, size, align);
  return expected.driver === areas.driver && expected.device === areas.device ? Number(pfn) : undefined;
}

/** What the driver has written for one queue. */
export interface QueueAreas extends QueueAreaAddresses {
  readonly index: number;
  /** QueueNum. */
  size: number;
  /** QueueReady 1, or a non-zero QueuePFN: the device may use the rings. */
  ready: boolean;
  /** Version 1: QueueAlign (4096 until written) and QueuePFN. */
  align: number;
  pfn: number;
}

/** GuestPageSize and QueueAlign before the driver writes them: what Linux writes (§4.2.4). */
const LEGACY_PAGE = 4096;

/**
 * Follows a driver's register writes and keeps what they say about the
 * queues: QueueSel, then per queue QueueNum, the area addresses (or, on
 * Version 1, QueueAlign and QueuePFN with GuestPageSize) and whether it is
 * live. It only listens: it accepts every write as the driver meant it, and
 * judging the writes is the caller's business (the sim's strict rules, the
 * selftest's device rules).
 */
export class QueueSelectTracker {
  private readonly setups = new Map<number, QueueAreas>();
  private sel = 0;
  private pageSize = LEGACY_PAGE;

  constructor(readonly version: 1 | 2) {}

  /** The queue QueueSel names. */
  get selected(): number {
    return this.sel;
  }

  /** What the driver wrote for queue `index` (all zero and not live if nothing). */
  queue(index: number): QueueAreas {
    let setup = this.setups.get(index);
    if (!setup) {
      setup = { index, size: 0, desc: 0n, driver: 0n, device: 0n, ready: false, align: LEGACY_PAGE, pfn: 0 };
      this.setups.set(index, setup);
    }
    return setup;
  }

  /** Every queue the driver has written something for, in the order it first did. */
  get queues(): QueueAreas[] {
    return [...this.setups.values()];
  }

  /**
   * One driver write. Returns whether it was part of the queue protocol
   * (QueueSel, a queue register, GuestPageSize, or Status ← 0).
   */
  write(offset: number, value: number): boolean {
    const v = value >>> 0;
    const half = queueAreaHalf(offset);
    if (half) {
      const q = this.queue(this.sel);
      q[half.area] = withHalf(q[half.area], half.high, v);
      return true;
    }
    switch (offset) {
      case R.QueueSel:
        this.sel = v;
        return true;
      case R.QueueNum:
        this.queue(this.sel).size = v;
        return true;
      case R.QueueReady:
        if (this.version === 2) this.queue(this.sel).ready = v === 1;
        return this.version === 2;
      case R.QueueReset:
        // §4.2.2.1: writing 1 resets the selected queue, which stops being live.
        if (v === 1) this.queue(this.sel).ready = false;
        return true;
      case R.Status:
        if (v === 0) this.reset();
        return v === 0;
      default:
        return this.version === 1 && this.writeLegacy(offset, v);
    }
  }

  /** A device reset (§2.4): no queue is live any more. What the driver wrote before is kept. */
  reset(): void {
    for (const q of this.setups.values()) {
      q.ready = false;
      q.pfn = 0;
    }
  }

  /** §4.2.4: GuestPageSize, QueueAlign and QueuePFN. */
  private writeLegacy(offset: number, value: number): boolean {
    switch (offset) {
      case R.GuestPageSize:
        this.pageSize = value;
        return true;
      case R.QueueAlign:
        this.queue(this.sel).align = value;
        return true;
      case R.QueuePFN: {
        const q = this.queue(this.sel);
        q.pfn = value;
        q.ready = value !== 0;
        // No size, or a page size or alignment that is not a power of two, places nothing (§4.2.4): the addresses stay
        // as they were.
        if (q.ready && q.size > 0 && isPowerOfTwo(this.pageSize) && isPowerOfTwo(q.align))
          Object.assign(q, legacyQueueAreas(value, this.pageSize, q.size, q.align));
        return true;
      }
      default:
        return false;
    }
  }
}
