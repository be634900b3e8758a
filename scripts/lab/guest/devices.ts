import { VirtioBlk, VirtioConsole, VirtioRng, type VirtioConsoleOptions } from '../../../lib/devices';
import { DmaPool, UioInterruptSource } from '../../../lib/platform';
import { DeviceId, describeFeatures, deviceIdName } from '../../../lib/spec';
import {
  describeSpec,
  discoverUio,
  openTransport,
  probeAll,
  type DeviceSpec,
  type MmioTransport,
  type OpenTransportOptions,
  type PhysicalDeviceSpec,
  type ProbeReport,
  type UioDeviceSpec,
} from '../../../lib/transport';
import type { BlkSubject } from '../../../test/support/contracts/blk-contract';
import type { ConsoleSubject } from '../../../test/support/contracts/console-contract';
import type { RngSubject } from '../../../test/support/contracts/rng-contract';

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
export function openOnUio<D extends { close(): void }>(
  spec: UioDeviceSpec,
  open: (transport: MmioTransport, memory: DmaPool) => D,
): { driver: D; transport: MmioTransport; close(): void } {
  return openWith(openTransport(spec), () => DmaPool.hugetlb(), open);
}

/**
 * A driver opened by `open` on `transport` and the memory `allocate` makes, closing both with it; what was made is
 * closed if anything throws.
 */
function openWith<D extends { close(): void }>(
  transport: MmioTransport,
  allocate: () => DmaPool,
  open: (transport: MmioTransport, memory: DmaPool) => D,
): { driver: D; transport: MmioTransport; close(): void } {
  let memory: DmaPool;
  try {
    memory = allocate();
  } catch (error) {
    transport.close();
    throw error;
  }
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

/**
 * Physical memory the kernel does not own (beyond `mem=`, or a reserved-memory
 * node), cut into equal slices, one per device: each driver's rings and
 * buffers come from `DmaPool.physical` over its slice, through /dev/mem.
 */
export interface CarveOut {
  readonly base: bigint;
  readonly size: number;
  /** How many slices (devices) the carve-out is cut into. */
  readonly slices: number;
}

/** Slice `index` of the carve-out: its base and size (page multiples). */
export function carveOutSlice(carveOut: CarveOut, index: number): { base: bigint; size: number } {
  const size = Math.floor(carveOut.size / carveOut.slices / 4096) * 4096;
  if (!Number.isInteger(index) || index < 0 || index >= carveOut.slices || size === 0)
    throw new RangeError(`no slice ${index} of a carve-out of ${carveOut.size} bytes in ${carveOut.slices}`);
  return { base: carveOut.base + BigInt(index * size), size };
}

/**
 * Opens a driver on a physical transport (register window through
 * /dev/mem, completions polled: openTransport) with DMA memory from its
 * slice of the carve-out; closing the driver closes both. The driver resets
 * the device when it closes, so the next open may reuse the slice.
 */
export function openOnPhysical<D extends { close(): void }>(
  spec: PhysicalDeviceSpec,
  dma: { base: bigint; size: number },
  open: (transport: MmioTransport, memory: DmaPool) => D,
  options: OpenTransportOptions = {},
): { driver: D; transport: MmioTransport; close(): void } {
  return openWith(openTransport(spec, options), () => DmaPool.physical(dma.base, dma.size), open);
}

/** A device found, whatever way it is reached: its label and how to open a driver on it. */
interface Found {
  readonly label: string;
  readonly spec: DeviceSpec;
  openDriver<D extends { close(): void }>(
    open: (transport: MmioTransport, memory: DmaPool) => D,
  ): { driver: D; transport: MmioTransport; close(): void };
}

/**
 * The devices of type `deviceId` among `reports`: UIO ones with hugetlb
 * DMA, physical ones (given `carveOut`) with the slice of the carve-out
 * that the report's position picks.
 */
function found(reports: ProbeReport[], deviceId: number, carveOut?: CarveOut): Found[] {
  const out: Found[] = [];
  reports.forEach((r, index) => {
    if (r.result?.deviceId !== deviceId) return;
    const spec = r.spec;
    if (spec.kind === 'uio') {
      out.push({ label: spec.device.devicePath, spec, openDriver: (open) => openOnUio(spec, open) });
      return;
    }
    if (!carveOut)
      throw new RangeError(`${describeSpec(spec)}: a physical device needs a carve-out for its DMA memory`);
    const slice = carveOutSlice(carveOut, index);
    out.push({ label: describeSpec(spec), spec, openDriver: (open) => openOnPhysical(spec, slice, open) });
  });
  return out;
}

/**
 * The rng devices found, as contract subjects; `excludeFeatures` turns
 * features off (e.g. EVENT_IDX, to run the flags-based suppression against
 * the device too).
 */
export function rngSubjects(reports: ProbeReport[], excludeFeatures = 0n, carveOut?: CarveOut): RngSubject[] {
  return found(reports, DeviceId.ENTROPY, carveOut).map((device) => ({
    label: excludeFeatures ? `${device.label} (without ${describeFeatures(excludeFeatures)})` : device.label,
    open(options) {
      const {
        driver: rng,
        transport,
        close,
      } = device.openDriver((t, memory) => VirtioRng.open(t, { memory, excludeFeatures, ...options }));
      return { rng, transport, close };
    },
  }));
}

/** The block devices found, as contract subjects (their contents are overwritten). */
export function blkSubjects(reports: ProbeReport[], carveOut?: CarveOut): BlkSubject[] {
  return found(reports, DeviceId.BLOCK, carveOut).map((device) => ({
    label: device.label,
    open(options) {
      const {
        driver: blk,
        transport,
        close,
      } = device.openDriver((t, memory) => VirtioBlk.open(t, { memory, ...options }));
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
export function consoleSubjects(
  reports: ProbeReport[],
  base: Partial<VirtioConsoleOptions> = {},
  portName?: string,
  carveOut?: CarveOut,
): ConsoleSubject[] {
  return found(reports, DeviceId.CONSOLE, carveOut).map((device) => ({
    label: portName ? `${device.label} port ${portName}` : device.label,
    async open(options) {
      const { driver: console, close } = device.openDriver((t, memory) =>
        VirtioConsole.open(t, { memory, ...base, ...options }),
      );
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
