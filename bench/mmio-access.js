'use strict';
// MMIO access cost: how long one readl/writel call from JS takes, set against
// what a JS->C++ call costs anyway (empty Node-API and node-addon-api
// functions), a plain typed-array read of the same memory, and the C floor (a
// volatile load/store loop with the same barriers on the same mapping).
// The target is readl and writel <= 3x a raw Node-API no-op call.
//
// The "device" is a one-page temp file mapped with MmioRegion, so this runs
// anywhere without hardware or privileges.
//
//   node bench/mmio-access.js [--iterations N] [--rounds R] [--json]
//
// Needs the built addons and dist/ (npx node-gyp build; npx tsc -p tsconfig.build.json).
// The no-ops, the C loops and the second mapping come from the bench addon
// (bench/native, built beside the library's addon in a checkout, never shipped).

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const bindings = require('bindings');
const { benchArgs } = require('./args.js');
const { native } = require('../dist/platform/addon.js');

const bench = bindings('virtio_mmio_bench');

const { opts, positiveInt } = benchArgs('node bench/mmio-access.js [--iterations N] [--rounds R] [--json]', {
  iterations: { type: 'string' },
  rounds: { type: 'string' },
  json: { type: 'boolean' },
});
const ITERATIONS = positiveInt('iterations', opts.iterations ?? '2000000');
const ROUNDS = positiveInt('rounds', opts.rounds ?? '7');
const WARMUP = 200000;
const OFFSET = 0x10;
// Below 2^30 the values read back are Smis on every V8 build, so no case
// allocates a HeapNumber per call and GC stays out of the loops.
const PATTERN = 0x12340000;

// Each JS case is the same loop around one call. Each gets its own function
// (new Function, not one shared closure taking a callback) so V8 keeps
// separate type feedback and optimized code per case: a shared loop would see
// many callees, go megamorphic, and time the dispatch instead of the call.
// The result goes into acc so the JIT cannot drop the typed-array load.
const CASES = [
  { key: 'readl', label: 'readl (raw accessor)', expr: 'region.readl(off)' },
  { key: 'writel', label: 'writel (raw accessor)', expr: 'region.writel(off, i)' },
  { key: 'readlViaWrapper', label: 'readl (node-addon-api wrapper)', expr: 'region.readlViaWrapper(off)' },
  { key: 'writelViaWrapper', label: 'writel (node-addon-api wrapper)', expr: 'region.writelViaWrapper(off, i)' },
  { key: 'rawNoop', label: 'no-op (raw Node-API)', expr: 'bench.rawNoop()' },
  { key: 'wrappedNoop', label: 'no-op (node-addon-api)', expr: 'bench.wrappedNoop()' },
  { key: 'typedArrayRead', label: 'Uint32Array read', expr: 'u32[idx]' },
].map((c) => ({
  ...c,
  run: new Function(
    'region',
    'bench',
    'u32',
    'off',
    'idx',
    'n',
    `
    let acc = 0;
    for (let i = 0; i < n; i++) acc = (acc + (${c.expr} | 0)) | 0;
    return acc;`,
  ),
}));
// The C loops time themselves (clock_gettime around the loop), so the JS call
// into them is outside the measurement.
const C_CASES = [
  { key: 'cReadLoop', label: 'C volatile load loop (floor)', run: (region, n) => bench.cReadLoop(region, OFFSET, n) },
  {
    key: 'cWriteLoop',
    label: 'C volatile store loop (floor)',
    run: (region, n) => bench.cWriteLoop(region, OFFSET, n),
  },
];

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function measure(region, u32) {
  const args = (n) => [region, bench, u32, OFFSET, OFFSET >>> 2, n];
  let sink = 0;
  for (const c of CASES) sink ^= c.run(...args(WARMUP));
  for (const c of C_CASES) c.run(region, WARMUP);

  const all = [...CASES, ...C_CASES];
  const samples = Object.fromEntries(all.map((c) => [c.key, []]));
  for (let r = 0; r < ROUNDS; r++) {
    // Interleaved so machine drift hits every case alike; the start rotates so
    // no case always runs right after the same neighbour (or a GC).
    for (let k = 0; k < all.length; k++) {
      const c = all[(k + r) % all.length];
      let ns;
      if (c.expr) {
        const a = args(ITERATIONS);
        const t0 = process.hrtime.bigint();
        sink ^= c.run(...a);
        ns = Number(process.hrtime.bigint() - t0);
      } else {
        ns = c.run(region, ITERATIONS);
      }
      samples[c.key].push(ns / ITERATIONS);
    }
  }
  const cases = {};
  for (const c of all) {
    const xs = samples[c.key];
    cases[c.key] = { label: c.label, median: median(xs), min: Math.min(...xs), max: Math.max(...xs), samples: xs };
  }
  return { cases, sink: sink >>> 0 };
}

function ratios(cases) {
  const r = (a, b) => cases[a].median / cases[b].median;
  return {
    'readl/rawNoop': r('readl', 'rawNoop'),
    'writel/rawNoop': r('writel', 'rawNoop'),
    'readl/cReadLoop': r('readl', 'cReadLoop'),
    'writel/cWriteLoop': r('writel', 'cWriteLoop'),
    'readlViaWrapper/readl': r('readlViaWrapper', 'readl'),
    'writelViaWrapper/writel': r('writelViaWrapper', 'writel'),
    'wrappedNoop/rawNoop': r('wrappedNoop', 'rawNoop'),
  };
}
const TARGETS = { 'readl/rawNoop': 3, 'writel/rawNoop': 3 };

function main() {
  const pageSize = native.pageSize;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'virtio-mmio-bench-'));
  const file = path.join(dir, 'page');
  let region;
  try {
    const init = new Uint32Array(pageSize / 4).map((_, i) => PATTERN | i);
    fs.writeFileSync(file, init);
    region = new native.MmioRegion(file, 0, 0, pageSize);
    const u32 = new Uint32Array(bench.mapFileView(file, pageSize));

    // The comparison only means something if all paths touch the same word.
    const expect = PATTERN | (OFFSET >>> 2);
    if (region.readl(OFFSET) !== expect || region.readlViaWrapper(OFFSET) !== expect || u32[OFFSET >>> 2] !== expect) {
      throw new Error('mapped page does not hold the pattern written to the file');
    }
    region.writel(OFFSET, 0x2345);
    if (u32[OFFSET >>> 2] !== 0x2345) throw new Error('typed-array view is not the same memory as the region');

    const { cases, sink } = measure(region, u32);
    report(cases, ratios(cases), sink);
  } finally {
    if (region) region.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function report(cases, ratio, sink) {
  const env = {
    node: process.version,
    arch: process.arch,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    loadavg1: os.loadavg()[0],
    iterations: ITERATIONS,
    rounds: ROUNDS,
    warmup: WARMUP,
    offset: OFFSET,
    pageSize: native.pageSize,
  };
  const targets = Object.fromEntries(
    Object.entries(TARGETS).map(([k, limit]) => [k, { ratio: ratio[k], limit, pass: ratio[k] <= limit }]),
  );
  if (opts.json) {
    console.log(JSON.stringify({ ...env, unit: 'ns/op', cases, ratios: ratio, targets, sink }, null, 2));
    return;
  }
  console.log('virtio-mmio: MMIO access cost from JS');
  console.log(`node ${env.node} (${env.arch}), ${env.cpu}, ${env.cpus} CPUs, loadavg ${env.loadavg1.toFixed(2)}`);
  console.log(
    `${ROUNDS} rounds x ${ITERATIONS} calls per case, interleaved; warm-up ${WARMUP}; ` +
      `offset 0x${OFFSET.toString(16)} of a ${env.pageSize}-byte mapped temp file\n`,
  );
  const rows = Object.values(cases).map((c) => [c.label, c.median, c.min, c.max]);
  const w = Math.max(4, ...rows.map((r) => r[0].length));
  const num = (x) => x.toFixed(2).padStart(8);
  console.log(`${'case'.padEnd(w)} | ns/op (median) |      min |      max`);
  console.log(`${'-'.repeat(w)}-|----------------|----------|---------`);
  for (const [label, med, min, max] of rows) {
    console.log(`${label.padEnd(w)} | ${med.toFixed(2).padStart(14)} | ${num(min)} | ${num(max)}`);
  }
  console.log('');
  for (const [k, v] of Object.entries(ratio)) {
    const t = targets[k];
    console.log(`${k} = ${v.toFixed(2)}x` + (t ? ` (target <= ${t.limit}x): ${t.pass ? 'PASS' : 'FAIL'}` : ''));
  }
  console.log(`\n(sink 0x${sink.toString(16)})`);
}

main();
