export { Virtqueue, type VirtqueueOptions, type QueueTransport } from './virtqueue';
export { SplitQueue, type SplitQueueOptions } from './split-queue';
export type { QueueBuffer, QueueRequest, SubmitOptions, QueueStats } from './queue-types';
export { PackedQueue, type PackedQueueOptions } from './packed-queue';
export { createQueue } from './create-queue';
export { type QueueMode, type QueueModeOptions } from './completion-mode';
