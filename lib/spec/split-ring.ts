/**
 * Split virtqueue layout (virtio 1.2 §2.7). All fields little-endian.
 *
 *   struct virtq_desc  { le64 addr; le32 len; le16 flags; le16 next; }       16 bytes
 *   struct virtq_avail { le16 flags; le16 idx; le16 ring[N]; le16 used_event; }
 *   struct virtq_used  { le16 flags; le16 idx; struct { le32 id; le32 len; } ring[N]; le16 avail_event; }
 */
export const SplitRing = {
  /** §2.7.5 */
  DESC_SIZE: 16,
  DESC_ADDR: 0,
  DESC_LEN: 8,
  DESC_FLAGS: 12,
  DESC_NEXT: 14,
  /** §2.7.6 */
  AVAIL_FLAGS: 0,
  AVAIL_IDX: 2,
  AVAIL_RING: 4,
  /** §2.7.8 */
  USED_FLAGS: 0,
  USED_IDX: 2,
  USED_RING: 4,
  USED_ELEM_SIZE: 8,
  /** Alignment of each area in Version 2 (§2.7, table "Virtqueue Part Alignment"). */
  DESC_ALIGN: 16,
  AVAIL_ALIGN: 2,
  USED_ALIGN: 4,
  /** §2.7: the largest Queue Size. */
  MAX_SIZE: 32768,
} as const;

/** virtq_desc.flags (§2.7.5). */
export const VirtqDesc = {
  F_NEXT: 1,
  F_WRITE: 2,
  F_INDIRECT: 4,
} as const;

/** virtq_avail.flags (§2.7.7). */
export const VRING_AVAIL_F_NO_INTERRUPT = 1;
/** virtq_used.flags (§2.7.10). */
export const VRING_USED_F_NO_NOTIFY = 1;

/** Bytes of the descriptor table for `size` entries. */
export const descTableBytes = (size: number): number => SplitRing.DESC_SIZE * size;
/** Bytes of the driver area (avail ring), used_event included. */
export const availRingBytes = (size: number): number => 6 + 2 * size;
/** Bytes of the device area (used ring), avail_event included. */
export const usedRingBytes = (size: number): number => 6 + SplitRing.USED_ELEM_SIZE * size;
/** Offset of used_event inside the avail ring (§2.7.10). */
export const usedEventOffset = (size: number): number => SplitRing.AVAIL_RING + 2 * size;
/** Offset of avail_event inside the used ring (§2.7.10). */
export const availEventOffset = (size: number): number => SplitRing.USED_RING + SplitRing.USED_ELEM_SIZE * size;

/**
 * Legacy layout (§2.7.2 "Legacy Interfaces: A Note on Virtqueue Layout"):
 * descriptor table, then the avail ring, then the used ring starting at the
 * next multiple of `align`, all in one contiguous area.
 */
export function legacyLayout(size: number, align: number): { availOffset: number; usedOffset: number; bytes: number } {
  const availOffset = descTableBytes(size);
  const usedOffset = Math.ceil((availOffset + availRingBytes(size)) / align) * align;
  return { availOffset, usedOffset, bytes: usedOffset + usedRingBytes(size) };
}

/**
 * Whether an event index asks for a notification after the index moved from
 * `old` to `now` (§2.7.7.2 / §2.7.10.1; wrap-safe in 16 bits).
 */
export const needEvent = (event: number, now: number, old: number): boolean =>
  ((now - event - 1) & 0xffff) < ((now - old) & 0xffff);

export const isPowerOfTwo = (n: number): boolean => Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
