import type { DeviceMemory } from '../platform';
import {
  availEventOffset,
  availRingBytes,
  descTableBytes,
  isPowerOfTwo,
  needEvent,
  SplitRing,
  usedEventOffset,
  usedRingBytes,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_USED_F_NO_NOTIFY,
} from '../spec';
import { walkDescriptorChain } from './descriptor-chain';
import { RingIndex } from './ring-index';
import type { SimDeviceModel, SimRequest } from './sim-model';
import type { StrictRules } from './strict-rules';

/** A used element as the device is about to write it (virtio 1.2 §2.7.8). */
export interface UsedElement {
  id: number;
  len: number;
}

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
  rewriteUsed?(queue: number, element: UsedElement): UsedElement;
  /** A used buffer notification is due (InterruptStatus bit 0). */
  notifyUsed(queue: number): void;
  /** A used buffer notification was suppressed by the driver's flags or used_event. */
  notifySuppressed(queue: number): void;
  /** The queue met a driver error it cannot go on from (DEVICE_NEEDS_RESET). */
  queueBroken(queue: number): void;
  /** Asynchronous completions were written; publish them soon. */
  scheduleFlush(): void;
  countRequest(queue: number): void;
  modelError(error: Error): void;
}

/** A snapshot of one queue, for tests and diagnostics. */
export interface SimQueueState {
  readonly index: number;
  /** QueueReady (Version 2) or QueuePFN ≠ 0 (Version 1): the device may access the rings. */
  readonly ready: boolean;
  /** The queue met a driver error and is not processed until reset. */
  readonly broken: boolean;
  /** QueueNumMax. */
  readonly numMax: number;
  /** QueueNum (the queue size) as written. */
  readonly size: number;
  /** Descriptor, driver and device area addresses as written (Version 1: derived from QueuePFN). */
  readonly desc: bigint;
  readonly driver: bigint;
  readonly device: bigint;
  /** Version 1: QueuePFN and QueueAlign as written. */
  readonly pfn: number;
  readonly align: number;
  /** The device's next avail ring index, and the used idx it has written. */
  readonly lastAvail: number;
  readonly usedIdx: number;
  /** Chains handed to the model and not yet used. */
  readonly inFlight: number;
  /** QueueReset reads of 1 still to come. */
  readonly resetReadsLeft: number;
}

interface Rings {
  desc: DataView;
  avail: DataView;
  used: DataView;
  availIdx: RingIndex;
  usedIdx: RingIndex;
}

const viewOf = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

const isPromiseLike = (value: unknown): value is PromiseLike<unknown> =>
  typeof value === 'object' && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';

/**
 * The device side of one split virtqueue (virtio 1.2 §2.7): the queue
 * registers the driver writes, the ring views once the queue is live, and
 * the processing of available chains into used elements.
 *
 * Ring violations (a malformed chain, an avail idx that jumps, a chain
 * reused while the device owns it) break the queue: it stops, its
 * in-flight requests are dropped, and the device reports
 * DEVICE_NEEDS_RESET. Completions that arrive after a reset, a queue
 * reset, a stop or a break are discarded (the generation changed).
 */
export class SimQueue {
  num = 0;
  descAddr = 0n;
  driverAddr = 0n;
  deviceAddr = 0n;
  /** Version 1 registers; QueueAlign defaults to 4096 when never written. */
  pfn = 0;
  align = 4096;
  /** QueueReset reads of 1 still to come (§4.2.2). */
  resetReadsLeft = 0;
  /** Reset with QueueReset and not yet re-enabled: setup after DRIVER_OK is allowed (§2.6.1.2). */
  reenabling = false;

  private rings?: Rings;
  private isBroken = false;
  private generation = 0;
  private lastAvail = 0;
  private usedIdx = 0;
  private published = 0;
  private inFlight = 0;
  /** Entries of the descriptor table owned by the device (in-flight chains). */
  private owned = new Uint8Array(0);
  private lastBadAvailFlags = -1;

  constructor(
    readonly index: number,
    readonly numMax: number,
    private readonly host: SimQueueHost,
  ) {}

  get ready(): boolean {
    return this.rings !== undefined;
  }

  get broken(): boolean {
    return this.isBroken;
  }

  state(): SimQueueState {
    return {
      index: this.index,
      ready: this.ready,
      broken: this.isBroken,
      numMax: this.numMax,
      size: this.num,
      desc: this.descAddr,
      driver: this.driverAddr,
      device: this.deviceAddr,
      pfn: this.pfn,
      align: this.align,
      lastAvail: this.lastAvail,
      usedIdx: this.usedIdx,
      inFlight: this.inFlight,
      resetReadsLeft: this.resetReadsLeft,
    };
  }

  /** The driver's avail.idx as it is in memory now (0 when not live). */
  availIdx(): number {
    return this.rings ? this.rings.availIdx.load() : 0;
  }

  /**
   * Makes the queue live with its three areas, after checking what the
   * driver set up (§2.7.1, §4.2.3.2). Returns false, with the violation
   * recorded, when the queue stays not ready.
   */
  activate(desc: bigint, driver: bigint, device: bigint): boolean {
    const { rules, memory } = this.host;
    const what = `queue ${this.index}`;
    if (this.numMax === 0) {
      rules.record('queue-unavailable', `${what} enabled, but it does not exist (QueueNumMax 0)`);
      return false;
    }
    if (this.num === 0) {
      rules.record('queue-num-unset', `${what} enabled without QueueNum written`);
      return false;
    }
    if (this.num > this.numMax) {
      rules.record('queue-num-above-max', `${what} enabled with QueueNum ${this.num} above QueueNumMax ${this.numMax}`);
      return false;
    }
    if (!isPowerOfTwo(this.num)) {
      rules.record('queue-num-not-power-of-two', `${what} enabled with QueueNum ${this.num}, not a power of two`);
      return false;
    }
    const misaligned = [
      desc % BigInt(SplitRing.DESC_ALIGN) !== 0n ? `descriptor area 0x${desc.toString(16)} (needs 16)` : '',
      driver % BigInt(SplitRing.AVAIL_ALIGN) !== 0n ? `driver area 0x${driver.toString(16)} (needs 2)` : '',
      device % BigInt(SplitRing.USED_ALIGN) !== 0n ? `device area 0x${device.toString(16)} (needs 4)` : '',
    ].filter(Boolean);
    if (misaligned.length) {
      rules.record('queue-misaligned', `${what}: misaligned ${misaligned.join(', ')}`);
      return false;
    }
    const descBytes = memory.resolve(desc, descTableBytes(this.num));
    const availBytes = memory.resolve(driver, availRingBytes(this.num));
    const usedBytes = memory.resolve(device, usedRingBytes(this.num));
    if (!descBytes || !availBytes || !usedBytes) {
      const missing = [!descBytes && `descriptor area 0x${desc.toString(16)}`, !availBytes && `driver area 0x${driver.toString(16)}`, !usedBytes && `device area 0x${device.toString(16)}`]
        .filter(Boolean)
        .join(', ');
      rules.record('queue-memory-unreachable', `${what}: ${missing} not in device-reachable memory for QueueNum ${this.num}`);
      return false;
    }
    const used = viewOf(usedBytes);
    if (used.getUint16(SplitRing.USED_FLAGS, true) !== 0) {
      rules.record('used-flags-not-zero', `${what}: used ring flags are ${used.getUint16(SplitRing.USED_FLAGS, true)} when the queue is enabled, not 0`);
    }
    this.descAddr = desc;
    this.driverAddr = driver;
    this.deviceAddr = device;
    this.rings = {
      desc: viewOf(descBytes),
      avail: viewOf(availBytes),
      used,
      availIdx: new RingIndex(availBytes, SplitRing.AVAIL_IDX),
      usedIdx: new RingIndex(usedBytes, SplitRing.USED_IDX),
    };
    this.clearRingState();
    this.reenabling = false;
    this.publishSuppression();
    return true;
  }

  /** QueueReady 0 / QueuePFN 0: the device stops using the rings. */
  stop(): void {
    this.rings = undefined;
    this.pfn = 0;
    this.isBroken = false;
    this.clearRingState();
  }

  /** Device reset or QueueReset: registers back to their defaults, ring state dropped (§2.6.1.1.1). */
  reset(): void {
    this.stop();
    this.num = 0;
    this.descAddr = 0n;
    this.driverAddr = 0n;
    this.deviceAddr = 0n;
    this.pfn = 0;
    this.align = 4096;
    this.resetReadsLeft = 0;
    this.reenabling = false;
  }

  /** Pops every newly available chain and hands it to the model; synchronous results are used in this pass. */
  pass(): void {
    const rings = this.rings;
    if (!rings || this.isBroken) return;
    this.checkAvailFlags(rings);
    const availIdx = rings.availIdx.load();
    const pending = (availIdx - this.lastAvail) & 0xffff;
    if (pending > this.num) {
      this.break(
        'avail-idx-jump',
        `queue ${this.index}: avail idx moved from ${this.lastAvail} to ${availIdx}, ${pending} new entries in a queue of ${this.num}`,
      );
      return;
    }
    while (this.lastAvail !== availIdx) {
      const slot = this.lastAvail % this.num;
      const head = rings.avail.getUint16(SplitRing.AVAIL_RING + 2 * slot, true);
      this.lastAvail = (this.lastAvail + 1) & 0xffff;
      if (!this.take(rings, head)) return;
    }
    this.publishSuppression();
    this.flush();
  }

  /** Publishes the used elements written so far (one used.idx store) and decides on the notification (§2.7.7.2). */
  flush(): void {
    const rings = this.rings;
    if (!rings || this.usedIdx === this.published) return;
    const old = this.published;
    rings.usedIdx.store(this.usedIdx);
    this.published = this.usedIdx;
    const notify = this.host.eventIdx
      ? needEvent(rings.avail.getUint16(usedEventOffset(this.num), true), this.usedIdx, old)
      : !(rings.avail.getUint16(SplitRing.AVAIL_FLAGS, true) & VRING_AVAIL_F_NO_INTERRUPT);
    if (notify) this.host.notifyUsed(this.index);
    else this.host.notifySuppressed(this.index);
  }

  /** Walks one chain and hands it to the model; false when the queue broke or was reset meanwhile. */
  private take(rings: Rings, head: number): boolean {
    const walk = walkDescriptorChain({ table: rings.desc, size: this.num, indirect: this.host.indirectDesc, memory: this.host.memory }, head);
    const reused = walk.descriptors.find((d) => this.owned[d] !== 0);
    if (reused !== undefined) {
      this.break('chain-in-flight', `queue ${this.index}: chain from head ${head} uses descriptor ${reused}, which belongs to a chain the device has not used yet`);
      return false;
    }
    if (!walk.ok) {
      this.break(walk.rule, `queue ${this.index}: ${walk.message}`);
      return false;
    }
    for (const d of walk.descriptors) this.owned[d] = 1;
    this.inFlight++;
    const request: SimRequest = {
      queue: this.index,
      head,
      readable: walk.readable,
      writable: walk.writable,
      readableBytes: walk.readableBytes,
      writableBytes: walk.writableBytes,
    };
    this.host.countRequest(this.index);
    const generation = this.generation;
    let result: number | Promise<number>;
    try {
      result = this.host.model.handle(request);
    } catch (error) {
      this.host.modelError(asError(error, `queue ${this.index}: handle() threw`));
      result = 0;
    }
    // A handler that reset or stopped the queue (e.g. through the registers) ends this pass.
    if (generation !== this.generation) return false;
    if (!isPromiseLike(result)) {
      this.complete(head, walk.descriptors, result, walk.writableBytes);
      return true;
    }
    const later = (len: unknown): void => {
      if (generation !== this.generation) return; // reset, stopped or broken since: discarded
      this.complete(head, walk.descriptors, len, walk.writableBytes);
      this.host.scheduleFlush();
    };
    result.then(later, (error: unknown) => {
      if (generation === this.generation) this.host.modelError(asError(error, `queue ${this.index}: handle() rejected`));
      later(0);
    });
    return true;
  }

  /** Writes one used element (§2.7.8); used.idx is published by flush(). */
  private complete(head: number, descriptors: number[], result: unknown, writableBytes: number): void {
    const rings = this.rings;
    if (!rings) return;
    let len = result;
    if (typeof len !== 'number' || !Number.isInteger(len) || len < 0 || len > writableBytes) {
      this.host.modelError(new RangeError(`queue ${this.index}: handle() returned ${String(result)} for a chain with ${writableBytes} writable bytes`));
      len = typeof len === 'number' && len > writableBytes ? writableBytes : 0;
    }
    for (const d of descriptors) this.owned[d] = 0;
    this.inFlight--;
    let element: UsedElement = { id: head, len: len as number };
    if (this.host.rewriteUsed) element = this.host.rewriteUsed(this.index, element);
    const at = SplitRing.USED_RING + SplitRing.USED_ELEM_SIZE * (this.usedIdx % this.num);
    rings.used.setUint32(at, element.id >>> 0, true);
    rings.used.setUint32(at + 4, element.len >>> 0, true);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
  }

  /**
   * Available buffer notification suppression (§2.7.10.2): without
   * EVENT_IDX, used.flags 0 or NO_NOTIFY; with it, used.flags 0 and
   * avail_event at the next index (notify me at the next add), or one
   * behind it when the device asks for no notifications at all.
   */
  private publishSuppression(): void {
    const rings = this.rings;
    if (!rings) return;
    const { eventIdx, suppressNotifications } = this.host;
    rings.used.setUint16(SplitRing.USED_FLAGS, !eventIdx && suppressNotifications ? VRING_USED_F_NO_NOTIFY : 0, true);
    if (eventIdx) {
      const event = suppressNotifications ? (this.lastAvail - 1) & 0xffff : this.lastAvail;
      rings.used.setUint16(availEventOffset(this.num), event, true);
    }
  }

  /** avail.flags is 0 with EVENT_IDX, 0 or 1 without (§2.7.7.1); each bad value is reported once. */
  private checkAvailFlags(rings: Rings): void {
    const flags = rings.avail.getUint16(SplitRing.AVAIL_FLAGS, true);
    const bad = this.host.eventIdx ? flags !== 0 : flags > 1;
    if (bad && flags !== this.lastBadAvailFlags) {
      this.host.rules.record(
        'avail-flags-invalid',
        `queue ${this.index}: avail flags ${flags}, must be ${this.host.eventIdx ? '0 with VIRTIO_F_EVENT_IDX' : '0 or 1'}`,
      );
    }
    this.lastBadAvailFlags = bad ? flags : -1;
  }

  private break(rule: Parameters<StrictRules['record']>[0], message: string): void {
    this.host.rules.record(rule, message);
    this.flush();
    this.isBroken = true;
    this.dropInFlight();
    this.host.queueBroken(this.index);
  }

  private clearRingState(): void {
    this.dropInFlight();
    this.lastAvail = 0;
    this.usedIdx = 0;
    this.published = 0;
    this.lastBadAvailFlags = -1;
    this.owned = new Uint8Array(this.rings ? this.num : 0);
  }

  private dropInFlight(): void {
    this.generation++;
    this.inFlight = 0;
    this.owned.fill(0);
  }
}

function asError(error: unknown, context: string): Error {
  return error instanceof Error ? error : new Error(`${context}: ${String(error)}`);
}
