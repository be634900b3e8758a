/**
 * 2^31 - 1: the largest delay setTimeout and setInterval take (Node clamps anything larger to 1 ms), and the
 * bound this library puts on time limits and on single read lengths.
 */
export const INT31_MAX = 2 ** 31 - 1;

/**
 * The lower end of an inInt31Range() check: `min` (default 0), excluded when `minExclusive`; `integer` refuses
 * fractions.
 */
export interface Int31Bounds {
  min?: number;
  minExclusive?: boolean;
  integer?: boolean;
}

/** Whether `value` is a number (not NaN) from the lower bound up to INT31_MAX inclusive. */
export function inInt31Range(
  value: unknown,
  { min = 0, minExclusive = false, integer = false }: Int31Bounds = {},
): value is number {
  if (typeof value !== 'number' || (integer && !Number.isInteger(value))) return false;
  return (minExclusive ? value > min : value >= min) && value <= INT31_MAX;
}
