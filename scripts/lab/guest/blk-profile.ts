/**
 * Runs in the lab guest: where the time of one 4 KiB random read through
 * our VirtioBlk goes at queue depth 1 (the pattern of blk-bench.ts at QD1).
 * One process, one open device, five phases of the same read loop:
 *
 *   warm-up  W s (default 5), only its rate reported: under TCG the JIT
 *            tiers up slowly, and a short warm-up leaves the first phase slow;
 *   plain    S s, nothing attached: requests/s, time inside blk.read() and
 *            between reads, event-loop idle time (libuv's own counter:
 *            time spent in epoll_wait), GC pauses (perf_hooks 'gc' entries);
 *            then the unit costs of a few operations (performance.now(), an
 *            N-API call, an MMIO read, a read() syscall, microtasks);
 *   profile  S s under V8's CPU profiler (node:inspector, in-process):
 *            self time by category — (idle) = the poll phase outside JS
 *            (epoll_wait, and the native code around it: libuv, the addon's
 *            callback), (garbage collector), (program) = native code with no
 *            JS on the stack, our library by layer, node internals, N-API /
 *            V8 API functions (told apart by their JS caller), this loop —
 *            the top functions by self and by total time, and requests/s
 *            with the profiler attached (its overhead);
 *   marks    S s with timestamps taken by wrapping, on these instances only,
 *            the methods an interrupt-mode request passes through (the queue's flush,
 *            MmioTransport.notify / handleInterrupt, the UIO source's
 *            ready / rearm; some are private, so a rename in lib/
 *            makes this phase throw). lib/ is not changed; the wrappers'
 *            own cost shows in this phase's requests/s;
 *   plain    again, S s: drift over the run (the overheads are computed
 *            against the mean of the two plain phases).
 *
 *   node scripts/lab/guest/blk-profile.js [seconds] [--interval µs] [--top N] [--warmup W]
 *
 * Prints one `@@LAB-RESULT {"kind":"blk-profile",...}` line.
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { Session, type Profiler } from 'node:inspector';
import * as path from 'node:path';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { VirtioBlk } from '../../../lib/devices';
import { DmaPool, EventfdInterruptSource, MmioWindow, nativeBarriers } from '../../../lib/platform';
import { DeviceId } from '../../../lib/spec';
import { checkQueueMode, type QueueMode } from '../../../lib/queue/completion-mode';
import { openTransport, type MmioTransport, type UioDeviceSpec } from '../../../lib/transport';
import { scan } from './devices';
import { report, runMain } from './report';

/** The guest's copy of the repository (/opt/virtio-mmio): this file is scripts/lab/guest/blk-profile.js in it. */
const ROOT = path.resolve(__dirname, '../../..');

interface LoopHooks {
  /** Called just before blk.read() with the request's number. */
  beforeRead?(n: number): void;
  /** Called just after blk.read() resolved. */
  afterRead?(n: number): void;
}

interface LoopResult {
  requests: number;
  elapsedMs: number;
  iops: number;
  /** Inside `await blk.read()`, per request. */
  readUs: Summary;
  /** From one read's resolution to the next read's call (the loop's own work). */
  betweenUs: Summary;
  /** Event-loop idle (time libuv spent in epoll_wait) / active, over the phase. */
  loop: { idleMs: number; activeMs: number; idlePct: number };
  gc?: { count: number; ms: number };
  interruptsPerRequest: number;
  notificationsPerRequest: number;
}

interface Summary {
  mean: number;
  p50: number;
  p99: number;
}

function summarize(values: Float64Array, n: number): Summary {
  if (n === 0) return { mean: NaN, p50: NaN, p99: NaN };
  const sorted = Float64Array.from(values.subarray(0, n)).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += sorted[i];
  return { mean: sum / n, p50: sorted[Math.floor(n / 2)], p99: sorted[Math.min(n - 1, Math.floor(n * 0.99))] };
}

/** The QD1 read loop of blk-bench.ts, with the per-request timing kept in preallocated arrays. */
async function readLoop(
  blk: VirtioBlk,
  transport: MmioTransport,
  buffer: Buffer,
  seconds: number,
  hooks: LoopHooks = {},
  withGc = false,
): Promise<LoopResult> {
  const blocks = Number(blk.info.capacity / 8n);
  const capacity = Math.max(1000, seconds * 20_000);
  const readUs = new Float64Array(capacity);
  const betweenUs = new Float64Array(capacity);
  const gc = { count: 0, ms: 0 };
  const observer = withGc
    ? new PerformanceObserver((list) => {
        for (const entry of list.getEntries()) {
          gc.count++;
          gc.ms += entry.duration;
        }
      })
    : undefined;
  observer?.observe({ entryTypes: ['gc'] });
  const before = { ...blk.queueStats(0), interrupts: transport.stats.interrupts };
  const elu0 = performance.eventLoopUtilization();
  const started = performance.now();
  const end = started + seconds * 1000;
  let n = 0;
  let lastDone = NaN;
  for (;;) {
    const t0 = performance.now();
    if (t0 >= end) break;
    const sector = BigInt(Math.floor(Math.random() * blocks)) * 8n;
    if (n < capacity && n > 0) betweenUs[n - 1] = (t0 - lastDone) * 1000;
    hooks.beforeRead?.(n);
    await blk.read(sector, buffer);
    hooks.afterRead?.(n);
    lastDone = performance.now();
    if (n < capacity) readUs[n] = (lastDone - t0) * 1000;
    n++;
  }
  const elapsedMs = performance.now() - started;
  const elu = performance.eventLoopUtilization(elu0);
  observer?.disconnect();
  const after = blk.queueStats(0);
  const kept = Math.min(n, capacity);
  return {
    requests: n,
    elapsedMs,
    iops: (n / elapsedMs) * 1000,
    readUs: summarize(readUs, kept),
    betweenUs: summarize(betweenUs, Math.max(0, kept - 1)),
    loop: { idleMs: elu.idle, activeMs: elu.active, idlePct: (100 * elu.idle) / (elu.idle + elu.active) },
    gc: withGc ? gc : undefined,
    interruptsPerRequest: (transport.stats.interrupts - before.interrupts) / n,
    notificationsPerRequest: (after.notifications - before.notifications) / n,
  };
}

// ---- The CPU profile ----

function post<T>(session: Session, method: string, params: object = {}): Promise<T> {
  const send = session.post as unknown as (
    m: string,
    p: object,
    cb: (error: Error | null, result: unknown) => void,
  ) => void;
  return new Promise((resolve, reject) =>
    send.call(session, method, params, (error, result) => (error ? reject(error) : resolve(result as T))),
  );
}

type Node = Profiler.ProfileNode;

const SPECIAL = new Set(['(idle)', '(garbage collector)', '(program)', '(root)']);
const SELF = path.join(ROOT, 'scripts/lab/guest/blk-profile.js');

function fileOf(url: string): string {
  return url.startsWith('file://') ? decodeURIComponent(url.slice('file://'.length)) : url;
}

/** The category a frame's self time is charged to. */
function categoryOf(node: Node): string {
  const { functionName, url } = node.callFrame;
  if (SPECIAL.has(functionName) && url === '') return functionName;
  if (url === '') return 'native & builtins (no script)';
  if (url.startsWith('node:')) return 'node internals (node:*)';
  const file = fileOf(url);
  if (file === SELF) return 'bench loop (blk-profile.js)';
  if (file.startsWith(`${ROOT}/lib/`)) {
    const rest = file.slice(ROOT.length + 5).split('/');
    return rest.length > 1 ? `lib/${rest[0]}` : 'lib (top level)';
  }
  if (file.startsWith(`${ROOT}/scripts/`)) return 'bench helpers (scripts/lab/guest)';
  if (file.startsWith(`${ROOT}/node_modules/`)) return 'node_modules';
  return 'other JS';
}

function where(node: Node): string {
  const { url, lineNumber } = node.callFrame;
  if (url === '') return '';
  const file = fileOf(url);
  const shown = file.startsWith(`${ROOT}/`) ? file.slice(ROOT.length + 1) : file;
  return `${shown}:${lineNumber + 1}`;
}

interface Row {
  name: string;
  ms: number;
  pct: number;
  usPerRequest: number;
}

interface FunctionRow {
  name: string;
  where: string;
  category: string;
  selfMs: number;
  selfPct: number;
  totalMs: number;
  totalPct: number;
}

function analyse(profile: Profiler.Profile, requests: number, top: number) {
  const byId = new Map<number, Node>();
  const parent = new Map<number, number>();
  for (const node of profile.nodes) {
    byId.set(node.id, node);
    for (const child of node.children ?? []) parent.set(child, node.id);
  }
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  // Sample i lasts until sample i + 1 (the last one until endTime).
  let t = profile.startTime;
  const stamps = deltas.map((d) => (t += d));
  const duration = (i: number): number =>
    i + 1 < stamps.length ? stamps[i + 1] - stamps[i] : Math.max(0, profile.endTime - stamps[i]);
  const wallUs = profile.endTime - profile.startTime;

  const NATIVE = 'native & builtins (no script)';
  /** The nearest caller of a frame without a script that has one (or is special). */
  const callerOf = (node: Node): Node | undefined => {
    let up = parent.get(node.id);
    while (up !== undefined && categoryOf(byId.get(up)!) === NATIVE) up = parent.get(up);
    return up === undefined ? undefined : byId.get(up);
  };
  const frameKey = (node: Node): string =>
    `${node.callFrame.functionName}|${node.callFrame.url}|${node.callFrame.lineNumber}|${node.callFrame.columnNumber}`;
  // V8 names every N-API function after one of them (they share one C++
  // entry point), so a frame without a script is told apart by its caller.
  const describe = (node: Node): { key: string; name: string; where: string; category: string } => {
    const category = categoryOf(node);
    if (category !== NATIVE)
      return { key: frameKey(node), name: node.callFrame.functionName || '(anonymous)', where: where(node), category };
    const caller = callerOf(node);
    const callerName = caller ? caller.callFrame.functionName || '(anonymous)' : '(none)';
    return {
      key: `native|${caller ? frameKey(caller) : ''}`,
      name: `[native] <- ${callerName}`,
      where: caller ? where(caller) : '',
      category,
    };
  };

  const category = new Map<string, number>();
  const nativeByCaller = new Map<string, number>();
  const self = new Map<string, { node: Node; us: number }>();
  const total = new Map<string, { node: Node; us: number }>();
  let sampledUs = 0;
  for (let i = 0; i < samples.length; i++) {
    const node = byId.get(samples[i]);
    if (!node) continue;
    const us = duration(i);
    sampledUs += us;
    const d = describe(node);
    category.set(d.category, (category.get(d.category) ?? 0) + us);
    const s = self.get(d.key) ?? { node, us: 0 };
    s.us += us;
    self.set(d.key, s);
    if (d.category === NATIVE) {
      const caller = callerOf(node);
      const name = caller ? categoryOf(caller) : '(no caller)';
      nativeByCaller.set(name, (nativeByCaller.get(name) ?? 0) + us);
    }
    // Total time: every function on the stack, once per sample.
    const seen = new Set<string>();
    for (let id: number | undefined = node.id; id !== undefined; id = parent.get(id)) {
      const frame = byId.get(id)!;
      if (frame.callFrame.functionName === '(root)') break;
      const k = describe(frame).key;
      if (seen.has(k)) continue;
      seen.add(k);
      const e = total.get(k) ?? { node: frame, us: 0 };
      e.us += us;
      total.set(k, e);
    }
  }
  const pct = (us: number): number => (100 * us) / sampledUs;
  const rows = (m: Map<string, number>): Row[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([name, us]) => ({ name, ms: us / 1000, pct: pct(us), usPerRequest: us / requests }));
  const fn = (e: { node: Node; us: number }): FunctionRow => {
    const d = describe(e.node);
    const s = self.get(d.key)?.us ?? 0;
    const tt = total.get(d.key)?.us ?? s;
    return {
      name: d.name,
      where: d.where,
      category: d.category,
      selfMs: s / 1000,
      selfPct: pct(s),
      totalMs: tt / 1000,
      totalPct: pct(tt),
    };
  };
  return {
    samples: samples.length,
    nodes: profile.nodes.length,
    wallMs: wallUs / 1000,
    sampledMs: sampledUs / 1000,
    categories: rows(category),
    nativeByCaller: rows(nativeByCaller),
    topSelf: [...self.values()]
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map(fn),
    topTotal: [...total.values()]
      .filter((e) => !SPECIAL.has(e.node.callFrame.functionName))
      .sort((a, b) => b.us - a.us)
      .slice(0, top)
      .map(fn),
  };
}

// ---- Marks: timestamps from wrapped methods ----

const MARKS = [
  'call', // before blk.read()
  'flushIn', // SplitQueue.flush entered (the publishing microtask)
  'notifyIn', // MmioTransport.notify entered
  'notifyOut', // … returned (the QueueNotify writel done)
  'flushOut',
  'readyIn', // the UIO source's ready() entered: epoll woke, the addon called JS
  'handleIn', // MmioTransport.handleInterrupt entered
  'rearmIn', // rearm(): the write() that unmasks the line, from acknowledged() right after InterruptACK
  'rearmOut',
  'handleOut',
  'readyOut',
  'done', // after await blk.read()
  'next', // before the next blk.read()
] as const;

// ASCII only: scripts/lab/run.js decodes each console chunk on its own, which can split a multi-byte character.
const GAPS: { from: (typeof MARKS)[number]; label: string }[] = [
  { from: 'call', label: 'submit: read() > transferIn > submit > send > enqueue/place > microtask' },
  { from: 'flushIn', label: 'flush: dmaWmb, avail.idx, mb, notification check' },
  { from: 'notifyIn', label: 'notify: QueueNotify writel (trap to QEMU)' },
  { from: 'notifyOut', label: 'flush return' },
  { from: 'flushOut', label: 'wait: device, IRQ, guest kernel, epoll, libuv, addon > JS' },
  // The UIO fd is watched edge-triggered: no read() of it per interrupt (only when epoll flags an error).
  { from: 'readyIn', label: 'ready() to the listener (no read() of the UIO fd: edge-triggered)' },
  { from: 'handleIn', label: 'handleInterrupt to the unmask: status readl, ACK writel' },
  { from: 'rearmIn', label: 'rearm: write() to the UIO fd (unmask)' },
  { from: 'rearmOut', label: 'handleInterrupt after it: used ring, resolve' },
  { from: 'handleOut', label: 'ready() return' },
  { from: 'readyOut', label: 'completion: addon returns, microtasks, promise chain to caller' },
  { from: 'done', label: 'bench loop: record, Math.random, BigInt sector' },
];

type Fn = (...args: unknown[]) => unknown;

/** Replaces `object[name]` (an own property shadowing the prototype's) with a timed wrapper. */
function wrap(object: object, name: string, enter: () => void, exit: () => void): () => void {
  const target = object as Record<string, Fn>;
  const original = target[name];
  if (typeof original !== 'function') throw new Error(`cannot wrap ${name}: not a function`);
  target[name] = function (this: unknown, ...args: unknown[]) {
    enter();
    try {
      return original.apply(this, args);
    } finally {
      exit();
    }
  };
  return () => {
    delete target[name];
  };
}

async function marksPhase(blk: VirtioBlk, transport: MmioTransport, buffer: Buffer, seconds: number) {
  const count = MARKS.length;
  const now = new Float64Array(count);
  const index = Object.fromEntries(MARKS.map((m, i) => [m, i])) as Record<(typeof MARKS)[number], number>;
  let hits = new Uint16Array(count);
  const capacity = Math.max(1000, seconds * 20_000);
  const gaps = GAPS.map(() => new Float64Array(capacity));
  let kept = 0;
  let irregular = 0;
  let pending: Float64Array | undefined; // the previous request's marks, waiting for its 'next'
  const mark = (i: number) => () => {
    now[i] = performance.now();
    hits[i]++;
  };
  const queue = (blk as unknown as { queue(index: number): object }).queue(0);
  const source = transport.interrupts;
  if (!source) throw new Error('the transport has no interrupt source');
  const undo = [
    wrap(queue, 'flush', mark(index.flushIn), mark(index.flushOut)),
    wrap(transport, 'notify', mark(index.notifyIn), mark(index.notifyOut)),
    wrap(transport, 'handleInterrupt', mark(index.handleIn), mark(index.handleOut)),
    wrap(source, 'ready', mark(index.readyIn), mark(index.readyOut)),
    wrap(source, 'rearm', mark(index.rearmIn), mark(index.rearmOut)),
  ];
  const finish = (marks: Float64Array, next: number) => {
    marks[index.next] = next;
    for (let g = 0; g < GAPS.length; g++) {
      const d = marks[index[GAPS[g].from] + 1] - marks[index[GAPS[g].from]];
      if (!(d >= 0)) {
        irregular++;
        return;
      }
    }
    if (kept >= capacity) return;
    for (let g = 0; g < GAPS.length; g++)
      gaps[g][kept] = (marks[index[GAPS[g].from] + 1] - marks[index[GAPS[g].from]]) * 1000;
    kept++;
  };
  let loop: LoopResult;
  try {
    loop = await readLoop(blk, transport, buffer, seconds, {
      beforeRead() {
        const t = performance.now();
        if (pending) finish(pending, t);
        pending = undefined;
        hits = new Uint16Array(count);
        now[index.call] = t;
        hits[index.call] = 1;
      },
      afterRead() {
        now[index.done] = performance.now();
        hits[index.done] = 1;
        // Exactly one pass through every wrapped method, else the request is not comparable.
        let regular = true;
        for (let i = 0; i < count - 1; i++) if (hits[i] !== 1) regular = false;
        if (regular) pending = Float64Array.from(now);
        else irregular++;
      },
    });
  } finally {
    for (const u of undo) u();
  }
  const phases = GAPS.map((g, i) => ({ label: g.label, ...summarize(gaps[i], kept) }));
  const cycleUs = phases.reduce((a, p) => a + p.mean, 0);
  return {
    loop,
    requestsTimed: kept,
    irregular,
    cycleUs,
    phases: phases.map((p) => ({ ...p, pct: (100 * p.mean) / cycleUs })),
  };
}

// ---- Unit costs in this guest ----

/**
 * µs per wake-up of an eventfd line through the event loop, raised from its
 * own listener: a write(), libuv's poll (the event already pending) and the
 * callback into JS; the blocking wait of an interrupt adds a second poll.
 */
function eventfdRoundTrip(count: number): Promise<number> {
  const line = new EventfdInterruptSource('unit cost');
  return new Promise((resolve, reject) => {
    let left = count;
    const t0 = performance.now();
    line.listen(
      () => {
        if (--left > 0) return line.raise(1);
        line.close();
        resolve(((performance.now() - t0) * 1000) / count);
      },
      (error) => {
        line.close();
        reject(error);
      },
    );
    line.raise(1);
  });
}

/** µs per event-loop turn with nothing but an immediate to run (libuv polls once with a zero timeout). */
function immediateTurn(count: number): Promise<number> {
  return new Promise((resolve) => {
    let left = count;
    const t0 = performance.now();
    const next = (): void => {
      if (--left > 0) setImmediate(next);
      else resolve(((performance.now() - t0) * 1000) / count);
    };
    setImmediate(next);
  });
}

/** µs per call of a few operations every request makes, to read the profile with. */
async function calibrate(spec: UioDeviceSpec) {
  // The best of three rounds: the guest's timing is noisy (TCG, a shared host).
  const per = (n: number, f: () => unknown): number => {
    let best = Infinity;
    for (let round = 0; round < 3; round++) {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) f();
      best = Math.min(best, ((performance.now() - t0) * 1000) / n);
    }
    return best;
  };
  const perMicrotaskOnce = (n: number, schedule: (callback: () => void) => void): Promise<number> =>
    new Promise((resolve) => {
      let left = n;
      const t0 = performance.now();
      const callback = (): void => {
        if (--left === 0) resolve(((performance.now() - t0) * 1000) / n);
      };
      for (let i = 0; i < n; i++) schedule(callback);
    });
  const perMicrotask = async (n: number, schedule: (callback: () => void) => void): Promise<number> =>
    Math.min(
      await perMicrotaskOnce(n, schedule),
      await perMicrotaskOnce(n, schedule),
      await perMicrotaskOnce(n, schedule),
    );
  const result: Record<string, number | string> = {
    emptyLoopUs: per(20_000, () => undefined),
    performanceNowUs: per(20_000, () => performance.now()),
    hrtimeBigintUs: per(20_000, () => process.hrtime.bigint()),
    napiMbUs: per(20_000, nativeBarriers.mb),
    napiDmaWmbUs: per(20_000, nativeBarriers.dmaWmb),
    queueMicrotaskUs: await perMicrotask(20_000, queueMicrotask),
    promiseThenUs: await perMicrotask(20_000, (cb) => void Promise.resolve().then(cb)),
  };
  const zero = openSync('/dev/zero', 'r');
  const four = Buffer.alloc(4);
  result.readSyscallUs = per(2000, () => readSync(zero, four, 0, 4, null));
  closeSync(zero);
  result.eventfdLoopUs = Infinity;
  result.immediateTurnUs = Infinity;
  for (let round = 0; round < 3; round++) {
    result.eventfdLoopUs = Math.min(result.eventfdLoopUs, await eventfdRoundTrip(1000));
    result.immediateTurnUs = Math.min(result.immediateTurnUs, await immediateTurn(1000));
  }
  result.awaitUs = Infinity;
  for (let round = 0; round < 3; round++) {
    const t0 = performance.now();
    for (let i = 0; i < 20_000; i++) await undefined;
    result.awaitUs = Math.min(result.awaitUs, ((performance.now() - t0) * 1000) / 20_000);
  }
  try {
    // A second mapping of the device's registers: MagicValue, no side effects.
    const regs = MmioWindow.openUio(spec.device);
    try {
      result.mmioReadlUs = per(2000, () => regs.readl(0));
    } finally {
      regs.close();
    }
  } catch (error) {
    result.mmioReadlUs = `failed: ${(error as Error).message}`;
  }
  return result;
}

// ---- Main ----

function parse(argv: string[]): { seconds: number; intervalUs: number; top: number; warmup: number; mode: QueueMode } {
  let seconds = 10;
  let mode: QueueMode = 'interrupt';
  let warmup = 5;
  let intervalUs = 1000;
  let top = 20;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--interval') intervalUs = Number(argv[++i]);
    else if (argv[i] === '--top') top = Number(argv[++i]);
    else if (argv[i] === '--warmup') warmup = Number(argv[++i]);
    else if (argv[i] === '--mode') mode = argv[++i] as QueueMode;
    else seconds = Number(argv[i]);
  }
  checkQueueMode(mode, '--mode');
  if (!(seconds > 0) || !(intervalUs >= 50) || !(top >= 1) || !(warmup >= 0)) {
    throw new RangeError('usage: blk-profile.js [seconds] [--interval us >= 50] [--top N] [--warmup W]');
  }
  return { seconds, intervalUs, top, warmup, mode };
}

async function main(): Promise<void> {
  const { seconds, intervalUs, top, warmup: warmupSeconds, mode } = parse(process.argv.slice(2));
  const found = scan().find((r) => r.result?.deviceId === DeviceId.BLOCK);
  if (!found) throw new Error('no virtio-blk transport on UIO');
  const memory = DmaPool.hugetlb();
  const transport = openTransport(found.spec as UioDeviceSpec);
  const blk = VirtioBlk.open(transport, { memory, queueMode: mode });
  const buffer = blk.allocBuffer(4096);
  try {
    const warmup = await readLoop(blk, transport, buffer, warmupSeconds);
    const plain = await readLoop(blk, transport, buffer, seconds, {}, true);
    // Before the inspector is ever connected.
    const unitCosts = await calibrate(found.spec as UioDeviceSpec);

    const session = new Session();
    session.connect();
    await post(session, 'Profiler.enable');
    await post(session, 'Profiler.setSamplingInterval', { interval: intervalUs });
    await post(session, 'Profiler.start');
    const profiled = await readLoop(blk, transport, buffer, seconds);
    const { profile } = await post<{ profile: Profiler.Profile }>(session, 'Profiler.stop');
    await post(session, 'Profiler.disable');
    session.disconnect();
    const analysed = analyse(profile, profiled.requests, top);

    const marks = await marksPhase(blk, transport, buffer, seconds);
    const plainAgain = await readLoop(blk, transport, buffer, seconds, {}, true);
    const plainIops = (plain.iops + plainAgain.iops) / 2;

    report({
      kind: 'blk-profile',
      mode,
      node: process.version,
      root: ROOT,
      version: transport.version,
      seconds,
      samplingIntervalUs: intervalUs,
      warmup: { seconds: warmupSeconds, requests: warmup.requests, iops: warmup.iops },
      plain,
      plainAgain,
      profiled: { ...profiled, profile: analysed },
      marks,
      unitCosts,
      overhead: {
        plainIops,
        profilerIopsRatio: profiled.iops / plainIops,
        profilerUsPerRequest: 1e6 / profiled.iops - 1e6 / plainIops,
        marksIopsRatio: marks.loop.iops / plainIops,
        marksUsPerRequest: 1e6 / marks.loop.iops - 1e6 / plainIops,
      },
    });
  } finally {
    blk.freeBuffer(buffer);
    blk.close();
    memory.close();
  }
}

runMain(main);
