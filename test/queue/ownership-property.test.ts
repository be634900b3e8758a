/**
 * The ownership rule as a property (the buffer-ownership issue): over
 * random interleavings of submit (some waiting for room), device
 * completions in any order, aborts, timeouts, late completions, and a
 * close whose reset completes or not, on split and packed rings:
 *
 * - every request settles exactly once; SubmitOptions.reclaim runs at most
 *   once, never for a request that resolved, and for every rejected one
 *   exactly when the device let go of it (its chain came back, a reset
 *   completed, or it never reached the device);
 * - a request that resolved returns its own bytes;
 * - while the device holds a rejected request's chain, its writable
 *   buffers stay held (isHeld) and are not reused — the user's driver frees
 *   everything the naive way, at settlement;
 * - no write of the device lands in freed memory or outside a region
 *   (canary guards, quarantined frees);
 * - at the end nothing is held or deferred when the device let go.
 *
 * Bounds: OWNERSHIP_RUNS (default 300) cases, OWNERSHIP_SEED to replay.
 */
import fc from 'fast-check';
import { DmaPool, type DmaRegion } from '../../lib/platform';
import { SimDevice } from '../../lib/sim';
import { FeatureBit, features } from '../../lib/spec';
import { MmioTransport } from '../../lib/transport';
import { CanaryMemory } from '../support/canary-memory';
import { EchoDriver } from '../support/echo-driver';
import { gateModel } from '../support/gated-model';
import { echoModel, turns, type SimVariant } from '../support/sim-rig';

const RUNS = Number(process.env.OWNERSHIP_RUNS ?? 300);
/** A new seed each run (printed), or OWNERSHIP_SEED to replay one. */
const SEED = process.env.OWNERSHIP_SEED === undefined ? Date.now() % 0x7fff_ffff : Number(process.env.OWNERSHIP_SEED);
const QUEUE_SIZE = 4;
const PACKED = features(FeatureBit.VERSION_1, FeatureBit.INDIRECT_DESC, FeatureBit.EVENT_IDX, FeatureBit.RING_PACKED);
const SPLIT = features(FeatureBit.VERSION_1, FeatureBit.INDIRECT_DESC, FeatureBit.EVENT_IDX);

type Op =
  | { kind: 'submit'; buffers: number; timeout: boolean; bytes: number }
  | { kind: 'complete'; pick: number }
  | { kind: 'abort'; pick: number }
  | { kind: 'turn' }
  | { kind: 'wait' };

const opArbitrary: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('submit' as const),
      buffers: fc.integer({ min: 1, max: 3 }),
      timeout: fc.boolean(),
      bytes: fc.integer({ min: 1, max: 96 }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('complete' as const), pick: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('abort' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'turn' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'wait' as const }) },
);

interface Tracked {
  n: number;
  input: DmaRegion;
  outputs: DmaRegion[];
  controller: AbortController;
  state: 'pending' | 'resolved' | 'rejected';
  settlements: number;
  reclaims: number;
  result?: Buffer;
  error?: { code?: string };
}

async function runCase(variant: SimVariant, ops: Op[], ending: 'close' | 'close-reset-fails'): Promise<void> {
  const pool = DmaPool.anonymous();
  const canary = new CanaryMemory(pool, { seed: ops.length + 1 });
  const gate = gateModel(echoModel({ queueSizes: [QUEUE_SIZE] }));
  const sim = new SimDevice({
    memory: canary,
    version: 2,
    model: gate.model,
    strict: true,
    transportFeatures: variant === 'packed' ? PACKED : SPLIT,
  });
  const transport = new MmioTransport(sim, { interrupts: sim.interrupt, resetTimeoutMs: 20 });
  const driver = new EchoDriver(transport, { memory: canary, requestTimeoutMs: 0 });
  const tracked: Tracked[] = [];
  const problems: string[] = [];
  try {
    let n = 0;
    for (const op of ops) {
      if (op.kind === 'submit') {
        const id = n++;
        const input = canary.allocate(op.bytes + 2);
        const view = new Uint8Array(input.view, input.offset, input.size);
        view[0] = id >> 8;
        view[1] = id & 0xff;
        for (let i = 2; i < view.length; i++) view[i] = (id * 7 + i) & 0xff;
        const each = Math.ceil(input.size / op.buffers);
        const outputs = Array.from({ length: op.buffers }, (_, i) =>
          canary.allocate(Math.max(1, Math.min(each, input.size - i * each)) || 1),
        );
        const t: Tracked = {
          n: id,
          input,
          outputs,
          controller: new AbortController(),
          state: 'pending',
          settlements: 0,
          reclaims: 0,
        };
        tracked.push(t);
        const expected = Buffer.from(view);
        driver.q
          .submit(
            { readable: [{ region: input }], writable: outputs.map((region) => ({ region })) },
            { signal: t.controller.signal, timeoutMs: op.timeout ? 1 : undefined, reclaim: () => void t.reclaims++ },
          )
          .then(
            (len) => {
              t.settlements++;
              t.state = 'resolved';
              const got = Buffer.concat(
                outputs.map((r) => Buffer.from(new Uint8Array(r.view, r.offset, r.size))),
              ).subarray(0, len);
              if (
                !got.equals(expected.subarray(0, got.length)) ||
                len !==
                  Math.min(
                    expected.length,
                    outputs.reduce((s, r) => s + r.size, 0),
                  )
              ) {
                problems.push(`request ${id} resolved with other bytes`);
              }
            },
            (error: { code?: string }) => {
              t.settlements++;
              t.state = 'rejected';
              t.error = error;
            },
          )
          .finally(() => {
            // The naive user: frees at settlement, whatever happened. The allocator keeps what the device holds.
            for (const r of [input, ...outputs]) if (canary.isLive(r)) canary.free(r);
          });
      } else if (op.kind === 'complete') {
        if (gate.held === 0) continue;
        const at = op.pick % gate.held;
        gate.release(at);
      } else if (op.kind === 'abort') {
        const open = tracked.filter((t) => t.state === 'pending');
        if (open.length > 0) open[op.pick % open.length].controller.abort();
      } else if (op.kind === 'turn') {
        await turns(1);
      } else {
        await new Promise((resolve) => setTimeout(resolve, 3));
      }
      await Promise.resolve();
      // While the device holds a rejected request's chain, its writable buffers are held (never reused).
      for (const t of tracked) {
        if (t.state !== 'rejected' || t.reclaims > 0) continue;
        for (const r of t.outputs) {
          if (!pool.isHeld(r, 0, r.size))
            problems.push(
              `request ${t.n} (${t.error?.code}) was rejected while in the device, but its buffer is not held`,
            );
        }
      }
    }
    await turns(3);
    // The ending: a close whose reset completes, or one whose reset never does.
    if (ending === 'close-reset-fails') sim.resetLatency = Infinity;
    driver.close();
    await turns(3);
    // A device whose reset completed forgets what it had (§2.4); one that did not reset goes on working.
    if (ending === 'close') gate.dropAll();
    else gate.releaseAll();
    await turns(3);
    for (const t of tracked) {
      if (t.settlements !== 1) problems.push(`request ${t.n} settled ${t.settlements} times`);
      if (t.reclaims > 1) problems.push(`request ${t.n}: reclaim ran ${t.reclaims} times`);
      if (t.state === 'resolved' && t.reclaims !== 0) problems.push(`request ${t.n} resolved and was reclaimed`);
      if (t.state === 'rejected' && ending === 'close' && t.reclaims !== 1)
        problems.push(
          `request ${t.n} (${t.error?.code}) rejected; the reset completed, but reclaim ran ${t.reclaims} times`,
        );
    }
    const damage = canary.check();
    if (damage.length > 0)
      problems.push(
        `canary damage: ` +
          `${JSON.stringify(damage, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}`,
      );
    if (ending === 'close') {
      const stats = pool.stats();
      if (stats.holds !== 0 || canary.deferredRegions !== 0)
        problems.push(`after a completed reset: ${stats.holds} holds, ${canary.deferredRegions} deferred frees`);
    }
  } finally {
    transport.close();
    sim.close();
    canary.close();
  }
  if (problems.length > 0) throw new Error(problems.join('\n'));
}

describe.each([
  ['split', 2 as SimVariant],
  ['packed', 'packed' as SimVariant],
])('the ownership rule over random interleavings (%s ring)', (_label, variant) => {
  test(`${RUNS} cases`, async () => {
    const counts = {
      cases: 0,
      ops: 0,
      submit: 0,
      timeout: 0,
      complete: 0,
      abort: 0,
      turn: 0,
      wait: 0,
      'close-reset-fails': 0,
    };
    await fc.assert(
      fc.asyncProperty(
        fc.array(opArbitrary, { minLength: 1, maxLength: 40 }),
        fc.constantFrom('close' as const, 'close-reset-fails' as const),
        async (ops, ending) => {
          counts.cases++;
          counts.ops += ops.length;
          for (const op of ops) {
            counts[op.kind]++;
            if (op.kind === 'submit' && op.timeout) counts.timeout++;
          }
          if (ending === 'close-reset-fails') counts['close-reset-fails']++;
          await runCase(variant, ops, ending);
        },
      ),
      { numRuns: RUNS, seed: SEED, verbose: 1 },
    );
    process.stdout.write(`ownership property, ${_label} ring: seed ${SEED}, ${JSON.stringify(counts)}\n`);
    expect(counts.cases).toBeGreaterThanOrEqual(RUNS);
    expect(counts.abort).toBeGreaterThan(0);
    expect(counts.timeout).toBeGreaterThan(0);
    expect(counts['close-reset-fails']).toBeGreaterThan(0);
  }, 240_000);
});
