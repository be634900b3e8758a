/** A buffer handed to the model, as the ring keeps it until it is used. */
export interface Completion {
  /** What the used element names: the head index (split) or the Buffer ID (packed). */
  readonly id: number;
  readonly writableBytes: number;
  /** The length the model reported; valid once `done`. */
  len: number;
  done: boolean;
}

/**
 * The order in which completed buffers are used. Without VIRTIO_F_IN_ORDER
 * each completion is used on its own, in the order the model completed
 * them (§2.7.8, §2.8.12: "in the order in which they complete"). With it
 * (§2.7.9, §2.8.8) buffers are used in the order they were made available:
 * a completion waits until every earlier buffer is complete, and runs of
 * consecutive completed buffers are used as batches of at most `batch`,
 * one used element each.
 *
 * Interpretation: the skipped buffers of a batch "are assumed to have been
 * used ... completely", so only a buffer whose length covers all its
 * writable bytes may be skipped; a shorter one ends its batch (its length
 * is the one written). A batch is never held back to fill up: whatever is
 * ready when the ring publishes is used.
 */
export class CompletionOrder<T extends Completion> {
  /**
   * In order: every outstanding buffer, oldest first. Otherwise: completed buffers not yet used, in completion order.
   */
  private queue: T[] = [];

  constructor(
    readonly inOrder: boolean,
    readonly batch: number,
  ) {}

  /** A buffer was made available and handed to the model. */
  added(item: T): void {
    if (this.inOrder) this.queue.push(item);
  }

  /** The model completed `item` (its len is set). */
  completed(item: T): void {
    item.done = true;
    if (!this.inOrder) this.queue.push(item);
  }

  /**
   * The buffers to use now, grouped into batches that each get one used element (named after the batch's last buffer).
   */
  takeBatches(): T[][] {
    if (!this.inOrder) return this.queue.splice(0).map((item) => [item]);
    const batches: T[][] = [];
    let current: T[] = [];
    let taken = 0;
    while (taken < this.queue.length && this.queue[taken].done) {
      const item = this.queue[taken++];
      current.push(item);
      if (current.length === this.batch || item.len !== item.writableBytes) {
        batches.push(current);
        current = [];
      }
    }
    if (current.length) batches.push(current);
    this.queue.splice(0, taken);
    return batches;
  }

  clear(): void {
    this.queue = [];
  }
}
