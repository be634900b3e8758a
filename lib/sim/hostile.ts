/**
 * The sim's hostile mode: a device that breaks the device-side rules of
 * virtio 1.2 on purpose, one switch per behaviour, every random choice
 * drawn from one seeded generator so a failing run can be replayed.
 * Tests of drivers use it to check that a lying device is detected, fails
 * typed, and never hangs or crashes the process.
 */

import { RingViolation } from '../spec';
import { SeededRandom } from './seeded-random';
import { invalidArgType, invalidArgValue, outOfRange } from '../errors';

/**
 * The behaviours, in the order of the project's issues (1–23: issue 7; 24: the buffer-ownership issue);
 * `section` is the virtio 1.2 rule broken — or, for 24, the rule the *driver* must survive.
 */
export const HOSTILE_BEHAVIOURS = [
  { number: 1, name: RingViolation.USED_ID_OUT_OF_RANGE, section: '2.7.8', summary: 'a used element id at or above the queue size' },
  { number: 2, name: RingViolation.USED_ID_NOT_HEAD, section: '2.7.8', summary: 'a used element naming a request that is not outstanding (duplicate or replay)' },
  { number: 3, name: 'used-wrong-chain', section: '2.7.8', summary: 'split: a non-head descriptor of an outstanding chain; packed: another outstanding Buffer ID' },
  { number: 4, name: RingViolation.USED_LEN_TOO_LONG, section: '2.7.8.1', summary: 'used len above the writable bytes posted' },
  { number: 5, name: 'used-len-too-short', section: '2.7.8.1', summary: 'used len 0 or below what the device wrote' },
  { number: 6, name: RingViolation.USED_IDX_JUMP, section: '2.7.8', summary: 'split: used.idx moves past the requests in flight' },
  { number: 7, name: RingViolation.USED_IDX_BACKWARDS, section: '2.7.8', summary: 'split: used.idx goes back' },
  { number: 8, name: 'descriptors-rewritten', section: '2.7.5', summary: 'descriptors of an in-flight chain overwritten with garbage' },
  { number: 9, name: 'used-element-changes', section: '2.7.8', summary: 'a published used element rewritten afterwards' },
  { number: 10, name: 'packed-wrong-flags', section: '2.8.1', summary: 'packed: a used descriptor with wrong AVAIL/USED bits' },
  { number: 11, name: 'interrupt-when-not-live', section: '2.1.2', summary: 'interrupts before DRIVER_OK and after a reset' },
  { number: 12, name: 'spurious-interrupts', section: '4.2.2', summary: 'the line raised with InterruptStatus 0 or undefined bits' },
  { number: 13, name: 'interrupt-storm', section: '4.2.3.4', summary: 'the line re-raised at every InterruptACK without used buffers' },
  { number: 14, name: 'never-completes', section: '2.7.13', summary: 'chains taken from the ring and never used' },
  { number: 15, name: 'config-generation-churn', section: '2.5.1', summary: 'ConfigGeneration never settles' },
  { number: 16, name: 'config-window-short', section: '4.2.2', summary: 'the register window ends inside the config space' },
  { number: 17, name: 'config-out-of-range', section: '5', summary: 'a config field holds a value its device type does not allow' },
  { number: 18, name: 'bad-identity', section: '4.2.2', summary: 'MagicValue, Version or DeviceID wrong' },
  { number: 19, name: 'queue-num-max-bad', section: '4.2.2', summary: 'QueueNumMax 0 or not a power of two, or a queue that reads live before setup' },
  { number: 20, name: 'features-bad', section: '2.2', summary: 'FEATURES_OK dropped, VERSION_1 missing, or bits never offered' },
  { number: 21, name: 'needs-reset', section: '2.1.2', summary: 'DEVICE_NEEDS_RESET mid-I/O, then nothing completes' },
  { number: 22, name: 'device-gone', section: '4.2.3.4', summary: 'the interrupt line hangs up mid-I/O (and the registers may read all ones)' },
  { number: 23, name: 'reset-never-completes', section: '2.4', summary: 'Status or QueueReset never reads 0 after a reset' },
  { number: 24, name: 'late-completion', section: '2.7.13', summary: 'an honest device that does the work of a chain and uses it long after the driver gave up on it (timeout, abort, a reset that did not complete)' },
] as const;

export type HostileBehaviour = (typeof HOSTILE_BEHAVIOURS)[number]['name'];

/** Named out-of-range config values (offsets and the features that make each field valid: see hostile-config.ts). */
export type ConfigOutOfRangeField =
  | 'blk-capacity-overflow'
  | 'blk-size-not-power-of-two'
  | 'blk-num-queues-zero'
  | 'blk-num-queues-huge'
  | 'net-max-pairs-zero'
  | 'console-max-ports-huge';

/** A raw patch over config reads: `width` bytes at config `offset` read `value`; `features` are offered besides the model's. */
export interface ConfigPatch {
  offset: number;
  width: 1 | 2 | 4 | 8;
  value: number | bigint;
  features?: bigint;
}

/** The options of each switch (`true` takes the defaults; the seed picks among variants not fixed here). */
export interface HostileBehaviourOptions {
  [RingViolation.USED_ID_OUT_OF_RANGE]: true;
  [RingViolation.USED_ID_NOT_HEAD]: true | { variant?: 'duplicate' | 'replay' };
  'used-wrong-chain': true;
  [RingViolation.USED_LEN_TOO_LONG]: true;
  /** `len`: always this len (e.g. 0); default: 0 or a seeded value below the writable bytes. */
  'used-len-too-short': true | { len?: number };
  [RingViolation.USED_IDX_JUMP]: true;
  [RingViolation.USED_IDX_BACKWARDS]: true;
  'descriptors-rewritten': true;
  'used-element-changes': true;
  'packed-wrong-flags': true | { variant?: 'avail-only' | 'used-only' | 'stale-wrap' };
  'interrupt-when-not-live': true;
  'spurious-interrupts': true | { variant?: 'zero' | 'unknown-bits' };
  /** `limit`: re-raises before the storm dies down by itself (default: never); `bits`: the InterruptStatus bits raised (default: seeded, VRING or VRING | CONFIG). */
  'interrupt-storm': true | { limit?: number; bits?: 1 | 2 | 3 };
  'never-completes': true;
  /** `reads`: ConfigGeneration reads that each change (default Infinity). */
  'config-generation-churn': true | { reads?: number };
  'config-window-short': { configBytes: number };
  'config-out-of-range': { field: ConfigOutOfRangeField } | ConfigPatch;
  'bad-identity': { kind: 'magic' | 'version-3' | 'device-id-0' };
  /** `value` for 'not-power-of-two' (default: seeded, between half QueueNumMax and QueueNumMax). */
  'queue-num-max-bad': { kind: 'zero' | 'not-power-of-two' | 'already-live'; value?: number };
  'features-bad': { kind: 'features-ok-dropped' | 'version-1-missing' | 'echo-unoffered' };
  'needs-reset': true;
  /** `registers: 'all-ones'`: after the hang-up every register reads 0xffffffff and writes are lost. */
  'device-gone': true | { registers?: 'all-ones' };
  'reset-never-completes': { kind: 'device' | 'queue' };
  /**
   * `share`: the fraction of chains held back (default 1: every one, seeded choice otherwise);
   * `delayMs`: each held chain is done after a seeded delay in [delayMs, 2 × delayMs]; without it
   * they wait for SimDevice.completeLate(). The work (buffer writes) is done then even after a reset
   * that has not completed (Status not yet 0: resetLatency, reset-never-completes); after a completed reset it is dropped, as §2.4 lets
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

const NAMES: ReadonlySet<string> = new Set(HOSTILE_BEHAVIOURS.map((b) => b.name));

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
    if (!options || typeof options !== 'object') throw invalidArgType('hostile options must be an object { seed, behaviours }');
    if (!Number.isInteger(options.seed)) throw outOfRange(`hostile seed must be an integer, got ${String(options.seed)}`);
    const behaviours = options.behaviours ?? {};
    for (const name of Object.keys(behaviours)) {
      if (!NAMES.has(name)) throw invalidArgValue(`unknown hostile behaviour '${name}' (known: ${[...NAMES].join(', ')})`, 'range');
    }
    const after = options.after ?? 0;
    if (!Number.isInteger(after) || after < 0) throw outOfRange(`hostile after must be a non-negative integer, got ${String(after)}`);
    if (options.queue !== undefined && (!Number.isInteger(options.queue) || options.queue < 0)) {
      throw outOfRange(`hostile queue must be a queue index, got ${String(options.queue)}`);
    }
    this.behaviours = behaviours;
    this.after = after;
    this.queue = options.queue;
    this.generator = new SeededRandom(options.seed);
    this.log = Object.fromEntries(HOSTILE_BEHAVIOURS.map((b) => [b.name, 0])) as Record<HostileBehaviour, number>;
  }

  /** Whether switch `name` is on. */
  has(name: HostileBehaviour): boolean {
    return this.behaviours[name] !== undefined && this.behaviours[name] !== (false as unknown);
  }

  /** The options object of switch `name` (undefined when off or given as `true`). */
  options<K extends HostileBehaviour>(name: K): Exclude<HostileBehaviourOptions[K], true> | undefined {
    const value = this.behaviours[name];
    return typeof value === 'object' && value !== null ? (value as Exclude<HostileBehaviourOptions[K], true>) : undefined;
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
    if (this.events.length < MAX_EVENTS) this.events.push(queue === undefined ? { behaviour: name, detail } : { behaviour: name, queue, detail });
  }
}
