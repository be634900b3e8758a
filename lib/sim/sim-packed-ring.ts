import { packEventOffWrap, PackedDesc, PackedRing, RingEventFlags } from '../spec';
import type { Completion } from './completion-order';
import { garbage, type HostileRingView } from './hostile-ring';
import { walkPackedChain, type PackedChainSource } from './packed-chain';
import { packedEventUsed, PackedPosition } from './packed-position';
import { SimRing, type SimQueueHost, type SimRingPosition, type UsedElement } from './sim-ring';

/** Views of the three packed ring areas (§2.8: descriptor ring, driver and device event suppression). */
export interface PackedRingAreas {
  desc: DataView;
  /** The descriptor ring as 16-bit words when 2-byte aligned: flags are loaded and stored with Atomics. */
  words?: Uint16Array;
  driver: DataView;
  device: DataView;
}

interface PackedBuffer extends Completion {
  /** Ring descriptors the buffer took (1 for an indirect one). */
  readonly count: number;
}

const { F_AVAIL, F_USED, F_WRITE } = PackedDesc;
const FLAGS_WORD = PackedRing.DESC_FLAGS / 2;
const WORDS_PER_DESC = PackedRing.DESC_SIZE / 2;

/**
 * The device side of one packed virtqueue (virtio 1.2 §2.8). The device
 * keeps its next-avail and next-used positions (PackedPosition: slot and
 * wrap counter, both starting at slot 0 with wrap counter 1).
 *
 * A descriptor is available when AVAIL equals the device's avail wrap
 * counter and USED does not (§2.8.1). Used descriptors are written at the
 * next-used position in the order buffers complete (§2.8.12), each
 * advancing it by its list's descriptor count; with IN_ORDER one used
 * descriptor names the last buffer of a batch and the position skips the
 * whole batch (§2.8.8). In one publish the flags are stored last and in
 * reverse ring order, so the first used descriptor becomes visible after
 * the rest (as §2.8.9 asks for multi-buffer requests).
 *
 * Event suppression (§2.8.10): used buffer notifications follow the
 * driver area (ENABLE, DISABLE, or DESC with EVENT_IDX); the device area
 * says ENABLE, DESC at the next-avail position with EVENT_IDX (notify me
 * at the next descriptor made available), or DISABLE with
 * SimOptions.suppressNotifications.
 */
export class SimPackedRing extends SimRing<PackedBuffer> {
  readonly kind = 'packed';
  private availPos = 0;
  private usedPos = 0;
  private publishedPos = 0;
  /** Used descriptors written but not yet flagged: [slot, flags]. */
  private unflagged: [number, number][] = [];
  /** Buffer IDs handed to the model and not yet used. */
  private readonly ids = new Set<number>();
  private lastBadEvent = -1;
  private readonly chainSource: PackedChainSource;
  /** Hostile used-element-changes: the last published used descriptor, rewritten at the next pass. */
  private changeLater?: { slot: number; wrap: boolean; id: number; len: number };

  constructor(
    index: number,
    num: number,
    host: SimQueueHost,
    private readonly areas: PackedRingAreas,
  ) {
    super(index, num, host);
    this.chainSource = {
      ring: areas.desc,
      flagsAt: (slot) => this.flagsAt(slot),
      size: num,
      get indirect() {
        return host.indirectDesc;
      },
      memory: host.memory,
      room: 0,
    };
    this.publishSuppression();
  }

  get position(): SimRingPosition {
    const { slot, wrap } = PackedPosition;
    return {
      lastAvail: slot(this.availPos, this.num),
      availWrap: wrap(this.availPos, this.num),
      usedIdx: slot(this.usedPos, this.num),
      usedWrap: wrap(this.usedPos, this.num),
    };
  }

  pass(): void {
    if (this.broken) return;
    this.checkDriverEvent();
    for (;;) {
      const slot = PackedPosition.slot(this.availPos, this.num);
      const wrap = PackedPosition.wrap(this.availPos, this.num);
      const flags = this.flagsAt(slot);
      const avail = (flags & F_AVAIL) !== 0;
      const used = (flags & F_USED) !== 0;
      const where = `queue ${this.index}: descriptor ${slot} (wrap counter ${+wrap})`;
      if (avail === wrap && used === wrap) {
        this.break(
          'packed-desc-flags-inconsistent',
          `${where} has AVAIL = USED = ${+wrap}, the marking of a used descriptor, where the driver makes the ` +
            `next one available`,
        );
        return;
      }
      if (avail !== wrap) break; // nothing more available
      const room = this.num - (this.availPos - this.usedPos);
      if (room === 0) {
        this.break(
          'packed-ring-overrun',
          `${where} was made available while the device still owns it (all ${this.num} descriptors are in flight)`,
        );
        return;
      }
      const walk = walkPackedChain({ ...this.chainSource, room }, slot, wrap, flags);
      if (!walk.ok) {
        this.break(walk.rule, `queue ${this.index}: ${walk.message}`);
        return;
      }
      for (const note of walk.notes) this.host.rules.record(note.rule, `queue ${this.index}: ${note.message}`);
      if (this.ids.has(walk.id)) {
        this.break(
          'packed-buffer-id-in-flight',
          `${where}: Buffer ID ${walk.id} belongs to a buffer the device has not used yet`,
        );
        return;
      }
      this.ids.add(walk.id);
      this.availPos += walk.count;
      const { id, count, readable, writable, readableBytes, writableBytes } = walk;
      const buffer: PackedBuffer = { id, writableBytes, len: 0, done: false, count };
      if (!this.dispatch(buffer, { queue: this.index, head: id, readable, writable, readableBytes, writableBytes }))
        return;
      this.rewriteTaken(slot, count, id);
    }
    if (this.changeLater) this.changePublished(this.changeLater);
    this.publishSuppression();
    this.flush();
  }

  /**
   * §2.8.16: next_off/next_wrap name the next descriptor not yet made
   * available. The device finds it by reading on from its next-avail
   * position over descriptors available for their lap (at most as far as
   * the driver may go: Queue Size past the next-used position).
   */
  checkNotificationData(nextOff: number, nextWrap: boolean): void {
    if (this.broken) return;
    const { slot, wrap } = PackedPosition;
    let position = this.availPos;
    while (position < this.usedPos + this.num && this.isAvailable(position)) position++;
    const expected = { off: slot(position, this.num), wrap: wrap(position, this.num) };
    if (nextOff !== expected.off || nextWrap !== expected.wrap) {
      this.host.rules.record(
        'packed-notification-data-mismatch',
        `QueueNotify for queue ${this.index} says next_off ${nextOff} next_wrap ${+nextWrap}; the next ` +
          `descriptor to be made available is ${expected.off} with wrap counter ${+expected.wrap}`,
      );
    }
  }

  /**
   * Writes id and len of one used descriptor at the next-used position (§2.8.13); its flags follow in publishUsed().
   */
  protected writeUsed(batch: readonly PackedBuffer[], element: UsedElement): void {
    const slot = PackedPosition.slot(this.usedPos, this.num);
    const wrap = PackedPosition.wrap(this.usedPos, this.num);
    const at = slot * PackedRing.DESC_SIZE;
    this.areas.desc.setUint16(at + PackedRing.DESC_ID, element.id & 0xffff, true);
    this.areas.desc.setUint32(at + PackedRing.DESC_LEN, element.len >>> 0, true);
    // §2.8.1: AVAIL = USED = the device's wrap counter; §2.8.3: WRITE when anything was written.
    const flags = (wrap ? F_AVAIL | F_USED : 0) | (element.len > 0 ? F_WRITE : 0);
    this.unflagged.push([slot, this.hostileRing ? this.hostileRing.usedFlags(flags, wrap) : flags]);
    if (this.hostileRing?.changesLater) this.changeLater = { slot, wrap, ...element };
    for (const buffer of batch) {
      this.ids.delete(buffer.id);
      this.usedPos += buffer.count;
    }
  }

  /**
   * Flags the used descriptors (last first), then decides on the used buffer notification from the driver area
   * (§2.8.10).
   */
  protected publishUsed(): boolean | undefined {
    for (const [slot, flags] of this.unflagged.reverse()) this.storeFlags(slot, flags);
    this.unflagged = [];
    if (this.usedPos === this.publishedPos) return undefined;
    const old = this.publishedPos;
    this.publishedPos = this.usedPos;
    const driver = this.areas.driver;
    switch (driver.getUint16(PackedRing.EVENT_FLAGS, true) & 3) {
      case RingEventFlags.DISABLE:
        return false;
      case RingEventFlags.DESC: {
        // Without EVENT_IDX, or with an offset outside the ring, DESC is not valid (recorded in pass):
        // the device then notifies as for ENABLE, since a spurious interrupt is harmless and a missing one stalls the
        // driver.
        const desc = driver.getUint16(PackedRing.EVENT_DESC, true);
        return !this.host.eventIdx || (desc & 0x7fff) >= this.num || packedEventUsed(desc, old, this.usedPos, this.num);
      }
      default:
        return true; // ENABLE, and the reserved value 3
    }
  }

  protected hostileView(): HostileRingView {
    return {
      index: this.index,
      num: this.num,
      kind: 'packed',
      busy: (id) => this.ids.has(id) || this.pendingIds().includes(id),
      wrongChain: (batch) => {
        const others = [...this.ids].filter((id) => !batch.some((b) => b.id === id));
        return others.length ? this.host.hostile!.pick(others) : undefined;
      },
    };
  }

  /** Buffer IDs in descriptors made available and not yet taken. */
  private pendingIds(): number[] {
    const ids: number[] = [];
    for (let position = this.availPos; position < this.usedPos + this.num && this.isAvailable(position); position++) {
      ids.push(
        this.areas.desc.getUint16(
          PackedPosition.slot(position, this.num) * PackedRing.DESC_SIZE + PackedRing.DESC_ID,
          true,
        ),
      );
    }
    return ids;
  }

  /**
   * Hostile descriptors-rewritten: the `count` descriptors just read from
   * `slot` get garbage addresses, lengths, ids and flag bits; AVAIL and
   * USED stay, so the ring positions still mean what they meant (§2.8.1).
   */
  private rewriteTaken(slot: number, count: number, id: number): void {
    const hostile = this.host.hostile;
    if (!hostile?.ringLive('descriptors-rewritten', this.index)) return;
    const { desc } = this.areas;
    for (let i = 0; i < count; i++) {
      const at = ((slot + i) % this.num) * PackedRing.DESC_SIZE;
      garbage(hostile, new Uint8Array(desc.buffer, desc.byteOffset + at, PackedRing.DESC_FLAGS));
      const keep = this.flagsAt((slot + i) % this.num) & (F_AVAIL | F_USED);
      this.storeFlags((slot + i) % this.num, keep | (hostile.int(0, 0xffff) & ~(F_AVAIL | F_USED)));
    }
    hostile.record(
      'descriptors-rewritten',
      `Buffer ID ${id}: descriptors ${slot}…${(slot + count - 1) % this.num} overwritten`,
      this.index,
    );
  }

  /**
   * Hostile used-element-changes: the used descriptor published last names another outstanding id (or its own) with
   * another len, while the driver has not reused its slot.
   */
  private changePublished(before: { slot: number; wrap: boolean; id: number; len: number }): void {
    const hostile = this.host.hostile!;
    this.changeLater = undefined;
    const flags = this.flagsAt(before.slot);
    const stillUsed = ((flags & F_AVAIL) !== 0) === before.wrap && ((flags & F_USED) !== 0) === before.wrap;
    if (!stillUsed) return;
    const others = [...this.ids].filter((id) => id !== before.id);
    const id = others.length ? hostile.pick(others) : before.id;
    const len = (before.len + hostile.int(1, 0xffff)) >>> 0;
    const at = before.slot * PackedRing.DESC_SIZE;
    this.areas.desc.setUint16(at + PackedRing.DESC_ID, id, true);
    this.areas.desc.setUint32(at + PackedRing.DESC_LEN, len, true);
    hostile.record(
      'used-element-changes',
      `used descriptor ${before.slot}: id ${before.id} len ${before.len} changed to id ${id} len ${len}`,
      this.index,
    );
  }

  /** Whether the descriptor at `position` is available for its lap (§2.8.1). */
  private isAvailable(position: number): boolean {
    const flags = this.flagsAt(PackedPosition.slot(position, this.num));
    const wrap = PackedPosition.wrap(position, this.num);
    return ((flags & F_AVAIL) !== 0) === wrap && ((flags & F_USED) !== 0) !== wrap;
  }

  private flagsAt(slot: number): number {
    const { words, desc } = this.areas;
    return words
      ? Atomics.load(words, slot * WORDS_PER_DESC + FLAGS_WORD)
      : desc.getUint16(slot * PackedRing.DESC_SIZE + PackedRing.DESC_FLAGS, true);
  }

  private storeFlags(slot: number, flags: number): void {
    const { words, desc } = this.areas;
    if (words) Atomics.store(words, slot * WORDS_PER_DESC + FLAGS_WORD, flags);
    else desc.setUint16(slot * PackedRing.DESC_SIZE + PackedRing.DESC_FLAGS, flags, true);
  }

  /** The device area (§2.8.10, §2.8.14): desc first, then flags. */
  private publishSuppression(): void {
    const { eventIdx, suppressNotifications } = this.host;
    const { slot, wrap } = PackedPosition;
    const desc =
      eventIdx && !suppressNotifications
        ? packEventOffWrap(slot(this.availPos, this.num), wrap(this.availPos, this.num))
        : 0;
    const flags = suppressNotifications
      ? RingEventFlags.DISABLE
      : eventIdx
        ? RingEventFlags.DESC
        : RingEventFlags.ENABLE;
    this.areas.device.setUint16(PackedRing.EVENT_DESC, desc, true);
    this.areas.device.setUint16(PackedRing.EVENT_FLAGS, flags, true);
  }

  /**
   * The driver area (§2.8.10, §2.8.14): flags 0–2 with the 14 reserved
   * bits 0, DESC only with EVENT_IDX, and then an offset inside the ring.
   * Each bad value is reported once.
   */
  private checkDriverEvent(): void {
    const flags = this.areas.driver.getUint16(PackedRing.EVENT_FLAGS, true);
    const desc = this.areas.driver.getUint16(PackedRing.EVENT_DESC, true);
    const isDesc = flags === RingEventFlags.DESC;
    let problem = '';
    if (flags > RingEventFlags.DESC)
      problem =
        `flags 0x${flags.toString(16)}: only ENABLE (0), DISABLE ` +
        `(1) and DESC (2) are defined, the other bits are reserved`;
    else if (isDesc && !this.host.eventIdx) problem = 'flags DESC without VIRTIO_F_EVENT_IDX negotiated';
    else if (isDesc && (desc & 0x7fff) >= this.num)
      problem = `DESC with desc_event_off ${desc & 0x7fff}, not below the queue size ${this.num}`;
    const key = problem ? flags * 0x10000 + (isDesc ? desc : 0) : -1;
    if (problem && key !== this.lastBadEvent)
      this.host.rules.record('packed-event-flags-invalid', `queue ${this.index}: driver event suppression ${problem}`);
    this.lastBadEvent = key;
  }
}
