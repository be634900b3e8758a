import type { SimRequest } from '../../lib/sim';
import {
  DeviceStatus,
  FeatureBit,
  feature,
  MmioInterrupt,
  needEvent,
  nextAvailNotificationData,
  VRING_AVAIL_F_NO_INTERRUPT,
  VRING_USED_F_NO_NOTIFY,
} from '../../lib/spec';
import {
  DEVICE_NEEDS_RESET,
  nextInterrupt,
  R,
  TestDriver,
  TestModel,
  type TestRing,
  turns,
  VirtqDesc,
  useTestDrivers,
} from './sim-test-driver';

const { F_NEXT, F_WRITE, F_INDIRECT } = VirtqDesc;

const rig = useTestDrivers();

const NO_EVENT_IDX = ~feature(FeatureBit.EVENT_IDX);
const NO_INDIRECT = ~feature(FeatureBit.INDIRECT_DESC);
const ALL = -1n;

/** A live device with one queue of `size`: init, queue 0 set up, DRIVER_OK. */
function live(
  version: 1 | 2,
  options: {
    size?: number;
    wanted?: bigint;
    model?: TestModel;
    sim?: ConstructorParameters<typeof TestDriver>[1];
  } = {},
): { r: TestDriver; ring: TestRing; model: TestModel } {
  const model = options.model ?? new TestModel({ queueSizes: [options.size ?? 8] });
  const r = rig(model, { version, ...options.sim });
  r.init(options.wanted ?? -1n);
  const ring = r.setupQueue(0, options.size ?? 8);
  r.driverOk();
  return { r, ring, model };
}

/** Descriptor `i` = readable `input`, descriptor `i + 1` = writable of `outLen`; returns the writable region. */
function echoChain(
  r: TestDriver,
  ring: TestRing,
  head: number,
  input: Uint8Array,
  outLen: number,
): ReturnType<TestDriver['buffer']> {
  const inBuf = r.buffer(input);
  const outBuf = r.buffer(outLen);
  ring.setDesc(head, { addr: inBuf.iova, len: input.length, flags: F_NEXT, next: head + 1 });
  ring.setDesc(head + 1, { addr: outBuf.iova, len: outLen, flags: F_WRITE });
  return outBuf;
}

describe.each([1, 2] as const)('the split ring on a Version %i sim (virtio 1.2 §2.7)', (version) => {
  test('one chain: notify, interrupt, used element with the head and the written length', async () => {
    const { r, ring, model } = live(version);
    const out = echoChain(r, ring, 0, Uint8Array.from([1, 2, 3, 4, 5]), 8);
    ring.publish(0);
    const interrupt = nextInterrupt(r.sim);
    r.notify(0);
    expect(await interrupt).toBe(1);
    expect(r.ack()).toBe(MmioInterrupt.VRING);
    expect(ring.usedIdx).toBe(1);
    expect(ring.usedElement(0)).toEqual({ id: 0, len: 5 });
    expect([...r.bytes(out, 5)]).toEqual([1, 2, 3, 4, 5]);
    expect(model.requests).toHaveLength(1);
    expect(model.requests[0]).toMatchObject({ queue: 0, head: 0, readableBytes: 5, writableBytes: 8 });
    expect(r.sim.stats).toEqual({ notifications: [1], interrupts: 1, interruptsSuppressed: 0, requests: 1 });
    expect(r.sim.queueState(0)).toMatchObject({ lastAvail: 1, usedIdx: 1, inFlight: 0 });
    expect(r.sim.violations).toEqual([]);
  });

  test('notifications in one tick are coalesced into one pass and one interrupt', async () => {
    const { r, ring } = live(version);
    for (const head of [0, 2, 4]) {
      echoChain(r, ring, head, Uint8Array.of(head), 1);
      ring.publish(head);
      r.notify(0);
    }
    await nextInterrupt(r.sim);
    await turns();
    expect(ring.usedIdx).toBe(3);
    expect([0, 1, 2].map((i) => ring.usedElement(i))).toEqual([
      { id: 0, len: 1 },
      { id: 2, len: 1 },
      { id: 4, len: 1 },
    ]);
    expect(r.sim.stats).toMatchObject({ notifications: [3], interrupts: 1 });
  });

  test('an indirect table (after a direct descriptor) is walked in order', () => {
    const { r, ring, model } = live(version);
    const header = r.buffer(Uint8Array.of(7));
    const body = r.buffer(Uint8Array.of(8, 9));
    const out = r.buffer(3);
    const table = r.pool.allocate(32, 16);
    const tableView = new DataView(table.view, table.offset, 32);
    ring.setDesc(0, { addr: body.iova, len: 2, flags: F_NEXT, next: 1 }, tableView);
    ring.setDesc(1, { addr: out.iova, len: 3, flags: F_WRITE }, tableView);
    ring.setDesc(5, { addr: header.iova, len: 1, flags: F_NEXT, next: 6 });
    ring.setDesc(6, { addr: table.iova, len: 32, flags: F_INDIRECT | F_WRITE }); // WRITE ignored (§2.7.5.3.2)
    ring.publish(5);
    r.sim.process();
    expect(ring.usedElement(0)).toEqual({ id: 5, len: 3 });
    expect([...r.bytes(out)]).toEqual([7, 8, 9]);
    expect(model.requests[0].readable.map((b) => b.length)).toEqual([1, 2]);
    expect(r.sim.violations).toEqual([]);
  });

  test('without EVENT_IDX, avail flags NO_INTERRUPT suppresses the interrupt', () => {
    const { r, ring } = live(version, { wanted: NO_EVENT_IDX });
    ring.availFlags = VRING_AVAIL_F_NO_INTERRUPT;
    echoChain(r, ring, 0, Uint8Array.of(1), 1);
    ring.publish(0);
    r.sim.process();
    expect(ring.usedIdx).toBe(1);
    expect(r.sim.stats).toMatchObject({ interrupts: 0, interruptsSuppressed: 1 });
    expect(r.sim.readl(R.InterruptStatus)).toBe(0);
    ring.availFlags = 0;
    echoChain(r, ring, 2, Uint8Array.of(1), 1);
    ring.publish(2);
    r.sim.process();
    expect(r.sim.stats).toMatchObject({ interrupts: 1, interruptsSuppressed: 1 });
    expect(r.sim.readl(R.InterruptStatus)).toBe(MmioInterrupt.VRING);
    expect(r.sim.violations).toEqual([]);
  });

  test('with EVENT_IDX, used_event decides, and avail_event asks for the next add', () => {
    const { r, ring } = live(version);
    ring.usedEvent = 1; // interrupt when used idx passes 1, i.e. after the second element
    for (const head of [0, 2]) {
      echoChain(r, ring, head, Uint8Array.of(head), 1);
      ring.publish(head);
      r.sim.process();
      expect(ring.availEvent).toBe(ring.usedIdx);
    }
    expect(r.sim.stats).toMatchObject({ interrupts: 1, interruptsSuppressed: 1 });
    expect(needEvent(1, 2, 1)).toBe(true);
    expect(ring.usedFlags).toBe(0);
    expect(r.sim.violations).toEqual([]);
  });

  test('avail flags other than 0 with EVENT_IDX, or above 1 without, are avail-flags-invalid (once per value)', () => {
    const withIdx = live(version);
    withIdx.ring.availFlags = 1;
    withIdx.r.sim.process();
    withIdx.r.sim.process();
    expect(withIdx.r.rules).toEqual(['avail-flags-invalid']);
    const without = live(version, { wanted: NO_EVENT_IDX });
    without.ring.availFlags = 2;
    without.r.sim.process();
    expect(without.r.rules).toEqual(['avail-flags-invalid']);
  });

  test('async completions are used when they resolve', async () => {
    const model = new TestModel({ queueSizes: [8] });
    const resolvers: ((n: number) => void)[] = [];
    model.handler = () => new Promise<number>((resolve) => resolvers.push(resolve));
    const { r, ring } = live(version, { model });
    echoChain(r, ring, 0, Uint8Array.of(1), 4);
    echoChain(r, ring, 2, Uint8Array.of(1), 4);
    ring.publish(0, 2);
    r.sim.process();
    expect(r.sim.queueState(0).inFlight).toBe(2);
    expect(ring.usedIdx).toBe(0);
    const interrupt = nextInterrupt(r.sim);
    resolvers[1](3);
    await interrupt;
    expect(ring.usedIdx).toBe(1);
    expect(ring.usedElement(0)).toEqual({ id: 2, len: 3 });
    resolvers[0](4);
    await turns();
    expect(ring.usedElement(1)).toEqual({ id: 0, len: 4 });
    expect(r.sim.queueState(0).inFlight).toBe(0);
    expect(r.sim.violations).toEqual([]);
  });

  test('completions that arrive after a reset are discarded', async () => {
    const model = new TestModel({ queueSizes: [8] });
    const resolvers: ((n: number) => void)[] = [];
    model.handler = () => new Promise<number>((resolve) => resolvers.push(resolve));
    const { r, ring } = live(version, { model });
    echoChain(r, ring, 0, Uint8Array.of(1), 4);
    ring.publish(0);
    r.sim.process();
    r.sim.writel(R.Status, 0);
    resolvers[0](4);
    await turns();
    expect(ring.usedIdx).toBe(0);
    expect(ring.usedElement(0)).toEqual({ id: 0, len: 0 });
    expect(r.sim.stats.interrupts).toBe(0);
    expect(r.sim.readl(R.InterruptStatus)).toBe(0);
    expect(r.sim.violations).toEqual([]);
  });

  test('a late completion is not written into the ring set up after the reset', async () => {
    const model = new TestModel({ queueSizes: [8] });
    const resolvers: ((n: number) => void)[] = [];
    model.handler = () => new Promise<number>((resolve) => resolvers.push(resolve));
    const { r, ring } = live(version, { model });
    echoChain(r, ring, 0, Uint8Array.of(1), 4);
    ring.publish(0);
    r.sim.process();
    r.init();
    const fresh = r.setupQueue(0, 8);
    r.driverOk();
    resolvers[0](4);
    await turns();
    expect(fresh.usedIdx).toBe(0);
    expect(fresh.usedElement(0)).toEqual({ id: 0, len: 0 });
    expect(r.sim.queueState(0)).toMatchObject({ ready: true, usedIdx: 0, inFlight: 0 });
    expect(r.sim.stats.interrupts).toBe(0);
    expect(r.sim.violations).toEqual([]);
  });

  test('a handler that resets the device ends the pass; nothing more is used', () => {
    const model = new TestModel({ queueSizes: [8] });
    const { r, ring } = live(version, { model });
    model.handler = () => (r.sim.writel(R.Status, 0), 1);
    echoChain(r, ring, 0, Uint8Array.of(1), 1);
    echoChain(r, ring, 2, Uint8Array.of(1), 1);
    ring.publish(0, 2);
    r.sim.process();
    expect(model.requests).toHaveLength(1);
    expect(ring.usedIdx).toBe(0);
    expect(r.sim.violations).toEqual([]);
  });

  test('the fault hook rewrites the used element just before it is written', () => {
    const seen: unknown[] = [];
    const { r, ring } = live(version, {
      sim: {
        faults: {
          usedElement: (queue, element) => {
            seen.push({ queue, ...element });
            return { id: 77, len: 0xffff_ffff };
          },
        },
      },
    });
    echoChain(r, ring, 0, Uint8Array.of(1, 2), 2);
    ring.publish(0);
    r.sim.process();
    expect(seen).toEqual([{ queue: 0, id: 0, len: 2 }]);
    expect(ring.usedElement(0)).toEqual({ id: 77, len: 0xffff_ffff });
    // The device still knows the real head is free: reusing it is fine.
    echoChain(r, ring, 0, Uint8Array.of(1, 2), 2);
    ring.publish(0);
    r.sim.process();
    expect(r.sim.violations).toEqual([]);
  });

  test('suppressNotifications: the device asks for none, notifications do nothing, process() works', async () => {
    for (const wanted of [-1n, NO_EVENT_IDX]) {
      const { r, ring } = live(version, { wanted, sim: { suppressNotifications: true } });
      const eventIdx = wanted === -1n;
      if (eventIdx) {
        expect(ring.usedFlags).toBe(0);
        expect(needEvent(ring.availEvent, 1, 0)).toBe(false);
      } else {
        expect(ring.usedFlags).toBe(VRING_USED_F_NO_NOTIFY);
      }
      echoChain(r, ring, 0, Uint8Array.of(1), 1);
      ring.publish(0);
      r.notify(0);
      await turns();
      expect(ring.usedIdx).toBe(0);
      expect(r.sim.stats.notifications).toEqual([1]);
      r.sim.process();
      expect(ring.usedIdx).toBe(1);
      if (eventIdx) expect(needEvent(ring.availEvent, 2, 1)).toBe(false);
      expect(r.sim.violations).toEqual([]);
    }
  });

  test('model errors: a throw, a rejection or a bad length complete with len 0 (or clamped), recorded', async () => {
    const model = new TestModel({ queueSizes: [8] });
    const results: (() => number | Promise<number>)[] = [
      () => {
        throw new Error('boom');
      },
      () => Promise.reject(new Error('late boom')),
      () => 99,
    ];
    model.handler = () => results.shift()!();
    const { r, ring } = live(version, { model });
    for (const head of [0, 2, 4]) echoChain(r, ring, head, Uint8Array.of(1), 4);
    ring.publish(0, 2, 4);
    r.sim.process();
    await turns();
    expect(ring.usedIdx).toBe(3);
    expect([0, 1, 2].map((i) => ring.usedElement(i))).toEqual([
      { id: 0, len: 0 },
      { id: 4, len: 4 },
      { id: 2, len: 0 },
    ]);
    expect(r.sim.modelErrors.map((e) => e.message)).toEqual([
      'boom',
      expect.stringMatching(/returned 99 for a chain with 4 writable bytes/),
      'late boom',
    ]);
    expect(r.sim.violations).toEqual([]);
  });
});

describe('ring violations break the queue (DEVICE_NEEDS_RESET, configuration change notification)', () => {
  type Setup = (r: TestDriver, ring: TestRing) => void;
  // Every row has all three columns: a shorter row would make jest pass `done` as the last argument.
  const cases: [string, Setup, bigint][] = [
    ['descriptor-index-out-of-range', (_r, ring) => ring.publish(8), ALL],
    [
      'descriptor-index-out-of-range',
      (r, ring) => {
        const b = r.buffer(1);
        ring.setDesc(0, { addr: b.iova, len: 1, flags: F_NEXT, next: 9 });
        ring.publish(0);
      },
      ALL,
    ],
    [
      'descriptor-loop',
      (r, ring) => {
        const b = r.buffer(1);
        ring.setDesc(0, { addr: b.iova, len: 1, flags: F_NEXT, next: 1 });
        ring.setDesc(1, { addr: b.iova, len: 1, flags: F_NEXT, next: 0 });
        ring.publish(0);
      },
      ALL,
    ],
    [
      'readable-after-writable',
      (r, ring) => {
        const b = r.buffer(1);
        ring.setDesc(0, { addr: b.iova, len: 1, flags: F_NEXT | F_WRITE, next: 1 });
        ring.setDesc(1, { addr: b.iova, len: 1 });
        ring.publish(0);
      },
      ALL,
    ],
    [
      'indirect-not-negotiated',
      (r, ring) => {
        const t = r.pool.allocate(16, 16);
        ring.setDesc(0, { addr: t.iova, len: 16, flags: F_INDIRECT });
        ring.publish(0);
      },
      NO_INDIRECT,
    ],
    [
      'indirect-with-next',
      (r, ring) => {
        const t = r.pool.allocate(16, 16);
        ring.setDesc(0, { addr: t.iova, len: 16, flags: F_INDIRECT | F_NEXT, next: 1 });
        ring.publish(0);
      },
      ALL,
    ],
    [
      'nested-indirect',
      (r, ring) => {
        const t = r.pool.allocate(16, 16);
        ring.setDesc(0, { addr: t.iova, len: 16, flags: F_INDIRECT }, new DataView(t.view, t.offset, 16));
        ring.setDesc(0, { addr: t.iova, len: 16, flags: F_INDIRECT });
        ring.publish(0);
      },
      ALL,
    ],
    [
      'indirect-len',
      (r, ring) => {
        const t = r.pool.allocate(32, 16);
        ring.setDesc(0, { addr: t.iova, len: 17, flags: F_INDIRECT });
        ring.publish(0);
      },
      ALL,
    ],
    [
      'indirect-len',
      (r, ring) => {
        const t = r.pool.allocate(32, 16);
        ring.setDesc(0, { addr: t.iova, len: 0, flags: F_INDIRECT });
        ring.publish(0);
      },
      ALL,
    ],
    [
      'descriptor-loop',
      (r, ring) => {
        const t = r.pool.allocate(32, 16);
        const view = new DataView(t.view, t.offset, 32);
        const b = r.buffer(1);
        ring.setDesc(0, { addr: b.iova, len: 1, flags: F_NEXT, next: 1 }, view);
        ring.setDesc(1, { addr: b.iova, len: 1, flags: F_NEXT, next: 0 }, view);
        ring.setDesc(0, { addr: t.iova, len: 32, flags: F_INDIRECT });
        ring.publish(0);
      },
      ALL,
    ],
    [
      'buffer-unreachable',
      (_r, ring) => {
        ring.setDesc(0, { addr: 0x100n, len: 64 });
        ring.publish(0);
      },
      ALL,
    ],
    [
      'buffer-unreachable',
      (_r, ring) => {
        ring.setDesc(0, { addr: 0x100n, len: 64, flags: F_INDIRECT });
        ring.publish(0);
      },
      ALL,
    ],
    ['avail-idx-jump', (_r, ring) => ring.setAvailIdx(9), ALL],
  ];

  test.each(cases)('%s', async (rule, setup, wanted) => {
    const { r, ring } = live(2, { wanted });
    setup(r, ring);
    const interrupt = nextInterrupt(r.sim);
    r.notify(0);
    await interrupt;
    expect(r.rules).toEqual([rule]);
    expect(r.sim.queueState(0).broken).toBe(true);
    expect(r.status() & DEVICE_NEEDS_RESET).toBe(DEVICE_NEEDS_RESET);
    expect(r.ack()).toBe(MmioInterrupt.CONFIG);
    expect(ring.usedIdx).toBe(0);
    // A broken queue is left alone until reset.
    ring.setDesc(0, { addr: r.buffer(1).iova, len: 1 });
    ring.publish(0);
    r.sim.process();
    expect(ring.usedIdx).toBe(0);
    r.sim.writel(R.Status, 0);
    expect(r.sim.status).toBe(0);
    expect(r.sim.queueState(0).broken).toBe(false);
  });

  test('a chain reusing descriptors the device still owns is chain-in-flight', () => {
    const model = new TestModel({ queueSizes: [8] });
    model.handler = () => new Promise<number>(() => {});
    const { r, ring } = live(2, { model });
    echoChain(r, ring, 0, Uint8Array.of(1), 1);
    echoChain(r, ring, 3, Uint8Array.of(1), 1);
    // 3 → 4 → 1 (owned by head 0)
    ring.setDesc(4, { addr: r.buffer(1).iova, len: 1, flags: F_WRITE | F_NEXT, next: 1 });
    ring.publish(0);
    r.sim.process();
    ring.publish(3);
    r.sim.process();
    expect(r.rules).toEqual(['chain-in-flight']);
    expect(r.sim.violations[0].message).toMatch(/uses descriptor 1/);
    expect(r.sim.queueState(0)).toMatchObject({ broken: true, inFlight: 0 });
  });

  test('a legacy device breaks the queue without DEVICE_NEEDS_RESET (no such bit in §4.2.4)', () => {
    const { r, ring } = live(1);
    ring.publish(8);
    r.sim.process();
    expect(r.rules).toEqual(['descriptor-index-out-of-range']);
    expect(r.sim.queueState(0).broken).toBe(true);
    expect(r.status() & DeviceStatus.DEVICE_NEEDS_RESET).toBe(0);
    expect(r.sim.readl(R.InterruptStatus)).toBe(0);
  });

  test('a chain describing more than 2^32 bytes is chain-too-long', () => {
    const model = new TestModel({ queueSizes: [8] });
    // Memory that "has" huge buffers: rings come from the pool, big buffers are stand-ins.
    const r = rig(model, {}, (pool) => ({
      resolve: (iova, len) => (len >= 2 ** 31 ? new Uint8Array(1) : pool.resolve(iova, len)),
    }));
    r.init();
    const ring = r.setupQueue(0, 8);
    r.driverOk();
    ring.setDesc(0, { addr: 0x1000n, len: 0xffff_ffff, flags: F_NEXT | F_WRITE, next: 1 });
    ring.setDesc(1, { addr: 0x1000n, len: 2 ** 31, flags: F_WRITE });
    ring.publish(0);
    r.sim.process();
    expect(r.rules).toEqual(['chain-too-long']);
    expect(model.requests).toHaveLength(0);
  });
});

describe('notifications and interrupt acknowledgement (virtio 1.2 §4.2.3.3, §4.2.3.4)', () => {
  test('notifying a queue that is not ready or does not exist is notify-queue-not-ready', () => {
    const r = rig(new TestModel({ queueSizes: [8, 8] }));
    r.init();
    r.setupQueue(0, 8);
    r.driverOk();
    r.notify(1);
    r.notify(7);
    expect(r.rules).toEqual(['notify-queue-not-ready', 'notify-queue-not-ready']);
    expect(r.sim.stats.notifications).toEqual([0, 1]);
  });

  test('Version 2: a notification before DRIVER_OK is a violation; buffers are used only after DRIVER_OK', async () => {
    const r = rig(new TestModel());
    r.init();
    const ring = r.setupQueue(0, 8);
    echoChain(r, ring, 0, Uint8Array.of(1), 1);
    ring.publish(0);
    r.notify(0);
    await turns();
    expect(r.rules).toEqual(['notify-before-driver-ok']);
    expect(ring.usedIdx).toBe(0);
    const interrupt = nextInterrupt(r.sim);
    r.driverOk();
    await interrupt;
    expect(ring.usedIdx).toBe(1);
  });

  test('Version 1: buffers made available before DRIVER_OK are allowed and used at DRIVER_OK (§3.1.2)', async () => {
    const r = rig(new TestModel(), { version: 1 });
    r.init();
    const ring = r.setupQueue(0, 8);
    echoChain(r, ring, 0, Uint8Array.of(1), 1);
    ring.publish(0);
    r.notify(0);
    await turns();
    expect(ring.usedIdx).toBe(0);
    r.driverOk();
    await turns();
    expect(ring.usedIdx).toBe(1);
    expect(r.sim.violations).toEqual([]);
  });

  test('with NOTIFICATION_DATA the value carries the avail idx, which must match the ring', () => {
    const { r, ring } = live(2);
    echoChain(r, ring, 0, Uint8Array.of(1), 1);
    const idx = ring.publish(0);
    r.sim.writel(R.QueueNotify, nextAvailNotificationData(0, idx));
    expect(r.sim.violations).toEqual([]);
    r.sim.writel(R.QueueNotify, nextAvailNotificationData(0, idx + 1));
    expect(r.rules).toEqual(['notification-data-mismatch']);
    expect(r.sim.stats.notifications).toEqual([2]);
  });

  test('InterruptACK with undefined bits is a violation; the defined bits are still cleared', () => {
    const { r } = live(2);
    r.sim.raiseConfigChange();
    r.sim.writel(R.InterruptACK, 0xfe);
    expect(r.sim.readl(R.InterruptStatus)).toBe(0);
    expect(r.rules).toEqual(['interrupt-ack-undefined-bits']);
  });
});

describe('index arithmetic', () => {
  test('avail and used idx wrap at 16 bits', () => {
    const model = new TestModel({ queueSizes: [8] });
    let lens = 0;
    model.handler = (request: SimRequest) => (lens++, request.writableBytes);
    const { r, ring } = live(2, { model, wanted: NO_EVENT_IDX });
    const b = r.buffer(4);
    for (let i = 0; i < 8; i++) ring.setDesc(i, { addr: b.iova, len: 4, flags: F_WRITE });
    const batches = 65_536 / 8 + 2;
    for (let n = 0; n < batches; n++) {
      ring.publish(0, 1, 2, 3, 4, 5, 6, 7);
      r.sim.process();
    }
    expect(lens).toBe(batches * 8);
    expect(ring.usedIdx).toBe((batches * 8) & 0xffff);
    expect(r.sim.queueState(0)).toMatchObject({ lastAvail: 16, usedIdx: 16, inFlight: 0 });
    expect(r.sim.violations).toEqual([]);
  });
});
