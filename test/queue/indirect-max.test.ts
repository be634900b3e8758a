import { DEFAULT_INDIRECT_MAX, checkIndirectMax } from '../../lib/queue/indirect-max';

describe('checkIndirectMax', () => {
  test('returns the value, or the default when none is given', () => {
    expect(checkIndirectMax(undefined)).toBe(DEFAULT_INDIRECT_MAX);
    expect(DEFAULT_INDIRECT_MAX).toBe(32);
    expect(checkIndirectMax(2)).toBe(2);
    expect(checkIndirectMax(0xffff)).toBe(0xffff);
  });

  test.each([1, 0x10000, 2.5, NaN, '8', null])('refuses %p with the one message', (bad) => {
    expect(() => checkIndirectMax(bad)).toThrow(`indirectMax must be an integer in [2, 65535], got ${String(bad)}`);
    expect(() => checkIndirectMax(bad)).toThrow(
      expect.objectContaining({ name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }),
    );
  });
});
