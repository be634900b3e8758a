/**
 * Issue 7: a bounded, seeded mutation run. Every seed picks a device type
 * (rng, blk, console, net, a user driver on the public base) and a ring
 * (Version 1 split, Version 2 split, packed), opens the driver on a sim
 * whose register reads (virtio 1.2 §4.2.2, §4.2.4) and device-written ring
 * parts (§2.7.8, §2.8) lie at seeded random, runs operations (some
 * concurrent, some aborted), closes, and checks: nothing escapes into the
 * event loop, every request settles once with a value or a typed error,
 * no guard byte around a DMA region changes, each seed ends in bounded time.
 *
 * Bounds: MUTATION_SEEDS (default 1000 in CI, 100 otherwise), MUTATION_OPS
 * (300), MUTATION_SECONDS (120 in CI, 30 otherwise); MUTATION_FIRST_SEED
 * (1) replays a seed.
 */
import { faultEntry, type BlkModel } from '../../lib/sim';
import { inCi } from '../support/requirements';
import { blkWorkload, rngWorkload, type WorkloadKind } from '../support/mutation-workloads';
import { PROFILES, runMutations, runOptionsFromEnv } from '../support/mutation-run';
import { formatSummary } from '../support/mutation-summary';

const options = runOptionsFromEnv(process.env, inCi);
const control = PROFILES.filter((p) => p.name === 'control');

describe('seeded mutation run', () => {
  // The run stops starting seeds at MUTATION_SECONDS; the last seed, close and checks get a minute more.
  test(
    'no crash, double completion, out-of-region access or unsettled request',
    async () => {
      const summary = await runMutations(options);
      process.stdout.write(formatSummary(summary));
      expect(summary.findings).toEqual([]);
      expect(summary.crashes).toBe(0);
      expect(summary.doubleCompletions).toBe(0);
      expect(summary.outOfRegionAccesses).toBe(0);
      expect(summary.unsettledRequests).toBe(0);
      expect(summary.seedsOverTime).toBe(0);
      // Every lie told is counted once under the FAULT_CATALOGUE fault it tells, or as uncatalogued.
      const byFault = [...summary.liesByFault];
      expect(byFault.filter(([fault]) => fault !== 'uncatalogued' && !faultEntry(fault))).toEqual([]);
      expect(byFault.reduce((sum, [, n]) => sum + n, 0)).toBe(summary.registerLies + summary.ringLies);
      // Enough ran to mean something (a replay of one seed excepted): the scenarios, most seeds opening a driver,
      // results checked.
      expect(summary.seeds).toBeGreaterThanOrEqual(Math.min(options.seeds, 50));
      if (summary.seeds >= 20) {
        expect(summary.operations).toBeGreaterThan(summary.seeds * 10);
        expect(summary.scenarios).toBeGreaterThanOrEqual(summary.seeds >= 200 ? 15 : 10);
        expect(summary.opened).toBeGreaterThan(summary.seeds / 2);
        expect(summary.integrityChecked).toBeGreaterThan(0);
      }
    },
    (options.seconds + 60) * 1000,
  );
});

// The checks above must be able to fail: each self-test breaks one thing on purpose.
describe('the mutation run notices', () => {
  const small = { firstSeed: 1, seeds: 6, operations: 40, seconds: 30, profiles: control };

  test('a region one byte longer than its guards allow (out-of-region access)', async () => {
    const summary = await runMutations({ ...small, workloads: [rngWorkload], overhang: 1 });
    expect(summary.opened).toBeGreaterThan(0);
    expect(summary.outOfRegionAccesses).toBeGreaterThan(0);
    expect(summary.findings.join('\n')).toMatch(/after guard of the \d+-byte region/);
  });

  test('an exception escaping into the event loop inside a seed (crash)', async () => {
    const summary = await runMutations({
      ...small,
      seeds: 2,
      workloads: [rngWorkload],
      inject: () =>
        setImmediate(() => {
          throw new Error('injected uncaught exception');
        }),
    });
    expect(summary.crashes).toBe(2);
    expect(summary.findings.join('\n')).toMatch(/escaped into the event loop: Error: injected uncaught exception/);
  });

  test('an unhandled rejection inside a seed (crash)', async () => {
    const summary = await runMutations({
      ...small,
      seeds: 1,
      workloads: [rngWorkload],
      inject: () => void Promise.reject(new Error('injected unhandled rejection')),
    });
    expect(summary.crashes).toBe(1);
  });

  test('a request that never settles, even after close (unsettled request)', async () => {
    const hanging = rngStartingWith((start, context) => (signal) => {
      if (context.random.chance(0.1)) void context.tracker.track('never', new Promise<void>(() => undefined));
      return start(signal);
    });
    const summary = await runMutations({ ...small, seeds: 2, workloads: [hanging] });
    expect(summary.unsettledRequests).toBeGreaterThan(0);
    expect(summary.findings.join('\n')).toMatch(/request\(s\) never settled after close\(\): never/);
  });

  test('requests that stall on a device that tells no lie (lost completion)', async () => {
    // The entropy device takes every buffer and never uses it: to the driver, a completion that got lost.
    const silent: WorkloadKind = {
      ...rngWorkload,
      model: (random) =>
        Object.assign(rngWorkload.model(random), { handle: () => new Promise<number>(() => undefined) }),
    };
    const summary = await runMutations({ ...small, seeds: 1, workloads: [silent] });
    expect(summary.stalledSeeds).toBe(1);
    expect(summary.findings.join('\n')).toMatch(/requests stalled for 2000 ms on a device that told no lie: rng read/);
    // close() still settles them all.
    expect(summary.unsettledRequests).toBe(0);
  });

  test('a completion callback called twice (double completion)', async () => {
    const twice = rngStartingWith((start, context) => (signal) => {
      const { callback, done } = context.tracker.callback('twice');
      void start(signal).then(() => {
        callback();
        callback();
      });
      return done;
    });
    const summary = await runMutations({ ...small, seeds: 1, workloads: [twice] });
    expect(summary.doubleCompletions).toBe(summary.operations);
  });

  test('a blk read that returns bytes no write put there (wrong completion)', async () => {
    // The device's disk changes behind the driver's back: reads no longer return what was written.
    const corrupting: WorkloadKind = {
      ...blkWorkload,
      model(random) {
        const model = blkWorkload.model(random) as BlkModel;
        setImmediate(() => model.disk.fill(0x5a, 512 * 8));
        return model;
      },
    };
    const summary = await runMutations({ ...small, seeds: 4, operations: 80, workloads: [corrupting] });
    expect(summary.doubleCompletions).toBeGreaterThan(0);
    expect(summary.findings.join('\n')).toMatch(
      /wrong completion without any lie: blk read of sector \d+ returned bytes no write put there/,
    );
  });
});

type Opened = ReturnType<WorkloadKind['open']>;

/** The rng workload with each operation's start wrapped by `wrap` (to plant a fault the run must notice). */
function rngStartingWith(
  wrap: (start: Opened['start'], context: Parameters<WorkloadKind['open']>[2]) => Opened['start'],
): WorkloadKind {
  return {
    ...rngWorkload,
    open(transport, driverOptions, context, model) {
      const workload = rngWorkload.open(transport, driverOptions, context, model);
      return { ...workload, start: wrap((signal) => workload.start(signal), context) };
    },
  };
}
