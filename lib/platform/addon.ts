/**
 * The only file that loads the C++ addon (native/), and the TypeScript
 * declaration of everything it exports. Native failures are thrown as the
 * library's typed errors through the factory installed here.
 */
import bindings from 'bindings';

import { ClosedError, DmaError, SyscallError, VirtioError } from '../errors';
import type { RegisterBlock } from './register-block';
import { syscallHint } from './syscall-hints';

/** A mapped register window: the addon's object is the RegisterBlock itself. */
export interface NativeMmioRegion extends RegisterBlock {
  /** Benchmark probes: the same readl/writel through node-addon-api's method dispatch. */
  readlViaWrapper(offset: number): number;
  writelViaWrapper(offset: number, value: number): void;
  /** The env cleanup hook's write (native/exit_write.cc); see RegisterBlock.armExitWrite. */
  armExitWrite(offset: number, value: number, pollMs?: number): void;
  disarmExitWrite(): void;
  /** Whether a write is armed for this thread's teardown. */
  readonly exitWriteArmed: boolean;
}

export type DmaKind = 'hugetlb' | 'physical' | 'anonymous';

export interface NativeDmaMemory {
  /**
   * External ArrayBuffer over the memory; detached by free(). The memory is
   * unmapped only once the garbage collector finds nothing that can reach it
   * (a buffer made by transfer(), a thread-pool job writing into a view).
   */
  readonly view: ArrayBuffer;
  /** Device (bus) address of view[0]. */
  readonly iova: bigint;
  readonly size: number;
  readonly kind: DmaKind;
  readonly freed: boolean;
  /** Device address of byte `offset` (hugetlb: read again from pagemap). */
  translate(offset: number): bigint;
  free(): void;
}

export interface NativeUioFile {
  readonly fd: number;
  readonly path: string;
  readonly closed: boolean;
  enable(): void;
  disable(): void;
  /** Total interrupt count, or null when none is pending. */
  readCount(): number | null;
  close(): void;
}

export interface EpollEvent {
  fd: number;
  events: number;
}

export interface NativeEpollSet {
  readonly fd: number;
  readonly size: number;
  readonly closed: boolean;
  add(fd: number, events?: number): void;
  modify(fd: number, events: number): void;
  remove(fd: number): void;
  ref(): this;
  unref(): this;
  close(): void;
}

export interface EpollConstants {
  EPOLLIN: number;
  EPOLLPRI: number;
  EPOLLOUT: number;
  EPOLLERR: number;
  EPOLLHUP: number;
  EPOLLRDHUP: number;
  EPOLLET: number;
}

/**
 * What the bench addon (build/Release/virtio_mmio_bench.node) exports: built
 * from bench/native in a checkout, loaded only by bench/ programs and their
 * test, never by the library nor shipped with it.
 */
export interface NativeBenchProbes {
  rawNoop(): void;
  wrappedNoop(): void;
  /** Nanoseconds for `iterations` readl-equivalent loads done in C; a TypeError unless `region` is an MmioRegion. */
  cReadLoop(region: NativeMmioRegion, offset: number, iterations: number): number;
  cWriteLoop(region: NativeMmioRegion, offset: number, iterations: number): number;
  /** A second shared mapping of a file's first `size` bytes. */
  mapFileView(path: string, size: number): ArrayBuffer;
}

export interface NativeAddon {
  MmioRegion: new (path: string, mmapOffset: number | bigint, windowOffset: number, size: number, sync?: boolean) => NativeMmioRegion;
  UioFile: new (pathOrFd: string | number, label?: string) => NativeUioFile;
  EpollSet: new (callback: (events: EpollEvent[]) => void) => NativeEpollSet;
  allocHugetlb(size: number): NativeDmaMemory;
  mapPhysical(phys: bigint | number, size: number, cached?: boolean): NativeDmaMemory;
  allocAnonymous(size: number, iova: bigint | number): NativeDmaMemory;
  mb(): void;
  rmb(): void;
  wmb(): void;
  dmaRmb(): void;
  dmaWmb(): void;
  eventfdCreate(initval?: number, semaphore?: boolean): number;
  eventfdWrite(fd: number, value?: number | bigint): void;
  eventfdRead(fd: number): bigint | null;
  pipe(): [number, number];
  socketpair(): [number, number];
  closeFd(fd: number): void;
  setErrorFactory(factory: (kind: string, message: string, props: Record<string, unknown>) => Error): void;
  readonly pageSize: number;
  readonly constants: EpollConstants;
}

/** Turns the addon's (kind, message, props) into the library's error classes. */
export function makeNativeError(kind: string, message: string, props: Record<string, unknown>): Error {
  switch (kind) {
    case 'syscall': {
      const code = String(props.code);
      const syscall = String(props.syscall);
      const path = typeof props.path === 'string' ? props.path : undefined;
      return new SyscallError({
        message,
        errno: Number(props.errno),
        code,
        syscall,
        path,
        hint: syscallHint({ code, syscall, path }),
      });
    }
    case 'range':
      return new RangeError(message);
    case 'type':
      return new TypeError(message);
    case 'closed':
      return new ClosedError(message);
    case 'dma':
      return new DmaError(DmaError.NOT_PRESENT, message);
    case 'dma-contiguity':
      return new DmaError(DmaError.NOT_CONTIGUOUS, message);
    default:
      return new VirtioError('ERR_VIRTIO_NATIVE', message);
  }
}

export const native: NativeAddon = bindings('virtio_mmio');
native.setErrorFactory(makeNativeError);
