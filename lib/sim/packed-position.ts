import { unpackEventOffWrap } from '../spec';

/**
 * Positions in a packed ring (virtio 1.2 §2.8) counted linearly: the
 * device's next-avail and next-used places are plain counters that only
 * grow, so that distances are subtractions. Position p is descriptor slot
 * p mod size in lap floor(p / size); the ring wrap counter starts at 1
 * (§2.8.1) and flips each lap, so it is 1 on even laps.
 */
export const PackedPosition = {
  slot: (position: number, size: number): number => position % size,
  wrap: (position: number, size: number): boolean => Math.floor(position / size) % 2 === 0,
};

/**
 * RING_EVENT_FLAGS_DESC (§2.8.10, with VIRTIO_F_EVENT_IDX): whether the
 * descriptor named by `offWrap` (desc_event_off, desc_event_wrap) was
 * used when the device's used position moved from `old` to `now`.
 *
 * The arithmetic, which the spec leaves to the reader: a used descriptor
 * write at position p, skipping forward past a chain or an IN_ORDER
 * batch, uses every position in [p, next p) — so a flush uses the
 * half-open range [old, now), the packed analogue of the split ring's
 * vring_need_event test (event in [old, new) modulo 2^16). The event names
 * a slot and a wrap counter; put it on the linear scale in the lap of
 * `old` if that lap has the same wrap counter, else in the next lap (one
 * lap later: the wrap counter flips each lap). A flush never uses more
 * than `size` positions (the device owns at most `size` descriptors), so
 * [old, now) meets at most those two laps and this is the only candidate.
 * A slot outside the ring (off ≥ size) is never used.
 */
export function packedEventUsed(offWrap: number, old: number, now: number, size: number): boolean {
  const { offset, wrap } = unpackEventOffWrap(offWrap);
  if (offset >= size) return false;
  const lap = Math.floor(old / size);
  const event = lap * size + offset + (wrap === PackedPosition.wrap(old, size) ? 0 : size);
  return old <= event && event < now;
}
