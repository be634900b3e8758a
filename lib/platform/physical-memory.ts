import { native, type NativeDmaMemory } from './addon';
import { invalidArgType, outOfRange } from '../errors';

/** Maps `size` bytes of physical memory at `base` (the addon's mapPhysical, cached). */
export type PhysicalMapper = (base: bigint, size: number) => NativeDmaMemory;

/**
 * Reads physical memory through /dev/mem, one short-lived mapping per
 * read: for looking at rings a device shares with another driver. The
 * mapping is cached, as ring memory is ordinary RAM. With
 * CONFIG_STRICT_DEVMEM the kernel refuses RAM it does not consider I/O or
 * reserved, and the read throws SyscallError (EPERM) with a hint.
 */
export class PhysicalMemory {
  constructor(private readonly map: PhysicalMapper = (base, size) => native.mapPhysical(base, size, true)) {}

  /** A copy of the `length` bytes at physical address `address`. */
  read(address: bigint, length: number): Uint8Array {
    if (typeof address !== 'bigint' || address < 0n) throw invalidArgType('address must be a non-negative bigint');
    if (!Number.isInteger(length) || length < 1 || length > 1 << 24)
      throw outOfRange(`length must be an integer in [1, 2^24], got ${length}`);
    const mapped = this.map(address, length);
    try {
      return new Uint8Array(mapped.view, 0, length).slice();
    } finally {
      mapped.free();
    }
  }
}
