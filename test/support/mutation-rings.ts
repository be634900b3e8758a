import type {
  DeviceMemory,
  InterruptErrorListener,
  InterruptEvent,
  InterruptListener,
  InterruptSource,
} from '../../lib/platform';
import type { FaultName, UsedElement } from '../../lib/sim';
import {
  PackedDesc,
  PackedRing,
  RingViolation,
  SplitRing,
  availEventOffset,
  packedRingBytes,
  usedRingBytes,
} from '../../lib/spec';
import type { MutatingRegisters, QueueAreas } from './mutating-registers';
import { MutationRandom, mutateValue } from './mutation-random';

/** The catalogued fault a mutation from `old` to `value` tells. */
type FaultOf = (old: number, value: number) => FaultName | 'uncatalogued';

/** Where the device is in a ring (SimDevice.queueState): split used idx, or packed next-used slot and wrap counter. */
export interface DevicePosition {
  readonly usedIdx: number;
  readonly usedWrap?: boolean;
}

/** How often the ring lies; may be changed at any time. */
export interface RingLies {
  /** Probability per tick (a turn of the event loop, or just before an interrupt is handled) of one mutation. */
  rate: number;
  /** Probability that a used element is rewritten as the device writes it (SimFaults.usedElement). */
  usedElementRate: number;
}

/**
 * Mutates the device-written parts of live rings (virtio 1.2 §2.7.8 used
 * ring and avail_event; §2.8 used descriptors and the device event
 * suppression area), at random, in place: the driver then reads the lie
 * as if the device had written it. Where the rings are comes from the
 * driver's register writes (MutatingRegisters); where the device is in
 * each ring from `position`, so recent used entries are the usual target.
 */
export class RingMutator {
  readonly lies: RingLies = { rate: 0, usedElementRate: 0 };
  /** Mutations made, by target. */
  readonly mutated = new Map<string, number>();
  /**
   * Mutations made, by the FAULT_CATALOGUE fault each one tells ('uncatalogued': notification hints no fault covers).
   */
  readonly byFault = new Map<FaultName | 'uncatalogued', number>();
  /** Mutations that can make the driver complete the wrong request, or too early (all but notification hints). */
  dataLies = 0;

  constructor(
    private readonly regs: MutatingRegisters,
    private readonly memory: DeviceMemory,
    private readonly random: MutationRandom,
    private readonly position: (queue: number) => DevicePosition | undefined,
  ) {}

  /** With probability `lies.rate`, one mutation in one live queue. */
  tick(): void {
    if (!this.random.chance(this.lies.rate)) return;
    const queues = this.regs.queues;
    if (queues.length === 0) return;
    const queue = this.random.pick(queues);
    const at = this.position(queue.index);
    if (!at) return;
    if (this.regs.packed) this.mutatePacked(queue, at);
    else this.mutateSplit(queue, at);
  }

  /** For SimOptions.faults.usedElement: rewrites the id or len the device is about to write. */
  usedElement(queue: number, element: UsedElement): UsedElement {
    if (!this.random.chance(this.lies.usedElementRate)) return element;
    const bits = this.regs.packed ? 16 : 32;
    const out = this.random.chance(0.5)
      ? { id: mutateValue(this.random, element.id, bits), len: element.len }
      : { id: element.id, len: mutateValue(this.random, element.len, 32) };
    const size = this.regs.queues.find((q) => q.index === queue)?.size ?? Infinity;
    const fault: FaultName =
      out.id !== element.id
        ? out.id >= size
          ? RingViolation.USED_ID_OUT_OF_RANGE
          : RingViolation.USED_ID_NOT_HEAD
        : out.len > element.len
          ? RingViolation.USED_LEN_TOO_LONG
          : 'used-len-too-short';
    if (out.id !== element.id || out.len !== element.len) this.count('used-element (as written)', true, fault);
    return out;
  }

  private mutateSplit(queue: QueueAreas, at: DevicePosition): void {
    const n = queue.size;
    const bytes = this.memory.resolve(queue.device, usedRingBytes(n));
    if (!bytes) return;
    const used = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const recent = SplitRing.USED_RING + SplitRing.USED_ELEM_SIZE * ((at.usedIdx - 1 - this.random.int(3)) & (n - 1));
    switch (this.random.int(8)) {
      case 0:
      case 1:
        this.mutate16(used, SplitRing.USED_IDX, 'used.idx', true, (old, value) =>
          ((value - old) & 0xffff) < 0x8000 ? RingViolation.USED_IDX_JUMP : RingViolation.USED_IDX_BACKWARDS,
        );
        return;
      case 2:
        this.mutate16(used, SplitRing.USED_FLAGS, 'used.flags', false, () => 'uncatalogued');
        return;
      case 3:
        // An element the device has not written yet, then the index moved over it.
        this.mutate32(
          used,
          SplitRing.USED_RING + SplitRing.USED_ELEM_SIZE * (at.usedIdx & (n - 1)),
          'used.ring[next].id',
          true,
          () => RingViolation.USED_IDX_JUMP,
        );
        used.setUint16(SplitRing.USED_IDX, (used.getUint16(SplitRing.USED_IDX, true) + 1) & 0xffff, true);
        return;
      case 4:
      case 5:
        this.mutate32(used, recent, 'used.ring[].id', true, () => 'used-element-changes');
        return;
      case 6:
        this.mutate32(used, recent + 4, 'used.ring[].len', true, () => 'used-element-changes');
        return;
      default:
        this.mutate16(used, availEventOffset(n), 'avail_event', false, () => 'uncatalogued');
    }
  }

  private mutatePacked(queue: QueueAreas, at: DevicePosition): void {
    const n = queue.size;
    const ring = this.memory.resolve(queue.desc, packedRingBytes(n));
    const event = this.memory.resolve(queue.device, PackedRing.EVENT_SIZE);
    if (!ring || !event) return;
    const desc = new DataView(ring.buffer, ring.byteOffset, ring.byteLength);
    const slot = (at.usedIdx - 1 - this.random.int(3) + 2 * n) % n;
    const base = slot * PackedRing.DESC_SIZE;
    switch (this.random.int(8)) {
      case 0:
      case 1:
        this.mutate16(desc, base + PackedRing.DESC_ID, 'used desc id', true, () => 'used-element-changes');
        return;
      case 2:
        this.mutate32(desc, base + PackedRing.DESC_LEN, 'used desc len', true, () => 'used-element-changes');
        return;
      case 3:
        this.mutate16(desc, base + PackedRing.DESC_FLAGS, 'used desc flags', true, () => 'packed-wrong-flags');
        return;
      case 4: {
        // The next slot made to look used in the device's current round (§2.8.1: AVAIL = USED = wrap).
        const next = (at.usedIdx % n) * PackedRing.DESC_SIZE + PackedRing.DESC_FLAGS;
        const wrap = at.usedWrap ?? true;
        const flags =
          (desc.getUint16(next, true) & ~(PackedDesc.F_AVAIL | PackedDesc.F_USED)) |
          (wrap ? PackedDesc.F_AVAIL | PackedDesc.F_USED : 0);
        desc.setUint16(next, flags, true);
        this.count('next desc flags made used', true, 'packed-wrong-flags');
        return;
      }
      case 5:
        this.mutate16(
          desc,
          (at.usedIdx % n) * PackedRing.DESC_SIZE + PackedRing.DESC_ID,
          'next desc id',
          true,
          () => 'descriptors-rewritten',
        );
        return;
      default: {
        const suppression = new DataView(event.buffer, event.byteOffset, event.byteLength);
        this.mutate16(
          suppression,
          this.random.chance(0.5) ? PackedRing.EVENT_DESC : PackedRing.EVENT_FLAGS,
          'device event suppression',
          false,
          () => 'uncatalogued',
        );
      }
    }
  }

  private mutate16(view: DataView, offset: number, what: string, data: boolean, fault: FaultOf): void {
    const old = view.getUint16(offset, true);
    const value = mutateValue(this.random, old, 16);
    view.setUint16(offset, value, true);
    if (value !== old) this.count(what, data, fault(old, value));
  }

  private mutate32(view: DataView, offset: number, what: string, data: boolean, fault: FaultOf): void {
    const old = view.getUint32(offset, true);
    const value = mutateValue(this.random, old, 32);
    view.setUint32(offset, value, true);
    if (value !== old) this.count(what, data, fault(old, value));
  }

  private count(what: string, data: boolean, fault: FaultName | 'uncatalogued'): void {
    this.mutated.set(what, (this.mutated.get(what) ?? 0) + 1);
    this.byFault.set(fault, (this.byFault.get(fault) ?? 0) + 1);
    if (data) this.dataLies++;
  }
}

/**
 * An InterruptSource in front of another that runs `before` just before
 * each interrupt is handed to the driver, so a ring can be mutated between
 * the device raising the interrupt and the driver reading the ring.
 */
export class MutatingInterrupts implements InterruptSource {
  constructor(
    private readonly inner: InterruptSource,
    private readonly before: () => void,
  ) {}

  get label(): string {
    return this.inner.label;
  }

  get closed(): boolean {
    return this.inner.closed;
  }

  get listening(): boolean {
    return this.inner.listening;
  }

  listen(onInterrupt: InterruptListener, onError: InterruptErrorListener): void {
    this.inner.listen((event: InterruptEvent) => {
      this.before();
      onInterrupt(event);
    }, onError);
  }

  unlisten(): void {
    this.inner.unlisten();
  }

  enable(): void {
    this.inner.enable();
  }

  disable(): void {
    this.inner.disable();
  }

  close(): void {
    this.inner.close();
  }

  ref(): void {
    this.inner.ref();
  }

  unref(): void {
    this.inner.unref();
  }

  events(): AsyncIterableIterator<InterruptEvent> {
    return this.inner.events();
  }
}
