import { readFileSync, realpathSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

import { DiscoveryError } from '../errors';

/** One entry of a node's `reg` property. */
export interface DeviceTreeRegEntry {
  /** The address as `reg` gives it, in the parent bus's address space. */
  busAddress: bigint;
  /**
   * The CPU physical address, after every parent's `ranges` (what the kernel
   * puts in the platform device's resource, and so in the UIO map);
   * undefined when it cannot be translated.
   */
  address?: bigint;
  size: bigint;
}

/** A node's `reg`, read from sysfs (/sys/firmware/devicetree/base/...). */
export interface DeviceTreeReg {
  /** The node's directory, symlinks resolved. */
  node: string;
  /** The parent's #address-cells and #size-cells, as the kernel finds them. */
  addressCells: number;
  sizeCells: number;
  entries: DeviceTreeRegEntry[];
}

/** Devicetree spec §2.3.5: what the kernel assumes when no node up the tree says. */
const DEFAULT_ADDRESS_CELLS = 2;
const DEFAULT_SIZE_CELLS = 1;
/** The kernel's OF_MAX_ADDR_CELLS; of_read_number keeps the low 64 bits of longer numbers. */
const MAX_CELLS = 4;
const U64 = (1n << 64n) - 1n;

function fail(message: string, cause?: unknown): never {
  throw new DiscoveryError(message, cause === undefined ? undefined : { cause });
}

/** A property's bytes; undefined when the node has no such property. */
function readProperty(node: string, name: string): Buffer | undefined {
  const path = join(node, name);
  try {
    return readFileSync(path);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return fail(`cannot read ${path}`, error);
  }
}

/** of_read_number: big-endian 32-bit cells, the low 64 bits kept. */
function readNumber(bytes: Buffer, at: number, cells: number): bigint {
  let value = 0n;
  for (let i = 0; i < cells; i++) value = ((value << 32n) | BigInt(bytes.readUInt32BE(at + 4 * i))) & U64;
  return value;
}

/**
 * The root of the flattened tree sysfs shows: /sys/firmware/devicetree/base
 * (/proc/device-tree links to it), or the same path under a test's fake root.
 */
function isRoot(dir: string): boolean {
  return basename(dir) === 'base' && basename(dirname(dir)) === 'devicetree';
}

/**
 * What the kernel's of_bus_n_addr_cells / of_bus_n_size_cells give for the
 * children of `node`: the first #address-cells (#size-cells) found from
 * `node` up to the root, else the spec's defaults 2 and 1.
 */
function childCells(node: string, root: string): { address: number; size: number } {
  const find = (name: string, fallback: number): number => {
    for (let dir = node; ; dir = dirname(dir)) {
      const bytes = readProperty(dir, name);
      if (bytes !== undefined) {
        if (bytes.length !== 4) fail(`${join(dir, name)} has ${bytes.length} bytes, not one 4-byte cell`);
        const cells = bytes.readUInt32BE(0);
        if (cells < 1 || cells > MAX_CELLS) fail(`${join(dir, name)} is ${cells}; this reader takes 1 to ${MAX_CELLS}`);
        return cells;
      }
      if (dir === root) return fallback;
    }
  };
  return { address: find('#address-cells', DEFAULT_ADDRESS_CELLS), size: find('#size-cells', DEFAULT_SIZE_CELLS) };
}

/**
 * Translates a bus address of a child of `parent` to a CPU address the way
 * the kernel's __of_translate_address does for the default bus: through the
 * `ranges` of each parent below the root (an empty `ranges` is 1:1; a
 * missing one, or an address no range covers, is not translatable).
 */
function translate(address: bigint, parent: string, root: string): bigint | undefined {
  let value = address;
  for (let bus = parent; bus !== root; bus = dirname(bus)) {
    const ranges = readProperty(bus, 'ranges');
    if (ranges === undefined) return undefined;
    if (ranges.length === 0) continue;
    const child = childCells(bus, root);
    const parentAddressCells = childCells(dirname(bus), root).address;
    const width = 4 * (child.address + parentAddressCells + child.size);
    if (ranges.length % width !== 0)
      fail(
        `${join(bus, 'ranges')} has ${ranges.length} bytes, not a multiple of ${width} (` +
          `${child.address}+${parentAddressCells}` +
          `+${child.size} cells)`,
      );
    let translated: bigint | undefined;
    for (let at = 0; at < ranges.length && translated === undefined; at += width) {
      const childBase = readNumber(ranges, at, child.address);
      const parentBase = readNumber(ranges, at + 4 * child.address, parentAddressCells);
      const size = readNumber(ranges, at + 4 * (child.address + parentAddressCells), child.size);
      if (value >= childBase && value < childBase + size) translated = (parentBase + (value - childBase)) & U64;
    }
    if (translated === undefined) return undefined;
    value = translated;
  }
  return value;
}

/**
 * Reads the `reg` property of a device-tree node (a device's `of_node`
 * link in sysfs): its (address, size) entries in the parent's
 * #address-cells / #size-cells, each address also translated to the CPU
 * physical address. Throws DiscoveryError when the node is not under a
 * devicetree root, has no `reg`, or any of it is malformed.
 */
export function readDeviceTreeReg(ofNode: string): DeviceTreeReg {
  let node: string;
  try {
    node = realpathSync(ofNode);
  } catch (error) {
    return fail(`cannot resolve ${ofNode}`, error);
  }
  let root = dirname(node);
  while (!isRoot(root)) {
    if (dirname(root) === root) fail(`${node} is not inside a devicetree/base directory`);
    root = dirname(root);
  }
  if (node === root) fail(`${node} is the devicetree root, not a device node`);
  const parent = dirname(node);
  const cells = childCells(parent, root);
  const reg = readProperty(node, 'reg');
  if (reg === undefined) fail(`${node} has no reg property`);
  const width = 4 * (cells.address + cells.size);
  if (reg.length === 0 || reg.length % width !== 0) {
    fail(
      `${join(node, 'reg')} has ${reg.length} bytes, not a non-zero multiple of ${width} ` +
        `(#address-cells ${cells.address}` +
        `, #size-cells ${cells.size} of the parent)`,
    );
  }
  const entries: DeviceTreeRegEntry[] = [];
  for (let at = 0; at < reg.length; at += width) {
    const busAddress = readNumber(reg, at, cells.address);
    const size = readNumber(reg, at + 4 * cells.address, cells.size);
    const address = translate(busAddress, parent, root);
    entries.push(address === undefined ? { busAddress, size } : { busAddress, address, size });
  }
  return { node, addressCells: cells.address, sizeCells: cells.size, entries };
}
