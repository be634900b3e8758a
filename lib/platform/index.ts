export { POLL_TIMEOUT_MAX_MS, checkPollTimeout, type RegisterBlock, type AccessWidth } from './register-block';
export { MmioWindow, type UioWindow, type UioWindowOptions } from './mmio-window';
export { barrierKind, nativeBarriers, type Barriers } from './barriers';
export { freeIfLive, type DmaAllocator, type DmaRegion, type DeviceMemory } from './dma-allocator';
export { DmaPool, type ChunkSource } from './dma-pool';
export type { InterruptSource, InterruptEvent, InterruptListener, InterruptErrorListener } from './interrupt-source';
export { EpollLoop, type ReadyHandler } from './epoll-loop';
export { FdInterruptSource } from './fd-interrupt-source';
export { UioInterruptSource } from './uio-interrupt-source';
export { EventfdInterruptSource } from './eventfd-interrupt-source';
export { PollingInterruptSource, type PollingInterruptSourceOptions } from './polling-interrupt-source';
export { UioSysfs, type UioDeviceInfo, type UioMap, type UioWindowSource } from './uio-sysfs';
export { syscallHint, type SyscallFailure } from './syscall-hints';
export type {
  NativeAddon,
  NativeDmaMemory,
  NativeMmioRegion,
  NativeUioFile,
  NativeEpollSet,
  NativePollSet,
  EpollEvent,
} from './addon';
export { PhysicalMemory, type PhysicalMapper } from './physical-memory';
