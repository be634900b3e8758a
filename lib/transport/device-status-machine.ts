import '../disposable';
import { CanceledError, ClosedError, TransportError } from '../errors';
import type { InterruptSource } from '../platform';
import { FeatureBit, describeFeatures, hasFeature } from '../spec/features';
import { nextAvailNotificationWord } from '../spec/notification';
import { DeviceStatus, describeStatus } from '../spec/status';
import { trace, tracing } from '../trace';
import { exitPollMs, guardLiveDevice, resetForExit } from './exit-reset';
import { InterruptDispatch } from './interrupt-dispatch';
import { QueueOwnership, checkQueueIndex } from './queue-ownership';
import { checkShmId, everyShmRegion } from './shm-regions';
import { settleFeatures } from './transport-features';
import type { TransportOps } from './transport-ops';
import type {
  DeviceConfig,
  QueueAddresses,
  QueueEndpoint,
  QueueLayout,
  ShmRegion,
  TransportStats,
  VirtioTransport,
} from './virtio-transport';

/** What the status machine is given by its transport, checked there. */
export interface DeviceStatusMachineOptions {
  /** The device's interrupt line; without one, queues must be polled. */
  interrupts?: InterruptSource;
  /** Limit for Status to read 0 after a reset (§2.4.1), in ms. */
  resetTimeoutMs: number;
  /** Limit for a queue reset to complete (§2.6.1), in ms. */
  queueResetTimeoutMs: number;
  /** Consecutive interrupts with no work that make a storm (InterruptDispatch). */
  stormLimit: number;
  /** close() also closes the registers and the interrupt source. */
  owns: boolean;
}

type Phase = 'reset' | 'negotiating' | 'features-ok' | 'live' | 'failed' | 'closed';

/**
 * The device status machine of virtio 1.2 §3.1.1 (reset → negotiating →
 * features-ok → live, and failed/closed), written once over the register
 * operations a transport provides (TransportOps): the init sequence, queue
 * ownership across resets, notifications, failure while live and the
 * thread-exit reset. A transport (MmioTransport) supplies its operations,
 * its identity and its config space; interrupts go to InterruptDispatch.
 */
export abstract class DeviceStatusMachine implements VirtioTransport {
  /** Transport revision: 1 the legacy interface (no FEATURES_OK, no packed ring), 2 modern. */
  abstract readonly version: number;
  abstract readonly deviceId: number;
  abstract readonly vendorId: number;
  abstract readonly config: DeviceConfig;
  abstract get label(): string;
  abstract get queueLayout(): QueueLayout;

  readonly stats: TransportStats = {
    interrupts: 0,
    spuriousInterrupts: 0,
    unknownInterruptBits: 0,
    ignoredInterrupts: 0,
    configChanges: 0,
  };
  readonly interrupts?: InterruptSource;

  private phase: Phase = 'reset';
  private offered = 0n;
  private negotiated = 0n;
  /** VIRTIO_F_NOTIFICATION_DATA, decided once at negotiation (notify is on the hot path). */
  private notificationData = false;
  /** Queues handed to the device, by index (QueueOwnership's; read here by notify). */
  private readonly endpoints = new Map<number, QueueEndpoint>();
  private readonly configListeners = new Set<() => void>();
  private readonly errorListeners = new Set<(error: Error) => void>();
  private readonly dispatch: InterruptDispatch;
  private readonly queues: QueueOwnership;
  private interruptError?: Error;
  private released = false;
  /** Set from DRIVER_OK until a reset: takes the device out of this thread's exit-reset registry (exit-reset.ts). */
  private untrackExit?: () => void;

  protected constructor(
    private readonly ops: TransportOps,
    private readonly options: DeviceStatusMachineOptions,
  ) {
    this.interrupts = options.interrupts;
    this.dispatch = new InterruptDispatch({
      device: this,
      registers: ops,
      source: options.interrupts,
      endpoints: this.endpoints,
      configListeners: this.configListeners,
      stats: this.stats,
      stormLimit: options.stormLimit,
      fail: (error) => this.deviceFailed(error),
    });
    this.queues = new QueueOwnership(this, ops, this.endpoints, this.dispatch, options.queueResetTimeoutMs);
  }

  get closed(): boolean {
    return this.phase === 'closed';
  }

  /** Whether DRIVER_OK is set and the device is live. */
  get live(): boolean {
    return this.phase === 'live';
  }

  /** Features the device offered at the last negotiation. */
  get deviceFeatures(): bigint {
    return this.offered;
  }

  /** Features negotiated (0n before negotiate()). */
  get features(): bigint {
    return this.negotiated;
  }

  hasFeature(bit: number): boolean {
    return hasFeature(this.negotiated, bit);
  }

  get status(): number {
    return this.ops.readStatus();
  }

  // ---- Init sequence (§3.1.1) ----

  /**
   * Resets the device: Status ← 0, then waits (bounded) until Status reads 0
   * (§2.4.1). Stops interrupt delivery and detaches every queue (their
   * pending requests are rejected with `reason`).
   */
  reset(reason: Error = new CanceledError(`${this.label}: device reset`)): void {
    this.checkOpen();
    this.dispatch.stop();
    this.queues.detachAll(reason);
    if (!this.ops.reset(this.options.resetTimeoutMs)) {
      this.phase = 'failed';
      throw new TransportError(
        TransportError.RESET_TIMEOUT,
        `${this.label}: Status did not read 0 within ${this.options.resetTimeoutMs} ms of the reset`,
      );
    }
    if (tracing) trace('status', '%s: reset (Status 0): %s', this.label, reason.message);
    this.untrackExit?.();
    this.queues.reclaimDetached();
    this.phase = 'reset';
    this.offered = 0n;
    this.negotiated = 0n;
    this.notificationData = false;
    this.queues.forgetResets();
    this.interruptError = undefined;
  }

  /**
   * Steps 1–6 of §3.1.1: reset, ACKNOWLEDGE, DRIVER, read the 64 device feature bits, then (settleFeatures) write
   * driver features = wanted ∩ offered ∩ implemented and set FEATURES_OK, or the legacy completion. Returns the
   * negotiated features. On refusal the status is set to FAILED and NegotiationError thrown.
   */
  negotiate(wanted: bigint, required = 0n): bigint {
    // A live device belongs to the driver that set it up: reset() or close() it first.
    if (this.phase === 'live')
      throw new TransportError(
        TransportError.STATE,
        `${this.label}: the device is live; reset() before negotiating again`,
      );
    this.reset();
    this.phase = 'negotiating';
    this.addStatus(DeviceStatus.ACKNOWLEDGE);
    this.addStatus(DeviceStatus.DRIVER);
    const offered = this.ops.readDeviceFeatures();
    this.offered = offered;
    if (tracing) trace('features', '%s: offered %s', this.label, describeFeatures(offered));
    const accepted = settleFeatures(this, this.ops, { offered, wanted, required }, (bit) => this.addStatus(bit));
    this.negotiated = accepted;
    this.notificationData = hasFeature(accepted, FeatureBit.NOTIFICATION_DATA);
    this.phase = 'features-ok';
    return accepted;
  }

  /** Step 8 of §3.1.1: DRIVER_OK; interrupts are delivered from now on. */
  driverOk(): void {
    this.expectPhase('features-ok', 'set DRIVER_OK');
    this.addStatus(DeviceStatus.DRIVER_OK);
    this.untrackExit = guardLiveDevice(this, this.ops, exitPollMs(this.options.resetTimeoutMs));
    this.phase = 'live';
    try {
      this.dispatch.start();
    } catch (error) {
      // A live device nobody hears from would hang every request.
      this.markFailed();
      throw error;
    }
  }

  /** Tells the device the driver gave up (FAILED, §2.1); reset() to start again. */
  markFailed(): void {
    if (this.phase === 'closed' || this.ops.closed) return;
    this.dispatch.stop();
    this.addStatus(DeviceStatus.FAILED);
    this.phase = 'failed';
  }

  private addStatus(bit: number): void {
    const before = this.ops.readStatus();
    const after = (before | bit) & 0xff;
    this.ops.writeStatus(after);
    if (tracing) trace('status', '%s: %s -> %s', this.label, describeStatus(before), describeStatus(after));
  }

  // ---- Config space (§2.5) and listeners ----

  /** Listens for Configuration Change Notifications (InterruptStatus bit 1). Returns the unsubscribe function. */
  onConfigChange(listener: () => void): () => void {
    this.configListeners.add(listener);
    return () => this.configListeners.delete(listener);
  }

  /**
   * Listens for the device failing while live: the interrupt line lost
   * (DeviceGoneError), DEVICE_NEEDS_RESET raised (DeviceBrokenError
   * 'needs-reset', §2.1.2) or an interrupt storm (DeviceBrokenError
   * 'interrupt-storm'). Queues are detached with the same error; reset()
   * or close() to recover. Returns the unsubscribe function.
   */
  onError(listener: (error: Error) => void): () => void {
    this.errorListeners.add(listener);
    return () => this.errorListeners.delete(listener);
  }

  /** The config space's guard: no access after close; writes only from FEATURES_OK on (§3.1.1 step 7). */
  protected checkConfigAccess(write: boolean): void {
    this.checkOpen();
    if (write && this.phase !== 'features-ok' && this.phase !== 'live') {
      throw new TransportError(
        TransportError.STATE,
        `${this.label}: config writes come after FEATURES_OK (phase '${this.phase}')`,
      );
    }
  }

  // ---- Queues (§2.6, §3.1.1 step 7): set up before DRIVER_OK, or after a queue reset ----

  /** Selects queue `index`, checks it is not in use and returns QueueNumMax; 0 means the queue does not exist. */
  queueNumMax(index: number): number {
    this.checkQueueSetup(index);
    return this.queues.numMax(index);
  }

  /** Hands queue `index` to the device (TransportOps.enableQueue); `endpoint` hears of its used buffers. */
  activateQueue(index: number, addresses: QueueAddresses, endpoint: QueueEndpoint): void {
    const max = this.queueNumMax(index);
    this.queues.activate(index, max, addresses, endpoint, this.hasFeature(FeatureBit.RING_PACKED));
    if (tracing) {
      const { size, desc, driver, device } = addresses;
      trace(
        'queue',
        '%s: queue %d ready: size %d of QueueNumMax %d, desc 0x%s driver 0x%s device 0x%s',
        this.label,
        index,
        size,
        max,
        desc.toString(16),
        driver.toString(16),
        device.toString(16),
      );
    }
  }

  /** Takes queue `index` back from the device, and checks it reads as no longer in use. */
  deactivateQueue(index: number): void {
    this.checkOpen();
    this.queues.deactivate(index);
    if (tracing) trace('queue', '%s: queue %d torn down', this.label, index);
  }

  /**
   * Resets one queue (VIRTIO_F_RING_RESET, §2.6.1; bounded wait; failures: QueueOwnership.reset); its pending
   * requests reject with `reason`. The queue may then be set up again, also after DRIVER_OK.
   */
  resetQueue(index: number, reason?: Error): void {
    this.checkOpen();
    if (!this.hasFeature(FeatureBit.RING_RESET)) {
      throw new TransportError(
        TransportError.NOT_NEGOTIATED,
        `${this.label}: queue reset needs VIRTIO_F_RING_RESET, which was not negotiated`,
      );
    }
    this.queues.reset(index, reason);
    if (tracing) trace('queue', '%s: queue %d reset (§2.6.1)', this.label, index);
  }

  /** Whether a live queue can be reset alone: RING_RESET negotiated, and no queue reset failed since the last reset. */
  get queueResettable(): boolean {
    return this.phase === 'live' && this.hasFeature(FeatureBit.RING_RESET) && this.queues.resetWorks;
  }

  /**
   * Available Buffer Notification (§2.9): the queue index, or with
   * VIRTIO_F_NOTIFICATION_DATA the index and the next avail index.
   */
  notify(index: number, nextAvail: number): void {
    // §3.1.1: no notification before DRIVER_OK; only queues handed to the device.
    if (this.phase !== 'live' || !this.endpoints.has(index)) this.refuseNotify(index);
    this.ops.notify(index, this.notificationData ? nextAvailNotificationWord(index, nextAvail) : index);
  }

  /**
   * Whether someone waits for queue `index` (InterruptDispatch.setBusy: the line keeps the process alive only then).
   */
  setBusy(index: number, busy: boolean): void {
    this.dispatch.setBusy(index, busy);
  }

  private refuseNotify(index: number): never {
    this.checkOpen();
    checkQueueIndex(index);
    throw new TransportError(
      TransportError.STATE,
      `${this.label}: queue ${index} is not active (notifications go only to queues set up, after DRIVER_OK)`,
    );
  }

  private checkQueueSetup(index: number): void {
    checkQueueIndex(index);
    if (this.phase === 'live' && this.queues.wasReset(index)) return;
    this.expectPhase('features-ok', `set up queue ${index}`);
  }

  // ---- Shared memory regions (§2.10) ----

  /** Region `id`, or undefined when the device has none with that id. Version 1 has none. */
  shmRegion(id: number): ShmRegion | undefined {
    this.checkOpen();
    return this.ops.shmRegion(checkShmId(id));
  }

  /** All shared memory regions, by id. */
  shmRegions(): ShmRegion[] {
    return this.version === 2 ? everyShmRegion((id) => this.shmRegion(id)) : [];
  }

  // ---- Interrupts and failure ----

  /** One interrupt (InterruptDispatch.handle): dispatched while live, counted otherwise. */
  handleInterrupt(): void {
    this.dispatch.handle();
  }

  /**
   * A queue found the device breaking its protocol (DeviceBrokenError): the
   * device is failed as a whole — reset, every queue detached, onError told.
   */
  deviceBroken(error: Error): void {
    if (this.phase === 'live') this.deviceFailed(error);
  }

  /**
   * The device failed while live (interrupt line lost, NEEDS_RESET, storm,
   * a broken ring): stop listening, reset, detach every queue with `error`,
   * tell the error listeners.
   */
  private deviceFailed(error: Error): void {
    if (tracing) trace('broken', '%s: device failed: %s', this.label, error.message);
    this.dispatch.stop();
    this.dispatch.clearIdle();
    this.interruptError = error;
    // The device may still be running — a UIO unbind leaves it be, a storm or NEEDS_RESET is the device
    // itself — and may still write the buffers of pending requests, which their drivers free once
    // rejected. A reset (§2.4, bounded) takes them back first, where the registers still answer.
    let released = false;
    try {
      if (!this.ops.closed) released = this.ops.reset(this.options.resetTimeoutMs);
    } catch {
      // Registers gone too: nothing more to do here.
    }
    this.phase = released ? 'reset' : 'failed';
    this.untrackExit?.(); // the reset an exit would make was just made (or the registers are gone)
    this.queues.detachAll(error);
    if (released) this.queues.reclaimDetached();
    for (const listener of [...this.errorListeners]) listener(error);
  }

  /** Why the live device failed (interrupt line lost, NEEDS_RESET, storm), if it did; reset() clears it. */
  get failure(): Error | undefined {
    return this.interruptError;
  }

  // ---- Lifecycle ----

  /** close(), for `using` (explicit resource management): disposed at the end of the enclosing block. */
  [Symbol.dispose](): void {
    this.close();
  }

  /**
   * Resets the device (if the registers are still there), rejects pending requests with `reason`, stops interrupts;
   * with `owns`, also closes the registers and the interrupt source. Idempotent. Returns whether the device is known
   * to have let go of its queues (the reset completed, or there was none to do); false: ring memory must not be reused.
   */
  close(reason?: Error): boolean {
    if (this.phase === 'closed') return this.released;
    const cause = reason ?? new CanceledError(`${this.label}: transport closed`);
    // With the registers gone no reset can be written: only a device never given a queue (or reset since) holds
    // nothing.
    let released = this.ops.closed && this.queues.holdsNothing;
    try {
      if (!this.ops.closed) {
        this.reset(cause);
        released = true;
      }
    } catch {
      // A device that will not reset is still let go of.
    } finally {
      this.dispatch.stop();
      this.queues.detachAll(cause);
      // Idle now: the line is unref'd at once, not a turn later.
      this.dispatch.unrefNow();
      this.phase = 'closed';
      this.untrackExit?.();
      this.released = released;
      if (this.options.owns) {
        this.interrupts?.close();
        this.ops.close();
      }
    }
    return released;
  }

  private checkOpen(): void {
    if (this.phase === 'closed') throw new ClosedError(`${this.label}: transport is closed`);
  }

  private expectPhase(phase: Phase, action: string): void {
    this.checkOpen();
    if (this.phase !== phase) {
      throw new TransportError(
        TransportError.STATE,
        `${this.label}: cannot ${action} in phase '${this.phase}' (status ${describeStatus(this.status)})`,
      );
    }
  }

  /** The reset of the exit paths ('exit', opt-in signals): exit-reset.ts resetForExit(); never throws. */
  emergencyReset(): void {
    resetForExit(this.ops, this.options.resetTimeoutMs);
  }
}
