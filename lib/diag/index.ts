/**
 * Diagnostics (the `virtio-mmio/diag` entry): what the bring-up CLI is
 * made of, as a library. Reading a transport without changing it
 * (inspect, its configuration space), the state of a queue someone else
 * drives (readLiveQueue) or this process drives to dump it
 * (dumpQueueState), a queue's own dump (Virtqueue.dump()'s types),
 * a device's selftest, the bring-up of one queue on any device type
 * (bringUpQueue), and the spec rules it holds a device to
 * (DeviceRuleWatch). The CLI (lib/cli) only parses arguments and prints.
 */
export {
  inspect,
  nameFeatures,
  featureBitByName,
  vendorText,
  DEFAULT_MAX_QUEUES,
  RESET_TIMEOUT_MS,
  type InspectOptions,
  type InspectReport,
  type RegisterAccess,
  type RegisterReading,
  type FeatureName,
  type FeatureReport,
  type ShmRegionReport,
  type QueueReport,
} from './inspect';
export {
  inspectConfig,
  hasConfigSpace,
  describeNetStatus,
  MAX_CONFIG_BYTES,
  CONFIG_ATTEMPTS,
  type ConfigReport,
  type ConfigLayoutField,
  type ConfigValue,
} from './inspect-config';
export {
  readLiveQueue,
  deviceRingMemory,
  type RingMemory,
  type LiveQueueDump,
  type LiveQueueOptions,
  type LiveRingDump,
} from './live-queue';
export { DEVICE_RULES, DeviceRuleWatch, ruleOfError, type DeviceRule, type DeviceRuleViolation } from './device-rules';
export {
  selftest,
  describeError,
  type SelftestOptions,
  type SelftestReport,
  type SelftestStep,
  type SelftestSubject,
} from './selftest';
export { DRIVERS } from './drivers';
export {
  bringUpQueue,
  type QueueBringUpSubject,
  type QueueBringUpPlan,
  type QueueBringUpReport,
  type QueueChainResult,
} from './queue-bringup';
export {
  dumpQueueState,
  type QueueDumpSubject,
  type QueueDumpOptions,
  type DrivenElsewhereDump,
  type DrivenHereDump,
} from './driven-dump';
export {
  descriptorFlagNames,
  packedSlotState,
  type QueueDump,
  type DescriptorDump,
  type OutstandingDump,
  type RingState,
  type SplitRingState,
  type PackedRingState,
  type EventSuppressionDump,
  type SplitShadow,
  type PackedShadow,
  type PackedSlotState,
  type RingFormat,
} from '../queue/queue-dump';
export { barrierKind } from '../platform/barriers';
