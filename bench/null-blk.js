'use strict';
// The library's own cost per QD1 request, with no device time in it: a
// virtio-blk device written here (a RegisterBlock over plain memory) that
// completes every available chain inside the QueueNotify write, as QEMU
// does under TCG, and costs next to nothing itself. VirtioBlk runs in poll
// mode over it, with readInto() and read() in alternating rounds in one
// process; the bench prints µs and bytes allocated per request (median of
// the rounds, min–max). On the host this is the fast signal for the
// library's share of `floor QD1` in bench:lab, where TCG multiplies it
// ~20–40× (README "Benchmarks"); run it with the guest's Node (18) to see
// what the guest's V8 allocates.
//
//   node bench/null-blk.js [--requests N] [--rounds R] [--json]
//
// Needs dist/ and the built addon (the barriers are the addon's).

const v8 = require('node:v8');
const lib = require('../dist/index.js');
const {
  MmioRegister: R,
  MMIO_MAGIC_VALUE,
  SplitRing,
  VirtqDesc,
  BlkStatus,
  availEventOffset,
  availRingBytes,
  descTableBytes,
  usedRingBytes,
} = require('../dist/spec/index.js');
const { median, spread } = require('./stats.js');
const { benchArgs } = require('./args.js');

const { opts, positiveInt } = benchArgs('node bench/null-blk.js [--requests N] [--rounds R] [--json]', {
  requests: { type: 'string' },
  rounds: { type: 'string' },
  json: { type: 'boolean' },
});
const REQUESTS = positiveInt('requests', opts.requests ?? '200000');
const ROUNDS = positiveInt('rounds', opts.rounds ?? '5');

const QUEUE_SIZE = 128;
const CAPACITY_SECTORS = 1n << 21n; // 1 GiB
// What QEMU's virtio-blk offers that changes the ring's work: VERSION_1, INDIRECT_DESC, EVENT_IDX.
const FEATURES = lib.features(lib.FeatureBit.VERSION_1, lib.FeatureBit.INDIRECT_DESC, lib.FeatureBit.EVENT_IDX);

/**
 * A virtio-mmio Version 2 block device with one split queue whose
 * QueueNotify completes what is available at once: status OK, used len =
 * the writable bytes. It trusts the driver (a bench device, not the sim).
 */
function nullBlockDevice(memory) {
  const config = Buffer.alloc(0x100);
  config.writeBigUInt64LE(CAPACITY_SECTORS, 0);
  const regs = new Map(); // what the driver wrote, by offset
  let ring;
  const views = new Map(); // device address → DataView, made once per address
  const view = (address, length) => {
    let v = views.get(address);
    if (v === undefined || v.byteLength < length) {
      const bytes = memory.resolve(BigInt(address), length);
      if (!bytes) throw new RangeError(`null-blk: address 0x${address.toString(16)} is not in the pool`);
      v = new DataView(bytes.buffer, bytes.byteOffset, length);
      views.set(address, v);
    }
    return v;
  };
  const address = (low) => regs.get(low) + regs.get(low + 4) * 2 ** 32;
  const readl = (offset) => {
    if (offset >= 0x100) return config.readUInt32LE(offset - 0x100);
    switch (offset) {
      case R.MagicValue:
        return MMIO_MAGIC_VALUE;
      case R.Version:
        return 2;
      case R.DeviceID:
        return lib.DeviceId.BLOCK;
      case R.VendorID:
        return 0x6e756c6c;
      case R.DeviceFeatures:
        return Number((FEATURES >> BigInt(32 * (regs.get(R.DeviceFeaturesSel) ?? 0))) & 0xffff_ffffn);
      case R.QueueNumMax:
        return QUEUE_SIZE;
      case R.QueueReady:
      case R.Status:
        return regs.get(offset) ?? 0; // read back as written (a reset is Status <- 0)
      default:
        return 0;
    }
  };
  const complete = () => {
    const { desc, avail, used, size } = ring;
    const end = avail.getUint16(SplitRing.AVAIL_IDX, true);
    while (ring.lastAvail !== end) {
      const head = avail.getUint16(SplitRing.AVAIL_RING + 2 * (ring.lastAvail % size), true);
      ring.lastAvail = (ring.lastAvail + 1) & 0xffff;
      let table = desc;
      let i = head;
      let written = 0;
      let last = 0;
      for (;;) {
        const at = SplitRing.DESC_SIZE * i;
        const addr = table.getUint32(at, true) + table.getUint32(at + 4, true) * 2 ** 32;
        const len = table.getUint32(at + SplitRing.DESC_LEN, true);
        const flags = table.getUint16(at + SplitRing.DESC_FLAGS, true);
        if (flags & VirtqDesc.F_INDIRECT) {
          table = view(addr, len);
          i = 0;
          continue;
        }
        if (flags & VirtqDesc.F_WRITE) written += len;
        last = addr;
        if (!(flags & VirtqDesc.F_NEXT)) break;
        i = table.getUint16(at + SplitRing.DESC_NEXT, true);
      }
      view(last, 1).setUint8(0, BlkStatus.OK); // the status byte ends the chain (§5.2.6)
      const slot = SplitRing.USED_RING + SplitRing.USED_ELEM_SIZE * (ring.usedIdx % size);
      used.setUint32(slot, head, true);
      used.setUint32(slot + 4, written, true);
      ring.usedIdx = (ring.usedIdx + 1) & 0xffff;
    }
    used.setUint16(SplitRing.USED_IDX, ring.usedIdx, true);
    // EVENT_IDX (§2.7.10): notify me at the next request.
    used.setUint16(availEventOffset(size), ring.lastAvail, true);
  };
  const writel = (offset, value) => {
    regs.set(offset, value >>> 0);
    if (offset === R.QueueReady) {
      const size = regs.get(R.QueueNum);
      ring = value
        ? {
            size,
            desc: view(address(R.QueueDescLow), descTableBytes(size)),
            avail: view(address(R.QueueDriverLow), availRingBytes(size)),
            used: view(address(R.QueueDeviceLow), usedRingBytes(size)),
            lastAvail: 0,
            usedIdx: 0,
          }
        : undefined;
    } else if (offset === R.QueueNotify && ring) complete();
  };
  return {
    size: 0x200,
    closed: false,
    label: 'null-blk',
    readl,
    readb: (offset) => config[offset - 0x100],
    readw: (offset) => config.readUInt16LE(offset - 0x100),
    writel,
    writeb() {},
    writew() {},
    copyOut(offset, target) {
      config.copy(target, 0, offset - 0x100, offset - 0x100 + target.length);
      return target;
    },
    copyIn() {},
    pollUntil(offset, mask, expected) {
      const value = readl(offset);
      return (value & mask) === expected ? value : null;
    },
    close() {},
  };
}

/** `n` QD1 requests through `api`; µs and bytes allocated per request. */
function round(blk, buffer, api, n) {
  const blocks = Number(blk.info.capacity / 8n);
  return new Promise((resolve, reject) => {
    const profiler = new v8.GCProfiler();
    let left = n;
    const finish = () => {
      const ns = Number(process.hrtime.bigint() - start);
      const usedAfter = v8.getHeapStatistics().used_heap_size;
      let freed = 0;
      for (const gc of profiler.stop().statistics)
        freed += gc.beforeGC.heapStatistics.usedHeapSize - gc.afterGC.heapStatistics.usedHeapSize;
      resolve({ us: ns / 1000 / n, bytes: (usedAfter - usedBefore + freed) / n });
    };
    const done = (error) => {
      if (error) return reject(error);
      if (--left === 0) return finish();
      next();
    };
    const next =
      api === 'readInto'
        ? () => blk.readInto((left % blocks) * 8, buffer, done)
        : () => blk.read((left % blocks) * 8, buffer).then(() => done(null), done);
    profiler.start();
    const usedBefore = v8.getHeapStatistics().used_heap_size;
    const start = process.hrtime.bigint();
    next();
  });
}

async function main() {
  const memory = lib.DmaPool.anonymous();
  const transport = new lib.MmioTransport(nullBlockDevice(memory));
  const blk = lib.VirtioBlk.open(transport, { memory, queueMode: 'poll' });
  const results = { readInto: [], read: [] };
  try {
    const buffer = blk.allocBuffer(4096);
    for (const api of Object.keys(results)) await round(blk, buffer, api, Math.min(REQUESTS, 50_000)); // warm-up
    for (let r = 0; r < ROUNDS; r++)
      for (const api of r % 2 ? ['read', 'readInto'] : ['readInto', 'read'])
        results[api].push(await round(blk, buffer, api, REQUESTS));
  } finally {
    blk.close();
    memory.close();
  }
  const summary = Object.fromEntries(
    Object.entries(results).map(([api, rs]) => {
      const us = spread(rs.map((x) => x.us));
      return [api, { us: us.median, usMin: us.min, usMax: us.max, bytes: median(rs.map((x) => x.bytes)) }];
    }),
  );
  if (opts.json) {
    console.log(JSON.stringify({ node: process.version, requests: REQUESTS, rounds: ROUNDS, ...summary }));
    return;
  }
  console.log(
    `VirtioBlk in poll mode over a device that completes inside the notify (no device time), QD1, ` +
      `${REQUESTS} requests per round, median of ${ROUNDS} rounds, Node ${process.version}`,
  );
  for (const [api, s] of Object.entries(summary)) {
    console.log(
      `null-blk QD1 poll ${api}(): ${s.us.toFixed(3)} µs a request (${s.usMin.toFixed(3)}–${s.usMax.toFixed(3)}), ` +
        `${Math.round(s.bytes)} B allocated a request`,
    );
  }
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
