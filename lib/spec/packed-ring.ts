/**
 * Packed virtqueue layout (virtio 1.2 §2.8). All fields little-endian.
 *
 *   struct pvirtq_desc           { le64 addr; le32 len; le16 id; le16 flags; }     16 bytes
 *   struct pvirtq_event_suppress { le16 desc (off:15, wrap:1); le16 flags (2 bits); }  4 bytes
 *
 * The descriptor area holds the ring; the driver area is the driver event
 * suppression structure (read by the device), the device area the device
 * event suppression structure (written by the device).
 */
export const PackedRing = {
  DESC_SIZE: 16,
  DESC_ADDR: 0,
  DESC_LEN: 8,
  DESC_ID: 12,
  DESC_FLAGS: 14,
  /** struct pvirtq_event_suppress (§2.8.10). */
  EVENT_DESC: 0,
  EVENT_FLAGS: 2,
  EVENT_SIZE: 4,
  /** Alignment of each area (§2.8.10.1). */
  DESC_ALIGN: 16,
  EVENT_ALIGN: 4,
  /** §2.8: packed virtqueues support up to 2^15 entries; any size, not only powers of two. */
  MAX_SIZE: 32768,
} as const;

/**
 * pvirtq_desc.flags (§2.8.1, §2.8.6–2.8.8): NEXT, WRITE and INDIRECT as in the split ring, AVAIL bit 7, USED bit 15.
 */
export const PackedDesc = {
  F_NEXT: 1,
  F_WRITE: 2,
  F_INDIRECT: 4,
  F_AVAIL: 1 << 7,
  F_USED: 1 << 15,
} as const;

/** pvirtq_event_suppress.flags (§2.8.10). DESC needs VIRTIO_F_EVENT_IDX. */
export const RingEventFlags = {
  ENABLE: 0,
  DISABLE: 1,
  DESC: 2,
} as const;

/** AVAIL and USED bits of a descriptor the driver makes available with wrap counter `wrap` (§2.8.1). */
export function packedAvailFlags(wrap: boolean): number {
  return wrap ? PackedDesc.F_AVAIL : PackedDesc.F_USED;
}

/** Whether `flags` mark a descriptor used in the round of wrap counter `wrap` (§2.8.1: AVAIL = USED = wrap). */
export function isPackedUsed(flags: number, wrap: boolean): boolean {
  const avail = (flags & PackedDesc.F_AVAIL) !== 0;
  const used = (flags & PackedDesc.F_USED) !== 0;
  return avail === used && used === wrap;
}

/** The le16 `desc` field of an event suppression structure: offset (15 bits) and wrap counter (bit 15). */
export function packEventOffWrap(offset: number, wrap: boolean): number {
  return (offset & 0x7fff) | (wrap ? 0x8000 : 0);
}

export function unpackEventOffWrap(value: number): { offset: number; wrap: boolean } {
  return { offset: value & 0x7fff, wrap: (value & 0x8000) !== 0 };
}

/** Bytes of the descriptor ring for `size` entries. */
export const packedRingBytes = (size: number): number => PackedRing.DESC_SIZE * size;
