export { MmioTransport, TRANSPORT_FEATURES, type MmioTransportOptions, type QueueLayout, type QueueAddresses, type QueueEndpoint, type ShmRegion, type TransportStats } from './mmio-transport';
export { probe, type ProbeResult } from './probe';
export { ConfigSpace } from './config-space';
export { parseDeviceSpec, discoverUio, openTransport, probeAll, describeSpec, type DeviceSpec, type UioDeviceSpec, type PhysicalDeviceSpec, type OpenTransportOptions, type ProbeReport } from './discovery';
