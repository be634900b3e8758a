/**
 * The buffer-ownership issue, findings 4 and 5: the queue's own memory
 * (indirect tables) cannot run out inside place(), and a request that
 * waits for room is placed as it was when submitted.
 */
import { DmaPool, type DmaRegion } from '../../lib/platform';
import { native } from '../../lib/platform/addon';
import { FeatureBit, feature } from '../../lib/spec';
import { EchoDriver } from '../support/echo-driver';
import { gateModel } from '../support/gated-model';
import { echoModel, SIM_VARIANTS, simRig, turns, type SimRig } from '../support/sim-rig';

let rig: SimRig | undefined;
let fixed: DmaPool | undefined;
afterEach(() => {
  const violations = rig?.close() ?? [];
  rig = undefined;
  fixed?.close();
  fixed = undefined;
  expect(violations).toEqual([]);
});

/** A pool of one fixed chunk that never grows (like DmaPool.physical). */
function fixedPool(bytes: number): DmaPool {
  return new DmaPool(() => native.allocAnonymous(bytes, 0x9000_0000n), false);
}

/** Allocates from `pool` until it refuses; returns what it got. */
function exhaust(pool: DmaPool): DmaRegion[] {
  const taken: DmaRegion[] = [];
  for (let size = 1 << 16; size >= 16; size >>= 1) {
    for (;;) {
      try {
        taken.push(pool.allocate(size));
      } catch {
        break;
      }
    }
  }
  return taken;
}

const fill = (region: DmaRegion, byte: number): DmaRegion => {
  new Uint8Array(region.view, region.offset, region.size).fill(byte);
  return region;
};
const read = (region: DmaRegion, length = region.size): Buffer =>
  Buffer.from(new Uint8Array(region.view, region.offset, length));

describe.each(SIM_VARIANTS)('on the %s sim', (_label, variant) => {
  test('finding 4: full fixed pool, chains going indirect all placed — no lost Buffer ID, no DmaError', async () => {
    fixed = fixedPool(256 * 1024);
    rig = simRig(variant, echoModel({ queueSizes: [8] }), { memory: fixed });
    const driver = new EchoDriver(rig.transport, { memory: fixed });
    const queue = driver.q;
    // Buffers for every request, then nothing left in the pool.
    const requests = Array.from({ length: 3 * queue.size }, (_, i) => ({
      input: fill(fixed!.allocate(32), i + 1),
      output: [fixed!.allocate(16), fixed!.allocate(16)],
    }));
    exhaust(fixed);
    for (const { input, output } of requests) {
      const len = await queue.submit({ readable: [{ region: input }], writable: output.map((region) => ({ region })) });
      expect(len).toBe(32);
      expect(Buffer.concat(output.map((r) => read(r)))).toEqual(read(input));
    }
    if (variant !== 1) expect(queue.stats.indirect).toBe(3 * queue.size);
  });

  test('finding 4: requests placed by drainWaiters (interrupt handling) on a full pool all complete', async () => {
    fixed = fixedPool(256 * 1024);
    const gate = gateModel(echoModel({ queueSizes: [4] }));
    rig = simRig(variant, gate.model, { memory: fixed });
    const driver = new EchoDriver(rig.transport, { memory: fixed });
    const queue = driver.q;
    const requests = Array.from({ length: 4 * queue.size }, (_, i) => ({
      input: fill(fixed!.allocate(32), i + 1),
      output: [fixed!.allocate(16), fixed!.allocate(16)],
    }));
    exhaust(fixed);
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown): void => void uncaught.push(error);
    process.on('uncaughtException', onUncaught);
    try {
      const results = requests.map(({ input, output }) =>
        queue.submit({ readable: [{ region: input }], writable: output.map((region) => ({ region })) }),
      );
      await turns();
      gate.holding = false;
      gate.releaseAll();
      expect(await Promise.all(results)).toEqual(requests.map(() => 32));
      await turns();
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(uncaught).toEqual([]);
  });

  test('finding 5: a request waiting for room is placed as submitted, whatever the caller then does', async () => {
    const gate = gateModel(echoModel({ queueSizes: [4] }));
    rig = simRig(variant, gate.model);
    // Direct descriptors only, so that a grown request would overrun other chains' descriptors.
    const driver = new EchoDriver(rig.transport, {
      memory: rig.pool,
      excludeFeatures: feature(FeatureBit.INDIRECT_DESC),
    });
    const queue = driver.q;
    const pool = rig.pool;
    // One descriptor each (the echo writes nothing back): one descriptor stays free.
    const inFlight = Array.from({ length: queue.size - 1 }, () => {
      const output = fill(pool.allocate(16), 0x33);
      const done = queue.submit({ writable: [{ region: output }] });
      done.catch(() => undefined);
      return { output, done };
    });
    const input = fill(pool.allocate(16), 0x77);
    const output = pool.allocate(16);
    // Two descriptors: it waits (one is free).
    const waiting = { readable: [{ region: input }], writable: [{ region: output, offset: 0, length: 16 }] };
    const done = queue.submit(waiting);
    done.catch(() => undefined);
    await turns();
    expect(gate.held).toBe(queue.size - 1);
    // The caller changes the request it handed over: more buffers, and a different region and length.
    const stray = fill(pool.allocate(64), 0xee);
    waiting.readable.push({ region: stray }, { region: stray });
    waiting.writable[0] = { region: stray, offset: 8, length: 32 };
    gate.holding = false;
    gate.releaseAll();
    expect(await done).toBe(16);
    expect(read(output)).toEqual(read(input));
    for (const r of inFlight) {
      expect(await r.done).toBe(0);
      expect([...new Set(read(r.output))]).toEqual([0x33]);
    }
    expect([...new Set(read(stray))]).toEqual([0xee]);
    // The free list is whole: the queue can be filled again.
    const again = Array.from({ length: queue.size * 3 }, (_, i) => {
      const a = fill(pool.allocate(8), i);
      const b = pool.allocate(8);
      return queue
        .submit({ readable: [{ region: a }], writable: [{ region: b }] })
        .then((len) => len === 8 && read(b).equals(read(a)));
    });
    expect(await Promise.all(again)).toEqual(again.map(() => true));
  });
});
