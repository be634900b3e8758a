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

export function splitNotificationData(queueIndex: number, availIdx: number): number {
  return notificationData(queueIndex, availIdx & 0x7fff, (availIdx & 0x8000) !== 0);
}

/** The fields of a notification value (device side). */
export function parseNotificationData(value: number): { queueIndex: number; nextOff: number; nextWrap: boolean } {
  return { queueIndex: value & 0xffff, nextOff: (value >>> 16) & 0x7fff, nextWrap: (value & 0x8000_0000) !== 0 };
}
