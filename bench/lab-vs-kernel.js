'use strict';
// The side-by-side with the kernel, interleaved. virtio-blk: one boot of the
// lab guest with two identical virtio-blk devices on QEMU's null-co backend
// (reads return zeroes, no host I/O): one bound to the guest kernel's
// virtio_blk and measured with fio, one driven by our VirtioBlk over UIO,
// and, on that same device in turn, a C program that drives it in a bare
// polled loop (bench/floor/blk-floor.c: the floor). The same pattern for
// all: 4 KiB random reads, direct, for a fixed time at queue depth 1 and 32.
// After a warm-up (a short unmeasured fio run; ours reads unmeasured for
// min(30, 10 S) s first, the time V8 needs under TCG to settle), each depth
// runs R rounds (--pairs) of: kernel fio, ours interrupt,
// ours poll, ours hybrid, the C floor — so each of ours' figures is divided
// by the kernel figure of its own round, taken a few seconds before under
// the same conditions (two runs of the same code can differ 2x from one
// minute to the next here). Then a second boot with both devices packed=on
// (Version 2). virtio-rng: a third boot with two virtio-rng devices, the
// kernel's read through /dev/hwrng, ours through VirtioRng, interleaved
// the same way (kernel, ours 1 in flight, ours 8, R rounds).
//
// Prints per (ring, QD, driver) the medians over the rounds of IOPS, mean
// and p99 completion latency, notifications (the kernel's from QEMU's
// virtio_queue_notify trace events with --trace, ours from the queue's
// counters, the floor's from its own count) and interrupts (the kernel's
// from /proc/interrupts) per request; the median of the per-round ratios
// ours/kernel with their min–max; the same for hybrid over the better of
// interrupt and poll in its round; the floor ratio; GC pauses and bytes
// allocated per request in ours' QD1 runs, and the same QD1 runs once more
// in a process started with V8's low-latency GC flags (LOW_GC_FLAGS) and in
// one reading with VirtioBlk.readInto() (callbacks, no promise per request;
// both split boot only), the latter followed by a C floor run for its own
// floor ratio (`floor QD1 with readInto()`); how busy the host was; the
// wall time. In the split boot, each QD1 round also runs the JavaScript
// floor (scripts/lab/guest/js-floor.ts: the C loop written in JavaScript
// on our platform layer alone, polled, waiting for interrupts through the
// event loop, and with blocking fs calls), which splits "ours / C" into
// what any Node driver pays here and what our library adds; and once per
// split boot, bench/null-blk.js (the library alone, over a device that
// completes inside the notify: no device time) prints the library's own
// µs per QD1 request in this guest beside ours and the C floor.
//
//   node bench/lab-vs-kernel.js [--seconds S] [--pairs N] [--legacy] [--trace] [--kpti-off] [--json]
//
// --seconds: length of each measured run (default 10); --pairs: rounds per
// queue depth (default 3, at least 3: a median and a range need three);
// --trace counts the kernel's notifications through QEMU's trace events;
// tracing slows QEMU (more for the kernel, which notifies once per request),
// so its timings are not comparable with a run without it. --kpti-off:
// an experiment, boots the guest kernel with kpti=0 (Debian's arm64 kernel
// turns page-table isolation on because of KASLR; under TCG each kernel
// entry and exit then switches page tables, which costs a process that
// touches many pages, as a JavaScript one does, a refill of QEMU's
// software TLB). The output's first line says which state the guest ran in.
//
// Needs the lab (npm run lab:prepare). The guest runs under TCG, so
// absolute numbers are far below hardware; the ratios are what to read.

const { parseArgs } = require('node:util');
const { runLab, kernelDriverCommands } = require('../scripts/lab/run.js');
const { watchHost } = require('./host-watch.js');
const { median, spread } = require('./stats.js');

const USAGE = 'usage: node bench/lab-vs-kernel.js [--seconds S] [--pairs N] [--legacy] [--trace] [--kpti-off] [--json]';
let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      seconds: { type: 'string' },
      pairs: { type: 'string' },
      legacy: { type: 'boolean' },
      trace: { type: 'boolean' },
      'kpti-off': { type: 'boolean' },
      json: { type: 'boolean' },
    },
  }));
} catch (error) {
  console.error(`${error.message}\n${USAGE}`);
  process.exit(2);
}
const SECONDS = Number(opts.seconds ?? '10');
if (!Number.isInteger(SECONDS) || SECONDS < 1 || SECONDS > 600) {
  console.error('--seconds must be an integer in [1, 600]');
  process.exit(2);
}
const PAIRS = Number(opts.pairs ?? '3');
if (!Number.isInteger(PAIRS) || PAIRS < 3 || PAIRS > 50) {
  console.error('--pairs must be an integer in [3, 50] (a median and a range need three rounds)');
  process.exit(2);
}
const DEPTHS = [1, 32];
const MODES = ['interrupt', 'poll', 'hybrid'];
const KERNEL_DEV = 'a003c00.virtio_mmio'; // the kernel's device: the second -device lands one slot below the first
const FLOOR = '/opt/virtio-mmio/bench/blk-floor'; // bench/floor/blk-floor.c, built by scripts/lab/prepare.sh
const JS_FLOOR_MODES = ['poll', 'interrupt', 'interrupt-sync']; // scripts/lab/guest/js-floor.ts
const KPTI_OFF = opts['kpti-off'] ?? false;
const WARMUP_FIO_SECONDS = Math.min(2, SECONDS);
// Ours under TCG: V8 needs ~30 s of reading to settle (scripts/lab/guest/blk-bench.ts); shorter for short test runs.
const WARMUP_OURS_SECONDS = Math.min(30, 10 * SECONDS);
const WARMUP_RNG_SECONDS = Math.min(10, 2 * SECONDS);
const GC_PAUSE_TARGET_MS = 5;
// V8 flags for a latency-bound process: a 1 MiB young generation scavenged by the main thread alone (under TCG,
// waking V8's helper threads costs more than their help). Measured in the split boot, QD1, after the main plan.
const LOW_GC_FLAGS = '--max-semi-space-size=1 --single-threaded-gc';
/**
 * Variants of ours' QD1 runs, each in a Node process of its own after the
 * main plan of the split boot (its own warm-up; each round after a kernel
 * run for the ratio): V8's low-latency GC flags with read() (one round),
 * and the callback API (VirtioBlk.readInto) with default flags, the API the
 * issue's targets may be met with (PAIRS rounds, all three modes).
 */
const VARIANTS = [
  {
    key: 'lowGc',
    label: 'lowgc',
    node: `node ${LOW_GC_FLAGS}`,
    api: 'promise',
    modes: MODES,
    rounds: 1,
    what: `node ${LOW_GC_FLAGS}`,
  },
  // With the C floor's run after it: the floor ratio of the callback API (one run).
  {
    key: 'callbacks',
    label: 'cb',
    node: 'node',
    api: 'callback',
    modes: MODES,
    rounds: PAIRS,
    what: 'readInto()',
    floor: true,
  },
];
const ALLOCATION_TARGET_BYTES = 1024;
// bench/null-blk.js in the guest: ~40 µs a request there, so ~1 s a round and a warm-up of 2 s.
const NULL_BLK_ARGS = '--requests 25000 --rounds 3';

const fio = (name, qd, seconds, format) =>
  `fio --name=${name} --filename=/dev/vda --direct=1 --rw=randread --bs=4k --ioengine=libaio --iodepth=${qd} ` +
  `--runtime=${seconds} --time_based --output-format=${format}`;

/**
 * The guest's commands for one blk boot. blk-bench runs the whole plan in
 * one Node process (its start costs ~10 s under TCG) and hands each round's
 * kernel and floor turns to these shell commands, waiting meanwhile.
 */
function blkCommand(variants) {
  // The JavaScript floor, all its modes in one Node process (a start costs seconds here).
  const jsFloor = variants ? [`node scripts/lab/guest/js-floor.js $BENCH_SECONDS ${JS_FLOOR_MODES.join(',')}`] : [];
  // Busy and total ticks of all vCPUs (/proc/stat): how many vCPUs a run kept busy.
  const cpu = "cpu() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat; }";
  const cpuMark = (who) =>
    `echo "@@LAB-CPU ${who} $BENCH_QD $BENCH_ROUND $c0 $(cpu) $(grep -c '^cpu[0-9]' /proc/stat)"`;
  return [
    'set -e',
    // Whether the guest kernel isolates its page tables (it says so at boot), and its command line.
    'echo "@@LAB-KPTI $(dmesg | grep -c \'detected: Kernel page table isolation\') $(cat /proc/cmdline)"',
    ...kernelDriverCommands(KERNEL_DEV, ['virtio_blk']),
    'sleep 1',
    'test -b /dev/vda',
    // The kernel's turn in a round (BENCH_QD, BENCH_ROUND, BENCH_SECONDS from blk-bench).
    "cat > /tmp/kernel-fio.sh <<'EOF'",
    'set -e',
    cpu,
    // The kernel names the device's interrupt after the virtio device (virtio0); sum the per-CPU columns.
    "irqs() { awk '/ virtio0$/ { s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print s }' " +
      '/proc/interrupts; }',
    'before=$(irqs)',
    'echo "@@LAB-FIO-BEGIN $BENCH_QD $BENCH_ROUND"',
    'c0=$(cpu)',
    // lat (submission + completion) is what ours measures around each read; its percentiles need --lat_percentiles.
    `${fio('kernel', '$BENCH_QD', '$BENCH_SECONDS', 'json')} --lat_percentiles=1`,
    cpuMark('kernel'),
    'echo "@@LAB-FIO-END $BENCH_QD $BENCH_ROUND $before $(irqs)"',
    'EOF',
    // The floor's turn: the C program on our device.
    "cat > /tmp/floor.sh <<'EOF'",
    'set -e',
    cpu,
    'c0=$(cpu)',
    `${FLOOR} $BENCH_QD $BENCH_SECONDS`,
    cpuMark('floor'),
    // QD1 of the main plan (numbered rounds): the C floor once more, waiting for interrupts as a UIO driver must.
    'if [ "$BENCH_QD" = 1 ]; then case "$BENCH_ROUND" in [0-9]*)',
    'c0=$(cpu)',
    `${FLOOR} 1 $BENCH_SECONDS interrupt`,
    cpuMark('floor-interrupt'),
    ...jsFloor,
    'esac; fi',
    'EOF',
    // Warm-up, not measured: the kernel's block path and fio through TCG once.
    `${fio('warmup', 32, WARMUP_FIO_SECONDS, 'terse')} > /dev/null`,
    `node scripts/lab/guest/blk-bench.js --depths ${DEPTHS.join(',')} --seconds ${SECONDS} --modes ` +
      `${MODES.join(',')} ` +
      `--rounds ${PAIRS} --warmup ${WARMUP_OURS_SECONDS}` +
      " --before 'sh /tmp/kernel-fio.sh' --after 'sh /tmp/floor.sh'",
    ...(variants ? VARIANTS : []).map(
      (v) =>
        `${v.node} scripts/lab/guest/blk-bench.js --depths 1 --seconds ${SECONDS} --modes ${v.modes.join(',')} ` +
        `--rounds ${v.rounds} --warmup ${WARMUP_OURS_SECONDS}` +
        ` --label ${v.label} --api ${v.api} --before 'sh /tmp/kernel-fio.sh'` +
        `${v.floor ? " --after 'sh /tmp/floor.sh'" : ''}`,
    ),
    // What one scavenge costs here at the least (an empty young generation): beside the pause target.
    ...(variants ? ['node --expose-gc scripts/lab/guest/gc-floor.js 15'] : []),
    // The library alone in this guest (bench/null-blk.js: poll, QD1, no device time), beside the floors.
    ...(variants ? [`nb=$(node bench/null-blk.js --json ${NULL_BLK_ARGS})`, 'echo "@@LAB-NULLBLK $nb"'] : []),
  ].join('\n');
}

const rngCommand = [
  'set -e',
  ...kernelDriverCommands(KERNEL_DEV, ['virtio-rng']),
  'sleep 1',
  'test -c /dev/hwrng',
  `node scripts/lab/guest/rng-bench.js ${SECONDS} ${PAIRS} ${WARMUP_RNG_SECONDS}`,
].join('\n');

function check(run) {
  if (run.timedOut || run.exitCode !== 0) {
    console.error(run.console.split('\n').slice(-40).join('\n'));
    throw new Error(run.timedOut ? 'the guest timed out' : `the guest exited with ${run.exitCode}`);
  }
}

// ---- statistics ----

/** Medians of a run's figures over the rounds. */
function medianRun(runs) {
  const keys = [
    'iops',
    'meanUs',
    'p99Us',
    'notificationsPerRequest',
    'interruptsPerRequest',
    'busyCpus',
    'turnsPerRequest',
    'spinHitsPerRequest',
  ];
  return Object.fromEntries(keys.map((k) => [k, median(runs.map((r) => r?.[k]))]));
}

// ---- the boots ----

/**
 * One boot with two identical null-co blk devices (split or packed=on): every round of the kernel's, ours and the
 * floor.
 */
async function blkBoot(packed) {
  const suffix = packed ? ',packed=on' : '';
  // runs, fio's start, ours' settling, open and close
  const perRound = SECONDS * (3 + MODES.length) + 15 + MODES.length * 3; // + the interrupt floor at QD1
  const variants = !packed;
  // The JavaScript floor's modes, 1 s of warm-up each, and its Node start, in each QD1 round of the split boot.
  const jsFloorSeconds = variants ? PAIRS * (JS_FLOOR_MODES.length * (SECONDS + 1) + 20) : 0;
  const variantRounds = variants ? VARIANTS.reduce((n, v) => n + v.rounds, 0) : 0;
  const run = await runLab({
    devices: [`virtio-blk-device,drive=ours${suffix}`, `virtio-blk-device,drive=kernel${suffix}`],
    extraArgs: [
      '-blockdev',
      'driver=null-co,node-name=ours,size=1073741824,read-zeroes=on',
      '-blockdev',
      'driver=null-co,node-name=kernel,size=1073741824,read-zeroes=on',
      // One line per available-buffer notification QEMU receives, from either device.
      ...(opts.trace ? ['-trace', 'virtio_queue_notify'] : []),
    ],
    append: KPTI_OFF ? ['kpti=0'] : [],
    legacy: opts.legacy ?? false,
    command: blkCommand(variants),
    timeoutMs:
      ((perRound * (PAIRS * DEPTHS.length + variantRounds) +
        jsFloorSeconds +
        WARMUP_OURS_SECONDS * (1 + (variants ? VARIANTS.length : 0)) +
        60) *
        2 +
        300) *
      1000,
  });
  check(run);
  const ring = packed ? 'packed' : 'split';
  const lines = run.console.split('\n');
  const kptiLine = lines.find((l) => l.startsWith('@@LAB-KPTI '));
  const guestKernel = kptiLine && {
    kpti: kptiLine.split(' ')[1] !== '0',
    cmdline: kptiLine.split(' ').slice(2).join(' '),
  };
  const kernelRun = (qd, round) => {
    const begin = lines.findIndex((l) => l === `@@LAB-FIO-BEGIN ${qd} ${round}`);
    const end = lines.findIndex((l, i) => i > begin && l.startsWith(`@@LAB-FIO-END ${qd} ${round} `));
    if (begin < 0 || end < 0) throw new Error(`${ring}: no fio result for QD${qd} round ${round}`);
    // QEMU's trace lines (stderr) interleave with fio's JSON (the console): count them, parse the rest.
    const between = lines.slice(begin + 1, end);
    const notifies = between.filter((l) => l.includes('virtio_queue_notify')).length;
    const text = between.filter((l) => !l.includes('virtio_queue_notify') && !l.startsWith('@@LAB-')).join('\n');
    const read = JSON.parse(text.slice(text.indexOf('{'))).jobs[0].read;
    const [, , , irqBefore, irqAfter] = lines[end].split(' ');
    return {
      iops: read.iops,
      meanUs: read.lat_ns.mean / 1000,
      p99Us: read.lat_ns.percentile['99.000000'] / 1000,
      requests: read.total_ios,
      interruptsPerRequest: (Number(irqAfter) - Number(irqBefore)) / read.total_ios,
      notificationsPerRequest: notifies > 0 ? notifies / read.total_ios : undefined,
      busyCpus: busyCpus('kernel', qd, round),
    };
  };
  /** vCPUs kept busy (0 to 2) from the @@LAB-CPU line of a kernel or floor turn. */
  const busyCpus = (who, qd, round) => {
    const line = lines.find((l) => l.startsWith(`@@LAB-CPU ${who} ${qd} ${round} `));
    if (!line) return undefined;
    const [b0, t0, b1, t1, cpus] = line.split(' ').slice(4).map(Number);
    return (cpus * (b1 - b0)) / (t1 - t0);
  };
  const ours = run.results.filter((r) => r.kind === 'blk-bench' && r.label === undefined);
  const floors = run.results.filter((r) => r.kind === 'blk-floor' && r.mode !== 'interrupt');
  // The C floor in interrupt mode: QD1 of the main plan, one per round, in order.
  const interruptFloors = run.results.filter((r) => r.kind === 'blk-floor' && r.mode === 'interrupt');
  /** A variant's QD1 run in `mode` and round `round`, with its ratio to the kernel's run of that round. */
  const variantRun = (v, mode, round) => {
    const o = run.results.find(
      (r) => r.kind === 'blk-bench' && r.label === v.label && r.mode === mode && r.round === round,
    );
    if (!o) throw new Error(`${ring}: no result of ours with ${v.what} for QD1 ${mode} round ${round}`);
    return { ...o, ratio: o.iops / kernelRun(1, `${v.label}${round}`).iops };
  };
  // Each variant's QD1 runs by mode, medians over its rounds: { lowGc: [...], callbacks: [...] }.
  const variantRuns = variants
    ? Object.fromEntries(
        VARIANTS.map((v) => [
          v.key,
          v.modes.map((mode) => {
            const runs = Array.from({ length: v.rounds }, (_, i) => variantRun(v, mode, i + 1));
            return { mode, ...medianRun(runs), ratio: spread(runs.map((o) => o.ratio)), gc: gcOf(runs), runs };
          }),
        ]),
      )
    : undefined;
  // The callback variant's floor runs come after the main plan's QD1 floors (one per round).
  const callbackFloors = variants ? floors.filter((r) => r.iodepth === 1).slice(PAIRS) : [];
  if (variantRuns && callbackFloors.length && !callbackFloors[0].skipped) {
    const polls = variantRuns.callbacks.find((o) => o.mode === 'poll').runs;
    variantRuns.callbackFloor = {
      ...medianRun(callbackFloors),
      pollIops: median(polls.map((o) => o.iops)),
      ratio: spread(callbackFloors.map((c, i) => c.iops / polls[i]?.iops)),
    };
  }
  // The JavaScript floor, by mode: one result per numbered QD1 round, in order.
  const jsFloors = Object.fromEntries(
    JS_FLOOR_MODES.map((mode) => [mode, run.results.filter((r) => r.kind === 'js-floor' && r.mode === mode)]),
  );
  for (const [mode, results] of Object.entries(jsFloors))
    if (variants && results.length !== PAIRS)
      throw new Error(`${ring}: ${results.length} JavaScript floor results in ${mode} mode, not ${PAIRS}`);
  const gcFloor = variants ? run.results.find((r) => r.kind === 'gc-floor') : undefined;
  if (variants && !gcFloor) throw new Error(`${ring}: no gc-floor result`);
  const nullBlkLine = lines.find((l) => l.startsWith('@@LAB-NULLBLK '));
  const nullBlk = nullBlkLine && JSON.parse(nullBlkLine.slice('@@LAB-NULLBLK '.length));
  if (variants && !nullBlk?.readInto) throw new Error(`${ring}: no bench/null-blk.js result`);
  return DEPTHS.map((qd) => {
    // The floor does not know its round: its results come in order, one per round.
    const floorRuns = floors.filter((r) => r.iodepth === qd);
    const rounds = Array.from({ length: PAIRS }, (_, i) => {
      const round = i + 1;
      const kernel = kernelRun(qd, round);
      const oursRuns = MODES.map((mode) => {
        const o = ours.find((r) => r.iodepth === qd && r.mode === mode && r.round === round);
        if (!o) throw new Error(`${ring}: no result of ours for QD${qd} ${mode} round ${round}`);
        return { ...o, ratio: o.iops / kernel.iops };
      });
      const floor = floorRuns[i] && { ...floorRuns[i], busyCpus: busyCpus('floor', qd, round) };
      const poll = oursRuns.find((o) => o.mode === 'poll');
      // How many times longer ours (poll) takes per request than the C floor: C IOPS / ours poll IOPS.
      const floorRatio = floor && !floor.skipped ? floor.iops / poll.iops : undefined;
      const cIrq = qd === 1 && interruptFloors[i] && !interruptFloors[i].skipped ? interruptFloors[i] : undefined;
      const irq = oursRuns.find((o) => o.mode === 'interrupt');
      const interruptFloor = cIrq && {
        ...cIrq,
        busyCpus: busyCpus('floor-interrupt', qd, round),
        // IOPS ratio against the kernel; and, as for poll, how many times longer ours' interrupt mode takes.
        overKernel: cIrq.iops / kernel.iops,
        oursOverC: cIrq.iops / irq.iops,
      };
      const js = qd === 1 && jsFloors.poll[i] && !jsFloors.poll[i].skipped ? jsFloors : undefined;
      const jsFloor = js && {
        poll: js.poll[i],
        interrupt: js.interrupt[i],
        sync: js['interrupt-sync'][i],
        // Time ratios (how many times longer a request takes), as for the C floor; IOPS ratios against the kernel.
        jsPollOverC: floor && !floor.skipped ? floor.iops / js.poll[i].iops : undefined,
        oursPollOverJs: js.poll[i].iops / poll.iops,
        jsIrqOverKernel: js.interrupt[i].iops / kernel.iops,
        jsIrqOverC: cIrq ? cIrq.iops / js.interrupt[i].iops : undefined,
        oursIrqOverJs: js.interrupt[i].iops / irq.iops,
        syncOverKernel: js['interrupt-sync'][i].iops / kernel.iops,
      };
      // Hybrid against the better of the other two modes in the same round (the target is >= 0.9).
      const [irqIops, pollIops, hybridIops] = ['interrupt', 'poll', 'hybrid'].map(
        (mode) => oursRuns.find((o) => o.mode === mode).iops,
      );
      const hybridOverBest = hybridIops / Math.max(irqIops, pollIops);
      return { round, kernel, ours: oursRuns, floor, floorRatio, interruptFloor, jsFloor, hybridOverBest };
    });
    return {
      ring,
      qd,
      guestKernel,
      rounds,
      kernel: medianRun(rounds.map((r) => r.kernel)),
      ours: MODES.map((mode) => {
        const runs = rounds.map((r) => r.ours.find((o) => o.mode === mode));
        return { mode, ...medianRun(runs), ratio: spread(runs.map((o) => o.ratio)), gc: gcOf(runs) };
      }),
      hybridOverBest: spread(rounds.map((r) => r.hybridOverBest)),
      floor: rounds[0].floor?.skipped
        ? { skipped: rounds[0].floor.skipped }
        : { ...medianRun(rounds.map((r) => r.floor)), ratio: spread(rounds.map((r) => r.floorRatio)) },
      ...(rounds[0].interruptFloor
        ? {
            interruptFloor: {
              ...medianRun(rounds.map((r) => r.interruptFloor)),
              overKernel: spread(rounds.map((r) => r.interruptFloor?.overKernel)),
              oursOverC: spread(rounds.map((r) => r.interruptFloor?.oursOverC)),
            },
          }
        : {}),
      ...(rounds[0].jsFloor ? { jsFloor: jsFloorOf(rounds.map((r) => r.jsFloor)) } : {}),
      ...(qd === 1 && variantRuns ? { ...variantRuns, gcFloor: spread(gcFloor.pausesMs), nullBlk } : {}),
    };
  });
}

/** The JavaScript floor's rounds: medians of each mode's runs, and the per-round ratios' spreads. */
function jsFloorOf(rounds) {
  const ratios = ['jsPollOverC', 'oursPollOverJs', 'jsIrqOverKernel', 'jsIrqOverC', 'oursIrqOverJs', 'syncOverKernel'];
  return {
    poll: medianRun(rounds.map((r) => r.poll)),
    interrupt: medianRun(rounds.map((r) => r.interrupt)),
    sync: medianRun(rounds.map((r) => r.sync)),
    ...Object.fromEntries(ratios.map((k) => [k, spread(rounds.map((r) => r[k]))])),
  };
}

/**
 * Prints the QD1 runs of a variant (other flags, another API) beside ours' usual ones; the longest pause and most bytes
 * per request.
 */
function printVariant(row, runs, tag, title) {
  console.log(title);
  let longestMs = 0;
  let bytes = 0;
  for (const o of runs) {
    const g = o.gc;
    const usual = row.ours.find((p) => p.mode === o.mode);
    longestMs = Math.max(longestMs, g.longestMs);
    bytes = Math.max(bytes, g.bytesPerRequest);
    console.log(
      `gc QD1 ${o.mode} (${row.ring}, ${tag}): ${g.pauses} pauses in ${g.runs} run${g.runs > 1 ? 's' : ''} ` +
        `(${g.markCompacts} mark-compact), longest ${f(g.longestMs, 1)} ` +
        `ms, ${f(g.totalMs, 1)} ms in all; ` +
        `${f(g.bytesPerRequest)} bytes per request; ours/kernel ${x(o.ratio.median)}` +
        `${o.ratio.values.length > 1 ? ` (${range(o.ratio)})` : ''} (usual: ${x(usual.ratio.median)}` +
        `, ${f(usual.gc.bytesPerRequest)} bytes per request)`,
    );
  }
  return { longestMs, bytes };
}

/** GC over a set of ours' runs: pauses, the longest, their total, and bytes allocated per request over all of them. */
function gcOf(runs) {
  const requests = runs.reduce((s, r) => s + r.requests, 0);
  return {
    runs: runs.length,
    pauses: runs.reduce((s, r) => s + r.gcPauses, 0),
    markCompacts: runs.reduce((s, r) => s + r.gcMarkCompacts, 0),
    longestMs: Math.max(...runs.map((r) => r.gcLongestMs)),
    totalMs: runs.reduce((s, r) => s + r.gcTotalMs, 0),
    bytesPerRequest: runs.reduce((s, r) => s + r.allocatedBytes, 0) / requests,
  };
}

async function rngBoot() {
  const run = await runLab({
    devices: ['virtio-rng-device', 'virtio-rng-device'],
    legacy: opts.legacy ?? false,
    command: rngCommand,
    timeoutMs: (((SECONDS * 3 + 5) * PAIRS + 2 * WARMUP_RNG_SECONDS) * 2 + 300) * 1000,
  });
  check(run);
  const results = run.results.filter((r) => r.kind === 'rng-bench');
  const rounds = Array.from({ length: PAIRS }, (_, i) => {
    const round = i + 1;
    const kernel = results.find((r) => r.driver === 'kernel' && r.round === round);
    const ours = results
      .filter((r) => r.driver === 'ours' && r.round === round)
      .map((r) => ({ ...r, ratio: r.bytesPerSecond / kernel.bytesPerSecond }));
    return { round, kernel, ours };
  });
  const inFlight = [...new Set(results.filter((r) => r.driver === 'ours').map((r) => r.inFlight))];
  return {
    rounds,
    kernel: { bytesPerSecond: median(rounds.map((r) => r.kernel.bytesPerSecond)) },
    ours: inFlight.map((n) => {
      const runs = rounds.map((r) => r.ours.find((o) => o.inFlight === n));
      return {
        inFlight: n,
        bytesPerSecond: median(runs.map((o) => o.bytesPerSecond)),
        ratio: spread(runs.map((o) => o.ratio)),
      };
    }),
  };
}

// ---- output ----

const f = (n, d = 0) => (n === undefined || n === null || Number.isNaN(n) ? '-' : n.toFixed(d));
const x = (n) => `${f(n, 2)}x`;
const range = (s) => (s ? `${f(s.min, 2)}–${f(s.max, 2)}x` : '-');
const duration = (ms) => `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;

function print({ blk, rng, host, wallMs, bootMs, guestKernel }) {
  const version = opts.legacy ? 1 : 2;
  if (guestKernel)
    console.log(
      `guest kernel: KPTI ${guestKernel.kpti ? 'on' : 'off'}${KPTI_OFF ? ' (--kpti-off: an experiment)' : ''} ` +
        `(cmdline: ${guestKernel.cmdline})`,
    );
  console.log(`virtio-blk, 4 KiB random reads, null-co backend, virtio-mmio Version ${version}, guest under TCG`);
  console.log(
    `${PAIRS} rounds per queue depth, each: kernel fio, ours interrupt, poll and hybrid (the order rotating ` +
      `by round), the C floor (${SECONDS} s per run),`,
  );
  console.log(
    `after a warm-up (fio ${WARMUP_FIO_SECONDS} s; ours ${WARMUP_OURS_SECONDS} s over its modes and depths, ` +
      `then ${Math.min(0.5, SECONDS / 4)} s before each run);`,
  );
  console.log(
    'figures are medians over the rounds (per-round IOPS in brackets); ours/kernel is the median of the ' +
      'per-round ratios (min–max);',
  );
  console.log(
    "latency is per request, submission to completion (fio's lat; ours around each read); vCPUs busy: of the " +
      "guest's 2, during the run.",
  );
  console.log('The floor (bench/floor/blk-floor.c) drives our device from C in a polled loop on a split ring;');
  console.log(
    '"C interrupt" is the same C loop at QD1 waiting for interrupts through /dev/uioN instead ' +
      '(2 syscalls per interrupt).',
  );
  console.log(
    '"JS" (split boot, QD1, after the C runs of each round) is the same loop in JavaScript on our platform layer ' +
      'alone (scripts/lab/guest/js-floor.ts).',
  );
  console.log(
    '"ours poll / C" is a time ratio: how many times longer a request takes ours in poll mode than the floor',
  );
  console.log('(C IOPS / ours poll IOPS per round, median; 1.00x would be as fast as bare C, higher is slower).');
  console.log('');
  console.log(
    'ring    QD  driver                IOPS  (per round)                 mean µs    p99 µs  notifies/req  ' +
      'interrupts/req  vCPUs busy  ours/kernel (min–max)',
  );
  const perRound = (runs) => `(${runs.map((r) => (r && !r.skipped ? f(r.iops) : '-')).join(' ')})`;
  for (const row of blk) {
    const line = (who, m, runs, ratio) =>
      `${row.ring.padEnd(7)} ${String(row.qd).padEnd(3)} ${who.padEnd(16)} ${f(m.iops).padStart(9)}  ` +
      `${perRound(runs).padEnd(26)} ${f(m.meanUs).padStart(9)} ${f(m.p99Us).padStart(9)}  ` +
      `${f(m.notificationsPerRequest, 2).padStart(12)}  ${f(m.interruptsPerRequest, 2).padStart(14)}  ` +
      `${f(m.busyCpus, 2).padStart(10)}  ${ratio}`;
    console.log(
      line(
        'kernel',
        row.kernel,
        row.rounds.map((r) => r.kernel),
        '',
      ),
    );
    for (const o of row.ours)
      console.log(
        line(
          `ours ${o.mode}`,
          o,
          row.rounds.map((r) => r.ours.find((p) => p.mode === o.mode)),
          `${x(o.ratio.median)} (${range(o.ratio)})`,
        ),
      );
    if (row.floor.skipped)
      console.log(
        `${row.ring.padEnd(7)} ${String(row.qd).padEnd(3)} ${'C floor'.padEnd(16)} skipped (${row.floor.skipped})`,
      );
    else
      console.log(
        line(
          'C floor',
          row.floor,
          row.rounds.map((r) => r.floor),
          `ours poll / C ${x(row.floor.ratio?.median)} (${range(row.floor.ratio)})`,
        ),
      );
    const irqFloor = row.interruptFloor;
    if (irqFloor)
      console.log(
        line(
          'C interrupt',
          irqFloor,
          row.rounds.map((r) => r.interruptFloor),
          `C/kernel ${x(irqFloor.overKernel.median)} (${range(irqFloor.overKernel)})`,
        ),
      );
  }
  console.log('');
  for (const row of blk) {
    console.log(
      `${row.ring} QD${row.qd}: ours/kernel IOPS = ` +
        `${row.ours.map((o) => `${o.mode} ${x(o.ratio.median)}`).join(', ')}` +
        `${row.qd === 32 ? ' (goal: >= 1.0)' : ''}`,
    );
  }
  for (const row of blk)
    console.log(`${row.ring} QD${row.qd} range: ${row.ours.map((o) => `${o.mode} ${range(o.ratio)}`).join(', ')}`);
  const hybridRows = blk.filter((r) => r.hybridOverBest);
  if (hybridRows.length) {
    // Paired per round, as ours/kernel: the three modes run back to back, so slow phases of the guest hit all three.
    console.log(
      `hybrid / the better of interrupt and poll, median of the per-round ratios: ` +
        hybridRows
          .map((r) => `${r.ring} QD${r.qd} ${x(r.hybridOverBest.median)} (${range(r.hybridOverBest)})`)
          .join(', '),
    );
    const worst = hybridRows.reduce((a, b) => (b.hybridOverBest.median < a.hybridOverBest.median ? b : a));
    console.log(
      `hybrid target (>= 0.90x the better mode at every ring and depth): ` +
        `${worst.hybridOverBest.median >= 0.9 ? 'met' : 'NOT met'} (lowest: ${worst.ring} QD${worst.qd} ` +
        `${worst.hybridOverBest.median.toFixed(3)}x)`,
    );
  }
  for (const qd of DEPTHS) {
    const split = blk.find((r) => r.ring === 'split' && r.qd === qd);
    const packed = blk.find((r) => r.ring === 'packed' && r.qd === qd);
    if (split.floor.skipped) {
      console.log(`floor QD${qd}: skipped (${split.floor.skipped})`);
      continue;
    }
    console.log(`floor QD${qd}: ours poll / C = ${x(split.floor.ratio.median)}`);
    console.log(
      `floor QD${qd} range: ${range(split.floor.ratio)} (split ring: C ${f(split.floor.iops)} IOPS, ` +
        `${f(split.floor.meanUs, 1)} ` +
        `µs mean; ours poll ${f(split.ours.find((o) => o.mode === 'poll').iops)} IOPS)` +
        (packed && !packed.floor.skipped
          ? `; ours poll on the packed ring / C = ${x(packed.floor.ratio.median)} (${range(packed.floor.ratio)})`
          : ''),
    );
  }

  // What a user-space driver's interrupt mode can reach here at best: C, two syscalls per interrupt.
  for (const row of blk.filter((r) => r.interruptFloor)) {
    const c = row.interruptFloor;
    console.log(
      `floor QD1 interrupt (${row.ring} boot): ` +
        `C interrupt / kernel = ${x(c.overKernel.median)} (${range(c.overKernel)}); ` +
        `ours interrupt / C interrupt = ${x(c.oursOverC.median)} (${range(c.oursOverC)}) ` +
        `(C: ${f(c.iops)} IOPS, ${f(c.meanUs, 1)} µs mean, ${f(c.interruptsPerRequest, 2)} interrupts per request; ` +
        'a blocking read() of /dev/uioN and an unmasking write() per interrupt)',
    );
  }
  // The same loops in JavaScript: what Node and V8 cost any driver here (JS / C), and what ours adds (ours / JS).
  for (const row of blk.filter((r) => r.jsFloor)) {
    const j = row.jsFloor;
    const us = (m) => `${f(m.meanUs, 1)} µs`;
    console.log(
      `floor QD1 JS poll (${row.ring} boot): JS poll / C = ${x(j.jsPollOverC?.median)} (${range(j.jsPollOverC)}); ` +
        `ours poll / JS poll = ${x(j.oursPollOverJs.median)} (${range(j.oursPollOverJs)}) ` +
        `(JS: ${f(j.poll.iops)} IOPS, ${us(j.poll)} mean)`,
    );
    console.log(
      `floor QD1 JS interrupt (${row.ring} boot): JS interrupt / kernel = ${x(j.jsIrqOverKernel.median)} ` +
        `(${range(j.jsIrqOverKernel)}); JS interrupt / C interrupt = ${x(j.jsIrqOverC?.median)} ` +
        `(${range(j.jsIrqOverC)}); ours interrupt / JS interrupt = ${x(j.oursIrqOverJs.median)} ` +
        `(${range(j.oursIrqOverJs)}) (JS: ${f(j.interrupt.iops)} IOPS, ${us(j.interrupt)} mean, the UIO fd in ` +
        `libuv's epoll set; with a blocking readSync() and writeSync() instead of the event loop: ` +
        `${f(j.sync.iops)} IOPS, ${us(j.sync)} mean, ${x(j.syncOverKernel.median)} the kernel)`,
    );
  }

  // Under TCG an event-loop turn costs ~100-170 µs: how often poll and hybrid hand back to the loop at QD1 matters.
  for (const row of blk.filter((r) => r.qd === 1)) {
    const turns = (runs) =>
      ['poll', 'hybrid']
        .map((m) => runs?.find((o) => o.mode === m))
        .map((o) => `${o?.mode} ${f(o?.turnsPerRequest, 3)} (spin hits ${f(o?.spinHitsPerRequest, 2)})`)
        .join(', ');
    console.log(
      `QD1 event-loop turns per request (${row.ring}): read() ${turns(row.ours)}` +
        (row.callbacks ? `; readInto() ${turns(row.callbacks)}` : ''),
    );
  }

  console.log('');
  console.log(
    `GC in ours' QD1 runs (${PAIRS} runs per mode; pauses from 'gc' performance entries, bytes from ` +
      `v8.GCProfiler + used-heap growth):`,
  );
  let longest = { ms: 0 };
  let most = { bytes: 0 };
  for (const row of blk.filter((r) => r.qd === 1)) {
    for (const o of row.ours) {
      const g = o.gc;
      console.log(
        `gc QD1 ${o.mode} (${row.ring}): ${g.pauses} pauses in ${g.runs} runs (${g.markCompacts} ` +
          `mark-compact), longest ${f(g.longestMs, 1)} ms, ${f(g.totalMs, 1)} ms in all; ${f(g.bytesPerRequest)} ` +
          `bytes allocated per request`,
      );
      if (g.longestMs >= longest.ms) longest = { ms: g.longestMs, where: `${row.ring} ${o.mode}` };
      if (g.bytesPerRequest >= most.bytes) most = { bytes: g.bytesPerRequest, where: `${row.ring} ${o.mode}` };
    }
  }
  console.log(
    `gc targets, QD1: no pause over ${GC_PAUSE_TARGET_MS} ms: ` +
      `${longest.ms <= GC_PAUSE_TARGET_MS ? 'met' : 'NOT met'} ` +
      `(longest ${f(longest.ms, 1)} ms, ${longest.where}); ` +
      `<= 1 KiB allocated per request: ${most.bytes <= ALLOCATION_TARGET_BYTES ? 'met' : 'NOT met'} ` +
      `(most ${f(most.bytes)} ` +
      `bytes, ${most.where})`,
  );
  const variantRow = blk.find((r) => r.qd === 1 && r.lowGc);
  if (variantRow) {
    const where = (rounds) =>
      `${variantRow.ring}, QD1, ${rounds === 1 ? 'one run' : `${rounds} rounds`} per mode in a process of its own, ` +
      `after its own warm-up; ours/kernel against the kernel's run just before each round`;
    const flags = printVariant(
      variantRow,
      variantRow.lowGc,
      'low-GC flags',
      `GC with node ${LOW_GC_FLAGS} (${where(1)}):`,
    );
    console.log(
      `gc target with low-GC flags, QD1: no pause over ${GC_PAUSE_TARGET_MS} ms: ` +
        `${flags.longestMs <= GC_PAUSE_TARGET_MS ? 'met' : 'NOT met'} ` +
        `(longest ${f(flags.longestMs, 1)} ms)`,
    );
    const callbacks = printVariant(
      variantRow,
      variantRow.callbacks,
      'readInto',
      `The callback API, VirtioBlk.readInto() (default flags; ${where(PAIRS)}):`,
    );
    const cb = (mode) => variantRow.callbacks.find((o) => o.mode === mode);
    console.log(
      `${variantRow.ring} QD1 readInto(): ours/kernel IOPS = ` +
        MODES.map((m) => `${m} ${x(cb(m).ratio.median)}`).join(', '),
    );
    console.log(
      `${variantRow.ring} QD1 readInto() range: ${MODES.map((m) => `${m} ${range(cb(m).ratio)}`).join(', ')}`,
    );
    console.log(
      `allocation target with readInto(), QD1: <= 1 KiB per request: ` +
        `${callbacks.bytes <= ALLOCATION_TARGET_BYTES ? 'met' : 'NOT met'} ` +
        `(most ${f(callbacks.bytes)} bytes)`,
    );
    console.log(
      `gc target with readInto(), QD1: no pause over ${GC_PAUSE_TARGET_MS} ms: ` +
        `${callbacks.longestMs <= GC_PAUSE_TARGET_MS ? 'met' : 'NOT met'} ` +
        `(longest ${f(callbacks.longestMs, 1)} ms)`,
    );
    const cf = variantRow.callbackFloor;
    if (cf) {
      console.log(
        `floor QD1 with readInto(): ours poll / C = ${x(cf.ratio.median)} (${range(cf.ratio)}; a C run after ` +
          `each round above: C ${f(cf.iops)} IOPS, ${f(cf.meanUs, 1)} µs mean; ours poll with readInto() ` +
          `${f(cf.pollIops)} IOPS)`,
      );
      // Where the floor's gap goes: the library's own work, measured apart from any device.
      const nb = variantRow.nullBlk;
      console.log(
        `library alone in this guest (bench/null-blk.js: poll, QD1, a device that completes inside the notify, ` +
          `Node ${nb.node}): readInto() ${f(nb.readInto.us, 1)} µs a request (${f(nb.readInto.usMin, 1)}–` +
          `${f(nb.readInto.usMax, 1)}), read() ${f(nb.read.us, 1)} µs; beside ours poll with readInto() ` +
          `${f(1e6 / cf.pollIops, 1)} µs and the C floor ${f(cf.meanUs, 1)} µs a request`,
      );
    }
    const floor = variantRow.gcFloor;
    console.log(
      `gc floor: a scavenge of an empty young generation pauses ${f(floor.median, 1)} ms (median of ` +
        `${floor.values.length}` +
        `; ${f(floor.min, 1)}–${f(floor.max, 1)}) in this guest ` +
        `(node --expose-gc, gc({ type: 'minor' }), the library loaded)` +
        (floor.median >= GC_PAUSE_TARGET_MS
          ? `: at or above the ${GC_PAUSE_TARGET_MS} ms target, which only a run with no scavenge at all can meet`
          : ''),
    );
  }

  console.log(
    `\nvirtio-rng, 4 KiB reads, ${PAIRS} rounds of kernel, ours 1 in flight, ours 8 (${SECONDS} s each; ` +
      `warm-up: kernel ${WARMUP_RNG_SECONDS} s, ours ${2 * WARMUP_RNG_SECONDS} s); medians`,
  );
  console.log(
    `kernel   1 in flight  ${f(rng.kernel.bytesPerSecond / 1024).padStart(8)} KiB/s  (` +
      `${rng.rounds.map((r) => f(r.kernel.bytesPerSecond / 1024)).join(' ')})`,
  );
  for (const o of rng.ours) {
    const runs = rng.rounds.map((r) => r.ours.find((p) => p.inFlight === o.inFlight));
    console.log(
      `ours    ${String(o.inFlight).padStart(2)} in flight  ${f(o.bytesPerSecond / 1024).padStart(8)} KiB/s  ` +
        `(${runs.map((r) => f(r.bytesPerSecond / 1024)).join(' ')})  ${x(o.ratio.median)} the kernel's ` +
        `/dev/hwrng (${range(o.ratio)})`,
    );
  }
  const at = (n) => rng.ours.find((o) => o.inFlight === n);
  console.log(`rng: ours/kernel = ${x(at(1).ratio.median)} at 1 in flight, ${x(at(8).ratio.median)} at 8`);
  console.log(`rng range: ${range(at(1).ratio)} at 1 in flight, ${range(at(8).ratio)} at 8`);

  console.log('');
  console.log(
    `host during the bench: ${f(host.busyPct)}% busy of ${host.cpus} CPUs; other processes used ${f(host.otherCpuS)} ` +
      `CPU-s, other QEMUs seen: ${host.otherQemus}` +
      (host.otherQemus > 0 || host.otherCpuS > 0.05 * (wallMs / 1000)
        ? ' (shared host: absolute figures slowed; the per-round ratios are less affected)'
        : ''),
  );
  console.log(
    `wall time: ${duration(wallMs)} (${Object.entries(bootMs)
      .map(([k, ms]) => `${k} boot ${duration(ms)}`)
      .join(', ')})`,
  );
}

async function main() {
  const began = Date.now();
  const watch = watchHost();
  const bootMs = {};
  const timed = async (name, fn) => {
    const t = Date.now();
    const result = await fn();
    bootMs[name] = Date.now() - t;
    console.error(`lab-vs-kernel: ${name} boot done in ${duration(bootMs[name])}`);
    return result;
  };
  // Both rings (packed: Version 2 only) in every completion mode.
  const blk = [
    ...(await timed('split', () => blkBoot(false))),
    ...(opts.legacy ? [] : await timed('packed', () => blkBoot(true))),
  ];
  const rng = await timed('rng', rngBoot);
  const host = watch.stop();
  const wallMs = Date.now() - began;
  if (opts.json) {
    console.log(
      JSON.stringify(
        {
          seconds: SECONDS,
          pairs: PAIRS,
          version: opts.legacy ? 1 : 2,
          warmUpSeconds: {
            fio: WARMUP_FIO_SECONDS,
            ours: WARMUP_OURS_SECONDS,
            oursRng: 2 * WARMUP_RNG_SECONDS,
            kernelRng: WARMUP_RNG_SECONDS,
          },
          blk,
          rng,
          host,
          wallSeconds: wallMs / 1000,
          bootSeconds: Object.fromEntries(Object.entries(bootMs).map(([k, ms]) => [k, ms / 1000])),
        },
        null,
        2,
      ),
    );
    return;
  }
  print({ blk, rng, host, wallMs, bootMs, guestKernel: blk[0].guestKernel });
}

main().catch((error) => {
  console.error(`bench/lab-vs-kernel: ${error.message}`);
  process.exit(1);
});
