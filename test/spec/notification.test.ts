import { nextAvailNotificationData, nextAvailNotificationWord, parseNotificationData } from '../../lib/spec';

describe('QueueNotify values with VIRTIO_F_NOTIFICATION_DATA (§4.2.3.3)', () => {
  test.each([
    [0, 0],
    [3, 0x7fff],
    [1, 0x8000],
    [0xffff, 0xffff],
    [7, 0x8005],
  ])('queue %i, next available %i: the int32 word has the unsigned value’s 32 bits', (queue, nextAvail) => {
    const word = nextAvailNotificationWord(queue, nextAvail);
    expect(word | 0).toBe(word);
    expect(word >>> 0).toBe(nextAvailNotificationData(queue, nextAvail));
    expect(parseNotificationData(word)).toEqual({
      queueIndex: queue,
      nextOff: nextAvail & 0x7fff,
      nextWrap: nextAvail >= 0x8000,
    });
  });
});
