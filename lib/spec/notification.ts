/**
 * The value written to QueueNotify (virtio 1.2 §4.2.3.3). Without
 * VIRTIO_F_NOTIFICATION_DATA it is the queue index; with it, bits 16..30
 * carry next_off and bit 31 next_wrap (§2.9). For a split ring these are
 * the 15 low bits and bit 15 of the next available index, so the upper half
 * is simply avail.idx.
 */
export function notificationData(queueIndex: number, nextOff: number, nextWrap: boolean): number {
  return ((queueIndex & 0xffff) | ((nextOff & 0x7fff) << 16) | (nextWrap ? 0x8000_0000 : 0)) >>> 0;
}

/**
 * The same from one 16-bit "next available" value: bits 0–14 the offset,
 * bit 15 the wrap bit. Split ring: avail.idx. Packed ring: the next slot
 * with the driver's wrap counter in bit 15 (§2.8 and "Driver notifications").
 */
export function nextAvailNotificationData(queueIndex: number, nextAvail: number): number {
  return notificationData(queueIndex, nextAvail & 0x7fff, (nextAvail & 0x8000) !== 0);
}

/**
 * nextAvailNotificationData() as a signed 32-bit integer, the same 32 bits:
 * what a register write takes without a heap number when next_wrap (bit 31)
 * is set (RegisterBlock.writel accepts either form).
 */
export function nextAvailNotificationWord(queueIndex: number, nextAvail: number): number {
  return (queueIndex & 0xffff) | ((nextAvail & 0xffff) << 16);
}

/** The fields of a notification value (device side). */
export function parseNotificationData(value: number): { queueIndex: number; nextOff: number; nextWrap: boolean } {
  return { queueIndex: value & 0xffff, nextOff: (value >>> 16) & 0x7fff, nextWrap: (value & 0x8000_0000) !== 0 };
}
