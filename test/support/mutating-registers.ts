import type { AccessWidth, RegisterBlock } from '../../lib/platform';
import { FeatureBit, MmioRegister as R, QueueSelectTracker, type QueueAreas } from '../../lib/spec';
import { FAULT_CATALOGUE, faultOfRegister, type FaultName } from '../../lib/sim';
import { MutationRandom, mutateValue } from './mutation-random';

/** Where one queue's three areas are, as the driver wrote them (the spec module's tracker). */
export type { QueueAreas };

/** How often reads lie; may be changed at any time (e.g. no lies while the driver opens). */
export interface RegisterLies {
  /** Probability that a read of a device-written register or of config space is mutated. */
  rate: number;
  /** Probability for MagicValue, Version, DeviceID and VendorID. */
  identityRate: number;
}

const offsetOf = (name: string): number => R[name as keyof typeof R];
/** The registers the catalogue's faults lie through (FAULT_CATALOGUE `registers`), by the fault they tell. */
const CATALOGUED = FAULT_CATALOGUE.flatMap((entry) =>
  'registers' in entry
    ? entry.registers.filter((name) => name !== 'config').map((name) => [offsetOf(name), entry.name] as const)
    : [],
);
const IDENTITY: ReadonlySet<number> = new Set(
  CATALOGUED.filter(([, fault]) => fault === 'bad-identity').map(([offset]) => offset),
);
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
  /** The driver's queue setup writes (§4.2.3.2; legacy QueuePFN, §4.2.4). */
  private readonly setup: QueueSelectTracker;
  private driverFeaturesSel = 0;
  private driverFeaturesHigh = 0;

  constructor(
    private readonly inner: RegisterBlock,
    private readonly random: MutationRandom,
    version: 1 | 2,
  ) {
    this.setup = new QueueSelectTracker(version);
  }

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
    return this.setup.queues.filter((q) => q.ready && q.size > 0);
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
      if ((value & mask) >>> 0 === want) return value;
      if (reads >= POLL_READS || Date.now() >= deadline) return null;
    }
  }

  close(): void {
    this.inner.close();
  }

  private lie(offset: number, value: number, bits: 8 | 16 | 32): number {
    const config = offset >= R.Config;
    const register = config ? offset : offset & ~3;
    const rate =
      config || DEVICE_WRITTEN.has(register) ? this.lies.rate : IDENTITY.has(register) ? this.lies.identityRate : 0;
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

  /**
   * Follows the driver's writes that place queues (§4.2.3.2) or undo them (reset, QueueReset), and its feature choice.
   */
  private observe(offset: number, value: number): void {
    this.setup.write(offset, value);
    switch (offset) {
      case R.DriverFeaturesSel:
        this.driverFeaturesSel = value;
        return;
      case R.DriverFeatures:
        if (this.driverFeaturesSel === 1) this.driverFeaturesHigh = value;
        return;
      case R.Status:
        if (value === 0) this.driverFeaturesHigh = 0;
        return;
      default:
    }
  }
}
