export { MmioTransport, TRANSPORT_FEATURES, type MmioTransportOptions, type QueueLayout, type QueueAddresses, type QueueEndpoint, type ShmRegion, type TransportStats } from './mmio-transport';
export { probe, type ProbeResult } from './probe';
