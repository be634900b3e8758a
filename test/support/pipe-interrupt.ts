import { readSync, writeSync } from 'node:fs';
import { EpollLoop, FdInterruptSource } from '../../lib/platform';
import { native } from '../../lib/platform/addon';
import type { SimInterruptLine } from '../../lib/sim';

/**
 * An interrupt line made of a pipe, for hostile `device-gone`: raise()
 * writes a byte per interrupt; hangUp() closes the write end, so the read
 * end reports EPOLLHUP and the FdInterruptSource turns it into
 * DeviceGoneError — what a UIO fd does when its device goes away.
 */
export class PipeInterruptSource extends FdInterruptSource implements SimInterruptLine {
  private readonly readFd: number;
  private writeFd: number | undefined;
  private masked = false;
  private readonly scratch = Buffer.alloc(256);

  constructor(label = 'pipe interrupt', loop: EpollLoop = EpollLoop.default()) {
    super(label, loop);
    [this.readFd, this.writeFd] = native.pipe();
  }

  /** Whether hangUp() was called. */
  get hungUp(): boolean {
    return this.writeFd === undefined;
  }

  /** The device side: `count` interrupts (lost once the line hung up, as on dead hardware). */
  raise(count = 1): void {
    if (this.writeFd === undefined || this.isClosed) return;
    writeSync(this.writeFd, Buffer.alloc(count, 1));
  }

  /** The device goes away: the write end closes. */
  hangUp(): void {
    if (this.writeFd === undefined) return;
    native.closeFd(this.writeFd);
    this.writeFd = undefined;
  }

  protected get fd(): number {
    return this.readFd;
  }

  protected consume(): number | null {
    let total = 0;
    for (;;) {
      let n: number;
      try {
        n = readSync(this.readFd, this.scratch);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'EAGAIN') break;
        throw error;
      }
      if (n === 0) break; // EOF: the hang-up itself is reported by EPOLLHUP
      total += n;
    }
    return total === 0 ? null : total;
  }

  protected rearm(): void {}

  protected override wantsWatch(): boolean {
    return !this.masked;
  }

  enable(): void {
    this.masked = false;
    this.updateWatch();
  }

  disable(): void {
    this.masked = true;
    this.updateWatch();
  }

  protected release(): void {
    this.hangUp();
    native.closeFd(this.readFd);
  }
}
