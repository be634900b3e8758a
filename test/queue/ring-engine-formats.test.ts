import { FeatureBit, RingViolation, features } from '../../lib/spec';
import { EVENT, F_AVAIL, F_NEXT, F_USED, F_WRITE } from '../support/fake-ring-device';
import { ringRig, type Rig } from '../support/ring-engine-rig';

// The ring engines against a fake device over raw memory: the rules of one format
// (split §2.7, packed §2.8). What holds for both is in ring-engine.test.ts.

/** Places `n` one-buffer requests (16 writable bytes each) and returns their ids. */
const place = (r: Rig, n: number): number[] => Array.from({ length: n }, () => r.submit([], [16]).id);

/** Everything the device holds, used in full, and reaped. */
function drain(r: Rig<'split'> | Rig<'packed'>): number {
  for (const chain of r.device.popAll()) r.device.use(chain.id, 16);
  return r.engine.reap();
}

describe('split ring engine', () => {
  const EVENT_IDX = features(FeatureBit.EVENT_IDX);

  test('readable, writable buffers: 64-bit addresses, lengths, F_NEXT links, F_WRITE; avail.idx at publish', () => {
    const r = ringRig('split', { size: 8 });
    const a = r.submit([70000, 7], [300, 64]);
    const addresses = [...a.readable, ...a.writable];
    const lengths = [70000, 7, 300, 64];
    const flags = [F_NEXT, F_NEXT, F_WRITE | F_NEXT, F_WRITE];
    const desc = r.device.desc;
    let slot = a.id;
    const seen = new Set<number>();
    for (let i = 0; i < 4; i++) {
      seen.add(slot);
      expect(desc.getUint32(16 * slot, true)).toBe(Number(addresses[i] & 0xffff_ffffn));
      expect(desc.getUint32(16 * slot + 4, true)).toBe(Number(addresses[i] >> 32n));
      expect(desc.getUint32(16 * slot + 8, true)).toBe(lengths[i]);
      expect(desc.getUint16(16 * slot + 12, true)).toBe(flags[i]);
      slot = desc.getUint16(16 * slot + 14, true);
    }
    expect(seen.size).toBe(4);
    expect(desc.getUint32(16 * a.id + 4, true)).toBe(7);
    // The avail ring holds the head, but avail.idx does not show it yet.
    expect(r.device.availRing(0)).toBe(a.id);
    expect(r.device.availIdx).toBe(0);
    expect(r.device.pop()).toBeUndefined();
    expect(r.engine.publish()).toBe(1);
    expect(r.device.availIdx).toBe(1);
    expect(r.stats.publishes).toBe(1);
  });

  test('areas: modern layout at the §2.7 alignments; legacy layout with the used ring at QueueAlign', () => {
    const modern = ringRig('split', { size: 16 });
    const m = modern.engine.addresses;
    expect(m.desc % 16n).toBe(0n);
    expect(m.driver - m.desc).toBe(256n);
    // desc 256 + avail 6 + 2 × 16 = 294, rounded up to 4.
    expect(m.device - m.desc).toBe(296n);
    expect(modern.engine.ring.size).toBeGreaterThanOrEqual(296 + 6 + 8 * 16);

    const r = ringRig('split', { size: 64, layout: { legacy: true, align: 4096, pageSize: 4096 } });
    const { desc, driver, device } = r.engine.addresses;
    expect(desc % 4096n).toBe(0n);
    expect(driver - desc).toBe(1024n);
    expect(device - desc).toBe(4096n);
    expect(r.engine.ring.size).toBeGreaterThanOrEqual(4096 + 6 + 8 * 64);
    for (let round = 0; round < 40; round++) {
      const ids = place(r, 5);
      expect(r.engine.publish()).toBe((5 * (round + 1)) & 0xffff);
      expect(r.device.popAll().map((chain) => chain.id)).toEqual(ids);
      for (const id of ids.reverse()) r.device.use(id, 16);
      expect(r.engine.reap()).toBe(5);
    }
    // The device wrote its used ring at the aligned offset, where the engine read it.
    expect(new DataView(r.engine.ring.view, r.engine.ring.offset + 4096 + 2, 2).getUint16(0, true)).toBe(200);
    expect(r.used).toHaveLength(200);
  });

  test('without EVENT_IDX, used.flags NO_NOTIFY suppresses the notification', () => {
    const r = ringRig('split', { size: 16 });
    place(r, 2);
    expect(r.engine.publish()).toBe(2);
    r.device.setNoNotify(true);
    place(r, 1);
    expect(r.engine.publish()).toBe(-1);
    expect(r.stats.notificationsSuppressed).toBe(1);
    expect(r.device.availIdx).toBe(3);
    r.device.setNoNotify(false);
    place(r, 1);
    expect(r.engine.publish()).toBe(4);
    expect(r.stats.notificationsSuppressed).toBe(1);
    expect(r.stats.publishes).toBe(3);
  });

  test('with EVENT_IDX, avail_event decides: a notification only when avail.idx moves past it', () => {
    const r = ringRig('split', { size: 16, features: EVENT_IDX });
    // avail_event 0 (a fresh ring): 0 → 3 passes it.
    place(r, 3);
    expect(r.engine.publish()).toBe(3);
    r.device.setAvailEvent(5);
    place(r, 2);
    expect(r.engine.publish()).toBe(-1); // 3 → 5 does not pass index 5
    expect(r.stats.notificationsSuppressed).toBe(1);
    expect(r.device.availIdx).toBe(5);
    place(r, 1);
    expect(r.engine.publish()).toBe(6); // 5 → 6 does
    // used.flags is not what decides with EVENT_IDX.
    r.device.setNoNotify(true);
    place(r, 1);
    expect(r.engine.publish()).toBe(-1); // avail_event 5 is behind
    r.device.setAvailEvent(7);
    place(r, 1);
    expect(r.engine.publish()).toBe(8);
  });

  test('setNotifications() without EVENT_IDX writes avail.flags NO_INTERRUPT', () => {
    const r = ringRig('split', { size: 8 });
    expect(r.device.availFlags).toBe(0);
    r.engine.setNotifications(false);
    expect(r.device.availFlags).toBe(1);
    expect(r.engine.notifications).toBe(false);
    r.engine.setNotifications(true);
    expect(r.device.availFlags).toBe(0);
    expect(r.engine.notifications).toBe(true);
  });

  test('setNotifications() with EVENT_IDX writes used_event; reap() keeps it at the next used index if enabled', () => {
    const r = ringRig('split', { size: 8, features: EVENT_IDX });
    place(r, 3);
    r.engine.publish();
    expect(drain(r)).toBe(3);
    expect(r.device.usedEvent).toBe(3);
    r.engine.setNotifications(false);
    // No batch the device can publish from used.idx 3 (at most 8 entries) reaches used_event.
    const off = r.device.usedEvent;
    expect((off - 3) & 0xffff).toBeGreaterThanOrEqual(8);
    expect(r.device.availFlags).toBe(0);
    place(r, 2);
    r.engine.publish();
    expect(drain(r)).toBe(2);
    expect(r.device.usedEvent).toBe(off);
    r.engine.setNotifications(true);
    expect(r.device.usedEvent).toBe(5);
  });

  describe('used.idx violations', () => {
    function twoInFlight(options: Parameters<typeof ringRig>[1] = {}): { r: Rig<'split'>; ids: number[] } {
      const r = ringRig('split', { size: 8, ...options });
      const ids = place(r, options.features ? 4 : 2);
      r.engine.publish();
      r.device.popAll();
      return { r, ids };
    }

    test('used.idx jumping past the requests in flight: USED_IDX_JUMP, nothing settled', () => {
      const { r, ids } = twoInFlight();
      r.device.use(ids[0], 1);
      r.device.use(ids[1], 1);
      r.device.setUsedIdx(3);
      expect(r.engine.reap()).toBe(0);
      expect(r.engine.violation?.reason).toBe(RingViolation.USED_IDX_JUMP);
      expect(r.used).toEqual([]);
      expect(r.engine.outstanding).toBe(2);
      r.device.setUsedIdx(2);
      expect(r.engine.reap()).toBe(0);
      expect(r.used).toEqual([]);
    });

    test('used.idx going backwards: USED_IDX_BACKWARDS', () => {
      const { r, ids } = twoInFlight();
      r.device.use(ids[0], 1);
      expect(r.engine.reap()).toBe(1);
      r.device.setUsedIdx(0);
      expect(r.engine.reap()).toBe(0);
      expect(r.engine.violation?.reason).toBe(RingViolation.USED_IDX_BACKWARDS);
      r.device.setUsedIdx(1);
      r.device.use(ids[1], 1);
      expect(r.engine.reap()).toBe(0);
      expect(r.used).toEqual([[ids[0], 1]]);
    });

    test('IN_ORDER: a used entry standing for more requests than used.idx moved by: USED_IDX_JUMP', () => {
      const { r, ids } = twoInFlight({ features: features(FeatureBit.IN_ORDER) });
      // The fourth request's entry, with used.idx moved by 2.
      r.device.use(ids[3], 1, 2);
      expect(r.engine.reap()).toBe(0);
      expect(r.engine.violation?.reason).toBe(RingViolation.USED_IDX_JUMP);
      expect(r.used).toEqual([]);
      expect(r.engine.outstanding).toBe(4);
      r.device.use(ids[3], 1, 2);
      expect(r.engine.reap()).toBe(0);
    });

    test('a used id that is a descriptor inside a chain, not its head: USED_ID_NOT_HEAD', () => {
      const r = ringRig('split', { size: 8 });
      const a = r.submit([4], [8]);
      r.engine.publish();
      r.device.popAll();
      const second = r.device.desc.getUint16(16 * a.id + 14, true);
      r.device.use(second, 0);
      expect(r.engine.reap()).toBe(0);
      expect(r.engine.violation?.reason).toBe(RingViolation.USED_ID_NOT_HEAD);
      expect(r.used).toEqual([]);
    });
  });
});

describe('packed ring engine', () => {
  test('a chain: Buffer ID in each descriptor, F_NEXT/F_WRITE, AVAIL/USED for the wrap; head flags at publish', () => {
    const r = ringRig('packed', { size: 8 });
    const a = r.submit([70000, 7], [300, 64]);
    const addresses = [...a.readable, ...a.writable];
    const lengths = [70000, 7, 300, 64];
    const ring = r.device.ringView;
    for (let slot = 0; slot < 4; slot++) {
      expect(ring.getUint32(16 * slot, true)).toBe(Number(addresses[slot] & 0xffff_ffffn));
      expect(ring.getUint32(16 * slot + 4, true)).toBe(Number(addresses[slot] >> 32n));
      expect(ring.getUint32(16 * slot + 8, true)).toBe(lengths[slot]);
      expect(r.device.id(slot)).toBe(a.id);
    }
    // Before publish: the head is not available (AVAIL ≠ the wrap counter, 1), the rest are written.
    expect(r.device.flags(0) & F_AVAIL).toBe(0);
    expect([1, 2, 3].map((slot) => r.device.flags(slot))).toEqual([
      F_NEXT | F_AVAIL,
      F_WRITE | F_NEXT | F_AVAIL,
      F_WRITE | F_AVAIL,
    ]);
    expect(r.device.pop()).toBeUndefined();
    expect(r.engine.publish()).toBe(4 | 0x8000);
    expect(r.device.flags(0)).toBe(F_NEXT | F_AVAIL);
    expect(r.device.pop()?.slots).toBe(4);
  });

  test("after the wrap: AVAIL clear, USED set, a chain across the ring's end, notify value sans bit 15", () => {
    const r = ringRig('packed', { size: 4 });
    place(r, 3);
    r.engine.publish();
    expect(drain(r)).toBe(3);
    const a = r.submit([5], [6]); // slots 3 (wrap 1) and 0 (wrap 0)
    expect(r.device.flags(0)).toBe(F_WRITE | F_USED);
    expect(r.engine.publish()).toBe(1);
    expect(r.device.flags(3)).toBe(F_NEXT | F_AVAIL);
    const chain = r.device.pop();
    expect(chain).toEqual({
      id: a.id,
      readable: [{ address: a.readable[0], length: 5 }],
      writable: [{ address: a.writable[0], length: 6 }],
      slots: 2,
      indirect: false,
    });
    r.device.use(a.id, 6);
    // Used in the device's first round (slot 3): AVAIL = USED = 1.
    expect(r.device.flags(3)).toBe(F_AVAIL | F_USED | F_WRITE);
    expect(r.engine.reap()).toBe(1);
    expect(r.used[3]).toEqual([a.id, 6]);
    const b = r.submit([], [8]); // slot 1, wrap 0
    expect(r.engine.publish()).toBe(2);
    expect(r.device.pop()?.id).toBe(b.id);
    r.device.use(b.id, 8);
    // Used in the second round (slot 1): AVAIL = USED = 0.
    expect(r.device.flags(1)).toBe(F_WRITE);
    expect(r.engine.reap()).toBe(1);
    expect(r.used[4]).toEqual([b.id, 8]);
  });

  test('device event DISABLE suppresses the notification, ENABLE asks for it', () => {
    const r = ringRig('packed', { size: 8 });
    place(r, 1);
    expect(r.engine.publish()).toBe(1 | 0x8000);
    r.device.setEvent(EVENT.DISABLE);
    place(r, 2);
    expect(r.engine.publish()).toBe(-1);
    expect(r.stats.notificationsSuppressed).toBe(1);
    expect(r.device.popAll()).toHaveLength(3);
    r.device.setEvent(EVENT.ENABLE);
    place(r, 1);
    expect(r.engine.publish()).toBe(4 | 0x8000);
    expect(r.stats.notificationsSuppressed).toBe(1);
  });

  test('device event DESC with EVENT_IDX: a notification only when the batch crosses the event position', () => {
    const r = ringRig('packed', { size: 8, features: features(FeatureBit.EVENT_IDX) });
    r.device.setEvent(EVENT.DESC, 5, true);
    place(r, 3); // slots 0..2
    expect(r.engine.publish()).toBe(-1);
    place(r, 3); // slots 3..5: crosses 5
    expect(r.engine.publish()).toBe(6 | 0x8000);
    place(r, 1); // slot 6: 5 is behind
    expect(r.engine.publish()).toBe(-1);
    expect(r.stats.notificationsSuppressed).toBe(2);
    expect(drain(r)).toBe(7);
    // The next round (wrap 0), slot 1.
    r.device.setEvent(EVENT.DESC, 1, false);
    place(r, 2); // slots 7 (wrap 1) and 0 (wrap 0)
    expect(r.engine.publish()).toBe(-1);
    place(r, 2); // slots 1, 2 (wrap 0): crosses
    expect(r.engine.publish()).toBe(3);
    // The same offset with the other wrap counter is a round away.
    r.device.setEvent(EVENT.DESC, 4, true);
    place(r, 2); // slots 3, 4 (wrap 0)
    expect(r.engine.publish()).toBe(-1);
  });

  test('setNotifications() writes driver event flags: DISABLE / ENABLE, or DESC at next used slot (EVENT_IDX)', () => {
    const plain = ringRig('packed', { size: 8 });
    expect(plain.device.driverEvent.flags).toBe(EVENT.ENABLE);
    plain.engine.setNotifications(false);
    expect(plain.device.driverEvent.flags).toBe(EVENT.DISABLE);
    plain.engine.setNotifications(true);
    expect(plain.device.driverEvent.flags).toBe(EVENT.ENABLE);

    const r = ringRig('packed', { size: 4, features: features(FeatureBit.EVENT_IDX) });
    expect(r.device.driverEvent).toEqual({ flags: EVENT.DESC, offset: 0, wrap: true });
    place(r, 3);
    r.engine.publish();
    expect(drain(r)).toBe(3);
    expect(r.device.driverEvent).toEqual({ flags: EVENT.DESC, offset: 3, wrap: true });
    place(r, 2);
    r.engine.publish();
    expect(drain(r)).toBe(2);
    expect(r.device.driverEvent).toEqual({ flags: EVENT.DESC, offset: 1, wrap: false });
    r.engine.setNotifications(false);
    expect(r.device.driverEvent.flags).toBe(EVENT.DISABLE);
    place(r, 1);
    r.engine.publish();
    expect(drain(r)).toBe(1);
    expect(r.device.driverEvent.flags).toBe(EVENT.DISABLE);
    r.engine.setNotifications(true);
    expect(r.device.driverEvent).toEqual({ flags: EVENT.DESC, offset: 2, wrap: false });
  });

  test('a used descriptor without F_WRITE: a len that fits is taken, one that does not is 0 (no violation)', () => {
    const r = ringRig('packed', { size: 8 });
    const a = r.submit([4], [32]);
    const b = r.submit([], [16]);
    const c = r.submit([], [16]);
    r.engine.publish();
    r.device.popAll();
    r.device.use(a.id, 20, { write: false });
    r.device.use(b.id, 1000, { write: false });
    r.device.use(c.id, 16, { write: true });
    expect(r.engine.reap()).toBe(3);
    expect(r.used).toEqual([
      [a.id, 20],
      [b.id, 0],
      [c.id, 16],
    ]);
    expect(r.engine.violation).toBeUndefined();
  });
});
