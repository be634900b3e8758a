import { VirtioBlk, VirtioConsole, VirtioRng, type VirtioConsoleOptions } from '../../../lib/devices';
import { DmaPool, UioInterruptSource } from '../../../lib/platform';
import { DeviceId, describeFeatures, deviceIdName } from '../../../lib/spec';
import { discoverUio, openTransport, probeAll, type MmioTransport, type ProbeReport, type UioDeviceSpec } from '../../../lib/transport';
import type { BlkSubject } from '../../../test/contracts/blk-contract';
import type { ConsoleSubject } from '../../../test/contracts/console-contract';
import type { RngSubject } from '../../../test/contracts/rng-contract';

/** Every virtio-mmio transport on UIO, probed, the way a user on a board finds them. */
export function scan(): ProbeReport[] {
  return probeAll(discoverUio());
}

export function describeReport(report: ProbeReport): Record<string, unknown> {
  const spec = report.spec as UioDeviceSpec;
  const map = spec.device.maps[0];
  return {
    path: spec.device.devicePath,
    address: map ? `0x${(map.addr + BigInt(map.offset)).toString(16)}` : undefined,
    version: report.result?.version,
    deviceId: report.result?.deviceId,
    device: report.result ? (report.result.empty ? 'empty' : deviceIdName(report.result.deviceId)) : undefined,
    vendorId: report.result?.vendorId,
    error: report.error?.message,
  };
}

/** Interrupts counted by the UIO driver itself for this transport's line. */
export function uioEventCount(source: unknown): number | undefined {
  return source instanceof UioInterruptSource ? source.total : undefined;
}

/**
 * Opens a driver on a UIO transport with its own hugetlb DMA pool (device
 * address = physical: the guest has no IOMMU); closing the driver closes
 * both. What every contract subject in the guest does.
 */
export function openOnUio<D extends { close(): void }>(spec: UioDeviceSpec, open: (transport: MmioTransport, memory: DmaPool) => D): { driver: D; transport: MmioTransport; close(): void } {
  const transport = openTransport(spec);
  const memory = DmaPool.hugetlb();
  try {
    const driver = open(transport, memory);
    return {
      driver,
      transport,
      close() {
        driver.close();
        memory.close();
      },
    };
  } catch (error) {
    transport.close();
    memory.close();
    throw error;
  }
}

const found = (reports: ProbeReport[], deviceId: number): UioDeviceSpec[] =>
  reports.filter((r) => r.result?.deviceId === deviceId).map((r) => r.spec as UioDeviceSpec);

/**
 * The rng devices found, as contract subjects; `excludeFeatures` turns
 * features off (e.g. EVENT_IDX, to run the flags-based suppression against
 * the device too).
 */
export function rngSubjects(reports: ProbeReport[], excludeFeatures = 0n): RngSubject[] {
  return found(reports, DeviceId.ENTROPY).map((spec) => ({
    label: excludeFeatures ? `${spec.device.devicePath} (without ${describeFeatures(excludeFeatures)})` : spec.device.devicePath,
    open(options) {
      const { driver: rng, transport, close } = openOnUio(spec, (t, memory) => VirtioRng.open(t, { memory, excludeFeatures, ...options }));
      return { rng, transport, close };
    },
  }));
}

/** The block devices found, as contract subjects (their contents are overwritten). */
export function blkSubjects(reports: ProbeReport[]): BlkSubject[] {
  return found(reports, DeviceId.BLOCK).map((spec) => ({
    label: spec.device.devicePath,
    open(options) {
      const { driver: blk, transport, close } = openOnUio(spec, (t, memory) => VirtioBlk.open(t, { memory, ...options }));
      return { blk, transport, close };
    },
  }));
}

/**
 * The console devices found (the lab wires port 0, and a port named
 * `portName` when given, to host sockets that echo); `base` options
 * choose e.g. `multiport: false`. The subject's stream is port 0's, or
 * the named port's.
 */
export function consoleSubjects(reports: ProbeReport[], base: Partial<VirtioConsoleOptions> = {}, portName?: string): ConsoleSubject[] {
  return found(reports, DeviceId.CONSOLE).map((spec) => ({
    label: portName ? `${spec.device.devicePath} port ${portName}` : spec.device.devicePath,
    async open(options) {
      const { driver: console, close } = openOnUio(spec, (t, memory) => VirtioConsole.open(t, { memory, ...base, ...options }));
      try {
        const stream = portName ? (await console.waitForPort(portName, { timeoutMs: 10_000 })).open() : console.stream;
        return { console, stream, close };
      } catch (error) {
        close();
        throw error;
      }
    },
  }));
}
