/**
 * A deliberately tiny packed-ring driver for the sim tests (virtio 1.2
 * §2.8), written from the spec and independent of lib/queue: it places
 * lists in the descriptor ring with the first descriptor's flags written
 * last, tracks its wrap counters, and reads used descriptors back,
 * skipping by list length (or by IN_ORDER batch).
 */
import type { DmaPool } from '../../lib/platform';
import { FeatureBit, feature, MmioRegister as R, notificationData, PackedDesc, PackedRing } from '../../lib/spec';
import { TRANSPORT_V2, ringView, type TestDriver } from './sim-test-driver';

export const { F_NEXT, F_WRITE, F_INDIRECT, F_AVAIL, F_USED } = PackedDesc;

export const PACKED = feature(FeatureBit.RING_PACKED);
export const IN_ORDER = feature(FeatureBit.IN_ORDER);
/** The default Version 2 transport bits plus RING_PACKED. */
export const TRANSPORT_PACKED = TRANSPORT_V2 | PACKED;

/** One element of a buffer: device-readable unless `write`. */
export interface Element {
  addr: bigint;
  len: number;
  write?: boolean;
}

/** A raw descriptor, for drivers that get it wrong on purpose. */
export interface RawDesc {
  addr?: bigint;
  len?: number;
  id?: number;
  flags: number;
}

export interface UsedDesc {
  slot: number;
  id: number;
  len: number;
  flags: number;
  /** Buffer IDs this used descriptor accounts for (more than one for an IN_ORDER batch). */
  ids: number[];
  /** Descriptors skipped past. */
  skipped: number;
}

/** AVAIL = wrap, USED = !wrap (§2.8.1). */
export const availBits = (wrap: boolean): number => (wrap ? F_AVAIL : F_USED);

/** The driver's view of one packed ring in DMA memory. */
export class PackedTestRing {
  readonly desc: DataView;
  readonly driverEvent: DataView;
  readonly deviceEvent: DataView;
  /** Driver ring wrap counter and next slot (§2.8.1), and where the next used descriptor is expected. */
  nextAvail = 0;
  availWrap = true;
  nextUsed = 0;
  usedWrap = true;
  /** Outstanding buffers in the order made available: Buffer ID and descriptors in the ring. */
  readonly outstanding: { id: number; count: number }[] = [];
  private nextId = 0;

  constructor(
    readonly index: number,
    readonly size: number,
    readonly addresses: { desc: bigint; driver: bigint; device: bigint },
    pool: DmaPool,
    private readonly inOrder = false,
  ) {
    const view = (iova: bigint, bytes: number): DataView => {
      const ring = ringView(pool, iova, bytes);
      // §2.8.13: the descriptor ring is zero-initialized
      new Uint8Array(ring.buffer, ring.byteOffset, ring.byteLength).fill(0);
      return ring;
    };
    this.desc = view(addresses.desc, PackedRing.DESC_SIZE * size);
    this.driverEvent = view(addresses.driver, PackedRing.EVENT_SIZE);
    this.deviceEvent = view(addresses.device, PackedRing.EVENT_SIZE);
  }

  /** Free slots: the ring size less the descriptors outstanding. */
  get room(): number {
    return this.size - this.outstanding.reduce((n, b) => n + b.count, 0);
  }

  /** Makes one buffer available as a list of `elements` (§2.8.21.1); returns its Buffer ID. */
  add(elements: Element[], id = this.allocateId()): number {
    if (elements.length === 0 || elements.length > this.room)
      throw new Error(`no room for ${elements.length} descriptors (room ${this.room})`);
    const first = this.nextAvail;
    let firstFlags = 0;
    elements.forEach((e, i) => {
      const last = i === elements.length - 1;
      const flags = (e.write ? F_WRITE : 0) | (last ? 0 : F_NEXT) | availBits(this.availWrap);
      this.write(this.nextAvail, { addr: e.addr, len: e.len, id: last ? id : 0xdead, flags: 0 }, true);
      if (i === 0) firstFlags = flags;
      else this.setFlags(this.nextAvail, flags);
      this.advanceAvail();
    });
    this.setFlags(first, firstFlags); // the first descriptor last: no partial list is ever visible
    this.outstanding.push({ id, count: elements.length });
    return id;
  }

  /** Makes one buffer available through an indirect table of `elements` (§2.8.7); returns its Buffer ID. */
  addIndirect(pool: DmaPool, elements: Element[], id = this.allocateId()): number {
    const table = pool.allocate(PackedRing.DESC_SIZE * elements.length, 16);
    const view = new DataView(table.view, table.offset, PackedRing.DESC_SIZE * elements.length);
    elements.forEach((e, i) => writeDesc(view, i, { addr: e.addr, len: e.len, id: 0, flags: e.write ? F_WRITE : 0 }));
    return this.addRaw([{ addr: table.iova, len: view.byteLength, id, flags: F_INDIRECT }], id);
  }

  /**
   * Writes raw descriptors at the next slots with AVAIL/USED for each
   * slot's lap OR-ed into `flags` unless `keepAvailBits`; the first one's
   * flags last. Records one outstanding buffer of that many descriptors.
   */
  addRaw(descs: RawDesc[], id: number, keepAvailBits = false): number {
    const first = this.nextAvail;
    const flagsFor = (d: RawDesc): number => (keepAvailBits ? d.flags : d.flags | availBits(this.availWrap));
    let firstFlags = 0;
    descs.forEach((d, i) => {
      this.write(this.nextAvail, { ...d, flags: 0 }, true);
      if (i === 0) firstFlags = flagsFor(d);
      else this.setFlags(this.nextAvail, flagsFor(d));
      this.advanceAvail();
    });
    this.setFlags(first, firstFlags);
    this.outstanding.push({ id, count: descs.length });
    return id;
  }

  /** The next used descriptor (§2.8.22), or undefined; advances past its list, or with IN_ORDER past its batch. */
  popUsed(): UsedDesc | undefined {
    const slot = this.nextUsed;
    const flags = this.flagsAt(slot);
    const avail = (flags & F_AVAIL) !== 0;
    const used = (flags & F_USED) !== 0;
    if (avail !== this.usedWrap || used !== this.usedWrap) return undefined;
    const id = this.desc.getUint16(slot * PackedRing.DESC_SIZE + PackedRing.DESC_ID, true);
    const len = this.desc.getUint32(slot * PackedRing.DESC_SIZE + PackedRing.DESC_LEN, true);
    const at = this.outstanding.findIndex((b) => b.id === id);
    if (at < 0) throw new Error(`used Buffer ID ${id} is not outstanding`);
    // With IN_ORDER the used descriptor accounts for every buffer made available up to the one it names (§2.8.8).
    const batch = this.inOrder ? this.outstanding.splice(0, at + 1) : this.outstanding.splice(at, 1);
    const skipped = batch.reduce((n, b) => n + b.count, 0);
    this.skip(skipped);
    return { slot, id, len, flags, ids: batch.map((b) => b.id), skipped };
  }

  /** Every used descriptor there is now. */
  popAll(): UsedDesc[] {
    const all: UsedDesc[] = [];
    for (let u = this.popUsed(); u; u = this.popUsed()) all.push(u);
    return all;
  }

  /**
   * The QueueNotify value with VIRTIO_F_NOTIFICATION_DATA: next_off and next_wrap of the next descriptor to be made
   * available (§2.9).
   */
  notificationValue(): number {
    return notificationData(this.index, this.nextAvail, this.availWrap);
  }

  setDriverEvent(flags: number, off = 0, wrap = false): void {
    this.driverEvent.setUint16(PackedRing.EVENT_DESC, (off & 0x7fff) | (wrap ? 0x8000 : 0), true);
    this.driverEvent.setUint16(PackedRing.EVENT_FLAGS, flags, true);
  }

  get deviceEventFlags(): number {
    return this.deviceEvent.getUint16(PackedRing.EVENT_FLAGS, true);
  }

  get deviceEventDesc(): { off: number; wrap: boolean } {
    const v = this.deviceEvent.getUint16(PackedRing.EVENT_DESC, true);
    return { off: v & 0x7fff, wrap: (v & 0x8000) !== 0 };
  }

  flagsAt(slot: number): number {
    return this.desc.getUint16(slot * PackedRing.DESC_SIZE + PackedRing.DESC_FLAGS, true);
  }

  setFlags(slot: number, flags: number): void {
    this.desc.setUint16(slot * PackedRing.DESC_SIZE + PackedRing.DESC_FLAGS, flags, true);
  }

  /** Writes a whole descriptor at `slot` (flags included unless `withoutFlags`). */
  write(slot: number, d: RawDesc, withoutFlags = false): void {
    writeDesc(this.desc, slot, d, withoutFlags);
  }

  private advanceAvail(): void {
    if (++this.nextAvail === this.size) {
      this.nextAvail = 0;
      this.availWrap = !this.availWrap;
    }
  }

  private skip(count: number): void {
    this.nextUsed += count;
    if (this.nextUsed >= this.size) {
      this.nextUsed -= this.size;
      this.usedWrap = !this.usedWrap;
    }
  }

  private allocateId(): number {
    // Any ID not outstanding will do; cycling through 0..size-1 makes them easy to read in tests.
    for (let i = 0; i < this.size * 2; i++) {
      const id = this.nextId;
      this.nextId = (this.nextId + 1) % this.size;
      if (!this.outstanding.some((b) => b.id === id)) return id;
    }
    throw new Error('no free Buffer ID');
  }
}

export function writeDesc(view: DataView, slot: number, d: RawDesc, withoutFlags = false): void {
  const at = slot * PackedRing.DESC_SIZE;
  view.setBigUint64(at + PackedRing.DESC_ADDR, d.addr ?? 0n, true);
  view.setUint32(at + PackedRing.DESC_LEN, d.len ?? 0, true);
  view.setUint16(at + PackedRing.DESC_ID, d.id ?? 0, true);
  if (!withoutFlags) view.setUint16(at + PackedRing.DESC_FLAGS, d.flags, true);
}

/** §4.2.3.2 queue setup of a packed ring in fresh pool memory (the features must include RING_PACKED). */
export function setupPackedQueue(r: TestDriver, index: number, size: number, inOrder = false): PackedTestRing {
  const sim = r.sim;
  sim.writel(R.QueueSel, index);
  if (sim.readl(R.QueueReady) !== 0) throw new Error('queue in use');
  if (sim.readl(R.QueueNumMax) < size) throw new Error('queue too small');
  const desc = r.pool.allocate(PackedRing.DESC_SIZE * size, PackedRing.DESC_ALIGN);
  const driver = r.pool.allocate(PackedRing.EVENT_SIZE, PackedRing.EVENT_ALIGN);
  const device = r.pool.allocate(PackedRing.EVENT_SIZE, PackedRing.EVENT_ALIGN);
  const ring = new PackedTestRing(
    index,
    size,
    { desc: desc.iova, driver: driver.iova, device: device.iova },
    r.pool,
    inOrder,
  );
  sim.writel(R.QueueNum, size);
  r.writeAddress(R.QueueDescLow, desc.iova);
  r.writeAddress(R.QueueDriverLow, driver.iova);
  r.writeAddress(R.QueueDeviceLow, device.iova);
  sim.writel(R.QueueReady, 1);
  return ring;
}

/** QueueNotify for a packed ring: with NOTIFICATION_DATA negotiated, the ring's next_off/next_wrap too. */
export function notifyPacked(r: TestDriver, ring: PackedTestRing): void {
  const withData = (r.negotiated & feature(FeatureBit.NOTIFICATION_DATA)) !== 0n;
  r.sim.writel(R.QueueNotify, withData ? ring.notificationValue() : ring.index);
}
