/**
 * The queue-select protocol module (lib/spec/queue-select.ts): the one
 * place the transport, the sim, diagnostics and the mutation harness learn
 * QueueSel and the per-queue area registers from (virtio 1.2 §4.2.2, §4.2.4).
 */
import { DmaPool, type RegisterBlock } from '../../lib/platform';
import { SimDevice } from '../../lib/sim';
import {
  MmioRegister as R,
  QUEUE_AREA_LOW,
  QueueSelectTracker,
  legacyLayout,
  legacyQueueAreas,
  legacyQueuePfn,
  queueAreaHalf,
  queueLiveRegister,
  withHalf,
} from '../../lib/spec';
import { MmioTransport } from '../../lib/transport';
import { EchoDriver } from '../support/echo-driver';
import { echoModel } from '../support/sim-rig';

describe('register layout', () => {
  test('each area is a Low/High pair at the §4.2.2 offsets, and no other register is one', () => {
    expect(QUEUE_AREA_LOW).toEqual({ desc: 0x080, driver: 0x090, device: 0x0a0 });
    expect(queueAreaHalf(0x080)).toEqual({ area: 'desc', high: false });
    expect(queueAreaHalf(0x084)).toEqual({ area: 'desc', high: true });
    expect(queueAreaHalf(0x094)).toEqual({ area: 'driver', high: true });
    expect(queueAreaHalf(0x0a0)).toEqual({ area: 'device', high: false });
    const areaOffsets = new Set([0x080, 0x084, 0x090, 0x094, 0x0a0, 0x0a4]);
    for (const offset of Object.values(R)) if (!areaOffsets.has(offset)) expect(queueAreaHalf(offset)).toBeUndefined();
  });

  test('withHalf replaces one 32-bit half and keeps the other', () => {
    expect(withHalf(0x1111_2222_3333_4444n, false, 0xaaaa_bbbb)).toBe(0x1111_2222_aaaa_bbbbn);
    expect(withHalf(0x1111_2222_3333_4444n, true, 0xaaaa_bbbb)).toBe(0xaaaa_bbbb_3333_4444n);
    expect(withHalf(0n, false, -1)).toBe(0xffff_ffffn);
  });

  test('the live register is QueueReady on Version 2 and QueuePFN on Version 1', () => {
    expect(queueLiveRegister(2)).toBe(R.QueueReady);
    expect(queueLiveRegister(1)).toBe(R.QueuePFN);
  });

  test('legacy areas follow §2.7.2 from the page number, which is found back only for that layout', () => {
    const layout = legacyLayout(256, 4096);
    const areas = legacyQueueAreas(0x12345, 4096, 256, 4096);
    expect(areas).toEqual({
      desc: 0x12345000n,
      driver: 0x12345000n + BigInt(layout.availOffset),
      device: 0x12345000n + BigInt(layout.usedOffset),
    });
    expect(legacyQueuePfn(areas, 4096, 256, 4096)).toBe(0x12345);
    expect(legacyQueuePfn({ ...areas, device: areas.device + 4096n }, 4096, 256, 4096)).toBeUndefined();
    expect(
      legacyQueuePfn(
        { ...areas, desc: areas.desc + 8n, driver: areas.driver + 8n, device: areas.device + 8n },
        4096,
        256,
        4096,
      ),
    ).toBeUndefined();
    expect(legacyQueuePfn(legacyQueueAreas(0, 4096, 8, 4096), 4096, 8, 4096)).toBeUndefined();
    const beyond = 0x1_0000_0000n * 4096n;
    expect(
      legacyQueuePfn({ desc: beyond, driver: beyond + 128n, device: beyond + 4096n }, 4096, 8, 4096),
    ).toBeUndefined();
  });
});

describe('QueueSelectTracker', () => {
  test("Version 2: writes land on QueueSel's queue; QueueReady 1 makes it live, QueueReset or reset undo it", () => {
    const t = new QueueSelectTracker(2);
    const writes: [number, number][] = [
      [R.QueueSel, 1],
      [R.QueueNum, 64],
      [R.QueueDescLow, 0x1000],
      [R.QueueDescHigh, 0x2],
      [R.QueueDriverLow, 0x3000],
      [R.QueueDeviceLow, 0x4000],
      [R.QueueReady, 1],
      [R.QueueSel, 0],
      [R.QueueNum, 8],
    ];
    for (const [offset, value] of writes) expect(t.write(offset, value)).toBe(true);
    expect(t.selected).toBe(0);
    expect(t.queue(1)).toMatchObject({
      index: 1,
      size: 64,
      desc: 0x2_0000_1000n,
      driver: 0x3000n,
      device: 0x4000n,
      ready: true,
    });
    expect(t.queue(0)).toMatchObject({ size: 8, ready: false });
    expect(t.queues.map((q) => q.index)).toEqual([1, 0]);
    t.write(R.QueueSel, 1);
    t.write(R.QueueReset, 1);
    expect(t.queue(1).ready).toBe(false);
    t.write(R.QueueReady, 1);
    expect(t.queue(1).ready).toBe(true);
    expect(t.write(R.Status, 0)).toBe(true);
    expect(t.queue(1)).toMatchObject({ ready: false, size: 64 });
  });

  test('Version 2 ignores legacy registers; Version 1 ignores QueueReady; other registers are not queue ones', () => {
    const modern = new QueueSelectTracker(2);
    expect(modern.write(R.QueuePFN, 5)).toBe(false);
    expect(modern.write(R.GuestPageSize, 4096)).toBe(false);
    expect(modern.queue(0).ready).toBe(false);
    const legacy = new QueueSelectTracker(1);
    expect(legacy.write(R.QueueReady, 1)).toBe(false);
    expect(legacy.queue(0).ready).toBe(false);
    expect(legacy.write(R.QueueNotify, 0)).toBe(false);
    expect(legacy.write(R.Status, 0xf)).toBe(false);
  });

  test('Version 1: QueuePFN places the three areas from GuestPageSize, QueueNum and QueueAlign', () => {
    const t = new QueueSelectTracker(1);
    t.write(R.GuestPageSize, 4096);
    t.write(R.QueueSel, 2);
    t.write(R.QueueNum, 128);
    t.write(R.QueueAlign, 4096);
    t.write(R.QueuePFN, 0x40);
    expect(t.queue(2)).toMatchObject({ ready: true, pfn: 0x40, ...legacyQueueAreas(0x40, 4096, 128, 4096) });
    t.write(R.QueuePFN, 0);
    expect(t.queue(2).ready).toBe(false);
  });

  test('Version 1: a page size or alignment that is no power of two places nothing and throws nothing', () => {
    const t = new QueueSelectTracker(1);
    t.write(R.QueueNum, 16);
    t.write(R.QueueAlign, 0);
    expect(() => t.write(R.QueuePFN, 7)).not.toThrow();
    expect(t.queue(0)).toMatchObject({ ready: true, desc: 0n, driver: 0n, device: 0n });
    t.write(R.QueueAlign, 4096);
    t.write(R.GuestPageSize, 3000);
    expect(() => t.write(R.QueuePFN, 7)).not.toThrow();
    expect(t.queue(0).desc).toBe(0n);
  });

  test.each([1, 2] as const)(
    'Version %s: following the transport’s writes gives the areas the sim device was given',
    (version) => {
      const pool = DmaPool.anonymous();
      const sim = new SimDevice({ memory: pool, version, model: echoModel({ queueSizes: [16] }), strict: true });
      const tracker = new QueueSelectTracker(version);
      const watched = new Proxy(sim as RegisterBlock, {
        get(target, key) {
          if (key === 'writel') {
            return (offset: number, value: number): void => {
              tracker.write(offset, value);
              target.writel(offset, value);
            };
          }
          const member = Reflect.get(target, key, target) as unknown;
          return typeof member === 'function' ? (member as (...args: unknown[]) => unknown).bind(target) : member;
        },
      });
      const transport = new MmioTransport(watched, { interrupts: sim.interrupt });
      const driver = new EchoDriver(transport, { memory: pool, queueSize: 16 });
      try {
        const device = sim.queueState(0);
        expect(device.ready).toBe(true);
        expect(tracker.queue(0)).toMatchObject({
          size: device.size,
          desc: device.desc,
          driver: device.driver,
          device: device.device,
          ready: true,
        });
      } finally {
        driver.close();
        transport.close();
        expect(tracker.queue(0).ready).toBe(false);
        expect(sim.violations).toEqual([]);
        sim.close();
        pool.close();
      }
    },
  );
});
