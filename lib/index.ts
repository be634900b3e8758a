/**
 * The package root (`virtio-mmio`): what a driver author uses. Spec
 * constants and layouts are under `virtio-mmio/spec`, diagnostics (inspect,
 * selftest, queue dumps) under `virtio-mmio/diag`, the software device
 * under `virtio-mmio/sim`. README "Entry points" lists each entry;
 * test/package-exports.test.ts holds this list to it.
 */

// Errors: the one errors module, whole (stable codes; Node-style argument errors).
export * from './errors';

// Platform: register windows, DMA memory, interrupt sources, barriers.
export { POLL_TIMEOUT_MAX_MS, type RegisterBlock, type AccessWidth } from './platform/register-block';
export { MmioWindow, type UioWindow, type UioWindowOptions } from './platform/mmio-window';
export { nativeBarriers, type Barriers } from './platform/barriers';
export type { DmaAllocator, DmaRegion, DeviceMemory } from './platform/dma-allocator';
export { DmaPool, type ChunkSource } from './platform/dma-pool';
export { PhysicalMemory, type PhysicalMapper } from './platform/physical-memory';
export type {
  InterruptSource,
  InterruptEvent,
  InterruptListener,
  InterruptErrorListener,
} from './platform/interrupt-source';
export { UioInterruptSource } from './platform/uio-interrupt-source';
export { EventfdInterruptSource } from './platform/eventfd-interrupt-source';
export { PollingInterruptSource, type PollingInterruptSourceOptions } from './platform/polling-interrupt-source';
export { UioSysfs, type UioDeviceInfo, type UioMap, type UioWindowSource } from './platform/uio-sysfs';

// Transport: finding devices, opening them, the interface drivers use.
export { MmioTransport, type MmioTransportOptions } from './transport/mmio-transport';
export type {
  VirtioTransport,
  QueueTransport,
  DeviceConfig,
  QueueLayout,
  QueueAddresses,
  QueueEndpoint,
  ShmRegion,
  TransportStats,
} from './transport/virtio-transport';
export { probe, type ProbeResult } from './transport/probe';
export {
  parseDeviceSpec,
  discoverUio,
  openTransport,
  probeAll,
  describeSpec,
  type DeviceSpec,
  type UioDeviceSpec,
  type PhysicalDeviceSpec,
  type OpenTransportOptions,
  type ProbeReport,
} from './transport/discovery';
export { discoverCmdline } from './transport/cmdline-discovery';
export { resetDevicesOnSignals, type ResetOnSignalsOptions, type ResetSignal } from './transport/exit-reset';

// Queues: what a driver submits requests on.
export { Virtqueue } from './queue/virtqueue';
export { SplitQueue, type SplitQueueOptions } from './queue/split-queue';
export { PackedQueue, type PackedQueueOptions } from './queue/packed-queue';
export { createQueue } from './queue/create-queue';
export type {
  QueueBuffer,
  QueueRequest,
  QueueRecovery,
  SubmitOptions,
  QueueStats,
  VirtqueueOptions,
} from './queue/queue-types';
export type { QueueMode, QueueModeOptions } from './queue/completion-mode';

// Devices: the drivers, and the public base for one's own.
export * from './devices';

// Feature bits and device types, which every driver names (the rest of the spec: `virtio-mmio/spec`).
export { DeviceId } from './spec/device-ids';
export { FeatureBit, feature, features, hasFeature, describeFeatures } from './spec/features';
