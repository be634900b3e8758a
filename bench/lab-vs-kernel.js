'use strict';
// The side-by-side with the kernel. virtio-blk: one boot of the lab guest with two
// identical virtio-blk devices on QEMU's null-co backend (reads return
// zeroes, no host I/O): one bound to the guest kernel's virtio_blk and
// measured with fio, one driven by our VirtioBlk over UIO. The same pattern
// for both: 4 KiB random reads, direct, for a fixed time at queue depth 1
// and 32 — ours in each completion mode (interrupt, poll, hybrid); then a
// second boot with both devices packed=on (Version 2). Prints IOPS, mean and p99 completion latency, notifications (the
// kernel's from QEMU's virtio_queue_notify trace events with --trace, ours
// from the queue's counters) and interrupts (the kernel's from
// /proc/interrupts) per request, and the ratio ours/kernel. virtio-rng:
// a second boot with two virtio-rng devices, one read through the kernel's
// /dev/hwrng, one through our VirtioRng; bytes/s for each.
//
//   node bench/lab-vs-kernel.js [--seconds S] [--legacy] [--trace] [--json]
//
// --trace counts the kernel's notifications through QEMU's trace events;
// tracing slows QEMU (more for the kernel, which notifies once per request),
// so its timings are not comparable with a run without it.
//
// Needs the lab (npm run lab:prepare). The guest runs under TCG, so
// absolute numbers are far below hardware; the ratio is what to read.

const { parseArgs } = require('node:util');
const { runLab, kernelDriverCommands } = require('../scripts/lab/run.js');

let opts;
try {
  ({ values: opts } = parseArgs({ options: { seconds: { type: 'string' }, legacy: { type: 'boolean' }, trace: { type: 'boolean' }, json: { type: 'boolean' } } }));
} catch (error) {
  console.error(`${error.message}\nusage: node bench/lab-vs-kernel.js [--seconds S] [--legacy] [--trace] [--json]`);
  process.exit(2);
}
const SECONDS = Number(opts.seconds ?? '10');
if (!Number.isInteger(SECONDS) || SECONDS < 1 || SECONDS > 600) {
  console.error('--seconds must be an integer in [1, 600]');
  process.exit(2);
}
const DEPTHS = [1, 32];
const KERNEL_NIC = 'a003c00.virtio_mmio'; // the kernel's device: the second -device lands one slot below the first

const MODES = ['interrupt', 'poll', 'hybrid'];

/** The guest's commands for one blk boot: fio on the kernel's device, then ours in each mode. */
function blkCommand(modes) {
  return [
    'set -e',
    ...kernelDriverCommands(KERNEL_NIC, ['virtio_blk']),
    'sleep 1',
    'test -b /dev/vda',
    // The kernel names the device's interrupt after the virtio device (virtio0); sum the per-CPU columns.
    "irqs() { awk '/ virtio0$/ { s = 0; for (i = 2; i <= NF && $i ~ /^[0-9]+$/; i++) s += $i; print s }' /proc/interrupts; }",
    ...DEPTHS.flatMap((qd) => [
      `before=$(irqs)`,
      `echo "@@LAB-FIO-BEGIN ${qd}"`,
      `fio --name=kernel --filename=/dev/vda --direct=1 --rw=randread --bs=4k --ioengine=libaio --iodepth=${qd} --runtime=${SECONDS} --time_based --output-format=json`,
      `echo "@@LAB-FIO-END ${qd} $before $(irqs)"`,
    ]),
    ...modes.flatMap((mode) => DEPTHS.map((qd) => `node scripts/lab/guest/blk-bench.js ${qd} ${SECONDS} ${mode}`)),
  ].join('\n');
}

const rngCommand = [
  'set -e',
  ...kernelDriverCommands(KERNEL_NIC, ['virtio-rng']),
  'sleep 1',
  'test -c /dev/hwrng',
  `node scripts/lab/guest/rng-bench.js ${SECONDS}`,
].join('\n');

function check(run) {
  if (run.timedOut || run.exitCode !== 0) {
    console.error(run.console.split('\n').slice(-40).join('\n'));
    throw new Error(run.timedOut ? 'the guest timed out' : `the guest exited with ${run.exitCode}`);
  }
}

/** One boot with two identical null-co blk devices (split or packed=on): the kernel's figures and ours per mode. */
async function blkBoot(packed, modes) {
  const suffix = packed ? ',packed=on' : '';
  const run = await runLab({
    devices: [`virtio-blk-device,drive=ours${suffix}`, `virtio-blk-device,drive=kernel${suffix}`],
    extraArgs: [
      '-blockdev', 'driver=null-co,node-name=ours,size=1073741824,read-zeroes=on',
      '-blockdev', 'driver=null-co,node-name=kernel,size=1073741824,read-zeroes=on',
      // One line per available-buffer notification QEMU receives, from either device.
      ...(opts.trace ? ['-trace', 'virtio_queue_notify'] : []),
    ],
    legacy: opts.legacy ?? false,
    command: blkCommand(modes),
    timeoutMs: (SECONDS * (4 + 2 * modes.length) * 2 + 120) * 1000,
  });
  check(run);
  const lines = run.console.split('\n');
  const kernel = {};
  for (const qd of DEPTHS) {
    const begin = lines.findIndex((l) => l === `@@LAB-FIO-BEGIN ${qd}`);
    const end = lines.findIndex((l, i) => i > begin && l.startsWith(`@@LAB-FIO-END ${qd} `));
    // QEMU's trace lines (stderr) interleave with fio's JSON (the console): count them, parse the rest.
    const between = lines.slice(begin + 1, end);
    const notifies = between.filter((l) => l.includes('virtio_queue_notify')).length;
    const text = between.filter((l) => !l.includes('virtio_queue_notify')).join('\n');
    const json = JSON.parse(text.slice(text.indexOf('{')));
    const read = json.jobs[0].read;
    const [, , irqBefore, irqAfter] = lines[end].split(' ');
    kernel[qd] = {
      iops: read.iops,
      meanUs: read.clat_ns.mean / 1000,
      p99Us: read.clat_ns.percentile['99.000000'] / 1000,
      requests: read.total_ios,
      interruptsPerRequest: (Number(irqAfter) - Number(irqBefore)) / read.total_ios,
      notificationsPerRequest: notifies > 0 ? notifies / read.total_ios : undefined,
    };
  }
  const ours = run.results.filter((r) => r.kind === 'blk-bench');
  return DEPTHS.map((qd) => ({
    qd,
    ring: packed ? 'packed' : 'split',
    kernel: kernel[qd],
    ours: modes.map((mode) => {
      const o = ours.find((r) => r.iodepth === qd && r.mode === mode);
      return { ...o, ratio: o.iops / kernel[qd].iops };
    }),
  }));
}

async function main() {
  // Both rings (packed: Version 2 only) in every completion mode.
  const rows = [...(await blkBoot(false, MODES)), ...(opts.legacy ? [] : await blkBoot(true, MODES))];
  const rngRun = await runLab({
    devices: ['virtio-rng-device', 'virtio-rng-device'],
    legacy: opts.legacy ?? false,
    command: rngCommand,
    timeoutMs: (SECONDS * 6 + 120) * 1000,
  });
  check(rngRun);
  const rng = rngRun.results.filter((r) => r.kind === 'rng-bench');
  if (opts.json) {
    console.log(JSON.stringify({ seconds: SECONDS, version: opts.legacy ? 1 : 2, blk: rows, rng }, null, 2));
    return;
  }
  const f = (n, d = 0) => (n === undefined ? '-' : n.toFixed(d));
  console.log(`virtio-blk, 4 KiB random reads, null-co backend, ${SECONDS} s per run, virtio-mmio Version ${opts.legacy ? 1 : 2}, guest under TCG`);
  console.log('ring    QD  driver            IOPS      mean µs   p99 µs    notifies/req  interrupts/req  ours/kernel');
  for (const { qd, ring, kernel: k, ours } of rows) {
    const line = (who, r, ratio) =>
      `${ring.padEnd(7)} ${String(qd).padEnd(3)} ${who.padEnd(16)} ${f(r.iops).padStart(8)}  ${f(r.meanUs).padStart(8)}  ${f(r.p99Us).padStart(8)}  ${f(r.notificationsPerRequest, 2).padStart(12)}  ${f(r.interruptsPerRequest, 2).padStart(14)}  ${ratio}`;
    console.log(line('kernel', k, ''));
    for (const o of ours) console.log(line(`ours ${o.mode}`, o, `${o.ratio.toFixed(2)}x`));
  }
  for (const { qd, ring, ours } of rows) {
    console.log(`${ring} QD${qd}: ours/kernel IOPS = ${ours.map((o) => `${o.mode} ${o.ratio.toFixed(2)}x`).join(', ')}${qd === 32 ? ' (goal: >= 1.0)' : ''}`);
  }
  const kernelRng = rng.find((r) => r.driver === 'kernel');
  console.log(`\nvirtio-rng, 4 KiB reads, ${SECONDS} s each`);
  for (const r of rng) {
    console.log(`${r.driver.padEnd(7)} ${String(r.inFlight).padStart(2)} in flight  ${(r.bytesPerSecond / 1024).toFixed(0).padStart(8)} KiB/s  ${(r.bytesPerSecond / kernelRng.bytesPerSecond).toFixed(2)}x the kernel's /dev/hwrng`);
  }
}

main().catch((error) => {
  console.error(`bench/lab-vs-kernel: ${error.message}`);
  process.exit(1);
});
