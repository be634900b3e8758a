import { availRingBytes, descTableBytes, FeatureBit, feature, legacyLayout, usedRingBytes } from '../../lib/spec';
import { R, TestDriver, TestModel, useTestDrivers } from './sim-test-driver';

const rig = useTestDrivers();

/** Allocates the three areas of a Version 2 queue and writes their addresses (not QueueReady). */
function areas(r: TestDriver, size: number): { desc: bigint; driver: bigint; device: bigint } {
  const desc = r.pool.allocate(descTableBytes(size), 16).iova;
  const driver = r.pool.allocate(availRingBytes(size), 16).iova;
  const device = r.pool.allocate(usedRingBytes(size), 16).iova;
  r.writeAddress(R.QueueDescLow, desc);
  r.writeAddress(R.QueueDriverLow, driver);
  r.writeAddress(R.QueueDeviceLow, device);
  return { desc, driver, device };
}

describe('Version 2 queue configuration (virtio 1.2 §4.2.3.2)', () => {
  test('a clean setup makes the queue ready with the addresses written; QueueNumMax per queue, 0 beyond', () => {
    const r = rig(new TestModel({ queueSizes: [16, 4] }));
    r.init();
    r.sim.writel(R.QueueSel, 1);
    expect(r.sim.readl(R.QueueNumMax)).toBe(4);
    r.sim.writel(R.QueueSel, 2);
    expect(r.sim.readl(R.QueueNumMax)).toBe(0);
    expect(r.sim.readl(R.QueueReady)).toBe(0);
    const ring = r.setupQueue(0, 8);
    expect(r.sim.readl(R.QueueReady)).toBe(1);
    expect(r.sim.queueState(0)).toEqual(
      expect.objectContaining({
        ready: true,
        broken: false,
        numMax: 16,
        size: 8,
        ...ring.addresses,
        lastAvail: 0,
        usedIdx: 0,
        inFlight: 0,
      }),
    );
    expect(r.sim.violations).toEqual([]);
    expect(() => r.sim.queueState(2)).toThrow(RangeError);
  });

  test('QueueNum above QueueNumMax, or not a power of two; the queue then refuses to become ready', () => {
    const r = rig(new TestModel({ queueSizes: [8] }));
    r.init();
    r.sim.writel(R.QueueSel, 0);
    r.sim.writel(R.QueueNum, 16);
    r.sim.writel(R.QueueNum, 6);
    expect(r.rules).toEqual(['queue-num-above-max', 'queue-num-not-power-of-two']);
    areas(r, 8);
    r.sim.writel(R.QueueReady, 1);
    expect(r.sim.readl(R.QueueReady)).toBe(0);
    expect(r.rules).toEqual(['queue-num-above-max', 'queue-num-not-power-of-two', 'queue-num-not-power-of-two']);
  });

  test('QueueReady without QueueNum is queue-num-unset; on a queue the device lacks, queue-unavailable', () => {
    const r = rig(new TestModel({ queueSizes: [8, 0] }));
    r.init();
    r.sim.writel(R.QueueReady, 1);
    r.sim.writel(R.QueueSel, 1);
    r.sim.writel(R.QueueReady, 1);
    r.sim.writel(R.QueueSel, 5);
    r.sim.writel(R.QueueNum, 8);
    expect(r.rules).toEqual(['queue-num-unset', 'queue-unavailable', 'queue-unavailable']);
  });

  test('misaligned areas are queue-misaligned and the queue stays not ready', () => {
    const r = rig(new TestModel());
    r.init();
    r.sim.writel(R.QueueNum, 8);
    const a = areas(r, 8);
    r.writeAddress(R.QueueDescLow, a.desc + 8n);
    r.writeAddress(R.QueueDeviceLow, a.device + 2n);
    r.sim.writel(R.QueueReady, 1);
    expect(r.sim.readl(R.QueueReady)).toBe(0);
    expect(r.rules).toEqual(['queue-misaligned']);
    expect(r.sim.violations[0].message).toMatch(/descriptor area .*needs 16.*device area .*needs 4/);
  });

  test('areas the device cannot reach are queue-memory-unreachable', () => {
    const r = rig(new TestModel());
    r.init();
    r.sim.writel(R.QueueNum, 8);
    areas(r, 8);
    r.writeAddress(R.QueueDriverLow, 0x10n);
    r.sim.writel(R.QueueReady, 1);
    expect(r.sim.readl(R.QueueReady)).toBe(0);
    expect(r.rules).toEqual(['queue-memory-unreachable']);
    expect(r.sim.violations[0].message).toMatch(/driver area 0x10/);
  });

  test('a used ring whose flags are not 0 at enable time is used-flags-not-zero', () => {
    const r = rig(new TestModel());
    r.init();
    r.sim.writel(R.QueueNum, 8);
    const a = areas(r, 8);
    r.pool.resolve(a.device, 2)![0] = 1;
    r.sim.writel(R.QueueReady, 1);
    expect(r.rules).toEqual(['used-flags-not-zero']);
    expect(r.sim.readl(R.QueueReady)).toBe(1);
  });

  test('queue registers written while QueueReady is 1 are ignored violations; QueueReady 0 stops the queue', () => {
    const r = rig(new TestModel());
    r.init();
    const ring = r.setupQueue(0, 8);
    r.sim.writel(R.QueueNum, 4);
    r.writeAddress(R.QueueDescLow, 0x1000n);
    r.sim.writel(R.QueueReady, 1);
    expect(r.rules).toEqual(Array(4).fill('queue-register-while-ready'));
    expect(r.sim.queueState(0)).toMatchObject({ size: 8, desc: ring.addresses.desc });
    r.sim.writel(R.QueueReady, 0);
    expect(r.sim.readl(R.QueueReady)).toBe(0);
    expect(r.sim.queueState(0).ready).toBe(false);
    r.sim.writel(R.QueueReady, 2);
    expect(r.rules.at(-1)).toBe('register-value');
  });

  test('queue setup after DRIVER_OK is queue-setup-after-driver-ok', () => {
    const r = rig(new TestModel());
    r.init();
    r.driverOk();
    r.setupQueue(0, 8);
    expect(r.rules).toEqual(Array(8).fill('queue-setup-after-driver-ok'));
    expect(r.sim.queueState(0).ready).toBe(true);
  });
});

describe('QueueReset (virtio 1.2 §2.6.1, §4.2.2)', () => {
  test('resets one queue; reads 1 for queueResetLatency reads; the queue may be set up again after DRIVER_OK', () => {
    const model = new TestModel({ queueSizes: [8, 8] });
    const r = rig(model, { queueResetLatency: 2 });
    r.init();
    r.setupQueue(0, 8);
    r.setupQueue(1, 8);
    r.driverOk();
    r.sim.writel(R.QueueSel, 0);
    r.sim.writel(R.QueueReset, 1);
    expect(model.calls.at(-1)).toBe('resetQueue 0');
    expect(r.sim.queueState(0)).toMatchObject({ ready: false, size: 0, desc: 0n, resetReadsLeft: 2 });
    expect(r.sim.queueState(1).ready).toBe(true);
    expect(r.sim.pollUntil(R.QueueReset, 1, 0, 100)).toBe(0);
    expect(r.sim.readl(R.QueueReady)).toBe(0);
    r.setupQueue(0, 4);
    expect(r.sim.queueState(0)).toMatchObject({ ready: true, size: 4 });
    expect(r.sim.violations).toEqual([]);
    // Re-enabled: the exception is used up.
    r.sim.writel(R.QueueReady, 0);
    r.sim.writel(R.QueueNum, 4);
    expect(r.rules).toEqual(['queue-setup-after-driver-ok']);
  });

  test('setting the queue up again before QueueReset reads 0 is queue-reset-not-complete', () => {
    const r = rig(new TestModel(), { queueResetLatency: Infinity });
    r.init();
    r.setupQueue(0, 8);
    r.sim.writel(R.QueueReset, 1);
    expect(r.sim.pollUntil(R.QueueReset, 1, 0, 100)).toBeNull();
    r.sim.writel(R.QueueNum, 8);
    expect(r.rules).toEqual(['queue-reset-not-complete']);
  });

  test('without RING_RESET negotiated QueueReset is a violation and does nothing', () => {
    const r = rig(new TestModel());
    r.init(~feature(FeatureBit.RING_RESET));
    r.setupQueue(0, 8);
    r.sim.writel(R.QueueReset, 1);
    expect(r.sim.readl(R.QueueReset)).toBe(0);
    expect(r.sim.queueState(0).ready).toBe(true);
    expect(r.rules).toEqual(['queue-reset-not-negotiated', 'queue-reset-not-negotiated']);
    const negotiated = rig(new TestModel());
    negotiated.init();
    negotiated.sim.writel(R.QueueReset, 2);
    expect(negotiated.rules).toEqual(['register-value']);
  });
});

describe('Version 1 queue configuration (virtio 1.2 §4.2.4)', () => {
  test('QueuePFN × GuestPageSize locates the legacy layout with QueueAlign; QueuePFN reads back; 0 stops', () => {
    const r = rig(new TestModel({ queueSizes: [16] }), { version: 1 });
    r.init();
    const ring = r.setupQueue(0, 16);
    const layout = legacyLayout(16, 4096);
    const state = r.sim.queueState(0);
    expect(state).toMatchObject({ ready: true, size: 16, align: 4096, pfn: Number(ring.addresses.desc / 4096n) });
    expect(state.driver - state.desc).toBe(BigInt(layout.availOffset));
    expect(state.device - state.desc).toBe(BigInt(layout.usedOffset));
    expect(r.sim.readl(R.QueuePFN)).toBe(state.pfn);
    expect(r.sim.violations).toEqual([]);
    r.sim.writel(R.QueuePFN, 0);
    expect(r.sim.readl(R.QueuePFN)).toBe(0);
    expect(r.sim.queueState(0).ready).toBe(false);
  });

  test('a smaller QueueAlign moves the used ring', () => {
    const r = rig(new TestModel({ queueSizes: [8] }), { version: 1 });
    r.init();
    const area = r.pool.allocate(8192, 4096);
    r.sim.writel(R.QueueNum, 8);
    r.sim.writel(R.QueueAlign, 64);
    r.sim.writel(R.QueuePFN, Number(area.iova / 4096n));
    expect(r.sim.queueState(0).device - area.iova).toBe(BigInt(legacyLayout(8, 64).usedOffset));
    expect(r.sim.violations).toEqual([]);
  });

  test('QueuePFN before GuestPageSize assumes 4096; bad sizes and alignments are refused', () => {
    const r = rig(new TestModel({ queueSizes: [8] }), { version: 1 });
    r.probe();
    r.sim.writel(R.GuestPageSize, 3000);
    r.sim.writel(R.QueueAlign, 100);
    const area = r.pool.allocate(8192, 4096);
    r.sim.writel(R.QueueNum, 8);
    r.sim.writel(R.QueuePFN, Number(area.iova / 4096n));
    expect(r.rules).toEqual(['guest-page-size-invalid', 'queue-align-invalid', 'guest-page-size-unset']);
    expect(r.sim.queueState(0)).toMatchObject({ ready: true, desc: area.iova, align: 4096 });
  });

  test('queue registers while QueuePFN is set are ignored violations, QueueNumMax included', () => {
    const r = rig(new TestModel({ queueSizes: [8] }), { version: 1 });
    r.init();
    r.setupQueue(0, 8);
    r.sim.writel(R.QueueNum, 4);
    r.sim.writel(R.QueueAlign, 16);
    r.sim.writel(R.QueuePFN, 1);
    r.sim.readl(R.QueueNumMax);
    expect(r.rules).toEqual(Array(4).fill('queue-register-while-ready'));
    expect(r.sim.queueState(0)).toMatchObject({ size: 8, align: 4096 });
  });

  test('legacy queue setup after DRIVER_OK is allowed (§3.1.2)', () => {
    const r = rig(new TestModel({ queueSizes: [8] }), { version: 1 });
    r.init();
    r.driverOk();
    r.setupQueue(0, 8);
    expect(r.sim.violations).toEqual([]);
  });
});

describe('shared memory regions (virtio 1.2 §2.10, §4.2.2)', () => {
  test('SHMSel selects a region; an unused id reads all ones for length and base', () => {
    const r = rig(new TestModel(), { shmRegions: [{ id: 2, base: 0x8_0000_1000n, length: 0x1_0000_0000n }] });
    r.init();
    const read = (sel: number): [number, number, number, number] => {
      r.sim.writel(R.SHMSel, sel);
      return [
        r.sim.readl(R.SHMLenLow),
        r.sim.readl(R.SHMLenHigh),
        r.sim.readl(R.SHMBaseLow),
        r.sim.readl(R.SHMBaseHigh),
      ];
    };
    expect(read(2)).toEqual([0, 1, 0x1000, 8]);
    expect(read(0)).toEqual([0xffff_ffff, 0xffff_ffff, 0xffff_ffff, 0xffff_ffff]);
    expect(r.sim.violations).toEqual([]);
  });
});
