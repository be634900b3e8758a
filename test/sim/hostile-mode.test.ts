/**
 * The sim's hostile mode, device side: each switch really makes the
 * device misbehave as described (checked in ring memory and registers,
 * with a register-level driver independent of lib/queue and
 * lib/transport), `after` keeps the first requests honest, the seed
 * replays the same lies, and hostileLog counts what was done.
 */
import { BlkModel, FAULT_CATALOGUE, type HostileOptions, type SimDevice } from '../../lib/sim';
import {
  BlkConfig,
  BlkFeature,
  DeviceStatus,
  FeatureBit,
  feature,
  MMIO_MAGIC_VALUE,
  MmioInterrupt,
  PackedRing,
} from '../../lib/spec';
import { PipeInterruptSource } from '../support/pipe-interrupt';
import { setupPackedQueue, notifyPacked, F_AVAIL, F_USED, TRANSPORT_PACKED } from './packed-test-driver';
import { R, TestDriver, TestModel, TRANSPORT_V2, useTestDrivers } from './sim-test-driver';

const rig = useTestDrivers();
const SIZE = 8;

type Behaviours = HostileOptions['behaviours'];

/** One posted request: a readable 4-byte buffer and a writable 8-byte one (a chain of 2 descriptors). */
interface Posted {
  id: number;
  input: number[];
  out: ReturnType<TestDriver['buffer']>;
}

/** The ring under test, split or packed, seen raw. */
interface Harness {
  r: TestDriver;
  sim: SimDevice;
  format: 'split' | 'packed';
  post(seed: number): Posted;
  /** QueueNotify, then one processing pass now. */
  kick(): void;
  /** The n-th used element as the device wrote it (0-based; packed: the used descriptor at its slot). */
  used(n: number): { id: number; len: number; flags: number };
  /** Split: used.idx as stored. */
  usedIdx(): number;
  /** Raw bytes of descriptor slot `slot`. */
  descriptor(slot: number): Buffer;
}

function harness(
  format: 'split' | 'packed',
  behaviours: Behaviours,
  extra: Partial<HostileOptions> = {},
  features?: bigint,
): Harness {
  const r = rig(new TestModel({ queueSizes: [SIZE] }), {
    transportFeatures: features ?? (format === 'packed' ? TRANSPORT_PACKED : TRANSPORT_V2),
    hostile: { seed: 7, after: 1, behaviours, ...extra },
  });
  r.init();
  const sim = r.sim;
  let posted = 0;
  const buffers = (
    seed: number,
  ): { input: number[]; inBuf: ReturnType<TestDriver['buffer']>; out: ReturnType<TestDriver['buffer']> } => {
    const input = [seed, seed + 1, seed + 2, seed + 3].map((b) => b & 0xff);
    return { input, inBuf: r.buffer(Uint8Array.from(input)), out: r.buffer(8) };
  };
  if (format === 'split') {
    const ring = r.setupQueue(0, SIZE);
    r.driverOk();
    return {
      r,
      sim,
      format,
      post(seed) {
        const head = (2 * posted++) % SIZE;
        const { input, inBuf, out } = buffers(seed);
        ring.setDesc(head, { addr: inBuf.iova, len: 4, flags: 1, next: head + 1 });
        ring.setDesc(head + 1, { addr: out.iova, len: 8, flags: 2 });
        ring.publish(head);
        return { id: head, input, out };
      },
      kick() {
        r.notify(0);
        sim.process();
      },
      used: (n) => ({ ...ring.usedElement(n), flags: 0 }),
      usedIdx: () => ring.usedIdx,
      descriptor: (slot) => Buffer.from(new Uint8Array(ring.desc.buffer, ring.desc.byteOffset + 16 * slot, 16)),
    };
  }
  const ring = setupPackedQueue(r, 0, SIZE);
  r.driverOk();
  const at = (slot: number): number => slot * PackedRing.DESC_SIZE;
  return {
    r,
    sim,
    format,
    post(seed) {
      posted++;
      const { input, inBuf, out } = buffers(seed);
      const id = ring.add([
        { addr: inBuf.iova, len: 4 },
        { addr: out.iova, len: 8, write: true },
      ]);
      return { id, input, out };
    },
    kick() {
      notifyPacked(r, ring);
      sim.process();
    },
    used: (n) => {
      const slot = (2 * n) % SIZE;
      return {
        id: ring.desc.getUint16(at(slot) + PackedRing.DESC_ID, true),
        len: ring.desc.getUint32(at(slot) + PackedRing.DESC_LEN, true),
        flags: ring.flagsAt(slot),
      };
    },
    usedIdx: () => {
      throw new Error('a packed ring has no used idx');
    },
    descriptor: (slot) => Buffer.from(new Uint8Array(ring.desc.buffer, ring.desc.byteOffset + at(slot), 16)),
  };
}

/** The honest first request (after: 1), checked to be honest. */
function honestFirst(h: Harness): Posted {
  const first = h.post(1);
  h.kick();
  expect(h.used(0)).toMatchObject({ id: first.id, len: 4 });
  return first;
}

const FORMATS = ['split', 'packed'] as const;

describe('hostile options', () => {
  it('lists the 24 behaviours in order with stable names', () => {
    expect(FAULT_CATALOGUE.map((b) => b.number)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    expect(new Set(FAULT_CATALOGUE.map((b) => b.name)).size).toBe(24);
  });

  it('refuses unknown behaviour names and a non-integer seed', () => {
    expect(() =>
      rig(new TestModel(), { hostile: { seed: 1, behaviours: { 'no-such-thing': true } as Behaviours } }),
    ).toThrow(RangeError);
    expect(() => rig(new TestModel(), { hostile: { seed: 0.5, behaviours: {} } })).toThrow(RangeError);
  });

  it('without hostile the log is all zeros and nothing misbehaves', () => {
    const r = rig(new TestModel({ queueSizes: [SIZE] }), { transportFeatures: TRANSPORT_V2 });
    r.init();
    const ring = r.setupQueue(0, SIZE);
    r.driverOk();
    const out = r.buffer(8);
    ring.setDesc(0, { addr: out.iova, len: 8, flags: 2 });
    ring.publish(0);
    r.notify(0);
    r.sim.process();
    expect(ring.usedElement(0)).toEqual({ id: 0, len: 0 });
    expect(Object.values(r.sim.hostileLog).every((n) => n === 0)).toBe(true);
    expect(Object.keys(r.sim.hostileLog)).toHaveLength(24);
  });

  it('the same seed replays the same lies; another seed tells others', () => {
    const ids = (seed: number): number[] => {
      const h = harness('split', { 'used-id-out-of-range': true }, { seed, after: 0 });
      const seen: number[] = [];
      for (let i = 0; i < 4; i++) {
        h.post(i);
        h.kick();
        seen.push(h.used(i).id);
      }
      return seen;
    };
    expect(ids(11)).toEqual(ids(11));
    expect(ids(11)).not.toEqual(ids(12));
  });

  it('only the queue named in `queue` misbehaves', () => {
    const h = harness('split', { 'used-id-out-of-range': true }, { queue: 1, after: 0 });
    const p = h.post(1);
    h.kick();
    expect(h.used(0)).toMatchObject({ id: p.id, len: 4 });
    expect(h.sim.hostileLog['used-id-out-of-range']).toBe(0);
  });
});

describe.each(FORMATS)('hostile ring behaviours on a %s ring', (format) => {
  it('1 used-id-out-of-range: after the honest requests, the used id is at or above the queue size', () => {
    const h = harness(format, { 'used-id-out-of-range': true });
    honestFirst(h);
    h.post(2);
    h.kick();
    expect(h.used(1).id).toBeGreaterThanOrEqual(SIZE);
    expect(h.sim.hostileLog['used-id-out-of-range']).toBe(1);
  });

  it('2 used-id-not-head: the used id is in range but names no outstanding request', () => {
    const h = harness(format, { 'used-id-not-head': true });
    const first = honestFirst(h);
    const second = h.post(2);
    h.kick();
    const { id } = h.used(1);
    expect(id).toBeLessThan(SIZE);
    expect(id).not.toBe(second.id);
    if (format === 'split') expect(id % 2 === 1 || id === first.id || id !== second.id).toBe(true);
    expect(h.sim.hostileLog['used-id-not-head']).toBe(1);
  });

  it('3 used-wrong-chain: the used id names another chain than the one used', () => {
    const h = harness(format, { 'used-wrong-chain': true });
    honestFirst(h);
    const a = h.post(2);
    const b = h.post(3);
    h.kick();
    if (format === 'split') {
      // The non-head descriptor of the chain used.
      expect(h.used(1).id).toBe(a.id + 1);
    } else {
      // Another outstanding Buffer ID.
      expect(h.used(1).id).toBe(b.id);
    }
    expect(h.sim.hostileLog['used-wrong-chain']).toBeGreaterThanOrEqual(1);
  });

  it('4 used-len-too-long: len exceeds the 8 writable bytes', () => {
    const h = harness(format, { 'used-len-too-long': true });
    honestFirst(h);
    const p = h.post(2);
    h.kick();
    expect(h.used(1).id).toBe(p.id);
    expect(h.used(1).len).toBeGreaterThan(8);
    expect(h.sim.hostileLog['used-len-too-long']).toBe(1);
  });

  it('5 used-len-too-short: len 0 with { len: 0 }, below what was written by default', () => {
    const h = harness(format, { 'used-len-too-short': { len: 0 } });
    honestFirst(h);
    const p = h.post(2);
    h.kick();
    expect(h.used(1)).toMatchObject({ id: p.id, len: 0 });
    // The device did write the data: only the len lies.
    expect([...h.r.bytes(p.out, 4)]).toEqual(p.input);
    const g = harness(format, { 'used-len-too-short': true }, { seed: 3 });
    honestFirst(g);
    g.post(2);
    g.kick();
    expect(g.used(1).len).toBeLessThan(4);
    expect(g.sim.hostileLog['used-len-too-short']).toBe(1);
  });

  it("8 descriptors-rewritten: the chain's descriptors hold garbage after it is taken, the data is right", () => {
    const h = harness(format, { 'descriptors-rewritten': true });
    honestFirst(h);
    const slot = format === 'split' ? 2 : 2;
    const p = h.post(2);
    const before = [h.descriptor(slot), h.descriptor(slot + 1)].map((b) => Buffer.from(b));
    h.kick();
    // The second descriptor is never a used descriptor: all of it is what the device rewrote (the first, packed, is
    // overwritten by the used descriptor's id, len, flags).
    expect(
      h
        .descriptor(slot + 1)
        .subarray(0, 12)
        .equals(before[1].subarray(0, 12)),
    ).toBe(false);
    if (format === 'split') expect(h.descriptor(slot).equals(before[0])).toBe(false);
    expect(h.used(1)).toMatchObject({ id: p.id, len: 4 });
    expect([...h.r.bytes(p.out, 4)]).toEqual(p.input);
    expect(h.sim.hostileLog['descriptors-rewritten']).toBe(1);
  });

  it('9 used-element-changes: the published element is rewritten at the next pass', () => {
    const h = harness(format, { 'used-element-changes': true });
    honestFirst(h);
    const a = h.post(2);
    h.kick();
    const published = h.used(1);
    expect(published).toMatchObject({ id: a.id, len: 4 });
    const b = h.post(3);
    h.kick();
    const changed = h.used(1);
    expect(changed).not.toEqual(published);
    expect(changed.id === b.id || changed.len !== 4).toBe(true);
    expect(h.sim.hostileLog['used-element-changes']).toBeGreaterThanOrEqual(1);
  });

  it('14 never-completes: chains are taken and never used', () => {
    const h = harness(format, { 'never-completes': true });
    honestFirst(h);
    h.post(2);
    h.kick();
    h.sim.process();
    expect(h.sim.queueState(0).inFlight).toBe(1);
    expect(h.sim.stats.requests).toBe(2);
    if (format === 'split') expect(h.usedIdx()).toBe(1);
    else expect(h.used(1).flags & (F_AVAIL | F_USED)).not.toBe(F_AVAIL | F_USED);
    expect(h.sim.hostileLog['never-completes']).toBe(1);
  });

  it('21 needs-reset: DEVICE_NEEDS_RESET and a config change interrupt mid-I/O, nothing completes till reset', () => {
    const h = harness(format, { 'needs-reset': true });
    honestFirst(h);
    h.r.sim.writel(R.InterruptACK, h.r.sim.readl(R.InterruptStatus));
    h.post(2);
    h.kick();
    expect(h.r.status() & DeviceStatus.DEVICE_NEEDS_RESET).toBe(DeviceStatus.DEVICE_NEEDS_RESET);
    expect(h.r.sim.readl(R.InterruptStatus) & MmioInterrupt.CONFIG).toBe(MmioInterrupt.CONFIG);
    h.sim.process();
    expect(h.sim.queueState(0).inFlight).toBe(0);
    expect(h.sim.hostileLog['needs-reset']).toBe(1);
    h.r.sim.writel(R.Status, 0);
    expect(h.r.status()).toBe(0);
  });
});

describe('hostile split-only and packed-only behaviours', () => {
  it('6 used-idx-jump (split): used.idx moves past everything in flight', () => {
    const h = harness('split', { 'used-idx-jump': true });
    honestFirst(h);
    expect(h.usedIdx()).toBe(1);
    h.post(2);
    h.kick();
    expect((h.usedIdx() - 1) & 0xffff).toBeGreaterThan(SIZE);
    expect((h.usedIdx() - 1) & 0xffff).toBeLessThan(0x8000);
    expect(h.sim.hostileLog['used-idx-jump']).toBe(1);
  });

  it('7 used-idx-backwards (split): used.idx goes back', () => {
    const h = harness('split', { 'used-idx-backwards': true }, { after: 2 });
    honestFirst(h);
    h.post(2);
    h.kick();
    expect(h.usedIdx()).toBe(2);
    h.post(3);
    h.kick();
    expect(h.usedIdx()).toBeLessThan(2);
    expect(h.sim.hostileLog['used-idx-backwards']).toBe(1);
  });

  it('10 packed-wrong-flags (packed): the used descriptor is not marked AVAIL = USED = wrap counter', () => {
    for (const variant of ['avail-only', 'used-only', 'stale-wrap'] as const) {
      const h = harness('packed', { 'packed-wrong-flags': { variant } });
      honestFirst(h);
      h.post(2);
      h.kick();
      expect(h.used(1).flags & (F_AVAIL | F_USED)).not.toBe(F_AVAIL | F_USED);
      expect(h.sim.hostileLog['packed-wrong-flags']).toBe(1);
    }
  });
});

describe('hostile interrupt behaviours', () => {
  it('11 interrupt-when-not-live: InterruptStatus set and the line raised before DRIVER_OK and after a reset', () => {
    const r = rig(new TestModel({ queueSizes: [SIZE] }), {
      transportFeatures: TRANSPORT_V2,
      hostile: { seed: 1, behaviours: { 'interrupt-when-not-live': true } },
    });
    r.sim.writel(R.Status, DeviceStatus.ACKNOWLEDGE);
    expect(r.sim.readl(R.InterruptStatus) & 3).not.toBe(0);
    const before = r.sim.hostileLog['interrupt-when-not-live'];
    r.sim.writel(R.Status, 0);
    expect(r.sim.readl(R.InterruptStatus) & 3).not.toBe(0);
    expect(r.sim.hostileLog['interrupt-when-not-live']).toBe(before + 1);
  });

  it('12 spurious-interrupts: after an acknowledged interrupt the line comes back with none or undefined bits', () => {
    for (const variant of ['zero', 'unknown-bits'] as const) {
      const h = harness('split', { 'spurious-interrupts': { variant } });
      const p = h.post(1);
      h.kick();
      expect(h.used(0).id).toBe(p.id);
      const status = h.r.sim.readl(R.InterruptStatus);
      expect(status).toBe(MmioInterrupt.VRING);
      h.r.sim.writel(R.InterruptACK, status);
      const after = h.r.sim.readl(R.InterruptStatus);
      if (variant === 'zero') expect(after).toBe(0);
      else {
        expect(after & 3).toBe(0);
        expect(after & 0xfc).not.toBe(0);
      }
      expect(h.sim.hostileLog['spurious-interrupts']).toBe(1);
    }
  });

  it('13 interrupt-storm: every InterruptACK brings the interrupt back with no used buffers, up to `limit`', () => {
    const h = harness('split', { 'interrupt-storm': { limit: 5 } });
    let acks = 0;
    while (h.r.sim.readl(R.InterruptStatus) !== 0 && acks < 100) {
      h.r.sim.writel(R.InterruptACK, h.r.sim.readl(R.InterruptStatus) & 3);
      acks++;
    }
    expect(acks).toBe(5);
    expect(h.sim.hostileLog['interrupt-storm']).toBe(5);
    expect(h.sim.queueState(0).usedIdx).toBe(0);
  });

  it('22 device-gone: the line hangs up mid-I/O and, with registers: all-ones, every register reads 0xffffffff', () => {
    const line = new PipeInterruptSource('hostile pipe');
    try {
      const r = rig(new TestModel({ queueSizes: [SIZE] }), {
        transportFeatures: TRANSPORT_V2,
        interrupt: line,
        hostile: { seed: 1, after: 1, behaviours: { 'device-gone': { registers: 'all-ones' } } },
      });
      r.init();
      const ring = r.setupQueue(0, SIZE);
      r.driverOk();
      const out = r.buffer(8);
      ring.setDesc(0, { addr: out.iova, len: 8, flags: 2 });
      ring.setDesc(1, { addr: out.iova, len: 8, flags: 2 });
      ring.publish(0);
      r.notify(0);
      r.sim.process();
      expect(line.hungUp).toBe(false);
      ring.publish(1);
      r.notify(0);
      r.sim.process();
      expect(line.hungUp).toBe(true);
      expect(r.sim.readl(R.MagicValue)).toBe(0xffff_ffff);
      expect(r.sim.readl(R.Status)).toBe(0xffff_ffff);
      expect(ring.usedIdx).toBe(1);
      expect(r.sim.hostileLog['device-gone']).toBe(1);
    } finally {
      line.close();
    }
  });

  it('22 device-gone needs a line that can hang up', () => {
    expect(() => rig(new TestModel(), { hostile: { seed: 1, behaviours: { 'device-gone': true } } })).toThrow(
      TypeError,
    );
  });
});

describe('hostile register and config behaviours', () => {
  it('15 config-generation-churn: ConfigGeneration never reads the same twice', () => {
    const r = rig(new TestModel({ config: new Uint8Array(8) }), {
      hostile: { seed: 1, behaviours: { 'config-generation-churn': true } },
    });
    r.init();
    const reads = Array.from({ length: 50 }, () => r.sim.readl(R.ConfigGeneration));
    expect(new Set(reads).size).toBe(50);
    expect(r.sim.hostileLog['config-generation-churn']).toBe(50);
  });

  it('16 config-window-short: the window ends configBytes into the config space', () => {
    const r = rig(new BlkModel(), { hostile: { seed: 1, behaviours: { 'config-window-short': { configBytes: 4 } } } });
    expect(r.sim.size).toBe(0x100 + 4);
    r.init();
    expect(() => r.sim.readl(0x104)).toThrow(RangeError);
    expect(r.sim.hostileLog['config-window-short']).toBe(1);
  });

  it.each([
    ['blk-num-queues-zero', BlkConfig.num_queues, 2, (v: number) => v === 0, BlkFeature.MQ],
    ['blk-num-queues-huge', BlkConfig.num_queues, 2, (v: number) => v >= 0x8000, BlkFeature.MQ],
    [
      'blk-size-not-power-of-two',
      BlkConfig.blk_size,
      4,
      (v: number) => (v & (v - 1)) !== 0 || v === 0,
      BlkFeature.BLK_SIZE,
    ],
  ] as const)(
    '17 config-out-of-range %s: the field reads out of range and its feature is offered',
    (field, offset, width, bad, bit) => {
      const r = rig(new BlkModel(), { hostile: { seed: 1, behaviours: { 'config-out-of-range': { field } } } });
      r.init();
      const value = width === 2 ? r.sim.readw(0x100 + offset) : r.sim.readl(0x100 + offset);
      expect(bad(value)).toBe(true);
      expect(r.sim.deviceFeatures & feature(bit)).not.toBe(0n);
      expect(r.sim.hostileLog['config-out-of-range']).toBe(1);
    },
  );

  it('17 config-out-of-range: a raw patch over a 64-bit field (blk capacity)', () => {
    const r = rig(new BlkModel(), {
      hostile: {
        seed: 1,
        behaviours: { 'config-out-of-range': { offset: 0, width: 8, value: 0xffff_ffff_ffff_fff0n } },
      },
    });
    r.init();
    expect([r.sim.readl(0x100), r.sim.readl(0x104)]).toEqual([0xffff_fff0, 0xffff_ffff]);
  });

  it.each([
    ['magic', R.MagicValue, (v: number) => v !== MMIO_MAGIC_VALUE],
    ['version-3', R.Version, (v: number) => v === 3],
    ['device-id-0', R.DeviceID, (v: number) => v === 0],
  ] as const)('18 bad-identity %s', (kind, register, bad) => {
    const r = rig(new TestModel(), { strict: false, hostile: { seed: 1, behaviours: { 'bad-identity': { kind } } } });
    expect(bad(r.sim.readl(register))).toBe(true);
    expect(r.sim.hostileLog['bad-identity']).toBe(1);
  });

  it('19 queue-num-max-bad: zero, not a power of two, and live before setup', () => {
    const zero = rig(new TestModel({ queueSizes: [64] }), {
      transportFeatures: TRANSPORT_V2,
      hostile: { seed: 1, behaviours: { 'queue-num-max-bad': { kind: 'zero' } } },
    });
    zero.init();
    zero.sim.writel(R.QueueSel, 0);
    expect(zero.sim.readl(R.QueueNumMax)).toBe(0);
    const odd = rig(new TestModel({ queueSizes: [64] }), {
      transportFeatures: TRANSPORT_V2,
      hostile: { seed: 1, behaviours: { 'queue-num-max-bad': { kind: 'not-power-of-two' } } },
    });
    odd.init();
    odd.sim.writel(R.QueueSel, 0);
    const max = odd.sim.readl(R.QueueNumMax);
    expect(max).toBeGreaterThan(32);
    expect(max).toBeLessThan(64);
    expect(max & (max - 1)).not.toBe(0);
    const live = rig(new TestModel({ queueSizes: [64] }), {
      transportFeatures: TRANSPORT_V2,
      hostile: { seed: 1, behaviours: { 'queue-num-max-bad': { kind: 'already-live' } } },
    });
    live.init();
    live.sim.writel(R.QueueSel, 0);
    expect(live.sim.readl(R.QueueReady)).toBe(1);
    expect(live.sim.queueState(0).ready).toBe(false);
    for (const r of [zero, odd, live]) expect(r.sim.hostileLog['queue-num-max-bad']).toBe(1);
  });

  it('20 features-bad: FEATURES_OK dropped, VERSION_1 missing, unoffered bits shown', () => {
    const dropped = rig(new TestModel(), {
      transportFeatures: TRANSPORT_V2,
      hostile: { seed: 1, behaviours: { 'features-bad': { kind: 'features-ok-dropped' } } },
    });
    dropped.init();
    expect(dropped.status() & DeviceStatus.FEATURES_OK).toBe(0);
    const missing = rig(new TestModel(), {
      transportFeatures: TRANSPORT_V2,
      strict: false,
      hostile: { seed: 1, behaviours: { 'features-bad': { kind: 'version-1-missing' } } },
    });
    expect(missing.deviceFeatures() & feature(FeatureBit.VERSION_1)).toBe(0n);
    const echo = rig(new TestModel(), {
      transportFeatures: TRANSPORT_V2,
      hostile: { seed: 1, behaviours: { 'features-bad': { kind: 'echo-unoffered' } } },
    });
    echo.sim.writel(R.Status, DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER);
    const shown = [echo.deviceFeatures(), echo.deviceFeatures()].reduce((a, b) => a | b);
    expect(shown & ~echo.sim.deviceFeatures).not.toBe(0n);
    expect(echo.sim.hostileLog['features-bad']).toBeGreaterThanOrEqual(1);
  });

  it('23 reset-never-completes: Status never reads 0 after a reset; QueueReset never reads 0', () => {
    const device = rig(new TestModel(), {
      transportFeatures: TRANSPORT_V2,
      hostile: { seed: 1, behaviours: { 'reset-never-completes': { kind: 'device' } } },
    });
    device.sim.writel(R.Status, 0);
    expect(device.sim.pollUntil(R.Status, 0xff, 0, 50)).toBeNull();
    expect(device.sim.hostileLog['reset-never-completes']).toBeGreaterThan(0);
    const queue = rig(new TestModel({ queueSizes: [SIZE] }), {
      transportFeatures: TRANSPORT_V2,
      hostile: { seed: 1, behaviours: { 'reset-never-completes': { kind: 'queue' } } },
    });
    queue.init();
    queue.setupQueue(0, SIZE);
    queue.driverOk();
    queue.sim.writel(R.QueueSel, 0);
    queue.sim.writel(R.QueueReset, 1);
    expect(queue.sim.pollUntil(R.QueueReset, 1, 0, 50)).toBeNull();
    expect(queue.sim.hostileLog['reset-never-completes']).toBeGreaterThan(0);
  });
});
