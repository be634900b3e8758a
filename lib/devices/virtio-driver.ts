import { ClosedError, TransportError } from '../errors';
import type { Barriers, DmaAllocator } from '../platform';
import { createQueue, type QueueDump, type QueueMode, type QueueModeOptions, type QueueStats, type Virtqueue } from '../queue';
import { FeatureBit, deviceIdName, hasFeature, isPowerOfTwo } from '../spec';
import { TRANSPORT_FEATURES, type MmioTransport } from '../transport';

/** What a driver declares about its device type. */
export interface DriverPlan {
  /** Virtio device ID the driver is for (§5). */
  deviceId: number;
  /** Device-type feature bits the driver can use; the transport features it implements are added. */
  features?: bigint;
  /** Feature bits the driver cannot work without (NegotiationError FEATURE_MISSING when absent). */
  requiredFeatures?: bigint;
  /**
   * Queue indices to set up, in order (§5.x "Virtqueues"); a function when
   * the count depends on config read after negotiation (e.g. blk num_queues).
   */
  queues: readonly number[] | ((transport: MmioTransport, features: bigint) => readonly number[]);
  /** Queue Size to ask for (capped by QueueNumMax, rounded down to a power of two). Default 256. */
  queueSize?: number;
  /**
   * Runs after feature negotiation and queue setup, before DRIVER_OK
   * (§3.1.1 step 7): read config, fill receive queues…
   */
  configure?(transport: MmioTransport, features: bigint): void;
}

/** How to run a driver, chosen by whoever opens it. */
export interface DriverOptions {
  /** Where rings and buffers live. */
  memory: DmaAllocator;
  barriers?: Barriers;
  /** Upper bound on every queue's size (default: the plan's). */
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
}

const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;

/**
 * The base of device drivers, ours and users': it runs the init sequence
 * of virtio 1.2 §3.1.1 once — reset, negotiation, queues, configure,
 * DRIVER_OK — and owns the transport and queues afterwards. A subclass
 * calls `VirtioDriver.start(transport, plan, options)` and passes the
 * result to this constructor.
 */
export abstract class VirtioDriver {
  readonly transport: MmioTransport;
  /** Negotiated features. */
  readonly features: bigint;
  protected readonly memory: DmaAllocator;
  /** SubmitOptions.timeoutMs for request-type submissions (undefined: no limit). */
  protected readonly requestTimeoutMs?: number;
  private readonly queueMap: Map<number, Virtqueue>;
  private closing = false;

  protected constructor(started: StartedDevice) {
    this.transport = started.transport;
    this.features = started.features;
    this.memory = started.memory;
    this.queueMap = started.queues;
    this.requestTimeoutMs = started.requestTimeoutMs;
  }

  /** Runs the init sequence for `plan`; on any failure the device is left FAILED and everything allocated is freed. */
  static start(transport: MmioTransport, plan: DriverPlan, options: DriverOptions): StartedDevice {
    if (!options || typeof options.memory?.allocate !== 'function') throw new TypeError('options.memory (a DmaAllocator) is required');
    checkDriverOptions(options);
    const timeout = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (typeof timeout !== 'number' || !(timeout >= 0 && timeout <= 2 ** 31 - 1)) throw new RangeError(`requestTimeoutMs must be a number in [0, 2^31 - 1], got ${String(timeout)}`);
    if (transport.deviceId !== plan.deviceId) {
      throw new TransportError(TransportError.WRONG_DEVICE, `${transport.label}: this driver is for ${deviceIdName(plan.deviceId)}, the device is ${deviceIdName(transport.deviceId)}`);
    }
    const wanted = ((plan.features ?? 0n) | TRANSPORT_FEATURES) & ~(options.excludeFeatures ?? 0n);
    const features = transport.negotiate(wanted, plan.requiredFeatures ?? 0n);
    const queues = new Map<number, Virtqueue>();
    try {
      const indices = typeof plan.queues === 'function' ? plan.queues(transport, features) : plan.queues;
      for (const index of indices) {
        const max = transport.queueNumMax(index);
        if (max === 0) throw new TransportError(TransportError.QUEUE_UNAVAILABLE, `${transport.label}: queue ${index} does not exist (QueueNumMax 0)`);
        // §2.7: split rings take a power of two; packed rings any size up to QueueNumMax (§2.8).
        const wantedSize = Math.min(max, options.queueSize ?? Infinity, plan.queueSize ?? 256);
        const size = hasFeature(features, FeatureBit.RING_PACKED) ? wantedSize : floorPowerOfTwo(wantedSize);
        const queue = createQueue({ index, size, memory: options.memory, layout: transport.queueLayout, features, barriers: options.barriers, indirectMax: options.indirectMax });
        queues.set(index, queue);
        queue.attach(transport);
        if (options.queueMode) queue.setMode(options.queueMode, options.queueModeOptions);
      }
      plan.configure?.(transport, features);
      transport.driverOk();
    } catch (error) {
      // The device lets go of the rings before their memory is freed; if it
      // will not reset, the memory stays allocated rather than be reused under it.
      let released = true;
      try {
        transport.reset();
      } catch {
        released = false;
      }
      // A queue whose attach failed midway is not known to the transport: the completed reset is its reclaim too.
      if (released) {
        for (const queue of queues.values()) {
          queue.reclaimAll();
          queue.close();
        }
      }
      transport.markFailed();
      throw error;
    }
    return { transport, features, memory: options.memory, queues, requestTimeoutMs: timeout > 0 ? timeout : undefined };
  }

  /** The queue at `index` (one of the plan's). */
  protected queue(index: number): Virtqueue {
    const queue = this.queueMap.get(index);
    if (!queue) throw new RangeError(`queue ${index} was not set up by this driver`);
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

  /**
   * Throws TransportError CONFIG_INVALID unless the config space holds at
   * least `bytes` bytes (the fields the negotiated features make valid).
   */
  protected static requireConfig(transport: MmioTransport, bytes: number, what: string): void {
    if (transport.config.size < bytes) {
      throw new TransportError(TransportError.CONFIG_INVALID, `${transport.label}: ${what} needs ${bytes} bytes of config space, the device has ${transport.config.size}`);
    }
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

export interface StartedDevice {
  transport: MmioTransport;
  features: bigint;
  memory: DmaAllocator;
  queues: Map<number, Virtqueue>;
  requestTimeoutMs?: number;
}

/** Refuses bad options before the device is touched (a refusal later would leave it FAILED). */
function checkDriverOptions(options: DriverOptions): void {
  const { queueSize, indirectMax, queueMode, excludeFeatures } = options;
  if (queueSize !== undefined && (!Number.isInteger(queueSize) || queueSize < 1 || queueSize > 32768)) throw new RangeError(`queueSize must be an integer in [1, 32768], got ${String(queueSize)}`);
  if (indirectMax !== undefined && (!Number.isInteger(indirectMax) || indirectMax < 2 || indirectMax > 0xffff)) throw new RangeError(`indirectMax must be an integer in [2, 65535], got ${String(indirectMax)}`);
  if (queueMode !== undefined && queueMode !== 'interrupt' && queueMode !== 'poll' && queueMode !== 'hybrid') throw new TypeError(`queueMode must be 'interrupt', 'poll' or 'hybrid', got ${String(queueMode)}`);
  if (excludeFeatures !== undefined && typeof excludeFeatures !== 'bigint') throw new TypeError('excludeFeatures must be a bigint');
}

function floorPowerOfTwo(n: number): number {
  if (!(n >= 1)) throw new RangeError(`queue size must be at least 1, got ${n}`);
  const p = 2 ** Math.floor(Math.log2(n));
  return isPowerOfTwo(p) ? p : 1;
}
