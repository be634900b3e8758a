import { describeStatus, DeviceStatus, MMIO_INTERRUPT_DEFINED, MmioInterrupt, MmioRegister } from '../spec';
import type { Hostile } from './hostile';
import type { SimInterrupts } from './sim-interrupts';
import { hex } from '../util/hex';

const isPowerOfTwo = (n: number): boolean => n > 0 && (n & (n - 1)) === 0;

/** What the register-level faults need of the device. */
export interface RegisterFaultsHost {
  readonly interrupts: SimInterrupts;
  /** DRIVER_OK is set. */
  live(): boolean;
  /** §2.1.2: DEVICE_NEEDS_RESET set and announced by a configuration change notification. */
  needsReset(): void;
}

/**
 * Hostile mode's lies at the register level (behaviours 11–13, 18, 19,
 * 21–23 of FAULT_CATALOGUE): the device calls in at fixed points and
 * these decide what changes. Ring lies are in hostile-ring.ts, config
 * lies in fault-plan.ts and sim-config-space.ts.
 */
export class RegisterFaults {
  /** needs-reset / device-gone: no ring work until reset (needs-reset) or ever (device-gone). */
  halted = false;
  /** device-gone with registers 'all-ones'. */
  allOnes = false;
  /** spurious-interrupts 'unknown-bits': undefined InterruptStatus bits shown until the next InterruptACK. */
  unknownBits = 0;
  /** needs-reset / device-gone happened (once per device). */
  private tripped = false;
  private stormLeft = 0;
  private stormBits = 0;

  constructor(
    readonly hostile: Hostile,
    private readonly host: RegisterFaultsHost,
  ) {}

  /** queue-num-max-bad 'zero' and 'not-power-of-two': the QueueNumMax values the device shows. */
  queueSizes(sizes: readonly number[]): readonly number[] {
    const { hostile } = this;
    const option = hostile.options('queue-num-max-bad');
    if (!option || option.kind === 'already-live') return sizes;
    return sizes.map((max, index) => {
      if (!hostile.targets(index) || max === 0) return max;
      if (option.kind === 'zero') return 0;
      if (option.value !== undefined) return option.value;
      // Above half of a power-of-two maximum and below it, no value is a power of two.
      const value = max < 4 ? 3 : hostile.int(Math.floor(max / 2) + 1, max - 1);
      return isPowerOfTwo(value) ? value - 1 : value;
    });
  }

  /** queue-num-max-bad 'already-live': whether queue `index`, not ready, reads as live. */
  readonly liveBeforeSetup = (index: number): boolean => {
    if (this.hostile.options('queue-num-max-bad')?.kind !== 'already-live' || !this.hostile.targets(index))
      return false;
    this.hostile.record('queue-num-max-bad', `queue ${index} reads as live before setup`, index);
    return true;
  };

  /** Logs the identity registers that read a lie. */
  identityRead(offset: number, value: number, honest: number): void {
    if (value === honest) return;
    const name =
      offset === MmioRegister.MagicValue ? 'MagicValue' : offset === MmioRegister.Version ? 'Version' : 'DeviceID';
    this.hostile.record(
      'bad-identity',
      `${name} read ${offset === MmioRegister.Version ? value : offset === MmioRegister.DeviceID ? value : hex(value)}`,
    );
  }

  /** Logs the QueueNumMax and QueueReset reads that hostile mode changed. */
  queueRead(
    offset: number,
    value: number,
    queue: { index: number; numMax: number } | undefined,
    honestMax: number | undefined,
  ): void {
    const { hostile } = this;
    if (!queue || !hostile.targets(queue.index)) return;
    const kind = hostile.options('queue-num-max-bad')?.kind;
    if (
      offset === MmioRegister.QueueNumMax &&
      (kind === 'zero' || kind === 'not-power-of-two') &&
      queue.numMax !== honestMax
    ) {
      hostile.record('queue-num-max-bad', `QueueNumMax of queue ${queue.index} read ${value}`, queue.index);
    }
    if (offset === MmioRegister.QueueReset && value === 1 && this.queueResetNever) {
      hostile.record('reset-never-completes', `QueueReset of queue ${queue.index} read 1`, queue.index);
    }
  }

  get queueResetNever(): boolean {
    return this.hostile.options('reset-never-completes')?.kind === 'queue';
  }

  /** Status read while a reset is under way. */
  statusDuringReset(value: number): void {
    if (this.hostile.options('reset-never-completes')?.kind === 'device')
      this.hostile.record('reset-never-completes', `Status read ${hex(value)} after the reset`);
  }

  /**
   * interrupt-when-not-live: every Status write that leaves DRIVER_OK clear (a reset too) is followed by an interrupt;
   * interrupt-storm starts at DRIVER_OK.
   */
  afterStatusWrite(value: number): void {
    const { hostile, host } = this;
    const { interrupts } = host;
    if (!host.live() && hostile.has('interrupt-when-not-live') && !interrupts.line.closed) {
      const bits = hostile.pick([
        MmioInterrupt.VRING,
        MmioInterrupt.CONFIG,
        MmioInterrupt.VRING | MmioInterrupt.CONFIG,
      ]);
      interrupts.raiseAnyway(bits);
      hostile.record(
        'interrupt-when-not-live',
        `InterruptStatus ${hex(bits)} raised after Status write ${describeStatus(value)}`,
      );
    }
    if (host.live() && value & DeviceStatus.DRIVER_OK && hostile.has('interrupt-storm') && this.stormLeft === 0) {
      this.stormLeft = hostile.options('interrupt-storm')?.limit ?? Infinity;
      this.stormBits =
        hostile.options('interrupt-storm')?.bits ??
        hostile.pick([MmioInterrupt.VRING, MmioInterrupt.VRING, MmioInterrupt.VRING | MmioInterrupt.CONFIG]);
      this.storm();
    }
  }

  /**
   * interrupt-storm: the acknowledged interrupt comes straight back; spurious-interrupts: a wake-up with nothing (or
   * only undefined bits) to report.
   */
  afterInterruptAck(value: number): void {
    const { hostile, host } = this;
    const { interrupts } = host;
    this.unknownBits = 0;
    if (!(value & MMIO_INTERRUPT_DEFINED) || interrupts.line.closed || !host.live()) return;
    if (this.stormLeft > 0) {
      this.storm();
      return;
    }
    if (hostile.has('spurious-interrupts')) {
      const variant =
        hostile.options('spurious-interrupts')?.variant ?? hostile.pick(['zero', 'unknown-bits'] as const);
      if (variant === 'unknown-bits') this.unknownBits = (hostile.int(1, 63) << 2) & ~MMIO_INTERRUPT_DEFINED;
      else if (interrupts.status !== 0) return;
      interrupts.line.raise();
      hostile.record(
        'spurious-interrupts',
        `line raised with InterruptStatus ${hex(interrupts.status | this.unknownBits)}`,
      );
    }
  }

  /** A device reset (§2.4): storms and shown bits end; DEVICE_NEEDS_RESET's halt ends, a gone device stays gone. */
  reset(): void {
    this.unknownBits = 0;
    this.stormLeft = 0;
    if (!this.allOnes && !this.hostile.has('device-gone')) this.halted = false;
  }

  /** needs-reset and device-gone start when a chain is taken mid-I/O (once `after` requests completed). */
  haltAtTake(queue: number): boolean {
    const { hostile } = this;
    if (this.tripped) return false;
    if (hostile.ringLive('needs-reset', queue)) {
      this.tripped = this.halted = true;
      hostile.record('needs-reset', `DEVICE_NEEDS_RESET set while taking a chain from queue ${queue}`, queue);
      this.host.needsReset();
      return true;
    }
    if (hostile.ringLive('device-gone', queue)) {
      this.tripped = this.halted = true;
      const ones = hostile.options('device-gone')?.registers === 'all-ones';
      hostile.record(
        'device-gone',
        `interrupt line hung up${ones ? ', registers read all ones' : ''} while taking a chain from queue ${queue}`,
        queue,
      );
      this.host.interrupts.line.hangUp!();
      this.allOnes = ones;
      return true;
    }
    return false;
  }

  private storm(): void {
    this.stormLeft--;
    this.host.interrupts.raiseAnyway(this.stormBits);
    this.hostile.record('interrupt-storm', `InterruptStatus ${hex(this.stormBits)} raised with no used buffers`);
  }
}
