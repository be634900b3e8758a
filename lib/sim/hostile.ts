/**
 * The sim's hostile mode: a device that breaks the device-side rules of
 * virtio 1.2 on purpose, one switch per fault of FAULT_CATALOGUE
 * (fault-catalogue.ts), every random choice
 * drawn from one seeded generator so a failing run can be replayed.
 * Tests of drivers use it to check that a lying device is detected, fails
 * typed, and never hangs or crashes the process.
 */

import { RingViolation } from '../spec';
import { FAULT_CATALOGUE, type FaultEntry } from './fault-catalogue';
import { SeededRandom } from './seeded-random';
import { invalidArgType, invalidArgValue, outOfRange } from '../errors';

/** @deprecated the fault catalogue under its old name: use FAULT_CATALOGUE. */
export const HOSTILE_BEHAVIOURS = FAULT_CATALOGUE;

export type HostileBehaviour = (typeof FAULT_CATALOGUE)[number]['name'];

/**
 * Named out-of-range config values: FAULT_CATALOGUE's config-out-of-range parameter (each made in hostile-config.ts).
 */
export type ConfigOutOfRangeField = ValuesOf<'config-out-of-range'>;

/** The values FAULT_CATALOGUE lists for the parameter of fault `N`. */
type ValuesOf<N extends string> = Extract<
  FaultEntry,
  { name: N; parameter: { values: readonly string[] } }
>['parameter']['values'][number];

/**
 * A raw patch over config reads: `width` bytes at config `offset` read `value`; `features` are offered besides the
 * model's.
 */
export interface ConfigPatch {
  offset: number;
  width: 1 | 2 | 4 | 8;
  value: number | bigint;
  features?: bigint;
}

/** The options of each switch (`true` takes the defaults; the seed picks among variants not fixed here). */
export interface HostileBehaviourOptions {
  [RingViolation.USED_ID_OUT_OF_RANGE]: true;
  [RingViolation.USED_ID_NOT_HEAD]: true | { variant?: ValuesOf<typeof RingViolation.USED_ID_NOT_HEAD> };
  'used-wrong-chain': true;
  [RingViolation.USED_LEN_TOO_LONG]: true;
  /** `len`: always this len (e.g. 0); default: 0 or a seeded value below the writable bytes. */
  'used-len-too-short': true | { len?: number };
  [RingViolation.USED_IDX_JUMP]: true;
  [RingViolation.USED_IDX_BACKWARDS]: true;
  'descriptors-rewritten': true;
  'used-element-changes': true;
  'packed-wrong-flags': true | { variant?: ValuesOf<'packed-wrong-flags'> };
  'interrupt-when-not-live': true;
  'spurious-interrupts': true | { variant?: ValuesOf<'spurious-interrupts'> };
  /**
   * `limit`: re-raises before the storm dies down by itself (default: never); `bits`: the InterruptStatus bits raised
   * (default: seeded, VRING or VRING | CONFIG).
   */
  'interrupt-storm': true | { limit?: number; bits?: 1 | 2 | 3 };
  'never-completes': true;
  /** `reads`: ConfigGeneration reads that each change (default Infinity). */
  'config-generation-churn': true | { reads?: number };
  'config-window-short': { configBytes: number };
  'config-out-of-range': { field: ConfigOutOfRangeField } | ConfigPatch;
  'bad-identity': { kind: ValuesOf<'bad-identity'> };
  /** `value` for 'not-power-of-two' (default: seeded, between half QueueNumMax and QueueNumMax). */
  'queue-num-max-bad': { kind: ValuesOf<'queue-num-max-bad'>; value?: number };
  'features-bad': { kind: ValuesOf<'features-bad'> };
  'needs-reset': true;
  /** `registers: 'all-ones'`: after the hang-up every register reads 0xffffffff and writes are lost. */
  'device-gone': true | { registers?: ValuesOf<'device-gone'> };
  'reset-never-completes': { kind: ValuesOf<'reset-never-completes'> };
  /**
   * `share`: the fraction of chains held back (default 1: every one, seeded choice otherwise);
   * `delayMs`: each held chain is done after a seeded delay in [delayMs, 2 × delayMs]; without it
   * they wait for SimDevice.completeLate(). The work (buffer writes) is done then even after a reset
   * that has not completed (Status not yet 0: resetLatency, reset-never-completes); after a completed reset it is
   * dropped, as §2.4 lets
   * the driver expect. Not applied with IN_ORDER (a late chain would be used out of order).
   */
  'late-completion': true | { share?: number; delayMs?: number };
}

export interface HostileOptions {
  /** Drives every random choice (mulberry32); the same seed replays the same lies. */
  seed: number;
  /** The behaviours switched on. */
  behaviours: { [K in HostileBehaviour]?: HostileBehaviourOptions[K] };
  /** Requests (chains) completed honestly before the ring behaviours (1–10, 14, 21, 22) start (default 0). */
  after?: number;
  /** Only this queue index misbehaves (default: all). */
  queue?: number;
}

/** One misbehaviour as it happened, for tests and for people reading a failure. */
export interface HostileEvent {
  behaviour: HostileBehaviour;
  queue?: number;
  detail: string;
}

/** Events kept in `events` (the counts in `log` go on). */
const MAX_EVENTS = 1000;

const NAMES: ReadonlySet<string> = new Set(FAULT_CATALOGUE.map((b) => b.name));

/**
 * The state of hostile mode for one SimDevice: which switches are on,
 * the seeded generator, the gate of `after` honest completions, and the
 * log of what was done. The sim's parts ask it what to do.
 */
export class Hostile {
  readonly log: Record<HostileBehaviour, number>;
  readonly events: HostileEvent[] = [];
  readonly after: number;
  readonly queue?: number;
  private readonly behaviours: HostileOptions['behaviours'];
  private readonly generator: SeededRandom;
  private honest = 0;

  constructor(options: HostileOptions) {
    if (!options || typeof options !== 'object')
      throw invalidArgType('hostile options must be an object { seed, behaviours }');
    if (!Number.isInteger(options.seed))
      throw outOfRange(`hostile seed must be an integer, got ${String(options.seed)}`);
    const behaviours = options.behaviours ?? {};
    for (const name of Object.keys(behaviours)) {
      if (!NAMES.has(name))
        throw invalidArgValue(`unknown hostile behaviour '${name}' (known: ${[...NAMES].join(', ')})`, 'range');
    }
    const after = options.after ?? 0;
    if (!Number.isInteger(after) || after < 0)
      throw outOfRange(`hostile after must be a non-negative integer, got ${String(after)}`);
    if (options.queue !== undefined && (!Number.isInteger(options.queue) || options.queue < 0)) {
      throw outOfRange(`hostile queue must be a queue index, got ${String(options.queue)}`);
    }
    this.behaviours = behaviours;
    this.after = after;
    this.queue = options.queue;
    this.generator = new SeededRandom(options.seed);
    this.log = Object.fromEntries(FAULT_CATALOGUE.map((b) => [b.name, 0])) as Record<HostileBehaviour, number>;
  }

  /** Whether switch `name` is on. */
  has(name: HostileBehaviour): boolean {
    return this.behaviours[name] !== undefined && this.behaviours[name] !== (false as unknown);
  }

  /** The options object of switch `name` (undefined when off or given as `true`). */
  options<K extends HostileBehaviour>(name: K): Exclude<HostileBehaviourOptions[K], true> | undefined {
    const value = this.behaviours[name];
    return typeof value === 'object' && value !== null
      ? (value as Exclude<HostileBehaviourOptions[K], true>)
      : undefined;
  }

  /** Whether queue `index` is one that misbehaves. */
  targets(index: number): boolean {
    return this.queue === undefined || this.queue === index;
  }

  /** Whether ring behaviour `name` acts on queue `index` now (`after` honest completions done). */
  ringLive(name: HostileBehaviour, index: number): boolean {
    return this.has(name) && this.targets(index) && this.honest >= this.after;
  }

  /** Whether any ring behaviour has started on queue `index`. */
  started(index: number): boolean {
    return this.targets(index) && this.honest >= this.after;
  }

  /** `count` buffers of queue `index` were used honestly. */
  completedHonestly(index: number, count: number): void {
    if (this.targets(index) && this.honest < this.after) this.honest += count;
  }

  /** A float in [0, 1). */
  random(): number {
    return this.generator.next();
  }

  /** An integer in [low, high]. */
  int(low: number, high: number): number {
    return low + Math.floor(this.random() * (high - low + 1));
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.random() * items.length)];
  }

  /** A random 32-bit word. */
  word(): number {
    return Math.floor(this.random() * 4294967296) >>> 0;
  }

  /** Counts one misbehaviour of `name` (and keeps the first MAX_EVENTS details). */
  record(name: HostileBehaviour, detail: string, queue?: number): void {
    this.log[name]++;
    if (this.events.length < MAX_EVENTS)
      this.events.push(queue === undefined ? { behaviour: name, detail } : { behaviour: name, queue, detail });
  }
}
