import type { AccessWidth, RegisterBlock } from '../../lib/platform';
import { FeatureBit, MmioRegister as R, legacyLayout } from '../../lib/spec';
import { FAULT_CATALOGUE, faultOfRegister, type FaultName } from '../../lib/sim';
import { MutationRandom, mutateValue } from './mutation-random';

/** Where one queue's three areas are, as the driver wrote them (§4.2.2; legacy QueuePFN, §4.2.4). */
export interface QueueAreas {
  readonly index: number;
  size: number;
  desc: bigint;
  driver: bigint;
  device: bigint;
  /** QueueReady 1, or a non-zero QueuePFN: the device may use the rings. */
  ready: boolean;
  align: number;
}

/** How often reads lie; may be changed at any time (e.g. no lies while the driver opens). */
export interface RegisterLies {
  /** Probability that a read of a device-written register or of config space is mutated. */
  rate: number;
  /** Probability for MagicValue, Version, DeviceID and VendorID. */
  identityRate: number;
}

const offsetOf = (name: string): number => R[name as keyof typeof R];
/** The registers the catalogue's faults lie through (FAULT_CATALOGUE `registers`), by the fault they tell. */
const CATALOGUED = FAULT_CATALOGUE.flatMap((entry) => ('registers' in entry ? entry.registers.filter((name) => name !== 'config').map((name) => [offsetOf(name), entry.name] as const) : []));
const IDENTITY: ReadonlySet<number> = new Set(CATALOGUED.filter(([, fault]) => fault === 'bad-identity').map(([offset]) => offset));
/**
 * Device-written registers (virtio 1.2 §4.2.2 / §4.2.4), which a lying device may misreport: those of the
 * catalogue's faults, and the shared memory registers (§2.10), which no driver of ours reads but a lie must not break.
 */
const DEVICE_WRITTEN: ReadonlySet<number> = new Set([
  ...CATALOGUED.filter(([, fault]) => fault !== 'bad-identity').map(([offset]) => offset),
  R.SHMLenLow,
  R.SHMLenHigh,
  R.SHMBaseLow,
  R.SHMBaseHigh,
]);
/** Lies that cannot make the driver misplace data: it only learns late or early that something happened. */
const HARMLESS: ReadonlySet<number> = new Set([R.InterruptStatus, R.ConfigGeneration]);
/** pollUntil gives up after this many reads (the sim never changes a register during a poll except by reads). */
const POLL_READS = 256;

const REGISTER_NAMES = new Map<number, string>(Object.entries(R).map(([name, offset]) => [offset, name]));

/**
 * A RegisterBlock in front of another (the sim) that forwards every access
 * and, with the seeded probabilities in `lies`, returns a mutated value
 * from reads of device-written registers and of the configuration space.
 * It also watches the driver's queue setup writes, so it knows where each
 * live queue's rings are (`queues`).
 */
export class MutatingRegisters implements RegisterBlock {
  readonly lies: RegisterLies = { rate: 0, identityRate: 0 };
  /** Reads mutated, by register name ('config' for config space). */
  readonly mutated = new Map<string, number>();
  /** Reads mutated, by the FAULT_CATALOGUE fault they tell ('uncatalogued' for the shared memory registers). */
  readonly byFault = new Map<FaultName | 'uncatalogued', number>();
  /** Mutations of registers whose lies can misplace data (all but InterruptStatus and ConfigGeneration). */
  dataLies = 0;
  private readonly areas = new Map<number, QueueAreas>();
  private selected = 0;
  private pageSize = 4096;
  private driverFeaturesSel = 0;
  private driverFeaturesHigh = 0;

  constructor(
    private readonly inner: RegisterBlock,
    private readonly random: MutationRandom,
    private readonly version: 1 | 2,
  ) {}

  get size(): number {
    return this.inner.size;
  }

  get closed(): boolean {
    return this.inner.closed;
  }

  get label(): string {
    return `${this.inner.label} (mutating)`;
  }

  /** Whether the driver accepted VIRTIO_F_RING_PACKED (§2.8). */
  get packed(): boolean {
    return (this.driverFeaturesHigh & (1 << (FeatureBit.RING_PACKED - 32))) !== 0;
  }

  /** The queues whose rings the device may use now. */
  get queues(): QueueAreas[] {
    return [...this.areas.values()].filter((q) => q.ready && q.size > 0);
  }

  readb(offset: number): number {
    return this.lie(offset, this.inner.readb(offset), 8);
  }

  readw(offset: number): number {
    return this.lie(offset, this.inner.readw(offset), 16);
  }

  readl(offset: number): number {
    return this.lie(offset, this.inner.readl(offset), 32);
  }

  writeb(offset: number, value: number): void {
    this.inner.writeb(offset, value);
  }

  writew(offset: number, value: number): void {
    this.inner.writew(offset, value);
  }

  writel(offset: number, value: number): void {
    this.inner.writel(offset, value);
    this.observe(offset, value >>> 0);
  }

  copyOut(offset: number, target: Uint8Array, width: AccessWidth = 4): Uint8Array {
    this.inner.copyOut(offset, target, width);
    const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
    for (let i = 0; i < target.length; i += width) {
      if (width === 1) view.setUint8(i, this.lie(offset + i, view.getUint8(i), 8));
      else if (width === 2) view.setUint16(i, this.lie(offset + i, view.getUint16(i, true), 16), true);
      else view.setUint32(i, this.lie(offset + i, view.getUint32(i, true), 32), true);
    }
    return target;
  }

  copyIn(offset: number, source: Uint8Array, width?: AccessWidth): void {
    this.inner.copyIn(offset, source, width);
  }

  /** Polls through the lying reads, at most POLL_READS of them (never sleeps). */
  pollUntil(offset: number, mask: number, expected: number, timeoutMs: number, _intervalUs?: number): number | null {
    const deadline = Date.now() + timeoutMs;
    const want = expected >>> 0;
    for (let reads = 1; ; reads++) {
      const value = this.readl(offset);
      if (((value & mask) >>> 0) === want) return value;
      if (reads >= POLL_READS || Date.now() >= deadline) return null;
    }
  }

  close(): void {
    this.inner.close();
  }

  private lie(offset: number, value: number, bits: 8 | 16 | 32): number {
    const config = offset >= R.Config;
    const register = config ? offset : offset & ~3;
    const rate = config || DEVICE_WRITTEN.has(register) ? this.lies.rate : IDENTITY.has(register) ? this.lies.identityRate : 0;
    if (!this.random.chance(rate)) return value;
    const out = mutateValue(this.random, value, bits);
    if (out === value) return value;
    const name = config ? 'config' : (REGISTER_NAMES.get(register) ?? `0x${register.toString(16)}`);
    this.mutated.set(name, (this.mutated.get(name) ?? 0) + 1);
    const fault = faultOfRegister(name) ?? 'uncatalogued';
    this.byFault.set(fault, (this.byFault.get(fault) ?? 0) + 1);
    if (config || !HARMLESS.has(register)) this.dataLies++;
    return out;
  }

  private area(index: number): QueueAreas {
    let area = this.areas.get(index);
    if (!area) {
      area = { index, size: 0, desc: 0n, driver: 0n, device: 0n, ready: false, align: 4096 };
      this.areas.set(index, area);
    }
    return area;
  }

  /** Follows the driver's writes that place queues (§4.2.3.2) or undo them (reset, QueueReset). */
  private observe(offset: number, value: number): void {
    const low = (old: bigint): bigint => (old & ~0xffff_ffffn) | BigInt(value);
    const high = (old: bigint): bigint => (old & 0xffff_ffffn) | (BigInt(value) << 32n);
    const q = (): QueueAreas => this.area(this.selected);
    switch (offset) {
      case R.QueueSel:
        this.selected = value;
        return;
      case R.QueueNum:
        q().size = value;
        return;
      case R.QueueDescLow:
        q().desc = low(q().desc);
        return;
      case R.QueueDescHigh:
        q().desc = high(q().desc);
        return;
      case R.QueueDriverLow:
        q().driver = low(q().driver);
        return;
      case R.QueueDriverHigh:
        q().driver = high(q().driver);
        return;
      case R.QueueDeviceLow:
        q().device = low(q().device);
        return;
      case R.QueueDeviceHigh:
        q().device = high(q().device);
        return;
      case R.QueueReady:
        if (this.version === 2) q().ready = value === 1;
        return;
      case R.QueueReset:
        if (value === 1) q().ready = false;
        return;
      case R.GuestPageSize:
        if (this.version === 1) this.pageSize = value;
        return;
      case R.QueueAlign:
        if (this.version === 1) q().align = value;
        return;
      case R.QueuePFN: {
        if (this.version !== 1) return;
        const area = q();
        area.ready = value !== 0 && area.size > 0;
        if (!area.ready) return;
        const layout = legacyLayout(area.size, area.align);
        area.desc = BigInt(value) * BigInt(this.pageSize);
        area.driver = area.desc + BigInt(layout.availOffset);
        area.device = area.desc + BigInt(layout.usedOffset);
        return;
      }
      case R.DriverFeaturesSel:
        this.driverFeaturesSel = value;
        return;
      case R.DriverFeatures:
        if (this.driverFeaturesSel === 1) this.driverFeaturesHigh = value;
        return;
      case R.Status:
        if (value === 0) {
          for (const area of this.areas.values()) area.ready = false;
          this.driverFeaturesHigh = 0;
        }
        return;
      default:
    }
  }
}
