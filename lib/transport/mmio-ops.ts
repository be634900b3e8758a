import type { RegisterBlock } from '../platform';
import { MmioRegister as R, SHM_LEN_ABSENT } from '../spec/mmio-registers';
import { QUEUE_AREA_LOW, legacyQueuePfn, queueLiveRegister } from '../spec/queue-select';
import type { TransportOps } from './transport-ops';
import type { QueueAddresses, ShmRegion } from './virtio-transport';
import { invalidArgValue } from '../errors';

/**
 * The register operations of one virtio-mmio device (virtio 1.2 §4.2.2 for
 * Version 2, §4.2.4 for the legacy Version 1): accesses only, no state of
 * their own beyond the window and the legacy page settings.
 */
export class MmioOps implements TransportOps {
  constructor(
    private readonly regs: RegisterBlock,
    private readonly version: 1 | 2,
    /** Legacy GuestPageSize and the unit of QueuePFN (§4.2.4). */
    private readonly guestPageSize: number,
    /** Legacy QueueAlign (§4.2.4). */
    private readonly queueAlign: number,
  ) {}

  get closed(): boolean {
    return this.regs.closed;
  }

  readStatus(): number {
    return this.regs.readl(R.Status);
  }

  writeStatus(status: number): void {
    this.regs.writel(R.Status, status);
  }

  reset(timeoutMs: number): boolean {
    this.regs.writel(R.Status, 0);
    return this.regs.pollUntil(R.Status, 0xff, 0, timeoutMs, 10) !== null;
  }

  armExitReset(pollMs: number): void {
    this.regs.armExitWrite?.(R.Status, 0, pollMs);
  }

  disarmExitReset(): void {
    this.regs.disarmExitWrite?.();
  }

  readDeviceFeatures(): bigint {
    this.regs.writel(R.DeviceFeaturesSel, 0);
    const low = this.regs.readl(R.DeviceFeatures);
    this.regs.writel(R.DeviceFeaturesSel, 1);
    const high = this.regs.readl(R.DeviceFeatures);
    return (BigInt(high) << 32n) | BigInt(low);
  }

  writeDriverFeatures(features: bigint): void {
    this.regs.writel(R.DriverFeaturesSel, 0);
    this.regs.writel(R.DriverFeatures, Number(features & 0xffff_ffffn));
    this.regs.writel(R.DriverFeaturesSel, 1);
    this.regs.writel(R.DriverFeatures, Number((features >> 32n) & 0xffff_ffffn));
  }

  completeLegacyFeatures(): void {
    this.regs.writel(R.GuestPageSize, this.guestPageSize);
  }

  // ---- Queues (§4.2.3.2; legacy §4.2.4) ----

  selectQueue(index: number): void {
    this.regs.writel(R.QueueSel, index);
  }

  /** QueueReady (legacy: QueuePFN) reads non-zero. */
  queueInUse(): boolean {
    return this.regs.readl(queueLiveRegister(this.version)) !== 0;
  }

  queueNumMax(): number {
    return this.regs.readl(R.QueueNumMax);
  }

  /**
   * QueueNum, then the three area addresses and QueueReady ← 1, read back
   * (modern); or QueueAlign and QueuePFN (legacy, where the three areas must
   * form the §2.7.2 layout at a non-zero 32-bit page number).
   */
  enableQueue(index: number, addresses: QueueAddresses): boolean {
    const { size } = addresses;
    let pfn: number | undefined;
    if (this.version === 1) {
      // Checked before any register changes: a refused layout leaves the device as it was.
      pfn = legacyQueuePfn(addresses, this.guestPageSize, size, this.queueAlign);
      if (pfn === undefined) {
        throw invalidArgValue(
          `queue ${index}: legacy queues need one page-aligned area at a non-zero 32-bit page number laid out ` +
            `as virtio 1.2 §2.7.2`,
          'range',
        );
      }
    }
    this.regs.writel(R.QueueNum, size);
    if (pfn !== undefined) {
      this.regs.writel(R.QueueAlign, this.queueAlign);
      this.regs.writel(R.QueuePFN, pfn);
      return true;
    }
    this.writeAddress(QUEUE_AREA_LOW.desc, addresses.desc);
    this.writeAddress(QUEUE_AREA_LOW.driver, addresses.driver);
    this.writeAddress(QUEUE_AREA_LOW.device, addresses.device);
    this.regs.writel(R.QueueReady, 1);
    return this.regs.readl(R.QueueReady) === 1;
  }

  /** QueueReady (legacy: QueuePFN) ← 0, read back 0 (§4.2.2). */
  disableQueue(): boolean {
    const register = queueLiveRegister(this.version);
    this.regs.writel(register, 0);
    return this.regs.readl(register) === 0;
  }

  /** QueueReset ← 1, then QueueReset reads 0 when the reset completed (§4.2.2). */
  resetQueue(timeoutMs: number): boolean {
    this.regs.writel(R.QueueReset, 1);
    return this.regs.pollUntil(R.QueueReset, 1, 0, timeoutMs, 10) !== null;
  }

  /** One QueueNotify register for every queue (§4.2.3.3): the data says which. */
  notify(_index: number, data: number): void {
    this.regs.writel(R.QueueNotify, data);
  }

  readInterruptStatus(): number {
    return this.regs.readl(R.InterruptStatus);
  }

  ackInterrupt(bits: number): void {
    this.regs.writel(R.InterruptACK, bits);
  }

  /** SHMSel ← id, then SHMLen (all ones: absent) and SHMBase. Version 1 has no regions. */
  shmRegion(id: number): ShmRegion | undefined {
    if (this.version === 1) return undefined;
    this.regs.writel(R.SHMSel, id);
    const length = this.read64(R.SHMLenLow);
    if (length === SHM_LEN_ABSENT) return undefined;
    return { id, length, base: this.read64(R.SHMBaseLow) };
  }

  close(): void {
    this.regs.close();
  }

  private writeAddress(low: number, address: bigint): void {
    this.regs.writel(low, Number(address & 0xffff_ffffn));
    this.regs.writel(low + 4, Number((address >> 32n) & 0xffff_ffffn));
  }

  private read64(low: number): bigint {
    return (BigInt(this.regs.readl(low + 4)) << 32n) | BigInt(this.regs.readl(low));
  }
}
