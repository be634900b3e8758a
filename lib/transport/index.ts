export { MmioTransport, TRANSPORT_FEATURES, type MmioTransportOptions } from './mmio-transport';
export type { VirtioTransport, QueueTransport, DeviceConfig, QueueLayout, QueueAddresses, QueueEndpoint, ShmRegion, TransportStats } from './virtio-transport';
export { probe, type ProbeResult } from './probe';
export { ConfigSpace } from './config-space';
export { parseDeviceSpec, discoverUio, openTransport, probeAll, describeSpec, type DeviceSpec, type UioDeviceSpec, type PhysicalDeviceSpec, type OpenTransportOptions, type ProbeReport } from './discovery';
