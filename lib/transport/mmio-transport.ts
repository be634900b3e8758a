import { CanceledError, ClosedError, DeviceBrokenError, NegotiationError, TransportError } from '../errors';
import type { InterruptSource, RegisterBlock } from '../platform';
import { checkPollTimeout } from '../platform/register-block';
import {
  DeviceStatus,
  FeatureBit,
  MMIO_INTERRUPT_DEFINED,
  MmioInterrupt,
  MmioRegister as R,
  SHM_LEN_ABSENT,
  SplitRing,
  describeFeatures,
  describeStatus,
  deviceIdName,
  features,
  hasFeature,
  isPowerOfTwo,
  legacyLayout,
  nextAvailNotificationData,
} from '../spec';
import { ConfigSpace } from './config-space';
import { trackLiveDevice } from './exit-reset';
import { probe } from './probe';
import type { QueueAddresses, QueueEndpoint, ShmRegion, TransportStats, VirtioTransport, QueueLayout } from './virtio-transport';

/**
 * Transport feature bits this library implements (virtio 1.2 §6). The
 * queues implement INDIRECT_DESC, EVENT_IDX, RING_PACKED and IN_ORDER; ACCESS_PLATFORM and
 * ORDER_PLATFORM hold because device addresses are platform (physical or
 * IOMMU) addresses and ring ordering uses the platform's DMA barriers.
 */
export const TRANSPORT_FEATURES = features(
  FeatureBit.INDIRECT_DESC,
  FeatureBit.EVENT_IDX,
  FeatureBit.VERSION_1,
  FeatureBit.ACCESS_PLATFORM,
  FeatureBit.ORDER_PLATFORM,
  FeatureBit.NOTIFICATION_DATA,
  FeatureBit.RING_RESET,
  FeatureBit.RING_PACKED,
  FeatureBit.IN_ORDER,
);

/** Feature bits 24–49 belong to the transport; the rest to the device type (§6). */
const TRANSPORT_RANGE = ((1n << 50n) - 1n) ^ ((1n << 24n) - 1n);

export interface MmioTransportOptions {
  /** The device's interrupt line; without one, queues must be polled. */
  interrupts?: InterruptSource;
  /** Limit for Status to read 0 after a reset (§2.4.1): integer ms in [0, POLL_TIMEOUT_MAX_MS], pollUntil's range. Default 1000. */
  resetTimeoutMs?: number;
  /** Limit for QueueReset to read 0 (§4.2.2): integer ms in [0, POLL_TIMEOUT_MAX_MS], pollUntil's range. Default 1000. */
  queueResetTimeoutMs?: number;
  /** Attempts at a config read before ConfigGeneration is declared unstable. Default 100. */
  configRetries?: number;
  /** Legacy GuestPageSize and the unit of QueuePFN (§4.2.4). Default 4096. */
  guestPageSize?: number;
  /** Legacy QueueAlign: used-ring alignment (§4.2.4). Default 4096. */
  queueAlign?: number;
  /**
   * Consecutive interrupts that find no work (no used buffer, no config
   * change, nothing completed meanwhile) after which the line is declared a
   * storm: it is no longer listened to and the device is reported broken
   * (DeviceBrokenError 'interrupt-storm'). Default 10,000.
   */
  stormLimit?: number;
  /** close() also closes the register window and the interrupt source (set by the discovery helpers). */
  owns?: boolean;
}

type Phase = 'reset' | 'negotiating' | 'features-ok' | 'live' | 'failed' | 'closed';

const MAX_SHM_ID = 255;

/**
 * The driver side of one virtio-mmio transport (virtio 1.2 §4.2), legacy
 * (Version 1) and modern (Version 2): probe, the init sequence of §3.1.1,
 * config space, queue setup/teardown/reset, SHM regions, notifications and
 * the interrupt handler. Device drivers sit on top (see devices/).
 */
export class MmioTransport implements VirtioTransport {
  readonly version: 1 | 2;
  readonly deviceId: number;
  readonly vendorId: number;
  readonly stats: TransportStats = { interrupts: 0, spuriousInterrupts: 0, unknownInterruptBits: 0, ignoredInterrupts: 0, configChanges: 0 };

  private phase: Phase = 'reset';
  private offered = 0n;
  private negotiated = 0n;
  /** VIRTIO_F_NOTIFICATION_DATA, decided once at negotiation (notify is on the hot path). */
  private notificationData = false;
  private readonly endpoints = new Map<number, QueueEndpoint>();
  /** Queues detached while the device may still hold their memory: told by the next completed reset (reclaimAll). */
  private readonly detachedEndpoints = new Set<QueueEndpoint>();
  private readonly busy = new Set<number>();
  private pendingUnref?: NodeJS.Immediate;
  private readonly resetQueues = new Set<number>();
  private readonly configListeners = new Set<() => void>();
  private readonly errorListeners = new Set<(error: Error) => void>();
  private readonly options: Required<Omit<MmioTransportOptions, 'interrupts'>>;
  private interruptError?: Error;
  private released = false;
  /** Storm detection: consecutive interrupts that found no work, and the completions total at the last one. */
  private idleInterrupts = 0;
  private listening = false;
  private completionsSeen = 0;
  /** Set from DRIVER_OK until a reset: takes the device out of this thread's exit-reset registry (exit-reset.ts). */
  private untrackExit?: () => void;

  /**
   * Probes `regs` (throws TransportError BAD_MAGIC, BAD_VERSION, or
   * EMPTY_SLOT for DeviceID 0; use probe() to tell empty slots apart
   * without an error).
   */
  constructor(
    readonly regs: RegisterBlock,
    options: MmioTransportOptions = {},
  ) {
    const found = probe(regs);
    if (found.empty) throw new TransportError(TransportError.EMPTY_SLOT, `${regs.label}: empty virtio-mmio slot (DeviceID 0)`);
    this.version = found.version;
    this.deviceId = found.deviceId;
    this.vendorId = found.vendorId;
    this.interrupts = options.interrupts;
    this.options = {
      resetTimeoutMs: options.resetTimeoutMs ?? 1000,
      queueResetTimeoutMs: options.queueResetTimeoutMs ?? 1000,
      configRetries: options.configRetries ?? 100,
      guestPageSize: options.guestPageSize ?? 4096,
      queueAlign: options.queueAlign ?? 4096,
      stormLimit: options.stormLimit ?? 10_000,
      owns: options.owns ?? false,
    };
    // Both go to regs.pollUntil: refused here, in its range, not later inside open() or close().
    for (const name of ['resetTimeoutMs', 'queueResetTimeoutMs'] as const) checkPollTimeout(name, this.options[name]);
    for (const name of ['configRetries', 'stormLimit'] as const) {
      const value = this.options[name];
      if (!Number.isInteger(value) || value < 1) throw new RangeError(`${name} must be a positive integer, got ${String(value)}`);
    }
    this.config = new ConfigSpace(regs, this.version, this.options.configRetries, (write) => this.checkConfigAccess(write));
    for (const [name, value] of [['guestPageSize', this.options.guestPageSize], ['queueAlign', this.options.queueAlign]] as const) {
      if (!isPowerOfTwo(value) || value < 16) throw new RangeError(`${name} must be a power of two ≥ 16, got ${value}`);
    }
  }

  readonly interrupts?: InterruptSource;

  get label(): string {
    return this.regs.label;
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
    return this.regs.readl(R.Status);
  }

  /** Where queue memory must be placed on this transport. */
  get queueLayout(): QueueLayout {
    return this.version === 1 ? { legacy: true, align: this.options.queueAlign, pageSize: this.options.guestPageSize } : { legacy: false };
  }

  // ---- Init sequence (§3.1.1) ----

  /**
   * Resets the device: Status ← 0, then waits (bounded) until Status reads 0
   * (§2.4.1). Stops interrupt delivery and detaches every queue (their
   * pending requests are rejected with `reason`).
   */
  reset(reason: Error = new CanceledError(`${this.label}: device reset`)): void {
    this.checkOpen();
    this.stopInterrupts();
    this.detachAll(reason);
    if (!this.writeReset()) {
      this.phase = 'failed';
      throw new TransportError(TransportError.RESET_TIMEOUT, `${this.label}: Status did not read 0 within ${this.options.resetTimeoutMs} ms of the reset`);
    }
    this.untrackExit?.();
    this.reclaimDetached();
    this.phase = 'reset';
    this.offered = 0n;
    this.negotiated = 0n;
    this.notificationData = false;
    this.resetQueues.clear();
    this.interruptError = undefined;
  }

  /** Status ← 0, then waits (bounded) until it reads 0 (§2.4.1); whether it did. */
  private writeReset(): boolean {
    this.regs.writel(R.Status, 0);
    return this.regs.pollUntil(R.Status, 0xff, 0, this.options.resetTimeoutMs, 10) !== null;
  }

  /**
   * Steps 1–6 of §3.1.1: reset, ACKNOWLEDGE, DRIVER, read the 64 device
   * feature bits, write driver features = wanted ∩ offered ∩ implemented
   * (plus VERSION_1 on Version 2, which requires it), then FEATURES_OK and
   * check that the device kept it (legacy devices have no FEATURES_OK and
   * get GuestPageSize instead, §4.2.4). Returns the negotiated features.
   * On refusal the status is set to FAILED and NegotiationError thrown.
   */
  negotiate(wanted: bigint, required = 0n): bigint {
    // A live device belongs to the driver that set it up: reset() or close() it first.
    if (this.phase === 'live') throw new TransportError(TransportError.STATE, `${this.label}: the device is live; reset() before negotiating again`);
    this.reset();
    this.phase = 'negotiating';
    this.addStatus(DeviceStatus.ACKNOWLEDGE);
    this.addStatus(DeviceStatus.DRIVER);
    const offered = this.readDeviceFeatures();
    this.offered = offered;
    const version1 = features(FeatureBit.VERSION_1);
    if (this.version === 2 && !(offered & version1)) {
      this.fail(NegotiationError.VERSION_1_MISSING, `${this.label}: a Version 2 device must offer VIRTIO_F_VERSION_1 (offered: ${describeFeatures(offered)})`, offered, 0n);
    }
    const missing = required & ~offered;
    if (missing) {
      this.fail(NegotiationError.FEATURE_MISSING, `${this.label}: ${deviceIdName(this.deviceId)} lacks required features ${describeFeatures(missing)}`, offered, 0n);
    }
    const implemented = (~TRANSPORT_RANGE & ((1n << 64n) - 1n)) | TRANSPORT_FEATURES;
    let accepted = wanted & offered & implemented;
    // Modern devices need VERSION_1; legacy ones speak the legacy interface whatever they offer.
    // Legacy devices have no packed ring (§2.8 needs the modern interface).
    accepted = this.version === 2 ? accepted | version1 : accepted & ~(version1 | features(FeatureBit.RING_PACKED));
    this.writeDriverFeatures(accepted);
    if (this.version === 2) {
      this.addStatus(DeviceStatus.FEATURES_OK);
      if (!(this.status & DeviceStatus.FEATURES_OK)) {
        this.fail(NegotiationError.FEATURES_REFUSED, `${this.label}: device refused FEATURES_OK for features ${describeFeatures(accepted)}`, offered, accepted);
      }
    } else {
      this.regs.writel(R.GuestPageSize, this.options.guestPageSize);
    }
    this.negotiated = accepted;
    this.notificationData = hasFeature(accepted, FeatureBit.NOTIFICATION_DATA);
    this.phase = 'features-ok';
    return accepted;
  }

  /** Step 8 of §3.1.1: DRIVER_OK; interrupts are delivered from now on. */
  driverOk(): void {
    this.expectPhase('features-ok', 'set DRIVER_OK');
    this.addStatus(DeviceStatus.DRIVER_OK);
    this.untrackExit = this.trackLive();
    this.phase = 'live';
    try {
      this.startInterrupts();
    } catch (error) {
      // A live device nobody hears from would hang every request.
      this.markFailed();
      throw error;
    }
  }

  /**
   * A live device is reset when this thread ends: by the exit-reset registry
   * ('exit', opt-in signals), and, where the window can (the addon's), by a
   * Status ← 0 armed for the thread's teardown, the one reset that also runs
   * for worker.terminate() (no JavaScript runs in the worker then). Both,
   * when both run, write the same 0. Returns the undo (idempotent).
   */
  private trackLive(): () => void {
    this.regs.armExitWrite?.(R.Status, 0, this.exitPollMs);
    const untrack = trackLiveDevice(this);
    let tracked = true;
    return () => {
      if (!tracked) return;
      tracked = false;
      untrack();
      this.regs.disarmExitWrite?.();
    };
  }

  /** Tells the device the driver gave up (FAILED, §2.1); reset() to start again. */
  markFailed(): void {
    if (this.phase === 'closed' || this.regs.closed) return;
    this.stopInterrupts();
    this.addStatus(DeviceStatus.FAILED);
    this.phase = 'failed';
  }

  private fail(code: string, message: string, offered: bigint, requested: bigint): never {
    this.markFailed();
    throw new NegotiationError(code, message, offered, requested);
  }

  private addStatus(bit: number): void {
    this.regs.writel(R.Status, (this.regs.readl(R.Status) | bit) & 0xff);
  }

  private readDeviceFeatures(): bigint {
    this.regs.writel(R.DeviceFeaturesSel, 0);
    const low = this.regs.readl(R.DeviceFeatures);
    this.regs.writel(R.DeviceFeaturesSel, 1);
    const high = this.regs.readl(R.DeviceFeatures);
    return (BigInt(high) << 32n) | BigInt(low);
  }

  private writeDriverFeatures(value: bigint): void {
    this.regs.writel(R.DriverFeaturesSel, 0);
    this.regs.writel(R.DriverFeatures, Number(value & 0xffff_ffffn));
    this.regs.writel(R.DriverFeaturesSel, 1);
    this.regs.writel(R.DriverFeatures, Number((value >> 32n) & 0xffff_ffffn));
  }

  // ---- Config space ----

  /** The device-specific configuration space (§4.2.2, §2.5). */
  readonly config: ConfigSpace;

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

  // ---- Queues (§4.2.3.2; legacy §4.2.4) ----

  /**
   * Selects queue `index`, checks it is not in use (QueueReady / QueuePFN
   * read 0) and returns QueueNumMax; 0 means the queue does not exist.
   */
  queueNumMax(index: number): number {
    this.checkQueueSetup(index);
    this.regs.writel(R.QueueSel, index);
    const inUse = this.regs.readl(this.version === 2 ? R.QueueReady : R.QueuePFN);
    if (inUse !== 0) throw new TransportError(TransportError.QUEUE_IN_USE, `${this.label}: queue ${index} is already in use`);
    return this.regs.readl(R.QueueNumMax);
  }

  /**
   * Hands queue `index` to the device: QueueNum, then the three area
   * addresses and QueueReady=1 (modern), or QueueAlign and QueuePFN
   * (legacy, where the three areas must form the §2.7.2 layout).
   */
  activateQueue(index: number, addresses: QueueAddresses, endpoint: QueueEndpoint): void {
    const max = this.queueNumMax(index);
    const { size, desc, driver, device } = addresses;
    if (max === 0) throw new TransportError(TransportError.QUEUE_UNAVAILABLE, `${this.label}: queue ${index} does not exist (QueueNumMax 0)`);
    // §2.7: a split ring's size is a power of two; a packed ring's need not be (§2.8).
    const packed = this.hasFeature(FeatureBit.RING_PACKED);
    if (!Number.isInteger(size) || size < 1 || size > max || size > SplitRing.MAX_SIZE || (!packed && !isPowerOfTwo(size))) {
      throw new RangeError(`queue ${index}: size must be ${packed ? 'an integer' : 'a power of two'} in [1, QueueNumMax ${max}], got ${size}`);
    }
    let pfn = 0n;
    if (this.version === 1) {
      // Checked before any register changes: a refused layout leaves the device as it was.
      const layout = legacyLayout(size, this.options.queueAlign);
      const page = BigInt(this.options.guestPageSize);
      pfn = desc / page;
      if (desc % page !== 0n || driver !== desc + BigInt(layout.availOffset) || device !== desc + BigInt(layout.usedOffset) || pfn === 0n || pfn > 0xffff_ffffn) {
        throw new RangeError(`queue ${index}: legacy queues need one page-aligned area at a non-zero 32-bit page number laid out as virtio 1.2 §2.7.2`);
      }
    }
    this.regs.writel(R.QueueNum, size);
    if (this.version === 2) {
      this.writeAddress(R.QueueDescLow, desc);
      this.writeAddress(R.QueueDriverLow, driver);
      this.writeAddress(R.QueueDeviceLow, device);
      this.regs.writel(R.QueueReady, 1);
      if (this.regs.readl(R.QueueReady) !== 1) {
        throw new TransportError(TransportError.QUEUE_UNAVAILABLE, `${this.label}: queue ${index} did not become ready`);
      }
    } else {
      this.regs.writel(R.QueueAlign, this.options.queueAlign);
      this.regs.writel(R.QueuePFN, Number(pfn));
    }
    this.endpoints.set(index, endpoint);
    this.detachedEndpoints.delete(endpoint);
    this.resetQueues.delete(index);
  }

  /** Takes queue `index` back: QueueReady (or QueuePFN) ← 0, read back 0 (§4.2.2). */
  deactivateQueue(index: number): void {
    this.checkOpen();
    checkQueueIndex(index);
    this.endpoints.delete(index);
    this.setBusy(index, false);
    this.regs.writel(R.QueueSel, index);
    const register = this.version === 2 ? R.QueueReady : R.QueuePFN;
    this.regs.writel(register, 0);
    if (this.regs.readl(register) !== 0) {
      throw new TransportError(TransportError.QUEUE_IN_USE, `${this.label}: queue ${index} still reads as in use after teardown`);
    }
  }

  /**
   * Resets one queue (VIRTIO_F_RING_RESET, §2.6.1 and §4.2.2): QueueReset
   * ← 1, then waits (bounded) for it to read 0. The queue may then be set
   * up again, also after DRIVER_OK.
   */
  resetQueue(index: number): void {
    this.checkOpen();
    if (!this.hasFeature(FeatureBit.RING_RESET)) {
      throw new TransportError(TransportError.NOT_NEGOTIATED, `${this.label}: queue reset needs VIRTIO_F_RING_RESET, which was not negotiated`);
    }
    checkQueueIndex(index);
    this.regs.writel(R.QueueSel, index);
    if (this.regs.readl(R.QueueNumMax) === 0) throw new TransportError(TransportError.QUEUE_UNAVAILABLE, `${this.label}: queue ${index} does not exist (QueueNumMax 0)`);
    // §2.6.1: the device forgets the queue's buffers; so does its driver-side queue.
    const endpoint = this.endpoints.get(index);
    this.endpoints.delete(index);
    this.setBusy(index, false);
    if (endpoint) {
      this.detachedEndpoints.add(endpoint);
      endpoint.detach(new CanceledError(`${this.label}: queue ${index} was reset`));
    }
    this.regs.writel(R.QueueReset, 1);
    if (this.regs.pollUntil(R.QueueReset, 1, 0, this.options.queueResetTimeoutMs, 10) === null) {
      throw new TransportError(TransportError.QUEUE_RESET_TIMEOUT, `${this.label}: QueueReset of queue ${index} did not read 0 within ${this.options.queueResetTimeoutMs} ms`);
    }
    // §2.6.1: the device forgot the queue's buffers; its memory is the driver's again.
    if (endpoint) {
      this.detachedEndpoints.delete(endpoint);
      endpoint.reclaimAll?.();
    }
    this.resetQueues.add(index);
  }

  /**
   * Available Buffer Notification (§4.2.3.3): the queue index, or with
   * VIRTIO_F_NOTIFICATION_DATA the index and the next avail index.
   */
  notify(index: number, nextAvail: number): void {
    // §3.1.1: no notification before DRIVER_OK; only queues handed to the device.
    if (this.phase !== 'live' || !this.endpoints.has(index)) this.refuseNotify(index);
    this.regs.writel(R.QueueNotify, this.notificationData ? nextAvailNotificationData(index, nextAvail) : index);
  }

  /**
   * A queue tells whether it has requests in flight; the interrupt line
   * keeps the process alive only while some queue has (and for one
   * event-loop turn after the last completes).
   */
  setBusy(index: number, busy: boolean): void {
    const before = this.busy.size;
    if (busy) this.busy.add(index);
    else this.busy.delete(index);
    if (!this.interrupts || this.interrupts.closed || before === this.busy.size) return;
    if (this.busy.size > 0) {
      // An unref still pending from the last idle moment is dropped: the line never stopped being ref'd.
      if (this.pendingUnref) this.cancelPendingUnref();
      else this.interrupts.ref();
    } else if (!this.pendingUnref) {
      // Unref one event-loop turn later, not now: a caller that submits again from the completion
      // (a QD1 loop) keeps the line ref'd instead of paying two native calls per request.
      this.pendingUnref = setImmediate(() => {
        this.pendingUnref = undefined;
        const source = this.interrupts;
        if (source && !source.closed && this.busy.size === 0) source.unref();
      });
    }
  }

  private refuseNotify(index: number): never {
    this.checkOpen();
    checkQueueIndex(index);
    throw new TransportError(TransportError.STATE, `${this.label}: queue ${index} is not active (notifications go only to queues set up, after DRIVER_OK)`);
  }

  /** ConfigSpace's guard: no access after close; writes only from FEATURES_OK on (§3.1.1 step 7). */
  private checkConfigAccess(write: boolean): void {
    this.checkOpen();
    if (write && this.phase !== 'features-ok' && this.phase !== 'live') {
      throw new TransportError(TransportError.STATE, `${this.label}: config writes come after FEATURES_OK (phase '${this.phase}')`);
    }
  }

  private cancelPendingUnref(): void {
    if (this.pendingUnref) clearImmediate(this.pendingUnref);
    this.pendingUnref = undefined;
  }

  private writeAddress(low: number, address: bigint): void {
    this.regs.writel(low, Number(address & 0xffff_ffffn));
    this.regs.writel(low + 4, Number((address >> 32n) & 0xffff_ffffn));
  }

  private checkQueueSetup(index: number): void {
    checkQueueIndex(index);
    if (this.phase === 'live' && this.resetQueues.has(index)) return;
    this.expectPhase('features-ok', `set up queue ${index}`);
  }

  // ---- Shared memory regions (§2.10, §4.2.2) ----

  /** Region `id`, or undefined when the device has none with that id (SHMLen all ones). Version 1 has none. */
  shmRegion(id: number): ShmRegion | undefined {
    this.checkOpen();
    if (!Number.isInteger(id) || id < 0 || id > MAX_SHM_ID) throw new RangeError(`SHM id must be an integer in [0, ${MAX_SHM_ID}], got ${id}`);
    if (this.version === 1) return undefined;
    this.regs.writel(R.SHMSel, id);
    const length = this.read64(R.SHMLenLow);
    if (length === SHM_LEN_ABSENT) return undefined;
    return { id, length, base: this.read64(R.SHMBaseLow) };
  }

  /** All shared memory regions, by id. */
  shmRegions(): ShmRegion[] {
    const regions: ShmRegion[] = [];
    for (let id = 0; id <= MAX_SHM_ID && this.version === 2; id++) {
      const region = this.shmRegion(id);
      if (region) regions.push(region);
    }
    return regions;
  }

  private read64(low: number): bigint {
    return (BigInt(this.regs.readl(low + 4)) << 32n) | BigInt(this.regs.readl(low));
  }

  // ---- Interrupts (§4.2.3.4) ----

  private startInterrupts(): void {
    const source = this.interrupts;
    if (!source || this.listening) return;
    if (source.listening) {
      throw new TransportError(TransportError.STATE, `${this.label}: the interrupt source already has a listener (another transport or driver on the same device?)`);
    }
    this.listening = true;
    source.listen(
      () => this.handleInterrupt(),
      (error) => this.deviceFailed(error),
    );
    if (this.busy.size === 0) source.unref();
  }

  /** Stops listening, if this transport is the listener (never another's). */
  private stopInterrupts(): void {
    if (!this.listening) return;
    this.listening = false;
    if (this.interrupts?.listening) this.interrupts.unlisten();
  }

  /**
   * Reads InterruptStatus, acknowledges exactly the defined bits read, then
   * dispatches bit 0 to every active queue and bit 1 to config listeners.
   * Status 0 is a spurious wake-up: counted only.
   */
  handleInterrupt(): void {
    if (this.phase !== 'live') {
      this.stats.ignoredInterrupts++;
      return;
    }
    const status = this.regs.readl(R.InterruptStatus);
    if ((status & ~MMIO_INTERRUPT_DEFINED) !== 0) this.stats.unknownInterruptBits++;
    const handled = status & MMIO_INTERRUPT_DEFINED;
    if (handled === 0) {
      this.stats.spuriousInterrupts++;
      this.idleInterrupt();
      return;
    }
    this.stats.interrupts++;
    this.regs.writel(R.InterruptACK, handled);
    let settled = 0;
    if (handled & MmioInterrupt.VRING) {
      for (const endpoint of this.endpoints.values()) settled += endpoint.onUsedBuffer();
    }
    if (handled & MmioInterrupt.CONFIG) {
      this.stats.configChanges++;
      // §2.1.2: a device that needs a reset says so in Status and SHOULD send a config change notification.
      if (this.regs.readl(R.Status) & DeviceStatus.DEVICE_NEEDS_RESET) {
        this.deviceFailed(new DeviceBrokenError('needs-reset', `${this.label}: the device set DEVICE_NEEDS_RESET; reset or close it`));
        return;
      }
      for (const listener of [...this.configListeners]) listener();
      if (this.phase !== 'live') return;
    }
    // A config change is dispatched but counts as no work: a device that keeps raising it is a storm too.
    if (settled > 0) this.idleInterrupts = 0;
    else this.idleInterrupt();
  }

  /**
   * An interrupt that found nothing to do. Some are normal (a completion
   * already polled, a suppression hint the device ignored); an unbroken run
   * of `stormLimit` with no completion anywhere in between is a storm.
   */
  private idleInterrupt(): void {
    let completed = 0;
    for (const endpoint of this.endpoints.values()) completed += endpoint.stats?.completed ?? 0;
    if (completed !== this.completionsSeen) {
      this.completionsSeen = completed;
      this.idleInterrupts = 0;
    }
    if (++this.idleInterrupts < this.options.stormLimit) return;
    this.deviceFailed(new DeviceBrokenError('interrupt-storm', `${this.label}: ${this.idleInterrupts} interrupts in a row found no work; the line is no longer listened to`));
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
    this.stopInterrupts();
    this.idleInterrupts = 0;
    this.interruptError = error;
    // The device may still be running — a UIO unbind leaves it be, a storm or NEEDS_RESET is the device
    // itself — and may still write the buffers of pending requests, which their drivers free once
    // rejected. A reset (§2.4, bounded) takes them back first, where the registers still answer.
    let released = false;
    try {
      if (!this.regs.closed) released = this.writeReset();
    } catch {
      // Registers gone too: nothing more to do here.
    }
    this.phase = released ? 'reset' : 'failed';
    this.untrackExit?.(); // the reset an exit would make was just made (or the registers are gone)
    this.detachAll(error);
    if (released) this.reclaimDetached();
    for (const listener of [...this.errorListeners]) listener(error);
  }

  /** Why the live device failed (interrupt line lost, NEEDS_RESET, storm), if it did; reset() clears it. */
  get failure(): Error | undefined {
    return this.interruptError;
  }

  private detachAll(error: Error): void {
    const endpoints = [...this.endpoints.values()];
    this.endpoints.clear();
    for (const index of [...this.busy]) this.setBusy(index, false);
    for (const endpoint of endpoints) {
      this.detachedEndpoints.add(endpoint);
      endpoint.detach(error);
    }
  }

  /** A reset completed: every queue detached since holds nothing the device may write (§2.4). */
  private reclaimDetached(): void {
    const endpoints = [...this.detachedEndpoints];
    this.detachedEndpoints.clear();
    for (const endpoint of endpoints) endpoint.reclaimAll?.();
  }

  // ---- Lifecycle ----

  /**
   * Resets the device (if the window is still open), rejects pending
   * requests with `reason`, stops interrupts; with `owns`, also closes the
   * window and the interrupt source. Idempotent. Returns whether the device
   * is known to have let go of its queues (the reset completed, or there
   * was none to do); false means ring memory must not be reused.
   */
  close(reason?: Error): boolean {
    if (this.phase === 'closed') return this.released;
    const cause = reason ?? new CanceledError(`${this.label}: transport closed`);
    // With the window gone no reset can be written: only a device never given a queue (or reset since) holds nothing.
    let released = this.regs.closed && this.endpoints.size === 0 && this.detachedEndpoints.size === 0;
    try {
      if (!this.regs.closed) {
        this.reset(cause);
        released = true;
      }
    } catch {
      // A device that will not reset is still let go of.
    } finally {
      this.stopInterrupts();
      this.detachAll(cause);
      // Idle now: the line is unref'd at once, not a turn later.
      if (this.pendingUnref) {
        this.cancelPendingUnref();
        if (this.interrupts && !this.interrupts.closed) this.interrupts.unref();
      }
      this.phase = 'closed';
      this.untrackExit?.();
      this.released = released;
      if (this.options.owns) {
        this.interrupts?.close();
        this.regs.close();
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
      throw new TransportError(TransportError.STATE, `${this.label}: cannot ${action} in phase '${this.phase}' (status ${describeStatus(this.status)})`);
    }
  }

  /** How long a reset at thread exit waits for Status to read 0: 10 ms, never beyond resetTimeoutMs. */
  private get exitPollMs(): number {
    return Math.min(10, this.options.resetTimeoutMs);
  }

  /**
   * The reset of the exit paths (exit-reset.ts: 'exit', opt-in signals):
   * Status ← 0 (§2.4) if the window is still open, then at most 10 ms (and
   * never beyond resetTimeoutMs) for Status to read 0. Not unbounded: an
   * exit must not hang on a device that never resets. Not without a read
   * either: the DMA memory goes back to the kernel right after, and a reset
   * that reads 0 is the device saying it let go of the rings (§2.4.1).
   * Changes no driver-side state; synchronous; never throws.
   */
  emergencyReset(): void {
    try {
      if (this.regs.closed) return;
      this.regs.writel(R.Status, 0);
      this.regs.pollUntil(R.Status, 0xff, 0, this.exitPollMs, 10);
    } catch {
      // Registers gone or refusing accesses: nothing more can be done from here.
    }
  }
}

function checkQueueIndex(index: number): void {
  if (!Number.isInteger(index) || index < 0 || index > 0xffff) throw new RangeError(`queue index must be an integer in [0, 65535], got ${index}`);
}
