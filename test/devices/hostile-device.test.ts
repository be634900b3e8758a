/**
 * Hostile devices, driver side: for each of the first 23 faults of the
 * sim's FAULT_CATALOGUE, a real driver on the lying device detects it, fails with a
 * typed error and a stable code, settles every pending request exactly
 * once, keeps the event loop turning, and closes and returns its memory.
 * One describe per behaviour, named by its number and name.
 */
import {
  DeviceBrokenError,
  DeviceGoneError,
  NegotiationError,
  ProtocolError,
  TimeoutError,
  TransportError,
} from '../../lib/errors';
import { VirtioBlk, VirtioConsole, VirtioNet, VirtioRng } from '../../lib/devices';
import { EpollLoop } from '../../lib/platform';
import { BlkModel, ConsoleModel, NetModel, RngModel, type HostileOptions, type SimDeviceModel } from '../../lib/sim';
import { DeviceStatus, FeatureBit, feature, features } from '../../lib/spec';
import { TRANSPORT_FEATURES, type MmioTransportOptions } from '../../lib/transport';
import { EchoDriver } from '../support/echo-driver';
import { PipeInterruptSource } from '../support/pipe-interrupt';
import { echoModel, simRig, SIM_VARIANTS, turns, type SimRig, type SimVariant } from '../support/sim-rig';

const SEED = 0x5eed;
const SPLIT_VARIANTS = SIM_VARIANTS.filter(([, v]) => v !== 'packed');
const MODERN = features(
  FeatureBit.VERSION_1,
  FeatureBit.EVENT_IDX,
  FeatureBit.RING_RESET,
  FeatureBit.NOTIFICATION_DATA,
);

type Behaviours = HostileOptions['behaviours'];

interface HostileRig extends SimRig {
  /** pool.stats().regions before any driver was opened. */
  regions: number;
}

const rigs: HostileRig[] = [];
const lines: PipeInterruptSource[] = [];
afterEach(() => {
  for (const rig of rigs.splice(0)) rig.close();
  for (const line of lines.splice(0)) line.close();
});

/** A sim of `variant` with hostile `behaviours` (seeded), its pool and transport. */
function hostileRig(
  variant: SimVariant,
  model: SimDeviceModel,
  behaviours: Behaviours,
  options: {
    after?: number;
    queue?: number;
    sim?: Parameters<typeof simRig>[2];
    transport?: MmioTransportOptions;
  } = {},
): HostileRig {
  const rig = simRig(
    variant,
    model,
    { hostile: { seed: SEED, after: options.after ?? 0, queue: options.queue, behaviours }, ...options.sim },
    options.transport,
  );
  const hostile = Object.assign(rig, { regions: rig.pool.stats().regions });
  rigs.push(hostile);
  return hostile;
}

/** Transport features for `variant` with INDIRECT_DESC off (chains of several descriptors) or IN_ORDER on. */
function ringFeatures(variant: SimVariant, extra = 0n): bigint | undefined {
  if (variant === 1) return features(FeatureBit.EVENT_IDX) | extra;
  return MODERN | (variant === 'packed' ? feature(FeatureBit.RING_PACKED) : 0n) | extra;
}

/** Counts how a promise settles (a request must settle exactly once). */
function track<T>(promise: Promise<T>): {
  resolved: number;
  rejected: number;
  value?: T;
  error?: unknown;
  readonly settled: number;
} {
  const state = {
    resolved: 0,
    rejected: 0,
    value: undefined as T | undefined,
    error: undefined as unknown,
    get settled() {
      return this.resolved + this.rejected;
    },
  };
  promise.then(
    (value) => {
      state.resolved++;
      state.value = value;
    },
    (error: unknown) => {
      state.rejected++;
      state.error = error;
    },
  );
  return state;
}

/** Turns the loop until `done()` or `ms` pass; a timer firing proves the loop is not starved. */
async function until(done: () => boolean, ms = 1000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 1));
}

/** An unrelated timer still runs: the process is alive and the loop turns. */
async function loopAlive(): Promise<void> {
  let fired = false;
  setTimeout(() => (fired = true), 1);
  await until(() => fired, 500);
  expect(fired).toBe(true);
}

const payload = (n: number, seed: number): Uint8Array =>
  Uint8Array.from({ length: n }, (_, i) => (seed * 7 + i * 13) & 0xff);

/** Sends `count` echoes (one readable and one writable buffer each); returns their trackers and payloads. */
function echoes(
  driver: EchoDriver,
  count: number,
  seed = 1,
  timeoutMs?: number,
): { out: ReturnType<typeof track<Buffer>>; sent: Uint8Array }[] {
  return Array.from({ length: count }, (_, i) => {
    const sent = payload(16, seed + i);
    return { out: track(driver.echo([sent], [16], timeoutMs ? { timeoutMs } : undefined)), sent };
  });
}

/** Closes the driver and checks that the memory came back. */
function closeAndCheckMemory(driver: { close(): void }, rig: HostileRig): void {
  driver.close();
  expect(rig.pool.stats().regions).toBe(rig.regions);
}

/** The ring behaviours that break the queue: each rejects everything pending with DeviceBrokenError(reason). */
async function expectQueueBroken(
  variant: SimVariant,
  name: keyof Behaviours,
  reason: string | readonly string[],
  extraFeatures = 0n,
): Promise<void> {
  const rig = hostileRig(variant, echoModel(), { [name]: true } as Behaviours, {
    after: 1,
    sim: { transportFeatures: ringFeatures(variant, extraFeatures) },
  });
  const driver = new EchoDriver(rig.transport, { memory: rig.pool, queueSize: 8 });
  expect([...(await driver.echo([payload(8, 0)], [8]))]).toEqual([...payload(8, 0)]);
  const jobs = echoes(driver, 3);
  await until(() => jobs.every((j) => j.out.settled === 1));
  const reasons = typeof reason === 'string' ? [reason] : reason;
  for (const { out } of jobs) {
    expect(out.settled).toBe(1);
    expect(out.error).toBeInstanceOf(DeviceBrokenError);
    expect(out.error).toMatchObject({ code: 'ERR_VIRTIO_BROKEN' });
    expect(reasons).toContain((out.error as DeviceBrokenError).reason);
  }
  // With RING_RESET (Version 2) that queue alone was reset and went on (DriverOptions.queueRecovery), and the liar
  // breaks it again; without (Version 1) the device was failed and the queue stays broken.
  const recovered = driver.q.stats.resets > 0;
  expect(recovered).toBe(variant !== 1);
  expect(driver.q.broken).toBe(!recovered);
  expect(rig.transport.failure === undefined).toBe(recovered);
  await expect(driver.echo([payload(4, 9)], [4])).rejects.toMatchObject({ code: 'ERR_VIRTIO_BROKEN' });
  expect(rig.sim.hostileLog[name]).toBeGreaterThan(0);
  await loopAlive();
  await turns();
  closeAndCheckMemory(driver, rig);
}

describe('1 used-id-out-of-range', () => {
  it.each(SIM_VARIANTS)(
    '1 used-id-out-of-range: %s: DeviceBrokenError, every pending request rejected, queue broken',
    async (_label, variant) => {
      await expectQueueBroken(variant, 'used-id-out-of-range', 'used-id-out-of-range');
    },
  );
});

describe('2 used-id-not-head', () => {
  it.each(SIM_VARIANTS)('2 used-id-not-head: %s: DeviceBrokenError used-id-not-head', async (_label, variant) => {
    await expectQueueBroken(variant, 'used-id-not-head', 'used-id-not-head');
  });
});

describe('3 used-wrong-chain', () => {
  it.each(SPLIT_VARIANTS)(
    '3 used-wrong-chain: %s: a non-head descriptor index is used-id-not-head',
    async (_label, variant) => {
      await expectQueueBroken(variant, 'used-wrong-chain', 'used-id-not-head');
    },
  );

  it.each([
    ['packed', 0n],
    ['packed with IN_ORDER', feature(FeatureBit.IN_ORDER)],
  ] as const)(
    '3 used-wrong-chain: %s: the named request is resolved (own data), nothing twice; the replay then breaks the queue',
    async (_label, extra) => {
      const rig = hostileRig(
        'packed',
        echoModel(),
        { 'used-wrong-chain': true },
        { after: 1, sim: { transportFeatures: ringFeatures('packed', extra) } },
      );
      const driver = new EchoDriver(rig.transport, { memory: rig.pool, queueSize: 8, queueRecovery: 'none' });
      await driver.echo([payload(8, 0)], [8]);
      const jobs = echoes(driver, 2);
      await until(() => jobs.every((j) => j.out.settled === 1));
      for (const { out, sent } of jobs) {
        expect(out.settled).toBe(1);
        // Resolved only ever with its own bytes (the device wrote each buffer before lying about the id).
        if (out.resolved) expect([...out.value!]).toEqual([...sent.subarray(0, out.value!.length)]);
        else expect(out.error).toMatchObject({ code: 'ERR_VIRTIO_BROKEN' });
      }
      expect(jobs.some((j) => j.out.resolved)).toBe(true);
      if (extra === 0n) {
        // The device then uses the named request's own id as well, which is no longer outstanding.
        await until(() => driver.q.broken);
        expect(driver.q.broken).toBe(true);
        await expect(driver.echo([payload(4, 9)], [4])).rejects.toMatchObject({ code: 'ERR_VIRTIO_BROKEN' });
      } else {
        // IN_ORDER (§2.8.8): naming the later id is a legal batch covering both, and the driver skips
        // past both chains, so the device's second used descriptor is never read. Either way nothing
        // settles twice: the queue is broken, or the next request settles once with its own bytes.
        const next = track(driver.echo([payload(4, 9)], [4]));
        await until(() => next.settled === 1);
        expect(next.settled).toBe(1);
        if (next.resolved) expect([...next.value!]).toEqual([...payload(4, 9)]);
        else expect(next.error).toMatchObject({ code: 'ERR_VIRTIO_BROKEN' });
      }
      expect(rig.sim.hostileLog['used-wrong-chain']).toBeGreaterThan(0);
      await loopAlive();
      closeAndCheckMemory(driver, rig);
    },
  );
});

describe('4 used-len-too-long', () => {
  it.each(SIM_VARIANTS)('4 used-len-too-long: %s: DeviceBrokenError used-len-too-long', async (_label, variant) => {
    await expectQueueBroken(variant, 'used-len-too-long', 'used-len-too-long');
  });
});

describe('5 used-len-too-short', () => {
  it.each(SIM_VARIANTS)(
    '5 used-len-too-short: %s: blk read without its status byte is a ProtocolError, the queue goes on',
    async (_label, variant) => {
      const rig = hostileRig(variant, new BlkModel(), { 'used-len-too-short': { len: 0 } }, { after: 1 });
      const blk = VirtioBlk.open(rig.transport, { memory: rig.pool, requestTimeoutMs: 500 });
      await blk.read(0, 512);
      const reads = [track(blk.read(0, 512)), track(blk.read(8, 512))];
      await until(() => reads.every((r) => r.settled === 1));
      for (const r of reads) {
        expect(r.settled).toBe(1);
        expect(r.error).toBeInstanceOf(ProtocolError);
        expect(r.error).toMatchObject({ code: 'ERR_VIRTIO_PROTOCOL', reason: 'blk-status-missing' });
      }
      expect(rig.sim.hostileLog['used-len-too-short']).toBeGreaterThanOrEqual(2);
      await loopAlive();
      closeAndCheckMemory(blk, rig);
    },
  );

  it.each(SIM_VARIANTS)(
    '5 used-len-too-short: %s: rng that never fills is a ProtocolError rng-empty',
    async (_label, variant) => {
      const rig = hostileRig(variant, new RngModel(), { 'used-len-too-short': { len: 0 } });
      const rng = VirtioRng.open(rig.transport, { memory: rig.pool, requestBytes: 64, requestTimeoutMs: 500 });
      const read = track(rng.read(64));
      await until(() => read.settled === 1);
      expect(read.settled).toBe(1);
      expect(read.error).toMatchObject({ code: 'ERR_VIRTIO_PROTOCOL', reason: 'rng-empty' });
      await loopAlive();
      closeAndCheckMemory(rng, rig);
    },
  );

  it.each(SIM_VARIANTS)(
    '5 used-len-too-short: %s: net receive buffers shorter than the header are dropped and counted',
    async (_label, variant) => {
      const model = new NetModel({ loopback: true });
      // 4 bytes: less than the virtio_net_hdr (§5.1.6).
      const rig = hostileRig(variant, model, { 'used-len-too-short': { len: 4 } }, { queue: 0 });
      const net = VirtioNet.open(rig.transport, { memory: rig.pool, requestTimeoutMs: 500 });
      const next = track(net.frames().next());
      for (let i = 0; i < 3; i++) await net.send(payload(60, i));
      await until(() => net.droppedFrames >= 3);
      expect(net.droppedFrames).toBe(3);
      await turns(3);
      // Nothing was delivered as a frame.
      expect(next.settled).toBe(0);
      await loopAlive();
      closeAndCheckMemory(net, rig);
    },
  );
});

describe('6 used-idx-jump', () => {
  it.each(SPLIT_VARIANTS)(
    '6 used-idx-jump (split only: packed has no used idx): %s: DeviceBrokenError used-idx-jump',
    async (_label, variant) => {
      await expectQueueBroken(variant, 'used-idx-jump', 'used-idx-jump');
    },
  );
});

describe('7 used-idx-backwards', () => {
  it.each(SPLIT_VARIANTS)(
    '7 used-idx-backwards (split only): %s: DeviceBrokenError used-idx-backwards',
    async (_label, variant) => {
      await expectQueueBroken(variant, 'used-idx-backwards', 'used-idx-backwards');
    },
  );
});

describe('8 descriptors-rewritten', () => {
  it.each(SIM_VARIANTS)(
    '8 descriptors-rewritten: %s: every request resolves with its own data, 1,000 more after the rewrites',
    async (_label, variant) => {
      const rig = hostileRig(
        variant,
        echoModel(),
        { 'descriptors-rewritten': true },
        { after: 1, sim: { transportFeatures: ringFeatures(variant) } },
      );
      const driver = new EchoDriver(rig.transport, { memory: rig.pool, queueSize: 16 });
      for (let round = 0; round < 63; round++) {
        const jobs = Array.from({ length: 16 }, (_, i) => {
          const sent = payload(24, round * 16 + i);
          return driver
            .echo([sent.subarray(0, 10), sent.subarray(10)], [12, 12])
            .then((out) => expect([...out]).toEqual([...sent]));
        });
        await Promise.all(jobs);
      }
      expect(rig.sim.hostileLog['descriptors-rewritten']).toBeGreaterThanOrEqual(1000);
      expect(driver.q.broken).toBe(false);
      expect(driver.q.free).toBe(driver.q.size);
      closeAndCheckMemory(driver, rig);
      // The driver broke no rule: only the device lied.
      expect(rigs.pop()!.close()).toEqual([]);
    },
  );
});

describe('9 used-element-changes', () => {
  it.each(SIM_VARIANTS)(
    "9 used-element-changes: %s: no request is settled twice or with another request's result",
    async (_label, variant) => {
      const rig = hostileRig(variant, echoModel(), { 'used-element-changes': true }, { after: 1 });
      const driver = new EchoDriver(rig.transport, { memory: rig.pool, queueSize: 8 });
      const results: ReturnType<typeof track<Buffer>>[] = [];
      for (let i = 0; i < 20; i++) {
        const sent = payload(16, i);
        const out = track(driver.echo([sent], [16]));
        results.push(out);
        await until(() => out.settled === 1);
        if (out.rejected) {
          expect(out.error).toMatchObject({ code: 'ERR_VIRTIO_BROKEN' });
          break;
        }
        expect([...out.value!]).toEqual([...sent]);
      }
      await turns(5);
      for (const out of results) expect(out.settled).toBe(1);
      expect(rig.sim.hostileLog['used-element-changes']).toBeGreaterThan(0);
      await loopAlive();
      closeAndCheckMemory(driver, rig);
    },
  );
});

describe('10 packed-wrong-flags', () => {
  it('10 packed-wrong-flags (packed only): the request is never taken as used; it times out', async () => {
    const rig = hostileRig('packed', echoModel(), { 'packed-wrong-flags': true }, { after: 1 });
    const driver = new EchoDriver(rig.transport, { memory: rig.pool, queueSize: 8 });
    await driver.echo([payload(8, 0)], [8]);
    const [job] = echoes(driver, 1, 5, 100);
    await until(() => job.out.settled === 1);
    expect(job.out.settled).toBe(1);
    expect(job.out.error).toBeInstanceOf(TimeoutError);
    expect(job.out.error).toMatchObject({ code: 'ERR_VIRTIO_TIMEOUT' });
    expect(rig.sim.hostileLog['packed-wrong-flags']).toBe(1);
    await loopAlive();
    closeAndCheckMemory(driver, rig);
  });
});

describe('11 interrupt-when-not-live', () => {
  it.each(SIM_VARIANTS)(
    '11 interrupt-when-not-live: %s: nothing is dispatched while not live; the driver then works',
    async (_label, variant) => {
      const rig = hostileRig(variant, echoModel(), { 'interrupt-when-not-live': true });
      const errors: Error[] = [];
      rig.transport.onError((error) => errors.push(error));
      const driver = new EchoDriver(rig.transport, { memory: rig.pool, queueSize: 8 });
      expect(rig.sim.hostileLog['interrupt-when-not-live']).toBeGreaterThan(0);
      for (const { out, sent } of echoes(driver, 4)) {
        await until(() => out.settled === 1);
        expect([...out.value!]).toEqual([...sent]);
      }
      // After a reset the device raises again: the transport is not live and dispatches nothing.
      let configChanges = 0;
      rig.transport.onConfigChange(() => configChanges++);
      const before = rig.sim.hostileLog['interrupt-when-not-live'];
      rig.transport.reset();
      expect(rig.sim.hostileLog['interrupt-when-not-live']).toBeGreaterThan(before);
      await turns(5);
      expect(configChanges).toBe(0);
      expect(errors).toEqual([]);
      expect(rig.transport.stats.ignoredInterrupts).toBeGreaterThanOrEqual(0);
      closeAndCheckMemory(driver, rig);
    },
  );
});

describe('12 spurious-interrupts', () => {
  it.each(SIM_VARIANTS)(
    '12 spurious-interrupts: %s: status-0 wake-ups and undefined bits are counted; the driver keeps working',
    async (_label, variant) => {
      for (const spurious of ['zero', 'unknown-bits'] as const) {
        const rig = hostileRig(variant, echoModel(), { 'spurious-interrupts': { variant: spurious } });
        const driver = new EchoDriver(rig.transport, { memory: rig.pool, queueSize: 8 });
        for (let i = 0; i < 5; i++) {
          const sent = payload(16, i);
          expect([...(await driver.echo([sent], [16]))]).toEqual([...sent]);
          await turns(2);
        }
        expect(rig.sim.hostileLog['spurious-interrupts']).toBeGreaterThan(0);
        if (spurious === 'zero') expect(rig.transport.stats.spuriousInterrupts).toBeGreaterThan(0);
        else expect(rig.transport.stats.unknownInterruptBits).toBeGreaterThan(0);
        expect(driver.q.broken).toBe(false);
        closeAndCheckMemory(driver, rig);
      }
    },
  );
});

describe('13 interrupt-storm', () => {
  describe.each([
    ['used buffer', 1],
    ['used buffer and configuration change', 3],
  ] as const)('with %s interrupts', (_kind, bits) => {
    it.each(SIM_VARIANTS)(
      '13 interrupt-storm: %s: bounded by stormLimit; DeviceBrokenError via onError, pending rejected, timers fire',
      async (_label, variant) => {
        const model = echoModel({ handle: () => new Promise<number>(() => undefined) });
        const rig = hostileRig(variant, model, { 'interrupt-storm': { bits } }, { transport: { stormLimit: 200 } });
        let timerFired = false;
        setTimeout(() => (timerFired = true), 1);
        const driver = new EchoDriver(rig.transport, { memory: rig.pool, queueSize: 8 });
        const errors: Error[] = [];
        driver.onError((error) => errors.push(error));
        const jobs = echoes(driver, 2);
        await until(() => errors.length > 0 && jobs.every((j) => j.out.settled === 1), 2000);
        expect(timerFired).toBe(true);
        expect(errors).toHaveLength(1);
        expect(errors[0]).toBeInstanceOf(DeviceBrokenError);
        expect(errors[0]).toMatchObject({ code: 'ERR_VIRTIO_BROKEN', reason: 'interrupt-storm' });
        for (const { out } of jobs) {
          expect(out.settled).toBe(1);
          expect(out.error).toMatchObject({ code: 'ERR_VIRTIO_BROKEN', reason: 'interrupt-storm' });
        }
        // Bounded: the transport stopped listening well before the device stopped storming.
        const raised = rig.sim.hostileLog['interrupt-storm'];
        expect(raised).toBeLessThan(200 + 10);
        await turns(10);
        expect(rig.sim.hostileLog['interrupt-storm']).toBe(raised);
        closeAndCheckMemory(driver, rig);
      },
    );
  });
});

describe('14 never-completes', () => {
  it.each(SIM_VARIANTS)(
    '14 never-completes: %s: TimeoutError after requestTimeoutMs, nothing keeps the process alive, close() is prompt',
    async (_label, variant) => {
      const rig = hostileRig(variant, new RngModel(), { 'never-completes': true }, { after: 1 });
      const rng = VirtioRng.open(rig.transport, { memory: rig.pool, requestBytes: 64, requestTimeoutMs: 50 });
      expect((await rng.read(64)).length).toBe(64);
      const read = track(rng.read(128));
      await until(() => read.settled === 1);
      expect(read.settled).toBe(1);
      expect(read.error).toBeInstanceOf(TimeoutError);
      expect(read.error).toMatchObject({ code: 'ERR_VIRTIO_TIMEOUT' });
      // The interrupt line (and no watchdog) keeps the process alive for requests that timed out: it lets go within
      // a few event-loop turns (a full parallel test run sometimes needs more than three; a line that
      // stays ref'd fails).
      await until(() => EpollLoop.default().keepAliveCount === 0, 1000);
      expect(EpollLoop.default().keepAliveCount).toBe(0);
      const started = Date.now();
      closeAndCheckMemory(rng, rig);
      expect(Date.now() - started).toBeLessThan(200);
    },
  );
});

describe('15 config-generation-churn', () => {
  // Version 1 (legacy) has no ConfigGeneration (§4.2.4).
  it.each(SIM_VARIANTS.filter(([, v]) => v !== 1))(
    '15 config-generation-churn: %s: TransportError ERR_VIRTIO_CONFIG_UNSTABLE from open',
    async (_label, variant) => {
      const rig = hostileRig(
        variant,
        new BlkModel(),
        { 'config-generation-churn': true },
        { transport: { configRetries: 5 } },
      );
      expect(() => VirtioBlk.open(rig.transport, { memory: rig.pool })).toThrow(
        expect.objectContaining({ code: TransportError.CONFIG_UNSTABLE }),
      );
      expect(rig.pool.stats().regions).toBe(rig.regions);
      await loopAlive();
    },
  );
});

describe('16 config-window-short', () => {
  it.each(SIM_VARIANTS)(
    '16 config-window-short: %s: TransportError ERR_VIRTIO_CONFIG_INVALID from open, device FAILED, memory released',
    async (_label, variant) => {
      const rig = hostileRig(variant, new BlkModel(), { 'config-window-short': { configBytes: 4 } });
      let error: unknown;
      try {
        VirtioBlk.open(rig.transport, { memory: rig.pool });
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(TransportError);
      expect(error).toMatchObject({ code: 'ERR_VIRTIO_CONFIG_INVALID' });
      expect(rig.sim.status & DeviceStatus.FAILED).toBe(DeviceStatus.FAILED);
      expect(rig.pool.stats().regions).toBe(rig.regions);
    },
  );
});

describe('17 config-out-of-range', () => {
  const opens = {
    'blk-capacity-overflow': (rig: SimRig) => VirtioBlk.open(rig.transport, { memory: rig.pool }),
    'blk-size-not-power-of-two': (rig: SimRig) => VirtioBlk.open(rig.transport, { memory: rig.pool }),
    'blk-num-queues-zero': (rig: SimRig) => VirtioBlk.open(rig.transport, { memory: rig.pool }),
    'blk-num-queues-huge': (rig: SimRig) => VirtioBlk.open(rig.transport, { memory: rig.pool }),
    'net-max-pairs-zero': (rig: SimRig) => VirtioNet.open(rig.transport, { memory: rig.pool }),
    'console-max-ports-huge': (rig: SimRig) => VirtioConsole.open(rig.transport, { memory: rig.pool }),
  } as const;
  const models = {
    blk: () => new BlkModel(),
    net: () => new NetModel({ control: true }),
    console: () => new ConsoleModel(),
  };
  /**
   * What each lie leads to: a value the spec forbids fails the open; a bad
   * optional hint (blk_size) is ignored; a count beyond what the driver uses
   * is capped, and queues the device then lacks fail typed.
   */
  const outcomes: Record<keyof typeof opens, { code: string } | { opens: (driver: { close(): void }) => void }> = {
    'blk-capacity-overflow': { code: 'ERR_VIRTIO_CONFIG_INVALID' },
    'blk-num-queues-zero': { code: 'ERR_VIRTIO_CONFIG_INVALID' },
    'blk-size-not-power-of-two': { opens: (driver) => expect((driver as VirtioBlk).info.blockSize).toBe(512) },
    'blk-num-queues-huge': { code: 'ERR_VIRTIO_QUEUE_UNAVAILABLE' },
    'net-max-pairs-zero': { code: 'ERR_VIRTIO_CONFIG_INVALID' },
    'console-max-ports-huge': { code: 'ERR_VIRTIO_QUEUE_UNAVAILABLE' },
  };
  describe.each(SIM_VARIANTS)('on %s', (_label, variant) => {
    it.each(Object.keys(opens) as (keyof typeof opens)[])(
      '17 config-out-of-range: %s: refused typed, ignored or capped as the field allows',
      (field) => {
        const rig = hostileRig(variant, models[field.split('-')[0] as keyof typeof models](), {
          'config-out-of-range': { field },
        });
        const outcome = outcomes[field];
        if ('code' in outcome) {
          expect(() => opens[field](rig)).toThrow(expect.objectContaining({ code: outcome.code }));
          expect(rig.sim.hostileLog['config-out-of-range']).toBeGreaterThan(0);
        } else {
          const driver = opens[field](rig);
          outcome.opens(driver);
          expect(rig.sim.hostileLog['config-out-of-range']).toBeGreaterThan(0);
          driver.close();
        }
        expect(rig.pool.stats().regions).toBe(rig.regions);
      },
    );
  });
});

describe('18 bad-identity', () => {
  it.each([
    ['magic', TransportError.BAD_MAGIC],
    ['version-3', TransportError.BAD_VERSION],
    ['device-id-0', TransportError.EMPTY_SLOT],
  ] as const)('18 bad-identity: %s: new MmioTransport() throws %s', (kind, code) => {
    for (const [, variant] of SIM_VARIANTS) {
      expect(() =>
        simRig(variant, new RngModel(), {
          strict: false,
          hostile: { seed: SEED, behaviours: { 'bad-identity': { kind } } },
        }),
      ).toThrow(expect.objectContaining({ name: 'TransportError', code }));
    }
  });
});

describe('19 queue-num-max-bad', () => {
  it.each(SIM_VARIANTS)('19 queue-num-max-bad: %s: zero is ERR_VIRTIO_QUEUE_UNAVAILABLE', (_label, variant) => {
    const rig = hostileRig(variant, echoModel({ queueSizes: [64] }), { 'queue-num-max-bad': { kind: 'zero' } });
    expect(() => new EchoDriver(rig.transport, { memory: rig.pool })).toThrow(
      expect.objectContaining({ code: TransportError.QUEUE_UNAVAILABLE }),
    );
    expect(rig.pool.stats().regions).toBe(rig.regions);
  });

  it.each(SIM_VARIANTS)(
    '19 queue-num-max-bad: %s: not a power of two: split rounds down to a power of two, packed takes the exact size',
    async (_label, variant) => {
      const rig = hostileRig(variant, echoModel({ queueSizes: [64] }), {
        'queue-num-max-bad': { kind: 'not-power-of-two', value: 100 - 1 },
      });
      const driver = new EchoDriver(rig.transport, { memory: rig.pool, queueSize: 1024 });
      expect(driver.q.size).toBe(variant === 'packed' ? 99 : 64);
      const sent = payload(16, 3);
      expect([...(await driver.echo([sent], [16]))]).toEqual([...sent]);
      closeAndCheckMemory(driver, rig);
    },
  );

  it.each(SIM_VARIANTS)(
    '19 queue-num-max-bad: %s: a queue live before setup is ERR_VIRTIO_QUEUE_IN_USE',
    (_label, variant) => {
      const rig = hostileRig(variant, echoModel(), { 'queue-num-max-bad': { kind: 'already-live' } });
      expect(() => new EchoDriver(rig.transport, { memory: rig.pool })).toThrow(
        expect.objectContaining({ code: TransportError.QUEUE_IN_USE }),
      );
      expect(rig.pool.stats().regions).toBe(rig.regions);
    },
  );
});

describe('20 features-bad', () => {
  const MODERN_VARIANTS = SIM_VARIANTS.filter(([, v]) => v !== 1);
  it.each(MODERN_VARIANTS)(
    '20 features-bad: %s: FEATURES_OK dropped is NegotiationError ERR_VIRTIO_FEATURES_REFUSED',
    (_label, variant) => {
      const rig = hostileRig(variant, echoModel(), { 'features-bad': { kind: 'features-ok-dropped' } });
      expect(() => new EchoDriver(rig.transport, { memory: rig.pool })).toThrow(NegotiationError);
      expect(() => new EchoDriver(rig.transport, { memory: rig.pool })).toThrow(
        expect.objectContaining({ code: NegotiationError.FEATURES_REFUSED }),
      );
      expect(rig.pool.stats().regions).toBe(rig.regions);
    },
  );

  it.each(MODERN_VARIANTS)(
    '20 features-bad: %s: VERSION_1 missing is NegotiationError ERR_VIRTIO_VERSION_1_MISSING',
    (_label, variant) => {
      const rig = hostileRig(variant, echoModel(), { 'features-bad': { kind: 'version-1-missing' } });
      expect(() => new EchoDriver(rig.transport, { memory: rig.pool })).toThrow(
        expect.objectContaining({ name: 'NegotiationError', code: NegotiationError.VERSION_1_MISSING }),
      );
    },
  );

  it.each(SIM_VARIANTS)(
    '20 features-bad: %s: bits never offered are not negotiated; the driver works',
    async (_label, variant) => {
      const rig = hostileRig(variant, echoModel(), { 'features-bad': { kind: 'echo-unoffered' } });
      const driver = new EchoDriver(rig.transport, { memory: rig.pool });
      expect(rig.sim.hostileLog['features-bad']).toBeGreaterThan(0);
      expect(driver.features & ~rig.sim.deviceFeatures).toBe(0n);
      const transportRange = ((1n << 50n) - 1n) ^ ((1n << 24n) - 1n);
      expect(driver.features & transportRange & ~TRANSPORT_FEATURES).toBe(0n);
      const sent = payload(16, 4);
      expect([...(await driver.echo([sent], [16]))]).toEqual([...sent]);
      closeAndCheckMemory(driver, rig);
      expect(rigs.pop()!.close()).toEqual([]);
    },
  );
});

describe('21 needs-reset', () => {
  it.each(SIM_VARIANTS)(
    '21 needs-reset: %s: DeviceBrokenError needs-reset for each pending request and via onError; later submits too',
    async (_label, variant) => {
      const rig = hostileRig(variant, echoModel(), { 'needs-reset': true }, { after: 1 });
      const driver = new EchoDriver(rig.transport, { memory: rig.pool, queueSize: 8 });
      const errors: Error[] = [];
      driver.onError((error) => errors.push(error));
      await driver.echo([payload(8, 0)], [8]);
      const jobs = echoes(driver, 3);
      await until(() => jobs.every((j) => j.out.settled === 1) && errors.length > 0);
      for (const { out } of jobs) {
        expect(out.settled).toBe(1);
        expect(out.error).toBeInstanceOf(DeviceBrokenError);
        expect(out.error).toMatchObject({ code: 'ERR_VIRTIO_BROKEN', reason: 'needs-reset' });
      }
      expect(errors).toHaveLength(1);
      expect(errors[0]).toMatchObject({ code: 'ERR_VIRTIO_BROKEN', reason: 'needs-reset' });
      await expect(driver.echo([payload(4, 1)], [4])).rejects.toMatchObject({
        code: 'ERR_VIRTIO_BROKEN',
        reason: 'needs-reset',
      });
      await loopAlive();
      closeAndCheckMemory(driver, rig);
    },
  );
});

describe('22 device-gone', () => {
  it.each(SIM_VARIANTS)(
    '22 device-gone: %s: DeviceGoneError for every pending request and through onError',
    async (_label, variant) => {
      for (const registers of [undefined, 'all-ones'] as const) {
        const line = new PipeInterruptSource('hostile device-gone line');
        lines.push(line);
        const rig = hostileRig(
          variant,
          echoModel(),
          { 'device-gone': registers ? { registers } : true },
          { after: 1, sim: { interrupt: line }, transport: { resetTimeoutMs: 20 } },
        );
        const driver = new EchoDriver(rig.transport, { memory: rig.pool, queueSize: 8 });
        const errors: Error[] = [];
        driver.onError((error) => errors.push(error));
        await driver.echo([payload(8, 0)], [8]);
        const jobs = echoes(driver, 3);
        await until(() => jobs.every((j) => j.out.settled === 1) && errors.length > 0);
        expect(line.hungUp).toBe(true);
        for (const { out } of jobs) {
          expect(out.settled).toBe(1);
          expect(out.error).toBeInstanceOf(DeviceGoneError);
          expect(out.error).toMatchObject({ code: 'ERR_VIRTIO_DEVICE_GONE' });
        }
        expect(errors).toHaveLength(1);
        expect(errors[0]).toBeInstanceOf(DeviceGoneError);
        await loopAlive();
        driver.close();
        // A device that reads all ones never completes its reset: its ring memory stays allocated
        // until the pool closes.
        if (!registers) expect(rig.pool.stats().regions).toBe(rig.regions);
      }
    },
  );
});

describe('23 reset-never-completes', () => {
  it.each(SIM_VARIANTS)(
    '23 reset-never-completes: %s: open fails with ERR_VIRTIO_RESET_TIMEOUT within resetTimeoutMs',
    (_label, variant) => {
      const rig = hostileRig(
        variant,
        echoModel(),
        { 'reset-never-completes': { kind: 'device' } },
        { transport: { resetTimeoutMs: 20 } },
      );
      const started = Date.now();
      expect(() => new EchoDriver(rig.transport, { memory: rig.pool })).toThrow(
        expect.objectContaining({ name: 'TransportError', code: TransportError.RESET_TIMEOUT }),
      );
      expect(Date.now() - started).toBeLessThan(500);
      expect(rig.pool.stats().regions).toBe(rig.regions);
    },
  );

  it.each(SIM_VARIANTS.filter(([, v]) => v !== 1))(
    '23 reset-never-completes: %s: queue reset fails with ERR_VIRTIO_QUEUE_RESET_TIMEOUT',
    async (_label, variant) => {
      const rig = hostileRig(
        variant,
        echoModel(),
        { 'reset-never-completes': { kind: 'queue' } },
        { transport: { queueResetTimeoutMs: 20 } },
      );
      const driver = new EchoDriver(rig.transport, { memory: rig.pool });
      expect(() => rig.transport.resetQueue(0)).toThrow(
        expect.objectContaining({ name: 'TransportError', code: TransportError.QUEUE_RESET_TIMEOUT }),
      );
      expect(rig.sim.hostileLog['reset-never-completes']).toBeGreaterThan(0);
      await loopAlive();
      driver.close();
    },
  );
});
