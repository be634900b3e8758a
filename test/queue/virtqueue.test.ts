import { CanceledError, DeviceBrokenError, QueueFullError, TimeoutError, TransportError } from '../../lib/errors';
import type { QueueRecovery } from '../../lib/queue';
import { DriverSetup } from '../../lib/devices';
import { DeviceStatus, FeatureBit, feature, features } from '../../lib/spec';
import { EchoDriver } from '../support/echo-driver';
import { echoRequest } from '../support/echo-request';
import { echoModel, simRig, turns, type SimRig } from '../support/sim-rig';
import { catchRethrown } from '../support/rethrown';

let rig: SimRig | undefined;
afterEach(() => {
  const violations = rig?.close() ?? [];
  rig = undefined;
  expect(violations).toEqual([]);
});

const bytes = (n: number, seed = 1): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);

/** A ring format and the transport features the sim offers for it (Version 2 adds RING_PACKED, IN_ORDER when asked). */
interface Ring {
  name: string;
  version: 1 | 2;
  format: 'split' | 'packed';
  transportFeatures?: bigint;
  /** IN_ORDER: the sim reports up to this many buffers with one used entry. */
  inOrderBatch?: number;
}

const MODERN = features(
  FeatureBit.VERSION_1,
  FeatureBit.INDIRECT_DESC,
  FeatureBit.EVENT_IDX,
  FeatureBit.RING_RESET,
  FeatureBit.NOTIFICATION_DATA,
);
export const RINGS: Ring[] = [
  { name: 'split ring, Version 1', version: 1, format: 'split' },
  { name: 'split ring, Version 2', version: 2, format: 'split' },
  {
    name: 'split ring, IN_ORDER',
    version: 2,
    format: 'split',
    transportFeatures: MODERN | feature(FeatureBit.IN_ORDER),
  },
  { name: 'packed ring', version: 2, format: 'packed', transportFeatures: MODERN | feature(FeatureBit.RING_PACKED) },
  {
    name: 'packed ring, IN_ORDER',
    version: 2,
    format: 'packed',
    transportFeatures: MODERN | features(FeatureBit.RING_PACKED, FeatureBit.IN_ORDER),
  },
  {
    name: 'split ring, IN_ORDER batches of 4',
    version: 2,
    format: 'split',
    transportFeatures: MODERN | feature(FeatureBit.IN_ORDER),
    inOrderBatch: 4,
  },
  {
    name: 'packed ring, IN_ORDER batches of 4',
    version: 2,
    format: 'packed',
    transportFeatures: MODERN | features(FeatureBit.RING_PACKED, FeatureBit.IN_ORDER),
    inOrderBatch: 4,
  },
];

function open(
  ring: Ring,
  options: {
    exclude?: bigint;
    queueSizes?: number[];
    queueSize?: number;
    sim?: Parameters<typeof simRig>[2];
    model?: ReturnType<typeof echoModel>;
    recovery?: QueueRecovery;
    timeoutMs?: number;
  } = {},
): EchoDriver {
  const sim = {
    ...(ring.transportFeatures === undefined ? {} : { transportFeatures: ring.transportFeatures }),
    ...(ring.inOrderBatch ? { inOrderBatch: ring.inOrderBatch } : {}),
    ...options.sim,
  };
  rig = simRig(ring.version, options.model ?? echoModel({ queueSizes: options.queueSizes }), sim);
  const driver = new EchoDriver(rig.transport, {
    memory: rig.pool,
    excludeFeatures: options.exclude,
    queueSize: options.queueSize,
    queueRecovery: options.recovery,
  });
  expect(driver.q.format).toBe(ring.format);
  return driver;
}

describe.each(RINGS.map((r) => [r.name, r] as const))('Virtqueue: %s', (_name, ring) => {
  describe.each([
    ['indirect and EVENT_IDX', 0n],
    ['no indirect', feature(FeatureBit.INDIRECT_DESC)],
    ['no EVENT_IDX', feature(FeatureBit.EVENT_IDX)],
    ['neither', feature(FeatureBit.INDIRECT_DESC) | feature(FeatureBit.EVENT_IDX)],
  ])('with %s', (_name, exclude) => {
    test('chains of readable then writable buffers round-trip, many at once', async () => {
      const driver = open(ring, { exclude, queueSize: 16 });
      const indirect = (driver.features & feature(FeatureBit.INDIRECT_DESC)) !== 0n;
      const jobs = Array.from({ length: 50 }, (_, i) => {
        const parts = [bytes(10 + i, i), bytes(3, i + 1), bytes(1, i + 2)];
        const expected = Buffer.concat(parts);
        return driver.echo(parts, [7, expected.length - 7 + 5]).then((out) => expect(out).toEqual(expected));
      });
      await Promise.all(jobs);
      expect(driver.q.stats.completed).toBe(50);
      expect(driver.q.stats.indirect > 0).toBe(indirect);
      expect(driver.q.free).toBe(driver.q.size);
      expect(driver.q.inFlight).toBe(0);
      driver.close();
    });
  });

  test('requests submitted in one tick are published with one avail.idx store and one notification', async () => {
    const driver = open(ring, { queueSizes: [64], queueSize: 64 });
    const before = { ...driver.q.stats };
    await Promise.all(Array.from({ length: 32 }, (_, i) => driver.echo([bytes(8, i)], [8])));
    expect(driver.q.stats.publishes - before.publishes).toBe(1);
    expect(driver.q.stats.notifications - before.notifications).toBe(1);
    expect(rig!.sim.stats.interrupts).toBe(1);
    // Split: one store of avail.idx, one load of used.idx for the whole batch; packed: one load per used descriptor and
    // one to stop.
    expect(driver.q.stats.atomics - before.atomics).toBeLessThanOrEqual(ring.format === 'split' ? 2 : 33);
    driver.close();
  });

  test('a full ring throws QueueFullError with wait: false, and waits otherwise', async () => {
    const driver = open(ring, { queueSize: 2, exclude: feature(FeatureBit.INDIRECT_DESC) });
    const first = driver.echo([bytes(4)], [4]);
    await expect(driver.echo([bytes(4)], [4], { wait: false })).rejects.toMatchObject({
      code: 'ERR_VIRTIO_QUEUE_FULL',
      retryable: true,
    });
    await expect(driver.echo([bytes(4)], [4], { wait: false })).rejects.toBeInstanceOf(QueueFullError);
    const waited = driver.echo([bytes(4, 9)], [4]);
    await expect(Promise.all([first, waited])).resolves.toEqual([Buffer.from(bytes(4)), Buffer.from(bytes(4, 9))]);
    driver.close();
  });

  test('an AbortSignal drops a waiting request and orphans an in-flight one', async () => {
    let release: (() => void) | undefined;
    const model = echoModel();
    const echo = model.handle;
    model.handle = (request) => new Promise<number>((resolve) => (release = () => resolve(echo(request) as number)));
    const driver = open(ring, { model, queueSize: 2, exclude: feature(FeatureBit.INDIRECT_DESC) });
    const inFlight = new AbortController();
    const waiting = new AbortController();
    const a = driver.echo([bytes(4)], [4], { signal: inFlight.signal });
    const b = driver.echo([bytes(4)], [4], { signal: waiting.signal });
    await turns();
    waiting.abort();
    await expect(b).rejects.toMatchObject({ code: 'ABORT_ERR' });
    inFlight.abort();
    await expect(a).rejects.toMatchObject({ code: 'ABORT_ERR' });
    expect(driver.q.free).toBe(0); // still the device's
    release!();
    await turns();
    expect(driver.q.free).toBe(2);
    driver.close();
  });

  test('interrupts can be turned off and completions polled', async () => {
    const driver = open(ring);
    driver.q.disableInterrupts();
    let done = false;
    const job = driver.echo([bytes(4)], [4]).then(() => (done = true));
    await turns(5);
    expect(done).toBe(false);
    expect(rig!.sim.stats.interruptsSuppressed).toBeGreaterThan(0);
    expect(driver.q.poll()).toBe(1);
    await job;
    expect(driver.q.enableInterrupts()).toBe(0);
    await driver.echo([bytes(4)], [4]);
    driver.close();
  });

  if (ring.inOrderBatch) {
    test('IN_ORDER: one used entry settles a whole batch, each request with its own data', async () => {
      let usedEntries = 0;
      const driver = open(ring, {
        queueSize: 64,
        queueSizes: [64],
        sim: { faults: { usedElement: (_q, e) => (usedEntries++, e) } },
      });
      const outs = await Promise.all(Array.from({ length: 32 }, (_, i) => driver.echo([bytes(8, i)], [8])));
      outs.forEach((out, i) => expect(out).toEqual(Buffer.from(bytes(8, i))));
      expect(driver.q.stats.completed).toBe(32);
      expect(usedEntries).toBe(32 / ring.inOrderBatch!);
      // The counters the lab reads to tell a batching device from one that uses each buffer alone.
      expect(driver.q.stats.inOrderBatches).toBe(32 / ring.inOrderBatch!);
      expect(driver.q.stats.inOrderBatched).toBe(32);
      expect(driver.q.free).toBe(driver.q.size);
      driver.close();
    });
  } else {
    test('one used entry per request: no IN_ORDER batch is counted', async () => {
      const driver = open(ring, { queueSize: 64, queueSizes: [64] });
      await Promise.all(Array.from({ length: 32 }, (_, i) => driver.echo([bytes(8, i)], [8])));
      expect(driver.q.stats.completed).toBe(32);
      expect(driver.q.stats.inOrderBatches).toBe(0);
      expect(driver.q.stats.inOrderBatched).toBe(0);
      driver.close();
    });
  }

  test("requests placed from completion callbacks (mid-reap) keep completing across the ring's wrap", async () => {
    const driver = open(ring, { queueSize: 16 });
    const input = driver.dma(bytes(8));
    const output = driver.dma(8);
    const request = { readable: [{ region: input }], writable: [{ region: output }] };
    let completed = 0;
    await new Promise<void>((resolve, reject) => {
      const next = (): void => {
        if (++completed === 40) resolve();
        else driver.q.enqueue(request, next, reject);
      };
      driver.q.enqueue(request, next, reject);
      setTimeout(() => reject(new Error(`stalled after ${completed} of 40 completions`)), 3000).unref();
    });
    expect(driver.q.inFlight).toBe(0);
    expect(driver.q.free).toBe(driver.q.size);
    driver.close();
  });

  test('a callback closing driver and memory stops the reap: rest of batch canceled, freed ring unread', async () => {
    // The device answers each notification at once, so one reap finds all four.
    const driver = open(ring, { queueSize: 16, sim: { completeOnNotify: true } });
    driver.q.setMode('poll', { loop: false, spinMicros: 0 });
    const outcomes: string[] = [];
    let thrown: unknown;
    const regions = Array.from({ length: 4 }, (_, i) => [driver.dma(bytes(4, i)), driver.dma(4)] as const);
    for (const [i, [input, output]] of regions.entries()) {
      driver.q.enqueue(
        { readable: [{ region: input }], writable: [{ region: output }] },
        () => {
          outcomes.push(`done ${i}`);
          if (i === 0) {
            driver.close();
            rig!.pool.close();
          }
        },
        (error) => outcomes.push(`${(error as { code?: string }).code} ${i}`),
      );
    }
    await turns(1);
    expect(driver.q.stats.completed).toBe(0);
    try {
      driver.q.poll();
    } catch (error) {
      thrown = error;
    }
    await turns(3);
    expect(thrown).toBeUndefined();
    expect(outcomes).toEqual(['done 0', 'ERR_VIRTIO_CANCELED 1', 'ERR_VIRTIO_CANCELED 2', 'ERR_VIRTIO_CANCELED 3']);
  });

  describe('completion modes', () => {
    test('poll: the device is asked for no interrupts and the loop finds every completion, then stops', async () => {
      const driver = open(ring, { queueSize: 16 });
      driver.q.setMode('poll');
      expect(driver.q.mode).toBe('poll');
      const interruptsBefore = rig!.sim.stats.interrupts;
      const outs = await Promise.all(Array.from({ length: 40 }, (_, i) => driver.echo([bytes(8, i)], [8])));
      outs.forEach((out, i) => expect(out).toEqual(Buffer.from(bytes(8, i))));
      expect(driver.q.stats.polledCompletions).toBe(40);
      expect(rig!.sim.stats.interrupts).toBe(interruptsBefore);
      expect(rig!.sim.stats.interruptsSuppressed).toBeGreaterThan(0);
      const polls = driver.q.stats.polls;
      await turns(5);
      expect(driver.q.stats.polls).toBe(polls); // idle: the loop is not running
      driver.close();
    });

    test('poll without the loop: completions wait for the caller', async () => {
      const driver = open(ring);
      driver.q.setMode('poll', { loop: false });
      let done = false;
      const job = driver.echo([bytes(4)], [4]).then(() => (done = true));
      await turns(5);
      expect(done).toBe(false);
      expect(driver.q.poll()).toBe(1);
      await job;
      driver.close();
    });

    test("poll, a device answering within the spin: each notify's spin finds it, no loop turn/interrupt", async () => {
      const driver = open(ring, { queueSize: 16, sim: { completeOnNotify: true } });
      driver.q.setMode('poll', { burstMicros: 1e7 });
      const interruptsBefore = rig!.sim.stats.interrupts;
      for (let i = 0; i < 20; i++) expect(await driver.echo([bytes(8, i)], [8])).toEqual(Buffer.from(bytes(8, i)));
      const { spins, spinHits, polls, polledCompletions } = driver.q.stats;
      expect(spinHits).toBe(20);
      expect(spins).toBe(20);
      expect(polledCompletions).toBe(20);
      expect(polls).toBe(0);
      expect(rig!.sim.stats.interrupts).toBe(interruptsBefore);
      driver.close();
    });

    test('poll: requests placed by completion callbacks go out in the same flush(), no microtask between', async () => {
      const driver = open(ring, { queueSize: 16, sim: { completeOnNotify: true } });
      driver.q.setMode('poll', { burstMicros: 1e7 });
      const input = driver.dma(bytes(8));
      const output = driver.dma(8);
      const request = { readable: [{ region: input }], writable: [{ region: output }] };
      const lengths: number[] = [];
      let failure: unknown;
      let microtaskRan = false;
      const next = (len: number): void => {
        lengths.push(len);
        if (lengths.length < 20) driver.q.enqueue(request, next, (error) => (failure = error));
      };
      driver.q.enqueue(request, next, (error) => (failure = error));
      const notifications = driver.q.stats.notifications;
      queueMicrotask(() => (microtaskRan = true));
      // Synchronously, as the microtask that would publish the first request does it.
      driver.q.flush();
      expect(microtaskRan).toBe(false);
      expect(failure).toBeUndefined();
      expect(lengths).toEqual(Array.from({ length: 20 }, () => 8));
      expect(driver.q.stats.notifications - notifications).toBe(20);
      expect(driver.q.stats.spinHits).toBe(20);
      expect(driver.q.inFlight).toBe(0);
      driver.close();
    });

    test('interrupt: a callback-placed request is published when the reap ends, before any microtask', async () => {
      const driver = open(ring, { queueSize: 16 });
      const input = driver.dma(bytes(8));
      const output = driver.dma(8);
      const request = { readable: [{ region: input }], writable: [{ region: output }] };
      let second = false;
      let publishedByThen = -1;
      const secondDone = new Promise<void>((resolve, reject) => {
        driver.q.enqueue(
          request,
          () => {
            const publishes = driver.q.stats.publishes;
            // Queued first, so it runs before any microtask the placement could queue.
            queueMicrotask(() => (publishedByThen = driver.q.stats.publishes - publishes));
            driver.q.enqueue(
              request,
              () => {
                second = true;
                resolve();
              },
              reject,
            );
            // Not yet: the reap still runs (other used entries may follow); the publish comes when it ends.
            expect(driver.q.stats.publishes).toBe(publishes);
          },
          reject,
        );
      });
      await secondDone;
      expect(second).toBe(true);
      expect(publishedByThen).toBe(1);
      driver.close();
    });

    test('poll with spinMicros 0: no spin, the loop finds every completion', async () => {
      const driver = open(ring, { sim: { completeOnNotify: true } });
      driver.q.setMode('poll', { spinMicros: 0 });
      for (let i = 0; i < 5; i++) await driver.echo([bytes(4, i)], [4]);
      expect(driver.q.stats.spins).toBe(0);
      expect(driver.q.stats.polledCompletions).toBe(5);
      expect(driver.q.stats.polls).toBeGreaterThanOrEqual(5);
      driver.close();
    });

    test('poll: a device answering a turn later makes spins miss, then skip (backoff); the loop finds it', async () => {
      const driver = open(ring);
      driver.q.setMode('poll', { spinMicros: 50 });
      for (let i = 0; i < 40; i++) await driver.echo([bytes(4, i)], [4]);
      const { spins, spinHits, polledCompletions } = driver.q.stats;
      expect(spinHits).toBe(0);
      expect(polledCompletions).toBe(40);
      // 3 misses in a row start the backoff (skip 2, 4, 8, … notifications), and a latency above the cap stops them.
      expect(spins).toBeGreaterThanOrEqual(1);
      expect(spins).toBeLessThanOrEqual(12);
      driver.close();
    });

    test('poll: spins that backed off against a slow device come back once it answers within the spin', async () => {
      const driver = open(ring, { queueSize: 16 });
      driver.q.setMode('poll', { spinMicros: 50, burstMicros: 1e7 });
      // The device turns fast: each notification is answered at once (as QEMU under TCG does within the trap).
      let fast = false;
      const transport = rig!.transport as unknown as { notify(index: number, next: number): void };
      const notify = transport.notify.bind(rig!.transport);
      transport.notify = (index, next) => {
        notify(index, next);
        if (fast) rig!.sim.process();
      };
      for (let i = 0; i < 40; i++) await driver.echo([bytes(4, i)], [4]);
      expect(driver.q.stats.spinHits).toBe(0);
      fast = true;
      // Backed off by at most 2^8 spin decisions: a probe comes within that many, and hits.
      let waited = 0;
      while (driver.q.stats.spinHits === 0 && waited < 600) {
        await driver.echo([bytes(4)], [4]);
        waited++;
      }
      expect(driver.q.stats.spinHits).toBe(1);
      // From then on every request is found by its spin.
      const { spins, spinHits, polledCompletions } = driver.q.stats;
      for (let i = 0; i < 50; i++) await driver.echo([bytes(4, i)], [4]);
      expect(driver.q.stats.spins - spins).toBe(50);
      expect(driver.q.stats.spinHits - spinHits).toBe(50);
      expect(driver.q.stats.polledCompletions - polledCompletions).toBe(50);
      driver.close();
    });

    test('hybrid, a device that answers within the spin: completions by spin and no interrupt', async () => {
      const driver = open(ring, { queueSize: 16, sim: { completeOnNotify: true } });
      driver.q.setMode('hybrid', { burstMicros: 1e7 });
      const before = rig!.sim.stats.interrupts;
      for (let i = 0; i < 10; i++) await driver.echo([bytes(4, i)], [4]);
      await Promise.all(Array.from({ length: 8 }, (_, i) => driver.echo([bytes(4, i)], [4])));
      expect(driver.q.stats.spinHits).toBeGreaterThanOrEqual(11);
      expect(driver.q.stats.polledCompletions).toBe(18);
      // The device was asked for no interrupt while each request was spun for.
      expect(rig!.sim.stats.interrupts).toBe(before);
      driver.close();
    });

    test('hybrid, a device slower than the spin: spins miss, interrupts resume, deliver; spins back off', async () => {
      const driver = open(ring, { queueSize: 16 });
      driver.q.setMode('hybrid', { spinMicros: 50 });
      const before = rig!.sim.stats.interrupts;
      for (let i = 0; i < 30; i++) await driver.echo([bytes(4, i)], [4]);
      expect(driver.q.stats.spinHits).toBe(0);
      expect(rig!.sim.stats.interrupts - before).toBe(30);
      // Misses back off, and the latency the interrupts show (above 50 µs here) stops the spins.
      expect(driver.q.stats.spins).toBeGreaterThanOrEqual(1);
      expect(driver.q.stats.spins).toBeLessThanOrEqual(10);
      driver.close();
    });

    test('spinning is bounded per turn: a timer and an immediate run amid spin-completed requests', async () => {
      const driver = open(ring, { sim: { completeOnNotify: true } });
      driver.q.setMode('poll');
      let immediate = -1;
      let timer = -1;
      let done = 0;
      setImmediate(() => (immediate = done));
      setTimeout(() => (timer = done), 1);
      while ((immediate < 0 || timer < 0) && done < 200_000) {
        await driver.echo([bytes(4)], [4]);
        done++;
      }
      expect(immediate).toBeGreaterThan(0); // some completed within the first turn, synchronously…
      expect(immediate).toBeLessThan(done); // …but the turn ended
      expect(timer).toBeGreaterThanOrEqual(0);
      expect(done).toBeLessThan(200_000);
      driver.close();
    });

    test('poll: each event-loop turn after a spent burst starts a new burst, not a turn per request', async () => {
      const driver = open(ring, { queueSize: 16, sim: { completeOnNotify: true } });
      driver.q.setMode('poll', { burstMicros: 300 });
      const request = { readable: [{ region: driver.dma(bytes(8)) }], writable: [{ region: driver.dma(8) }] };
      // Completions per event-loop iteration, counted from an immediate of our own that runs once in each.
      const perTurn: number[] = [];
      let last = driver.q.stats.completed;
      let counting = true;
      const count = (): void => {
        perTurn.push(driver.q.stats.completed - last);
        last = driver.q.stats.completed;
        if (counting) setImmediate(count);
      };
      setImmediate(count);
      await new Promise<void>((resolve, reject) => {
        let left = 4000;
        const next = (): void => {
          if (--left === 0) return resolve();
          driver.q.enqueue(request, next, reject);
        };
        driver.q.enqueue(request, next, reject);
      });
      counting = false;
      const turns = perTurn.slice(1, -1);
      // A turn that completes one request or none is an event-loop iteration (an epoll_wait) spent without a burst.
      const idle = turns.filter((n) => n < 2).length;
      expect(turns.length).toBeGreaterThan(2);
      expect(idle / turns.length).toBeLessThan(0.2);
      driver.close();
    });

    test('enqueue: callbacks: done is called later, never in the call; a refusal throws after reclaim', async () => {
      const driver = open(ring);
      const region = rig!.pool.allocate(64);
      let len = -1;
      let inCall = true;
      let calledInCall = false;
      const done = new Promise<void>((resolve, reject) =>
        driver.q.enqueue(
          { writable: [{ region, length: 8 }], readable: [{ region, offset: 8, length: 8 }] },
          (n) => {
            calledInCall = inCall;
            len = n;
            resolve();
          },
          reject,
        ),
      );
      inCall = false;
      await done;
      expect(calledInCall).toBe(false);
      expect(len).toBe(8);
      let reclaimed = false;
      expect(() =>
        driver.q.enqueue(
          { writable: [] },
          () => {},
          () => {},
          { reclaim: () => (reclaimed = true) },
        ),
      ).toThrow(RangeError);
      expect(reclaimed).toBe(true);
      rig!.pool.free(region);
      driver.close();
    });

    test('enqueue: a done callback that throws surfaces as uncaught and leaves the queue working', async () => {
      const driver = open(ring, { queueSize: 16 });
      const region = rig!.pool.allocate(64);
      const { thrown, restore } = catchRethrown();
      try {
        const boom = new Error('boom');
        const settled = Promise.all(
          [0, 1, 2].map(
            (i) =>
              new Promise<void>((resolve) =>
                driver.q.enqueue(
                  {
                    readable: [{ region, offset: i * 8, length: 8 }],
                    writable: [{ region, offset: 32 + i * 8, length: 8 }],
                  },
                  () => {
                    resolve();
                    if (i === 1) throw boom;
                  },
                  () => {},
                ),
              ),
          ),
        );
        await settled;
        await turns(2);
        expect(thrown).toEqual([boom]);
        expect(driver.q.broken).toBe(false);
        expect(driver.q.inFlight).toBe(0);
        await driver.echo([bytes(4)], [4]);
      } finally {
        restore();
      }
      rig!.pool.free(region);
      driver.close();
    });

    test('after close, suppression calls and mode changes never touch the freed ring', async () => {
      const driver = open(ring);
      await driver.echo([bytes(4)], [4]);
      const q = driver.q;
      driver.close();
      // The ring's memory is back in the pool: fill a new allocation and check nothing writes into it.
      const reused = rig!.pool.allocate(64 * 1024);
      const view = new Uint8Array(reused.view, reused.offset, reused.size);
      view.fill(0xa5);
      q.disableInterrupts();
      expect(q.enableInterrupts()).toBe(0);
      expect(() => q.setMode('poll')).toThrow(expect.objectContaining({ code: 'ERR_VIRTIO_CLOSED' }));
      expect(view.every((b) => b === 0xa5)).toBe(true);
      rig!.pool.free(reused);
    });

    test('back to interrupt mode: interrupts are asked for again', async () => {
      const driver = open(ring);
      driver.q.setMode('poll');
      await driver.echo([bytes(4)], [4]);
      driver.q.setMode('interrupt');
      const before = rig!.sim.stats.interrupts;
      await driver.echo([bytes(4)], [4]);
      expect(rig!.sim.stats.interrupts).toBe(before + 1);
      expect(() => driver.q.setMode('turbo' as never)).toThrow(TypeError);
      driver.close();
    });
  });

  test('a device that asks not to be notified is not notified', async () => {
    const driver = open(ring, { sim: { suppressNotifications: true } });
    const job = driver.echo([bytes(4)], [4]);
    await turns();
    expect(driver.q.stats.notifications).toBe(0);
    expect(driver.q.stats.notificationsSuppressed).toBe(1);
    rig!.sim.process();
    await expect(job).resolves.toEqual(Buffer.from(bytes(4)));
    driver.close();
  });

  type UsedLie = (e: { id: number; len: number }) => { id: number; len: number };
  const usedLies: [string, UsedLie][] = [
    ['used-id-out-of-range', (e) => ({ id: 1000, len: e.len })],
    // Split: a descriptor inside the chain; packed: a Buffer ID none of the three requests holds.
    ['used-id-not-head', (e) => ({ id: e.id + (ring.format === 'split' ? 1 : 3), len: e.len })],
    ['used-len-too-long', (e) => ({ id: e.id, len: 4097 })],
  ];

  describe("a device that lies in the used ring breaks the queue, typed and sticky (queueRecovery 'none')", () => {
    test.each(usedLies)('%s', async (reason, usedElement) => {
      const driver = open(ring, {
        sim: { faults: { usedElement: (_q, e) => usedElement(e) } },
        exclude: feature(FeatureBit.INDIRECT_DESC),
        recovery: 'none',
      });
      const jobs = [driver.echo([bytes(4)], [4, 4]), driver.echo([bytes(4)], [4, 4]), driver.echo([bytes(4)], [4])];
      const results = await Promise.allSettled(jobs);
      for (const result of results) {
        expect(result.status).toBe('rejected');
        expect((result as PromiseRejectedResult).reason).toBeInstanceOf(DeviceBrokenError);
        expect((result as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_VIRTIO_BROKEN', reason });
      }
      expect(driver.q.broken).toBe(true);
      await expect(driver.echo([bytes(1)], [1])).rejects.toMatchObject({ code: 'ERR_VIRTIO_BROKEN', reason });
      driver.close();
    });
  });

  describe('a device that lies in the used ring: with RING_RESET that queue alone is reset and goes on', () => {
    test.each(usedLies)('%s', async (reason, usedElement) => {
      let lies = 1;
      const driver = open(ring, {
        sim: { faults: { usedElement: (_q, e) => (lies-- > 0 ? usedElement(e) : e) } },
        exclude: feature(FeatureBit.INDIRECT_DESC),
      });
      const resettable = rig!.transport.queueResettable;
      expect(resettable).toBe(ring.version === 2);
      const resets: [number, Error][] = [];
      driver.onQueueReset((index, why) => resets.push([index, why]));
      const jobs = [driver.echo([bytes(4)], [4, 4]), driver.echo([bytes(4)], [4, 4]), driver.echo([bytes(4)], [4])];
      for (const result of await Promise.allSettled(jobs)) {
        expect(result.status).toBe('rejected');
        expect((result as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_VIRTIO_BROKEN', reason });
      }
      if (!resettable) {
        // Version 1 has no QueueReset: the device was failed as a whole, as before.
        expect(driver.q.broken).toBe(true);
        expect(rig!.transport.failure).toBeInstanceOf(DeviceBrokenError);
        driver.close();
        return;
      }
      expect(driver.q.broken).toBe(false);
      expect(driver.q.stats.resets).toBe(1);
      expect(resets).toEqual([[0, expect.objectContaining({ code: 'ERR_VIRTIO_BROKEN', reason })]]);
      expect(rig!.transport.failure).toBeUndefined();
      expect(rig!.transport.live).toBe(true);
      // The device let go of the rejected requests' buffers (the reset completed): nothing is deferred or held.
      expect(rig!.pool.stats()).toMatchObject({ deferredRegions: 0, holds: 0 });
      await expect(driver.echo([bytes(5, 7)], [5])).resolves.toEqual(Buffer.from(bytes(5, 7)));
      driver.close();
    });
  });

  test('a len on a chain the device may not write is taken as 0 and counted; the queue goes on', async () => {
    const driver = open(ring, { sim: { faults: { usedElement: (_q, e) => ({ id: e.id, len: 8 }) } } });
    await expect(driver.echo([bytes(4)], [])).resolves.toEqual(Buffer.alloc(0));
    expect(driver.q.stats.usedLenIgnored).toBe(1);
    expect(driver.q.broken).toBe(false);
    // With a writable buffer the same lie (8 bytes into 4) still breaks the queue.
    await expect(driver.echo([bytes(4)], [4])).rejects.toMatchObject({ code: 'ERR_VIRTIO_BROKEN' });
    driver.close();
  });

  describe('Virtqueue.reset() (RING_RESET, §2.6.1)', () => {
    test('in-flight requests reject with CanceledError, waiters stay and go out on the new ring', async () => {
      const driver = open(ring, { sim: { suppressNotifications: true }, queueSize: 2 });
      if (ring.version === 1) {
        expect(() => driver.q.reset()).toThrow(expect.objectContaining({ code: TransportError.NOT_NEGOTIATED }));
        driver.close();
        return;
      }
      // The sim holds every request until process() (suppressNotifications: QueueNotify starts nothing).
      const inFlight = [driver.echo([bytes(2)], [2]), driver.echo([bytes(2)], [2])];
      const waiting = driver.echo([bytes(3, 9)], [3], { timeoutMs: 5_000 });
      await turns(3);
      expect(driver.q.inFlight).toBe(2);
      driver.resetQueue(0);
      for (const result of await Promise.allSettled(inFlight)) {
        expect(result.status).toBe('rejected');
        expect((result as PromiseRejectedResult).reason).toBeInstanceOf(CanceledError);
      }
      expect(driver.q.stats.resets).toBe(1);
      expect(driver.q.inFlight).toBe(1);
      rig!.sim.process();
      expect(await waiting).toEqual(Buffer.from(bytes(3, 9)));
      driver.close();
    });
  });

  describe("a request the device keeps past its deadline (queueRecovery 'reset-broken-or-stuck')", () => {
    test.each(['reset-broken', 'reset-broken-or-stuck'] as const)(
      '%s: the queue is reset once only late requests are in flight, and their memory comes back',
      async (recovery) => {
        const driver = open(ring, { sim: { suppressNotifications: true }, recovery });
        const resetsWhenStuck = recovery === 'reset-broken-or-stuck' && ring.version === 2;
        const late = driver.echo([bytes(2)], [2], { timeoutMs: 20 });
        const awaited = driver.echo([bytes(3, 4)], [3]);
        await expect(late).rejects.toBeInstanceOf(TimeoutError);
        // One request in flight is still awaited: nothing is reset yet, new requests wait for the reset.
        expect(driver.q.stats.resets).toBe(0);
        const next = driver.echo([bytes(4, 5)], [4]);
        await turns(3);
        expect(driver.q.inFlight).toBe(resetsWhenStuck ? 2 : 3);
        rig!.sim.process();
        await expect(awaited).resolves.toEqual(Buffer.from(bytes(3, 4)));
        // The device used the late request too (process() does every chain): it came back, no reset needed.
        await turns(3);
        expect(driver.q.stats.resets).toBe(0);
        rig!.sim.process();
        await expect(next).resolves.toEqual(Buffer.from(bytes(4, 5)));
        // Now one that never comes back: reset (with 'reset-broken-or-stuck') as soon as it is the only one.
        const stuck = driver.echo([bytes(2)], [2], { timeoutMs: 20 });
        await expect(stuck).rejects.toBeInstanceOf(TimeoutError);
        await turns(3);
        expect(driver.q.stats.resets).toBe(resetsWhenStuck ? 1 : 0);
        expect(driver.q.inFlight).toBe(resetsWhenStuck ? 0 : 1);
        expect(rig!.pool.stats().deferredRegions).toBe(resetsWhenStuck ? 0 : 2);
        const after = driver.echo([bytes(6, 1)], [6]);
        await turns(3);
        rig!.sim.process();
        await expect(after).resolves.toEqual(Buffer.from(bytes(6, 1)));
        driver.close();
      },
    );
  });

  test('an explicit reset() while a stuck reset is wanted lets the waiting requests out (no deadlock)', async () => {
    const driver = open(ring, { sim: { suppressNotifications: true }, recovery: 'reset-broken-or-stuck' });
    if (ring.version === 1) return driver.close();
    const late = driver.echo([bytes(2)], [2], { timeoutMs: 20 });
    const awaited = driver.echo([bytes(3, 4)], [3]);
    await expect(late).rejects.toBeInstanceOf(TimeoutError);
    const waiting = driver.echo([bytes(4, 5)], [4]);
    await turns(3);
    expect(driver.q.inFlight).toBe(2);
    driver.resetQueue(0);
    await expect(awaited).rejects.toBeInstanceOf(CanceledError);
    await turns(3);
    expect(driver.q.inFlight).toBe(1);
    rig!.sim.process();
    await expect(waiting).resolves.toEqual(Buffer.from(bytes(4, 5)));
    driver.close();
  });

  if (ring.version === 2) {
    test('RING_RESET offered, QueueReset ignored: typed, device failed, memory kept till its reset', async () => {
      const driver = open(ring, { sim: { suppressNotifications: true, queueResetIgnored: true } });
      const errors: Error[] = [];
      driver.onError((error) => errors.push(error));
      const pending = driver.echo([bytes(2)], [2]);
      await turns(3);
      expect(() => driver.resetQueue(0)).toThrow(expect.objectContaining({ code: TransportError.QUEUE_RESET_IGNORED }));
      await expect(pending).rejects.toBeInstanceOf(CanceledError);
      // The device did not let go of the queue: only its own reset (which the sim completes) gave the memory back.
      expect(errors).toEqual([expect.objectContaining({ code: TransportError.QUEUE_RESET_IGNORED })]);
      expect(rig!.transport.live).toBe(false);
      expect(rig!.pool.stats()).toMatchObject({ deferredRegions: 0, holds: 0 });
      expect(rig!.transport.queueResettable).toBe(false);
      driver.close();
    });
  }

  describe('time limits (SubmitOptions.timeoutMs)', () => {
    /** Settles of each promise, counted: a request must settle exactly once. */
    const track = <T>(promise: Promise<T>): { settled: () => number; result: Promise<PromiseSettledResult<T>> } => {
      let settled = 0;
      const result = promise.then(
        (value) => (settled++, { status: 'fulfilled' as const, value }),
        (reason: unknown) => (settled++, { status: 'rejected' as const, reason }),
      );
      return { settled: () => settled, result };
    };

    test('an uncompleted request rejects with TimeoutError, frees the line, is reclaimed once used', async () => {
      const driver = open(ring, { sim: { suppressNotifications: true } });
      const busy = jest.spyOn(rig!.transport, 'setBusy');
      const job = track(driver.q.submit({ writable: [{ region: driver.dma(8) }] }, { timeoutMs: 20 }));
      const outcome = await job.result;
      expect(outcome.status).toBe('rejected');
      const error = (outcome as PromiseRejectedResult).reason;
      expect(error).toBeInstanceOf(TimeoutError);
      expect(error).toMatchObject({ code: 'ERR_VIRTIO_TIMEOUT', timeoutMs: 20 });
      expect(driver.q.inFlight).toBe(1);
      expect(driver.q.awaited).toBe(0);
      expect(busy).toHaveBeenLastCalledWith(0, false);
      // The device uses it late: its descriptors come back, the result is dropped, nothing settles twice.
      rig!.sim.process();
      await turns();
      expect(driver.q.inFlight).toBe(0);
      expect(job.settled()).toBe(1);
      const later = driver.echo([bytes(4)], [4]);
      await turns(1);
      rig!.sim.process();
      await expect(later).resolves.toEqual(Buffer.from(bytes(4)));
      driver.close();
    });

    test('a request completed in time resolves, and the watchdog then keeps no process alive', async () => {
      const driver = open(ring);
      await expect(driver.echo([bytes(4)], [4], { timeoutMs: 5000 })).resolves.toEqual(Buffer.from(bytes(4)));
      const deadlines = (driver.q as unknown as { deadlines: { holdsProcess: boolean } }).deadlines;
      expect(deadlines.holdsProcess).toBe(false);
      driver.close();
    });

    test('a request waiting for room times out without ever reaching the ring', async () => {
      const driver = open(ring, {
        queueSize: 2,
        exclude: feature(FeatureBit.INDIRECT_DESC),
        sim: { suppressNotifications: true },
      });
      const first = [
        track(driver.q.submit({ writable: [{ region: driver.dma(8) }] })),
        track(driver.q.submit({ writable: [{ region: driver.dma(8) }] })),
      ];
      const waiting = track(driver.q.submit({ writable: [{ region: driver.dma(8) }] }, { timeoutMs: 20 }));
      const outcome = await waiting.result;
      expect((outcome as PromiseRejectedResult).reason).toMatchObject({ code: 'ERR_VIRTIO_TIMEOUT' });
      rig!.sim.process();
      await turns();
      for (const job of first) expect((await job.result).status).toBe('fulfilled');
      expect(driver.q.stats.submitted).toBe(2);
      driver.close();
    });

    test.each(['interrupt', 'poll'] as const)(
      '%s mode: a request waiting for room only an aborted request holds gets it, keeping the line busy meanwhile',
      async (mode) => {
        // The device completes each request a few event-loop turns after taking it (found by the mutation run).
        const model = echoModel({ queueSizes: [4], handle: (request) => turns(5).then(() => echoRequest(request)) });
        const driver = open(ring, { model, queueSize: 4, exclude: feature(FeatureBit.INDIRECT_DESC) });
        driver.setQueueMode(mode);
        const busy = jest.spyOn(rig!.transport, 'setBusy');
        const buffers = () => ({
          readable: [{ region: driver.dma(bytes(2)) }, { region: driver.dma(bytes(2, 5)) }],
          writable: [{ region: driver.dma(2) }, { region: driver.dma(2) }],
        });
        const controller = new AbortController();
        const first = track(driver.q.submit(buffers(), { signal: controller.signal }));
        const second = track(driver.q.submit(buffers())); // waits: the first holds all 4 descriptors
        await turns(2);
        controller.abort();
        expect(busy).not.toHaveBeenLastCalledWith(0, false);
        const outcome = await Promise.race([
          second.result,
          new Promise((resolve) => setTimeout(() => resolve('stalled'), 1000)),
        ]);
        expect(outcome).toEqual({ status: 'fulfilled', value: 4 });
        expect((await first.result).status).toBe('rejected');
        driver.close();
      },
    );

    test.each([0, -1, NaN, Infinity, '5' as never])('timeoutMs %p is refused with RangeError', async (timeoutMs) => {
      const driver = open(ring);
      await expect(driver.q.submit({ writable: [{ region: driver.dma(8) }] }, { timeoutMs })).rejects.toThrow(
        RangeError,
      );
      expect(driver.q.stats.submitted).toBe(0);
      driver.close();
    });
  });

  test('bad requests are refused at the edge without touching the ring', async () => {
    const driver = open(ring, { queueSize: 4, exclude: feature(FeatureBit.INDIRECT_DESC) });
    const region = driver.dma(8);
    await expect(driver.q.submit({})).rejects.toThrow(RangeError);
    await expect(driver.q.submit({ readable: [{ region, offset: 4, length: 8 }] })).rejects.toThrow(RangeError);
    await expect(driver.q.submit({ readable: [{ region, length: 0 }] })).rejects.toThrow(RangeError);
    await expect(driver.q.submit({ readable: Array(5).fill({ region }) })).rejects.toThrow(RangeError);
    await expect(driver.q.submit(null as never)).rejects.toThrow(TypeError);
    await expect(driver.q.submit({ readable: [{ region: 5 as never }] })).rejects.toThrow(TypeError);
    expect(driver.q.stats.submitted).toBe(0);
    driver.close();
  });
});

describe.each(RINGS.map((r) => [r.name, r] as const))('failure paths: %s', (_name, ring) => {
  test('a notification that cannot be written rejects the batch instead of throwing in a microtask', async () => {
    const driver = open(ring);
    const job = driver.echo([bytes(4)], [4]);
    rig!.sim.close(); // the register window goes away before the publishing microtask runs
    await expect(job).rejects.toMatchObject({ code: 'ERR_VIRTIO_CLOSED' });
    driver.close();
  });

  test('a driver whose setup fails leaves the device FAILED and frees its queues', () => {
    rig = simRig(
      ring.version,
      echoModel(),
      ring.transportFeatures === undefined ? {} : { transportFeatures: ring.transportFeatures },
    );
    const boom = new Error('configure failed');
    // A driver's open() whose config step fails after its queues were set up (§3.1.1 step 7).
    const open = (): never => {
      const setup = DriverSetup.begin(rig!.transport, { memory: rig!.pool });
      try {
        setup.negotiate(42, 0n);
        setup.setUpQueues([0], 8);
        throw boom;
      } catch (error) {
        throw setup.abandon(error);
      }
    };
    expect(open).toThrow(boom);
    expect(rig.transport.status & DeviceStatus.FAILED).toBe(DeviceStatus.FAILED);
    expect(rig.pool.stats().regions).toBe(0);
  });

  test('a device that never finishes its reset keeps its ring memory on close', async () => {
    rig = simRig(
      ring.version,
      echoModel(),
      ring.transportFeatures === undefined ? {} : { transportFeatures: ring.transportFeatures },
      { resetTimeoutMs: 10 },
    );
    const driver = new EchoDriver(rig.transport, { memory: rig.pool });
    const job = driver.echo([bytes(4)], [4]);
    await job;
    rig.sim.resetLatency = Infinity;
    driver.close();
    expect(rig.pool.stats().regions).toBeGreaterThan(0);
  });
});
