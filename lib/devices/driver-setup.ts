import { invalidArgType, invalidArgValue, outOfRange, TransportError } from '../errors';
import { createQueue, type Virtqueue } from '../queue';
import { checkQueueMode } from '../queue/completion-mode';
import { checkIndirectMax } from '../queue/indirect-max';
import { FeatureBit, deviceIdName, features, hasFeature, isPowerOfTwo } from '../spec';
import { TRANSPORT_FEATURES, type VirtioTransport } from '../transport';
import type { DriverOptions, StartedDevice } from './virtio-driver';
import { inInt31Range } from '../util/int31';

const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
const DEFAULT_QUEUE_SIZE = 256;
const QUEUE_RECOVERIES: readonly unknown[] = ['reset-broken', 'reset-broken-or-stuck', 'none'];

type Stage = 'begun' | 'negotiated' | 'live' | 'finished' | 'abandoned';

/**
 * The driver's side of the init sequence of virtio 1.2 §3.1.1, one plain
 * call per step, for a driver's `static open(transport, options)`:
 *
 *     const setup = DriverSetup.begin(transport, options);
 *     try {
 *       const features = setup.negotiate(deviceId, wanted);  // steps 1–6
 *       // read config (the fields `features` make valid)
 *       setup.setUpQueues([0, 1]);                          // step 7
 *       setup.driverOk();                                   // step 8
 *       return new MyDriver(setup.finish(), …);
 *     } catch (error) {
 *       throw setup.abandon(error);
 *     }
 *
 * abandon() undoes whatever the steps so far did; a failure inside the
 * driver's constructor (after finish()) closes the device as close() would.
 */
export class DriverSetup {
  private stage: Stage = 'begun';
  private features = 0n;
  private readonly queues = new Map<number, Virtqueue>();

  private constructor(
    readonly transport: VirtioTransport,
    private readonly options: DriverOptions,
    private readonly requestTimeoutMs: number | undefined,
  ) {}

  /** Checks `options`; the device is not touched (a refusal later would leave it FAILED). */
  static begin(transport: VirtioTransport, options: DriverOptions): DriverSetup {
    if (!options || typeof options.memory?.allocate !== 'function')
      throw invalidArgType('options.memory (a DmaAllocator) is required');
    checkDriverOptions(options);
    const timeout = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (!inInt31Range(timeout))
      throw outOfRange(`requestTimeoutMs must be a number in [0, 2^31 - 1], got ${String(timeout)}`);
    return new DriverSetup(transport, options, timeout > 0 ? timeout : undefined);
  }

  /**
   * §3.1.1 steps 1–6 for a driver of device type `deviceId` (§5): the
   * transport features the queues implement are added to `wanted`,
   * options.excludeFeatures taken out. Returns the negotiated features;
   * NegotiationError FEATURE_MISSING when one of `required` is not.
   * `dependencies` ([bit, bit it needs]): §2.2.1 forbids accepting a
   * feature whose prerequisite was not accepted, so when the device offered
   * one without the other the negotiation is redone (from reset) without it.
   */
  negotiate(
    deviceId: number,
    wanted: bigint,
    required = 0n,
    dependencies: readonly (readonly [number, number])[] = [],
  ): bigint {
    this.expect('begun', 'negotiate()');
    const { transport } = this;
    if (transport.deviceId !== deviceId) {
      throw new TransportError(
        TransportError.WRONG_DEVICE,
        `${transport.label}: this driver is for ${deviceIdName(deviceId)}, the device is ` +
          `${deviceIdName(transport.deviceId)}`,
      );
    }
    const asked = (wanted | TRANSPORT_FEATURES) & ~(this.options.excludeFeatures ?? 0n);
    // A refused negotiation is the transport's to report (it sets FAILED itself); nothing here to undo.
    this.features = transport.negotiate(asked, required);
    const orphans = dependencies.filter(
      ([bit, needs]) => hasFeature(this.features, bit) && !hasFeature(this.features, needs),
    );
    if (orphans.length > 0)
      this.features = transport.negotiate(asked & ~features(...orphans.map(([bit]) => bit)), required);
    this.stage = 'negotiated';
    return this.features;
  }

  /**
   * Throws TransportError CONFIG_INVALID unless the config space (§2.5)
   * holds at least `bytes` bytes: the fields the negotiated features make
   * valid. `what` names the driver in the message.
   */
  requireConfig(bytes: number, what: string): void {
    const { config, label } = this.transport;
    if (config.size < bytes) {
      throw new TransportError(
        TransportError.CONFIG_INVALID,
        `${label}: ${what} needs ${bytes} bytes of config space, the device has ${config.size}`,
      );
    }
  }

  /**
   * §3.1.1 step 7, the queues: each index in order gets a queue of
   * `queueSize` entries (capped by QueueNumMax and options.queueSize),
   * attached to the device and put in options.queueMode. May be called more
   * than once (e.g. with other sizes); TransportError QUEUE_UNAVAILABLE for
   * a queue the device does not have.
   */
  setUpQueues(indices: readonly number[], queueSize = DEFAULT_QUEUE_SIZE): void {
    this.expect('negotiated', 'setUpQueues()');
    if (!Number.isInteger(queueSize) || queueSize < 1 || queueSize > 32768)
      throw outOfRange(`queueSize must be an integer in [1, 32768], got ${String(queueSize)}`);
    const { transport, options, features } = this;
    for (const index of indices) {
      if (this.queues.has(index)) throw invalidArgValue(`queue ${index} is already set up`, 'range');
      const max = transport.queueNumMax(index);
      if (max === 0)
        throw new TransportError(
          TransportError.QUEUE_UNAVAILABLE,
          `${transport.label}: queue ${index} does not exist (QueueNumMax 0)`,
        );
      // §2.7: split rings take a power of two; packed rings any size up to QueueNumMax (§2.8).
      const wantedSize = Math.min(max, options.queueSize ?? Infinity, queueSize);
      const size = hasFeature(features, FeatureBit.RING_PACKED) ? wantedSize : floorPowerOfTwo(wantedSize);
      const queue = createQueue({
        index,
        size,
        memory: options.memory,
        layout: transport.queueLayout,
        features,
        barriers: options.barriers,
        indirectMax: options.indirectMax,
        recovery: options.queueRecovery,
      });
      this.queues.set(index, queue);
      queue.attach(transport);
      if (options.queueMode) queue.setMode(options.queueMode, options.queueModeOptions);
    }
  }

  /** §3.1.1 step 8: the device is live. */
  driverOk(): void {
    this.expect('negotiated', 'driverOk()');
    this.transport.driverOk();
    this.stage = 'live';
  }

  /** What the driver's constructor takes over (VirtioDriver's): transport, features, memory, queues. */
  finish(): StartedDevice {
    this.expect('live', 'finish()');
    this.stage = 'finished';
    const { transport, features, queues, options, requestTimeoutMs } = this;
    return { transport, features, memory: options.memory, queues, requestTimeoutMs };
  }

  /**
   * Undoes the steps taken and returns `error`, for `throw setup.abandon(error)`.
   * Before negotiation: nothing to undo. After it: reset, free the queues,
   * FAILED (§3.1.1: the driver gives up). After finish(): the transport and
   * queues are closed, as VirtioDriver.close() would (the driver's
   * constructor failed and frees what it allocated itself).
   */
  abandon(error: unknown): unknown {
    const stage = this.stage;
    this.stage = 'abandoned';
    if (stage === 'negotiated' || stage === 'live') this.fail();
    else if (stage === 'finished') {
      this.transport.close();
      // Each queue frees its ring only once the device let go of it (now, or when a later reset completes).
      for (const queue of this.queues.values()) queue.close();
    }
    return error;
  }

  private fail(): void {
    // The device lets go of the rings before their memory is freed; if it
    // will not reset, the memory stays allocated rather than be reused under it.
    let released = true;
    try {
      this.transport.reset();
    } catch {
      released = false;
    }
    // A queue whose attach failed midway is not known to the transport: the completed reset is its reclaim too.
    if (released) {
      for (const queue of this.queues.values()) {
        queue.reclaimAll();
        queue.close();
      }
    }
    this.transport.markFailed();
  }

  private expect(stage: Stage, what: string): void {
    if (this.stage !== stage)
      throw new TransportError(
        TransportError.STATE,
        `${this.transport.label}: ${what} called while the setup is ${this.stage} (order: negotiate, ` +
          `setUpQueues, driverOk, finish)`,
      );
  }
}

/** Refuses bad options before the device is touched (a refusal later would leave it FAILED). */
function checkDriverOptions(options: DriverOptions): void {
  const { queueSize, indirectMax, queueMode, excludeFeatures, queueRecovery } = options;
  if (queueSize !== undefined && (!Number.isInteger(queueSize) || queueSize < 1 || queueSize > 32768))
    throw outOfRange(`queueSize must be an integer in [1, 32768], got ${String(queueSize)}`);
  checkIndirectMax(indirectMax);
  if (queueMode !== undefined) checkQueueMode(queueMode, 'queueMode');
  if (excludeFeatures !== undefined && typeof excludeFeatures !== 'bigint')
    throw invalidArgType('excludeFeatures must be a bigint');
  if (queueRecovery !== undefined && !QUEUE_RECOVERIES.includes(queueRecovery))
    throw invalidArgValue(`queueRecovery must be one of ${QUEUE_RECOVERIES.join(', ')}, got ${String(queueRecovery)}`);
}

function floorPowerOfTwo(n: number): number {
  if (!(n >= 1)) throw outOfRange(`queue size must be at least 1, got ${n}`);
  const p = 2 ** Math.floor(Math.log2(n));
  return isPowerOfTwo(p) ? p : 1;
}
