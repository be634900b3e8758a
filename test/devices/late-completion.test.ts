/**
 * Hostile 24, late-completion: an honest device that does a chain's work
 * and uses it long after the driver gave up on it — after its timeout,
 * after an abort, after a reset that did not complete. Against every driver
 * (blk, rng, net transmit, a user's driver on the public base written the
 * naive way, freeing in `finally`) on split and packed rings, with canary
 * memory around every DMA region and freed regions quarantined: every later
 * request returns its own data, no byte the late work writes lands outside
 * memory the device still owns, and pool regions come back only when the
 * chains do.
 */
import { DmaPool } from '../../lib/platform';
import {
  BlkModel,
  NetModel,
  SimDevice,
  type HostileOptions,
  type SimDeviceModel,
  type SimRequest,
} from '../../lib/sim';
import { VirtioBlk, VirtioNet, VirtioRng, type VirtioDriver } from '../../lib/devices';
import { DeviceId, FeatureBit, features } from '../../lib/spec';
import { MmioTransport } from '../../lib/transport';
import { CanaryMemory } from '../support/canary-memory';
import { EchoDriver } from '../support/echo-driver';
import { echoModel, turns, type SimVariant } from '../support/sim-rig';

const SECTOR = 512;
const TIMEOUT_MS = 100;
const ROUND = 12;
const PACKED = features(
  FeatureBit.VERSION_1,
  FeatureBit.INDIRECT_DESC,
  FeatureBit.EVENT_IDX,
  FeatureBit.RING_RESET,
  FeatureBit.RING_PACKED,
);

type GiveUp = 'timeout' | 'abort';

/** One driver under test: open it, run one request with its own checkable result, say how it is given up on. */
interface Workload {
  name: string;
  model(): SimDeviceModel;
  open(transport: MmioTransport, memory: CanaryMemory): VirtioDriver;
  /**
   * Runs request `n`; resolves when it succeeded with the right result, rejects otherwise. `signal` only where the
   * driver takes one.
   */
  request(driver: VirtioDriver, model: SimDeviceModel, n: number, signal?: AbortSignal): Promise<void>;
  /** How a request can be given up on. */
  giveUps: GiveUp[];
  /**
   * The AbortSignal reaches the queue (blk and rng stop waiting above it; their queue request runs on to its time
   * limit).
   */
  abortsAtQueue?: boolean;
}

function patternDisk(sectors: number): Uint8Array {
  const disk = new Uint8Array(sectors * SECTOR);
  for (let i = 0; i < sectors; i++) disk.fill((i % 250) + 1, i * SECTOR, (i + 1) * SECTOR);
  return disk;
}

/**
 * An entropy device that fills each buffer with the low byte of its device address' sector (where the bytes land is
 * checked by the canaries).
 */
function entropyModel(): SimDeviceModel {
  return {
    deviceId: DeviceId.ENTROPY,
    features: 0n,
    queueSizes: [16],
    config: new Uint8Array(0),
    handle(request: SimRequest): number {
      let len = 0;
      for (const b of request.writable) {
        b.fill(0x5c);
        len += b.length;
      }
      return len;
    },
  };
}

const WORKLOADS: Workload[] = [
  {
    name: 'blk reads and writes',
    model: () => new BlkModel({ disk: patternDisk(256), queueSize: 16 }),
    open: (transport, memory) => VirtioBlk.open(transport, { memory, requestTimeoutMs: TIMEOUT_MS }),
    giveUps: ['timeout', 'abort'],
    async request(driver, model, n, signal) {
      const blk = driver as VirtioBlk;
      const sector = (n * 7) % 128;
      if (n % 3 === 2) {
        // A write to the upper half, checked on the disk when it resolved.
        const target = 128 + sector;
        const byte = (n % 200) + 30;
        await blk.write(target, Buffer.alloc(SECTOR, byte), { signal });
        const disk = (model as BlkModel).disk.subarray(target * SECTOR, (target + 1) * SECTOR);
        if (disk.some((b) => b !== byte)) throw new Error(`write ${n}: sector ${target} does not hold its own data`);
        return;
      }
      const bytes = await blk.read(sector, 2 * SECTOR, { signal });
      for (let i = 0; i < 2; i++) {
        const want = ((sector + i) % 250) + 1;
        if (bytes.subarray(i * SECTOR, (i + 1) * SECTOR).some((b) => b !== want))
          throw new Error(`read ${n}: sector ${sector + i} came back with other bytes`);
      }
    },
  },
  {
    name: 'rng',
    model: entropyModel,
    open: (transport, memory) => VirtioRng.open(transport, { memory, requestTimeoutMs: TIMEOUT_MS, requestBytes: 64 }),
    giveUps: ['timeout', 'abort'],
    async request(driver, _model, n, signal) {
      const bytes = await (driver as VirtioRng).read(64 + (n % 3) * 64, { signal });
      if (bytes.some((b) => b !== 0x5c)) throw new Error(`rng read ${n}: bytes not from the device`);
    },
  },
  {
    name: 'net transmit',
    model: () => new NetModel({ queueSize: 16 }),
    open: (transport, memory) => VirtioNet.open(transport, { memory, requestTimeoutMs: TIMEOUT_MS }),
    giveUps: ['timeout'],
    async request(driver, model, n) {
      const frame = Buffer.alloc(60 + (n % 5), n & 0xff);
      frame.writeUInt16BE(n, 12);
      await (driver as VirtioNet).send(frame);
      const sent = (model as NetModel).sent.find((f) => f.length === frame.length && f.readUInt16BE(12) === n);
      if (!sent?.equals(frame)) throw new Error(`frame ${n}: the device sent other bytes`);
    },
  },
  {
    name: "a user's driver on the base (frees in finally)",
    model: () => echoModel({ queueSizes: [16] }),
    open: (transport, memory) => new EchoDriver(transport, { memory, requestTimeoutMs: TIMEOUT_MS }),
    giveUps: ['timeout', 'abort'],
    abortsAtQueue: true,
    async request(driver, _model, n, signal) {
      const input = Buffer.alloc(48, n & 0xff);
      const out = await (driver as EchoDriver).echo([input], [48], { signal, timeoutMs: TIMEOUT_MS });
      if (!out.equals(input)) throw new Error(`echo ${n}: other bytes came back`);
    },
  },
];

interface Bench {
  canary: CanaryMemory;
  pool: DmaPool;
  sim: SimDevice;
  transport: MmioTransport;
  model: SimDeviceModel;
  driver: VirtioDriver;
  close(): void;
}

function open(workload: Workload, variant: SimVariant, seed: number): Bench {
  const pool = DmaPool.anonymous();
  const canary = new CanaryMemory(pool, { seed });
  const model = workload.model();
  const hostile: HostileOptions = { seed, behaviours: { 'late-completion': { share: 0.5 } } };
  const sim = new SimDevice({
    memory: canary,
    version: variant === 1 ? 1 : 2,
    model,
    strict: true,
    hostile,
    ...(variant === 'packed' ? { transportFeatures: PACKED } : {}),
  });
  const transport = new MmioTransport(sim, { interrupts: sim.interrupt, resetTimeoutMs: 20 });
  const driver = workload.open(transport, canary);
  return {
    canary,
    pool,
    sim,
    transport,
    model,
    driver,
    close() {
      driver.close();
      transport.close();
      sim.close();
      canary.close();
    },
  };
}

/**
 * Runs `count` requests from `first`; returns how many succeeded and the failures that are not the give-up's own error.
 */
async function round(
  workload: Workload,
  bench: Bench,
  first: number,
  count: number,
  giveUp: GiveUp,
): Promise<{ ok: number; gaveUp: number; wrong: unknown[] }> {
  const requests: Promise<void>[] = [];
  const controllers: AbortController[] = [];
  for (let n = first; n < first + count; n++) {
    const controller = new AbortController();
    controllers.push(controller);
    requests.push(workload.request(bench.driver, bench.model, n, giveUp === 'abort' ? controller.signal : undefined));
  }
  // Aborts come once the device has taken the chains and done the honest ones (a few turns), before any time limit.
  if (giveUp === 'abort') {
    await turns(4);
    for (const controller of controllers) controller.abort();
  }
  const results = await Promise.allSettled(requests);
  const expected = giveUp === 'abort' ? 'ABORT_ERR' : 'ERR_VIRTIO_TIMEOUT';
  const wrong = results
    .filter(
      (r): r is PromiseRejectedResult => r.status === 'rejected' && (r.reason as { code?: string })?.code !== expected,
    )
    .map((r) => r.reason);
  const gaveUp = results.filter((r) => r.status === 'rejected').length - wrong.length;
  return { ok: results.filter((r) => r.status === 'fulfilled').length, gaveUp, wrong };
}

const VARIANTS: [string, SimVariant][] = [
  ['split (Version 2)', 2],
  ['packed', 'packed'],
  ['split (Version 1)', 1],
];

describe.each(VARIANTS)('late completions on the %s ring', (_label, variant) => {
  describe.each(WORKLOADS.map((w) => [w.name, w] as const))('%s', (_name, workload) => {
    test.each(workload.giveUps)(
      'after %s: later requests get own data, late writes land only in held memory, regions return with chains',
      async (giveUp) => {
        const bench = open(workload, variant, 24);
        try {
          await turns();
          // Live regions of the canary allocator (the pool also counts the quarantined ones, never reused).
          const baseline = bench.canary.liveRegions;
          // Round 1: about half the chains are held back; their requests are given up on.
          const first = await round(workload, bench, 0, ROUND, giveUp);
          expect(first.wrong).toEqual([]);
          expect(first.gaveUp).toBeGreaterThan(0);
          expect(bench.sim.lateHeld).toBeGreaterThan(0);
          // The device still has them: where the queue gave up, their buffers are held (not reusable, their free
          // deferred).
          if (giveUp === 'timeout' || workload.abortsAtQueue) expect(bench.pool.stats().holds).toBeGreaterThan(0);
          // Round 2 runs while the device does the held work late, between its requests.
          const second = round(workload, bench, ROUND, ROUND, giveUp);
          await turns(2);
          bench.sim.completeLate();
          const result = await second;
          expect(result.wrong).toEqual([]);
          expect(result.ok).toBeGreaterThan(0);
          bench.sim.completeLate();
          await turns(4);
          expect(bench.sim.lateHeld).toBe(0);
          expect(bench.canary.check()).toEqual([]);
          // Every chain is back: nothing held, nothing deferred, only what the driver keeps for itself.
          expect(bench.pool.stats()).toMatchObject({ holds: 0, deferredRegions: 0 });
          expect(bench.canary.deferredRegions).toBe(0);
          expect(bench.canary.liveRegions).toBe(baseline);
          expect(bench.sim.hostileLog['late-completion']).toBeGreaterThan(0);
          expect(bench.sim.violations).toEqual([]);
        } finally {
          bench.close();
        }
        expect(bench.canary.damage).toEqual([]);
      },
    );
  });

  test.each(WORKLOADS.map((w) => [w.name, w] as const))(
    '%s: after a reset that did not complete, the late work writes only memory still held',
    async (_name, workload) => {
      const bench = open(workload, variant, 7);
      await turns();
      const requests: Promise<void>[] = [];
      for (let n = 0; n < ROUND; n++)
        requests.push(workload.request(bench.driver, bench.model, n).catch(() => undefined));
      await turns(2);
      expect(bench.sim.lateHeld).toBeGreaterThan(0);
      bench.sim.resetLatency = Infinity;
      bench.driver.close();
      await Promise.all(requests);
      // The device goes on: it writes every held chain's buffers now.
      bench.sim.completeLate();
      await turns(2);
      expect(bench.canary.check()).toEqual([]);
      // Nothing the device may still write went back to the pool.
      expect(bench.pool.stats().holds).toBeGreaterThan(0);
      bench.transport.close();
      bench.sim.close();
      bench.canary.close();
      expect(bench.canary.damage).toEqual([]);
    },
  );
});
