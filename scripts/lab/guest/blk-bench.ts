/**
 * Runs in the lab guest: 4 KiB random reads through our VirtioBlk on the
 * first virtio-blk transport left on UIO, at a given queue depth for a
 * given time (after an unmeasured warm-up of up to 2 s) — the same pattern
 * fio runs against the kernel's virtio_blk.
 *
 *   node scripts/lab/guest/blk-bench.js <iodepth> <seconds> [interrupt|poll|hybrid]
 */
import { VirtioBlk } from '../../../lib/devices';
import { DmaPool } from '../../../lib/platform';
import type { QueueMode } from '../../../lib/queue';
import { DeviceId, FeatureBit, hasFeature } from '../../../lib/spec';
import { openTransport, type UioDeviceSpec } from '../../../lib/transport';
import { scan } from './devices';
import { report, runMain } from './report';

async function main(): Promise<void> {
  const depth = Number(process.argv[2] ?? 1);
  const seconds = Number(process.argv[3] ?? 10);
  const mode = (process.argv[4] ?? 'interrupt') as QueueMode;
  const found = scan().find((r) => r.result?.deviceId === DeviceId.BLOCK);
  if (!found) throw new Error('no virtio-blk transport on UIO');
  const memory = DmaPool.hugetlb();
  const transport = openTransport(found.spec as UioDeviceSpec);
  const blk = VirtioBlk.open(transport, { memory, queueMode: mode });
  try {
    const blocks = Number(blk.info.capacity / 8n);
    /** `depth` workers reading until `until`; each read's latency goes to `latencies` when given. */
    const run = (until: bigint, latencies?: number[]): Promise<void[]> =>
      Promise.all(
        Array.from({ length: depth }, async () => {
          const buffer = blk.allocBuffer(4096);
          try {
            while (process.hrtime.bigint() < until) {
              const sector = BigInt(Math.floor(Math.random() * blocks)) * 8n;
              const t0 = process.hrtime.bigint();
              await blk.read(sector, buffer);
              latencies?.push(Number(process.hrtime.bigint() - t0) / 1000);
            }
          } finally {
            blk.freeBuffer(buffer);
          }
        }),
      );
    // Warm-up, not measured: under TCG the JIT needs seconds to settle (fio has no such phase to go through).
    await run(process.hrtime.bigint() + BigInt(Math.min(2, seconds / 2) * 1e9));
    const latencies: number[] = [];
    const before = { ...blk.queueStats(0), interrupts: transport.stats.interrupts };
    const started = process.hrtime.bigint();
    await run(started + BigInt(seconds * 1e9), latencies);
    const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
    const after = blk.queueStats(0);
    latencies.sort((a, b) => a - b);
    const n = latencies.length;
    report({
      kind: 'blk-bench',
      driver: 'ours',
      iodepth: depth,
      mode,
      ring: hasFeature(blk.features, FeatureBit.RING_PACKED) ? 'packed' : 'split',
      requests: n,
      iops: n / elapsed,
      meanUs: latencies.reduce((a, b) => a + b, 0) / n,
      p99Us: latencies[Math.min(n - 1, Math.floor(n * 0.99))],
      notificationsPerRequest: (after.notifications - before.notifications) / n,
      interruptsPerRequest: (transport.stats.interrupts - before.interrupts) / n,
      polledPerRequest: (after.polledCompletions - before.polledCompletions) / n,
    });
  } finally {
    blk.close();
    memory.close();
  }
}

runMain(main);
