import { TransportError } from '../errors';
import type { RegisterBlock } from '../platform';
import { EMPTY_DEVICE_ID, MMIO_MAGIC_VALUE, MMIO_VERSION_LEGACY, MMIO_VERSION_MODERN, MmioRegister } from '../spec';
import { hex32 } from '../util/hex';

export interface ProbeResult {
  /** 1 (legacy) or 2 (modern). */
  readonly version: 1 | 2;
  /** Virtio device ID (§5); 0 when `empty`. */
  readonly deviceId: number;
  readonly vendorId: number;
  /** A transport with no device behind it (DeviceID 0): not an error, nothing to drive (§4.2.3.1.1). */
  readonly empty: boolean;
}

/**
 * Reads MagicValue, Version and DeviceID, and VendorID only for a present
 * device (§4.2.3.1.1: for DeviceID 0 no other register may be touched).
 * Throws TransportError BAD_MAGIC / BAD_VERSION naming the value read.
 */
export function probe(regs: RegisterBlock): ProbeResult {
  const magic = regs.readl(MmioRegister.MagicValue);
  if (magic !== MMIO_MAGIC_VALUE) {
    throw new TransportError(
      TransportError.BAD_MAGIC,
      `${regs.label}: MagicValue is ${hex32(magic, 8)}, not ${hex32(MMIO_MAGIC_VALUE, 8)} ("virt"): not a ` +
        `virtio-mmio device`,
    );
  }
  const version = regs.readl(MmioRegister.Version);
  if (version !== MMIO_VERSION_LEGACY && version !== MMIO_VERSION_MODERN) {
    throw new TransportError(
      TransportError.BAD_VERSION,
      `${regs.label}: virtio-mmio Version ${version} is not supported (1 or 2)`,
    );
  }
  const deviceId = regs.readl(MmioRegister.DeviceID);
  if (deviceId === EMPTY_DEVICE_ID) return { version, deviceId, vendorId: 0, empty: true };
  return { version, deviceId, vendorId: regs.readl(MmioRegister.VendorID), empty: false };
}
