import type { SimInterruptLine, SimStats } from './sim-options';

/**
 * InterruptStatus and the line behind it (§4.2.2, §4.2.3.4): the device
 * sets bits and raises the line; InterruptACK clears them.
 */
export class SimInterrupts {
  status = 0;

  constructor(
    readonly line: SimInterruptLine,
    /** DRIVER_OK is set: before it, a device sends no notifications (§2.1.2). */
    private readonly live: () => boolean,
    private readonly stats: SimStats,
  ) {}

  /** Sets `bit` and raises the line; nothing before DRIVER_OK. */
  signal(bit: number): boolean {
    if (!this.live()) return false;
    this.status |= bit;
    this.stats.interrupts++;
    if (!this.line.closed) this.line.raise();
    return true;
  }

  /** Sets `bits` and raises the line whatever the device status (hostile mode's lies; not counted in stats). */
  raiseAnyway(bits: number): void {
    this.status |= bits;
    this.line.raise();
  }

  ack(value: number): void {
    this.status &= ~value;
  }
}
