/**
 * Queue recovery with VIRTIO_F_RING_RESET (virtio 1.2 §2.6.1, §4.2.2.1)
 * through the drivers: one queue of a multi-queue blk reset while the
 * other keeps serving, a queue a liar broke reset alone, rng going on, a
 * console whose receive buffers come back after a reset, and a device that
 * ignores QueueReset (QEMU's virtio-mmio) caught.
 */
import { CanceledError, TransportError } from '../../lib/errors';
import { VirtioBlk, VirtioConsole, VirtioInput, VirtioNet, VirtioRng } from '../../lib/devices';
import { BlkModel, ConsoleModel, InputModel, NetModel, RngModel } from '../../lib/sim';
import { InputEventType } from '../../lib/spec';
import { simRig, turns, type SimRig, type SimVariant } from '../support/sim-rig';

let rig: SimRig | undefined;
afterEach(() => {
  const violations = rig?.close() ?? [];
  rig = undefined;
  expect(violations).toEqual([]);
});

const MODERN: readonly (readonly [string, SimVariant])[] = [
  ['Version 2', 2],
  ['packed-ring', 'packed'],
];

/** A 64-sector disk whose sector s is filled with the byte s + 1. */
function disk(): Uint8Array {
  const bytes = new Uint8Array(64 * 512);
  for (let s = 0; s < 64; s++) bytes.fill(s + 1, s * 512, (s + 1) * 512);
  return bytes;
}

const sector = (s: number): Buffer => Buffer.alloc(512, s + 1);

describe.each(MODERN)('%s', (_label, variant) => {
  test('blk, two queues: resetting queue 0 cancels its reads; queue 1 never stops; queue 0 serves again', async () => {
    const model = new BlkModel({ disk: disk(), numQueues: 2, latency: 'async' });
    rig = simRig(variant, model);
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool });
    const resets: number[] = [];
    blk.onQueueReset((index) => resets.push(index));
    expect(blk.info.queues).toBe(2);
    const onZero = [blk.read(1, 512, { queue: 0 }), blk.read(2, 512, { queue: 0 })];
    const onOne = [blk.read(3, 512, { queue: 1 }), blk.read(4, 512, { queue: 1 })];
    blk.resetQueue(0);
    for (const result of await Promise.allSettled(onZero)) {
      expect(result.status).toBe('rejected');
      expect((result as PromiseRejectedResult).reason).toBeInstanceOf(CanceledError);
    }
    expect(await Promise.all(onOne)).toEqual([sector(3), sector(4)]);
    expect(resets).toEqual([0]);
    expect(blk.queueStats(0).resets).toBe(1);
    expect(blk.queueStats(1).resets).toBe(0);
    expect(await blk.read(5, 512, { queue: 0 })).toEqual(sector(5));
    expect(rig.transport.live).toBe(true);
    // The reset completed: what the canceled reads had is the driver's again.
    await turns(3);
    expect(rig.pool.stats()).toMatchObject({ deferredRegions: 0, holds: 0 });
    blk.close();
  });

  test('blk, two queues: a liar breaks queue 0; it alone is reset, queue 1 serves throughout', async () => {
    rig = simRig(variant, new BlkModel({ disk: disk(), numQueues: 2 }), {
      hostile: { seed: 3, after: 1, queue: 0, behaviours: { 'used-len-too-long': true } },
    });
    const blk = VirtioBlk.open(rig.transport, { memory: rig.pool });
    const errors: Error[] = [];
    blk.onError((error) => errors.push(error));
    for (let round = 0; round < 3; round++) {
      const [zero, one] = await Promise.allSettled([blk.read(6, 512, { queue: 0 }), blk.read(7, 512, { queue: 1 })]);
      expect(one).toEqual({ status: 'fulfilled', value: sector(7) });
      if (round > 0) expect(zero).toMatchObject({ status: 'rejected', reason: { code: 'ERR_VIRTIO_BROKEN' } });
    }
    expect(blk.queueStats(0).resets).toBeGreaterThanOrEqual(2);
    expect(blk.queueStats(1).resets).toBe(0);
    expect(errors).toEqual([]);
    expect(rig.sim.hostileLog['used-len-too-long']).toBeGreaterThanOrEqual(2);
    blk.close();
  });

  test('rng: a reset between reads; reads go on', async () => {
    rig = simRig(variant, new RngModel());
    const rng = VirtioRng.open(rig.transport, { memory: rig.pool });
    expect((await rng.read(32)).length).toBe(32);
    rng.resetQueue(0);
    expect((await rng.read(32)).length).toBe(32);
    expect(rng.queueStats(0).resets).toBe(1);
    rng.close();
  });

  test('console: after a reset of the receiveq its buffers are posted again, and bytes arrive', async () => {
    const model = new ConsoleModel();
    rig = simRig(variant, model);
    const console = VirtioConsole.open(rig.transport, { memory: rig.pool, multiport: false });
    const chunks: Buffer[] = [];
    console.stream.on('data', (chunk: Buffer) => chunks.push(chunk));
    await turns(3);
    console.resetQueue(0);
    await turns(3);
    model.send(Buffer.from('after the reset'));
    for (let i = 0; i < 50 && Buffer.concat(chunks).length < 15; i++) await turns(1);
    expect(Buffer.concat(chunks).toString()).toBe('after the reset');
    expect(console.queueStats(0).resets).toBe(1);
    console.close();
  });

  test('net: after a reset of the receiveq its buffers are posted again, and frames arrive', async () => {
    const model = new NetModel();
    rig = simRig(variant, model);
    const net = VirtioNet.open(rig.transport, { memory: rig.pool, receiveBufferBytes: 256 });
    const frames: Buffer[] = [];
    net.events.on('frame', (frame: Buffer) => frames.push(frame));
    const frame = (n: number): Buffer => Buffer.alloc(600, n);
    model.inject(frame(1));
    for (let i = 0; i < 50 && frames.length < 1; i++) await turns(1);
    net.resetQueue(0);
    await turns(3);
    model.inject(frame(2));
    for (let i = 0; i < 50 && frames.length < 2; i++) await turns(1);
    expect(frames).toEqual([frame(1), frame(2)]);
    expect(net.queueStats(0).resets).toBe(1);
    expect(net.droppedFrames).toBe(0);
    net.close();
  });

  test('input: after a reset of the eventq its buffers are posted again, and events arrive', async () => {
    const model = new InputModel();
    rig = simRig(variant, model);
    const input = VirtioInput.open(rig.transport, { memory: rig.pool });
    const codes: number[] = [];
    input.on('event', (event: { type: number; code: number }) => {
      if (event.type === InputEventType.EV_KEY) codes.push(event.code);
    });
    await turns(3);
    model.tapKey(30);
    for (let i = 0; i < 50 && codes.length < 2; i++) await turns(1);
    input.resetQueue(0);
    await turns(3);
    model.tapKey(31);
    for (let i = 0; i < 50 && codes.length < 4; i++) await turns(1);
    expect(codes).toEqual([30, 30, 31, 31]);
    expect(input.queueStats(0).resets).toBe(1);
    input.close();
  });

  test("a device that ignores QueueReset (QEMU's virtio-mmio): QUEUE_RESET_IGNORED, the device failed", async () => {
    rig = simRig(variant, new RngModel(), { queueResetIgnored: true });
    const rng = VirtioRng.open(rig.transport, { memory: rig.pool });
    const errors: Error[] = [];
    rng.onError((error) => errors.push(error));
    expect(() => rng.resetQueue(0)).toThrow(expect.objectContaining({ code: TransportError.QUEUE_RESET_IGNORED }));
    expect(errors).toHaveLength(1);
    expect(rig.transport.live).toBe(false);
    await expect(rng.read(8)).rejects.toThrow();
    rng.close();
  });
});

test('Version 1 (no RING_RESET): resetQueue() is refused, typed, and nothing changes', async () => {
  rig = simRig(1, new RngModel());
  const rng = VirtioRng.open(rig.transport, { memory: rig.pool });
  expect(() => rng.resetQueue(0)).toThrow(expect.objectContaining({ code: TransportError.NOT_NEGOTIATED }));
  expect((await rng.read(8)).length).toBe(8);
  rng.close();
});
