/**
 * DriverSetup: the init sequence of virtio 1.2 §3.1.1 one step at a time,
 * and what abandon() undoes at each point (device FAILED and queue memory
 * freed; kept while the device will not reset; closed after finish()).
 */
import {
  DriverSetup,
  VirtioBlk,
  VirtioDriver,
  VirtioNet,
  VirtioRng,
  type DriverOptions,
  type StartedDevice,
} from '../../lib/devices';
import type { DmaAllocator, DmaPool } from '../../lib/platform';
import { BlkModel, NetModel, RngModel } from '../../lib/sim';
import { DeviceStatus, FeatureBit, feature, hasFeature } from '../../lib/spec';
import type { VirtioTransport } from '../../lib/transport';
import { SIM_VARIANTS, echoModel, simRig, type SimRig } from '../support/sim-rig';

let rig: SimRig | undefined;
afterEach(() => {
  const violations = rig?.close() ?? [];
  rig = undefined;
  expect(violations).toEqual([]);
});

/** A user-style driver whose steps can be made to fail. */
class StepDriver extends VirtioDriver {
  static open(
    transport: VirtioTransport,
    options: DriverOptions,
    failAt?: 'config' | 'queues' | 'constructor',
  ): StepDriver {
    const setup = DriverSetup.begin(transport, options);
    try {
      setup.negotiate(42, 0n);
      if (failAt === 'config') setup.requireConfig(4, 'step driver');
      setup.setUpQueues([0], 16);
      if (failAt === 'queues') throw new Error('after the queues');
      setup.driverOk();
      return new StepDriver(setup.finish(), failAt === 'constructor');
    } catch (error) {
      throw setup.abandon(error);
    }
  }

  private constructor(started: StartedDevice, fail: boolean) {
    super(started);
    if (fail) throw new Error('in the constructor');
  }
}

const FAILED = DeviceStatus.FAILED;

describe.each(SIM_VARIANTS)('DriverSetup: %s', (_name, variant) => {
  test('the steps bring the device to DRIVER_OK; finish() hands transport, features, memory and queues over', () => {
    rig = simRig(variant, echoModel());
    const setup = DriverSetup.begin(rig.transport, { memory: rig.pool, requestTimeoutMs: 0 });
    const features = setup.negotiate(42, 0n);
    expect(hasFeature(features, FeatureBit.RING_PACKED)).toBe(variant === 'packed');
    setup.setUpQueues([0], 8);
    expect(rig.transport.live).toBe(false);
    setup.driverOk();
    expect(rig.transport.live).toBe(true);
    const started = setup.finish();
    expect(started).toMatchObject({
      transport: rig.transport,
      features,
      memory: rig.pool,
      requestTimeoutMs: undefined,
    });
    expect([...started.queues.keys()]).toEqual([0]);
    expect(started.queues.get(0)!.size).toBe(8);
    rig.transport.close();
    for (const queue of started.queues.values()) queue.close();
  });

  test.each(['config', 'queues'] as const)(
    'a failure at %s leaves the device FAILED and frees its queues',
    (failAt) => {
      rig = simRig(variant, echoModel());
      expect(() => StepDriver.open(rig!.transport, { memory: rig!.pool }, failAt)).toThrow(
        failAt === 'config' ? /config space/ : 'after the queues',
      );
      expect(rig.transport.status & FAILED).toBe(FAILED);
      expect(rig.pool.stats().regions).toBe(0);
    },
  );

  test('a device that will not reset keeps the ring memory of an abandoned setup', () => {
    rig = simRig(variant, echoModel(), {}, { resetTimeoutMs: 10 });
    const setup = DriverSetup.begin(rig.transport, { memory: rig.pool });
    setup.negotiate(42, 0n);
    setup.setUpQueues([0]);
    rig.sim.resetLatency = Infinity;
    const boom = new Error('boom');
    expect(setup.abandon(boom)).toBe(boom);
    expect(rig.pool.stats().regions).toBeGreaterThan(0);
    // MmioTransport.markFailed() sets FAILED on what Status still reads while the reset is under way
    // (FEATURES_OK among it), which the sim flags; a transport matter, not the setup's.
    expect(rig.sim.violations.filter((v) => v.rule !== 'version-1-not-accepted')).toEqual([]);
    rig.sim.clearViolations();
  });

  test('a failure in the constructor (after finish()) closes the device as close() would', () => {
    rig = simRig(variant, echoModel());
    expect(() => StepDriver.open(rig!.transport, { memory: rig!.pool }, 'constructor')).toThrow('in the constructor');
    expect(rig.transport.closed).toBe(true);
    expect(rig.pool.stats().regions).toBe(0);
  });
});

describe('DriverSetup before the device is touched', () => {
  test.each([
    ['no memory', {} as DriverOptions, TypeError],
    ['requestTimeoutMs', { requestTimeoutMs: -1 }, RangeError],
    ['queueSize', { queueSize: 0 }, RangeError],
    ['queueMode', { queueMode: 'fast' as never }, TypeError],
    ['excludeFeatures', { excludeFeatures: 1 as never }, TypeError],
  ])('bad options (%s) are refused by begin()', (_what, options, error) => {
    rig = simRig(2, echoModel());
    const memory: Partial<DriverOptions> = _what === 'no memory' ? {} : { memory: rig.pool as DmaAllocator };
    expect(() => DriverSetup.begin(rig!.transport, { ...memory, ...options } as DriverOptions)).toThrow(error);
    expect(rig.sim.status).toBe(0);
  });

  test('a device of another type is refused by negotiate() before any register write; abandon() undoes nothing', () => {
    rig = simRig(2, echoModel());
    const setup = DriverSetup.begin(rig.transport, { memory: rig.pool });
    let caught: unknown;
    try {
      setup.negotiate(4, 0n);
    } catch (error) {
      caught = setup.abandon(error);
    }
    expect(caught).toMatchObject({ code: 'ERR_VIRTIO_WRONG_DEVICE' });
    expect(rig.sim.status).toBe(0);
  });

  test('steps out of order are refused (STATE)', () => {
    rig = simRig(2, echoModel());
    const setup = DriverSetup.begin(rig.transport, { memory: rig.pool });
    expect(() => setup.setUpQueues([0])).toThrow(expect.objectContaining({ code: 'ERR_VIRTIO_STATE' }));
    expect(() => setup.finish()).toThrow(expect.objectContaining({ code: 'ERR_VIRTIO_STATE' }));
    setup.negotiate(42, 0n);
    expect(() => setup.negotiate(42, 0n)).toThrow(expect.objectContaining({ code: 'ERR_VIRTIO_STATE' }));
    expect(() => setup.setUpQueues([0], 0)).toThrow(RangeError);
    setup.abandon(new Error('done'));
    expect(rig.transport.status & FAILED).toBe(FAILED);
  });
});

describe('the packed-ring rig', () => {
  test('reports a driver that negotiated without RING_PACKED (what the sim accepted at FEATURES_OK)', () => {
    const packed = simRig('packed', echoModel());
    const driver = StepDriver.open(packed.transport, {
      memory: packed.pool,
      excludeFeatures: feature(FeatureBit.RING_PACKED),
    });
    driver.close();
    expect(packed.close()).toEqual([expect.objectContaining({ rule: 'test-rig-packed-not-negotiated' })]);
  });
});

/** `pool`, except that its `n`th allocation once the device is live (the driver's own buffers) throws. */
function failingAfterLive(pool: DmaPool, transport: VirtioTransport, n: number): DmaAllocator {
  let live = 0;
  return new Proxy(pool, {
    get(target, key) {
      if (key === 'allocate') {
        return (size: number, align?: number) => {
          if (transport.live && ++live === n) throw new Error('out of DMA memory');
          return target.allocate(size, align);
        };
      }
      const value = Reflect.get(target, key) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe.each(SIM_VARIANTS)('a driver whose own buffers cannot be allocated after DRIVER_OK: %s', (_name, variant) => {
  test.each([
    ['rng', () => new RngModel(), (t: VirtioTransport, memory: DmaAllocator) => VirtioRng.open(t, { memory }), 1],
    [
      'blk (the second queue slots)',
      () => new BlkModel({ numQueues: 2 }),
      (t: VirtioTransport, memory: DmaAllocator) => VirtioBlk.open(t, { memory }),
      2,
    ],
    ['net', () => new NetModel(), (t: VirtioTransport, memory: DmaAllocator) => VirtioNet.open(t, { memory }), 1],
  ] as const)('%s: open throws, the device is closed and nothing stays allocated', (_device, model, open, n) => {
    rig = simRig(variant, model());
    expect(() => open(rig!.transport, failingAfterLive(rig!.pool, rig!.transport, n))).toThrow('out of DMA memory');
    expect(rig.transport.closed).toBe(true);
    expect(rig.pool.stats().regions).toBe(0);
  });
});
