/**
 * Machinery for the table of bad user inputs (test/devices/bad-inputs.test.ts):
 * what a row expects, how one bad call is run and judged, and the subjects
 * (a window, a pool, a transport, a driver on the sim) the rows call into.
 *
 * A row is `[description, setup, call, expected]`. Judging one row:
 *  1. the call throws (sync) or rejects (async) as `expected` says: the
 *     error's class (or one of a few built-in classes the row accepts), and
 *     for library errors its exact `code`; never a hang;
 *  2. nothing reached the device: the subject's snapshot (the sim's Status,
 *     notifications, chains handed to the model, queue registers; or the
 *     bytes behind a file window) is the same before and after, with the
 *     device given every chance to pick up work (process() and turns);
 *  3. nothing was lost: no DMA region leaked, and a good call right after
 *     the bad one still works;
 *  4. the sim saw no driver-side MUST broken (strict mode).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { VirtioError } from '../../lib/errors';
import { DmaPool, MmioWindow, type RegisterBlock } from '../../lib/platform';
import { native } from '../../lib/platform/addon';
import type { SimDevice, SimDeviceModel, SimOptions } from '../../lib/sim';
import { simRig, turns, type SimRig, type SimVariant } from './sim-rig';

// ---- What a row expects ----

type ErrorClass = abstract new (...args: never[]) => Error;

const BUILT_IN: readonly ErrorClass[] = [Error, TypeError, RangeError];

export interface Expected {
  how: 'throws' | 'rejects' | 'resolves';
  /** The error's class; a list accepts any one of them (built-in argument errors only). */
  class?: ErrorClass | readonly ErrorClass[];
  code?: string;
}

const isLibraryError = (type: ErrorClass): boolean => type.prototype instanceof VirtioError || type === VirtioError;

function expected(how: 'throws' | 'rejects', type: ErrorClass | readonly ErrorClass[], code?: string): Expected {
  if (Array.isArray(type)) {
    // Alternatives are for argument errors (TypeError or RangeError); a library error names one class and its code.
    if (type.length < 2 || type.some((t) => !BUILT_IN.includes(t)) || code !== undefined) {
      throw new Error('a row accepting several classes lists two or more built-in errors and no code');
    }
    return { how, class: type };
  }
  const single = type as ErrorClass;
  // A library error without its exact code would let any code through.
  if (isLibraryError(single) && code === undefined)
    throw new Error(`a row expecting ${single.name} must name its code`);
  return { how, class: single, code };
}

/** The call throws synchronously (one class, or a list of built-in classes any of which will do). */
export const throws = (type: ErrorClass | readonly ErrorClass[], code?: string): Expected =>
  expected('throws', type, code);
/** The call returns a promise that rejects (it must not throw synchronously). */
export const rejects = (type: ErrorClass | readonly ErrorClass[], code?: string): Expected =>
  expected('rejects', type, code);
/** Either argument error: for a wrongly typed argument where RangeError is as acceptable as TypeError. */
export const ARGUMENT_ERROR: readonly ErrorClass[] = [TypeError, RangeError];
/** The call is a documented no-op: it resolves, and still nothing reaches the device. */
export const resolvesQuietly: Expected = { how: 'resolves' };

/** A subject of bad calls: something a user holds, and a way to see what reached the device. */
export interface Subject {
  /** What has reached the device (or the memory behind a window); compared with toEqual. */
  snapshot(): unknown;
  /** Lets the device pick up anything the driver may have placed (sim.process()). */
  settle?(): void;
  /** The pool whose live regions must not change across a bad call. */
  pool?: DmaPool;
  /** A good call right after the bad one; it must succeed (assert inside). */
  good(): unknown;
  /** Closes everything; returns the sim's strict-mode violations. */
  dispose(): readonly unknown[];
}

export type Row<S extends Subject> = readonly [
  description: string,
  setup: () => S | Promise<S>,
  call: (subject: S) => unknown,
  expected: Expected,
];

/** Longest a bad call may stay unsettled: a bad input is refused at once, never after a wait. */
const PENDING_MS = 1000;

interface Outcome {
  how: 'throws' | 'rejects' | 'resolves' | 'returns' | 'pending';
  class?: string;
  code?: unknown;
  message?: string;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return typeof (value as { then?: unknown })?.then === 'function';
}

/**
 * instanceof, except that Node's own errors (streams, buffers) come from the
 * outer realm under jest, so built-in classes are matched by name along the
 * prototype chain.
 */
function isA(error: unknown, type: ErrorClass): boolean {
  if (error instanceof type) return true;
  if (!BUILT_IN.includes(type)) return false;
  for (let p = Object.getPrototypeOf(error); p; p = Object.getPrototypeOf(p)) {
    if (p.constructor?.name === type.name) return true;
  }
  return false;
}

const classesOf = (want: Expected): readonly ErrorClass[] =>
  want.class === undefined ? [] : Array.isArray(want.class) ? want.class : [want.class as ErrorClass];
/** The expected class as a row reads it: 'RangeError', or 'TypeError or RangeError'. */
const classNameOf = (want: Expected): string =>
  classesOf(want)
    .map((type) => type.name)
    .join(' or ');

/** How `call` ended, described the way `expected` is (class as the expected name when it matches). */
async function outcomeOf(call: () => unknown, want: Expected): Promise<Outcome> {
  const judge = (how: 'throws' | 'rejects', error: unknown): Outcome => {
    const matches = classesOf(want).some((type) => isA(error, type));
    const outcome: Outcome = {
      how,
      class: matches ? classNameOf(want) : ((error as Error)?.constructor?.name ?? typeof error),
    };
    if (want.code !== undefined || error instanceof VirtioError) outcome.code = (error as { code?: unknown }).code;
    if (!matches || outcome.code !== want.code) outcome.message = (error as Error)?.message;
    return outcome;
  };
  let result: unknown;
  try {
    result = call();
  } catch (error) {
    return judge('throws', error);
  }
  if (!isThenable(result)) return { how: 'returns' };
  let timer: NodeJS.Timeout | undefined;
  const pending = new Promise<Outcome>((resolve) => {
    timer = setTimeout(() => resolve({ how: 'pending' }), PENDING_MS);
  });
  try {
    return await Promise.race([
      Promise.resolve(result).then(
        (): Outcome => ({ how: 'resolves' }),
        (error: unknown) => judge('rejects', error),
      ),
      pending,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function describeExpected(want: Expected): Outcome {
  const outcome: Outcome = { how: want.how };
  if (want.class) outcome.class = classNameOf(want);
  if (want.code !== undefined || classesOf(want).some(isLibraryError)) outcome.code = want.code;
  return outcome;
}

const poolUse = (pool?: DmaPool): unknown =>
  pool ? { regions: pool.stats().regions, bytesInUse: pool.stats().bytesInUse } : undefined;

async function settled(subject: Subject): Promise<void> {
  await turns(3);
  subject.settle?.();
  await turns(3);
}

/** Runs one row: the four checks of the module comment. */
export async function runRow<S extends Subject>(
  setup: () => S | Promise<S>,
  call: (subject: S) => unknown,
  want: Expected,
): Promise<void> {
  const subject = await setup();
  let violations: readonly unknown[] = [];
  try {
    await settled(subject);
    const before = { device: subject.snapshot(), memory: poolUse(subject.pool) };
    const outcome = await outcomeOf(() => call(subject), want);
    await settled(subject);
    expect(outcome).toEqual(describeExpected(want));
    expect({ device: subject.snapshot(), memory: poolUse(subject.pool) }).toEqual(before);
    await subject.good();
  } finally {
    violations = subject.dispose();
  }
  expect(violations).toEqual([]);
}

// ---- Close during I/O ----

/**
 * When close() comes: in the tick that started the requests, after it (published, not yet processed), or while the
 * device holds them.
 */
export type CloseMoment = 'same tick' | 'next tick' | 'device holds them';

export interface RaceSubject extends Subject {
  /** The pool's use before the driver was opened: what must be left after close. */
  readonly idleMemory: unknown;
  close(): void;
}

export type CloseRow<S extends RaceSubject> = readonly [
  description: string,
  setup: () => S | Promise<S>,
  start: (subject: S) => Promise<unknown>[],
  expected: Expected,
];

let extraSettles = 0;
/** A promise over a callback API that counts any second call of the callback (it must be called exactly once). */
export function settleOnce(register: (callback: (error?: Error | null) => void) => void): Promise<void> {
  let calls = 0;
  return new Promise<void>((resolve, reject) => {
    register((error) => {
      if (++calls > 1) extraSettles++;
      if (error) reject(error);
      else resolve();
    });
  });
}

/**
 * Starts the row's requests, closes at `moment`, then checks every request
 * rejected as expected, none is still pending, none settled twice, the
 * device was reset and no DMA memory is left behind.
 */
export async function runCloseRace<S extends RaceSubject>(
  setup: () => S | Promise<S>,
  start: (subject: S) => Promise<unknown>[],
  moment: CloseMoment,
  want: Expected,
): Promise<void> {
  const subject = await setup();
  let violations: readonly unknown[] = [];
  try {
    await settled(subject);
    extraSettles = 0;
    const results: Outcome[] = [];
    const requests = start(subject);
    const all = Promise.all(
      requests.map((request, i) => outcomeOf(() => request, want).then((outcome) => (results[i] = outcome))),
    );
    if (moment === 'next tick') await new Promise((resolve) => process.nextTick(resolve));
    if (moment === 'device holds them') await turns(5);
    subject.close();
    await all;
    await turns(3);
    expect(results).toHaveLength(requests.length);
    expect(new Set(results.map((r) => JSON.stringify(r)))).toEqual(new Set([JSON.stringify(describeExpected(want))]));
    expect(extraSettles).toBe(0);
    expect(poolUse(subject.pool)).toEqual(subject.idleMemory);
    await subject.good();
  } finally {
    violations = subject.dispose();
  }
  expect(violations).toEqual([]);
}

/** The pool's live regions and bytes, for leak checks. */
export const memoryUse = poolUse;

// ---- Subjects ----

/** The device side of a sim as far as a bad call could have reached it. */
export function simSnapshot(sim: SimDevice): unknown {
  const queues = sim.stats.notifications.map((_, index) => {
    const q = sim.queueState(index);
    return { ready: q.ready, size: q.size, desc: q.desc, lastAvail: q.lastAvail, usedIdx: q.usedIdx };
  });
  return {
    status: sim.status,
    driverFeatures: sim.driverFeatures,
    notifications: [...sim.stats.notifications],
    requests: sim.stats.requests,
    queues,
  };
}

/** Subject parts shared by everything on a sim rig. */
export function onRig(rig: SimRig, good: () => unknown, close: () => void = () => undefined): Subject {
  return {
    pool: rig.pool,
    snapshot: () => simSnapshot(rig.sim),
    settle: () => {
      if (!rig.sim.closed) rig.sim.process();
    },
    good,
    dispose: () => {
      close();
      return rig.close();
    },
  };
}

export interface RigSubject extends Subject {
  rig: SimRig;
}

/** A sim rig with `model`; `prepare` brings it to the state the rows need and gives the good call. */
export function rigSubject<E extends { good(): unknown; close?(): void }>(
  variant: SimVariant,
  model: SimDeviceModel | undefined,
  prepare: (rig: SimRig) => E,
  simOptions: Partial<SimOptions> = {},
): RigSubject & E {
  const rig = simRig(variant, model, simOptions);
  let extra: E;
  try {
    extra = prepare(rig);
  } catch (error) {
    rig.close();
    throw error;
  }
  return {
    ...extra,
    ...onRig(
      rig,
      () => extra.good(),
      () => extra.close?.(),
    ),
    rig,
  };
}

let scratch: string | undefined;
/** A scratch directory for file windows, removed by removeScratch(). */
function scratchFile(): string {
  scratch ??= mkdtempSync(join(tmpdir(), 'bad-inputs-'));
  return join(scratch, 'regs.bin');
}

export function removeScratch(): void {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  scratch = undefined;
}

export interface WindowSubject extends Subject {
  window: RegisterBlock;
  path: string;
}

/** A 0x200-byte register window at 0x200 in a two-page file; the file's bytes are what "reached the device". */
export function fileWindow(options: { closed?: boolean } = {}): WindowSubject {
  const path = scratchFile();
  writeFileSync(path, Buffer.alloc(2 * native.pageSize));
  const window = MmioWindow.openFile(path, 0x200, 0x200);
  if (options.closed) window.close();
  const live = (): RegisterBlock => (window.closed ? MmioWindow.openFile(path, 0x200, 0x200) : window);
  return {
    window,
    path,
    snapshot: () => readFileSync(path),
    good: () => {
      // On the same window if it is open, else on a new one: the file is still usable.
      const w = live();
      w.writel(0x1fc, 0xfeedf00d);
      expect(w.readl(0x1fc)).toBe(0xfeedf00d);
      expect(readFileSync(path).readUInt32LE(0x3fc)).toBe(0xfeedf00d);
      if (w !== window) w.close();
    },
    dispose: () => {
      window.close();
      return [];
    },
  };
}

export interface PoolSubject extends Subject {
  pool: DmaPool;
  /** A live 64-byte region of the pool. */
  region: ReturnType<DmaPool['allocate']>;
}

/** An anonymous DMA pool holding one live region (closed after the region is taken when `closed`). */
export function poolSubject(options: { closed?: boolean } = {}): PoolSubject {
  const pool = DmaPool.anonymous();
  const region = pool.allocate(64);
  if (options.closed) pool.close();
  return {
    pool,
    region,
    snapshot: () => undefined,
    good: () => {
      // On the same pool if it is open, else on a new one.
      const p = options.closed ? DmaPool.anonymous() : pool;
      const r = p.allocate(100, 256);
      expect(r.size).toBe(100);
      expect(Number(r.iova % 256n)).toBe(0);
      p.free(r);
      if (p !== pool) p.close();
    },
    dispose: () => {
      pool.close();
      return [];
    },
  };
}
