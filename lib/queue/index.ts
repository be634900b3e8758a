export { Virtqueue } from './virtqueue';
export { RingEngine, type RingEngineOptions, type RingEngineFactory } from './ring-engine';
export { SplitRingEngine } from './split-ring-engine';
export { PackedRingEngine } from './packed-ring-engine';
export { checkUsedEntry, type RingBreak } from './used-entry';
export { SplitQueue, type SplitQueueOptions } from './split-queue';
export type { QueueBuffer, QueueRequest, SubmitOptions, QueueStats, VirtqueueOptions } from './queue-types';
export { PackedQueue, type PackedQueueOptions } from './packed-queue';
export { createQueue } from './create-queue';
export { type QueueMode, type QueueModeOptions } from './completion-mode';
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
} from './queue-dump';
