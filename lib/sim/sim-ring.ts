import type { DeviceMemory } from '../platform';
import { CompletionOrder, type Completion } from './completion-order';
import type { Hostile } from './hostile';
import { HostileRing, type HostileRingView } from './hostile-ring';
import type { SimDeviceModel, SimRequest } from './sim-model';
import type { SimRule, StrictRules } from './strict-rules';

/**
 * A used element as the device is about to write it (virtio 1.2 §2.7.8; §2.8.13 for a used packed descriptor's id and
 * len).
 */
export interface UsedElement {
  id: number;
  len: number;
}

/** The ring format of a live queue: split (§2.7) or packed (§2.8, VIRTIO_F_RING_PACKED). */
export type SimRingKind = 'split' | 'packed';

/** What a queue needs from the device it belongs to. */
export interface SimQueueHost {
  readonly memory: DeviceMemory;
  readonly model: SimDeviceModel;
  readonly rules: StrictRules;
  readonly suppressNotifications: boolean;
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  readonly indirectDesc: boolean;
  /** VIRTIO_F_EVENT_IDX negotiated. */
  readonly eventIdx: boolean;
  /** VIRTIO_F_RING_PACKED negotiated: queues made live use the packed format. */
  readonly packed: boolean;
  /** VIRTIO_F_IN_ORDER negotiated. */
  readonly inOrder: boolean;
  /** With IN_ORDER: the most buffers one used element covers (SimOptions.inOrderBatch). */
  readonly inOrderBatch: number;
  rewriteUsed?(queue: number, element: UsedElement): UsedElement;
  /** A used buffer notification is due (InterruptStatus bit 0). */
  notifyUsed(queue: number): void;
  /** A used buffer notification was suppressed by the driver's event suppression. */
  notifySuppressed(queue: number): void;
  /** The queue met a driver error it cannot go on from (DEVICE_NEEDS_RESET). */
  queueBroken(queue: number): void;
  /** Asynchronous completions were recorded; publish them soon. */
  scheduleFlush(): void;
  countRequest(queue: number): void;
  modelError(error: Error): void;
  /** Hostile mode (SimOptions.hostile), when on. */
  readonly hostile?: Hostile;
  /** Hostile mode stopped the device (needs-reset, device-gone): no ring work at all. */
  readonly halted?: boolean;
  /**
   * Hostile mode: a chain is being taken from queue `queue`; true when the device stops now instead (it is not handed
   * to the model).
   */
  haltAtTake?(queue: number): boolean;
  /** Hostile late-completion: keeps `work` to be done later (after a delay or at SimDevice.completeLate()). */
  holdLate?(work: () => void): void;
  /**
   * Whether a reset of the device or of queue `queue` was asked for and did not complete (the device goes on working).
   */
  resetIncomplete?(queue: number): boolean;
}

/** Where a ring's device side is, for SimQueueState. */
export interface SimRingPosition {
  readonly lastAvail: number;
  readonly usedIdx: number;
  readonly availWrap?: boolean;
  readonly usedWrap?: boolean;
}

const isPromiseLike = (value: unknown): value is PromiseLike<unknown> =>
  typeof value === 'object' && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';

function asError(error: unknown, context: string): Error {
  return error instanceof Error ? error : new Error(`${context}: ${String(error)}`);
}

/**
 * What the split and the packed device side share: handing buffers to the
 * model, taking its results (now or later), the order and batching of
 * used elements (CompletionOrder), publishing them, and breaking the
 * queue on a driver error. One instance lives from QueueReady 1 (or
 * QueuePFN) to the stop or reset of the queue; once dropped, late
 * completions are discarded.
 */
export abstract class SimRing<T extends Completion> {
  abstract readonly kind: SimRingKind;
  private isBroken = false;
  private dropped = false;
  private inFlightCount = 0;
  private readonly order: CompletionOrder<T>;
  /** Hostile mode's lies for this ring (absent when hostile mode is off). */
  protected readonly hostileRing?: HostileRing;

  constructor(
    readonly index: number,
    readonly num: number,
    protected readonly host: SimQueueHost,
  ) {
    // The features are settled before queues are set up (§3.1.1 step 7), so the mode is fixed for the ring's life.
    this.order = new CompletionOrder(host.inOrder, host.inOrderBatch);
    if (host.hostile) this.hostileRing = new HostileRing(host.hostile, this.hostileView());
  }

  /**
   * What hostile mode needs to know of this ring (a subclass's fields are set only after this constructor: read
   * lazily).
   */
  protected abstract hostileView(): HostileRingView;

  get broken(): boolean {
    return this.isBroken;
  }

  /** Buffers handed to the model and not yet used. */
  get inFlight(): number {
    return this.inFlightCount;
  }

  abstract get position(): SimRingPosition;

  /** Takes every newly available buffer to the model; synchronous results are used in this pass. */
  abstract pass(): void;

  /** Checks the next_off/next_wrap of a notification against the ring (VIRTIO_F_NOTIFICATION_DATA, §2.9). */
  abstract checkNotificationData(nextOff: number, nextWrap: boolean): void;

  /** Writes one used element covering `batch` (one buffer, or an IN_ORDER batch). */
  protected abstract writeUsed(batch: readonly T[], element: UsedElement): void;

  /**
   * Makes the elements written since the last call visible; whether a used buffer notification is due (undefined:
   * nothing new).
   */
  protected abstract publishUsed(): boolean | undefined;

  /** Uses every buffer that is ready, publishes, and decides on the used buffer notification. */
  flush(): void {
    if (this.dropped || this.host.halted) return;
    for (const batch of this.order.takeBatches()) {
      const last = batch[batch.length - 1];
      let element: UsedElement = { id: last.id, len: last.len };
      if (this.host.rewriteUsed) element = this.host.rewriteUsed(this.index, element);
      if (this.hostileRing) element = this.hostileRing.usedElement(batch, element);
      this.writeUsed(batch, element);
      this.inFlightCount -= batch.length;
    }
    const notify = this.publishUsed();
    if (notify === undefined) return;
    if (notify) this.host.notifyUsed(this.index);
    else this.host.notifySuppressed(this.index);
  }

  /** The queue stopped or was reset: nothing more is written, late completions are discarded. */
  drop(): void {
    this.dropped = true;
    this.inFlightCount = 0;
    this.order.clear();
  }

  /**
   * Hands one buffer to the model. False when the handler stopped or reset
   * the queue meanwhile (the pass ends).
   */
  protected dispatch(item: T, request: SimRequest): boolean {
    const hostile = this.host.hostile;
    if (hostile && this.host.haltAtTake?.(this.index)) return false;
    if (hostile?.ringLive('never-completes', this.index)) {
      // Taken and kept: never handed to the model, never used (§2.7.13 is the device's promise to use it).
      hostile.record('never-completes', `chain ${item.id} taken and held`, this.index);
      this.inFlightCount++;
      this.host.countRequest(this.index);
      return true;
    }
    if (hostile && this.holdForLate(hostile, item, request)) return true;
    this.order.added(item);
    this.inFlightCount++;
    this.host.countRequest(this.index);
    const result = this.handle(request);
    if (this.dropped) return false;
    if (!isPromiseLike(result)) {
      this.complete(item, result);
      return true;
    }
    const later = (len: unknown): void => {
      if (this.dropped) return; // reset, stopped or broken since: discarded
      this.complete(item, len);
      this.host.scheduleFlush();
    };
    result.then(later, (error: unknown) => {
      if (!this.dropped) this.host.modelError(asError(error, `queue ${this.index}: handle() rejected`));
      later(0);
    });
    return true;
  }

  /**
   * Hostile late-completion: the chain is taken now and its work done later
   * — the buffers written, then the chain used if the ring still lives.
   * After a reset that completed the work is dropped; after one that did
   * not, the device writes the buffers all the same.
   */
  private holdForLate(hostile: Hostile, item: T, request: SimRequest): boolean {
    if (!hostile.ringLive('late-completion', this.index) || this.host.inOrder || !this.host.holdLate) return false;
    const share = hostile.options('late-completion')?.share ?? 1;
    if (share < 1 && hostile.random() >= share) return false;
    hostile.record('late-completion', `chain ${item.id} held for a late completion`, this.index);
    this.inFlightCount++;
    this.host.countRequest(this.index);
    this.host.holdLate(() => {
      if (this.dropped && !this.host.resetIncomplete?.(this.index)) return;
      const done = (len: unknown): void => {
        if (this.dropped) return; // the ring is gone: the buffers were written, no used element can be
        this.order.added(item);
        this.complete(item, len);
        this.host.scheduleFlush();
      };
      const result = this.handle(request);
      if (isPromiseLike(result)) result.then(done, () => done(0));
      else done(result);
    });
    return true;
  }

  /** The model's handle(); one that throws is recorded as a device error and uses the chain with len 0. */
  private handle(request: SimRequest): number | Promise<number> {
    try {
      return this.host.model.handle(request);
    } catch (error) {
      this.host.modelError(asError(error, `queue ${this.index}: handle() threw`));
      return 0;
    }
  }

  /** Records a driver error the ring cannot go on from: publishes what is done, stops, asks for a reset. */
  protected break(rule: SimRule, message: string): void {
    this.host.rules.record(rule, message);
    this.flush();
    this.isBroken = true;
    this.drop();
    this.host.queueBroken(this.index);
  }

  private complete(item: T, result: unknown): void {
    let len = result;
    if (typeof len !== 'number' || !Number.isInteger(len) || len < 0 || len > item.writableBytes) {
      this.host.modelError(
        new RangeError(
          `queue ${this.index}: handle() returned ${String(result)}` +
            ` for a chain with ${item.writableBytes} writable bytes`,
        ),
      );
      len = typeof len === 'number' && len > item.writableBytes ? item.writableBytes : 0;
    }
    item.len = len as number;
    this.order.completed(item);
  }
}
