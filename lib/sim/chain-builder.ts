import type { DeviceMemory } from '../platform';
import type { SimRule } from './strict-rules';

export interface ChainBuffers {
  readonly readable: Uint8Array[];
  readonly writable: Uint8Array[];
  readonly readableBytes: number;
  readonly writableBytes: number;
}

/** A broken rule found while walking a chain. */
export interface ChainFault {
  readonly rule: SimRule;
  readonly message: string;
}

const MAX_CHAIN_BYTES = 2 ** 32;

/**
 * The buffers of one chain as a walk collects them, resolved to views of
 * DMA memory, with the rules every element meets: device-readable
 * elements before device-writable ones (§2.7.4.2, §2.8.17), reachable
 * memory, and at most 2^32 bytes in all (§2.7.5.2; a used len is 32 bits
 * in either format).
 */
export class ChainBuilder {
  readonly readable: Uint8Array[] = [];
  readonly writable: Uint8Array[] = [];
  readableBytes = 0;
  writableBytes = 0;

  constructor(
    private readonly memory: DeviceMemory,
    private readonly orderRule: SimRule,
  ) {}

  /** Adds one element; `what` names it in messages ("chain from head 3: descriptor 4"). */
  add(addr: bigint, len: number, writable: boolean, what: string): ChainFault | undefined {
    const buffer = len === 0 ? (this.memory.resolve(addr, 0) ?? new Uint8Array(0)) : this.memory.resolve(addr, len);
    if (!buffer)
      return {
        rule: 'buffer-unreachable',
        message: `${what} buffer at 0x${addr.toString(16)} (${len} bytes) is not in device-reachable memory`,
      };
    if (writable) {
      this.writable.push(buffer);
      this.writableBytes += len;
    } else {
      if (this.writable.length > 0)
        return { rule: this.orderRule, message: `${what} is device-readable but follows a device-writable one` };
      this.readable.push(buffer);
      this.readableBytes += len;
    }
    if (this.readableBytes + this.writableBytes > MAX_CHAIN_BYTES)
      return { rule: 'chain-too-long', message: `${what}: the chain describes more than 2^32 bytes` };
    return undefined;
  }

  result(): ChainBuffers {
    const { readable, writable, readableBytes, writableBytes } = this;
    return { readable, writable, readableBytes, writableBytes };
  }
}
