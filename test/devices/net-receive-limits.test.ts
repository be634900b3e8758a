/**
 * What a virtio-net driver without offloads keeps of what the device
 * writes (finding 7): a frame is at most what send() allows (1518 bytes,
 * no VIRTIO_NET_F_MTU), whatever num_buffers and len say, and the frames
 * not yet consumed stay within maxQueuedFrames and maxQueuedBytes.
 */
import { VirtioNet } from '../../lib/devices';
import { NetModel } from '../../lib/sim';
import { NET_MAX_FRAME } from '../../lib/spec';
import { testFrame } from '../support/contracts/net-contract';
import { SIM_VARIANTS, simRig, turns } from '../support/sim-rig';
import { netSim } from '../support/net-sim';

const PEER = Buffer.from([2, 0, 0, 0, 0, 1]);
/** The driver's receive buffer size (virtio-net.ts RX_BUFFER_BYTES). */
const RX_BUFFER_BYTES = 2048;

/** Turns the event loop until `done()` holds (or fails the test after many turns). */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await turns(1);
  if (!done()) throw new Error(`timed out waiting for ${what}`);
}

/** A frame of exactly `length` bytes to `dst`, numbered `n`. */
const frameOf = (dst: Buffer, n: number, length: number): Buffer => testFrame(dst, PEER, n, length - 14);

describe.each(SIM_VARIANTS)('virtio-net receive limits on the %s sim', (_label, variant) => {
  const { open } = netSim(variant);

  test.each([true, false])(
    'finding 7: a 1519-byte frame (too long) is dropped, counted, its buffer re-posted; 1518 arrive (MRG_RXBUF: %s)',
    async (mergeable) => {
      const model = new NetModel({ mergeable });
      const net = open(model, { receiveBuffers: 8 });
      await until(() => model.postedReceives === 8, 'the receive buffers');
      const events: Buffer[] = [];
      net.events.on('frame', (f: Buffer) => events.push(f));
      const longest = frameOf(net.mac, 2, NET_MAX_FRAME);
      model.inject(frameOf(net.mac, 1, NET_MAX_FRAME + 1));
      model.inject(longest);
      const { value } = await net.frames().next();
      expect(value).toEqual(longest);
      expect(events).toEqual([longest]);
      expect(net.droppedFrames).toBe(1);
      await until(() => model.postedReceives === 8, 'the buffers re-posted');
    },
  );

  test('finding 7: a frame shorter than an Ethernet header is dropped and counted', async () => {
    const model = new NetModel();
    const net = open(model, { receiveBuffers: 4 });
    await until(() => model.postedReceives === 4, 'the receive buffers');
    const frame = frameOf(net.mac, 1, 60);
    model.inject(Buffer.alloc(13, 0xee));
    model.inject(frame);
    expect((await net.frames().next()).value).toEqual(frame);
    expect(net.droppedFrames).toBe(1);
  });

  test('finding 7: a 512 KiB MRG_RXBUF "frame" (256 buffers) is dropped, counted, not kept; all reposted', async () => {
    const model = new NetModel({ queueSize: 256 });
    const net = open(model);
    await until(() => model.postedReceives === 256, 'the receive buffers');
    const events: Buffer[] = [];
    net.events.on('frame', (f: Buffer) => events.push(f));
    // The device spreads it over every posted buffer, num_buffers = 256.
    model.inject(Buffer.alloc(256 * RX_BUFFER_BYTES - 12, 0xab));
    const next = frameOf(net.mac, 1, 100);
    model.inject(next);
    const { value } = await net.frames().next();
    expect(value).toEqual(next);
    expect(events).toEqual([next]);
    expect(net.droppedFrames).toBe(1);
    expect(model.dropped).toBe(0);
    await until(() => model.postedReceives === 256, 'the buffers re-posted');
  });

  test('finding 7: unconsumed frames stay within maxQueuedBytes: only what fits posted, none lost', async () => {
    const model = new NetModel();
    // Room for two largest frames: two buffers posted, not eight.
    const net = open(model, { receiveBuffers: 8, maxQueuedBytes: 2 * NET_MAX_FRAME + 28 });
    await until(() => model.postedReceives === 2, 'the receive buffers');
    await turns(5);
    expect(model.postedReceives).toBe(2);
    const events: Buffer[] = [];
    net.events.on('frame', (f: Buffer) => events.push(f));
    const frames = Array.from({ length: 8 }, (_, i) => frameOf(net.mac, i, 1014));
    for (const f of frames) model.inject(f);
    await until(() => events.length === 2, 'two frames');
    await turns(10);
    // 2028 bytes kept: another buffer could bring 1518 more, past the limit.
    expect(events.length).toBe(2);
    expect(model.postedReceives).toBe(0);
    const iterator = net.frames();
    for (let i = 0; i < frames.length; i++) expect((await iterator.next()).value).toEqual(frames[i]);
    expect(net.droppedFrames).toBe(0);
    expect(model.dropped).toBe(0);
  });

  test('finding 7: unconsumed frames stay within maxQueuedFrames, counting what posted buffers may bring', async () => {
    const model = new NetModel();
    const net = open(model, { receiveBuffers: 8, maxQueuedFrames: 3 });
    await until(() => model.postedReceives === 3, 'the receive buffers');
    const events: Buffer[] = [];
    net.events.on('frame', (f: Buffer) => events.push(f));
    const frames = Array.from({ length: 8 }, (_, i) => frameOf(net.mac, i, 200));
    for (const f of frames) model.inject(f);
    await until(() => events.length === 3, 'three frames');
    await turns(10);
    expect(events.length).toBe(3);
    expect(model.postedReceives).toBe(0);
    const iterator = net.frames();
    for (let i = 0; i < frames.length; i++) expect((await iterator.next()).value).toEqual(frames[i]);
    expect(net.droppedFrames).toBe(0);
  });
});

test('finding 7: maxQueuedBytes must be an integer that holds at least one largest frame', () => {
  const rig = simRig(2, new NetModel());
  try {
    for (const bad of [NET_MAX_FRAME - 1, 4096.5, 2 ** 31 + 1, -1]) {
      expect(() => VirtioNet.open(rig.transport, { memory: rig.pool, maxQueuedBytes: bad })).toThrow(RangeError);
    }
  } finally {
    expect(rig.close()).toEqual([]);
  }
});
