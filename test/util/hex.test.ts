import { hex, hex32, hexUnsigned } from '../../lib/util/hex';

describe('hex', () => {
  test('formats numbers and bigints as 0x and lowercase hex, padded when asked', () => {
    expect(hex(0)).toBe('0x0');
    expect(hex(0x1ab)).toBe('0x1ab');
    expect(hex(0x1_0000_0000)).toBe('0x100000000');
    expect(hex(0xfeed_0000_0000n)).toBe('0xfeed00000000');
    expect(hex(0x5, 2)).toBe('0x05');
    expect(hex(0x12345, 2)).toBe('0x12345');
  });

  test('hex32 reads a number as an unsigned 32-bit register; hexUnsigned leaves bigints whole', () => {
    expect(hex32(-1)).toBe('0xffffffff');
    expect(hex32(0x74726976, 8)).toBe('0x74726976');
    expect(hex32(0x2, 8)).toBe('0x00000002');
    expect(hexUnsigned(-2)).toBe('0xfffffffe');
    expect(hexUnsigned(0x1_0000_0000n)).toBe('0x100000000');
  });
});
