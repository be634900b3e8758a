import { randomFillSync } from 'node:crypto';
import type { VirtioBlk } from '../devices';
import { ReadOnlyError } from '../errors';
import type { QueueMode } from '../queue';
import { BLK_SECTOR_SIZE, FeatureBit, hasFeature } from '../spec';
import { UsageError, integerOption } from './cli-io';
import { checkRange, print, progressFor, type Context, type Values } from './blk-shared';
import { formatBytes } from './progress';

const MAX_BENCH_SIZE = 16 << 20;
/** Bench buffers (depth × size) come from DMA memory; more than this is refused. */
const MAX_BENCH_MEMORY = 256 << 20;

export interface BenchPlan {
  depth: number;
  seconds: number;
  warmup: number;
  size: number;
  mode: QueueMode;
  write: boolean;
}

/** A number of seconds in [0, max], or (0, max] when `positive`. */
export function parseSeconds(name: string, text: string, max: number, positive: boolean): number {
  const n = /^(?:\d+\.?\d*|\.\d+)$/.test(text) ? Number(text) : NaN;
  if (!(n <= max && (positive ? n > 0 : n >= 0)))
    throw new UsageError(`--${name} must be a number of seconds in ${positive ? '(0' : '[0'}, ${max}], got '${text}'`);
  return n;
}

export function benchPlan(values: Values): BenchPlan {
  const depth = values.depth === undefined ? 1 : integerOption('depth', values.depth, 1, 1024);
  const duration = values.seconds === undefined ? 10 : parseSeconds('seconds', values.seconds, 3600, true);
  const warmup =
    values.warmup === undefined ? Math.min(2, duration / 2) : parseSeconds('warmup', values.warmup, 60, false);
  const size = values.size === undefined ? 4096 : integerOption('size', values.size, BLK_SECTOR_SIZE, MAX_BENCH_SIZE);
  if (size % BLK_SECTOR_SIZE !== 0)
    throw new UsageError(`--size must be a multiple of ${BLK_SECTOR_SIZE}, got ${size}`);
  if (depth * size > MAX_BENCH_MEMORY)
    throw new UsageError(
      `--depth × --size is ${formatBytes(depth * size)} of DMA buffers, at most ${formatBytes(MAX_BENCH_MEMORY)}`,
    );
  const mode = (values.mode ?? 'interrupt') as QueueMode;
  if (!['interrupt', 'poll', 'hybrid'].includes(mode))
    throw new UsageError(`--mode must be interrupt, poll or hybrid, got '${values.mode}'`);
  return { depth, seconds: duration, warmup, size, mode, write: values.write ?? false };
}

/** What bench measured; the numbers the lab benchmark (scripts/lab/guest/blk-bench.ts) reports, and a few more. */
export interface BenchResult {
  where: string;
  ring: 'split' | 'packed';
  mode: QueueMode;
  depth: number;
  size: number;
  write: boolean;
  /** Requests done during the warm-up (not measured). */
  warmupRequests: number;
  requests: number;
  /** Measured time in seconds. */
  seconds: number;
  iops: number;
  mbPerSecond: number;
  meanUs: number | null;
  p50Us: number | null;
  p99Us: number | null;
  notificationsPerRequest: number | null;
  interruptsPerRequest: number | null;
  polledPerRequest: number | null;
}

const round = (n: number, places: number): number => Math.round(n * 10 ** places) / 10 ** places;

export async function runBench(blk: VirtioBlk, context: Context, bench: BenchPlan): Promise<number> {
  const { depth, size, write: writing } = bench;
  if (writing && blk.info.readOnly)
    throw new ReadOnlyError(`${context.where}: the device is read-only (VIRTIO_BLK_F_RO): no write benchmark`);
  checkRange(blk, 0n, size);
  const blocks = Number(blk.info.bytes / BigInt(size));
  const perBlock = BigInt(size / BLK_SECTOR_SIZE);
  const totalMs = (bench.warmup + bench.seconds) * 1000;
  const progress = progressFor(context, true, {
    total: totalMs,
    label: writing ? 'bench write' : 'bench read',
    unit: 'ms',
  });
  const runStarted = process.hrtime.bigint();
  const sinceStart = (): number => Number(process.hrtime.bigint() - runStarted) / 1e6;
  const buffers = Array.from({ length: depth }, () => blk.allocBuffer(size));
  let measuredSince = 0n;
  try {
    if (writing) for (const buffer of buffers) randomFillSync(buffer);
    let failure: { error: unknown } | undefined;
    /**
     * `depth` workers doing requests until `until`; latencies (µs) go to
     * `latencies` when given. After a failure the others stop, and it
     * returns once none is in flight. Resolves with the requests done.
     */
    const run = async (until: bigint, latencies?: number[]): Promise<number> => {
      const counts = await Promise.all(
        buffers.map(async (buffer) => {
          let count = 0;
          try {
            while (!failure && process.hrtime.bigint() < until) {
              const sector = BigInt(Math.floor(Math.random() * blocks)) * perBlock;
              const t0 = process.hrtime.bigint();
              if (writing) await blk.write(sector, buffer);
              else await blk.read(sector, buffer);
              const t1 = process.hrtime.bigint();
              count++;
              if (latencies) {
                latencies.push(Number(t1 - t0) / 1000);
                progress?.update(
                  sinceStart(),
                  `${Math.round(latencies.length / (Number(t1 - measuredSince) / 1e9))} IOPS`,
                );
              } else {
                progress?.update(sinceStart());
              }
            }
          } catch (error) {
            failure ??= { error };
          }
          return count;
        }),
      );
      if (failure) throw failure.error;
      return counts.reduce((a, b) => a + b, 0);
    };
    const warmupRequests = await run(runStarted + BigInt(Math.round(bench.warmup * 1e9)));
    const queues = Array.from({ length: blk.info.queues }, (_, q) => q);
    const queueTotals = (): { notifications: number; polled: number } =>
      queues.reduce(
        (sum, q) => {
          const s = blk.queueStats(q);
          return { notifications: sum.notifications + s.notifications, polled: sum.polled + s.polledCompletions };
        },
        { notifications: 0, polled: 0 },
      );
    const before = { ...queueTotals(), interrupts: blk.transport.stats.interrupts };
    const latencies: number[] = [];
    measuredSince = process.hrtime.bigint();
    await run(measuredSince + BigInt(Math.round(bench.seconds * 1e9)), latencies);
    const elapsed = Number(process.hrtime.bigint() - measuredSince) / 1e9;
    const after = { ...queueTotals(), interrupts: blk.transport.stats.interrupts };
    progress?.finish();

    latencies.sort((a, b) => a - b);
    const n = latencies.length;
    const at = (q: number): number | null => (n ? round(latencies[Math.min(n - 1, Math.floor(n * q))], 1) : null);
    const per = (count: number): number | null => (n ? round(count / n, 3) : null);
    const result: BenchResult = {
      where: context.where,
      ring: hasFeature(blk.features, FeatureBit.RING_PACKED) ? 'packed' : 'split',
      mode: bench.mode,
      depth,
      size,
      write: writing,
      warmupRequests,
      requests: n,
      seconds: round(elapsed, 6),
      iops: round(n / elapsed, 1),
      mbPerSecond: round((n * size) / elapsed / 1e6, 2),
      meanUs: n ? round(latencies.reduce((a, b) => a + b, 0) / n, 1) : null,
      p50Us: at(0.5),
      p99Us: at(0.99),
      notificationsPerRequest: per(after.notifications - before.notifications),
      interruptsPerRequest: per(after.interrupts - before.interrupts),
      polledPerRequest: per(after.polled - before.polled),
    };
    if (context.values.json) print(context, result);
    else context.io.stdout.write(formatBench(result));
    return 0;
  } finally {
    progress?.finish(sinceStart());
    for (const buffer of buffers) blk.freeBuffer(buffer);
  }
}

function formatBench(r: BenchResult): string {
  const us = (v: number | null): string => (v === null ? '-' : v.toFixed(1));
  return [
    `${r.where}: ${r.write ? 'random writes' : 'random reads'} of ${r.size} bytes, depth ${r.depth}, ${r.mode} ` +
      `mode, ${r.ring} ring`,
    `requests ${r.requests} in ${r.seconds.toFixed(3)} s (after ${r.warmupRequests} warm-up requests)`,
    `IOPS ${r.iops.toFixed(1)}, ${r.mbPerSecond.toFixed(2)} MB/s`,
    `latency µs: mean ${us(r.meanUs)}, p50 ${us(r.p50Us)}, p99 ${us(r.p99Us)}`,
    `per request: ${r.notificationsPerRequest ?? '-'} notifications, ${r.interruptsPerRequest ?? '-'} ` +
      `interrupts, ${r.polledPerRequest ?? '-'} polled completions`,
    '',
  ].join('\n');
}
