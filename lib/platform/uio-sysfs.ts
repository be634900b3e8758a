import { existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { basename, join } from 'node:path';

import { DiscoveryError } from '../errors';

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
      return readFileSync(join(dir, 'device', 'of_node', 'compatible'), 'latin1').split('\0').includes('virtio,mmio');
    } catch {
      return false;
    }
  }

  read(index: number): UioDeviceInfo {
    if (!Number.isInteger(index) || index < 0) throw new RangeError(`UIO index must be a non-negative integer, got ${index}`);
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
    if (existsSync(deviceLink)) {
      info.parent = basename(realpathSync(deviceLink));
      const compatible = join(deviceLink, 'of_node', 'compatible');
      if (existsSync(compatible)) {
        info.compatible = readText(compatible).split('\0').filter((s) => s.length > 0);
      }
    }
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
