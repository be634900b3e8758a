import type { DmaAllocator } from '../platform';
import { ChainRecords } from './chain-records';
import type { Pending } from './pending-request';
import type { OutstandingDump } from './queue-dump';
import type { QueueRequest } from './queue-types';

/**
 * The requests a queue gave its device, by id, and the ownership rule
 * over their memory: a request whose caller was answered early (timeout,
 * abort, detach, a broken queue) is an orphan, and its buffers stay held
 * in the allocator (DmaAllocator.hold) until the device returns the chain
 * or a reset of the device or queue completes (§2.4, §2.6.1) — never
 * before. Then they go back to their owner (SubmitOptions.reclaim).
 */
export class InFlightRequests {
  private readonly byId: (Pending | undefined)[];
  private readonly records: ChainRecords;
  private count = 0;
  private orphanCount = 0;
  /** Requests taken from the ring while the device still had them (takeAll): kept until reclaimRetained(). */
  private retained: Pending[] = [];

  constructor(
    size: number,
    memory: DmaAllocator,
    private readonly index: number,
  ) {
    this.byId = new Array<Pending | undefined>(size).fill(undefined);
    this.records = new ChainRecords(size, memory);
  }

  /** Requests given to the device and not yet returned. */
  get outstanding(): number {
    return this.count;
  }

  /** Outstanding requests nobody waits for any more. */
  get orphans(): number {
    return this.orphanCount;
  }

  get(id: number): Pending | undefined {
    return this.byId[id];
  }

  /** Calls `each` for every request in flight, by ascending id (a request settled meanwhile is skipped). */
  forEach(each: (pending: Pending) => void): void {
    for (let id = 0; id < this.byId.length; id++) {
      const pending = this.byId[id];
      if (pending) each(pending);
    }
  }

  /** The ids in flight, ascending, each with an empty chain for the engine's dump to fill. */
  dumpEntries(): OutstandingDump[] {
    const entries: OutstandingDump[] = [];
    this.byId.forEach((pending, id) => pending && entries.push({ id, orphan: pending.orphaned, descriptors: [] }));
    return entries;
  }

  /** `pending` was placed as `id` with `request`'s buffers. */
  add(id: number, pending: Pending, request: QueueRequest): void {
    this.byId[id] = pending;
    pending.id = id;
    this.records.record(id, request);
    this.count++;
  }

  /**
   * The device returned `id` (validated by the engine): returns its request, whose buffers, if orphaned, are already
   * given back.
   */
  settle(id: number): Pending {
    const pending = this.byId[id]!;
    this.byId[id] = undefined;
    this.count--;
    if (pending.orphaned) {
      this.orphanCount--;
      this.giveBack(pending);
    }
    return pending;
  }

  /** The caller of an in-flight request stopped waiting: its buffers are held until the device returns them. */
  orphan(pending: Pending): void {
    pending.orphaned = true;
    this.orphanCount++;
    this.hold(pending);
  }

  /**
   * Takes every request out (detach, break, close): each is held and
   * retained until reclaimRetained(). Returns them, for their callers to
   * be answered.
   */
  takeAll(): Pending[] {
    const taken: Pending[] = [];
    for (let id = 0; id < this.byId.length; id++) {
      const pending = this.byId[id];
      if (pending === undefined) continue;
      this.byId[id] = undefined;
      this.hold(pending);
      taken.push(pending);
      this.retained.push(pending);
    }
    this.count = 0;
    this.orphanCount = 0;
    return taken;
  }

  /** A reset completed: everything retained goes back to its owner. */
  reclaimRetained(): void {
    const retained = this.retained;
    this.retained = [];
    for (const pending of retained) this.giveBack(pending);
  }

  /**
   * The buffers of a request settled early are its owner's again (the device gave them back, or never had
   * them): unhold them, then tell the owner (SubmitOptions.reclaim). Before its id is reused.
   */
  giveBack(pending: Pending): void {
    if (pending.held) {
      pending.held = false;
      this.records.unhold(pending.id);
    }
    const reclaim = pending.reclaim;
    pending.reclaim = undefined;
    if (!reclaim) return;
    try {
      reclaim();
    } catch (error) {
      // Runs inside interrupt handling and resets: an owner's failure must not unwind those.
      process.emitWarning(
        `virtio-mmio: queue ${this.index}: a SubmitOptions.reclaim callback threw: ` +
          `${String((error as Error)?.message ?? error)}`,
        'VirtioReclaimWarning',
      );
    }
  }

  private hold(pending: Pending): void {
    if (pending.held || pending.id < 0) return;
    pending.held = true;
    this.records.hold(pending.id);
  }
}
