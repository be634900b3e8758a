import type { RingEngine } from '../../lib/queue/ring-engine';
import type { FakeDma } from './ring-engine-rig';

// Minimal fake devices for the ring engines' tests: they reach the rings an engine laid out through
// device addresses only, with little-endian DataViews (the engines use host-order typed arrays), and
// trust the driver. Constants are spelled out here, not imported from lib/spec.

// Descriptor flags (virtio 1.2 §2.7.5 split, §2.8.1 packed).
export const F_NEXT = 1;
export const F_WRITE = 2;
export const F_INDIRECT = 4;
export const F_AVAIL = 1 << 7;
export const F_USED = 1 << 15;
/** used.flags (§2.7.10). */
export const USED_F_NO_NOTIFY = 1;
/** Event suppression flags (§2.8.10). */
export const EVENT = { ENABLE: 0, DISABLE: 1, DESC: 2 } as const;

export interface DeviceBuffer {
  address: bigint;
  length: number;
}

/** A chain as the device read it. */
export interface DeviceChain {
  /** Split: the head descriptor's index; packed: the Buffer ID. */
  id: number;
  readable: DeviceBuffer[];
  writable: DeviceBuffer[];
  /** Ring descriptors the chain takes. */
  slots: number;
  indirect: boolean;
}

type DeviceMemoryView = Pick<FakeDma, 'at'>;
type EngineRing = Pick<RingEngine, 'size' | 'addresses'>;

abstract class FakeDevice {
  constructor(
    protected readonly memory: DeviceMemoryView,
    readonly size: number,
  ) {}

  /** The next chain made available, or undefined. */
  abstract pop(): DeviceChain | undefined;
  /** Returns buffer `id` with `len` bytes written (neither checked: tests make the device lie). */
  abstract use(id: number, len: number): void;
  /** Rewrites id and len of the last used entry (a device changing its mind). */
  abstract amend(id: number, len: number): void;

  popAll(): DeviceChain[] {
    const chains: DeviceChain[] = [];
    for (let chain = this.pop(); chain; chain = this.pop()) chains.push(chain);
    return chains;
  }

  /** Descriptor `index` of `table`; `flagsAt` 12 (split) or 14 (packed). */
  protected add(chain: DeviceChain, table: DataView, index: number, flagsAt: number): number {
    const flags = table.getUint16(16 * index + flagsAt, true);
    const write = (flags & F_WRITE) !== 0;
    // §2.7.4.2, §2.8.6: the device-writable buffers come after the readable ones.
    if (!write && chain.writable.length > 0)
      throw new Error(`chain ${chain.id}: a readable descriptor after a writable one`);
    (write ? chain.writable : chain.readable).push({
      address: table.getBigUint64(16 * index, true),
      length: table.getUint32(16 * index + 8, true),
    });
    return flags;
  }

  /** The indirect table descriptor `index` of `view` points at. */
  protected table = (view: DataView, index: number): DataView =>
    this.memory.at(view.getBigUint64(16 * index, true), view.getUint32(16 * index + 8, true));
}

/** Split ring (§2.7): desc table, avail ring (driver area), used ring (device area). */
export class FakeSplitDevice extends FakeDevice {
  readonly desc: DataView;
  readonly avail: DataView;
  readonly used: DataView;
  /** The next avail index to read, and used.idx (both free-running 16-bit). */
  lastAvail = 0;
  usedIdx = 0;
  private lastSlot = 0;

  constructor(memory: DeviceMemoryView, engine: EngineRing) {
    const { size, addresses } = engine;
    super(memory, size);
    this.desc = memory.at(addresses.desc, 16 * size);
    this.avail = memory.at(addresses.driver, 6 + 2 * size);
    this.used = memory.at(addresses.device, 6 + 8 * size);
  }

  get availFlags(): number {
    return this.avail.getUint16(0, true);
  }
  get availIdx(): number {
    return this.avail.getUint16(2, true);
  }
  availRing = (slot: number): number => this.avail.getUint16(4 + 2 * slot, true);
  get usedEvent(): number {
    return this.avail.getUint16(4 + 2 * this.size, true);
  }

  pop(): DeviceChain | undefined {
    if (this.lastAvail === this.availIdx) return undefined;
    const head = this.availRing(this.lastAvail % this.size);
    this.lastAvail = (this.lastAvail + 1) & 0xffff;
    const chain: DeviceChain = { id: head, readable: [], writable: [], slots: 1, indirect: false };
    let table = this.desc;
    let index = head;
    if (this.desc.getUint16(16 * head + 12, true) & F_INDIRECT) {
      chain.indirect = true;
      table = this.table(this.desc, head);
      index = 0;
    }
    for (let steps = 1; ; steps++) {
      if (index >= table.byteLength / 16 || steps > table.byteLength / 16)
        throw new Error(`chain ${head}: next ${index} outside the table, or a loop`);
      const flags = this.add(chain, table, index, 12);
      if (flags & F_INDIRECT) throw new Error(`chain ${head}: F_INDIRECT inside a chain`);
      if (!(flags & F_NEXT)) return chain;
      index = table.getUint16(16 * index + 14, true);
      if (!chain.indirect) chain.slots++;
    }
  }

  /** Writes used element {id, len} at used.idx, then moves used.idx by `advance` (IN_ORDER: the batch). */
  use(id: number, len: number, advance = 1): void {
    this.lastSlot = this.usedIdx % this.size;
    this.amend(id, len);
    this.setUsedIdx(this.usedIdx + advance);
  }

  amend(id: number, len: number): void {
    this.used.setUint32(4 + 8 * this.lastSlot, id, true);
    this.used.setUint32(8 + 8 * this.lastSlot, len, true);
  }

  /** Stores any used.idx (a lie unless it matches the elements written). */
  setUsedIdx(value: number): void {
    this.usedIdx = value & 0xffff;
    this.used.setUint16(2, this.usedIdx, true);
  }

  setNoNotify(on: boolean): void {
    this.used.setUint16(0, on ? USED_F_NO_NOTIFY : 0, true);
  }
  setAvailEvent(value: number): void {
    this.used.setUint16(4 + 8 * this.size, value & 0xffff, true);
  }
}

/** Packed ring (§2.8): the descriptor ring, driver and device event suppression areas. */
export class FakePackedDevice extends FakeDevice {
  readonly ringView: DataView;
  readonly driverArea: DataView;
  readonly deviceArea: DataView;
  availSlot = 0;
  availWrap = true;
  usedSlot = 0;
  usedWrap = true;
  /** Flips of the available-side wrap counter so far. */
  wraps = 0;
  /** Ring descriptors of each chain popped and not yet used, by Buffer ID. */
  private readonly slotsOf = new Map<number, number>();
  private lastSlot = 0;
  private lastWrap = true;

  constructor(memory: DeviceMemoryView, engine: EngineRing) {
    const { size, addresses } = engine;
    super(memory, size);
    this.ringView = memory.at(addresses.desc, 16 * size);
    this.driverArea = memory.at(addresses.driver, 4);
    this.deviceArea = memory.at(addresses.device, 4);
  }

  flags = (slot: number): number => this.ringView.getUint16(16 * slot + 14, true);
  id = (slot: number): number => this.ringView.getUint16(16 * slot + 12, true);

  /** Available in the device's current round: AVAIL = its wrap counter, USED ≠ it (§2.8.1). */
  private available(): boolean {
    const flags = this.flags(this.availSlot);
    return ((flags & F_AVAIL) !== 0) === this.availWrap && ((flags & F_USED) !== 0) !== this.availWrap;
  }

  pop(): DeviceChain | undefined {
    if (!this.available()) return undefined;
    const chain: DeviceChain = { id: -1, readable: [], writable: [], slots: 0, indirect: false };
    for (;;) {
      if (chain.slots > 0 && !this.available())
        throw new Error(`slot ${this.availSlot}: a chain runs into a descriptor not available`);
      const slot = this.availSlot;
      chain.id = this.id(slot);
      chain.slots++;
      if (++this.availSlot === this.size) {
        this.availSlot = 0;
        this.availWrap = !this.availWrap;
        this.wraps++;
      }
      if (this.flags(slot) & F_INDIRECT) {
        if (chain.slots > 1 || this.flags(slot) & F_NEXT) throw new Error(`slot ${slot}: F_INDIRECT not alone`);
        chain.indirect = true;
        const table = this.table(this.ringView, slot);
        for (let i = 0; i < table.byteLength / 16; i++) this.add(chain, table, i, 14);
        break;
      }
      if (!(this.add(chain, this.ringView, slot, 14) & F_NEXT)) break;
      if (chain.slots > this.size) throw new Error('a chain longer than the ring');
    }
    this.slotsOf.set(chain.id, chain.slots);
    return chain;
  }

  /**
   * Writes used descriptor {id, len} (F_WRITE if `write`, default len > 0) at the used position, then skips `slots`
   * (default: the chain's; IN_ORDER: the batch's).
   */
  use(id: number, len: number, options: { slots?: number; write?: boolean } = {}): void {
    const slots = options.slots ?? this.slotsOf.get(id) ?? 1;
    this.slotsOf.delete(id);
    this.lastSlot = this.usedSlot;
    this.lastWrap = this.usedWrap;
    this.amend(id, len, options.write);
    this.usedSlot += slots;
    if (this.usedSlot >= this.size) {
      this.usedSlot -= this.size;
      this.usedWrap = !this.usedWrap;
    }
  }

  amend(id: number, len: number, write = len > 0): void {
    const at = 16 * this.lastSlot;
    this.ringView.setUint32(at + 8, len, true);
    this.ringView.setUint16(at + 12, id, true);
    // The flags last, as a device must (§2.8.22).
    this.ringView.setUint16(at + 14, (this.lastWrap ? F_AVAIL | F_USED : 0) | (write ? F_WRITE : 0), true);
  }

  /** Device event suppression (the device area): flags, and off_wrap for DESC. */
  setEvent(flags: number, offset = 0, wrap = true): void {
    this.deviceArea.setUint16(0, (offset & 0x7fff) | (wrap ? 0x8000 : 0), true);
    this.deviceArea.setUint16(2, flags, true);
  }

  /** Driver event suppression (the driver area), as the engine wrote it. */
  get driverEvent(): { flags: number; offset: number; wrap: boolean } {
    const offWrap = this.driverArea.getUint16(0, true);
    return { flags: this.driverArea.getUint16(2, true) & 3, offset: offWrap & 0x7fff, wrap: (offWrap & 0x8000) !== 0 };
  }
}
