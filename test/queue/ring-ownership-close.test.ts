/**
 * A queue closed while its device still has the ring (the device did not
 * let go: taking the queue back failed, or it was detached without a
 * completed reset) holds the ring memory in its allocator, so neither a
 * later allocation nor the allocator's close() gives it to anyone else; a
 * reset that completes afterwards frees it (virtio 1.2 §2.4: the device
 * uses the queue's memory until it is reset).
 */
import { TransportError } from '../../lib/errors';
import { DmaPool } from '../../lib/platform';
import { native } from '../../lib/platform/addon';
import { quarantinedChunks } from '../../lib/platform/dma-pool';
import { PackedQueue, SplitQueue, type Virtqueue } from '../../lib/queue';
import { FeatureBit, feature } from '../../lib/spec';
import type { QueueTransport } from '../../lib/transport';

/** A transport that takes the queue and, if `stuck`, refuses to give it back as a device holding it would. */
function fakeTransport(stuck: boolean): QueueTransport {
  return {
    activateQueue: () => undefined,
    deactivateQueue: (index) => {
      if (stuck) throw new TransportError(TransportError.QUEUE_IN_USE, `queue ${index} still reads QueueReady 1`);
    },
    notify: () => undefined,
    setBusy: () => undefined,
  };
}

const pool = (): DmaPool => new DmaPool((minSize) => native.allocAnonymous(Math.max(minSize, 64 * 1024), 0x2000_0000n));

const RINGS = [
  ['split', (memory: DmaPool): Virtqueue => new SplitQueue(options(memory, 0n))],
  ['packed', (memory: DmaPool): Virtqueue => new PackedQueue(options(memory, feature(FeatureBit.RING_PACKED)))],
] as const;

function options(memory: DmaPool, extra: bigint): ConstructorParameters<typeof SplitQueue>[0] {
  const features = feature(FeatureBit.VERSION_1) | feature(FeatureBit.INDIRECT_DESC) | extra;
  return { index: 0, size: 16, memory, layout: { legacy: false }, features };
}

describe.each(RINGS)('%s ring', (_name, make) => {
  test('closed while the device will not let go: the ring is held, and the allocator keeps its chunk', () => {
    const memory = pool();
    const queue = make(memory);
    queue.attach(fakeTransport(true));
    expect(() => queue.close()).toThrow(expect.objectContaining({ code: TransportError.QUEUE_IN_USE }));
    const { holds } = memory.stats();
    expect(holds).toBeGreaterThanOrEqual(1); // the ring (and the indirect tables)
    const before = quarantinedChunks();
    memory.close();
    expect(quarantinedChunks()).toBe(before + 1);
  });

  test('closed while the device will not let go, then reset: the ring is freed and nothing stays held', () => {
    const memory = pool();
    const queue = make(memory);
    queue.attach(fakeTransport(true));
    expect(() => queue.close()).toThrow(TransportError);
    const live = memory.stats().regions;
    queue.reclaimAll(); // what a completed device reset does
    expect(memory.stats()).toMatchObject({ holds: 0, deferredRegions: 0 });
    expect(memory.stats().regions).toBeLessThan(live);
    const before = quarantinedChunks();
    memory.close();
    expect(quarantinedChunks()).toBe(before);
  });

  test('closed normally: the ring is freed at once, nothing held, nothing kept', () => {
    const memory = pool();
    const queue = make(memory);
    queue.attach(fakeTransport(false));
    queue.close();
    expect(memory.stats()).toMatchObject({ holds: 0, regions: 0 });
    const before = quarantinedChunks();
    memory.close();
    expect(quarantinedChunks()).toBe(before);
  });
});
