import { native } from './addon';
import type { RegisterBlock } from './register-block';
import { uioMapExtent, type UioDeviceInfo, type UioMap, type UioWindowSource } from './uio-sysfs';
import { invalidArgType, invalidArgValue, outOfRange } from '../errors';
import { hex } from '../util/hex';

/** Needed before the page arithmetic below; the addon checks everything else. */
function checkInteger(name: string, value: number): void {
  if (typeof value !== 'number') throw invalidArgType(`${name} must be a number`);
  if (!Number.isInteger(value) || value < 0 || value > Number.MAX_SAFE_INTEGER) {
    throw outOfRange(`${name} must be a non-negative safe integer, got ${value}`);
  }
}

export interface UioWindowOptions {
  /**
   * Bytes of the window, instead of the device tree's or the map's: for a
   * device tree that is wrong, or a device without one. At most what the
   * map holds from its offset (the kernel maps no more).
   */
  windowSize?: number;
}

/** The window openUio maps: map, size, and where the size came from. */
export interface UioWindow {
  map: UioMap;
  size: number;
  from: UioWindowSource;
  /** Why the device tree was not used, or was cut to the map. */
  note?: string;
}

/**
 * Opens register windows. Each returns the addon's region object directly,
 * so register accesses cost one native call and nothing more.
 */
export class MmioWindow {
  /**
   * Map `mapIndex` of a UIO device. The kernel selects map N by the mmap
   * offset N * pagesize; the registers begin at maps/mapN/offset inside the
   * first page. The window is the device's own extent (see uioWindow), not
   * the page-rounded map, so an access past it is a RangeError and never
   * reaches a neighbouring device that shares the page.
   */
  static openUio(device: UioDeviceInfo, mapIndex = 0, options: UioWindowOptions = {}): RegisterBlock & Disposable {
    const { map, size } = MmioWindow.uioWindow(device, mapIndex, options);
    return new native.MmioRegion(device.devicePath, mapIndex * native.pageSize, map.offset, size, false);
  }

  /**
   * The window openUio would map, without mapping it: `options.windowSize`
   * when given ('caller'); else the map's `window` as UioSysfs found it (the
   * device-tree `reg` size, 'device-tree', or the map's extent, 'uio-map');
   * else (a hand-made map) the map's extent. Never more than the map holds
   * from its offset. Throws RangeError for a missing map, an offset not
   * below the map's size, or a windowSize outside [1, extent].
   */
  static uioWindow(device: UioDeviceInfo, mapIndex = 0, options: UioWindowOptions = {}): UioWindow {
    const map = device.maps.find((m) => m.index === mapIndex);
    if (!map) {
      throw invalidArgValue(
        `${device.devicePath} has no map ${mapIndex} (maps: ${device.maps.map((m) => m.index).join(', ') || 'none'})`,
        'range',
      );
    }
    const extent = uioMapExtent(map);
    if (extent <= 0) {
      throw outOfRange(
        `${device.devicePath} map ${mapIndex}: offset ${hex(map.offset)} is not below size ${hex(map.size)}`,
      );
    }
    const { windowSize } = options;
    if (windowSize !== undefined) {
      checkInteger('windowSize', windowSize);
      if (windowSize === 0 || windowSize > extent) {
        throw outOfRange(
          `windowSize ${hex(windowSize)} for ${device.devicePath} map ${mapIndex} must be in [1, ${hex(extent)}` +
            `], the bytes the map holds from offset ${hex(map.offset)}`,
        );
      }
      return { map, size: windowSize, from: 'caller' };
    }
    if (map.window === undefined || map.windowFrom === undefined) return { map, size: extent, from: 'uio-map' };
    if (!Number.isInteger(map.window) || map.window <= 0 || map.window > extent) {
      return {
        map,
        size: extent,
        from: 'uio-map',
        note: `the map's window ${map.window} is not in [1, ${hex(extent)}]; cut to the map`,
      };
    }
    return { map, size: map.window, from: map.windowFrom, ...(map.windowNote ? { note: map.windowNote } : {}) };
  }

  /**
   * Map a physical range through /dev/mem (opened O_SYNC, so uncached). The
   * base need not be page aligned.
   */
  static openPhysical(base: bigint, size: number): RegisterBlock & Disposable {
    if (typeof base !== 'bigint' || base < 0n) throw invalidArgType('base must be a non-negative bigint');
    const page = BigInt(native.pageSize);
    const aligned = (base / page) * page;
    return new native.MmioRegion('/dev/mem', aligned, Number(base - aligned), size, true);
  }

  /** Map `size` bytes of a regular file at `offset` (tests and the sim). */
  static openFile(path: string, offset: number, size: number): RegisterBlock & Disposable {
    checkInteger('offset', offset);
    const page = native.pageSize;
    const aligned = Math.floor(offset / page) * page;
    return new native.MmioRegion(path, aligned, offset - aligned, size, false);
  }
}
