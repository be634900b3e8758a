import { PackedDesc, RingViolation } from '../spec';
import type { Completion } from './completion-order';
import type { Hostile } from './hostile';
import type { UsedElement } from './sim-ring';

/** What a hostile ring needs to know of the ring it lies for. */
export interface HostileRingView {
  readonly index: number;
  readonly num: number;
  readonly kind: 'split' | 'packed';
  /** Whether the driver may have `id` outstanding: in flight at the device, or made available and not yet taken. */
  busy(id: number): boolean;
  /**
   * A completion naming a chain the device did not use (split: a non-head descriptor; packed: another outstanding id).
   */
  wrongChain(batch: readonly Completion[]): number | undefined;
}

/** Used ids remembered for replays. */
const HISTORY = 16;
const { F_AVAIL, F_USED } = PackedDesc;

/**
 * The lies one ring tells (behaviours 1–7 and 10): the used element
 * (id and len, §2.7.8 / §2.8.13), the split used.idx, the packed used
 * flags (§2.8.1). Each call either counts an honest completion towards
 * `after` or misbehaves and records it.
 */
export class HostileRing {
  private readonly history: number[] = [];
  /**
   * An honest element (one of the first `after`) was written since the last used.idx store: that store is honest too.
   */
  private honestSincePublish = false;
  /** Whether the element being written is past the honest ones (set by usedElement, read by the ring's writeUsed). */
  lying = false;

  constructor(
    private readonly hostile: Hostile,
    private readonly view: HostileRingView,
  ) {}

  /** The element to write for `batch` in place of the honest `element`. */
  usedElement(batch: readonly Completion[], element: UsedElement): UsedElement {
    const { hostile, view } = this;
    const q = view.index;
    this.lying = hostile.started(q);
    if (!this.lying) {
      hostile.completedHonestly(q, batch.length);
      this.honestSincePublish = true;
      this.remember(element.id);
      return element;
    }
    const writable = batch[batch.length - 1].writableBytes;
    const lie = (name: Parameters<Hostile['record']>[0], next: UsedElement): UsedElement => {
      hostile.record(
        name,
        `used element id ${element.id} len ${element.len} written as id ${next.id} len ${next.len}`,
        q,
      );
      return next;
    };
    if (hostile.has(RingViolation.USED_ID_OUT_OF_RANGE)) {
      const top = view.kind === 'packed' ? 0xffff : 0xffff_ffff;
      const id = hostile.pick([view.num, Math.min(top, view.num + hostile.int(1, 1024)), top]);
      return lie(RingViolation.USED_ID_OUT_OF_RANGE, { id, len: element.len });
    }
    if (hostile.has(RingViolation.USED_ID_NOT_HEAD)) {
      const id = this.notOutstanding(batch);
      if (id !== undefined) return lie(RingViolation.USED_ID_NOT_HEAD, { id, len: element.len });
    }
    if (hostile.has('used-wrong-chain')) {
      const id = view.wrongChain(batch);
      if (id !== undefined) return lie('used-wrong-chain', { id, len: element.len });
    }
    if (hostile.has(RingViolation.USED_LEN_TOO_LONG)) {
      return lie(RingViolation.USED_LEN_TOO_LONG, {
        id: element.id,
        len: Math.min(0xffff_ffff, writable + hostile.int(1, 4096)),
      });
    }
    if (hostile.has('used-len-too-short')) {
      const fixed = hostile.options('used-len-too-short')?.len;
      const len = fixed ?? (element.len === 0 || hostile.random() < 0.5 ? 0 : hostile.int(0, element.len - 1));
      return lie('used-len-too-short', { id: element.id, len });
    }
    this.remember(element.id);
    return element;
  }

  /** Split: the used.idx to store instead of `next` (the honest one); `published` is the last value stored. */
  usedIdx(next: number, published: number): number {
    const { hostile, view } = this;
    const honest = this.honestSincePublish;
    this.honestSincePublish = false;
    if (honest || !hostile.started(view.index)) return next;
    if (hostile.has(RingViolation.USED_IDX_JUMP)) {
      // Past anything in flight: more new entries than the queue holds, still less than half the index space (not
      // "backwards").
      const shown = (published + view.num + hostile.int(1, Math.max(1, 0x7fff - view.num))) & 0xffff;
      hostile.record(RingViolation.USED_IDX_JUMP, `used.idx ${published} → ${shown} (honest: ${next})`, view.index);
      return shown;
    }
    if (hostile.has(RingViolation.USED_IDX_BACKWARDS)) {
      const shown = (published - hostile.int(1, Math.min(4, view.num))) & 0xffff;
      hostile.record(
        RingViolation.USED_IDX_BACKWARDS,
        `used.idx ${published} → ${shown} (honest: ${next})`,
        view.index,
      );
      return shown;
    }
    return next;
  }

  /** Whether the element being written should be changed after it is published (used-element-changes). */
  get changesLater(): boolean {
    return this.lying && this.hostile.has('used-element-changes');
  }

  /**
   * Packed: the flags of the used descriptor being written at wrap counter `wrap` (honest: AVAIL = USED = wrap,
   * §2.8.1).
   */
  usedFlags(flags: number, wrap: boolean): number {
    const { hostile, view } = this;
    if (!this.lying || !hostile.has('packed-wrong-flags')) return flags;
    const variant =
      hostile.options('packed-wrong-flags')?.variant ??
      hostile.pick(['avail-only', 'used-only', 'stale-wrap'] as const);
    const rest = flags & ~(F_AVAIL | F_USED);
    const bits = {
      'avail-only': wrap ? F_AVAIL : F_USED,
      'used-only': wrap ? F_USED : F_AVAIL,
      'stale-wrap': wrap ? 0 : F_AVAIL | F_USED,
    }[variant];
    hostile.record(
      'packed-wrong-flags',
      `${variant}: flags 0x${flags.toString(16)} written as 0x${(rest | bits).toString(16)} (wrap counter ${+wrap})`,
      view.index,
    );
    return rest | bits;
  }

  /** An id in range that the driver does not have outstanding: an earlier one (duplicate, replay) or any free one. */
  private notOutstanding(batch: readonly Completion[]): number | undefined {
    const { hostile, view } = this;
    const free = (id: number): boolean => id < view.num && !view.busy(id) && !batch.some((b) => b.id === id);
    const variant =
      hostile.options(RingViolation.USED_ID_NOT_HEAD)?.variant ?? hostile.pick(['duplicate', 'replay'] as const);
    const earlier = variant === 'duplicate' ? this.history.slice(-1) : this.history.slice(0, -1);
    const candidates = earlier.filter(free);
    if (candidates.length) return hostile.pick(candidates);
    const start = hostile.int(0, view.num - 1);
    for (let i = 0; i < view.num; i++) {
      const id = (start + i) % view.num;
      if (free(id)) return id;
    }
    return undefined;
  }

  private remember(id: number): void {
    this.history.push(id);
    if (this.history.length > HISTORY) this.history.shift();
  }
}

/** Fills `bytes` with seeded garbage (behaviour 8). */
export function garbage(hostile: Hostile, bytes: Uint8Array): void {
  for (let i = 0; i < bytes.length; i++) bytes[i] = hostile.int(0, 255);
}
