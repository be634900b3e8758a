import type { SimRequest } from '../../lib/sim';
import { echoRequest } from '../support/echo-request';
import { FeatureBit, feature, MmioInterrupt, RingEventFlags } from '../../lib/spec';
import {
  notifyPacked,
  type PackedTestRing,
  setupPackedQueue,
  TRANSPORT_PACKED,
  F_AVAIL,
  F_USED,
  F_WRITE,
  PACKED,
  IN_ORDER,
} from './packed-test-driver';
import {
  ACKNOWLEDGE,
  DRIVER,
  nextInterrupt,
  R,
  TestDriver,
  TestModel,
  TRANSPORT_V1,
  turns,
  useTestDrivers,
} from './sim-test-driver';

const rig = useTestDrivers();

const NO_EVENT_IDX = ~feature(FeatureBit.EVENT_IDX);

interface LiveOptions {
  size?: number;
  wanted?: bigint;
  model?: TestModel;
  sim?: ConstructorParameters<typeof TestDriver>[1];
}

/** A live Version 2 device offering RING_PACKED, with queue 0 set up as a packed ring of `size`. */
function live(options: LiveOptions = {}): { r: TestDriver; ring: PackedTestRing; model: TestModel } {
  const size = options.size ?? 8;
  const model = options.model ?? new TestModel({ queueSizes: [Math.max(size, 8)] });
  const r = rig(model, { transportFeatures: TRANSPORT_PACKED, ...options.sim });
  r.init(options.wanted ?? -1n);
  const ring = setupPackedQueue(r, 0, size);
  r.driverOk();
  return { r, ring, model };
}

/**
 * A buffer of `parts` readable elements holding consecutive bytes from `seed`, then one writable element of their total
 * length.
 */
function echoBuffer(
  r: TestDriver,
  ring: PackedTestRing,
  seed: number,
  parts: number[],
): { id: number; input: number[]; out: ReturnType<TestDriver['buffer']> } {
  const input: number[] = [];
  const elements = parts.map((n) => {
    const bytes = Array.from({ length: n }, (_, i) => (seed + input.length + i) & 0xff);
    input.push(...bytes);
    return { addr: r.buffer(Uint8Array.from(bytes)).iova, len: n };
  });
  const out = r.buffer(input.length);
  const id = ring.add([...elements, { addr: out.iova, len: input.length, write: true }]);
  return { id, input, out };
}

/** An async model whose completions the test releases one by one (echoing, unless given a length). */
function heldModel(size = 8): { model: TestModel; held: { request: SimRequest; complete: (len?: number) => void }[] } {
  const model = new TestModel({ queueSizes: [size] });
  const held: { request: SimRequest; complete: (len?: number) => void }[] = [];
  model.handler = (request) =>
    new Promise<number>((resolve) => held.push({ request, complete: (len) => resolve(len ?? echoRequest(request)) }));
  return { model, held };
}

describe('offering and negotiating VIRTIO_F_RING_PACKED (virtio 1.2 §2.8, §6)', () => {
  test('not offered by default; offered through transportFeatures, it makes queues packed', () => {
    const plain = rig(new TestModel());
    plain.init();
    expect(plain.negotiated & (PACKED | IN_ORDER)).toBe(0n);
    expect(plain.setupQueue(0, 8) && plain.sim.queueState(0).ring).toBe('split');

    const { r } = live();
    expect(r.negotiated & PACKED).toBe(PACKED);
    expect(r.sim.queueState(0)).toMatchObject({
      ready: true,
      ring: 'packed',
      lastAvail: 0,
      availWrap: true,
      usedIdx: 0,
      usedWrap: true,
    });
    expect(r.sim.violations).toEqual([]);
  });

  test('a Version 1 device never offers RING_PACKED; a driver that accepts it anyway gets a split ring', () => {
    const r = rig(new TestModel(), { version: 1, transportFeatures: TRANSPORT_V1 | PACKED });
    r.probe();
    r.addStatus(ACKNOWLEDGE);
    r.addStatus(DRIVER);
    expect(r.deviceFeatures() & PACKED).toBe(0n);
    r.writeDriverFeatures(PACKED);
    expect(r.rules).toEqual(['feature-not-offered']);
    r.sim.writel(R.GuestPageSize, 4096);
    r.setupQueue(0, 8);
    expect(r.sim.queueState(0).ring).toBe('split');
  });

  test('a packed queue may have any size up to QueueNumMax: 6 is fine; misaligned event areas are refused', () => {
    const { r, ring } = live({ size: 6 });
    expect(ring.size).toBe(6);
    expect(r.sim.queueState(0)).toMatchObject({ ready: true, size: 6 });
    expect(r.sim.violations).toEqual([]);

    const bad = rig(new TestModel(), { transportFeatures: TRANSPORT_PACKED });
    bad.init();
    bad.sim.writel(R.QueueSel, 0);
    bad.sim.writel(R.QueueNum, 8);
    bad.writeAddress(R.QueueDescLow, bad.pool.allocate(128, 16).iova);
    bad.writeAddress(R.QueueDriverLow, bad.pool.allocate(8, 16).iova + 2n);
    bad.writeAddress(R.QueueDeviceLow, bad.pool.allocate(4, 16).iova);
    bad.sim.writel(R.QueueReady, 1);
    expect(bad.rules).toEqual(['queue-misaligned']);
    expect(bad.sim.violations[0].message).toMatch(/driver area 0x[0-9a-f]+ \(needs 4\)/);
    expect(bad.sim.readl(R.QueueReady)).toBe(0);
  });
});

describe('the packed ring device side (virtio 1.2 §2.8)', () => {
  test('one buffer: the used descriptor has the Buffer ID, written length, AVAIL = USED = 1 and WRITE', async () => {
    const { r, ring, model } = live();
    const { id, out } = echoBuffer(r, ring, 1, [5]);
    const interrupt = nextInterrupt(r.sim);
    notifyPacked(r, ring);
    expect(await interrupt).toBe(1);
    expect(r.ack()).toBe(MmioInterrupt.VRING);
    expect(model.requests[0]).toMatchObject({ queue: 0, head: id, readableBytes: 5, writableBytes: 5 });
    const used = ring.popAll();
    expect(used).toEqual([{ slot: 0, id, len: 5, flags: F_AVAIL | F_USED | F_WRITE, ids: [id], skipped: 2 }]);
    expect([...r.bytes(out)]).toEqual([1, 2, 3, 4, 5]);
    expect(r.sim.stats).toEqual({ notifications: [1], interrupts: 1, interruptsSuppressed: 0, requests: 1 });
    expect(r.sim.queueState(0)).toMatchObject({
      lastAvail: 2,
      availWrap: true,
      usedIdx: 2,
      usedWrap: true,
      inFlight: 0,
    });
    expect(r.sim.violations).toEqual([]);
  });

  test('a list of three takes its Buffer ID from the last descriptor; a used length of 0 leaves WRITE clear', () => {
    const { r, ring, model } = live();
    model.handler = (request) => (request.readableBytes === 1 ? 0 : request.writableBytes);
    const a = r.buffer(Uint8Array.of(1, 2));
    const b = r.buffer(Uint8Array.of(3, 4, 5));
    const out = r.buffer(8);
    ring.add(
      [
        { addr: a.iova, len: 2 },
        { addr: b.iova, len: 3 },
        { addr: out.iova, len: 8, write: true },
      ],
      5,
    );
    ring.add([{ addr: r.buffer(1).iova, len: 1 }], 6);
    r.sim.process();
    expect(model.requests.map((q) => [q.head, q.readable.map((x) => x.length), q.writableBytes])).toEqual([
      [5, [2, 3], 8],
      [6, [1], 0],
    ]);
    // The second used descriptor lands where the first list ended (slot 3), not at slot 1.
    expect(ring.popAll()).toEqual([
      { slot: 0, id: 5, len: 8, flags: F_AVAIL | F_USED | F_WRITE, ids: [5], skipped: 3 },
      { slot: 3, id: 6, len: 0, flags: F_AVAIL | F_USED, ids: [6], skipped: 1 },
    ]);
    expect(r.sim.violations).toEqual([]);
  });

  test('an indirect table is one ring descriptor; its WRITE flag is ignored, the entries are walked in order', () => {
    const { r, ring, model } = live();
    const head = r.buffer(Uint8Array.of(7, 8));
    const out = r.buffer(2);
    const table = r.pool.allocate(32, 16);
    const view = new DataView(table.view, table.offset, 32);
    view.setBigUint64(0, head.iova, true);
    view.setUint32(8, 2, true);
    view.setBigUint64(16, out.iova, true);
    view.setUint32(24, 2, true);
    view.setUint16(30, F_WRITE, true);
    ring.addRaw([{ addr: table.iova, len: 32, id: 3, flags: 4 | F_WRITE }], 3);
    r.sim.process();
    expect(model.requests[0]).toMatchObject({ head: 3, readableBytes: 2, writableBytes: 2 });
    expect(ring.popAll()).toEqual([
      { slot: 0, id: 3, len: 2, flags: F_AVAIL | F_USED | F_WRITE, ids: [3], skipped: 1 },
    ]);
    expect([...r.bytes(out)]).toEqual([7, 8]);
    expect(r.sim.queueState(0)).toMatchObject({ lastAvail: 1, usedIdx: 1 });
    expect(r.sim.violations).toEqual([]);
  });

  test.each([8, 6])('1000 buffers of 1–3 descriptors through a ring of %i: many wraps, every byte echoed', (size) => {
    const { r, ring } = live({ size });
    let sent = 0;
    let checked = 0;
    const pending = new Map<number, { input: number[]; out: ReturnType<TestDriver['buffer']> }>();
    for (let round = 0; checked < 1000; round++) {
      if (round > 2000) throw new Error(`stuck after ${checked} buffers`);
      while (sent < 1000 && ring.room >= 1 + (sent % 3)) {
        const parts = Array.from({ length: sent % 3 }, (_, i) => 1 + ((sent + i) % 4));
        const buffer = echoBuffer(r, ring, sent, parts);
        pending.set(buffer.id, buffer);
        sent++;
      }
      notifyPacked(r, ring);
      r.sim.process();
      for (const used of ring.popAll()) {
        const buffer = pending.get(used.id)!;
        pending.delete(used.id);
        expect(used.len).toBe(buffer.input.length);
        expect([...r.bytes(buffer.out, buffer.input.length)]).toEqual(buffer.input);
        checked++;
      }
    }
    // Positions agree between driver and device after all those laps.
    expect(r.sim.queueState(0)).toMatchObject({
      lastAvail: ring.nextAvail,
      availWrap: ring.availWrap,
      usedIdx: ring.nextUsed,
      usedWrap: ring.usedWrap,
      inFlight: 0,
    });
    expect(r.sim.stats.requests).toBe(1000);
    expect(r.sim.violations).toEqual([]);
  });

  test('out-of-order completions: used descriptors in completion order, each advancing by its length', async () => {
    const { model, held } = heldModel();
    const { r, ring } = live({ model });
    const a = echoBuffer(r, ring, 0, [1, 1]); // 3 descriptors
    const b = echoBuffer(r, ring, 10, []); // 1 descriptor (writable only)
    const c = echoBuffer(r, ring, 20, [1]); // 2 descriptors
    r.sim.process();
    expect(r.sim.queueState(0)).toMatchObject({ inFlight: 3, lastAvail: 6 });
    held[1].complete();
    await turns();
    held[2].complete();
    await turns();
    held[0].complete();
    await turns();
    expect(ring.popAll().map((u) => [u.slot, u.id, u.skipped])).toEqual([
      [0, b.id, 1],
      [1, c.id, 2],
      [3, a.id, 3],
    ]);
    expect(r.sim.queueState(0)).toMatchObject({ usedIdx: 6, inFlight: 0 });
    expect(r.sim.violations).toEqual([]);
  });

  test('out-of-order completions across many laps (shuffled each round) keep driver and device in step', async () => {
    const { model, held } = heldModel();
    const { r, ring } = live({ size: 7, model });
    let seed = 1;
    const random = (n: number): number => (seed = (seed * 1103515245 + 12345) & 0x7fffffff) % n;
    const pending = new Map<number, { input: number[]; out: ReturnType<TestDriver['buffer']> }>();
    let done = 0;
    for (let round = 0; round < 60; round++) {
      while (ring.room >= 3) {
        const buffer = echoBuffer(
          r,
          ring,
          round,
          Array.from({ length: random(3) }, () => 1 + random(3)),
        );
        pending.set(buffer.id, buffer);
      }
      r.sim.process();
      const now = held.splice(0);
      while (now.length) now.splice(random(now.length), 1)[0].complete();
      await turns();
      for (const used of ring.popAll()) {
        const buffer = pending.get(used.id)!;
        expect([...r.bytes(buffer.out, buffer.input.length)]).toEqual(buffer.input);
        pending.delete(used.id);
        done++;
      }
      expect(pending.size).toBe(0);
    }
    expect(done).toBeGreaterThan(100);
    expect(r.sim.violations).toEqual([]);
  });

  test('completions that arrive after a reset are discarded', async () => {
    const { model, held } = heldModel();
    const { r, ring } = live({ model });
    echoBuffer(r, ring, 0, [1]);
    r.sim.process();
    r.sim.writel(R.Status, 0);
    held[0].complete();
    await turns();
    expect(ring.popAll()).toEqual([]);
    expect(ring.flagsAt(0) & F_USED).toBe(0);
    expect(r.sim.stats.interrupts).toBe(0);
  });

  test('QueueReset (§2.6.1) drops the ring state: the re-enabled ring starts at slot 0 with wrap counters 1', () => {
    const { r, ring } = live({ size: 4 });
    for (let n = 0; n < 5; n++) {
      echoBuffer(r, ring, n, []);
      r.sim.process();
      ring.popAll();
    }
    expect(r.sim.queueState(0)).toMatchObject({ lastAvail: 1, availWrap: false });
    r.sim.writel(R.QueueSel, 0);
    r.sim.writel(R.QueueReset, 1);
    expect(r.sim.pollUntil(R.QueueReset, 1, 0, 100)).toBe(0);
    const fresh = setupPackedQueue(r, 0, 4);
    expect(r.sim.queueState(0)).toMatchObject({
      ready: true,
      ring: 'packed',
      lastAvail: 0,
      availWrap: true,
      usedIdx: 0,
      usedWrap: true,
    });
    const { id } = echoBuffer(r, fresh, 9, [2]);
    r.sim.process();
    expect(fresh.popAll().map((u) => [u.slot, u.id, u.len])).toEqual([[0, id, 2]]);
    expect(r.sim.violations).toEqual([]);
  });

  test('the usedElement fault rewrites id and len of the used descriptor; WRITE follows the rewritten len', () => {
    const seen: unknown[] = [];
    const { r, ring } = live({
      sim: {
        faults: {
          usedElement: (queue, element) => {
            seen.push({ queue, ...element });
            return { id: 0x1234, len: 0 };
          },
        },
      },
    });
    const { id } = echoBuffer(r, ring, 1, [2]);
    r.sim.process();
    expect(seen).toEqual([{ queue: 0, id, len: 2 }]);
    expect(ring.desc.getUint16(12, true)).toBe(0x1234);
    expect(ring.desc.getUint32(8, true)).toBe(0);
    expect(ring.flagsAt(0)).toBe(F_AVAIL | F_USED);
    // The device still knows the real Buffer ID is free: reusing it is fine.
    ring.outstanding.length = 0;
    ring.nextUsed = 2;
    ring.add([{ addr: r.buffer(1).iova, len: 1 }], id);
    r.sim.process();
    expect(r.sim.violations).toEqual([]);
  });
});

describe('packed event suppression (virtio 1.2 §2.8.10)', () => {
  test('driver area DISABLE suppresses used buffer notifications (counted), ENABLE lets them through', () => {
    const { r, ring } = live({ wanted: NO_EVENT_IDX });
    ring.setDriverEvent(RingEventFlags.DISABLE);
    echoBuffer(r, ring, 0, [1]);
    r.sim.process();
    expect(ring.popAll()).toHaveLength(1);
    expect(r.sim.stats).toMatchObject({ interrupts: 0, interruptsSuppressed: 1 });
    expect(r.sim.readl(R.InterruptStatus)).toBe(0);
    ring.setDriverEvent(RingEventFlags.ENABLE);
    echoBuffer(r, ring, 0, [1]);
    r.sim.process();
    expect(r.sim.stats).toMatchObject({ interrupts: 1, interruptsSuppressed: 1 });
    expect(r.sim.readl(R.InterruptStatus)).toBe(MmioInterrupt.VRING);
    expect(r.sim.violations).toEqual([]);
  });

  test('DESC with EVENT_IDX: exactly one interrupt, when the named descriptor (slot and wrap counter) is used', () => {
    const { r, ring } = live({ size: 4 });
    // Slot 1 with wrap counter 0 is position 5: the second lap.
    ring.setDriverEvent(RingEventFlags.DESC, 1, false);
    const interruptsAt: number[] = [];
    for (let n = 0; n < 8; n++) {
      echoBuffer(r, ring, n, []); // one descriptor each
      r.sim.process();
      ring.popAll();
      if (r.sim.stats.interrupts > interruptsAt.length) interruptsAt.push(n);
    }
    expect(interruptsAt).toEqual([5]);
    expect(r.sim.stats).toMatchObject({ interrupts: 1, interruptsSuppressed: 7 });
    expect(r.sim.violations).toEqual([]);
  });

  test('DESC fires when the named descriptor is inside a list that is used (the whole list is used at once)', () => {
    const { r, ring } = live({ size: 8 });
    ring.setDriverEvent(RingEventFlags.DESC, 3, true);
    echoBuffer(r, ring, 0, [1]); // slots 0–1
    r.sim.process();
    expect(r.sim.stats.interrupts).toBe(0);
    echoBuffer(r, ring, 0, [1, 1, 1]); // slots 2–5: slot 3 inside
    r.sim.process();
    expect(r.sim.stats).toMatchObject({ interrupts: 1, interruptsSuppressed: 1 });
    echoBuffer(r, ring, 0, [1]); // slots 6–7: past it
    r.sim.process();
    expect(r.sim.stats).toMatchObject({ interrupts: 1, interruptsSuppressed: 2 });
    expect(r.sim.violations).toEqual([]);
  });

  test('device area: DESC at the next descriptor to be made available with EVENT_IDX, ENABLE without', () => {
    const { r, ring } = live({ size: 4 });
    expect(ring.deviceEventFlags).toBe(RingEventFlags.DESC);
    expect(ring.deviceEventDesc).toEqual({ off: 0, wrap: true });
    for (let n = 0; n < 5; n++) {
      echoBuffer(r, ring, n, []);
      r.sim.process();
      ring.popAll();
    }
    expect(ring.deviceEventDesc).toEqual({ off: 1, wrap: false });
    expect(ring.deviceEventDesc).toEqual({ off: ring.nextAvail, wrap: ring.availWrap });
    const plain = live({ wanted: NO_EVENT_IDX });
    expect(plain.ring.deviceEventFlags).toBe(RingEventFlags.ENABLE);
  });

  test('suppressNotifications: the device area says DISABLE, notifications do nothing, process() works', async () => {
    for (const wanted of [-1n, NO_EVENT_IDX]) {
      const { r, ring } = live({ wanted, sim: { suppressNotifications: true } });
      expect(ring.deviceEventFlags).toBe(RingEventFlags.DISABLE);
      echoBuffer(r, ring, 0, [1]);
      notifyPacked(r, ring);
      await turns();
      expect(ring.popAll()).toEqual([]);
      expect(r.sim.stats.notifications).toEqual([1]);
      r.sim.process();
      expect(ring.popAll()).toHaveLength(1);
      expect(ring.deviceEventFlags).toBe(RingEventFlags.DISABLE);
      expect(r.sim.violations).toEqual([]);
    }
  });
});

describe('notification data on a packed ring (virtio 1.2 §2.9, §2.8.16)', () => {
  test('next_off and next_wrap name the next descriptor to be made available; a wrong one is recorded', () => {
    const { r, ring } = live({ size: 4 });
    for (let n = 0; n < 6; n++) {
      echoBuffer(r, ring, n, []);
      r.sim.writel(R.QueueNotify, ring.notificationValue());
      r.sim.process();
      ring.popAll();
    }
    expect(ring).toMatchObject({ nextAvail: 2, availWrap: false });
    expect(r.sim.violations).toEqual([]);
    // A notification without new buffers repeats the same values (§2.9).
    r.sim.writel(R.QueueNotify, ring.notificationValue());
    expect(r.sim.violations).toEqual([]);
    echoBuffer(r, ring, 0, [1]);
    r.sim.writel(R.QueueNotify, (0 | (3 << 16)) >>> 0); // says slot 3, wrap 0: the ring is at slot 0 wrap 1
    r.sim.writel(R.QueueNotify, (0 | (0 << 16)) >>> 0); // right slot, wrong wrap counter
    expect(r.rules).toEqual(['packed-notification-data-mismatch', 'packed-notification-data-mismatch']);
    expect(r.sim.violations[0].message).toMatch(
      /next_off 3 next_wrap 0; the next descriptor to be made available is 0 with wrap counter 1/,
    );
    expect(r.sim.violations[0].section).toBe('2.8.16');
  });
});

test('inOrderBatch must be a positive integer', () => {
  expect(() => rig(new TestModel(), { inOrderBatch: 0 })).toThrow(RangeError);
  expect(() => rig(new TestModel(), { inOrderBatch: 1.5 })).toThrow(RangeError);
});
