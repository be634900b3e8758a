import { invalidArgValue, outOfRange, TransportError } from '../errors';
import type { RegisterBlock } from '../platform';
import { MmioRegister as R } from '../spec';

/** One consistent() read of the configuration space. */
export interface ConfigRead<T> {
  value: T;
  /** Version 2: ConfigGeneration as read after the last run. */
  generation?: number;
  /** The generation held still across the last run (always true on Version 1). */
  stable: boolean;
  /** Runs of the read it took. */
  attempts: number;
}

/**
 * The device-specific configuration space at 0x100 (virtio 1.2 §4.2.2):
 * each field accessed at its own width (8, 16, 32 bits; 64-bit fields as
 * two 32-bit halves), multi-access reads bracketed by ConfigGeneration
 * (§2.5.1) on Version 2. Offsets are relative to the start of the space.
 */
export class ConfigSpace {
  constructor(
    private readonly regs: RegisterBlock,
    private readonly version: 1 | 2,
    private readonly retries: number,
    /** Throws when the transport does not allow the access now (closed; a write before FEATURES_OK). */
    private readonly guard: (write: boolean) => void = () => undefined,
  ) {}

  /** Bytes the window leaves for the config space. */
  get size(): number {
    return Math.max(0, this.regs.size - R.Config);
  }

  read8(offset: number): number {
    return this.regs.readb(this.at(offset, 1));
  }

  read16(offset: number): number {
    return this.regs.readw(this.at(offset, 2));
  }

  read32(offset: number): number {
    return this.regs.readl(this.at(offset, 4));
  }

  /** A 64-bit field: two 32-bit reads inside one configuration generation. */
  read64(offset: number): bigint {
    const at = this.at(offset, 8);
    return this.atomic(() => {
      const low = this.regs.readl(at);
      const high = this.regs.readl(at + 4);
      return (BigInt(high) << 32n) | BigInt(low);
    });
  }

  write8(offset: number, value: number): void {
    this.regs.writeb(this.at(offset, 1, 1, true), value);
  }

  write16(offset: number, value: number): void {
    this.regs.writew(this.at(offset, 2, 2, true), value);
  }

  write32(offset: number, value: number): void {
    this.regs.writel(this.at(offset, 4, 4, true), value);
  }

  write64(offset: number, value: bigint): void {
    const at = this.at(offset, 8, 8, true);
    this.regs.writel(at, Number(value & 0xffff_ffffn));
    this.regs.writel(at + 4, Number((value >> 32n) & 0xffff_ffffn));
  }

  /** `length` bytes read one byte at a time (for byte-array fields), inside one generation. */
  readBytes(offset: number, length: number): Uint8Array {
    const at = this.at(offset, 1, length);
    return this.atomic(() => this.regs.copyOut(at, new Uint8Array(length), 1));
  }

  /**
   * Runs `read` (several config reads) until ConfigGeneration is the same
   * before and after, at most `retries` times, then throws TransportError
   * CONFIG_UNSTABLE. Version 1 has no generation register: `read` runs once.
   */
  atomic<T>(read: () => T): T {
    const outcome = this.consistent(read);
    if (outcome.stable) return outcome.value;
    throw new TransportError(
      TransportError.CONFIG_UNSTABLE,
      `${this.regs.label}: ConfigGeneration changed during each of ${this.retries} config reads`,
    );
  }

  /**
   * What atomic() does, without the throw: the value of the last run, the
   * ConfigGeneration read after it (Version 2), whether it matched the one
   * read before, and how many runs it took (virtio 1.2 §2.5.1, §4.2.2).
   * For tools that show an unsettled configuration rather than refuse it.
   */
  consistent<T>(read: () => T): ConfigRead<T> {
    if (this.version === 1) return { value: read(), stable: true, attempts: 1 };
    let outcome: ConfigRead<T> | undefined;
    for (let attempts = 1; attempts <= Math.max(1, this.retries); attempts++) {
      const before = this.regs.readl(R.ConfigGeneration);
      const value = read();
      const generation = this.regs.readl(R.ConfigGeneration);
      outcome = { value, generation, stable: generation === before, attempts };
      if (outcome.stable) break;
    }
    return outcome!;
  }

  private at(offset: number, width: number, length = width, write = false): number {
    this.guard(write);
    const align = Math.min(width, 4);
    if (!Number.isInteger(offset) || offset < 0 || offset % align !== 0) {
      throw invalidArgValue(`config offset must be a non-negative multiple of ${align}, got ${offset}`, 'range');
    }
    if (!Number.isInteger(length) || length < 0 || offset + length > this.size) {
      throw outOfRange(`config bytes ${offset}..${offset + length} are outside the ${this.size}-byte config space`);
    }
    return R.Config + offset;
  }
}
