export interface InterruptEvent {
  /** Interrupts since the previous event (1 for the first); more than 1 means several were coalesced. */
  count: number;
}

export type InterruptListener = (event: InterruptEvent) => void;
export type InterruptErrorListener = (error: Error) => void;

/**
 * A device's interrupt line as seen from user space (a UIO fd, or the
 * software device's eventfd), watched from the event loop without a thread.
 *
 * listen() delivers each interrupt to the listener; when the listener
 * returns, the line is re-armed (UIO: the 4-byte write of 1), so the
 * listener should acknowledge the device (InterruptACK) before returning.
 * A line that fails (device gone: EIO, EPOLLERR, EPOLLHUP) stops listening
 * and reports a DeviceGoneError to the error listener. While nobody listens,
 * the source does not keep the process alive.
 */
export interface InterruptSource {
  readonly label: string;
  readonly closed: boolean;
  readonly listening: boolean;
  listen(onInterrupt: InterruptListener, onError: InterruptErrorListener): void;
  unlisten(): void;
  /** Unmask the line (UIO irqcontrol write of 1). */
  enable(): void;
  /** Mask the line (UIO irqcontrol write of 0). */
  disable(): void;
  close(): void;
  /**
   * Whether a listening source keeps the process alive (default: yes).
   * Drivers unref while no request is outstanding, so an idle device does
   * not hold the process open.
   */
  ref(): void;
  unref(): void;
  /** Async iteration over interrupts; ends when the iterator is returned or the source closes, throws on failure. */
  events(): AsyncIterableIterator<InterruptEvent>;
}
