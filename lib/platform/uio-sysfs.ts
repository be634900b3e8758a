import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';

import { DiscoveryError, outOfRange } from '../errors';
import { native } from './addon';
import { readDeviceTreeReg, type DeviceTreeReg } from './device-tree-reg';
import { hex } from '../util/hex';

/**
 * Where a register window's size comes from: the device-tree `reg` entry
 * of the device (its real extent), the UIO map (page-rounded by current
 * kernels, so it may cover neighbouring devices), or the caller.
 */
export type UioWindowSource = 'device-tree' | 'uio-map' | 'caller';

/** One memory map of a UIO device (/sys/class/uio/uioN/maps/mapM). */
export interface UioMap {
  index: number;
  name: string;
  /** Page-aligned physical address of the mapping. */
  addr: bigint;
  /**
   * Size in bytes as sysfs reports it: current kernels page-round it and
   * include `offset`; older ones gave an unaligned addr and the raw size.
   */
  size: number;
  /** Where the device's registers begin inside the first page. */
  offset: number;
  /**
   * Bytes of the register window from `offset` on: the size of the
   * device-tree `reg` entry at this map's physical address, or, without one,
   * what the map holds past `offset` (see uioMapExtent). UioSysfs always sets
   * it; a hand-made map without it gets the map's extent.
   */
  window?: number;
  windowFrom?: Exclude<UioWindowSource, 'caller'>;
  /** Why the device tree was not used, or was cut to the map. */
  windowNote?: string;
}

export interface UioDeviceInfo {
  index: number;
  /** The UIO driver's name for it (uio_pdrv_genirq gives the DT node name, e.g. "virtio_mmio"). */
  name: string;
  version: string;
  devicePath: string;
  sysfsPath: string;
  /** The parent platform device, e.g. "a003e00.virtio_mmio", when known. */
  parent?: string;
  /** The device-tree `compatible` strings of the parent, when it has an of_node. */
  compatible: string[];
  maps: UioMap[];
}

/**
 * The bytes a UIO map holds from `offset` on. Current kernels give a
 * page-aligned addr and a size page-rounded to include `offset`; older ones
 * an unaligned addr (its in-page part is `offset`) and the raw size.
 */
export function uioMapExtent(map: Pick<UioMap, 'addr' | 'size' | 'offset'>): number {
  return map.addr % BigInt(native.pageSize) === 0n ? map.size - map.offset : map.size;
}

/** The physical address where the map's registers begin (for either layout above). */
function uioMapStart(map: Pick<UioMap, 'addr' | 'offset'>): bigint {
  return map.addr % BigInt(native.pageSize) === 0n ? map.addr + BigInt(map.offset) : map.addr;
}

/**
 * Each map's window from the device tree: the `reg` entry whose CPU address
 * is where the map's registers begin (entry M for map M when several match,
 * as the kernel makes map M from entry M), cut to what the map holds.
 * Without a usable entry, the map's extent, with the reason.
 */
function withWindow(map: UioMap, reg: DeviceTreeReg | Error | undefined): UioMap {
  const extent = uioMapExtent(map);
  // A map whose offset is not below its size is refused when opened (MmioWindow.openUio).
  const fromMap = (note: string): UioMap => ({
    ...map,
    window: Math.max(extent, 0),
    windowFrom: 'uio-map',
    windowNote: note,
  });
  if (reg === undefined) return fromMap('no device-tree node');
  if (reg instanceof Error) return fromMap(`device tree not used: ${reg.message}`);
  const start = uioMapStart(map);
  const matches = reg.entries.filter((e) => e.address === start);
  const entry = matches.find((e) => reg.entries.indexOf(e) === map.index) ?? matches[0];
  if (!entry) return fromMap(`no reg entry of ${reg.node} is at ${hex(start)}`);
  if (entry.size === 0n) return fromMap(`the reg entry at ${hex(start)} has size 0`);
  if (entry.size > BigInt(extent))
    return fromMap(
      `reg size ${hex(entry.size)} is larger than the ${hex(extent)} bytes the map holds from offset ` +
        `${hex(map.offset)}` +
        `; cut to the map`,
    );
  return { ...map, window: Number(entry.size), windowFrom: 'device-tree' };
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (error) {
    throw new DiscoveryError(`cannot read ${path}`, { cause: error });
  }
}

function readNumber(path: string): bigint {
  const text = readText(path);
  if (!/^(0x[0-9a-f]+|\d+)$/i.test(text)) throw new DiscoveryError(`${path} holds "${text}", not a number`);
  return BigInt(text);
}

function toSafeNumber(path: string, value: bigint): number {
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new DiscoveryError(`${path} value ${value} is too large`);
  return Number(value);
}

/**
 * UIO discovery from sysfs, rooted at an injectable directory so tests can
 * give it a fake tree.
 */
export class UioSysfs {
  constructor(
    private readonly classRoot = '/sys/class/uio',
    private readonly devRoot = '/dev',
  ) {}

  /** Every UIO device, by index; [] when there is no UIO class at all. */
  list(): UioDeviceInfo[] {
    return this.indices().map((index) => this.read(index));
  }

  /**
   * UIO devices that are virtio-mmio transports (by name or device-tree
   * compatible). Other devices are not parsed, so a malformed unrelated
   * UIO device does not stop the scan; a malformed transport still throws.
   */
  listVirtioMmio(): UioDeviceInfo[] {
    return this.indices()
      .filter((index) => this.looksLikeVirtioMmio(index))
      .map((index) => this.read(index));
  }

  private indices(): number[] {
    if (!existsSync(this.classRoot)) return [];
    return readdirSync(this.classRoot)
      .filter((entry) => /^uio\d+$/.test(entry))
      .map((entry) => Number(entry.slice(3)))
      .sort((a, b) => a - b);
  }

  private looksLikeVirtioMmio(index: number): boolean {
    const dir = join(this.classRoot, `uio${index}`);
    try {
      if (readFileSync(join(dir, 'name'), 'utf8').trim() === 'virtio_mmio') return true;
    } catch {
      // no readable name: the compatible may still say what it is
    }
    try {
      return readFileSync(join(dir, 'device', 'of_node', 'compatible'), 'latin1')
        .split('\0')
        .includes('virtio,mmio');
    } catch {
      return false;
    }
  }

  read(index: number): UioDeviceInfo {
    if (!Number.isInteger(index) || index < 0)
      throw outOfRange(`UIO index must be a non-negative integer, got ${index}`);
    const sysfsPath = join(this.classRoot, `uio${index}`);
    if (!existsSync(sysfsPath)) throw new DiscoveryError(`no UIO device ${sysfsPath}`);
    const info: UioDeviceInfo = {
      index,
      name: readText(join(sysfsPath, 'name')),
      version: existsSync(join(sysfsPath, 'version')) ? readText(join(sysfsPath, 'version')) : '',
      devicePath: join(this.devRoot, `uio${index}`),
      sysfsPath,
      compatible: [],
      maps: this.readMaps(sysfsPath),
    };
    const deviceLink = join(sysfsPath, 'device');
    let reg: DeviceTreeReg | Error | undefined;
    if (existsSync(deviceLink)) {
      info.parent = basename(realpathSync(deviceLink));
      const ofNode = join(deviceLink, 'of_node');
      const compatible = join(ofNode, 'compatible');
      if (existsSync(compatible)) {
        info.compatible = readText(compatible)
          .split('\0')
          .filter((s) => s.length > 0);
      }
      // A malformed or unreadable node costs the exact window, never the device.
      if (existsSync(ofNode)) {
        try {
          reg = readDeviceTreeReg(ofNode);
        } catch (error) {
          reg = error instanceof Error ? error : new Error(String(error));
        }
      }
    }
    info.maps = info.maps.map((map) => withWindow(map, reg));
    return info;
  }

  private readMaps(sysfsPath: string): UioMap[] {
    const mapsDir = join(sysfsPath, 'maps');
    if (!existsSync(mapsDir)) return [];
    return readdirSync(mapsDir)
      .filter((entry) => /^map\d+$/.test(entry))
      .map((entry) => {
        const dir = join(mapsDir, entry);
        const offsetPath = join(dir, 'offset');
        return {
          index: Number(entry.slice(3)),
          name: existsSync(join(dir, 'name')) ? readText(join(dir, 'name')) : '',
          addr: readNumber(join(dir, 'addr')),
          size: toSafeNumber(join(dir, 'size'), readNumber(join(dir, 'size'))),
          // Kernels before 3.x have no offset attribute: registers start at the page.
          offset: existsSync(offsetPath) ? toSafeNumber(offsetPath, readNumber(offsetPath)) : 0,
        };
      })
      .sort((a, b) => a.index - b.index);
  }
}
