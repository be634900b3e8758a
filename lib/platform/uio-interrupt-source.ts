import { SyscallError } from '../errors';
import { native, type NativeUioFile } from './addon';
import { EpollLoop } from './epoll-loop';
import { FdInterruptSource } from './fd-interrupt-source';
import type { InterruptErrorListener, InterruptListener } from './interrupt-source';
import type { UioDeviceInfo } from './uio-sysfs';

/**
 * The interrupt of a UIO device. uio_pdrv_genirq masks the line in its
 * handler; the 4-byte write of 1 after each delivered interrupt unmasks it
 * (Documentation/driver-api/uio-howto.rst). Drivers without irqcontrol
 * answer ENOSYS: then re-arming is skipped, and enable()/disable() throw.
 *
 * The fd is watched edge-triggered: UIO wakes its pollers on every
 * interrupt, so the 4-byte event counter need not be read per interrupt
 * (one syscall less on the hot path); each wake-up is one event. The
 * counter is read on demand (total).
 */
export class UioInterruptSource extends FdInterruptSource {
  private lastTotal?: number;
  private irqControl = true;
  protected override readonly edgeTriggered = true;

  constructor(
    private readonly file: NativeUioFile,
    loop: EpollLoop = EpollLoop.default(),
  ) {
    super(file.path, loop);
  }

  /** Opens /dev/uioN (non-blocking, close-on-exec). */
  static open(device: UioDeviceInfo | string, loop?: EpollLoop): UioInterruptSource {
    const path = typeof device === 'string' ? device : device.devicePath;
    return new UioInterruptSource(new native.UioFile(path), loop);
  }

  /**
   * The UIO driver's event counter (interrupts it has seen), read now; undefined before the first interrupt, or once
   * closed.
   */
  get total(): number | undefined {
    if (!this.isClosed) this.consume();
    return this.lastTotal;
  }

  /**
   * Also unmasks the line: a previous user may have closed the device
   * between an interrupt (which uio_pdrv_genirq masks) and its re-arm, and
   * a masked line would never fire again. Interrupts counted before are
   * read first, so that the edge-triggered watch starts from a clean state.
   */
  override listen(onInterrupt: InterruptListener, onError: InterruptErrorListener): void {
    if (!this.isClosed && !this.listening) this.consume();
    super.listen(onInterrupt, onError);
    try {
      this.rearm();
    } catch (error) {
      this.unlisten();
      throw error;
    }
  }

  protected get fd(): number {
    return this.file.fd;
  }

  protected consume(): number | null {
    const total = this.file.readCount();
    if (total === null) return null;
    // The counter is 32 bits and wraps.
    const count = this.lastTotal === undefined ? 1 : (total - this.lastTotal) >>> 0;
    this.lastTotal = total;
    return Math.max(count, 1);
  }

  protected rearm(): void {
    if (!this.irqControl) return;
    try {
      this.file.enable();
    } catch (error) {
      if (error instanceof SyscallError && error.code === 'ENOSYS') {
        this.irqControl = false;
        return;
      }
      throw error;
    }
  }

  enable(): void {
    this.file.enable();
  }

  disable(): void {
    this.file.disable();
  }

  protected release(): void {
    this.file.close();
  }
}
