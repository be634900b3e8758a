/**
 * virtio-net MTU, frames spanning several receive buffers (MRG_RXBUF) and
 * checksum offload both ways (virtio 1.2 §5.1.4, §5.1.6.2–§5.1.6.4), on
 * every sim variant (split Version 1 and 2, packed).
 */
import { ProtocolError, TransportError, UsageError } from '../../lib/errors';
import { NetModel } from '../../lib/sim';
import { NetFeature, feature, internetChecksum } from '../../lib/spec';
import { testFrame } from '../support/contracts/net-contract';
import { SIM_VARIANTS, turns } from '../support/sim-rig';
import { netSim } from '../support/net-sim';

const PEER = Buffer.from([2, 0, 0, 0, 0, 1]);
const frameOf = (dst: Buffer, n: number, length: number): Buffer => testFrame(dst, PEER, n, length - 14);

async function until(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500 && !done(); i++) await turns(1);
  if (!done()) throw new Error(`timed out waiting for ${what}`);
}

/** A 14+20+8+payload IPv4/UDP-shaped frame: the checksum field at 34 + 6 holds a pseudo-header seed. */
function udpFrame(dst: Buffer, payload: number, seed: number): Buffer {
  const frame = frameOf(dst, 7, 14 + 20 + 8 + payload);
  frame.writeUInt16BE(0x0800, 12);
  frame.writeUInt16BE(seed, 34 + 6);
  return frame;
}

test('internetChecksum matches RFC 1071 §3 (00 01 f2 03 f4 f5 f6 f7 sums to ddf2)', () => {
  expect(internetChecksum(Buffer.from('0001f203f4f5f6f7', 'hex'))).toBe(~0xddf2 & 0xffff);
  expect(internetChecksum(Buffer.from('0001f203f4f5f6', 'hex'))).toBe(~(0xddf2 - 0xf7) & 0xffff);
});

describe.each(SIM_VARIANTS)('virtio-net offloads on the %s sim', (_label, variant) => {
  const { open, openFails } = netSim(variant);

  describe.each([true, false])('MTU 9000, MRG_RXBUF offered: %s', (mergeable) => {
    test('mtu is read; frames up to mtu + 18 go both ways; longer ones are refused', async () => {
      const model = new NetModel({ mtu: 9000, mergeable, loopback: true });
      const net = open(model, { receiveBuffers: 16 });
      expect(net.mtu).toBe(9000);
      expect(net.maxFrameBytes).toBe(9018);
      const frames = [frameOf(net.mac, 1, 9018), frameOf(net.mac, 2, 60), frameOf(net.mac, 3, 4000)];
      for (const f of frames) await net.send(f);
      await expect(net.send(Buffer.alloc(9019))).rejects.toThrow(RangeError);
      expect(model.sent).toEqual(frames);
      const iterator = net.frames();
      for (const f of frames) expect((await iterator.next()).value).toEqual(f);
      expect(net.droppedFrames).toBe(0);
      expect(model.dropped).toBe(0);
    });
  });

  test('without MTU negotiated the limit stays 1518', () => {
    const net = open(new NetModel({ mtu: 9000 }), { excludeFeatures: feature(NetFeature.MTU) });
    expect(net.mtu).toBeUndefined();
    expect(net.maxFrameBytes).toBe(1518);
  });

  test('an mtu below 68 fails open with CONFIG_INVALID', () => {
    expect(openFails({ mtu: 67 })).toThrow(expect.objectContaining({ code: TransportError.CONFIG_INVALID }));
  });

  test('without MRG_RXBUF a receive buffer smaller than a whole frame is refused', () => {
    expect(openFails({ mergeable: false, mtu: 9000 }, { receiveBufferBytes: 2048 })).toThrow(RangeError);
  });

  test('MRG_RXBUF with 128-byte buffers: frames of every size span buffers and arrive whole, in order', async () => {
    const model = new NetModel({ mtu: 4000 });
    const net = open(model, { receiveBuffers: 64, receiveBufferBytes: 128 });
    await until(() => model.postedReceives === 64, 'the receive buffers');
    const frames = [60, 115, 116, 117, 1500, 4018, 243, 4018].map((n, i) => frameOf(net.mac, i, n));
    frames.unshift(Buffer.concat([net.mac, PEER, Buffer.from([0x88, 0xb5])])); // 14 bytes: the header alone
    for (const f of frames) model.inject(f);
    const iterator = net.frames();
    for (const f of frames) expect((await iterator.next()).value).toEqual(f);
    expect(net.droppedFrames).toBe(0);
    await until(() => model.postedReceives === 64, 'the buffers re-posted');
  });

  test.each([
    ['num_buffers 0', { num_buffers: 0 }, 'net-num-buffers'],
    ['num_buffers past the posted buffers', { num_buffers: 9 }, 'net-num-buffers'],
    ['gso_type without GSO', { gso_type: 1 }, 'net-header-gso'],
    ['DATA_VALID without GUEST_CSUM', { flags: 2 }, 'net-header-flags'],
  ])(
    'a header with %s is dropped as a ProtocolError; buffers re-posted, the next frame arrives',
    async (_n, force, reason) => {
      const model = new NetModel();
      const net = open(model, { receiveBuffers: 8 });
      await until(() => model.postedReceives === 8, 'the receive buffers');
      const drops: ProtocolError[] = [];
      net.events.on('drop', (e: ProtocolError) => drops.push(e));
      const good = frameOf(net.mac, 2, 100);
      model.inject(frameOf(net.mac, 1, 100), { force });
      model.inject(good);
      expect((await net.frames().next()).value).toEqual(good);
      expect(net.droppedFrames).toBe(1);
      expect(drops).toEqual([expect.objectContaining({ code: 'ERR_VIRTIO_PROTOCOL', reason })]);
      await until(() => model.postedReceives === 8, 'the buffers re-posted');
    },
  );

  test('num_buffers larger than the frame took swallows later buffers into one bad frame, never hangs', async () => {
    const model = new NetModel();
    const net = open(model, { receiveBuffers: 8 });
    await until(() => model.postedReceives === 8, 'the receive buffers');
    model.inject(frameOf(net.mac, 1, 1000), { force: { num_buffers: 2 } });
    model.inject(frameOf(net.mac, 2, 1000)); // its header and data become the first frame's tail: too long
    const good = frameOf(net.mac, 3, 60);
    model.inject(good);
    expect((await net.frames().next()).value).toEqual(good);
    expect(net.droppedFrames).toBe(1);
    await until(() => model.postedReceives === 8, 'the buffers re-posted');
  });

  test('CSUM: send() with a checksum request; the device fills the ones-complement sum', async () => {
    const model = new NetModel({ csum: true });
    const net = open(model);
    const frame = udpFrame(PEER, 301, 0x1234);
    await net.send(frame, { checksum: { start: 34, offset: 6 } });
    const [sent] = model.sent;
    const expected = frame.subarray(34).reduce((sum, byte, i) => sum + (i % 2 ? byte : byte << 8), 0);
    let folded = expected;
    while (folded > 0xffff) folded = (folded & 0xffff) + (folded >>> 16);
    expect(sent.readUInt16BE(40)).toBe(~folded & 0xffff);
    // A receiver's check: the sum over the segment with the checksum, plus the pseudo-header (the seed), is 0xffff.
    expect(internetChecksum(sent, 34)).toBe(0x1234);
    expect(sent.subarray(0, 40)).toEqual(frame.subarray(0, 40));
    await expect(net.send(frame, { checksum: { start: 34, offset: frame.length - 35 } })).rejects.toThrow(RangeError);
  });

  test('without CSUM negotiated a checksum request is a UsageError', async () => {
    const net = open(new NetModel());
    await expect(net.send(udpFrame(PEER, 10, 0), { checksum: { start: 34, offset: 6 } })).rejects.toThrow(UsageError);
  });

  test('GUEST_CSUM: DATA_VALID and NEEDS_CSUM reach the user; a range past the frame is dropped', async () => {
    const model = new NetModel({ guestCsum: true });
    const net = open(model, { receiveBuffers: 8 });
    await until(() => model.postedReceives === 8, 'the receive buffers');
    const frames = [0, 1, 2, 3].map((i) => udpFrame(net.mac, 50, i));
    model.inject(frames[0], { dataValid: true });
    model.inject(frames[1], { needsChecksum: { start: 34, offset: 6 } });
    model.inject(frames[2], { needsChecksum: { start: 34, offset: frames[2].length - 35 } });
    model.inject(frames[3]);
    const iterator = net.received();
    expect((await iterator.next()).value).toEqual({ frame: frames[0], pair: 0, checksumValid: true });
    expect((await iterator.next()).value).toEqual({
      frame: frames[1],
      pair: 0,
      checksumValid: false,
      needsChecksum: { start: 34, offset: 6 },
    });
    expect((await iterator.next()).value).toEqual({ frame: frames[3], pair: 0, checksumValid: false });
    expect(net.droppedFrames).toBe(1);
  });

  test('completeChecksums: a NEEDS_CSUM frame arrives with its sum filled in and no needsChecksum', async () => {
    const model = new NetModel({ guestCsum: true });
    const net = open(model, { receiveBuffers: 8, completeChecksums: true });
    await until(() => model.postedReceives === 8, 'the receive buffers');
    const partial = udpFrame(net.mac, 301, 0x1234);
    const valid = udpFrame(net.mac, 40, 0x5678);
    model.inject(partial, { needsChecksum: { start: 34, offset: 6 } });
    model.inject(valid, { dataValid: true });
    const seen: unknown[] = [];
    net.events.on('frame', (_frame: Buffer, info: unknown) => seen.push(info));
    const iterator = net.received();
    const first = (await iterator.next()).value as { frame: Buffer };
    // The receiver's check: the sum from csum_start with the filled field, plus the seed's complement, is all ones.
    expect(internetChecksum(first.frame, 34)).toBe(0x1234);
    expect(first.frame.readUInt16BE(40)).not.toBe(0x1234);
    expect(first.frame.subarray(0, 40)).toEqual(partial.subarray(0, 40));
    expect(first.frame.subarray(42)).toEqual(partial.subarray(42));
    expect(first).toEqual({ frame: first.frame, pair: 0, checksumValid: false });
    expect((await iterator.next()).value).toEqual({ frame: valid, pair: 0, checksumValid: true });
    expect(seen).toEqual([{ frame: first.frame, pair: 0, checksumValid: false }, expect.anything()]);
  });

  test('completeChecksums must be a boolean (ERR_INVALID_ARG_TYPE)', () => {
    const model = new NetModel({ guestCsum: true });
    expect(() => open(model, { completeChecksums: 'yes' as unknown as boolean })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }),
    );
  });
});
