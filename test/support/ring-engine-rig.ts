import type { Barriers } from '../../lib/platform/barriers';
import type { DmaAllocator, DmaRegion } from '../../lib/platform/dma-allocator';
import { PackedRingEngine } from '../../lib/queue/packed-ring-engine';
import type { QueueBuffer, QueueRequest, QueueStats } from '../../lib/queue/queue-types';
import type { RingEngine } from '../../lib/queue/ring-engine';
import { SplitRingEngine } from '../../lib/queue/split-ring-engine';
import type { QueueLayout } from '../../lib/transport';
import { FakePackedDevice, FakeSplitDevice } from './fake-ring-device';

/**
 * DMA memory for engine tests: a bump allocator over one zeroed
 * ArrayBuffer, seen by the device at `base + offset`. Nothing is ever
 * reused; allocate() and free() are only counted.
 */
export class FakeDma implements DmaAllocator {
  readonly buffer: ArrayBuffer;
  allocations = 0;
  frees = 0;
  private top = 0;

  constructor(
    readonly base: bigint,
    bytes = 1 << 21,
  ) {
    this.buffer = new ArrayBuffer(bytes);
  }

  allocate(size: number, align = 16): DmaRegion {
    if (!Number.isInteger(size) || size <= 0) throw new RangeError(`bad size ${size}`);
    if (!Number.isInteger(align) || align <= 0 || (align & (align - 1)) !== 0)
      throw new RangeError(`bad alignment ${align}`);
    // Aligned in device-address space, whatever the base.
    const a = BigInt(align);
    const iova = ((this.base + BigInt(this.top) + a - 1n) / a) * a;
    const offset = Number(iova - this.base);
    if (offset + size > this.buffer.byteLength) throw new RangeError('FakeDma is out of memory');
    this.top = offset + size;
    this.allocations++;
    new Uint8Array(this.buffer, offset, size).fill(0);
    return { view: this.buffer, offset, size, iova };
  }

  free(): void {
    this.frees++;
  }

  close(): void {}

  /** Device side: the `length` bytes at device address `iova`. */
  at(iova: bigint, length: number): DataView {
    const offset = iova - this.base;
    if (offset < 0n || offset + BigInt(length) > BigInt(this.buffer.byteLength)) {
      throw new RangeError(`device address 0x${iova.toString(16)} (+${length}) is not backed by memory`);
    }
    return new DataView(this.buffer, Number(offset), length);
  }
}

/** Barriers that do nothing: the fake device runs between calls, never concurrently. */
export const noBarriers: Barriers = { mb() {}, rmb() {}, wmb() {}, dmaRmb() {}, dmaWmb() {} };

export const newStats = (): QueueStats => ({
  submitted: 0,
  completed: 0,
  publishes: 0,
  notifications: 0,
  notificationsSuppressed: 0,
  atomics: 0,
  indirect: 0,
  polls: 0,
  polledCompletions: 0,
  spins: 0,
  spinHits: 0,
  usedLenIgnored: 0,
  resets: 0,
  inOrderBatches: 0,
  inOrderBatched: 0,
});

export type Format = 'split' | 'packed';
type DeviceOf<F extends Format> = F extends 'split' ? FakeSplitDevice : FakePackedDevice;

export interface RigOptions {
  size?: number;
  features?: bigint;
  indirectMax?: number;
  layout?: QueueLayout;
  /** Device address of the memory (default: 64 KiB below 2^35, so buffers straddle a 4 GiB line). */
  base?: bigint;
}

export interface Rig<F extends Format = Format> {
  format: F;
  engine: RingEngine;
  memory: FakeDma;
  device: DeviceOf<F>;
  stats: QueueStats;
  /** Every onUsed(id, len) call, in order. */
  used: Array<[number, number]>;
  /** 128 KiB of buffer memory, allocated before the engine. */
  data: DmaRegion;
  /** A fresh fake device over the engine's memory (after a reset). */
  newDevice(): DeviceOf<F>;
  /** Places a request of buffers with these lengths; returns its id and its buffers' device addresses. */
  submit(readable: number[], writable?: number[]): { id: number; readable: bigint[]; writable: bigint[] };
}

/** Rig<'split'> | Rig<'packed'>, so that testing `format` narrows `device`. */
export type AnyRig<F extends Format = Format> = F extends 'split' ? Rig<'split'> : Rig<'packed'>;

export const DATA_BYTES = 1 << 17;

export function ringRig<F extends Format>(format: F, options: RigOptions = {}): AnyRig<F> {
  const memory = new FakeDma(options.base ?? 0x7_ffff_0000n);
  const data = memory.allocate(DATA_BYTES, 4096);
  const stats = newStats();
  const used: Array<[number, number]> = [];
  const engineOptions = {
    size: options.size ?? 16,
    memory,
    layout: options.layout ?? { legacy: false as const },
    features: options.features ?? 0n,
    barriers: noBarriers,
    indirectMax: options.indirectMax ?? 32,
    stats,
    onUsed: (id: number, len: number) => void used.push([id, len]),
  };
  const engine = format === 'split' ? new SplitRingEngine(engineOptions) : new PackedRingEngine(engineOptions);
  const newDevice = (): DeviceOf<F> =>
    (format === 'split' ? new FakeSplitDevice(memory, engine) : new FakePackedDevice(memory, engine)) as DeviceOf<F>;
  // Buffers are taken round-robin from `data`, 64-byte aligned, so addresses vary from request to request.
  let cursor = 0;
  const take = (length: number): QueueBuffer => {
    const room = Math.ceil(Math.max(length, 1) / 64) * 64;
    if (cursor + room > DATA_BYTES) cursor = 0;
    const buffer = { region: data, offset: cursor, length };
    cursor += room;
    return buffer;
  };
  const address = (b: QueueBuffer): bigint => data.iova + BigInt(b.offset!);
  const rig: Rig<F> = {
    format,
    engine,
    memory,
    device: newDevice(),
    stats,
    used,
    data,
    newDevice,
    submit(readableLengths, writableLengths = []) {
      const request: QueueRequest = { readable: readableLengths.map(take), writable: writableLengths.map(take) };
      const id = engine.place(request, readableLengths.length + writableLengths.length);
      return { id, readable: request.readable!.map(address), writable: request.writable!.map(address) };
    },
  };
  return rig as unknown as AnyRig<F>;
}
