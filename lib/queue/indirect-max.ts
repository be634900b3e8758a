import { outOfRange } from '../errors';

/** Descriptors per indirect table when the options name none (VirtqueueOptions.indirectMax). */
export const DEFAULT_INDIRECT_MAX = 32;

/**
 * The one check of the indirectMax option: an integer in [2, 65535] (a table of one descriptor gains nothing, and
 * virtio 1.2 §2.7.5.3.1 bounds a table by the 16-bit descriptor index). Returns the default when it is undefined.
 */
export function checkIndirectMax(indirectMax: unknown): number {
  if (indirectMax === undefined) return DEFAULT_INDIRECT_MAX;
  if (typeof indirectMax !== 'number' || !Number.isInteger(indirectMax) || indirectMax < 2 || indirectMax > 0xffff) {
    throw outOfRange(`indirectMax must be an integer in [2, 65535], got ${String(indirectMax)}`);
  }
  return indirectMax;
}
