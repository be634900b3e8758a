export { MmioTransport, type MmioTransportOptions } from './mmio-transport';
export { TRANSPORT_FEATURES } from './transport-features';
export { DeviceStatusMachine, type DeviceStatusMachineOptions } from './device-status-machine';
export type { TransportOps } from './transport-ops';
export type {
  VirtioTransport,
  QueueTransport,
  DeviceConfig,
  QueueLayout,
  QueueAddresses,
  QueueEndpoint,
  ShmRegion,
  TransportStats,
} from './virtio-transport';
export { probe, type ProbeResult } from './probe';
export { ConfigSpace } from './config-space';
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
} from './discovery';
export { discoverCmdline, PROC_CMDLINE } from './cmdline-discovery';
