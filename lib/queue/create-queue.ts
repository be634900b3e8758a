import { FeatureBit, hasFeature } from '../spec';
import { PackedQueue } from './packed-queue';
import { SplitQueue } from './split-queue';
import type { VirtqueueOptions } from './queue-types';
import type { Virtqueue } from './virtqueue';

/**
 * The ring format the negotiated features call for: packed with VIRTIO_F_RING_PACKED (§2.8), split otherwise (§2.7).
 */
export function createQueue(options: VirtqueueOptions): Virtqueue {
  return hasFeature(options.features, FeatureBit.RING_PACKED) ? new PackedQueue(options) : new SplitQueue(options);
}
