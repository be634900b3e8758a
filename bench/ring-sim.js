'use strict';
// Ring throughput against the software device, in process: requests/s
// for batches of 1 and of 32 requests (one writable 64-byte buffer each),
// split and packed rings, with EVENT_IDX on and off, and how many Atomics
// operations, notifications and interrupts each batch costs (target for the
// split ring: Atomics ≤ 2 per batch; the packed ring reads each used
// descriptor's flags with one Atomics.load, so it has batch + 1). Both
// batch sizes run side by side in one process, alternating rounds, so the
// ratio between them is what to read; absolute figures depend on the
// machine. The device side (sim) runs on the same thread and is included
// in the time. Then the part of a batch-1 request no ring or queue code
// can shrink: the round trip of an eventfd interrupt alone (the sim's
// line: its write and libuv's epoll wait; the fd sits edge-triggered in
// libuv's own epoll set, so nothing reads it), measured in the
// same process, beside what remains for the sim, the ring and the queue.
//
//   node bench/ring-sim.js [--requests N] [--rounds R] [--json]
//
// Needs dist/ (npx tsc -p tsconfig.build.json) and the built addon.

const lib = require('../dist/index.js');
const { SimDevice } = require('../dist/sim/index.js');
const { EventfdInterruptSource } = require('../dist/platform/eventfd-interrupt-source.js');
const { median } = require('./stats.js');
const { benchArgs } = require('./args.js');

const { opts, positiveInt } = benchArgs('node bench/ring-sim.js [--requests N] [--rounds R] [--json]', {
  requests: { type: 'string' },
  rounds: { type: 'string' },
  json: { type: 'boolean' },
});
const REQUESTS = positiveInt('requests', opts.requests ?? '64000');
const ROUNDS = positiveInt('rounds', opts.rounds ?? '5');
const BATCHES = [1, 32];
const BUFFER_BYTES = 64;

/** The cheapest device: writes 8 bytes into each request. */
const nullModel = {
  deviceId: 42,
  features: 0n,
  queueSizes: [256],
  config: new Uint8Array(0),
  handle(request) {
    request.writable[0][0] = 1;
    return 8;
  },
};

class BenchDriver extends lib.VirtioDriver {
  static open(transport, options) {
    const setup = lib.DriverSetup.begin(transport, options);
    try {
      setup.negotiate(42, 0n);
      setup.setUpQueues([0], 256);
      setup.driverOk();
      return new BenchDriver(setup.finish());
    } catch (error) {
      throw setup.abandon(error);
    }
  }
  constructor(started) {
    super(started);
    this.q = this.queue(0);
    this.buffers = this.memory.allocate(256 * BUFFER_BYTES);
  }
  close() {
    super.close();
    this.memory.free(this.buffers);
  }
}

const MODERN = lib.features(
  lib.FeatureBit.VERSION_1,
  lib.FeatureBit.INDIRECT_DESC,
  lib.FeatureBit.EVENT_IDX,
  lib.FeatureBit.RING_RESET,
  lib.FeatureBit.NOTIFICATION_DATA,
);

function setup(eventIdx, packed) {
  const pool = lib.DmaPool.anonymous();
  const transportFeatures = packed ? MODERN | lib.feature(lib.FeatureBit.RING_PACKED) : MODERN;
  const sim = new SimDevice({ memory: pool, version: 2, model: nullModel, strict: false, transportFeatures });
  const transport = new lib.MmioTransport(sim, { interrupts: sim.interrupt });
  const exclude = eventIdx ? 0n : lib.feature(lib.FeatureBit.EVENT_IDX);
  const driver = BenchDriver.open(transport, { memory: pool, excludeFeatures: exclude });
  return {
    driver,
    sim,
    close() {
      driver.close();
      sim.close();
      pool.close();
    },
  };
}

async function run(rig, batch, total) {
  const { driver } = rig;
  const q = driver.q;
  const before = { ...q.stats, interrupts: rig.sim.stats.interrupts };
  const requests = Array.from({ length: batch }, (_, i) => ({
    writable: [{ region: driver.buffers, offset: i * BUFFER_BYTES, length: BUFFER_BYTES }],
  }));
  const batches = Math.max(1, Math.floor(total / batch));
  const start = process.hrtime.bigint();
  for (let b = 0; b < batches; b++) {
    const pending = new Array(batch);
    for (let i = 0; i < batch; i++) pending[i] = q.submit(requests[i]);
    await Promise.all(pending);
  }
  const ns = Number(process.hrtime.bigint() - start);
  const s = q.stats;
  return {
    requestsPerSecond: (batches * batch * 1e9) / ns,
    atomicsPerBatch: (s.atomics - before.atomics) / batches,
    notificationsPerBatch: (s.notifications - before.notifications) / batches,
    interruptsPerBatch: (rig.sim.stats.interrupts - before.interrupts) / batches,
  };
}

/**
 * µs per round trip of an eventfd interrupt through the event loop, nothing
 * else: raised from its own listener, `count` times in a row.
 */
function eventfdRoundTrip(count) {
  const line = new EventfdInterruptSource('bench round trip');
  return new Promise((resolve, reject) => {
    let left = count;
    let start;
    line.listen(
      () => {
        if (--left > 0) return line.raise(1);
        const us = Number(process.hrtime.bigint() - start) / 1000 / count;
        line.close();
        resolve(us);
      },
      (error) => {
        line.close();
        reject(error);
      },
    );
    start = process.hrtime.bigint();
    line.raise(1);
  });
}

async function main() {
  const results = {};
  const roundTrips = [];
  for (const [ring, eventIdx] of [
    ['split', true],
    ['split', false],
    ['packed', true],
    ['packed', false],
  ]) {
    const rig = setup(eventIdx, ring === 'packed');
    try {
      for (const batch of BATCHES) await run(rig, batch, 2000); // warm-up
      const rounds = Object.fromEntries(BATCHES.map((b) => [b, []]));
      for (let r = 0; r < ROUNDS; r++) {
        for (const batch of BATCHES) rounds[batch].push(await run(rig, batch, REQUESTS));
        // Between the rounds, under the same conditions: the interrupt's round trip alone.
        roundTrips.push(await eventfdRoundTrip(Math.max(1000, Math.floor(REQUESTS / 4))));
      }
      for (const batch of BATCHES) {
        const rs = rounds[batch];
        results[`${ring}/${eventIdx ? 'event_idx' : 'flags'}/batch${batch}`] = {
          requestsPerSecond: Math.round(median(rs.map((x) => x.requestsPerSecond))),
          atomicsPerBatch: median(rs.map((x) => x.atomicsPerBatch)),
          notificationsPerBatch: median(rs.map((x) => x.notificationsPerBatch)),
          interruptsPerBatch: median(rs.map((x) => x.interruptsPerBatch)),
        };
      }
    } finally {
      rig.close();
    }
  }
  const ratio = (mode) => results[`${mode}/batch32`].requestsPerSecond / results[`${mode}/batch1`].requestsPerSecond;
  const modes = ['split/event_idx', 'split/flags', 'packed/event_idx', 'packed/flags'];
  const splitAtomics = Math.max(
    ...Object.entries(results)
      .filter(([k]) => k.startsWith('split/'))
      .map(([, r]) => r.atomicsPerBatch),
  );
  const packedOverSplit = (mode, batch) =>
    results[`packed/${mode}/batch${batch}`].requestsPerSecond /
    results[`split/${mode}/batch${batch}`].requestsPerSecond;
  if (opts.json) {
    console.log(
      JSON.stringify(
        {
          requests: REQUESTS,
          rounds: ROUNDS,
          results,
          batch32OverBatch1: Object.fromEntries(modes.map((m) => [m, ratio(m)])),
          worstSplitAtomicsPerBatch: splitAtomics,
          eventfdRoundTripUs: median(roundTrips),
        },
        null,
        2,
      ),
    );
    return;
  }
  console.log(
    `split and packed rings against the in-process sim, ${REQUESTS} requests per round, median of ${ROUNDS} rounds`,
  );
  console.log('ring/mode/batch              requests/s  atomics/batch  notifies/batch  interrupts/batch');
  for (const [name, r] of Object.entries(results)) {
    console.log(
      `${name.padEnd(27)} ${String(r.requestsPerSecond).padStart(11)}  ` +
        `${r.atomicsPerBatch.toFixed(2).padStart(13)}  ${r.notificationsPerBatch.toFixed(2).padStart(14)}` +
        `  ${r.interruptsPerBatch.toFixed(2).padStart(16)}`,
    );
  }
  console.log(`batch 32 / batch 1 throughput: ${modes.map((m) => `${m} ${ratio(m).toFixed(2)}x`).join(', ')}`);
  console.log(
    `packed / split throughput: event_idx batch1 ${packedOverSplit('event_idx', 1).toFixed(2)}x, ` +
      `batch32 ${packedOverSplit('event_idx', 32).toFixed(2)}` +
      `x; flags batch1 ${packedOverSplit('flags', 1).toFixed(2)}x, batch32 ${packedOverSplit('flags', 32).toFixed(2)}x`,
  );
  const roundTrip = median(roundTrips);
  const [lo, hi] = [Math.min(...roundTrips), Math.max(...roundTrips)];
  for (const mode of ['split/event_idx', 'packed/event_idx']) {
    const us = 1e6 / results[`${mode}/batch1`].requestsPerSecond;
    console.log(
      `${mode} batch 1: ${us.toFixed(1)} µs a request = ` +
        `${roundTrip.toFixed(1)} µs the eventfd interrupt's round trip ` +
        `alone (${lo.toFixed(1)}–${hi.toFixed(1)}; a write and one epoll wait) + ${(us - roundTrip).toFixed(1)} µs ` +
        'the sim, the ring, the queue and the promise',
    );
  }
  console.log(
    `split ring Atomics per batch, worst case: ${splitAtomics.toFixed(2)} (target ≤ 2): ` +
      `${splitAtomics <= 2 ? 'met' : 'NOT met'}`,
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
