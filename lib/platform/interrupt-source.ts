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
 * listen() delivers each interrupt to the listener; the line is re-armed
 * (UIO: the 4-byte write of 1) when the listener calls acknowledged() or,
 * at the latest, when it returns, so the listener acknowledges the device
 * (InterruptACK) first.
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
  /**
   * Called by a listener once it has acknowledged the device's interrupt
   * (§4.2.3.4's InterruptACK): the line may be re-armed before the listener
   * goes on to the used buffers and whatever they start. Unmasking only
   * after acknowledging keeps a level-triggered line from firing again at
   * once; unmasking before new requests reach the device keeps their
   * interrupts from arriving at a masked line (an edge-triggered one is
   * then held pending by the kernel until the unmask). Optional: a source
   * without it re-arms when the listener returns.
   */
  acknowledged?(): void;
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
