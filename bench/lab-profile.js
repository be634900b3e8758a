'use strict';
// Where one QD1 read goes. One boot of the lab guest with a virtio-blk
// device on QEMU's null-co backend (the same -blockdev as
// bench/lab-vs-kernel.js) driven by our VirtioBlk, and by default a second,
// identical one bound to the guest kernel's virtio_blk, measured first with
// fio at iodepth 1 for the reference. Then scripts/lab/guest/blk-profile.js
// runs the QD1 read loop three times in one process: plain (requests/s,
// time in and between reads, event-loop idle time, GC), under V8's CPU
// profiler (self time by category and the top functions), and with
// timestamps from wrapped methods (the per-request phases). Prints the
// breakdown, ours vs the kernel, and what the profiler and the wrappers
// cost.
//
//   node bench/lab-profile.js [--seconds S] [--legacy] [--json] [--interval µs] [--no-kernel] [--kpti-off] [--mode
// interrupt|poll|hybrid]
//
// --seconds: length of each phase (default 10); --interval: the profiler's
// sampling interval in µs (default 1000); --no-kernel: no second device, no
// fio; --kpti-off: an experiment, boots the guest kernel with kpti=0 (the
// Debian arm64 kernel forces page-table isolation on because of KASLR, and
// under TCG every syscall and interrupt then switches ASIDs, which flushes
// QEMU's software TLB). The command line run.js passes is repeated here with
// kpti=0 added; QEMU keeps the last -append. The printed header says which
// state the guest ran in.
//
// Needs the lab (npm run lab:prepare). The guest runs under TCG, and the host
// has few CPUs: another QEMU running at the same time slows every figure,
// so the run reports how busy the host was.

const { parseArgs } = require('node:util');
const { runLab, kernelDriverCommands } = require('../scripts/lab/run.js');
const { watchHost } = require('./host-watch.js');

const USAGE =
  'usage: node bench/lab-profile.js [--seconds S] [--legacy] [--json] [--interval µs] [--no-kernel] ' +
  '[--kpti-off] [--mode interrupt|poll|hybrid]';
let opts;
try {
  ({ values: opts } = parseArgs({
    options: {
      seconds: { type: 'string' },
      legacy: { type: 'boolean' },
      json: { type: 'boolean' },
      interval: { type: 'string' },
      'no-kernel': { type: 'boolean' },
      'kpti-off': { type: 'boolean' },
      mode: { type: 'string' },
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
const INTERVAL = Number(opts.interval ?? '1000');
if (!Number.isInteger(INTERVAL) || INTERVAL < 50 || INTERVAL > 100_000) {
  console.error('--interval must be an integer number of µs in [50, 100000]');
  process.exit(2);
}
const MODE = opts.mode ?? 'interrupt';
if (!['interrupt', 'poll', 'hybrid'].includes(MODE)) {
  console.error(`--mode must be interrupt, poll or hybrid\n${USAGE}`);
  process.exit(2);
}
const KERNEL = !opts['no-kernel'];
const KERNEL_DEV = 'a003c00.virtio_mmio'; // the second -device lands one slot below the first

const KPTI_OFF = opts['kpti-off'] ?? false;
const APPEND = 'console=ttyAMA0 quiet panic=-1'; // scripts/lab/run.js's

const command = [
  'set -e',
  // Whether the guest kernel isolates its page tables (the line is absent when it does not).
  'echo "@@LAB-KPTI $(dmesg | grep -c \'detected: Kernel page table isolation\') $(cat /proc/cmdline)"',
  ...(KERNEL
    ? [
        ...kernelDriverCommands(KERNEL_DEV, ['virtio_blk']),
        'sleep 1',
        'test -b /dev/vda',
        'echo "@@LAB-FIO-BEGIN"',
        `fio --name=kernel --filename=/dev/vda --direct=1 --rw=randread --bs=4k --ioengine=libaio --iodepth=1 ` +
          `--runtime=${SECONDS} --time_based --output-format=json`,
        'echo "@@LAB-FIO-END"',
      ]
    : []),
  `node scripts/lab/guest/blk-profile.js ${SECONDS} --interval ` +
    `${INTERVAL} --warmup ${Math.min(5, SECONDS)} --mode ${MODE}`,
].join('\n');

// ---- How busy the host was (other QEMUs share its few CPUs) ----

/** watchHost() with the moments of this bench: fio starting, our program starting, its result. */
function watchThisRun() {
  const watch = watchHost();
  const onConsole = (line) => {
    if (line === '@@LAB-FIO-BEGIN') watch.mark('fio');
    else if (line === '@@LAB-FIO-END' || (line === '@@LAB-READY' && !KERNEL)) watch.mark('ours');
    else if (line.startsWith('@@LAB-RESULT ')) watch.mark('result');
  };
  const stop = () => ({
    ...watch.stop(),
    otherCpuSDuringFio: watch.between('fio', 'ours'),
    otherCpuSDuringOurs: watch.between('ours', 'result'),
  });
  return { stop, onConsole };
}

// ---- Reading the results ----

function check(run) {
  if (run.timedOut || run.exitCode !== 0) {
    console.error(run.console.split('\n').slice(-40).join('\n'));
    throw new Error(run.timedOut ? 'the guest timed out' : `the guest exited with ${run.exitCode}`);
  }
}

function fioResult(consoleText) {
  const lines = consoleText.split('\n');
  const begin = lines.indexOf('@@LAB-FIO-BEGIN');
  const end = lines.indexOf('@@LAB-FIO-END');
  if (begin < 0 || end < begin) throw new Error('no fio output on the console');
  const text = lines.slice(begin + 1, end).join('\n');
  const read = JSON.parse(text.slice(text.indexOf('{'))).jobs[0].read;
  return {
    iops: read.iops,
    requests: read.total_ios,
    clatMeanUs: read.clat_ns.mean / 1000,
    latMeanUs: read.lat_ns.mean / 1000,
    p99Us: read.clat_ns.percentile['99.000000'] / 1000,
  };
}

const f = (n, d = 0) => (n === undefined || n === null || Number.isNaN(n) ? '-' : n.toFixed(d));
const pad = (s, n) => String(s).padStart(n);

function print(result) {
  const { guest: g, kernel: k, host, guestKernel } = result;
  const p = g.profiled.profile;
  console.log(
    `virtio-blk QD1, ${g.mode ?? 'interrupt'} mode, 4 KiB random reads, null-co backend, virtio-mmio ` +
      `Version ${g.version}` +
      `, ${SECONDS} s per phase, guest under TCG (Node ${g.node})`,
  );
  if (guestKernel)
    console.log(`guest kernel: KPTI ${guestKernel.kpti ? 'on' : 'off'} (cmdline: ${guestKernel.cmdline})`);
  const shared = host.otherQemus > 0 || host.otherCpuS > 0.05 * host.wallS;
  const during = [
    host.otherCpuSDuringFio !== undefined ? `${f(host.otherCpuSDuringFio, 1)} during fio` : undefined,
    host.otherCpuSDuringOurs !== undefined ? `${f(host.otherCpuSDuringOurs, 1)} during ours` : undefined,
  ].filter(Boolean);
  console.log(
    `host during the run (${f(host.wallS)} s): ${f(host.busyPct)}% busy of ${host.cpus} CPUs; other processes ` +
      `used ${f(host.otherCpuS, 1)} CPU-s` +
      `${during.length ? ` (${during.join(', ')})` : ''}, other QEMUs seen: ${host.otherQemus}` +
      `${shared ? '  (shared host: figures may be slowed)' : ''}`,
  );

  console.log('\nThroughput                     IOPS   µs/req   mean µs   p50 µs   p99 µs   epoll idle');
  if (k) {
    console.log(
      `kernel (fio libaio, clat)   ${pad(f(k.iops), 7)}  ${pad(f(1e6 / k.iops), 7)}  ` +
        `${pad(f(k.clatMeanUs), 8)}        ` +
        `-  ${pad(f(k.p99Us), 7)}            -   (lat incl. submit: ${f(k.latMeanUs)} µs)`,
    );
  }
  const ours = (label, r) =>
    console.log(
      `${label.padEnd(27)} ${pad(f(r.iops), 7)}  ${pad(f(1e6 / r.iops), 7)}  ` +
        `${pad(f(r.readUs.mean), 8)}  ${pad(f(r.readUs.p50), 7)}  ${pad(f(r.readUs.p99), 7)}  ` +
        `${pad(f(r.loop.idlePct, 1), 10)}%`,
    );
  ours('ours, plain (in read())', g.plain);
  ours('ours, CPU profiler on', g.profiled);
  ours('ours, wrapped marks', g.marks.loop);
  ours('ours, plain again', g.plainAgain);
  console.log(
    'µs/req = 1e6 / IOPS, the whole cycle; "mean" is the ' +
      'completion latency (fio clat; ours: time in await blk.read()).',
  );
  const plainIops = g.overhead.plainIops;
  console.log(
    `phases in this order, after a ${g.warmup.seconds} s warm-up at ${f(g.warmup.iops)} IOPS: plain, CPU ` +
      `profiler, marks, plain again`,
  );
  console.log(
    `ours, plain: ${f(g.plain.betweenUs.mean)} µs mean between reads (the loop), GC ${g.plain.gc.count}` +
      `× ${f(g.plain.gc.ms, 1)} ` +
      `ms in ${SECONDS} s, ` +
      `${f(g.plain.interruptsPerRequest, 2)} interrupts and ${f(g.plain.notificationsPerRequest, 2)} ` +
      `notifications per request`,
  );
  if (k) {
    console.log(
      `ours (mean of the two plain phases, ${f(plainIops)} IOPS) / kernel: IOPS ${f(plainIops / k.iops, 2)}x, ` +
        `cycle ${f(1e6 / plainIops - 1e6 / k.iops)} µs longer per request`,
    );
  }

  const o = g.overhead;
  console.log(
    `\nOverhead: CPU profiler (${g.samplingIntervalUs} µs ` +
      `sampling) IOPS ×${f(o.profilerIopsRatio, 2)} (+` +
      `${f(o.profilerUsPerRequest)} µs/req); wrapped marks IOPS ` +
      `×${f(o.marksIopsRatio, 2)} (+${f(o.marksUsPerRequest)} ` +
      `µs/req), against the mean of the plain phases`,
  );

  console.log(
    `\nCPU profile: ${p.samples} samples over ${f(p.wallMs)} ms wall (${f(p.sampledMs)} ms covered), ` +
      `${g.profiled.requests} ` +
      `requests; self time by category`,
  );
  console.log('category                                      ms       %    µs/req');
  for (const c of p.categories)
    console.log(`${c.name.padEnd(40)} ${pad(f(c.ms), 8)}  ${pad(f(c.pct, 1), 6)}  ${pad(f(c.usPerRequest), 8)}`);
  console.log('  native (no script) charged to its nearest JS caller:');
  for (const c of p.nativeByCaller)
    console.log(`  ${c.name.padEnd(38)} ${pad(f(c.ms), 8)}  ${pad(f(c.pct, 1), 6)}  ${pad(f(c.usPerRequest), 8)}`);
  const profIdle = p.categories.find((c) => c.name === '(idle)');
  console.log(
    `  cross-check: profiler (idle) ${f(profIdle?.pct ?? 0, 1)}% vs libuv epoll idle ${f(g.profiled.loop.idlePct, 1)}` +
      `% in the same phase ` +
      "((idle) also holds the poll phase's native code before JS is entered)",
  );

  console.log(`\nTop ${p.topSelf.length} functions by self time`);
  console.log('  self ms      %   total %  function                       where');
  for (const r of p.topSelf)
    console.log(
      `${pad(f(r.selfMs), 9)}  ${pad(f(r.selfPct, 1), 5)}  ${pad(f(r.totalPct, 1), 8)}  ` +
        `${r.name.padEnd(30)} ${r.where || `(${r.category})`}`,
    );
  console.log(`\nTop ${p.topTotal.length} functions by total time (self + callees)`);
  console.log(' total ms      %    self %  function                       where');
  for (const r of p.topTotal)
    console.log(
      `${pad(f(r.totalMs), 9)}  ${pad(f(r.totalPct, 1), 5)}  ${pad(f(r.selfPct, 1), 8)}  ` +
        `${r.name.padEnd(30)} ${r.where || `(${r.category})`}`,
    );

  const u = g.unitCosts;
  const uc = (v) => (typeof v === 'number' ? f(v, 1) : v);
  console.log(
    `\nUnit costs in this guest, µs per call: empty loop ${uc(u.emptyLoopUs)}, performance.now() ` +
      `${uc(u.performanceNowUs)}` +
      `, hrtime.bigint() ${uc(u.hrtimeBigintUs)}, ` +
      `N-API call mb() ${uc(u.napiMbUs)}, dmaWmb() ${uc(u.napiDmaWmbUs)}, MMIO readl (trap to QEMU) ` +
      `${uc(u.mmioReadlUs)}` +
      `, fs.readSync 4 B of /dev/zero (one read() syscall) ${uc(u.readSyscallUs)}, ` +
      `queueMicrotask ${uc(u.queueMicrotaskUs)}, Promise.then ${uc(u.promiseThenUs)}, await ${uc(u.awaitUs)}, ` +
      `an eventfd wake-up through the event loop (write, poll, callback) ${uc(u.eventfdLoopUs)}, ` +
      `an event-loop turn for an immediate ${uc(u.immediateTurnUs)}`,
  );
  console.log(
    '("[native] <- f": time inside N-API/V8 API functions called from f; V8 gives all N-API functions one ' +
      'name, so they are told apart by caller)',
  );

  const m = g.marks;
  console.log(
    `\nPer-request phases from wrapped methods (${m.requestsTimed} requests timed, ${m.irregular} irregular ` +
      `skipped; sum of means ${f(m.cycleUs)} µs)`,
  );
  console.log('   mean µs   p50 µs   p99 µs      %  phase');
  for (const ph of m.phases)
    console.log(
      `${pad(f(ph.mean), 10)}  ${pad(f(ph.p50), 7)}  ${pad(f(ph.p99), 7)}  ${pad(f(ph.pct, 1), 5)}  ${ph.label}`,
    );
  console.log(
    `(each phase also carries about one performance.now() call, ~${uc(u.performanceNowUs)} µs, and a wrapper call)`,
  );
}

async function main() {
  const watch = watchThisRun();
  const run = await runLab({
    devices: KERNEL
      ? ['virtio-blk-device,drive=ours', 'virtio-blk-device,drive=kernel']
      : ['virtio-blk-device,drive=ours'],
    extraArgs: [
      '-blockdev',
      'driver=null-co,node-name=ours,size=1073741824,read-zeroes=on',
      ...(KERNEL ? ['-blockdev', 'driver=null-co,node-name=kernel,size=1073741824,read-zeroes=on'] : []),
      ...(KPTI_OFF ? ['-append', `${APPEND} kpti=0`] : []),
    ],
    legacy: opts.legacy ?? false,
    command,
    timeoutMs: (SECONDS * 12 + 180) * 1000,
    onConsole: watch.onConsole,
  });
  const host = watch.stop();
  check(run);
  const guest = run.results.find((r) => r.kind === 'blk-profile');
  if (!guest) throw new Error('the guest printed no blk-profile result');
  const kptiLine = run.console.split('\n').find((l) => l.startsWith('@@LAB-KPTI '));
  const guestKernel = kptiLine
    ? { kpti: kptiLine.split(' ')[1] !== '0', cmdline: kptiLine.split(' ').slice(2).join(' ') }
    : undefined;
  const result = { seconds: SECONDS, host, guestKernel, kernel: KERNEL ? fioResult(run.console) : undefined, guest };
  if (opts.json) console.log(JSON.stringify(result, null, 2));
  else print(result);
}

main().catch((error) => {
  console.error(`bench/lab-profile: ${error.message}`);
  process.exit(1);
});
