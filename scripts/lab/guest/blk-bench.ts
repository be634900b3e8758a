/**
 * Runs in the lab guest: 4 KiB random reads through our VirtioBlk on the
 * first virtio-blk transport left on UIO, at a given queue depth for a
 * given time — the same pattern fio runs against the kernel's virtio_blk.
 * One result line per measured run (report.ts), with the GC pauses and the
 * bytes allocated per request during the run.
 *
 *   node scripts/lab/guest/blk-bench.js <iodepth> <seconds> [mode[,mode...]]
 *   node scripts/lab/guest/blk-bench.js --depths 1,32 --seconds S --modes interrupt,poll,hybrid
 *        --rounds R [--warmup W] [--before CMD] [--after CMD] [--label L] [--api promise|callback]
 *
 * The second form is the interleaved plan of bench/lab-vs-kernel.js, in one
 * process (Node's start and our library's load cost ~10 s under TCG): for
 * each depth, R rounds of: CMD of --before (the kernel's fio), ours in each
 * mode (their order rotating by round), CMD of --after (the C floor). The commands run through `sh -c`
 * while this process waits (blocked, so it takes no CPU from them), with
 * BENCH_QD, BENCH_ROUND and BENCH_SECONDS in the environment; the device
 * is closed (reset) between our runs, so the floor can drive it in turn.
 *
 * Warm-up, not measured: under TCG the JIT needs tens of seconds to settle
 * (fio has no such phase to go through). Measured in the lab: run back to
 * back, QD1 IOPS kept rising for ~30 s of reading (round 1 a third to a
 * half of rounds 4–6) while V8 compiled on the second vCPU, and the bytes
 * allocated per request fell from ~5.6 KB to ~2.9 KB as optimized code
 * replaced the first. With --warmup W the plan starts with W seconds of
 * reads cycling through its modes and depths (twice), and each run then
 * settles for min(0.5, S/4) s after the device is opened again; without
 * it, the first run of each mode and depth warms up for min(2, S/2) s.
 *
 * --api callback reads with readInto() (a callback, no promise per request)
 * instead of read(); --label tags the results of a second plan in the
 * same boot (and the rounds its hooks see: BENCH_ROUND=<label><round>).
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { PerformanceObserver, performance, type PerformanceEntry } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import * as v8 from 'node:v8';
import { VirtioBlk } from '../../../lib/devices';
import { DmaPool } from '../../../lib/platform';
import type { QueueMode } from '../../../lib/queue';
import { DeviceId, FeatureBit, hasFeature } from '../../../lib/spec';
import { openTransport, type UioDeviceSpec } from '../../../lib/transport';
import { scan } from './devices';
import { report, runMain } from './report';

const MODES: readonly QueueMode[] = ['interrupt', 'poll', 'hybrid'];

interface Plan {
  depths: number[];
  seconds: number;
  modes: QueueMode[];
  rounds: number;
  warmUp?: number;
  before?: string;
  after?: string;
  /**
   * Tags every result and the rounds handed to the hooks (BENCH_ROUND=<label><round>): a second plan in the same boot.
   */
  label?: string;
  /** 'promise' (read(), the default) or 'callback' (readInto(): no promise per request). */
  api: 'promise' | 'callback';
}

function parsePlan(argv: string[]): Plan {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      depths: { type: 'string' },
      seconds: { type: 'string' },
      modes: { type: 'string' },
      rounds: { type: 'string' },
      warmup: { type: 'string' },
      before: { type: 'string' },
      after: { type: 'string' },
      label: { type: 'string' },
      api: { type: 'string' },
    },
  });
  const [depth, seconds, modes] = positionals;
  const plan: Plan = {
    depths: (values.depths ?? depth ?? '1').split(',').map(Number),
    seconds: Number(values.seconds ?? seconds ?? 10),
    modes: (values.modes ?? modes ?? 'interrupt').split(',') as QueueMode[],
    rounds: Number(values.rounds ?? 1),
    warmUp: values.warmup === undefined ? undefined : Number(values.warmup),
    before: values.before,
    after: values.after,
    label: values.label,
    api: (values.api ?? 'promise') as Plan['api'],
  };
  if (plan.api !== 'promise' && plan.api !== 'callback')
    throw new RangeError(`bad api ${plan.api} (promise, callback)`);
  if (plan.depths.some((d) => !Number.isInteger(d) || d < 1))
    throw new RangeError(`bad iodepth in ${plan.depths.join(',')}`);
  if (!(plan.seconds > 0)) throw new RangeError(`bad seconds ${plan.seconds}`);
  if (!Number.isInteger(plan.rounds) || plan.rounds < 1) throw new RangeError(`bad rounds ${plan.rounds}`);
  if (plan.warmUp !== undefined && !(plan.warmUp >= 0)) throw new RangeError(`bad warmup ${plan.warmUp}`);
  for (const mode of plan.modes)
    if (!MODES.includes(mode)) throw new RangeError(`bad mode ${mode} (${MODES.join(', ')})`);
  return plan;
}

/** Runs a plan command (the kernel's fio, the floor) in its turn; this process waits, blocked. */
function hook(command: string | undefined, depth: number, round: string, seconds: number): void {
  if (!command) return;
  const result = spawnSync('sh', ['-c', command], {
    stdio: 'inherit',
    env: { ...process.env, BENCH_QD: String(depth), BENCH_ROUND: String(round), BENCH_SECONDS: String(seconds) },
  });
  if (result.error) throw result.error;
  if (result.status !== 0)
    throw new Error(`'${command}' (QD${depth}, round ${round}) exited with ${result.status ?? result.signal}`);
}

/**
 * GC pauses: one PerformanceObserver for the whole process, keeping each
 * 'gc' entry's start and duration (entries arrive asynchronously, after the
 * collection; a run's are picked by start time once the run is over).
 */
const gcEntries: { start: number; duration: number }[] = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries() as PerformanceEntry[])
    gcEntries.push({ start: entry.startTime, duration: entry.duration });
}).observe({ entryTypes: ['gc'] });

/**
 * Bytes allocated on the V8 heap during a run: the used-heap growth over
 * the run plus what each collection in it freed (v8.GCProfiler, Node ≥
 * 18.15: used heap size before and after every GC). Exact for scavenges
 * (nearly all of a run's collections; the mark-compacts are counted
 * apart, as their freed figure depends on how V8 accounts what its
 * concurrent sweeper frees after the pause). Off-heap
 * memory (ArrayBuffer backing stores) is not counted. Checked in the guest
 * (Node 18): a loop allocating 1,016-byte arrays reads 1,051 bytes per
 * iteration. What the harness adds per request: one performance.now()
 * (~60 bytes on Node 18: it builds an hrtime pair) and the worker's own
 * `await` of the read (~250 bytes for any await; every caller pays it);
 * sectors go in as numbers, latencies into a preallocated Float64Array.
 */
class AllocationMeter {
  private readonly profiler = new v8.GCProfiler();
  private usedBefore = 0;
  private startedAt = 0;
  private endedAt = 0;

  start(): void {
    this.startedAt = performance.now();
    this.profiler.start();
    this.usedBefore = v8.getHeapStatistics().used_heap_size;
  }

  /** Bytes allocated since start() and the collections in between (call right when the run ends). */
  stop(): { allocatedBytes: number; gcCollections: number; gcMarkCompacts: number } {
    const usedAfter = v8.getHeapStatistics().used_heap_size;
    this.endedAt = performance.now();
    const { statistics } = this.profiler.stop();
    let freed = 0;
    for (const gc of statistics)
      freed += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize;
    return {
      allocatedBytes: usedAfter - this.usedBefore + freed,
      gcCollections: statistics.length,
      gcMarkCompacts: statistics.filter((gc) => gc.gcType === 'MarkSweepCompact').length,
    };
  }

  /** The GC pauses between start() and stop() (waits for the last 'gc' entries to arrive). */
  async pauses(): Promise<{ gcPauses: number; gcLongestMs: number; gcTotalMs: number }> {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const pauses = gcEntries.filter((e) => e.start >= this.startedAt && e.start < this.endedAt);
    gcEntries.length = 0;
    return {
      gcPauses: pauses.length,
      gcLongestMs: pauses.reduce((m, e) => Math.max(m, e.duration), 0),
      gcTotalMs: pauses.reduce((sum, e) => sum + e.duration, 0),
    };
  }
}

/** Busy and total ticks of all CPUs, and how many there are (/proc/stat). */
function cpuTicks(): { busy: number; total: number; cpus: number } {
  const lines = readFileSync('/proc/stat', 'utf8').split('\n');
  const [user, nice, system, idle, iowait, irq, softirq, steal] = lines[0].trim().split(/\s+/).slice(1).map(Number);
  const busy = user + nice + system + irq + softirq + steal;
  return { busy, total: busy + idle + iowait, cpus: lines.filter((l) => /^cpu\d/.test(l)).length };
}

/** Latencies in µs, preallocated so recording one allocates nothing (grown, rarely, when a run outgrows it). */
let latencies = new Float64Array(1 << 20);
let recorded = 0;
function record(us: number): void {
  if (recorded === latencies.length) {
    const bigger = new Float64Array(latencies.length * 2);
    bigger.set(latencies);
    latencies = bigger;
  }
  latencies[recorded++] = us;
}

/**
 * One run of ours: open the device in `mode`, warm up, measure for
 * `seconds` (none: a warm-up only), close (the close resets the device).
 */
async function measure(
  spec: UioDeviceSpec,
  depth: number,
  mode: QueueMode,
  seconds: number,
  warmUpSeconds: number,
  api: Plan['api'] = 'promise',
): Promise<Record<string, unknown> | undefined> {
  const memory = DmaPool.hugetlb();
  const transport = openTransport(spec);
  const blk = VirtioBlk.open(transport, { memory, queueMode: mode });
  const buffers: Buffer[] = [];
  try {
    const blocks = Number(blk.info.capacity / 8n);
    for (let i = 0; i < depth; i++) buffers.push(blk.allocBuffer(4096));
    /** `depth` workers reading until `until` (performance.now() ms); latencies recorded when `measured`. */
    const run = (until: number, measured: boolean): Promise<void[]> =>
      api === 'callback'
        ? runCallbacks(until, measured)
        : Promise.all(
            buffers.map(async (buffer) => {
              let t0 = performance.now();
              while (t0 < until) {
                await blk.read(Math.floor(Math.random() * blocks) * 8, buffer);
                const t1 = performance.now();
                if (measured) record((t1 - t0) * 1000);
                t0 = t1;
              }
            }),
          );
    /** The same with readInto(): each worker's next read starts from the last one's callback. */
    const runCallbacks = (until: number, measured: boolean): Promise<void[]> =>
      Promise.all(
        buffers.map(
          (buffer) =>
            new Promise<void>((resolve, reject) => {
              let t0 = performance.now();
              const next = (): void => blk.readInto(Math.floor(Math.random() * blocks) * 8, buffer, done);
              const done = (error: Error | null): void => {
                if (error) return reject(error);
                const t1 = performance.now();
                if (measured) record((t1 - t0) * 1000);
                t0 = t1;
                if (t1 < until) next();
                else resolve();
              };
              if (t0 < until) next();
              else resolve();
            }),
        ),
      );
    await run(performance.now() + warmUpSeconds * 1000, false);
    if (seconds === 0) return undefined;
    const before = { ...blk.queueStats(0), interrupts: transport.stats.interrupts };
    recorded = 0;
    const cpuBefore = cpuTicks();
    const meter = new AllocationMeter();
    meter.start();
    const started = performance.now();
    await run(started + seconds * 1000, true);
    const elapsed = (performance.now() - started) / 1000;
    const allocation = meter.stop();
    const cpuAfter = cpuTicks();
    const gc = { ...allocation, ...(await meter.pauses()) };
    const after = blk.queueStats(0);
    const n = recorded;
    const sorted = latencies.slice(0, n).sort();
    let sum = 0;
    for (let i = 0; i < n; i++) sum += sorted[i];
    return {
      kind: 'blk-bench',
      driver: 'ours',
      iodepth: depth,
      mode,
      ring: hasFeature(blk.features, FeatureBit.RING_PACKED) ? 'packed' : 'split',
      requests: n,
      iops: n / elapsed,
      meanUs: sum / n,
      p99Us: sorted[Math.min(n - 1, Math.floor(n * 0.99))],
      notificationsPerRequest: (after.notifications - before.notifications) / n,
      interruptsPerRequest: (transport.stats.interrupts - before.interrupts) / n,
      polledPerRequest: (after.polledCompletions - before.polledCompletions) / n,
      // Poll and hybrid: event-loop turns the poller took, and spins (hits) after a publish, per request.
      turnsPerRequest: (after.polls - before.polls) / n,
      spinsPerRequest: (after.spins - before.spins) / n,
      spinHitsPerRequest: (after.spinHits - before.spinHits) / n,
      // vCPUs kept busy on average (0 to the guest's count): this process, its V8 helper threads, the kernel for it.
      busyCpus: (cpuAfter.cpus * (cpuAfter.busy - cpuBefore.busy)) / (cpuAfter.total - cpuBefore.total),
      warmUpSeconds,
      gcPauses: gc.gcPauses,
      gcLongestMs: gc.gcLongestMs,
      gcTotalMs: gc.gcTotalMs,
      gcCollections: gc.gcCollections,
      gcMarkCompacts: gc.gcMarkCompacts,
      allocatedBytes: gc.allocatedBytes,
      bytesPerRequest: gc.allocatedBytes / n,
    };
  } finally {
    for (const buffer of buffers) blk.freeBuffer(buffer);
    blk.close();
    memory.close();
  }
}

async function main(): Promise<void> {
  const plan = parsePlan(process.argv.slice(2));
  const found = scan().find((r) => r.result?.deviceId === DeviceId.BLOCK);
  if (!found) throw new Error('no virtio-blk transport on UIO');
  const spec = found.spec as UioDeviceSpec;
  const warmed = new Set<string>();
  if (plan.warmUp !== undefined) {
    const slice = plan.warmUp / (2 * plan.depths.length * plan.modes.length);
    for (let cycle = 0; cycle < 2; cycle++) {
      for (const depth of plan.depths) {
        for (const mode of plan.modes) {
          await measure(spec, depth, mode, 0, slice, plan.api);
          warmed.add(`${mode} ${depth}`);
        }
      }
    }
  }
  for (const depth of plan.depths) {
    for (let round = 1; round <= plan.rounds; round++) {
      const tag = `${plan.label ?? ''}${round}`;
      hook(plan.before, depth, tag, plan.seconds);
      // The modes' order rotates by round, so that none always runs right after the same other: the JIT state one
      // leaves behind may favour or hinder the next.
      const n = plan.modes.length;
      for (let i = 0; i < n; i++) {
        const mode = plan.modes[(i + round - 1) % n];
        const key = `${mode} ${depth}`;
        const warmUp = warmed.has(key) ? Math.min(0.5, plan.seconds / 4) : Math.min(2, plan.seconds / 2);
        warmed.add(key);
        report({
          ...(await measure(spec, depth, mode, plan.seconds, warmUp, plan.api)),
          round,
          api: plan.api,
          ...(plan.label ? { label: plan.label, nodeFlags: process.execArgv.join(' ') } : {}),
        });
      }
      hook(plan.after, depth, tag, plan.seconds);
    }
  }
}

runMain(main);
