import {
  availRingBytes,
  descTableBytes,
  isPowerOfTwo,
  PackedRing,
  packedRingBytes,
  SplitRing,
  usedRingBytes,
} from '../spec';
import { RingIndex } from './ring-index';
import { SimPackedRing } from './sim-packed-ring';
import type { SimQueueHost, SimRingKind } from './sim-ring';
import { SimSplitRing } from './sim-split-ring';
import { hex } from '../util/hex';

export type { SimQueueHost, SimRingKind, UsedElement } from './sim-ring';

/** A snapshot of one queue, for tests and diagnostics. */
export interface SimQueueState {
  readonly index: number;
  /** QueueReady (Version 2) or QueuePFN ≠ 0 (Version 1): the device may access the rings. */
  readonly ready: boolean;
  /** The queue met a driver error and is not processed until reset. */
  readonly broken: boolean;
  /** The ring format while the queue is live (packed when VIRTIO_F_RING_PACKED was negotiated). */
  readonly ring?: SimRingKind;
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
  /**
   * Split: the device's next avail ring index, and the used idx it has
   * written. Packed: the device's next-avail and next-used descriptor
   * slots, with their wrap counters in availWrap and usedWrap.
   */
  readonly lastAvail: number;
  readonly usedIdx: number;
  readonly availWrap?: boolean;
  readonly usedWrap?: boolean;
  /** Buffers handed to the model and not yet used. */
  readonly inFlight: number;
  /** QueueReset reads of 1 still to come. */
  readonly resetReadsLeft: number;
}

const viewOf = (bytes: Uint8Array): DataView => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

/** Sizes and alignments of the three areas of each ring format (§2.7 table "Virtqueue Part Alignment", §2.8.10.1). */
function areaLayout(
  packed: boolean,
  num: number,
): { bytes: [number, number, number]; align: [number, number, number] } {
  return packed
    ? {
        bytes: [packedRingBytes(num), PackedRing.EVENT_SIZE, PackedRing.EVENT_SIZE],
        align: [PackedRing.DESC_ALIGN, PackedRing.EVENT_ALIGN, PackedRing.EVENT_ALIGN],
      }
    : {
        bytes: [descTableBytes(num), availRingBytes(num), usedRingBytes(num)],
        align: [SplitRing.DESC_ALIGN, SplitRing.AVAIL_ALIGN, SplitRing.USED_ALIGN],
      };
}

/**
 * One virtqueue of the device: the queue registers the driver writes and,
 * once the queue is live, its ring — split (§2.7, SimSplitRing) or packed
 * (§2.8, SimPackedRing) as the negotiated features say. A ring that meets
 * a driver error is broken: it stops, its in-flight requests are dropped,
 * and the device reports DEVICE_NEEDS_RESET. Completions that arrive after
 * a reset, a queue reset, a stop or a break are discarded.
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

  private ring?: SimSplitRing | SimPackedRing;

  constructor(
    readonly index: number,
    readonly numMax: number,
    private readonly host: SimQueueHost,
  ) {}

  get ready(): boolean {
    return this.ring !== undefined;
  }

  get broken(): boolean {
    return this.ring?.broken ?? false;
  }

  state(): SimQueueState {
    const position = this.ring?.position ?? { lastAvail: 0, usedIdx: 0 };
    return {
      index: this.index,
      ready: this.ready,
      broken: this.broken,
      ring: this.ring?.kind,
      numMax: this.numMax,
      size: this.num,
      desc: this.descAddr,
      driver: this.driverAddr,
      device: this.deviceAddr,
      pfn: this.pfn,
      align: this.align,
      ...position,
      inFlight: this.ring?.inFlight ?? 0,
      resetReadsLeft: this.resetReadsLeft,
    };
  }

  /** Checks a notification's next_off/next_wrap against the ring (VIRTIO_F_NOTIFICATION_DATA). */
  checkNotificationData(nextOff: number, nextWrap: boolean): void {
    this.ring?.checkNotificationData(nextOff, nextWrap);
  }

  /**
   * Makes the queue live with its three areas, after checking what the
   * driver set up (§2.7, §2.8.10.1, §4.2.3.2). Returns false, with the
   * violation recorded, when the queue stays not ready.
   */
  activate(desc: bigint, driver: bigint, device: bigint): boolean {
    const { rules, memory, packed } = this.host;
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
    if (packed && this.num > PackedRing.MAX_SIZE) {
      rules.record(
        'queue-num-above-max',
        `${what} enabled with QueueNum ${this.num}; a packed ring has at most 2^15 entries (§2.8)`,
      );
      return false;
    }
    // §2.8.10.1: the size of a packed ring need not be a power of 2.
    if (!packed && !isPowerOfTwo(this.num)) {
      rules.record('queue-num-not-power-of-two', `${what} enabled with QueueNum ${this.num}, not a power of two`);
      return false;
    }
    const names = ['descriptor area', 'driver area', 'device area'];
    const addresses = [desc, driver, device];
    const layout = areaLayout(packed, this.num);
    const misaligned = addresses
      .map((a, i) => (a % BigInt(layout.align[i]) !== 0n ? `${names[i]} ${hex(a)} (needs ${layout.align[i]})` : ''))
      .filter(Boolean);
    if (misaligned.length) {
      rules.record('queue-misaligned', `${what}: misaligned ${misaligned.join(', ')}`);
      return false;
    }
    const areas = addresses.map((a, i) => memory.resolve(a, layout.bytes[i]));
    const missing = areas.map((bytes, i) => (bytes ? '' : `${names[i]} ${hex(addresses[i])}`)).filter(Boolean);
    if (missing.length) {
      rules.record(
        'queue-memory-unreachable',
        `${what}: ${missing.join(', ')} not in device-reachable memory for QueueNum ${this.num}`,
      );
      return false;
    }
    const [descBytes, driverBytes, deviceBytes] = areas as Uint8Array[];
    if (!packed) {
      const used = viewOf(deviceBytes);
      if (used.getUint16(SplitRing.USED_FLAGS, true) !== 0) {
        rules.record(
          'used-flags-not-zero',
          `${what}: used ring flags are ${used.getUint16(SplitRing.USED_FLAGS, true)} when the queue is enabled, not 0`,
        );
      }
    }
    this.ring?.drop();
    this.descAddr = desc;
    this.driverAddr = driver;
    this.deviceAddr = device;
    this.ring = packed
      ? this.packedRing(descBytes, driverBytes, deviceBytes)
      : this.splitRing(descBytes, driverBytes, deviceBytes);
    this.reenabling = false;
    return true;
  }

  /** QueueReady 0 / QueuePFN 0: the device stops using the rings. */
  stop(): void {
    this.ring?.drop();
    this.ring = undefined;
    this.pfn = 0;
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

  /** Takes every newly available buffer to the model; synchronous results are used in this pass. */
  pass(): void {
    this.ring?.pass();
  }

  /** Publishes used elements of completions that arrived since the last pass. */
  flush(): void {
    this.ring?.flush();
  }

  private splitRing(desc: Uint8Array, avail: Uint8Array, used: Uint8Array): SimSplitRing {
    return new SimSplitRing(this.index, this.num, this.host, {
      desc: viewOf(desc),
      avail: viewOf(avail),
      used: viewOf(used),
      availIdx: new RingIndex(avail, SplitRing.AVAIL_IDX),
      usedIdx: new RingIndex(used, SplitRing.USED_IDX),
    });
  }

  private packedRing(desc: Uint8Array, driver: Uint8Array, device: Uint8Array): SimPackedRing {
    const words =
      desc.byteOffset % 2 === 0 ? new Uint16Array(desc.buffer, desc.byteOffset, desc.byteLength / 2) : undefined;
    return new SimPackedRing(this.index, this.num, this.host, {
      desc: viewOf(desc),
      words,
      driver: viewOf(driver),
      device: viewOf(device),
    });
  }
}
