import {
  FeatureBit,
  isPowerOfTwo,
  legacyQueueAreas,
  MmioRegister as R,
  queueAreaHalf,
  withHalf,
  type QueueArea,
} from '../spec';
import type { SimQueue } from './sim-queue';
import type { StrictRules } from './strict-rules';
import { invalidArgValue } from '../errors';
import { hex } from '../util/hex';

/** What the queue registers need from their device. */
export interface QueueRegisterContext {
  readonly version: 1 | 2;
  readonly rules: StrictRules;
  /** QueueReset reads of 1 after a queue reset. */
  readonly queueResetLatency: number;
  /** SimOptions.queueResetIgnored: QueueReset writes do nothing. */
  readonly queueResetIgnored: boolean;
  /** Whether DRIVER_OK is set. */
  driverOk(): boolean;
  negotiated(bit: number): boolean;
  /** A queue was reset through QueueReset (the model hears of it). */
  queueReset(index: number): void;
  /**
   * Hostile queue-num-max-bad 'already-live': whether queue `index`, not ready, still reads as live (QueueReady 1 /
   * QueuePFN ≠ 0).
   */
  liveBeforeSetup?(index: number): boolean;
}

const names = new Map<number, string>(Object.entries(R).map(([name, offset]) => [offset, name]));

/** Where the sim keeps each area's address (virtio 1.2 §2.6). */
const AREA_FIELD: Readonly<Record<QueueArea, 'descAddr' | 'driverAddr' | 'deviceAddr'>> = {
  desc: 'descAddr',
  driver: 'driverAddr',
  device: 'deviceAddr',
};

/**
 * The queue selection and configuration registers (virtio 1.2 §4.2.2
 * QueueSel … QueueReset; §4.2.4 GuestPageSize, QueueAlign, QueuePFN) and
 * the driver requirements on them (§4.2.2.2, §4.2.3.2, §2.6.1). Writes to
 * a live queue are ignored violations; other broken rules are recorded and
 * the write is kept, except where noted.
 */
export class SimQueueRegisters {
  private sel = 0;
  /** Version 1; survives device reset, as legacy drivers write it once at probe time (§4.2.4). */
  private guestPageSize = 0;

  constructor(
    private readonly queues: readonly SimQueue[],
    private readonly context: QueueRegisterContext,
  ) {}

  /** The queue QueueSel selects, if the device has it. */
  get selected(): SimQueue | undefined {
    return this.queues[this.sel];
  }

  /** Device reset: QueueSel 0 and every queue back to its initial state. */
  reset(): void {
    this.sel = 0;
    for (const queue of this.queues) queue.reset();
  }

  read(offset: number): number {
    switch (offset) {
      case R.QueueNumMax:
        return this.readQueueNumMax();
      case R.QueueReady:
        return this.selected?.ready || this.readsLive() ? 1 : 0;
      case R.QueuePFN:
        return this.readsLive() ? 1 : (this.selected?.pfn ?? 0);
      case R.QueueReset:
        return this.readQueueReset();
      default:
        throw invalidArgValue(`${hex(offset)} is not a queue register`, 'range');
    }
  }

  write(offset: number, value: number): void {
    const half = queueAreaHalf(offset);
    if (half)
      return this.writeQueueAddress(
        offset,
        (q) => (q[AREA_FIELD[half.area]] = withHalf(q[AREA_FIELD[half.area]], half.high, value)),
      );
    switch (offset) {
      case R.QueueSel:
        this.sel = value;
        return;
      case R.QueueNum:
        return this.writeQueueNum(value);
      case R.QueueReady:
        return this.writeQueueReady(value);
      case R.QueueReset:
        return this.writeQueueReset(value);
      case R.GuestPageSize:
        return this.writeGuestPageSize(value);
      case R.QueueAlign:
        return this.writeQueueAlign(value);
      case R.QueuePFN:
        return this.writeQueuePfn(value);
      default:
        throw invalidArgValue(`${hex(offset)} is not a queue register`, 'range');
    }
  }

  private selectedQueue(register: string): SimQueue | undefined {
    const queue = this.queues[this.sel];
    if (!queue)
      this.context.rules.record('queue-unavailable', `${register} written for queue ${this.sel}, which does not exist`);
    return queue;
  }

  /** Hostile: a selected queue that is not live but reads as live. */
  private readsLive(): boolean {
    const queue = this.selected;
    return queue !== undefined && !queue.ready && (this.context.liveBeforeSetup?.(queue.index) ?? false);
  }

  private readQueueNumMax(): number {
    const queue = this.queues[this.sel];
    if (this.context.version === 1 && queue && queue.pfn !== 0) {
      this.context.rules.record(
        'queue-register-while-ready',
        `QueueNumMax read for queue ${queue.index} while QueuePFN is set`,
      );
    }
    return queue?.numMax ?? 0;
  }

  /**
   * The checks shared by every queue configuration write. Writes to a live
   * queue are ignored (the device keeps using what it was given); other
   * broken rules are recorded and the write is kept.
   */
  private queueConfigurable(register: string): SimQueue | undefined {
    const queue = this.selectedQueue(register);
    if (!queue) return undefined;
    if (queue.ready) {
      const live = this.context.version === 2 ? 'QueueReady is 1' : 'QueuePFN is set';
      this.context.rules.record(
        'queue-register-while-ready',
        `${register} written for queue ${queue.index} while ${live}; ignored`,
      );
      return undefined;
    }
    if (queue.resetReadsLeft > 0) {
      this.context.rules.record(
        'queue-reset-not-complete',
        `${register} written for queue ${queue.index} before QueueReset read back 0`,
      );
    }
    if (this.context.version === 2 && this.context.driverOk() && !queue.reenabling) {
      this.context.rules.record(
        'queue-setup-after-driver-ok',
        `${register} written for queue ${queue.index} after DRIVER_OK, without a QueueReset first`,
      );
    }
    return queue;
  }

  private writeQueueNum(value: number): void {
    const queue = this.queueConfigurable('QueueNum');
    if (!queue) return;
    if (value > queue.numMax)
      this.context.rules.record(
        'queue-num-above-max',
        `QueueNum ${value} for queue ${queue.index} is above QueueNumMax ${queue.numMax}`,
      );
    // §2.8.10.1: a packed ring's size need not be a power of 2.
    const packed = this.context.negotiated(FeatureBit.RING_PACKED);
    if (!packed && !isPowerOfTwo(value))
      this.context.rules.record(
        'queue-num-not-power-of-two',
        `QueueNum ${value} for queue ${queue.index} is not a power of two`,
      );
    queue.num = value;
  }

  private writeQueueAddress(offset: number, apply: (queue: SimQueue) => void): void {
    const queue = this.queueConfigurable(names.get(offset) ?? hex(offset));
    if (queue) apply(queue);
  }

  private writeQueueReady(value: number): void {
    if (value !== 0 && value !== 1) {
      this.context.rules.record(
        'register-value',
        `QueueReady written ${hex(value)}; only 0 and 1 are defined; ignored`,
      );
      return;
    }
    if (value === 0) {
      // Stopping a queue is allowed at any time (§4.2.2.2).
      this.selectedQueue('QueueReady')?.stop();
      return;
    }
    const queue = this.queueConfigurable('QueueReady');
    if (queue) queue.activate(queue.descAddr, queue.driverAddr, queue.deviceAddr);
  }

  private writeGuestPageSize(value: number): void {
    if (!isPowerOfTwo(value)) {
      this.context.rules.record('guest-page-size-invalid', `GuestPageSize ${value} is not a power of two; ignored`);
      return;
    }
    this.guestPageSize = value;
  }

  private writeQueueAlign(value: number): void {
    const queue = this.queueConfigurable('QueueAlign');
    if (!queue) return;
    if (!isPowerOfTwo(value)) {
      this.context.rules.record(
        'queue-align-invalid',
        `QueueAlign ${value} for queue ${queue.index} is not a power of two; ignored`,
      );
      return;
    }
    queue.align = value;
  }

  private writeQueuePfn(value: number): void {
    if (value === 0) {
      this.selectedQueue('QueuePFN')?.stop();
      return;
    }
    const queue = this.queueConfigurable('QueuePFN');
    if (!queue) return;
    let pageSize = this.guestPageSize;
    if (pageSize === 0) {
      this.context.rules.record(
        'guest-page-size-unset',
        `QueuePFN written for queue ${queue.index} before GuestPageSize; assuming 4096`,
      );
      pageSize = 4096;
    }
    const { desc, driver, device } = legacyQueueAreas(value, pageSize, queue.num, queue.align);
    if (queue.activate(desc, driver, device)) queue.pfn = value;
  }

  private readQueueReset(): number {
    if (!this.context.negotiated(FeatureBit.RING_RESET)) {
      this.context.rules.record('queue-reset-not-negotiated', 'QueueReset read without VIRTIO_F_RING_RESET negotiated');
      return 0;
    }
    const queue = this.queues[this.sel];
    if (!queue || queue.resetReadsLeft === 0) return 0;
    queue.resetReadsLeft--;
    return 1;
  }

  /** Virtqueue reset (§2.6.1, §4.2.2.1). */
  private writeQueueReset(value: number): void {
    if (!this.context.negotiated(FeatureBit.RING_RESET)) {
      this.context.rules.record(
        'queue-reset-not-negotiated',
        `QueueReset written ${hex(value)} without VIRTIO_F_RING_RESET negotiated; ignored`,
      );
      return;
    }
    if (value !== 1) {
      this.context.rules.record('register-value', `QueueReset written ${hex(value)}; only 1 is defined; ignored`);
      return;
    }
    const queue = this.selectedQueue('QueueReset');
    if (!queue || this.context.queueResetIgnored) return;
    queue.reset();
    queue.resetReadsLeft = this.context.queueResetLatency;
    queue.reenabling = true;
    this.context.queueReset(queue.index);
  }
}
