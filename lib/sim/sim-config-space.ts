import type { SimConfigField } from './sim-model';
import type { StrictRules } from './strict-rules';

/** Hostile mode's hooks into the config space (behaviours 15 and 17). */
export interface ConfigSpaceHostility {
  /** Bytes that config reads see at `offset` instead of the stored ones. */
  patch?: { offset: number; bytes: Uint8Array };
  /** A read saw patched bytes. */
  patched?(offset: number): void;
  /** A ConfigGeneration read returned a churned value. */
  churned?(generation: number): void;
}

/**
 * The device-specific configuration space at 0x100 (virtio 1.2 §4.2.2):
 * little-endian accesses into the model's bytes, width checks against the
 * model's field layout (§4.2.2.2), and ConfigGeneration (§2.5).
 */
export class SimConfigSpace {
  private generation = 0;

  constructor(
    readonly bytes: Uint8Array,
    private readonly fields: readonly SimConfigField[] | undefined,
    private readonly rules: StrictRules,
    /** Reads of ConfigGeneration that each still return a new value (Infinity: never settles). */
    private churnLeft: number,
    private readonly hostility: ConfigSpaceHostility = {},
  ) {}

  read(offset: number, width: 1 | 2 | 4): number {
    if (!this.check(offset, width, 'read')) return 0;
    const patch = this.hostility.patch;
    if (patch && offset < patch.offset + patch.bytes.length && offset + width > patch.offset) {
      this.hostility.patched?.(offset);
      let value = 0;
      for (let i = width - 1; i >= 0; i--) {
        const at = offset + i;
        const inPatch = at >= patch.offset && at < patch.offset + patch.bytes.length;
        value = value * 256 + (inPatch ? patch.bytes[at - patch.offset] : this.bytes[at]);
      }
      return value;
    }
    return this.load(offset, width);
  }

  /** Stores the value unless the access is refused; returns whether it was stored. */
  write(offset: number, width: 1 | 2 | 4, value: number): boolean {
    const field = this.check(offset, width, 'write');
    if (!field) return false;
    if (field !== true && !field.writable) {
      this.rules.record(
        'config-write-read-only',
        `config write at 0x${(0x100 + offset).toString(16)}: the field at config offset ${field.offset} is read-only`,
      );
      return false;
    }
    this.store(offset, width, value);
    return true;
  }

  /** The value ConfigGeneration reads now. */
  readGeneration(): number {
    if (this.churnLeft > 0) {
      this.churnLeft--;
      this.changed();
      this.hostility.churned?.(this.generation);
    }
    return this.generation;
  }

  /** The configuration changed: a new generation (§4.2.2.1). */
  changed(): void {
    this.generation = (this.generation + 1) >>> 0;
  }

  /**
   * Width rules of §4.2.2.2: 8-bit fields by 8-bit accesses, 16-bit by
   * 16-bit, 32- and 64-bit fields by 32-bit accesses, never across fields.
   * Returns the field (or true without a layout) when the access may go on.
   */
  private check(offset: number, width: number, kind: 'read' | 'write'): SimConfigField | true | undefined {
    const at = `config ${kind} of ${width * 8} bits at 0x${(0x100 + offset).toString(16)}`;
    if (offset + width > this.bytes.length) {
      this.rules.record('config-out-of-range', `${at}: the configuration space has ${this.bytes.length} bytes`);
      return undefined;
    }
    if (!this.fields) return true;
    const field = this.fields.find((f) => offset >= f.offset && offset < f.offset + f.width);
    if (!field) {
      this.rules.record('config-out-of-range', `${at}: no field of the device's configuration is there`);
      return undefined;
    }
    const expected = field.width === 8 ? 4 : field.width;
    if (width !== expected || offset + width > field.offset + field.width || (offset - field.offset) % expected !== 0) {
      this.rules.record(
        'config-width',
        `${at}: the field at config offset ${field.offset} is ${field.width * 8}-bit, accessed by ${expected * 8}` +
          `-bit aligned accesses`,
      );
    }
    return field;
  }

  private load(offset: number, width: number): number {
    let value = 0;
    for (let i = width - 1; i >= 0; i--) value = value * 256 + this.bytes[offset + i];
    return value;
  }

  private store(offset: number, width: number, value: number): void {
    for (let i = 0; i < width; i++) this.bytes[offset + i] = (value >>> (8 * i)) & 0xff;
  }
}
