import '../disposable';
import { ClosedError, invalidArgType, invalidArgValue, outOfRange } from '../errors';
import type { AccessWidth, RegisterBlock } from '../platform';
import { checkPollTimeout } from '../platform/register-block';
import { hex } from '../util/hex';

/**
 * A RegisterBlock in software with the native region's argument semantics:
 * ClosedError after close(), TypeError for a non-number, RangeError for an
 * access outside the window or not naturally aligned and for a value that
 * does not fit (-2^(n-1) … 2^n - 1, so -1 means all ones). Subclasses see
 * only checked accesses.
 */
export abstract class RegisterWindow implements RegisterBlock {
  abstract readonly size: number;
  abstract readonly label: string;
  abstract readonly closed: boolean;
  abstract close(): void;

  /** close(), for `using` (explicit resource management): disposed at the end of the enclosing block. */
  [Symbol.dispose](): void {
    this.close();
  }

  /** A checked read of `width` bytes at `offset`. */
  protected abstract readAt(offset: number, width: AccessWidth): number;
  /** A checked write; `value` is already reduced to `width` bytes, unsigned. */
  protected abstract writeAt(offset: number, width: AccessWidth, value: number): void;
  /**
   * Reads after which pollUntil's outcome can no longer change (nothing but reads moves the registers during a poll).
   */
  protected abstract pollReadLimit(): number;

  readb(offset: number): number {
    this.checkAccess(offset, 1);
    return this.readAt(offset, 1);
  }

  readw(offset: number): number {
    this.checkAccess(offset, 2);
    return this.readAt(offset, 2);
  }

  readl(offset: number): number {
    this.checkAccess(offset, 4);
    return this.readAt(offset, 4);
  }

  writeb(offset: number, value: number): void {
    this.checkAccess(offset, 1);
    this.writeAt(offset, 1, checkValue(value, 1));
  }

  writew(offset: number, value: number): void {
    this.checkAccess(offset, 2);
    this.writeAt(offset, 2, checkValue(value, 2));
  }

  writel(offset: number, value: number): void {
    this.checkAccess(offset, 4);
    this.writeAt(offset, 4, checkValue(value, 4));
  }

  copyOut(offset: number, target: Uint8Array, width: AccessWidth = 4): Uint8Array {
    this.checkCopy(offset, target, width);
    const view = new DataView(target.buffer, target.byteOffset, target.byteLength);
    for (let i = 0; i < target.length; i += width) {
      const value = this.readAt(offset + i, width);
      if (width === 1) view.setUint8(i, value);
      else if (width === 2) view.setUint16(i, value, true);
      else view.setUint32(i, value, true);
    }
    return target;
  }

  copyIn(offset: number, source: Uint8Array, width: AccessWidth = 4): void {
    this.checkCopy(offset, source, width);
    const view = new DataView(source.buffer, source.byteOffset, source.byteLength);
    for (let i = 0; i < source.length; i += width) {
      const value = width === 1 ? view.getUint8(i) : width === 2 ? view.getUint16(i, true) : view.getUint32(i, true);
      this.writeAt(offset + i, width, value);
    }
  }

  /**
   * Reads the 32-bit register until (value & mask) === expected. It never
   * sleeps (intervalUs is accepted and ignored): it returns null once
   * pollReadLimit() reads have not matched, or at timeoutMs.
   */
  pollUntil(offset: number, mask: number, expected: number, timeoutMs: number, intervalUs?: number): number | null {
    this.checkAccess(offset, 4);
    checkPollTimeout('timeoutMs', timeoutMs);
    if (intervalUs !== undefined && (typeof intervalUs !== 'number' || !(intervalUs >= 0))) {
      throw outOfRange(`intervalUs must be a non-negative number, got ${String(intervalUs)}`);
    }
    const want = expected >>> 0;
    const limit = this.pollReadLimit();
    const deadline = Date.now() + timeoutMs;
    for (let reads = 1; ; reads++) {
      const value = this.readAt(offset, 4);
      if ((value & mask) >>> 0 === want) return value;
      if (reads >= limit || Date.now() >= deadline) return null;
    }
  }

  protected assertOpen(): void {
    if (this.closed) throw new ClosedError(`${this.label} is closed`);
  }

  private checkAccess(offset: number, width: number): void {
    this.assertOpen();
    if (typeof offset !== 'number') throw invalidArgType(`offset must be a number, got ${String(offset)}`);
    const what =
      `${width * 8}-bit access at offset ${Number.isInteger(offset) && offset >= 0 ? hex(offset) : String(offset)} ` +
      `of ${this.label} (window of ${hex(this.size)} bytes)`;
    if (!Number.isInteger(offset) || offset < 0) throw outOfRange(`${what}: offset is not a non-negative integer`);
    if (offset + width > this.size) throw outOfRange(`${what}: outside the window`);
    if (offset % width !== 0) throw invalidArgValue(`${what}: not naturally aligned`, 'range');
  }

  private checkCopy(offset: number, bytes: Uint8Array, width: number): void {
    this.assertOpen();
    if (!(bytes instanceof Uint8Array)) throw invalidArgType('expected a Uint8Array or Buffer');
    if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0)
      throw outOfRange(`offset must be a non-negative integer, got ${String(offset)}`);
    if (width !== 1 && width !== 2 && width !== 4) throw outOfRange(`width must be 1, 2 or 4, got ${String(width)}`);
    const what =
      `${width * 8}-bit copy of ${hex(bytes.length)} bytes at offset ${hex(offset)} of ${this.label} ` +
      `(window of ${hex(this.size)} bytes)`;
    if (offset + bytes.length > this.size) throw outOfRange(`${what}: outside the window`);
    if (offset % width !== 0 || bytes.length % width !== 0)
      throw invalidArgValue(`${what}: not naturally aligned`, 'range');
  }
}

function checkValue(value: number, width: number): number {
  if (typeof value !== 'number') throw invalidArgType('value must be a number');
  const bits = 8 * width;
  if (!Number.isInteger(value) || value < -(2 ** (bits - 1)) || value > 2 ** bits - 1) {
    throw outOfRange(`value ${value} does not fit in ${bits} bits`);
  }
  return width === 4 ? value >>> 0 : value & (2 ** bits - 1);
}
