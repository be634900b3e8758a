import { outOfRange } from '../errors';
/** Access widths of a register access or bulk copy, in bytes. */
export type AccessWidth = 1 | 2 | 4;

/**
 * The longest RegisterBlock.pollUntil() blocks the thread, in ms: the
 * addon's pollUntil refuses more (native/mmio_region.cc), and so does the
 * sim's register window. test/transport/poll-timeout.test.ts holds both to
 * this value.
 */
export const POLL_TIMEOUT_MAX_MS = 60_000;

/**
 * pollUntil's own check of timeoutMs — an integer in [0, POLL_TIMEOUT_MAX_MS]
 * — for a time limit that will reach pollUntil, made where it enters (an
 * option), so it fails there and not deep inside open() or close().
 */
export function checkPollTimeout(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > POLL_TIMEOUT_MAX_MS) {
    throw outOfRange(
      `${name} must be an integer in [0, ${POLL_TIMEOUT_MAX_MS}] (ms, the most pollUntil waits), got ${String(value)}`,
    );
  }
  return value;
}

/**
 * A device's register window. Reads and writes have Linux readX/writeX
 * semantics: a write is ordered after earlier stores to DMA memory, a read
 * before later loads from it. Offsets are bytes from the window start; an
 * access outside the window or not naturally aligned throws RangeError
 * before memory is touched; any access after close() throws ClosedError.
 * A value written may be given unsigned or signed (-2^(n-1) … 2^n - 1 for
 * n bits: -1 means all ones); reads return it unsigned.
 */
export interface RegisterBlock {
  readonly size: number;
  readonly closed: boolean;
  /** Where the window is, for messages (e.g. "/dev/uio3@0x200"). */
  readonly label: string;
  readb(offset: number): number;
  readw(offset: number): number;
  readl(offset: number): number;
  writeb(offset: number, value: number): void;
  writew(offset: number, value: number): void;
  writel(offset: number, value: number): void;
  /** Copies target.length bytes out of the window, one access per `width` bytes (default 4). */
  copyOut(offset: number, target: Uint8Array, width?: AccessWidth): Uint8Array;
  /** Copies source into the window, one access per `width` bytes (default 4). */
  copyIn(offset: number, source: Uint8Array, width?: AccessWidth): void;
  /**
   * Reads the 32-bit register until (value & mask) === expected, like Linux
   * readl_poll_timeout; blocks the thread for at most timeoutMs, an
   * integer in [0, POLL_TIMEOUT_MAX_MS] (RangeError otherwise).
   * Returns the matching value, or null on timeout.
   */
  pollUntil(offset: number, mask: number, expected: number, timeoutMs: number, intervalUs?: number): number | null;
  /**
   * Optional (the addon's windows have it, the sim's has not): arms a
   * writel(offset, value) that the window makes by itself when this thread
   * (the main thread or a worker) tears down — also when no JavaScript runs
   * then, as for worker.terminate() — followed by up to `pollMs` (default
   * 10, at most 1000) of reads until the register reads `value`. Offset and
   * value are checked as writel checks them. Arming again replaces the
   * write; it holds until disarmExitWrite() or close(). MmioTransport arms
   * Status ← 0 (§2.4) while the device is live.
   */
  armExitWrite?(offset: number, value: number, pollMs?: number): void;
  /** Cancels armExitWrite (idempotent, never throws, also after close()). */
  disarmExitWrite?(): void;
  close(): void;
}
