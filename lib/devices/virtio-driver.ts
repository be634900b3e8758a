import '../disposable';
import { ClosedError, invalidArgValue } from '../errors';
import type { Barriers, DmaAllocator } from '../platform';
import type { QueueDump, QueueMode, QueueModeOptions, QueueRecovery, QueueStats, Virtqueue } from '../queue';
import type { VirtioTransport } from '../transport';

/** How to run a driver, chosen by whoever opens it. */
export interface DriverOptions {
  /** Where rings and buffers live. */
  memory: DmaAllocator;
  barriers?: Barriers;
  /** Upper bound on every queue's size (default: the size each driver asks for). */
  queueSize?: number;
  /** Features the driver must not ask for (e.g. turn EVENT_IDX off to compare). Default: none. */
  excludeFeatures?: bigint;
  /** Longest chain sent as one indirect table (default 32). */
  indirectMax?: number;
  /** How every queue finds completions (default 'interrupt'; see QueueMode). */
  queueMode?: QueueMode;
  queueModeOptions?: QueueModeOptions;
  /**
   * Time limit of each request (blk reads and writes, rng fills, transmits):
   * a request the device has not completed by then rejects with
   * TimeoutError. Receive buffers have none. Default 30,000 ms; 0 turns the
   * limit off.
   */
  requestTimeoutMs?: number;
  /**
   * What a queue does, when VIRTIO_F_RING_RESET is negotiated, after the
   * device broke it (a lie caught by validation) or — with
   * 'reset-broken-or-stuck' — kept a request past its deadline: reset that
   * queue alone and go on (see resetQueue(), VirtqueueOptions.recovery).
   * Default 'reset-broken'; 'none' fails the whole device on a broken queue,
   * as without RING_RESET.
   */
  queueRecovery?: QueueRecovery;
}

/**
 * The base of device drivers, ours and users': it owns the transport and
 * the queues once the device is live. A subclass's `static open(transport,
 * options)` runs the init sequence of virtio 1.2 §3.1.1 step by step with
 * a DriverSetup and hands `setup.finish()` to this constructor.
 */
export abstract class VirtioDriver {
  readonly transport: VirtioTransport;
  /** Negotiated features. */
  readonly features: bigint;
  protected readonly memory: DmaAllocator;
  /** SubmitOptions.timeoutMs for request-type submissions (undefined: no limit). */
  protected readonly requestTimeoutMs?: number;
  private readonly queueMap: Map<number, Virtqueue>;
  private closing = false;
  private readonly resetListeners = new Set<(index: number, reason: Error) => void>();

  protected constructor(started: StartedDevice) {
    this.transport = started.transport;
    this.features = started.features;
    this.memory = started.memory;
    this.queueMap = started.queues;
    this.requestTimeoutMs = started.requestTimeoutMs;
    for (const [index, queue] of this.queueMap) {
      queue.onReset = (reason) => {
        for (const listener of [...this.resetListeners]) listener(index, reason);
      };
    }
  }

  /** The queue at `index` (one of those set up by DriverSetup.setUpQueues). */
  protected queue(index: number): Virtqueue {
    const queue = this.queueMap.get(index);
    if (!queue) throw invalidArgValue(`queue ${index} was not set up by this driver`, 'range');
    return queue;
  }

  get closed(): boolean {
    return this.closing;
  }

  /**
   * Lets the process exit while this driver waits for nothing but the
   * device (receive buffers posted, requests in flight), as unref() on a
   * socket does. rng and blk hold the process only while a request is in
   * flight anyway; console and net, whose receive buffers are always
   * posted, hold it for as long as they are open unless unref()'d.
   */
  unref(): this {
    for (const queue of this.queueMap.values()) queue.setKeepAlive(false);
    return this;
  }

  /** Undoes unref(). */
  ref(): this {
    for (const queue of this.queueMap.values()) queue.setKeepAlive(true);
    return this;
  }

  /** Throws ClosedError after close() (for the public methods of subclasses). */
  protected checkOpen(): void {
    if (this.closing) throw new ClosedError(`${this.transport.label}: the driver is closed`);
  }

  /** The indices of the queues this driver set up, ascending. */
  get queueIndices(): number[] {
    return [...this.queueMap.keys()].sort((a, b) => a - b);
  }

  /** Counters of the queue at `index` (requests, publishes, notifications, Atomics…), as a copy. */
  queueStats(index: number): QueueStats {
    return { ...this.queue(index).stats };
  }

  /**
   * The state of the queue at `index` as plain JSON data: the driver's
   * shadow state, the ring words in memory, and each request in flight with
   * its descriptors (see QueueDump). Read-only. RangeError for a queue this
   * driver did not set up; ClosedError after close().
   */
  dumpQueue(index: number): QueueDump {
    this.checkOpen();
    return this.queue(index).dump();
  }

  /** Switches how completions are found, for one queue or (without `index`) all of them. */
  setQueueMode(mode: QueueMode, options: QueueModeOptions = {}, index?: number): void {
    const queues = index === undefined ? [...this.queueMap.values()] : [this.queue(index)];
    for (const queue of queues) queue.setMode(mode, options);
  }

  /**
   * Resets the queue at `index` alone (VIRTIO_F_RING_RESET, virtio 1.2
   * §2.6.1) and hands it to the device again; the other queues go on
   * untouched. Its requests in flight reject with CanceledError (receive
   * buffers are posted again by the driver); their memory goes back only
   * once the device reports the reset complete. TransportError
   * NOT_NEGOTIATED without RING_RESET; QUEUE_RESET_TIMEOUT or
   * QUEUE_RESET_IGNORED when the device does not reset the queue — then the
   * device is failed as a whole (onError) and its reset takes the memory
   * back. ClosedError after close().
   */
  resetQueue(index: number): void {
    this.checkOpen();
    this.queue(index).reset();
  }

  /**
   * Listens for resets of one queue: resetQueue(), or a recovery
   * (DriverOptions.queueRecovery) from a broken or stuck queue; `reason` is
   * the error its pending requests were rejected with. Returns the
   * unsubscribe function.
   */
  onQueueReset(listener: (index: number, reason: Error) => void): () => void {
    this.resetListeners.add(listener);
    return () => this.resetListeners.delete(listener);
  }

  /** Listens for config changes (§4.2.3.4, InterruptStatus bit 1). Returns the unsubscribe function. */
  onConfigChange(listener: () => void): () => void {
    return this.transport.onConfigChange(listener);
  }

  /**
   * Listens for the device failing while open: DeviceGoneError (the
   * interrupt line went away) or DeviceBrokenError ('needs-reset',
   * 'interrupt-storm'). Pending requests are rejected with the same error
   * and later ones refused; close() and open again to recover. Returns the
   * unsubscribe function.
   */
  onError(listener: (error: Error) => void): () => void {
    return this.transport.onError(listener);
  }

  /** close(), for `using` (explicit resource management): disposed at the end of the enclosing block. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Resets the device (pending requests reject with CanceledError), frees
   * the queues' memory and closes the transport. Idempotent. A device that
   * does not complete its reset keeps its ring memory allocated (it may
   * still write there); the allocator's close() takes it back.
   */
  close(): void {
    if (this.closing) return;
    this.closing = true;
    this.deviceReleased = this.transport.close();
    // Each queue frees its ring only once the device let go of it (now, or when a later reset completes).
    for (const queue of this.queueMap.values()) queue.close();
  }

  /** After close(): whether the device let go of everything, so driver-owned DMA buffers may be freed. */
  protected deviceReleased = false;
}

/** A device DriverSetup brought to DRIVER_OK (§3.1.1 step 8), as the driver takes it over. */
export interface StartedDevice {
  transport: VirtioTransport;
  /** Negotiated features. */
  features: bigint;
  memory: DmaAllocator;
  queues: Map<number, Virtqueue>;
  /** SubmitOptions.timeoutMs for requests (undefined: no limit). */
  requestTimeoutMs?: number;
}
