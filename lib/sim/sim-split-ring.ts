import {
  availEventOffset,
  needEvent,
  SplitRing,
  usedEventOffset,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_USED_F_NO_NOTIFY,
} from '../spec';
import type { Completion } from './completion-order';
import { walkDescriptorChain } from './descriptor-chain';
import { garbage, type HostileRingView } from './hostile-ring';
import { RingIndex } from './ring-index';
import { SimRing, type SimQueueHost, type SimRingPosition, type UsedElement } from './sim-ring';

/** Views of the three split ring areas. */
export interface SplitRingAreas {
  desc: DataView;
  avail: DataView;
  used: DataView;
  availIdx: RingIndex;
  usedIdx: RingIndex;
}

interface SplitBuffer extends Completion {
  /** Entries of the descriptor table the chain holds until it is used. */
  readonly descriptors: number[];
}

/**
 * The device side of one split virtqueue (virtio 1.2 §2.7): available
 * chains into the model, used elements back, notification suppression in
 * both directions.
 *
 * Ring violations (a malformed chain, an avail idx that jumps, a chain
 * reused while the device owns it) break the queue. With IN_ORDER the
 * driver's use of descriptors in ring order is checked too (noted, not
 * breaking), and a batch of buffers gets one used element: the id of the
 * last buffer's head, at the used ring offset of the batch's first
 * available entry, used.idx advanced by the batch size (§2.7.9).
 */
export class SimSplitRing extends SimRing<SplitBuffer> {
  readonly kind = 'split';
  private lastAvail = 0;
  private usedIdx = 0;
  private published = 0;
  private lastBadAvailFlags = -1;
  /** Entries of the descriptor table owned by the device (in-flight chains). */
  private readonly owned: Uint8Array;
  /** IN_ORDER: where the next chain must start (§2.7.5: ring order from offset 0, wrapping). */
  private nextInOrderHead = 0;
  /** Hostile used-element-changes: the last published element, rewritten at the next pass. */
  private changeLater?: { at: number; id: number; len: number };
  /** Heads taken in the current pass (hostile used-element-changes names one of them). */
  private takenThisPass: number[] = [];

  constructor(
    index: number,
    num: number,
    host: SimQueueHost,
    private readonly rings: SplitRingAreas,
  ) {
    super(index, num, host);
    this.owned = new Uint8Array(num);
    this.publishSuppression();
  }

  get position(): SimRingPosition {
    return { lastAvail: this.lastAvail, usedIdx: this.usedIdx };
  }

  pass(): void {
    if (this.broken) return;
    const rings = this.rings;
    this.checkAvailFlags();
    const availIdx = rings.availIdx.load();
    const pending = (availIdx - this.lastAvail) & 0xffff;
    if (pending > this.num) {
      this.break(
        'avail-idx-jump',
        `queue ${this.index}: avail idx moved from ${this.lastAvail} to ${availIdx}, ${pending} new entries ` +
          `in a queue of ${this.num}`,
      );
      return;
    }
    this.takenThisPass = [];
    while (this.lastAvail !== availIdx) {
      const slot = this.lastAvail % this.num;
      const head = rings.avail.getUint16(SplitRing.AVAIL_RING + 2 * slot, true);
      this.lastAvail = (this.lastAvail + 1) & 0xffff;
      if (!this.take(head)) return;
    }
    if (this.changeLater) this.changePublished(this.changeLater);
    this.publishSuppression();
    this.flush();
  }

  /** §2.9: for a split ring, next_off/next_wrap are the 15 low bits and bit 15 of the new avail idx. */
  checkNotificationData(nextOff: number, nextWrap: boolean): void {
    const idx = this.rings.availIdx.load();
    if (nextOff !== (idx & 0x7fff) || nextWrap !== ((idx & 0x8000) !== 0)) {
      const claimed = nextOff | (nextWrap ? 0x8000 : 0);
      this.host.rules.record(
        'notification-data-mismatch',
        `QueueNotify for queue ${this.index} says avail idx ${claimed}, the ring says ${idx}`,
      );
    }
  }

  /** Writes one used element (§2.7.8) at the next used ring offset; used.idx is published by publishUsed(). */
  protected writeUsed(batch: readonly SplitBuffer[], element: UsedElement): void {
    for (const buffer of batch) for (const d of buffer.descriptors) this.owned[d] = 0;
    const at = SplitRing.USED_RING + SplitRing.USED_ELEM_SIZE * (this.usedIdx % this.num);
    this.rings.used.setUint32(at, element.id >>> 0, true);
    this.rings.used.setUint32(at + 4, element.len >>> 0, true);
    this.usedIdx = (this.usedIdx + batch.length) & 0xffff;
    if (this.hostileRing?.changesLater) this.changeLater = { at, ...element };
  }

  /** One used.idx store for everything written, then the notification decision (§2.7.7.2). */
  protected publishUsed(): boolean | undefined {
    const rings = this.rings;
    if (this.usedIdx === this.published) return undefined;
    const old = this.published;
    rings.usedIdx.store(this.hostileRing ? this.hostileRing.usedIdx(this.usedIdx, old) : this.usedIdx);
    this.published = this.usedIdx;
    return this.host.eventIdx
      ? needEvent(rings.avail.getUint16(usedEventOffset(this.num), true), this.usedIdx, old)
      : !(rings.avail.getUint16(SplitRing.AVAIL_FLAGS, true) & VRING_AVAIL_F_NO_INTERRUPT);
  }

  /** Walks one chain and hands it to the model; false when the queue broke or was reset meanwhile. */
  private take(head: number): boolean {
    const { rules, indirectDesc, memory, inOrder } = this.host;
    if (inOrder && head !== this.nextInOrderHead) {
      rules.record(
        'in-order-descriptor-order',
        `queue ${this.index}: chain from head ${head}; with VIRTIO_F_IN_ORDER the next chain starts at ` +
          `descriptor ${this.nextInOrderHead}`,
      );
    }
    const note = (rule: Parameters<typeof rules.record>[0], message: string): void =>
      rules.record(rule, `queue ${this.index}: ${message}`);
    const walk = walkDescriptorChain(
      { table: this.rings.desc, size: this.num, indirect: indirectDesc, memory, inOrder, note },
      head,
    );
    const reused = walk.descriptors.find((d) => this.owned[d] !== 0);
    if (reused !== undefined) {
      this.break(
        'chain-in-flight',
        `queue ${this.index}: chain from head ${head} uses descriptor ${reused}, which belongs to a chain the ` +
          `device has not used yet`,
      );
      return false;
    }
    if (!walk.ok) {
      this.break(walk.rule, `queue ${this.index}: ${walk.message}`);
      return false;
    }
    for (const d of walk.descriptors) this.owned[d] = 1;
    this.nextInOrderHead = (walk.descriptors[walk.descriptors.length - 1] + 1) % this.num;
    const { readable, writable, readableBytes, writableBytes } = walk;
    const buffer: SplitBuffer = { id: head, writableBytes, len: 0, done: false, descriptors: walk.descriptors };
    if (!this.dispatch(buffer, { queue: this.index, head, readable, writable, readableBytes, writableBytes }))
      return false;
    this.takenThisPass.push(head);
    const hostile = this.host.hostile;
    if (hostile?.ringLive('descriptors-rewritten', this.index)) {
      // The chain was read; its table entries are overwritten while the device still owns them (§2.7.5: they are the
      // driver's to trust only via its own copy).
      const table = this.rings.desc;
      for (const d of walk.descriptors) garbage(hostile, new Uint8Array(table.buffer, table.byteOffset + 16 * d, 16));
      hostile.record(
        'descriptors-rewritten',
        `chain from head ${head}: descriptors ${walk.descriptors.join(', ')} overwritten`,
        this.index,
      );
    }
    return true;
  }

  protected hostileView(): HostileRingView {
    return {
      index: this.index,
      num: this.num,
      kind: 'split',
      busy: (id) => this.owned[id] !== 0 || this.pendingHeads().includes(id),
      wrongChain: (batch) => {
        const nonHeads = (batch as readonly SplitBuffer[]).flatMap((b) => b.descriptors.slice(1));
        return nonHeads.length ? this.host.hostile!.pick(nonHeads) : undefined;
      },
    };
  }

  /** Heads made available and not yet taken. */
  private pendingHeads(): number[] {
    const heads: number[] = [];
    const availIdx = this.rings.availIdx.load();
    for (let i = this.lastAvail; i !== availIdx && heads.length < this.num; i = (i + 1) & 0xffff) {
      heads.push(this.rings.avail.getUint16(SplitRing.AVAIL_RING + 2 * (i % this.num), true));
    }
    return heads;
  }

  /**
   * Hostile used-element-changes: the element published last time now names another outstanding chain (or its own id
   * again) with another len.
   */
  private changePublished(before: { at: number; id: number; len: number }): void {
    const hostile = this.host.hostile!;
    this.changeLater = undefined;
    const id = this.takenThisPass.length ? hostile.pick(this.takenThisPass) : before.id;
    const len = (before.len + hostile.int(1, 0xffff)) >>> 0;
    this.rings.used.setUint32(before.at, id, true);
    this.rings.used.setUint32(before.at + 4, len, true);
    hostile.record(
      'used-element-changes',
      `published element id ${before.id} len ${before.len} changed to id ${id} len ${len}`,
      this.index,
    );
  }

  /**
   * Available buffer notification suppression (§2.7.10.2): without
   * EVENT_IDX, used.flags 0 or NO_NOTIFY; with it, used.flags 0 and
   * avail_event at the next index (notify me at the next add), or one
   * behind it when the device asks for no notifications at all.
   */
  private publishSuppression(): void {
    const { eventIdx, suppressNotifications } = this.host;
    this.rings.used.setUint16(
      SplitRing.USED_FLAGS,
      !eventIdx && suppressNotifications ? VRING_USED_F_NO_NOTIFY : 0,
      true,
    );
    if (eventIdx) {
      const event = suppressNotifications ? (this.lastAvail - 1) & 0xffff : this.lastAvail;
      this.rings.used.setUint16(availEventOffset(this.num), event, true);
    }
  }

  /** avail.flags is 0 with EVENT_IDX, 0 or 1 without (§2.7.7.1); each bad value is reported once. */
  private checkAvailFlags(): void {
    const flags = this.rings.avail.getUint16(SplitRing.AVAIL_FLAGS, true);
    const bad = this.host.eventIdx ? flags !== 0 : flags > 1;
    if (bad && flags !== this.lastBadAvailFlags) {
      this.host.rules.record(
        'avail-flags-invalid',
        `queue ${this.index}: avail flags ${flags}, must be ` +
          `${this.host.eventIdx ? '0 with VIRTIO_F_EVENT_IDX' : '0 or 1'}`,
      );
    }
    this.lastBadAvailFlags = bad ? flags : -1;
  }
}
