export { Virtqueue } from './virtqueue';
export { RingEngine, type RingEngineOptions, type RingEngineFactory } from './ring-engine';
export { SplitRingEngine } from './split-ring-engine';
export { PackedRingEngine } from './packed-ring-engine';
export { checkUsedEntry, type RingBreak } from './used-entry';
export { SplitQueue, type SplitQueueOptions } from './split-queue';
export type {
  QueueBuffer,
  QueueRequest,
  QueueRecovery,
  SubmitOptions,
  QueueStats,
  VirtqueueOptions,
} from './queue-types';
export { PackedQueue, type PackedQueueOptions } from './packed-queue';
export { createQueue } from './create-queue';
export { type QueueMode, type QueueModeOptions } from './completion-mode';
// The dump's types and helpers: virtio-mmio/diag (lib/diag/index.ts); QueueDump is what Virtqueue.dump() returns.
export type { QueueDump } from './queue-dump';
