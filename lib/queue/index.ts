export { SplitQueue, type SplitQueueOptions, type QueueTransport } from './split-queue';
export type { QueueBuffer, QueueRequest, SubmitOptions, QueueStats } from './queue-types';
