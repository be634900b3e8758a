/**
 * The checksum helpers a virtio-net user needs around CSUM / GUEST_CSUM
 * (virtio 1.2 §5.1.6.2, §5.1.6.4.1): the IPv4 pseudo-header sum that seeds
 * a transmitted frame's field, and completing a received partial checksum.
 * Checked against a reference built the long way: the RFC 768 pseudo-header
 * written out as bytes in front of the segment, summed by internetChecksum.
 */
import { completeChecksum } from '../../lib/devices';
import { internetChecksum, ipv4PseudoHeaderSum } from '../../lib/spec';

const UDP = 17;

/** An Ethernet/IPv4/UDP frame from `src` to `dst` with `payload`; its UDP checksum field zero. */
function udpFrame(src: number[], dst: number[], payload: Buffer): Buffer {
  const frame = Buffer.alloc(14 + 20 + 8 + payload.length);
  frame.writeUInt16BE(0x0800, 12);
  frame[14] = 0x45;
  frame.writeUInt16BE(20 + 8 + payload.length, 16);
  frame[23] = UDP;
  Buffer.from(src).copy(frame, 26);
  Buffer.from(dst).copy(frame, 30);
  frame.writeUInt16BE(40000, 34);
  frame.writeUInt16BE(7, 36);
  frame.writeUInt16BE(8 + payload.length, 38);
  payload.copy(frame, 42);
  return frame;
}

/** The UDP checksum the long way: sum over pseudo-header bytes + the segment (field zero). */
function referenceChecksum(frame: Buffer): number {
  const segment = Buffer.from(frame.subarray(34));
  segment.writeUInt16BE(0, 6);
  const pseudo = Buffer.alloc(12);
  frame.copy(pseudo, 0, 26, 34);
  pseudo[9] = UDP;
  pseudo.writeUInt16BE(segment.length, 10);
  return internetChecksum(Buffer.concat([pseudo, segment]));
}

const cases: [string, number[], number[], number][] = [
  ['even payload', [10, 0, 0, 2], [10, 0, 0, 1], 64],
  ['odd payload', [10, 0, 0, 2], [10, 0, 0, 1], 33],
  ['carries out of 16 bits', [255, 255, 255, 254], [255, 255, 255, 255], 1001],
  ['empty payload', [192, 168, 1, 200], [172, 16, 0, 9], 0],
];

test.each(cases)('seeded with ipv4PseudoHeaderSum and completed: the UDP checksum, %s', (_name, src, dst, bytes) => {
  const payload = Buffer.alloc(bytes);
  for (let i = 0; i < bytes; i++) payload[i] = (i * 37 + 11) & 0xff;
  const frame = udpFrame(src, dst, payload);
  const seed = ipv4PseudoHeaderSum(frame.subarray(26, 30), frame.subarray(30, 34), UDP, 8 + bytes);
  expect(seed).toBeLessThanOrEqual(0xffff);
  frame.writeUInt16BE(seed, 40);
  completeChecksum(frame, { start: 34, offset: 6 });
  expect(frame.readUInt16BE(40)).toBe(referenceChecksum(frame));
  // A receiver's check: the segment with its pseudo-header now sums to all ones.
  const pseudo = Buffer.alloc(12);
  frame.copy(pseudo, 0, 26, 34);
  pseudo[9] = UDP;
  pseudo.writeUInt16BE(8 + bytes, 10);
  expect(internetChecksum(Buffer.concat([pseudo, frame.subarray(34)]))).toBe(0);
});

test('a wrong seed gives a checksum a receiver refuses', () => {
  const frame = udpFrame([10, 0, 0, 2], [10, 0, 0, 1], Buffer.from('hello'));
  frame.writeUInt16BE(ipv4PseudoHeaderSum(frame.subarray(26, 30), frame.subarray(30, 34), UDP, 13) ^ 1, 40);
  completeChecksum(frame, { start: 34, offset: 6 });
  expect(frame.readUInt16BE(40)).not.toBe(referenceChecksum(frame));
});

test('completeChecksum leaves bytes before start and outside the field alone', () => {
  const frame = udpFrame([10, 0, 0, 2], [10, 0, 0, 1], Buffer.alloc(20, 0xa5));
  const before = Buffer.from(frame);
  completeChecksum(frame, { start: 34, offset: 6 });
  expect(frame.subarray(0, 40)).toEqual(before.subarray(0, 40));
  expect(frame.subarray(42)).toEqual(before.subarray(42));
});

test.each([
  [{ start: 40, offset: 1 }, 42],
  [{ start: 0, offset: 41 }, 42],
  [{ start: -1, offset: 6 }, 42],
  [{ start: 1.5, offset: 6 }, 42],
  [{ start: 34, offset: Number.NaN }, 42],
])('completeChecksum refuses %o on a %d-byte frame with ERR_OUT_OF_RANGE', (checksum, bytes) => {
  const frame = Buffer.alloc(bytes, 0x5a);
  expect(() => completeChecksum(frame, checksum)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
  expect(frame.every((b) => b === 0x5a)).toBe(true);
});

test('a checksum that sums to zero is written as 0xffff (zero would mean "no checksum" to UDP)', () => {
  const frame = udpFrame([10, 0, 0, 2], [10, 0, 0, 1], Buffer.alloc(2));
  const seed = ipv4PseudoHeaderSum(frame.subarray(26, 30), frame.subarray(30, 34), UDP, 10);
  frame.writeUInt16BE(seed, 40);
  const probe = Buffer.from(frame);
  completeChecksum(probe, { start: 34, offset: 6 });
  frame.writeUInt16BE(probe.readUInt16BE(40), 42); // the payload word cancels the rest of the sum
  completeChecksum(frame, { start: 34, offset: 6 });
  expect({ reference: referenceChecksum(frame), written: frame.readUInt16BE(40) }).toEqual({
    reference: 0,
    written: 0xffff,
  });
});

test.each([null, 'frame', [1, 2, 3]])('completeChecksum refuses a frame of %p with ERR_INVALID_ARG_TYPE', (frame) => {
  expect(() => completeChecksum(frame as unknown as Uint8Array, { start: 0, offset: 0 })).toThrow(
    expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }),
  );
});
