import { PackedRingEngine } from './packed-ring-engine';
import type { VirtqueueOptions } from './queue-types';
import { Virtqueue } from './virtqueue';

export type PackedQueueOptions = VirtqueueOptions;

/** A virtqueue on the packed ring (virtio 1.2 §2.8; see PackedRingEngine). */
export class PackedQueue extends Virtqueue {
  constructor(options: PackedQueueOptions) {
    super(options, (engine) => new PackedRingEngine(engine));
  }
}
