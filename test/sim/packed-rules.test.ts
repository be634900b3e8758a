import { SIM_RULES, type SimRequest } from '../../lib/sim';
import { FeatureBit, feature, MmioInterrupt, RingEventFlags } from '../../lib/spec';
import {
  availBits,
  F_AVAIL,
  F_INDIRECT,
  F_NEXT,
  F_USED,
  F_WRITE,
  type PackedTestRing,
  setupPackedQueue,
  TRANSPORT_PACKED,
  writeDesc,
} from './packed-test-driver';
import { DEVICE_NEEDS_RESET, nextInterrupt, R, type TestDriver, TestModel, useTestDrivers } from './sim-test-driver';

const rig = useTestDrivers();

const ALL = -1n;
const NO_INDIRECT = ~feature(FeatureBit.INDIRECT_DESC);
const NO_EVENT_IDX = ~feature(FeatureBit.EVENT_IDX);

function live(
  size: number,
  wanted: bigint,
  model = new TestModel({ queueSizes: [8] }),
): { r: TestDriver; ring: PackedTestRing } {
  const r = rig(model, { transportFeatures: TRANSPORT_PACKED });
  r.init(wanted);
  const ring = setupPackedQueue(r, 0, size);
  r.driverOk();
  return { r, ring };
}

/** A model that never completes: buffers stay in flight. */
function holdingModel(): TestModel {
  const model = new TestModel({ queueSizes: [8] });
  model.handler = () => new Promise<number>(() => {});
  return model;
}

/** An indirect table in pool memory with the given entries. */
function table(r: TestDriver, entries: { len: number; flags: number }[]): { iova: bigint; len: number } {
  const region = r.pool.allocate(16 * entries.length, 16);
  const view = new DataView(region.view, region.offset, 16 * entries.length);
  entries.forEach((e, i) =>
    writeDesc(view, i, { addr: r.buffer(Math.max(e.len, 1)).iova, len: e.len, flags: e.flags }),
  );
  return { iova: region.iova, len: 16 * entries.length };
}

describe('driver errors that break a packed queue (DEVICE_NEEDS_RESET, configuration change notification)', () => {
  type Setup = (r: TestDriver, ring: PackedTestRing) => void;
  // size, features, setup: every row has all columns (a shorter row would make jest pass `done`).
  const cases: [string, number, bigint, Setup][] = [
    [
      'packed-desc-flags-inconsistent',
      8,
      ALL,
      (r, ring) => ring.addRaw([{ addr: r.buffer(1).iova, len: 1, id: 0, flags: F_AVAIL | F_USED }], 0, true),
    ],
    [
      'packed-desc-flags-inconsistent',
      8,
      ALL,
      (r, ring) => {
        const b = r.buffer(1).iova;
        ring.addRaw(
          [
            { addr: b, len: 1, flags: F_NEXT | availBits(true) },
            { addr: b, len: 1, id: 1, flags: F_AVAIL | F_USED },
          ],
          1,
          true,
        );
      },
    ],
    [
      'packed-chain-incomplete',
      8,
      ALL,
      (r, ring) => {
        const b = r.buffer(1).iova;
        // The second descriptor still looks as it did before (zero: not available in lap 1).
        ring.addRaw(
          [
            { addr: b, len: 1, flags: F_NEXT | availBits(true) },
            { addr: b, len: 1, id: 1, flags: 0 },
          ],
          1,
          true,
        );
      },
    ],
    [
      'packed-chain-too-long',
      4,
      ALL,
      (r, ring) => {
        const b = r.buffer(1).iova;
        ring.addRaw(
          [0, 1, 2, 3].map(() => ({ addr: b, len: 1, flags: F_NEXT })),
          0,
        );
      },
    ],
    [
      'packed-readable-after-writable',
      8,
      ALL,
      (r, ring) => {
        const b = r.buffer(1).iova;
        ring.addRaw(
          [
            { addr: b, len: 1, flags: F_NEXT | F_WRITE },
            { addr: b, len: 1, id: 0, flags: 0 },
          ],
          0,
        );
      },
    ],
    [
      'packed-indirect-not-negotiated',
      8,
      NO_INDIRECT,
      (r, ring) => {
        const t = table(r, [{ len: 1, flags: 0 }]);
        ring.addRaw([{ addr: t.iova, len: t.len, flags: F_INDIRECT }], 0);
      },
    ],
    [
      'packed-indirect-with-next',
      8,
      ALL,
      (r, ring) => {
        const t = table(r, [{ len: 1, flags: 0 }]);
        ring.addRaw(
          [
            { addr: t.iova, len: t.len, flags: F_INDIRECT | F_NEXT },
            { addr: r.buffer(1).iova, len: 1, id: 0, flags: 0 },
          ],
          0,
        );
      },
    ],
    [
      'packed-indirect-with-next',
      8,
      ALL,
      (r, ring) => {
        // §2.8.19: no indirect descriptor in a list linked by NEXT, even as its last element (the split ring allows
        // that).
        const t = table(r, [{ len: 1, flags: 0 }]);
        ring.addRaw(
          [
            { addr: r.buffer(1).iova, len: 1, flags: F_NEXT },
            { addr: t.iova, len: t.len, id: 0, flags: F_INDIRECT },
          ],
          0,
        );
      },
    ],
    [
      'packed-indirect-len',
      8,
      ALL,
      (r, ring) => {
        const t = table(r, [
          { len: 1, flags: 0 },
          { len: 1, flags: 0 },
        ]);
        ring.addRaw([{ addr: t.iova, len: 17, flags: F_INDIRECT }], 0);
      },
    ],
    ['buffer-unreachable', 8, ALL, (_r, ring) => ring.addRaw([{ addr: 0x100n, len: 64, flags: 0 }], 0)],
  ];

  test.each(cases)('%s (queue size %i)', async (rule, size, wanted, setup) => {
    const model = new TestModel({ queueSizes: [8] });
    // Without NOTIFICATION_DATA: some of these rings do not even agree on where the driver is.
    const { r, ring } = live(size, wanted & ~feature(FeatureBit.NOTIFICATION_DATA), model);
    setup(r, ring);
    const interrupt = nextInterrupt(r.sim);
    r.sim.writel(R.QueueNotify, 0);
    await interrupt;
    expect(r.rules).toEqual([rule]);
    expect(r.sim.violations[0].section).toBe(SIM_RULES[rule as keyof typeof SIM_RULES]);
    expect(model.requests).toHaveLength(0);
    expect(r.sim.queueState(0).broken).toBe(true);
    expect(r.status() & DEVICE_NEEDS_RESET).toBe(DEVICE_NEEDS_RESET);
    expect(r.ack()).toBe(MmioInterrupt.CONFIG);
    // Nothing was used and the device's positions did not move.
    expect(r.sim.queueState(0)).toMatchObject({
      lastAvail: 0,
      availWrap: true,
      usedIdx: 0,
      usedWrap: true,
      inFlight: 0,
    });
  });

  test('packed-ring-overrun: a descriptor made available in a slot the device still owns', () => {
    const { r, ring } = live(4, ALL, holdingModel());
    const b = r.buffer(1).iova;
    ring.add([
      { addr: b, len: 1 },
      { addr: b, len: 1 },
    ]);
    ring.add([
      { addr: b, len: 1 },
      { addr: b, len: 1 },
    ]);
    r.sim.process();
    expect(r.sim.queueState(0)).toMatchObject({ inFlight: 2, lastAvail: 0, availWrap: false });
    // The ring is full; the driver overwrites slot 0 anyway with the next lap's marking.
    ring.addRaw([{ addr: b, len: 1, id: 7, flags: 0 }], 7);
    r.sim.process();
    expect(r.rules).toEqual(['packed-ring-overrun']);
    expect(r.sim.violations[0].section).toBe('2.8.16');
    expect(r.sim.queueState(0).broken).toBe(true);
  });

  test('packed-ring-overrun: a list that needs more room than the device has given back', () => {
    const { r, ring } = live(4, ALL, holdingModel());
    const b = r.buffer(1).iova;
    ring.add([
      { addr: b, len: 1 },
      { addr: b, len: 1 },
      { addr: b, len: 1 },
    ]);
    r.sim.process();
    ring.addRaw(
      [
        { addr: b, len: 1, flags: F_NEXT },
        { addr: b, len: 1, id: 5, flags: 0 },
      ],
      5,
    ); // slot 3, then slot 0 (still the device's)
    r.sim.process();
    expect(r.rules).toEqual(['packed-ring-overrun']);
  });

  test('packed-buffer-id-in-flight: a Buffer ID reused while its buffer is outstanding', () => {
    const { r, ring } = live(8, ALL, holdingModel());
    const b = r.buffer(1).iova;
    ring.add([{ addr: b, len: 1 }], 3);
    r.sim.process();
    ring.addRaw([{ addr: b, len: 1, id: 3, flags: 0 }], 3);
    r.sim.process();
    expect(r.rules).toEqual(['packed-buffer-id-in-flight']);
    expect(r.sim.violations[0].message).toMatch(/Buffer ID 3/);
    expect(r.sim.queueState(0)).toMatchObject({ broken: true, inFlight: 0 });
  });
});

describe('driver errors a packed queue records and goes on from', () => {
  test('packed-indirect-flags: flags other than WRITE in an indirect table recorded (once per table), ignored', () => {
    const model = new TestModel({ queueSizes: [8] });
    const { r, ring } = live(8, ALL, model);
    const t = table(r, [
      { len: 2, flags: F_NEXT },
      { len: 3, flags: F_NEXT | F_WRITE },
      { len: 4, flags: F_WRITE | 0x80 },
    ]);
    ring.addRaw([{ addr: t.iova, len: t.len, id: 4, flags: F_INDIRECT }], 4);
    r.sim.process();
    expect(r.rules).toEqual(['packed-indirect-flags']);
    expect(model.requests[0]).toMatchObject({ head: 4, readableBytes: 2, writableBytes: 7 });
    expect(ring.popAll().map((u) => u.id)).toEqual([4]);
    expect(r.sim.queueState(0).broken).toBe(false);
  });

  test('packed-event-flags-invalid: reserved values, DESC without EVENT_IDX, offset outside the ring (once)', () => {
    const withIdx = live(8, ALL);
    withIdx.ring.setDriverEvent(3);
    withIdx.r.sim.process();
    withIdx.r.sim.process();
    withIdx.ring.setDriverEvent(RingEventFlags.DESC, 8, true);
    withIdx.r.sim.process();
    expect(withIdx.r.rules).toEqual(['packed-event-flags-invalid', 'packed-event-flags-invalid']);
    expect(withIdx.r.sim.violations[1].message).toMatch(/desc_event_off 8, not below the queue size 8/);
    // An event that can never be used is taken as ENABLE rather than stalling the driver.
    withIdx.ring.add([{ addr: withIdx.r.buffer(1).iova, len: 1 }]);
    withIdx.r.sim.process();
    expect(withIdx.r.sim.stats).toMatchObject({ interrupts: 1, interruptsSuppressed: 0 });

    const without = live(8, NO_EVENT_IDX);
    without.ring.setDriverEvent(RingEventFlags.DESC, 5, true);
    without.ring.add([{ addr: without.r.buffer(1).iova, len: 1 }]);
    without.r.sim.process();
    expect(without.r.rules).toEqual(['packed-event-flags-invalid']);
    // Treated as ENABLE: the interrupt is sent.
    expect(without.r.sim.stats).toMatchObject({ interrupts: 1, interruptsSuppressed: 0 });
  });

  test('every new rule has a packed or in-order section', () => {
    const rules = Object.entries(SIM_RULES).filter(([id]) => id.startsWith('packed-') || id.startsWith('in-order-'));
    expect(rules.length).toBe(15);
    for (const [, section] of rules) expect(section).toMatch(/^2\.(8|7\.5)(\.\d+)*$/);
  });
});

test('a correct driver using every packed feature breaks no rule', () => {
  const model = new TestModel({ queueSizes: [8] });
  const seen: SimRequest[] = [];
  model.handler = (request) => (seen.push(request), request.writableBytes);
  const { r, ring } = live(5, ALL, model);
  for (let n = 0; n < 50; n++) {
    if (n % 3 === 0) {
      const t = table(r, [
        { len: 1, flags: 0 },
        { len: 2, flags: F_WRITE },
      ]);
      ring.addRaw([{ addr: t.iova, len: t.len, id: n % 5, flags: F_INDIRECT }], n % 5);
    } else {
      ring.add([
        { addr: r.buffer(1).iova, len: 1 },
        { addr: r.buffer(2).iova, len: 2, write: true },
      ]);
    }
    r.sim.writel(R.QueueNotify, ring.notificationValue());
    r.sim.process();
    expect(ring.popAll()).toHaveLength(1);
  }
  expect(seen).toHaveLength(50);
  expect(r.sim.violations).toEqual([]);
});
