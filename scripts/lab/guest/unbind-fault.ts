/**
 * Runs in the lab guest: takes a transport away from UIO while requests
 * are in flight, then gives it back. For each device (virtio-blk,
 * then virtio-rng) and each moment of the unbind:
 *
 *   published    requests placed and notified, none reaped yet (microtasks
 *                only between submitting and the unbind: no interrupt seen);
 *   immediate    from a setImmediate after submitting (one poll phase ran);
 *   after-some   half the requests first; once one of them has completed,
 *                the other half, then as for 'published' (some completed,
 *                some in flight);
 *
 * the program writes the transport's platform device name (the parent of
 * /sys/class/uio/uioN) to uio_pdrv_genirq's unbind file, waits (bounded) for
 * every request to settle, submits one more, closes the driver, writes the
 * name to the bind file, waits for the new /dev/uioN and opens the device
 * again through the same discovery, checking data (blk: sector 0 against
 * the pattern the host put in the image, the markers written before each
 * unbind, a fresh write read back; rng: bytes arrive).
 *
 * The kernel side (drivers/uio/uio.c, Linux 6.1): uio_unregister_device()
 * frees the IRQ, clears the device's info and wakes its pollers; from then
 * on poll() answers -EIO as a mask (every bit, EPOLLERR and EPOLLIN among
 * them) and read() fails with EIO. The register mapping stays (it was
 * made with remap_pfn_range), so the driver can still reset the device.
 *
 *   node scripts/lab/guest/unbind-fault.js
 *
 * Prints `@@LAB-RESULT` lines of kind unbind-target, unbind-round,
 * unbind-rebind, unbind-reopen and (should anything escape) unbind-crash.
 */
import { existsSync, writeFileSync } from 'node:fs';
import { VirtioBlk, VirtioRng, type VirtioDriver } from '../../../lib/devices';
import { VirtioError } from '../../../lib/errors';
import { DmaPool } from '../../../lib/platform';
import { DeviceId } from '../../../lib/spec';
import { discoverUio, type MmioTransport, type UioDeviceSpec } from '../../../lib/transport';
import { pattern } from './blk-pattern';
import { openOnUio, scan } from './devices';
import { report, runMain } from './report';

const DRIVER_DIR = '/sys/bus/platform/drivers/uio_pdrv_genirq';
export const TRIGGERS = ['published', 'immediate', 'after-some'] as const;
export type Trigger = (typeof TRIGGERS)[number];
/** The rounds each device runs, in order (the host test expects one result line per round). */
export const ROUNDS: Record<'blk' | 'rng', readonly Trigger[]> = { blk: TRIGGERS, rng: ['published', 'after-some'] };
/** How long every request gets to settle after the unbind before it counts as unsettled. */
const SETTLE_LIMIT_MS = 10_000;
/** How long the new /dev/uioN gets to appear after the bind. */
const REBIND_LIMIT_MS = 15_000;

// blk layout (512-byte sectors): the host fills the first MiB with pattern(); each round writes a
// marker block before its unbind; the writes in flight go to a scratch range nothing checks.
export const PATTERN_BYTES = 1 << 20;
const BLOCK = 4096;
const BLK_READS = 64;
const BLK_WRITES = 4;
export const MARKER_SECTOR = 4096;
const SCRATCH_SECTOR = 6144;
const FRESH_SECTOR = 8192;
const RNG_READS = 32;

type Opened<D extends VirtioDriver> = { driver: D; spec: UioDeviceSpec; close(): void };
interface Request {
  promise: Promise<unknown>;
  /** Whether a resolved value is what was asked for (blk: the pattern; rng: the length). */
  check(value: unknown): boolean;
}
interface FaultSubject<D extends VirtioDriver> {
  device: 'blk' | 'rng';
  deviceId: number;
  open(transport: MmioTransport, memory: DmaPool): D;
  /** Runs before the unbind of round `round`, with nothing in flight. */
  prepare?(driver: D, round: number): Promise<void>;
  /** The requests of round `round`, each submitted when its function is called. */
  requests(driver: D, round: number): (() => Request)[];
  /** One request after the failure (expected to be refused). */
  another(driver: D): Promise<unknown>;
  /** The data check after a re-open; `rounds` rounds ran before it. */
  verify(driver: D, rounds: number): Promise<Record<string, unknown>>;
}

const crashes: string[] = [];

function describeError(error: unknown): Record<string, unknown> {
  if (!(error instanceof Error)) return { name: typeof error, message: String(error) };
  const { code, errno, syscall } = error as { code?: unknown; errno?: unknown; syscall?: unknown };
  const cause = (error as { cause?: unknown }).cause;
  return {
    name: error.name,
    code,
    virtio: error instanceof VirtioError,
    message: error.message,
    ...(errno !== undefined ? { errno, syscall } : {}),
    ...(cause !== undefined ? { cause: describeError(cause) } : {}),
  };
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function findSpec(deviceId: number, parent?: string): UioDeviceSpec {
  const found = scan().find(
    (r) =>
      r.result?.deviceId === deviceId && (parent === undefined || (r.spec as UioDeviceSpec).device.parent === parent),
  );
  if (!found)
    throw new Error(
      `no ${deviceId === DeviceId.BLOCK ? 'virtio-blk' : 'virtio-rng'} transport on UIO` +
        `${parent ? ` under ${parent}` : ''}`,
    );
  return found.spec as UioDeviceSpec;
}

/** The transport, a hugetlb pool and the driver; close() closes all three (the driver closes its transport). */
function openOn<D extends VirtioDriver>(subject: FaultSubject<D>, spec: UioDeviceSpec): Opened<D> {
  const { driver, close } = openOnUio(spec, subject.open);
  return { driver, spec, close };
}

/** Binds `name` back to uio_pdrv_genirq and waits for its /dev/uioN (the number may differ). */
async function rebind(name: string): Promise<{ spec: UioDeviceSpec; ms: number; bindMs: number; scans: number }> {
  const started = Date.now();
  writeFileSync(`${DRIVER_DIR}/bind`, name);
  const bindMs = Date.now() - started;
  for (let scans = 1; ; scans++) {
    const spec = discoverUio().find((s) => s.device.parent === name);
    if (spec && existsSync(spec.device.devicePath)) return { spec, ms: Date.now() - started, bindMs, scans };
    if (Date.now() - started > REBIND_LIMIT_MS)
      throw new Error(`${name}: no /dev/uioN within ${REBIND_LIMIT_MS} ms of the bind`);
    await sleep(20);
  }
}

/** Settles within `ms` or reports 'unsettled'. */
async function bounded(
  promise: Promise<unknown>,
  ms: number,
): Promise<{ state: 'resolved' | 'rejected' | 'unsettled'; value?: unknown; error?: unknown }> {
  let timer: NodeJS.Timeout | undefined;
  const limit = new Promise<{ state: 'unsettled' }>(
    (resolve) => (timer = setTimeout(() => resolve({ state: 'unsettled' }), ms)),
  );
  const outcome = await Promise.race([
    promise.then(
      (value) => ({ state: 'resolved' as const, value }),
      (error: unknown) => ({ state: 'rejected' as const, error }),
    ),
    limit,
  ]);
  clearTimeout(timer);
  return outcome;
}

/** One round: requests in flight, unbind at `trigger`, everything settled (or counted), close. */
async function faultRound<D extends VirtioDriver>(
  subject: FaultSubject<D>,
  opened: Opened<D>,
  round: number,
  trigger: Trigger,
): Promise<void> {
  const { driver, spec } = opened;
  const name = spec.device.parent!;
  await subject.prepare?.(driver, round);
  let unbindAt = 0;
  let unbindMs = 0;
  const failures: unknown[] = [];
  let failureMs: number | undefined;
  const offError = driver.transport.onError((error) => {
    failures.push(error);
    failureMs ??= Date.now() - unbindAt;
  });
  const outcomes: {
    state: 'pending' | 'resolved' | 'rejected';
    before: boolean;
    ok?: boolean;
    error?: unknown;
    at?: number;
  }[] = [];
  const unbind = (): void => {
    if (unbindAt) return;
    unbindAt = Date.now();
    writeFileSync(`${DRIVER_DIR}/unbind`, name);
    unbindMs = Date.now() - unbindAt;
  };
  const starts = subject.requests(driver, round);
  const settled: Promise<unknown>[] = [];
  const base = driver.queueStats(0).submitted;
  const submit = (from: number, to: number): Promise<unknown>[] =>
    starts.slice(from, to).map((start, k) => {
      const i = from + k;
      const request = start();
      outcomes[i] = { state: 'pending', before: false };
      settled[i] = request.promise.then(
        (value) =>
          Object.assign(outcomes[i], {
            state: 'resolved',
            before: !unbindAt,
            ok: request.check(value),
            at: unbindAt && Date.now() - unbindAt,
          }),
        (error: unknown) =>
          Object.assign(outcomes[i], {
            state: 'rejected',
            before: !unbindAt,
            error,
            at: unbindAt && Date.now() - unbindAt,
          }),
      );
      return request.promise;
    });
  // Microtasks only, so no interrupt is handled meanwhile: the submit path awaits a slot, the queue
  // places the request, then publishes and notifies in a microtask of its own.
  const unbindWhenPublished = async (count: number): Promise<void> => {
    for (let i = 0; i < 1000 && driver.queueStats(0).submitted < base + count; i++) await null;
    await null;
    unbind();
  };
  if (trigger === 'published') {
    submit(0, starts.length);
    await unbindWhenPublished(starts.length);
  } else if (trigger === 'immediate') {
    submit(0, starts.length);
    setImmediate(unbind);
  } else {
    const half = starts.length >> 1;
    await Promise.race(submit(0, half)).catch(() => undefined);
    submit(half, starts.length);
    await unbindWhenPublished(starts.length);
  }
  await bounded(Promise.all(settled), SETTLE_LIMIT_MS);
  // Counted now: what close() does to requests still pending is not what the unbind did.
  const count = (state: string): number => outcomes.filter((o) => o.state === state).length;
  const errors = new Map<string, Record<string, unknown>>();
  for (const o of outcomes.filter((o) => o.state === 'rejected')) {
    const described = describeError(o.error);
    const key = `${described.name}/${String(described.code)}/${String(described.message)}`;
    const entry = errors.get(key) ?? { ...described, count: 0 };
    entry.count = (entry.count as number) + 1;
    errors.set(key, entry);
  }
  const counts = {
    submitted: starts.length,
    settledBeforeUnbind: outcomes.filter((o) => o.state !== 'pending' && o.before).length,
    resolved: count('resolved'),
    rejected: count('rejected'),
    unsettled: count('pending'),
    badData: outcomes.filter((o) => o.state === 'resolved' && !o.ok).length,
    lastSettleMs: Math.max(0, ...outcomes.map((o) => o.at ?? 0)),
    errors: [...errors.values()],
  };
  // The failure reaches us at the next poll phase; wait for it (bounded) before the request after it.
  for (let i = 0; i < 100 && failures.length === 0; i++) await sleep(20);
  const after = await bounded(subject.another(driver), 5000);
  let closed: Record<string, unknown> = { ok: true };
  try {
    opened.close();
  } catch (error) {
    closed = { ok: false, error: describeError(error) };
  }
  offError();
  await bounded(Promise.all(settled), 1000);
  report({
    kind: 'unbind-round',
    device: subject.device,
    round,
    trigger,
    path: spec.device.devicePath,
    parent: name,
    unbound: unbindAt > 0,
    unbindMs,
    ...counts,
    failures: failures.map(describeError),
    failureMs,
    after: { state: after.state, ...(after.state === 'rejected' ? describeError(after.error) : {}) },
    closed: { ...closed, unsettledAfterClose: count('pending') },
  });
}

async function exercise<D extends VirtioDriver>(subject: FaultSubject<D>, triggers: readonly Trigger[]): Promise<void> {
  let spec = findSpec(subject.deviceId);
  const name = spec.device.parent;
  if (!name) throw new Error(`${spec.device.devicePath}: no parent platform device in sysfs`);
  report({ kind: 'unbind-target', device: subject.device, path: spec.device.devicePath, parent: name });
  let opened = openOn(subject, spec);
  for (const [round, trigger] of triggers.entries()) {
    await faultRound(subject, opened, round, trigger);
    const before = spec.device.devicePath;
    const { spec: next, ms, bindMs, scans } = await rebind(name);
    report({
      kind: 'unbind-rebind',
      device: subject.device,
      round,
      parent: name,
      before,
      after: next.device.devicePath,
      ms,
      bindMs,
      scans,
    });
    // The same discovery path a fresh program takes.
    spec = findSpec(subject.deviceId, name);
    const started = Date.now();
    opened = openOn(subject, spec);
    let checks: Record<string, unknown>;
    try {
      checks = { ok: true, ...(await subject.verify(opened.driver, round + 1)) };
    } catch (error) {
      checks = { ok: false, error: describeError(error) };
    }
    report({
      kind: 'unbind-reopen',
      device: subject.device,
      round,
      path: spec.device.devicePath,
      ms: Date.now() - started,
      ...checks,
    });
  }
  opened.close();
}

/** What round `round` writes (and flushes) at MARKER_SECTOR + 8 * round before its unbind. */
export function marker(round: number): Buffer {
  const data = Buffer.alloc(BLOCK, 0xa0 + round);
  data.write(`unbind-fault marker, round ${round}`, 0, 'latin1');
  return data;
}

const blkSubject: FaultSubject<VirtioBlk> = {
  device: 'blk',
  deviceId: DeviceId.BLOCK,
  open: (transport, memory) => VirtioBlk.open(transport, { memory }),
  async prepare(blk, round) {
    await blk.write(MARKER_SECTOR + round * 8, marker(round));
    await blk.flush();
  },
  requests(blk, round) {
    const expected = pattern(PATTERN_BYTES);
    const reads = Array.from({ length: BLK_READS }, (_, i) => () => ({
      promise: blk.read(i * 16, BLOCK),
      check: (value: unknown) =>
        Buffer.compare(value as Buffer, expected.subarray(i * 16 * 512, i * 16 * 512 + BLOCK)) === 0,
    }));
    const writes = Array.from({ length: BLK_WRITES }, (_, i) => () => ({
      promise: blk.write(SCRATCH_SECTOR + (round * BLK_WRITES + i) * 8, Buffer.alloc(BLOCK, round + 1)),
      check: () => true,
    }));
    // Interleaved, so that both halves of an 'after-some' round carry writes.
    return reads.flatMap((read, i) =>
      i % (BLK_READS / BLK_WRITES) === 0 ? [read, writes[i / (BLK_READS / BLK_WRITES)]] : [read],
    );
  },
  another: (blk) => blk.read(0, 512),
  async verify(blk, rounds) {
    const sector0Ok = (await blk.read(0, BLOCK)).equals(pattern(BLOCK));
    const markers: boolean[] = [];
    for (let r = 0; r < rounds; r++) markers.push((await blk.read(MARKER_SECTOR + r * 8, BLOCK)).equals(marker(r)));
    const fresh = Buffer.alloc(BLOCK, 0x5a + rounds);
    await blk.write(FRESH_SECTOR, fresh);
    const writeReadOk = (await blk.read(FRESH_SECTOR, BLOCK)).equals(fresh);
    return { sector0Ok, markersOk: markers.every(Boolean), markers: markers.length, writeReadOk };
  },
};

const rngSubject: FaultSubject<VirtioRng> = {
  device: 'rng',
  deviceId: DeviceId.ENTROPY,
  open: (transport, memory) => VirtioRng.open(transport, { memory }),
  requests: (rng) =>
    Array.from({ length: RNG_READS }, () => () => ({
      promise: rng.read(BLOCK),
      check: (value: unknown) => (value as Buffer).length === BLOCK,
    })),
  another: (rng) => rng.read(64),
  async verify(rng) {
    const bytes = await rng.read(256);
    return { bytes: bytes.length, distinct: new Set(bytes).size };
  },
};

async function main(): Promise<void> {
  process.on('uncaughtException', (error) => {
    crashes.push(String(error?.stack ?? error));
    report({ kind: 'unbind-crash', what: 'uncaughtException', error: describeError(error) });
  });
  process.on('unhandledRejection', (error) => {
    crashes.push(String((error as Error)?.stack ?? error));
    report({ kind: 'unbind-crash', what: 'unhandledRejection', error: describeError(error) });
  });
  await exercise(blkSubject, ROUNDS.blk);
  await exercise(rngSubject, ROUNDS.rng);
  // Give anything that escaped a turn to show before judging.
  await sleep(100);
  if (crashes.length > 0) throw new Error(`${crashes.length} uncaught error(s):\n${crashes.join('\n')}`);
}

if (require.main === module) runMain(main);
