/**
 * What a device can write into the used side of a ring that makes the
 * driver stop trusting the queue (virtio 1.2 §2.7.8, §2.7.8.1, §2.8.7,
 * §2.8.22). The ring engines name the violation they find with these; the
 * sim's hostile mode (lib/sim/hostile.ts) lies in the same words; a queue
 * broken by one rejects with DeviceBrokenError whose `reason` is it.
 */
export const RingViolation = {
  /** A used id at or above the queue size. */
  USED_ID_OUT_OF_RANGE: 'used-id-out-of-range',
  /** A used id that names no outstanding request (a duplicate, a replay, a non-head descriptor). */
  USED_ID_NOT_HEAD: 'used-id-not-head',
  /** A used len above the device-writable bytes of the chain (§2.7.8.1). */
  USED_LEN_TOO_LONG: 'used-len-too-long',
  /** The used index (or an in-order batch) covers more requests than are in flight. */
  USED_IDX_JUMP: 'used-idx-jump',
  /** split: used.idx moved back (§2.7.8: it only grows). */
  USED_IDX_BACKWARDS: 'used-idx-backwards',
} as const;

export type RingViolation = (typeof RingViolation)[keyof typeof RingViolation];
