import { FeatureBit, feature, features, hasFeature } from '../../lib/spec';
import { EchoDriver } from '../support/echo-driver';
import { EVENT } from '../support/fake-ring-device';
import { echoModel, simRig, type SimRig, type SimVariant } from '../support/sim-rig';
import { ringRig, type AnyRig, type Format } from '../support/ring-engine-rig';
import { SeededRandom } from '../../lib/sim/seeded-random';

// VIRTIO_F_EVENT_IDX across the wrap of the 16-bit indexes (split, virtio 1.2 §2.7.7.2, §2.7.10) and of the ring wrap
// counter (packed, §2.8.10, §2.8.21): ≥ 70,000 requests per case. The reference below counts positions on an unbounded
// linear scale, never modulo 2^16 or with a wrap counter, so it shares no arithmetic with the driver it checks.

/** A seeded generator (the sim's mulberry32), so every run is the same. */
function prng(seed: number): () => number {
  const random = new SeededRandom(seed);
  return () => random.next();
}

const REQUESTS = 70_000;

/** A plain check for the hot loops (jest's expect() costs more than the ring work it checks). */
function check(ok: boolean, message: () => string): void {
  if (!ok) throw new Error(message());
}
const EVENT_IDX = features(FeatureBit.EVENT_IDX);

interface EngineCase {
  format: Format;
  size: number;
  depth: number;
}

/**
 * Split: 16-bit indexes wrap once in 70k requests (after 65,536), the ring every `size`. Packed: positions are ring
 * slots, so the wrap counter flips every `size` descriptors (a size that is not a power of two keeps the flips off any
 * power-of-two boundary).
 */
const ENGINE_CASES: EngineCase[] = [
  { format: 'split', size: 16, depth: 1 },
  { format: 'split', size: 256, depth: 32 },
  { format: 'packed', size: 8, depth: 1 },
  { format: 'packed', size: 100, depth: 32 },
];

interface EngineRun {
  publishes: number;
  notifications: number;
  interrupts: number;
  /** Notifications and interrupts whose range lies within 2 × depth of the 16-bit wrap (65,536). */
  notificationsNearWrap: number;
  interruptsNearWrap: number;
}

/**
 * Drives one engine with a fake device that sleeps between events:
 * - the driver places random batches up to `depth` in flight and publishes each batch once; the device, after each
 *   pass, asks to be notified only when the driver reaches a random linear position P ahead (avail_event, or the
 *   device event suppression DESC off/wrap). publish() must say "notify" exactly when [old, now) holds P.
 * - the device uses a random number of the chains it holds per flush and raises an interrupt exactly when the used
 *   range [old, now) holds the position the driver last asked for (used_event, or the driver area's off/wrap), read
 *   from the ring. The driver reaps only on an interrupt: a wrong used_event shows as a request that never completes.
 */
function runEngine({ format, size, depth }: EngineCase, seed: number): EngineRun {
  const random = prng(seed);
  const r = ringRig(format, { size, features: EVENT_IDX }) as AnyRig;
  const bytes = r.memory;
  /** Linear counters: requests, or (packed) descriptors, the same for these one-buffer chains. */
  let placed = 0;
  let published = 0;
  let deviceAvail = 0;
  let deviceUsed = 0;
  let reaped = 0;
  /** The linear position the device asked to be notified at, and the one the driver asked to be interrupted at. */
  let availEvent = 0;
  let usedEvent = 0;
  const sequenceOf = new Map<number, number>();
  const addressOf = new Map<number, bigint>();
  const held: { id: number; address: bigint; sequence: number }[] = [];
  let interruptPending = false;
  let notifyPending = false;
  const run: EngineRun = {
    publishes: 0,
    notifications: 0,
    interrupts: 0,
    notificationsNearWrap: 0,
    interruptsNearWrap: 0,
  };

  const askToBeNotifiedAt = (position: number): void => {
    availEvent = position;
    if (r.format === 'split') r.device.setAvailEvent(position & 0xffff);
    else r.device.setEvent(EVENT.DESC, position % size, Math.floor(position / size) % 2 === 0);
  };
  /** What the driver wrote as the next used position it wants an interrupt for. */
  const driverUsedEvent = (): number => {
    if (r.format === 'split') return r.device.usedEvent;
    const { flags, offset, wrap } = r.device.driverEvent;
    check(flags === EVENT.DESC, () => `driver event flags ${flags}, not DESC`);
    return offset | (wrap ? 0x8000 : 0);
  };
  const encodeUsed = (position: number): number =>
    format === 'split' ? position & 0xffff : (position % size) | (Math.floor(position / size) % 2 === 0 ? 0x8000 : 0);

  const checkUsedEvent = (): void => {
    const written = driverUsedEvent();
    check(written === encodeUsed(usedEvent), () => `used event ${written}, want ${usedEvent} (linear)`);
  };
  const nearWrap = (position: number): boolean => Math.abs(position - 0x10000) <= 2 * depth;
  askToBeNotifiedAt(0);
  while (reaped < REQUESTS) {
    // Driver: a batch of one-buffer requests (8 writable bytes), one publish for the batch.
    const room = Math.min(depth - (placed - reaped), REQUESTS - placed);
    if (room > 0) {
      const batch = 1 + Math.floor(random() * room);
      for (let i = 0; i < batch; i++) {
        const { id } = r.submit([], [8]);
        sequenceOf.set(id, placed++);
      }
      const old = published;
      const value = r.engine.publish();
      published = placed;
      run.publishes++;
      const expected = old <= availEvent && availEvent < published;
      if (value >= 0 !== expected) {
        throw new Error(
          `${format} publish ${old}→${published}: the device asked at ${availEvent}, the driver ` +
            `${value >= 0 ? 'notified' : 'did not notify'}`,
        );
      }
      if (value >= 0) {
        run.notifications++;
        if (nearWrap(published)) run.notificationsNearWrap++;
        notifyPending = true;
      }
    }
    // Device: wakes on a notification (or, one time in four, on its own, like a device that polls now and then).
    if (notifyPending || random() < 0.25) {
      notifyPending = false;
      for (let chain = r.device.pop(); chain; chain = r.device.pop()) {
        addressOf.set(chain.id, chain.writable[0].address);
        held.push({ id: chain.id, address: chain.writable[0].address, sequence: sequenceOf.get(chain.id)! });
        deviceAvail++;
      }
      // Next: notify me when the driver has made 0..depth+1 more available, or (one time in eight) never.
      // Close to the 16-bit wrap, the last position before it: the publish that crosses the wrap must notify.
      const wrap = 0x10000 * Math.ceil((deviceAvail + 1) / 0x10000);
      if (wrap - deviceAvail <= depth + 1) askToBeNotifiedAt(wrap - 1);
      else askToBeNotifiedAt(random() < 0.125 ? deviceAvail - 1 : deviceAvail + Math.floor(random() * (depth + 2)));
    }
    if (held.length > 0) {
      const count = 1 + Math.floor(random() * held.length);
      const old = deviceUsed;
      for (const chain of held.splice(0, count)) {
        bytes.at(chain.address, 8).setFloat64(0, chain.sequence, true);
        r.device.use(chain.id, 8);
        deviceUsed++;
      }
      // The driver's used position, read back from the ring, must be the linear one it was last reaped to.
      checkUsedEvent();
      if (old <= usedEvent && usedEvent < deviceUsed) {
        run.interrupts++;
        if (nearWrap(deviceUsed)) run.interruptsNearWrap++;
        interruptPending = true;
      }
    }
    if (interruptPending) {
      interruptPending = false;
      const before = r.used.length;
      const settled = r.engine.reap();
      check(settled === deviceUsed - reaped, () => `reap() settled ${settled} of ${deviceUsed - reaped} used`);
      for (const [id, len] of r.used.slice(before)) {
        const sequence = sequenceOf.get(id);
        const data = bytes.at(addressOf.get(id)!, 8).getFloat64(0, true);
        check(len === 8 && sequence === reaped && data === reaped, () => `request ${reaped}: id ${id} len ${len}`);
        reaped++;
      }
      r.used.length = 0;
      usedEvent = reaped;
      checkUsedEvent();
    } else if (deviceUsed === placed && placed > reaped && (placed - reaped >= depth || placed === REQUESTS)) {
      // The device has used all it was given, the driver can place no more and no interrupt is coming: a hang.
      throw new Error(`${format}: stalled with ${placed - reaped} used request(s) not reaped at ${reaped}`);
    }
  }
  expect(r.engine.outstanding).toBe(0);
  expect(r.stats.publishes).toBe(run.publishes);
  expect(r.stats.notificationsSuppressed).toBe(run.publishes - run.notifications);
  return run;
}

describe.each(ENGINE_CASES.map((c) => [`${c.format} ring of ${c.size}, depth ${c.depth}`, c] as const))(
  'EVENT_IDX across the wrap, ring engine: %s',
  (_name, c) => {
    test(`${REQUESTS} requests: notifications and interrupts exactly as the event indexes say`, () => {
      const started = Date.now();
      const run = runEngine(c, 0x5eed + c.size + c.depth);
      // Suppression really happened in both directions, and never everything.
      expect(run.notifications).toBeGreaterThan(0);
      expect(run.notifications).toBeLessThan(run.publishes);
      expect(run.interrupts).toBeGreaterThan(0);
      if (c.depth > 1) expect(run.interrupts).toBeLessThan(REQUESTS);
      expect(run.notificationsNearWrap).toBeGreaterThan(0);
      expect(run.interruptsNearWrap).toBeGreaterThan(0);
      if (process.env.EVENT_IDX_TIMES) console.log(`${c.format}/${c.size}/${c.depth}: ${Date.now() - started} ms`);
    });
  },
);

// The same across the whole stack: Virtqueue → MmioTransport → SimDevice (strict mode) → an echo model, so the sim's
// own event index arithmetic is checked too (a missed notification or interrupt is a request that never completes).

interface SimCase {
  variant: SimVariant;
  size: number;
  depth: number;
}

const SIM_CASES: SimCase[] = [
  { variant: 2, size: 16, depth: 1 },
  { variant: 2, size: 64, depth: 32 },
  { variant: 'packed', size: 16, depth: 1 },
  { variant: 'packed', size: 48, depth: 32 },
];

describe.each(
  SIM_CASES.map(
    (c) => [`${c.variant === 'packed' ? 'packed' : 'split'} ring of ${c.size}, depth ${c.depth}`, c] as const,
  ),
)('EVENT_IDX across the wrap, sim (strict): %s', (_name, c) => {
  let rig: SimRig | undefined;
  afterEach(() => {
    const violations = rig?.close() ?? [];
    rig = undefined;
    expect(violations).toEqual([]);
  });

  test(`${REQUESTS} echo requests complete with their data; notifications and interrupts suppressed`, async () => {
    const started = Date.now();
    rig = simRig(c.variant, echoModel({ queueSizes: [c.size] }));
    const driver = new EchoDriver(rig.transport, {
      memory: rig.pool,
      queueSize: c.size,
      excludeFeatures: feature(FeatureBit.INDIRECT_DESC),
    });
    expect(hasFeature(driver.features, FeatureBit.EVENT_IDX)).toBe(true);
    const q = driver.q;
    let next = 0;
    let done = 0;
    let bad = '';
    /**
     * One lane: its own two buffers, one request at a time; `depth` lanes keep `depth` in flight. A missed notification
     * or interrupt is a TimeoutError.
     */
    const lane = async (): Promise<void> => {
      const input = driver.dma(8);
      const output = driver.dma(8);
      const inView = new DataView(input.view, input.offset, 8);
      const outView = new DataView(output.view, output.offset, 8);
      const request = { readable: [{ region: input }], writable: [{ region: output }] };
      while (next < REQUESTS) {
        const sequence = next++;
        inView.setFloat64(0, sequence, true);
        outView.setFloat64(0, -1, true);
        const len = await q.submit(request, { timeoutMs: 5000 });
        if ((len !== 8 || outView.getFloat64(0, true) !== sequence) && !bad) bad = `request ${sequence}: len ${len}`;
        done++;
      }
    };
    await Promise.all(Array.from({ length: c.depth }, lane));
    expect(bad).toBe('');
    expect(done).toBe(REQUESTS);
    const sim = rig.sim.stats;
    const stats = q.stats;
    // Every notification the driver sent reached the device; every publish either notified or was suppressed.
    expect(sim.notifications[0]).toBe(stats.notifications);
    expect(stats.notifications + stats.notificationsSuppressed).toBe(stats.publishes);
    expect(stats.notifications).toBeGreaterThan(0);
    expect(sim.interrupts).toBeGreaterThan(0);
    expect(rig.transport.stats.interrupts).toBeLessThanOrEqual(sim.interrupts);
    if (c.depth > 1) {
      expect(stats.notifications).toBeLessThan(REQUESTS);
      expect(sim.interrupts + sim.interruptsSuppressed).toBeGreaterThan(0);
      expect(sim.interrupts).toBeLessThan(REQUESTS);
    }
    driver.close();
    if (process.env.EVENT_IDX_TIMES)
      console.log(`sim ${_name}: ${Date.now() - started} ms`, { ...stats, sim: { ...sim } });
  }, 120_000);
});
