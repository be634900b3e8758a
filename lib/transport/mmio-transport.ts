import { invalidArgValue, outOfRange, TransportError } from '../errors';
import type { InterruptSource, RegisterBlock } from '../platform';
import { checkPollTimeout } from '../platform/register-block';
import { isPowerOfTwo } from '../spec';
import { ConfigSpace } from './config-space';
import { DeviceStatusMachine } from './device-status-machine';
import { MmioOps } from './mmio-ops';
import { probe } from './probe';
import type { QueueLayout } from './virtio-transport';

export { TRANSPORT_FEATURES } from './transport-features';

export interface MmioTransportOptions {
  /** The device's interrupt line; without one, queues must be polled. */
  interrupts?: InterruptSource;
  /**
   * Limit for Status to read 0 after a reset (§2.4.1): integer ms in [0, POLL_TIMEOUT_MAX_MS], pollUntil's range.
   * Default 1000.
   */
  resetTimeoutMs?: number;
  /**
   * Limit for QueueReset to read 0 (§4.2.2): integer ms in [0, POLL_TIMEOUT_MAX_MS], pollUntil's range. Default 1000.
   */
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

/**
 * The driver side of one virtio-mmio transport (virtio 1.2 §4.2), legacy
 * (Version 1) and modern (Version 2): probe, then the status machine of
 * §3.1.1 (DeviceStatusMachine) over the MMIO register operations (MmioOps),
 * with the config space at 0x100 (ConfigSpace) and interrupts dispatched by
 * InterruptDispatch. Device drivers sit on top (see devices/).
 */
export class MmioTransport extends DeviceStatusMachine {
  override readonly version: 1 | 2;
  override readonly deviceId: number;
  override readonly vendorId: number;
  /** The device-specific configuration space (§4.2.2, §2.5). */
  override readonly config: ConfigSpace;
  private readonly queueAlign: number;
  private readonly guestPageSize: number;

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
    if (found.empty)
      throw new TransportError(TransportError.EMPTY_SLOT, `${regs.label}: empty virtio-mmio slot (DeviceID 0)`);
    const settings = {
      resetTimeoutMs: options.resetTimeoutMs ?? 1000,
      queueResetTimeoutMs: options.queueResetTimeoutMs ?? 1000,
      configRetries: options.configRetries ?? 100,
      guestPageSize: options.guestPageSize ?? 4096,
      queueAlign: options.queueAlign ?? 4096,
      stormLimit: options.stormLimit ?? 10_000,
      owns: options.owns ?? false,
    };
    // Both go to regs.pollUntil: refused here, in its range, not later inside open() or close().
    for (const name of ['resetTimeoutMs', 'queueResetTimeoutMs'] as const) checkPollTimeout(name, settings[name]);
    for (const name of ['configRetries', 'stormLimit'] as const) {
      const value = settings[name];
      if (!Number.isInteger(value) || value < 1)
        throw outOfRange(`${name} must be a positive integer, got ${String(value)}`);
    }
    for (const [name, value] of [
      ['guestPageSize', settings.guestPageSize],
      ['queueAlign', settings.queueAlign],
    ] as const) {
      if (!isPowerOfTwo(value) || value < 16)
        throw invalidArgValue(`${name} must be a power of two ≥ 16, got ${value}`, 'range');
    }
    super(new MmioOps(regs, found.version, settings.guestPageSize, settings.queueAlign), {
      ...settings,
      interrupts: options.interrupts,
    });
    this.version = found.version;
    this.deviceId = found.deviceId;
    this.vendorId = found.vendorId;
    this.guestPageSize = settings.guestPageSize;
    this.queueAlign = settings.queueAlign;
    this.config = new ConfigSpace(regs, this.version, settings.configRetries, (write) => this.checkConfigAccess(write));
  }

  override get label(): string {
    return this.regs.label;
  }

  /** Where queue memory must be placed on this transport. */
  override get queueLayout(): QueueLayout {
    return this.version === 1
      ? { legacy: true, align: this.queueAlign, pageSize: this.guestPageSize }
      : { legacy: false };
  }
}
