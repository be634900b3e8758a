/**
 * Coalesces the device's ring work into one pass on the next turn of the
 * event loop (setImmediate): a notification asks for new chains to be
 * picked up, an asynchronous completion only for used elements to be
 * published.
 */
export class WorkScheduler {
  private immediate?: NodeJS.Immediate;
  private pickUpRequested = false;
  private closed = false;

  constructor(private readonly run: (pickUpWork: boolean) => void) {}

  schedule(pickUpWork: boolean): void {
    if (pickUpWork) this.pickUpRequested = true;
    if (this.immediate || this.closed) return;
    this.immediate = setImmediate(() => {
      this.immediate = undefined;
      const pickUp = this.pickUpRequested;
      this.pickUpRequested = false;
      if (!this.closed) this.run(pickUp);
    });
  }

  close(): void {
    this.closed = true;
    if (this.immediate) clearImmediate(this.immediate);
    this.immediate = undefined;
  }
}
