import { SplitRingEngine } from './split-ring-engine';
import type { VirtqueueOptions } from './queue-types';
import { Virtqueue } from './virtqueue';

export type SplitQueueOptions = VirtqueueOptions;

/** A virtqueue on the split ring (virtio 1.2 §2.7; see SplitRingEngine). */
export class SplitQueue extends Virtqueue {
  constructor(options: SplitQueueOptions) {
    super(options, (engine) => new SplitRingEngine(engine));
  }
}
