import { INT31_MAX, inInt31Range } from '../../lib/util/int31';

describe('inInt31Range', () => {
  test('takes [0, 2^31 - 1] by default, fractions included', () => {
    expect(INT31_MAX).toBe(2147483647);
    for (const ok of [0, 1, 0.5, INT31_MAX]) expect(inInt31Range(ok)).toBe(true);
    for (const bad of [-1, INT31_MAX + 1, NaN, Infinity, '5', 5n, undefined, null])
      expect(inInt31Range(bad)).toBe(false);
  });

  test('honours min, minExclusive and integer', () => {
    expect(inInt31Range(0, { min: 1 })).toBe(false);
    expect(inInt31Range(1, { min: 1 })).toBe(true);
    expect(inInt31Range(0, { minExclusive: true })).toBe(false);
    expect(inInt31Range(0.001, { minExclusive: true })).toBe(true);
    expect(inInt31Range(1.5, { integer: true })).toBe(false);
    expect(inInt31Range(INT31_MAX, { min: 1, integer: true })).toBe(true);
  });
});
