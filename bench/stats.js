'use strict';
// Statistics shared by the benchmark programs: a median and a
// median-with-range over a list of figures. Values that are not finite
// numbers (a mode a round did not run, a division by zero) are left out,
// so a round that lacks a figure does not poison the others.

/** Finite numbers of `values`, ascending. */
function finite(values) {
  return values.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
}

/** The median of the finite numbers in `values` (the mean of the middle two for an even count); undefined when none. */
function median(values) {
  const v = finite(values);
  if (v.length === 0) return undefined;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
}

/** Median, min and max of the finite numbers in `values`, with the numbers kept; undefined when none. */
function spread(values) {
  const v = finite(values);
  return v.length ? { median: median(v), min: v[0], max: v[v.length - 1], values: v } : undefined;
}

module.exports = { median, spread };
