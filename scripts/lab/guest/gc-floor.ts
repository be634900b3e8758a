/**
 * Runs in the lab guest (node --expose-gc): how long one scavenge of an
 * empty young generation pauses this guest — the least any scavenge costs
 * here, whatever the program allocated. With the library loaded (its
 * modules, the addon, a device opened and closed), so the roots V8 walks
 * are those of a real driver process. bench/lab-vs-kernel.js sets it
 * beside the GC pauses of ours' QD1 runs: when this floor is at or above
 * the pause target, the target can only be met by a run with no scavenge
 * at all, i.e. by allocating (close to) nothing per request.
 *
 *   node --expose-gc scripts/lab/guest/gc-floor.js [count]
 */
import { PerformanceObserver, type PerformanceEntry } from 'node:perf_hooks';
import { VirtioBlk } from '../../../lib/devices';
import { DmaPool } from '../../../lib/platform';
import { DeviceId } from '../../../lib/spec';
import { openTransport } from '../../../lib/transport';
import { scan } from './devices';
import { report, runMain } from './report';

/** PerformanceEntry.detail.kind of a scavenge (perf_hooks constants.NODE_PERFORMANCE_GC_MINOR). */
const GC_MINOR = 1;

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function main(): Promise<void> {
  const count = Number(process.argv[2] ?? 15);
  const collect = (globalThis as { gc?: (options: { type: 'minor' }) => void }).gc;
  if (!collect || !Number.isInteger(count) || count < 1)
    throw new RangeError('usage: node --expose-gc gc-floor.js [count]');
  // A driver's heap: the library loaded and a blk device opened and read once (then closed).
  const spec = scan().find((r) => r.result?.deviceId === DeviceId.BLOCK)?.spec;
  if (spec) {
    const memory = DmaPool.hugetlb();
    const blk = VirtioBlk.open(openTransport(spec), { memory });
    await blk.read(0, 4096);
    blk.close();
    memory.close();
  }
  const pauses: number[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries() as (PerformanceEntry & { detail?: { kind?: number } })[])
      if (e.detail?.kind === GC_MINOR) pauses.push(e.duration);
  });
  observer.observe({ entryTypes: ['gc'] });
  await turn();
  pauses.length = 0;
  for (let i = 0; i < count; i++) {
    // Each scavenge right after the last: the young generation holds only what two event-loop turns made.
    collect({ type: 'minor' });
    await turn();
  }
  await turn();
  observer.disconnect();
  report({ kind: 'gc-floor', pausesMs: pauses, withDevice: spec !== undefined });
}

runMain(main);
