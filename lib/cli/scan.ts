import { MmioRegister, describeStatus, deviceTypeName } from '../spec';
import { probe } from '../transport';
import { describeError, vendorText } from '../diag';
import { hex32 as hex } from '../util/hex';

export { describeError } from '../diag';
import { openRegisters, type Target } from './targets';

/** One transport as `scan` reports it; plain JSON (no bigint). */
export interface ScanEntry {
  where: string;
  kind: 'uio' | 'physical' | 'sim';
  version?: 1 | 2;
  deviceId?: number;
  /** The device type by name; "empty" for DeviceID 0 (a slot with no device, §4.2.3.1.1). */
  device?: string;
  /** VendorID as 0x hex, and as four ASCII characters when they are printable (QEMU: "QEMU"). */
  vendorId?: string;
  vendor?: string;
  /** Status as 0x hex and by bit name. */
  status?: string;
  statusBits?: string;
  empty?: boolean;
  /** UIO targets: the register window's size (0x hex) and where it came from ('device-tree', 'uio-map', 'caller'). */
  window?: string;
  windowFrom?: string;
  /** Why the window could not be opened or holds no virtio-mmio device. */
  error?: { code?: string; message: string };
}

/**
 * Probes each target through its register window alone — MagicValue,
 * Version, DeviceID, and VendorID and Status for a present device — and
 * closes it again. Writes no register. Failures are reported per target.
 */
export function scan(targets: readonly Target[]): ScanEntry[] {
  return targets.map((target): ScanEntry => {
    const kind = target.kind === 'sim' ? 'sim' : target.spec.kind;
    let opened: ReturnType<typeof openRegisters> | undefined;
    try {
      opened = openRegisters(target);
      const found = probe(opened.regs);
      const window = opened.windowFrom ? { window: hex(opened.regs.size), windowFrom: opened.windowFrom } : {};
      const entry: ScanEntry = {
        where: target.where,
        kind,
        version: found.version,
        deviceId: found.deviceId,
        device: found.empty ? 'empty' : (deviceTypeName(found.deviceId) ?? `device ${found.deviceId}`),
        empty: found.empty,
        ...window,
      };
      if (found.empty) return entry;
      const status = opened.regs.readl(MmioRegister.Status);
      const vendor = vendorText(found.vendorId);
      return {
        ...entry,
        vendorId: hex(found.vendorId),
        ...(vendor ? { vendor } : {}),
        status: hex(status),
        statusBits: describeStatus(status),
      };
    } catch (error) {
      return { where: target.where, kind, error: describeError(error) };
    } finally {
      opened?.close();
    }
  });
}

/** One line per transport: where, version, device, vendor, status; empty slots summed up at the end. */
export function formatScan(entries: readonly ScanEntry[]): string {
  const lines: string[] = [];
  let empty = 0;
  for (const e of entries) {
    if (e.error)
      lines.push(
        `${e.where}: ` +
          `${e.error.code && !e.error.message.startsWith(`${e.error.code}:`) ? `${e.error.code}: ` : ''}` +
          `${e.error.message}`,
      );
    else if (e.empty) empty++;
    else
      lines.push(
        `${e.where}: ${e.device} (${e.deviceId}), virtio-mmio Version ${e.version}, vendor ` +
          `${e.vendorId}${e.vendor ? ` "${e.vendor}"` : ''}` +
          `, status ${e.status} (${e.statusBits})`,
      );
  }
  const present = entries.filter((e) => !e.error && !e.empty).length;
  lines.unshift(
    `${entries.length} virtio-mmio transport${entries.length === 1 ? '' : 's'}: ${present} with a ` +
      `device, ${empty} empty` +
      `${entries.length - present - empty ? `, ${entries.length - present - empty} not usable` : ''}`,
  );
  if (empty) lines.push(`(${empty} empty slot${empty === 1 ? '' : 's'}: DeviceID 0)`);
  return lines.join('\n') + '\n';
}
