import type { DriverOptions } from '../../lib/devices';
import { DmaPool } from '../../lib/platform';
import type { QueueMode } from '../../lib/queue';
import { SimDevice } from '../../lib/sim';
import { FeatureBit, feature, features } from '../../lib/spec';
import { MmioTransport } from '../../lib/transport';
import { CanaryMemory } from './canary-memory';
import { MutatingRegisters } from './mutating-registers';
import { MutationRandom } from './mutation-random';
import { MutatingInterrupts, RingMutator } from './mutation-rings';
import { CrashCatcher } from './mutation-crash-catcher';
import { newSummary, type MutationSummary } from './mutation-summary';
import { SettleTracker, errorCode, judgeError } from './mutation-tracker';
import { WORKLOADS, type Workload, type WorkloadKind } from './mutation-workloads';
import type { SimVariant } from './sim-rig';

/** How hard one seed lies (virtio 1.2 §4.2.2 registers, §2.7/§2.8 rings). */
export interface MutationProfile {
  readonly name: string;
  /** Register lie rate while the driver opens, and afterwards. */
  readonly openRate: number;
  readonly runRate: number;
  readonly identityRate: number;
  /** Ring mutations per tick, and used elements rewritten as written. */
  readonly ringRate: number;
  readonly usedElementRate: number;
}

export interface MutationRunOptions {
  firstSeed: number;
  seeds: number;
  operations: number;
  /** Wall-clock budget: no new seed starts after it. */
  seconds: number;
  /** A seed that takes longer than this (ms) broke the time bound. */
  seedLimitMs?: number;
  /** No request settled for this long (ms): the device stalls, the seed goes on to close(). */
  stallMs?: number;
  /** Self-tests: CanaryMemory overhang, or a hook run inside each seed while requests are in flight. */
  overhang?: number;
  inject?: (seed: number) => void;
  /** Self-tests: restrict to these workloads / profiles. */
  workloads?: readonly WorkloadKind[];
  profiles?: readonly MutationProfile[];
}

const V2_TRANSPORT = features(
  FeatureBit.VERSION_1,
  FeatureBit.INDIRECT_DESC,
  FeatureBit.EVENT_IDX,
  FeatureBit.RING_RESET,
  FeatureBit.NOTIFICATION_DATA,
);
const V1_TRANSPORT = features(FeatureBit.INDIRECT_DESC, FeatureBit.EVENT_IDX);
const VARIANTS: readonly SimVariant[] = [1, 2, 'packed'];

export const PROFILES: readonly MutationProfile[] = [
  { name: 'control', openRate: 0, runRate: 0, identityRate: 0, ringRate: 0, usedElementRate: 0 },
  {
    name: 'registers while opening',
    openRate: 0.01,
    runRate: 0.01,
    identityRate: 0.002,
    ringRate: 0,
    usedElementRate: 0,
  },
  { name: 'registers, hard', openRate: 0.05, runRate: 0.1, identityRate: 0.01, ringRate: 0, usedElementRate: 0 },
  { name: 'registers after opening', openRate: 0, runRate: 0.2, identityRate: 0, ringRate: 0, usedElementRate: 0 },
  { name: 'rings, rare', openRate: 0, runRate: 0, identityRate: 0, ringRate: 0.01, usedElementRate: 0.01 },
  { name: 'rings', openRate: 0, runRate: 0, identityRate: 0, ringRate: 0.05, usedElementRate: 0.05 },
  { name: 'rings, hard', openRate: 0, runRate: 0, identityRate: 0, ringRate: 0.3, usedElementRate: 0.2 },
  { name: 'everything', openRate: 0.005, runRate: 0.05, identityRate: 0.001, ringRate: 0.1, usedElementRate: 0.05 },
];

/** Event-loop turns without a completion (besides stallMs) before the device counts as stalled. */
const STALL_TURNS = 500;
/** How long a device that told no lie may take before its stall is a finding. */
const HONEST_STALL_MS = 2000;

const QUEUE_MODES: readonly QueueMode[] = ['interrupt', 'interrupt', 'interrupt', 'hybrid', 'poll'];

const count = (map: Map<string, number>, key: string, n = 1): void => {
  map.set(key, (map.get(key) ?? 0) + n);
};

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Seeds, operations and time from the environment (MUTATION_SEEDS, MUTATION_OPS, MUTATION_SECONDS,
 * MUTATION_FIRST_SEED).
 */
export function runOptionsFromEnv(env: NodeJS.ProcessEnv, ci: boolean): MutationRunOptions {
  const number = (name: string, fallback: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return fallback;
    const value = Number(raw);
    if (!Number.isFinite(value) || value < 0)
      throw new RangeError(`${name} must be a non-negative number, got ${JSON.stringify(raw)}`);
    return value;
  };
  return {
    firstSeed: Math.floor(number('MUTATION_FIRST_SEED', 1)),
    seeds: Math.floor(number('MUTATION_SEEDS', ci ? 1000 : 100)),
    operations: Math.floor(number('MUTATION_OPS', 300)),
    seconds: number('MUTATION_SECONDS', ci ? 120 : 30),
  };
}

/** Runs seeds firstSeed.. until `seeds` ran or `seconds` passed; returns the counts. */
export async function runMutations(options: MutationRunOptions): Promise<MutationSummary> {
  const summary = newSummary(options.seeds);
  const scenarios = new Set<string>();
  const catcher = new CrashCatcher();
  const started = Date.now();
  const deadline = started + options.seconds * 1000;
  catcher.install();
  try {
    for (let i = 0; i < options.seeds && Date.now() < deadline; i++) {
      const seed = options.firstSeed + i;
      catcher.seed = seed;
      const before = catcher.crashes.length;
      const seedStart = Date.now();
      const outcome = await runSeed(seed, options, summary);
      // Anything escaping late (timers, interrupts) is caught while the next turns run.
      for (let t = 0; t < 3; t++) await turn();
      const ms = Date.now() - seedStart;
      summary.slowestSeedMs = Math.max(summary.slowestSeedMs, ms);
      if (ms > (options.seedLimitMs ?? 10_000)) {
        summary.seedsOverTime++;
        summary.findings.push(`seed ${seed} (${outcome}): took ${ms} ms`);
      }
      scenarios.add(outcome);
      summary.seeds++;
      for (const { error } of catcher.crashes.slice(before)) {
        summary.crashes++;
        if (summary.findings.length < 40)
          summary.findings.push(`seed ${seed} (${outcome}): escaped into the event loop: ${describeError(error)}`);
      }
    }
  } finally {
    catcher.uninstall();
  }
  summary.scenarios = scenarios.size;
  summary.elapsedMs = Date.now() - started;
  return summary;
}

/** One seed: scenario, open, operations, close, checks. Returns the scenario name. */
async function runSeed(seed: number, options: MutationRunOptions, summary: MutationSummary): Promise<string> {
  const random = new MutationRandom(seed);
  const kind = random.pick(options.workloads ?? WORKLOADS);
  const variant = random.pick(VARIANTS);
  const profile = random.pick(options.profiles ?? PROFILES);
  const scenario = `${kind.device} ${variant === 'packed' ? 'packed' : `v${variant} split`}`;
  const where = `seed ${seed} (${scenario}, ${profile.name})`;
  const seen = new Set<string>();
  const finding = (text: string): void => {
    // Each different finding once per seed, and at most 40 in all.
    if (seen.has(text) || summary.findings.length >= 40) return;
    seen.add(text);
    summary.findings.push(`${where}: ${text}`);
  };

  const tracker = new SettleTracker();
  const pool = DmaPool.anonymous();
  const memory = new CanaryMemory(pool, { seed, overhang: options.overhang });
  const model = kind.model(random);
  const version = variant === 'packed' ? 2 : variant;
  let transportFeatures = version === 1 ? V1_TRANSPORT : V2_TRANSPORT;
  if (variant === 'packed') transportFeatures |= feature(FeatureBit.RING_PACKED);
  if (random.chance(0.3)) transportFeatures |= feature(FeatureBit.IN_ORDER);
  // eslint-disable-next-line prefer-const -- the sim's fault hook below reads it; it is set once the sim exists
  let rings: RingMutator | undefined;
  const sim = new SimDevice({
    memory,
    version,
    model,
    transportFeatures,
    inOrderBatch: 1 + random.int(3),
    faults: { usedElement: (queue, element) => rings?.usedElement(queue, element) ?? element },
  });
  const regs = new MutatingRegisters(sim, random.fork(1), version);
  rings = new RingMutator(regs, memory, random.fork(2), (index) => {
    if (sim.closed) return undefined;
    const state = sim.queueState(index);
    return state.ready ? { usedIdx: state.usedIdx, usedWrap: state.usedWrap } : undefined;
  });
  const ringMutator = rings;
  const lies = (): number => regs.dataLies + ringMutator.dataLies;
  regs.lies.rate = profile.openRate;
  regs.lies.identityRate = profile.identityRate;
  const interrupts = new MutatingInterrupts(sim.interrupt, () => ringMutator.tick());

  let integrityChecked = 0;
  const context = {
    random,
    tracker,
    sim,
    mismatch(what: string) {
      if (lies() > 0) {
        summary.explainedByLies++;
        return;
      }
      summary.doubleCompletions++;
      finding(`wrong completion without any lie: ${what}`);
    },
  };

  let workload: Workload | undefined;
  let transport: MmioTransport | undefined;
  const driverOptions: DriverOptions = {
    memory,
    queueSize: random.pick([4, 8, 16, 64]),
    queueMode: random.pick(QUEUE_MODES),
    excludeFeatures: random.chance(0.3)
      ? random.pick([feature(FeatureBit.EVENT_IDX), feature(FeatureBit.INDIRECT_DESC), feature(FeatureBit.IN_ORDER)])
      : 0n,
    indirectMax: random.pick([2, 4, 32]),
  };
  try {
    transport = new MmioTransport(regs, { interrupts, resetTimeoutMs: 20, queueResetTimeoutMs: 20 });
    workload = kind.open(transport, driverOptions, context, model);
    summary.opened++;
  } catch (error) {
    const verdict = judgeError(error);
    if (verdict === 'untyped') {
      summary.crashes++;
      finding(`opening threw an untyped error: ${describeError(error)}`);
    } else if (verdict === 'out-of-bounds') {
      summary.outOfRegionAccesses++;
      finding(`opening threw an out-of-bounds error: ${describeError(error)}`);
    }
    count(summary.openFailures, errorCode(error));
    if (verdict === 'typed' && (errorCode(error) === 'RangeError' || errorCode(error) === 'TypeError'))
      summary.argumentErrors.add(`opening: ${(error as Error).message.replace(/\d+/g, 'N')}`);
  }

  regs.lies.rate = profile.runRate;
  ringMutator.lies.rate = profile.ringRate;
  ringMutator.lies.usedElementRate = profile.usedElementRate;
  let ticking = true;
  let turns = 0;
  const ticker = (): void => {
    if (!ticking) return;
    turns++;
    ringMutator.tick();
    setImmediate(ticker);
  };
  setImmediate(ticker);

  const stallMs = options.stallMs ?? 100;
  const seedEnd = Date.now() + (options.seedLimitMs ?? 10_000) / 2;
  let stalled = false;
  let injected = false;
  if (workload) {
    for (let op = 0; op < options.operations && !stalled && Date.now() < seedEnd;) {
      const batch = random.chance(0.3) ? 1 + random.int(8) : 1;
      const settles: Promise<void>[] = [];
      for (let k = 0; k < batch && op < options.operations; k++, op++) {
        settles.push(start(workload, abortSignal(random), tracker));
        summary.operations++;
      }
      if (options.inject && !injected && op >= Math.min(10, options.operations)) {
        injected = true;
        options.inject(seed);
      }
      // A stall is no progress for stallMs and STALL_TURNS turns of the loop (a starved process is not a stalled
      // device).
      const batchDone = Promise.all(settles);
      const turnsBefore = turns;
      do stalled = !(await settledWithin(batchDone, stallMs));
      while (stalled && turns - turnsBefore < STALL_TURNS && Date.now() < seedEnd);
      // A device that told no lie at all gets much longer: if it still stalls, the driver lost a completion.
      if (stalled && regs.mutated.size === 0 && ringMutator.mutated.size === 0) {
        stalled = !(await settledWithin(batchDone, HONEST_STALL_MS));
        if (stalled)
          finding(
            `requests stalled for ${HONEST_STALL_MS} ms on a device that told no lie: ` +
              `${[...new Set(tracker.unsettledKinds())].join(', ')}`,
          );
      }
    }
  }
  if (stalled) {
    summary.stalledSeeds++;
    if (lies() === 0)
      summary.stallsWithoutLies.push(
        `${seed} (${scenario}, ${profile.name}${regs.mutated.size ? ', harmless register lies' : ''})`,
      );
  }

  // close() must complete and must not throw; afterwards every request must settle.
  ticking = false;
  try {
    if (workload) workload.close();
    else transport?.close();
  } catch (error) {
    summary.crashes++;
    finding(`close() threw: ${describeError(error)}`);
  }
  for (let t = 0; t < 50 && tracker.unsettled > 0; t++) await turn();
  const waitUntil = Date.now() + 200;
  while (tracker.unsettled > 0 && Date.now() < waitUntil) await new Promise((resolve) => setTimeout(resolve, 5));
  if (tracker.unsettled > 0) {
    summary.unsettledRequests += tracker.unsettled;
    finding(
      `${tracker.unsettled} request(s) never settled after close(): ` +
        `${[...new Set(tracker.unsettledKinds())].join(', ')}`,
    );
  }
  if (workload?.finish) {
    integrityChecked++;
    workload.finish();
  }

  sim.close();
  memory.check();
  memory.close();
  for (const damage of memory.damage) {
    if (damage.kind === 'freed' && lies() > 0) {
      summary.explainedByLies++;
      continue;
    }
    summary.outOfRegionAccesses++;
    finding(
      `${damage.kind === 'guard' ? `${damage.side} guard` : 'freed memory'} of the ${damage.size}-byte region ` +
        `at 0x${damage.iova.toString(16)} written (byte ${damage.at})`,
    );
  }

  summary.requests += tracker.requests;
  summary.doubleCompletions += tracker.doubles;
  if (tracker.doubles > 0) finding(`${tracker.doubles} request(s) settled more than once`);
  summary.outOfRegionAccesses += tracker.outOfBounds.length;
  for (const error of tracker.outOfBounds)
    finding(`a request failed with an out-of-bounds access: ${describeError(error)}`);
  summary.crashes += tracker.untyped.length;
  for (const error of tracker.untyped) finding(`a request failed with an untyped error: ${describeError(error)}`);
  for (const [code, n] of tracker.rejections) count(summary.rejections, code, n);
  for (const message of tracker.argumentErrors) summary.argumentErrors.add(message);
  summary.registerLies += [...regs.mutated.values()].reduce((a, b) => a + b, 0);
  summary.ringLies += [...ringMutator.mutated.values()].reduce((a, b) => a + b, 0);
  for (const [fault, n] of [...regs.byFault, ...ringMutator.byFault]) count(summary.liesByFault, fault, n);
  if (lies() === 0) summary.integrityChecked += tracker.resolved + integrityChecked;
  return scenario;
}

/** Starts one operation; an API that throws instead of rejecting is judged like a rejection. */
function start(workload: Workload, signal: AbortSignal | undefined, tracker: SettleTracker): Promise<void> {
  try {
    return workload.start(signal);
  } catch (error) {
    tracker.reject(error);
    return Promise.resolve();
  }
}

/** No signal mostly; otherwise one that is aborted already, after a few turns, or after a short timer. */
function abortSignal(random: MutationRandom): AbortSignal | undefined {
  if (!random.chance(0.15)) return undefined;
  const controller = new AbortController();
  const how = random.int(3);
  if (how === 0) controller.abort(new Error('aborted before submit'));
  else if (how === 1) {
    let turns = random.int(6);
    const step = (): void => {
      if (turns-- <= 0) controller.abort(new Error('aborted after some turns'));
      else setImmediate(step);
    };
    setImmediate(step);
  } else setTimeout(() => controller.abort(new Error('aborted by a timer')), random.int(3));
  return controller.signal;
}

/** Whether `promise` settled within `ms`. */
async function settledWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), ms)));
  const done = promise.then(
    () => true,
    () => true,
  );
  const result = await Promise.race([done, timeout]);
  clearTimeout(timer);
  return result;
}

function describeError(error: unknown): string {
  const e = error as { name?: unknown; code?: unknown; message?: unknown; stack?: unknown } | null;
  if (typeof e !== 'object' || e === null || typeof e.message !== 'string') return String(error);
  const stack = typeof e.stack === 'string' ? e.stack.split('\n').slice(1, 4).join('\n') : '';
  return `${String(e.name)}${typeof e.code === 'string' ? ` ${e.code}` : ''}: ${e.message}\n${stack}`;
}
