import { VirtioBlk, VirtioConsole, VirtioRng } from '../../../lib/devices';
import { DmaPool, UioInterruptSource } from '../../../lib/platform';
import { DeviceId, describeFeatures, deviceIdName } from '../../../lib/spec';
import { discoverUio, openTransport, probeAll, type ProbeReport, type UioDeviceSpec } from '../../../lib/transport';
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

/**
 * The rng devices found, as contract subjects using hugetlb DMA memory
 * (device address = physical); `excludeFeatures` turns features off (e.g.
 * EVENT_IDX, to run the flags-based suppression against the device too).
 */
export function rngSubjects(reports: ProbeReport[], excludeFeatures = 0n): RngSubject[] {
  return reports
    .filter((r) => r.result?.deviceId === DeviceId.ENTROPY)
    .map((r) => {
      const spec = r.spec as UioDeviceSpec;
      return {
        label: excludeFeatures ? `${spec.device.devicePath} (without ${describeFeatures(excludeFeatures)})` : spec.device.devicePath,
        open(options) {
          const transport = openTransport(spec);
          const memory = DmaPool.hugetlb();
          try {
            const rng = VirtioRng.open(transport, { memory, excludeFeatures, ...options });
            return {
              rng,
              transport,
              close() {
                rng.close();
                memory.close();
              },
            };
          } catch (error) {
            transport.close();
            memory.close();
            throw error;
          }
        },
      };
    });
}

/** Interrupts counted by the UIO driver itself for this transport's line. */
export function uioEventCount(source: unknown): number | undefined {
  return source instanceof UioInterruptSource ? source.total : undefined;
}

/** The block devices found, as contract subjects (their contents are overwritten). */
export function blkSubjects(reports: ProbeReport[]): BlkSubject[] {
  return reports
    .filter((r) => r.result?.deviceId === DeviceId.BLOCK)
    .map((r) => {
      const spec = r.spec as UioDeviceSpec;
      return {
        label: spec.device.devicePath,
        open(options) {
          const transport = openTransport(spec);
          const memory = DmaPool.hugetlb();
          try {
            const blk = VirtioBlk.open(transport, { memory, ...options });
            return {
              blk,
              transport,
              close() {
                blk.close();
                memory.close();
              },
            };
          } catch (error) {
            transport.close();
            memory.close();
            throw error;
          }
        },
      };
    });
}

/** The console devices found (port 0 wired by the lab to a host socket that echoes). */
export function consoleSubjects(reports: ProbeReport[]): ConsoleSubject[] {
  return reports
    .filter((r) => r.result?.deviceId === DeviceId.CONSOLE)
    .map((r) => {
      const spec = r.spec as UioDeviceSpec;
      return {
        label: spec.device.devicePath,
        async open(options) {
          const transport = openTransport(spec);
          const memory = DmaPool.hugetlb();
          try {
            const console = VirtioConsole.open(transport, { memory, ...options });
            return {
              console,
              close() {
                console.close();
                memory.close();
              },
            };
          } catch (error) {
            transport.close();
            memory.close();
            throw error;
          }
        },
      };
    });
}
