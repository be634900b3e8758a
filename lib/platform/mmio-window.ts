import { native } from './addon';
import type { RegisterBlock } from './register-block';
import type { UioDeviceInfo } from './uio-sysfs';

/** Needed before the page arithmetic below; the addon checks everything else. */
function checkInteger(name: string, value: number): void {
  if (typeof value !== 'number') throw new TypeError(`${name} must be a number`);
  if (!Number.isInteger(value) || value < 0 || value > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(`${name} must be a non-negative safe integer, got ${value}`);
  }
}

/**
 * Opens register windows. Each returns the addon's region object directly,
 * so register accesses cost one native call and nothing more.
 */
export class MmioWindow {
  /**
   * Map `mapIndex` of a UIO device. The kernel selects map N by the mmap
   * offset N * pagesize; the registers begin at maps/mapN/offset inside the
   * first page, and the window runs to the end of the mapped size.
   */
  static openUio(device: UioDeviceInfo, mapIndex = 0): RegisterBlock {
    const map = device.maps.find((m) => m.index === mapIndex);
    if (!map) {
      throw new RangeError(`${device.devicePath} has no map ${mapIndex} (maps: ${device.maps.map((m) => m.index).join(', ') || 'none'})`);
    }
    // Current kernels: addr page-aligned, size page-rounded including offset.
    // Older ones: addr unaligned (offset = addr's in-page part), size raw.
    const alignedAddr = map.addr % BigInt(native.pageSize) === 0n;
    const windowSize = alignedAddr ? map.size - map.offset : map.size;
    if (windowSize <= 0) {
      throw new RangeError(`${device.devicePath} map ${mapIndex}: offset 0x${map.offset.toString(16)} is not below size 0x${map.size.toString(16)}`);
    }
    return new native.MmioRegion(device.devicePath, mapIndex * native.pageSize, map.offset, windowSize, false);
  }

  /**
   * Map a physical range through /dev/mem (opened O_SYNC, so uncached). The
   * base need not be page aligned.
   */
  static openPhysical(base: bigint, size: number): RegisterBlock {
    if (typeof base !== 'bigint' || base < 0n) throw new TypeError('base must be a non-negative bigint');
    const page = BigInt(native.pageSize);
    const aligned = (base / page) * page;
    return new native.MmioRegion('/dev/mem', aligned, Number(base - aligned), size, true);
  }

  /** Map `size` bytes of a regular file at `offset` (tests and the sim). */
  static openFile(path: string, offset: number, size: number): RegisterBlock {
    checkInteger('offset', offset);
    const page = native.pageSize;
    const aligned = Math.floor(offset / page) * page;
    return new native.MmioRegion(path, aligned, offset - aligned, size, false);
  }
}
