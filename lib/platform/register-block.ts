/** Access widths of a register access or bulk copy, in bytes. */
export type AccessWidth = 1 | 2 | 4;

/**
 * A device's register window. Reads and writes have Linux readX/writeX
 * semantics: a write is ordered after earlier stores to DMA memory, a read
 * before later loads from it. Offsets are bytes from the window start; an
 * access outside the window or not naturally aligned throws RangeError
 * before memory is touched; any access after close() throws ClosedError.
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
   * readl_poll_timeout; blocks the thread for at most timeoutMs (≤ 60000).
   * Returns the matching value, or null on timeout.
   */
  pollUntil(offset: number, mask: number, expected: number, timeoutMs: number, intervalUs?: number): number | null;
  close(): void;
}
