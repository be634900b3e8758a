import { CanceledError, invalidArgValue, outOfRange, TransportError } from '../errors';
import { SplitRing, isPowerOfTwo } from '../spec';
import type { InterruptDispatch } from './interrupt-dispatch';
import type { TransportOps } from './transport-ops';
import type { QueueAddresses, QueueEndpoint } from './virtio-transport';

/**
 * Which virtqueues the device holds, and when their memory is the driver's
 * again (virtio 1.2 §2.4, §2.6.1): queue set-up, teardown and reset over the
 * transport's operations, with the rule that a queue detached while the
 * device may still write its memory is told so (reclaimAll) only by the next
 * completed reset. Whether an operation is allowed now is the status
 * machine's (DeviceStatusMachine) to decide; it calls in here after.
 */
export class QueueOwnership {
  /** Queues detached while the device may still hold their memory: told by the next completed reset (reclaimAll). */
  private readonly detached = new Set<QueueEndpoint>();
  /** Queues reset (§2.6.1) since the last device reset: these may be set up again while live. */
  private readonly resetQueues = new Set<number>();
  /** A queue reset timed out or was ignored since the last device reset. */
  private resetFailed = false;

  constructor(
    private readonly device: { readonly label: string },
    private readonly ops: TransportOps,
    /** Queues handed to the device, by index (shared with notify and interrupt dispatch, which only read it). */
    private readonly endpoints: Map<number, QueueEndpoint>,
    private readonly dispatch: Pick<InterruptDispatch, 'setBusy' | 'setAllIdle'>,
    private readonly queueResetTimeoutMs: number,
  ) {}

  /** No queue is handed to the device, and none was detached since the last completed reset. */
  get holdsNothing(): boolean {
    return this.endpoints.size === 0 && this.detached.size === 0;
  }

  /** Whether queue `index` was reset (§2.6.1) since the last device reset. */
  wasReset(index: number): boolean {
    return this.resetQueues.has(index);
  }

  /** The device was reset: no queue reset counts any more. */
  forgetResets(): void {
    this.resetQueues.clear();
    this.resetFailed = false;
  }

  /** Selects queue `index`, checks it is not in use and returns its QueueNumMax (0: no such queue). */
  numMax(index: number): number {
    this.ops.selectQueue(index);
    if (this.ops.queueInUse())
      throw new TransportError(TransportError.QUEUE_IN_USE, `${this.device.label}: queue ${index} is already in use`);
    return this.ops.queueNumMax();
  }

  /** Hands the selected queue `index`, of QueueNumMax `max`, to the device (TransportOps.enableQueue). */
  activate(index: number, max: number, addresses: QueueAddresses, endpoint: QueueEndpoint, packed: boolean): void {
    const { size } = addresses;
    if (max === 0)
      throw new TransportError(
        TransportError.QUEUE_UNAVAILABLE,
        `${this.device.label}: queue ${index} does not exist (QueueNumMax 0)`,
      );
    // §2.7: a split ring's size is a power of two; a packed ring's need not be (§2.8).
    if (
      !Number.isInteger(size) ||
      size < 1 ||
      size > max ||
      size > SplitRing.MAX_SIZE ||
      (!packed && !isPowerOfTwo(size))
    ) {
      throw invalidArgValue(
        `queue ${index}: size must be ${packed ? 'an integer' : 'a power of two'}` +
          ` in [1, QueueNumMax ${max}], got ${size}`,
        'range',
      );
    }
    if (!this.ops.enableQueue(index, addresses)) {
      throw new TransportError(
        TransportError.QUEUE_UNAVAILABLE,
        `${this.device.label}: queue ${index} did not become ready`,
      );
    }
    this.endpoints.set(index, endpoint);
    this.detached.delete(endpoint);
    this.resetQueues.delete(index);
  }

  /** Takes queue `index` back from the device, and checks it reads as no longer in use. */
  deactivate(index: number): void {
    checkQueueIndex(index);
    this.endpoints.delete(index);
    this.dispatch.setBusy(index, false);
    this.ops.selectQueue(index);
    if (!this.ops.disableQueue()) {
      throw new TransportError(
        TransportError.QUEUE_IN_USE,
        `${this.device.label}: queue ${index} still reads as in use after teardown`,
      );
    }
  }

  /**
   * Whether QueueReset has worked on this device: false once a queue reset
   * did not complete or was ignored (the device's own reset is the recovery
   * left). A device reset makes it true again.
   */
  get resetWorks(): boolean {
    return !this.resetFailed;
  }

  /**
   * Resets queue `index` (§2.6.1), waiting (bounded) for the reset to
   * complete; it may be set up again then. What the queue had pending is
   * rejected with `reason` (default CanceledError); its memory goes back only
   * once QueueReset and QueueReady both read 0 (§4.2.2.1). A reset that does
   * not complete (QUEUE_RESET_TIMEOUT) or that the device ignores
   * (QUEUE_RESET_IGNORED) leaves that memory the device's until a device
   * reset completes.
   */
  reset(index: number, reason?: Error): void {
    checkQueueIndex(index);
    this.ops.selectQueue(index);
    if (this.ops.queueNumMax() === 0)
      throw new TransportError(
        TransportError.QUEUE_UNAVAILABLE,
        `${this.device.label}: queue ${index} does not exist (QueueNumMax 0)`,
      );
    // §2.6.1: the device forgets the queue's buffers; so does its driver-side queue.
    const endpoint = this.endpoints.get(index);
    this.endpoints.delete(index);
    this.dispatch.setBusy(index, false);
    if (endpoint) {
      this.detached.add(endpoint);
      endpoint.detach(reason ?? new CanceledError(`${this.device.label}: queue ${index} was reset`));
    }
    let failure: TransportError | undefined;
    if (!this.ops.resetQueue(this.queueResetTimeoutMs)) {
      failure = new TransportError(
        TransportError.QUEUE_RESET_TIMEOUT,
        `${this.device.label}: QueueReset of queue ${index} did not read 0 within ${this.queueResetTimeoutMs} ms`,
      );
    } else if (this.ops.queueInUse()) {
      // §4.2.2.1: a completed queue reset reads 0 in QueueReady too. A device that offers RING_RESET and
      // ignores the register (QEMU's virtio-mmio up to 10.0 at least) still owns the ring.
      failure = new TransportError(
        TransportError.QUEUE_RESET_IGNORED,
        `${this.device.label}: QueueReset of queue ${index} read 0 but QueueReady still reads 1: the device did ` +
          "not reset the queue, which stays the device's until the device is reset",
      );
    }
    if (failure) {
      this.resetFailed = true;
      throw failure;
    }
    // §2.6.1: the device forgot the queue's buffers; its memory is the driver's again.
    if (endpoint) {
      this.detached.delete(endpoint);
      endpoint.reclaimAll?.();
    }
    this.resetQueues.add(index);
  }

  /** Detaches every queue with `error`; their memory stays the device's until the next completed reset. */
  detachAll(error: Error): void {
    const endpoints = [...this.endpoints.values()];
    this.endpoints.clear();
    this.dispatch.setAllIdle();
    for (const endpoint of endpoints) {
      this.detached.add(endpoint);
      endpoint.detach(error);
    }
  }

  /** A reset completed: every queue detached since holds nothing the device may write (§2.4). */
  reclaimDetached(): void {
    const endpoints = [...this.detached];
    this.detached.clear();
    for (const endpoint of endpoints) endpoint.reclaimAll?.();
  }
}

export function checkQueueIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index > 0xffff)
    throw outOfRange(`queue index must be an integer in [0, 65535], got ${index}`);
}
