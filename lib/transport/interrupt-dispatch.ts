import { DeviceBrokenError, TransportError } from '../errors';
import type { InterruptSource } from '../platform';
import { MMIO_INTERRUPT_DEFINED, MmioInterrupt } from '../spec/mmio-registers';
import { DeviceStatus } from '../spec/status';
import { trace, tracing } from '../trace';
import type { TransportOps } from './transport-ops';
import type { QueueEndpoint, TransportStats } from './virtio-transport';

/** The register operations interrupt handling uses. */
export type InterruptRegisters = Pick<TransportOps, 'readInterruptStatus' | 'ackInterrupt' | 'readStatus'>;

/** What dispatch needs to know of the device it serves (its transport). */
export interface DispatchedDevice {
  /** For messages. */
  readonly label: string;
  /** DRIVER_OK is set (§3.1.1 step 8): interrupts are dispatched only then. */
  readonly live: boolean;
  /**
   * The device's public entry for one interrupt (it calls handle()): the
   * line's wake-ups go through it, so that whoever wraps it (a profiler, a
   * test) sees every interrupt.
   */
  handleInterrupt(): void;
}

export interface InterruptDispatchDeps {
  readonly device: DispatchedDevice;
  readonly registers: InterruptRegisters;
  /** The device's interrupt line; without one, queues are polled and nothing is listened to. */
  readonly source: InterruptSource | undefined;
  /** The active queues by index (the status machine's: read here, never changed). */
  readonly endpoints: ReadonlyMap<number, QueueEndpoint>;
  /** Told of Configuration Change Notifications (read here, never changed). */
  readonly configListeners: ReadonlySet<() => void>;
  /** Counted into. */
  readonly stats: TransportStats;
  /** Consecutive interrupts that find no work before the line is declared a storm. */
  readonly stormLimit: number;
  /** The device failed while live: the interrupt line was lost, DEVICE_NEEDS_RESET, a storm. */
  readonly fail: (error: Error) => void;
}

/**
 * Interrupt handling of one device (virtio 1.2 §4.2.3.4): InterruptStatus
 * read, exactly the defined bits acknowledged, used buffers dispatched to
 * the queues and configuration changes to their listeners; the storm bound;
 * and whether the interrupt line keeps the process alive (ref/unref while
 * some queue is busy).
 */
export class InterruptDispatch {
  private readonly device: DispatchedDevice;
  private readonly registers: InterruptRegisters;
  private readonly source: InterruptSource | undefined;
  private readonly endpoints: ReadonlyMap<number, QueueEndpoint>;
  private readonly configListeners: ReadonlySet<() => void>;
  private readonly stats: TransportStats;
  private readonly stormLimit: number;
  private readonly fail: (error: Error) => void;

  /**
   * Which queues are busy, by index, and how many (a Set's add/delete rehashes: allocations on every request at QD1).
   */
  private readonly busy: boolean[] = [];
  private busyCount = 0;
  private readonly unrefIfIdle = (): void => {
    this.pendingUnref = undefined;
    const source = this.source;
    if (source && !source.closed && this.busyCount === 0) source.unref();
  };
  private pendingUnref?: NodeJS.Immediate;
  private listening = false;
  /** Storm detection: consecutive interrupts that found no work, and the completions total at the last one. */
  private idleInterrupts = 0;
  private completionsSeen = 0;

  constructor(deps: InterruptDispatchDeps) {
    this.device = deps.device;
    this.registers = deps.registers;
    this.source = deps.source;
    this.endpoints = deps.endpoints;
    this.configListeners = deps.configListeners;
    this.stats = deps.stats;
    this.stormLimit = deps.stormLimit;
    this.fail = deps.fail;
  }

  /** Listens to the line (at DRIVER_OK); it stays unref'd while no queue is busy. */
  start(): void {
    const source = this.source;
    if (!source || this.listening) return;
    if (source.listening) {
      throw new TransportError(
        TransportError.STATE,
        `${this.device.label}: the interrupt source already has a listener (another transport or driver on ` +
          `the same device?)`,
      );
    }
    this.listening = true;
    source.listen(
      () => this.device.handleInterrupt(),
      (error) => this.fail(error),
    );
    if (this.busyCount === 0) source.unref();
  }

  /** Stops listening, if this dispatch is the listener (never another's). */
  stop(): void {
    if (!this.listening) return;
    this.listening = false;
    if (this.source?.listening) this.source.unlisten();
  }

  /**
   * Reads InterruptStatus, acknowledges exactly the defined bits read, then
   * dispatches bit 0 to every active queue and bit 1 to config listeners.
   * Status 0 is a spurious wake-up: counted only.
   */
  handle(): void {
    if (!this.device.live) {
      this.stats.ignoredInterrupts++;
      return;
    }
    const status = this.registers.readInterruptStatus();
    if (tracing) trace('irq', '%s: InterruptStatus 0x%s', this.device.label, status.toString(16));
    if ((status & ~MMIO_INTERRUPT_DEFINED) !== 0) this.stats.unknownInterruptBits++;
    const handled = status & MMIO_INTERRUPT_DEFINED;
    if (handled === 0) {
      this.stats.spuriousInterrupts++;
      this.idleInterrupt();
      return;
    }
    this.stats.interrupts++;
    this.registers.ackInterrupt(handled);
    // Acknowledged: the line may be unmasked before the completions start new requests (interrupt-source.ts).
    this.source?.acknowledged?.();
    let settled = 0;
    if (handled & MmioInterrupt.VRING) {
      for (const endpoint of this.endpoints.values()) settled += endpoint.onUsedBuffer();
    }
    if (handled & MmioInterrupt.CONFIG) {
      this.stats.configChanges++;
      // §2.1.2: a device that needs a reset says so in Status and SHOULD send a config change notification.
      if (this.registers.readStatus() & DeviceStatus.DEVICE_NEEDS_RESET) {
        this.fail(
          new DeviceBrokenError(
            'needs-reset',
            `${this.device.label}: the device set DEVICE_NEEDS_RESET; reset or close it`,
          ),
        );
        return;
      }
      for (const listener of [...this.configListeners]) listener();
      if (!this.device.live) return;
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
    if (++this.idleInterrupts < this.stormLimit) return;
    this.fail(
      new DeviceBrokenError(
        'interrupt-storm',
        `${this.device.label}: ${this.idleInterrupts} interrupts in a row found no work; the line is no ` +
          `longer listened to`,
      ),
    );
  }

  /** Starts the storm count again (the device failed: whatever ran before is over). */
  clearIdle(): void {
    this.idleInterrupts = 0;
  }

  /**
   * A queue tells whether it has requests in flight; the interrupt line
   * keeps the process alive only while some queue has (and for one
   * event-loop turn after the last completes).
   */
  setBusy(index: number, busy: boolean): void {
    if ((this.busy[index] === true) === busy) return;
    this.busy[index] = busy;
    this.busyCount += busy ? 1 : -1;
    if (!this.source || this.source.closed) return;
    if (this.busyCount > 0) {
      // With an unref pending from the last idle moment the line never stopped being ref'd; the unref
      // finds it busy and does nothing (one immediate per event-loop turn, not one per request).
      if (!this.pendingUnref) this.source.ref();
    } else if (!this.pendingUnref) {
      // Unref one event-loop turn later, not now: a caller that submits again from the completion
      // (a QD1 loop) keeps the line ref'd instead of paying two native calls per request.
      this.pendingUnref = setImmediate(this.unrefIfIdle);
    }
  }

  /** No queue is busy any more (all were detached). */
  setAllIdle(): void {
    for (let index = 0; index < this.busy.length; index++) if (this.busy[index]) this.setBusy(index, false);
  }

  /** Idle for good (closing): an unref still pending is made at once, not a turn later. */
  unrefNow(): void {
    if (!this.pendingUnref) return;
    this.cancelPendingUnref();
    if (this.source && !this.source.closed) this.source.unref();
  }

  private cancelPendingUnref(): void {
    if (this.pendingUnref) clearImmediate(this.pendingUnref);
    this.pendingUnref = undefined;
  }
}
