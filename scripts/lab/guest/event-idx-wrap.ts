/**
 * Runs in the lab guest (from suite.ts): VIRTIO_F_EVENT_IDX across the wrap
 * of the 16-bit ring indexes (virtio 1.2 §2.7.7.2, §2.7.10; packed: the
 * wrap counter of §2.8.10, flipping every lap of the 64-entry queue).
 * 70,000 8-byte rng reads, the ring kept full, except for 256 around request
 * 65,536 run one at a time (the other lanes parked), so that the index wraps
 * at QD1 too. A notification or interrupt lost at the wrap is a read that
 * never completes (the driver's request timeout), or, if QEMU's rate-limit
 * timer picks the request up late, a QD1 notification or interrupt missing
 * from the counts; at depth the counts show suppression.
 */
import { FeatureBit, hasFeature } from '../../../lib/spec';
import type { RngSubject } from '../../../test/support/contracts/rng-contract';
import { uioEventCount } from './devices';

export const EVENT_IDX_WRAP_REQUESTS = 70_000;
/** Requests on each side of 65,536 run at QD1. */
const QD1_HALF_WINDOW = 128;
const WRAP = 0x10000;
/** Far beyond the ~20 s the run takes under TCG, well inside the suite's time limit. */
const WATCHDOG_MS = 150_000;

export async function eventIdxWrap(subject: RngSubject): Promise<Record<string, unknown>> {
  const { rng, transport, close } = subject.open({ requestBytes: 8 });
  try {
    // The legacy boots run the same split ring code as the Version 2 split boot: CI time is spent there instead.
    if (transport.version === 1) return { kind: 'event-idx-wrap', device: subject.label, skipped: 'legacy' };
    const depth = rng.dumpQueue(0).size;
    const started = Date.now();
    const seen = new Set<number>();
    let next = 0;
    let shortReads = 0;
    let qd1: Record<string, number> | undefined;
    let qd1Start: Record<string, number> | undefined;
    const counts = (): Record<string, number> => {
      const { completed, publishes, notifications, notificationsSuppressed } = rng.queueStats(0);
      return { completed, publishes, notifications, notificationsSuppressed, interrupts: transport.stats.interrupts };
    };
    /** Lanes other than lane 0 waiting for the QD1 stretch to end. */
    let parked = 0;
    let windowDone: (() => void) | undefined;
    const windowOver = new Promise<void>((resolve) => (windowDone = resolve));
    const inWindow = (n: number): boolean => n >= WRAP - QD1_HALF_WINDOW && n < WRAP + QD1_HALF_WINDOW;
    const lane = async (index: number): Promise<void> => {
      while (next < EVENT_IDX_WRAP_REQUESTS) {
        if (inWindow(next)) {
          if (index > 0) {
            parked++;
            await windowOver;
            continue;
          }
          if (!qd1Start) {
            // Lane 0 alone from here: every other lane's last request has completed.
            while (parked < depth - 1) await new Promise((resolve) => setImmediate(resolve));
            qd1Start = counts();
          }
        }
        next++;
        const bytes = await rng.read(8);
        if (bytes.length !== 8) shortReads++;
        // 53 of the 64 random bits as one exact number (cheaper than a bigint under TCG).
        seen.add((bytes.readUInt32LE(4) & 0x1fffff) * 0x1_0000_0000 + bytes.readUInt32LE(0));
        if (qd1Start && !qd1 && next === WRAP + QD1_HALF_WINDOW) {
          const now = counts();
          qd1 = Object.fromEntries(Object.entries(now).map(([key, value]) => [key, value - qd1Start![key]]));
          windowDone!();
        }
      }
    };
    // A notification or interrupt lost is a read that never completes: one watchdog for the whole run.
    let watchdog: NodeJS.Timeout | undefined;
    const stalled = new Promise<never>((_, reject) => {
      watchdog = setTimeout(
        () => reject(new Error(`stalled after ${next} reads: ${JSON.stringify(rng.queueStats(0))}`)),
        WATCHDOG_MS,
      );
    });
    try {
      await Promise.race([Promise.all(Array.from({ length: depth }, (_, i) => lane(i))), stalled]);
    } finally {
      clearTimeout(watchdog);
    }
    const ms = Date.now() - started;
    const ring = rng.dumpQueue(0).ring as { usedIdx?: number; availIdx?: number };
    return {
      kind: 'event-idx-wrap',
      device: subject.label,
      eventIdx: hasFeature(rng.features, FeatureBit.EVENT_IDX),
      packed: hasFeature(rng.features, FeatureBit.RING_PACKED),
      depth,
      reads: next,
      ms,
      shortReads,
      distinct: seen.size,
      qd1,
      stats: rng.queueStats(0),
      interrupts: transport.stats.interrupts,
      spurious: transport.stats.spuriousInterrupts,
      uioEvents: uioEventCount(transport.interrupts),
      // Split: the ring's own 16-bit indexes after the run (they wrapped once).
      availIdx: ring.availIdx,
      usedIdx: ring.usedIdx,
    };
  } finally {
    close();
  }
}
