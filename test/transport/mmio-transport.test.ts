import { NegotiationError, TransportError } from '../../lib/errors';
import { SplitQueue } from '../../lib/queue';
import { RngModel } from '../../lib/sim';
import { DeviceId, DeviceStatus, FeatureBit, MmioRegister, feature, features, hasFeature } from '../../lib/spec';
import { MmioTransport, TRANSPORT_FEATURES, probe } from '../../lib/transport';
import { echoModel, simRig, turns, type SimRig } from '../support/sim-rig';

const rigs: SimRig[] = [];
const rig = (...args: Parameters<typeof simRig>): SimRig => {
  const r = simRig(...args);
  rigs.push(r);
  return r;
};

afterEach(() => {
  const violations = rigs.splice(0).flatMap((r) => r.close());
  expect(violations).toEqual([]);
});

describe.each([1, 2] as const)('MmioTransport on a Version %i sim', (version) => {
  test('probe reads magic, version, device and vendor ID', () => {
    const { sim, transport } = rig(version, new RngModel(), { vendorId: 0x1234_5678 });
    expect(probe(sim)).toEqual({ version, deviceId: DeviceId.ENTROPY, vendorId: 0x1234_5678, empty: false });
    expect(transport.version).toBe(version);
    expect(transport.deviceId).toBe(DeviceId.ENTROPY);
    expect(transport.vendorId).toBe(0x1234_5678);
  });

  test('an empty slot is reported as empty by probe and refused by the constructor, touching nothing else', () => {
    const r = rig(version, echoModel());
    const { SimDevice } = jest.requireActual('../../lib/sim') as typeof import('../../lib/sim');
    const empty = new SimDevice({ memory: r.pool, version, strict: true });
    try {
      expect(probe(empty)).toEqual({ version, deviceId: 0, vendorId: 0, empty: true });
      expect(() => new MmioTransport(empty)).toThrow(expect.objectContaining({ code: TransportError.EMPTY_SLOT }));
      expect(empty.violations).toEqual([]);
    } finally {
      empty.close();
    }
  });

  test('negotiation accepts wanted ∩ offered ∩ implemented and sets the status bits in order', () => {
    const offeredDeviceBits = features(0, 5, 7);
    const { sim, transport } = rig(version, echoModel({ features: offeredDeviceBits }));
    const wanted = features(0, 7, 9) | TRANSPORT_FEATURES | feature(FeatureBit.RING_PACKED);
    const negotiated = transport.negotiate(wanted);
    expect(hasFeature(negotiated, 0)).toBe(true);
    expect(hasFeature(negotiated, 7)).toBe(true);
    expect(hasFeature(negotiated, 5)).toBe(false); // offered, not wanted
    expect(hasFeature(negotiated, 9)).toBe(false); // wanted, not offered
    expect(hasFeature(negotiated, FeatureBit.RING_PACKED)).toBe(false); // not implemented yet
    expect(hasFeature(negotiated, FeatureBit.VERSION_1)).toBe(version === 2);
    expect(hasFeature(negotiated, FeatureBit.EVENT_IDX)).toBe(true);
    expect(sim.driverFeatures).toBe(negotiated);
    const expected = DeviceStatus.ACKNOWLEDGE | DeviceStatus.DRIVER | (version === 2 ? DeviceStatus.FEATURES_OK : 0);
    expect(transport.status).toBe(expected);
    transport.driverOk();
    expect(transport.status).toBe(expected | DeviceStatus.DRIVER_OK);
    expect(transport.live).toBe(true);
  });

  test('a missing required feature fails negotiation and leaves the device FAILED', () => {
    const { transport } = rig(version, echoModel({ features: features(1) }));
    expect(() => transport.negotiate(features(1, 2), features(2))).toThrow(
      expect.objectContaining({ code: NegotiationError.FEATURE_MISSING, offered: expect.any(BigInt) }),
    );
    expect(transport.status & DeviceStatus.FAILED).toBe(DeviceStatus.FAILED);
    expect(() => transport.driverOk()).toThrow(expect.objectContaining({ code: TransportError.STATE }));
  });

  test('reset waits for Status to read 0, bounded', () => {
    const slow = rig(version, echoModel(), { resetLatency: 5 });
    slow.transport.negotiate(0n);
    expect(() => slow.transport.reset()).not.toThrow();
    expect(slow.transport.status).toBe(0);

    const stuck = rig(version, echoModel(), { resetLatency: Infinity }, { resetTimeoutMs: 20 });
    const started = Date.now();
    expect(() => stuck.transport.negotiate(0n)).toThrow(
      expect.objectContaining({ code: TransportError.RESET_TIMEOUT }),
    );
    expect(Date.now() - started).toBeLessThan(2000);
  });

  test('config fields are read at their width; 64-bit fields as two halves', () => {
    const config = Buffer.alloc(16);
    config.writeUInt8(0xab, 0);
    config.writeUInt16LE(0xbeef, 2);
    config.writeUInt32LE(0xdead_beef, 4);
    config.writeBigUInt64LE(0x0123_4567_89ab_cdefn, 8);
    const model = echoModel({ config: new Uint8Array(config.buffer, config.byteOffset, 16) });
    Object.assign(model, {
      configFields: [
        { offset: 0, width: 1 },
        { offset: 2, width: 2 },
        { offset: 4, width: 4, writable: true },
        { offset: 8, width: 8 },
      ],
    });
    const { transport } = rig(version, model);
    transport.negotiate(0n);
    expect(transport.config.read8(0)).toBe(0xab);
    expect(transport.config.read16(2)).toBe(0xbeef);
    expect(transport.config.read32(4)).toBe(0xdead_beef);
    expect(transport.config.read64(8)).toBe(0x0123_4567_89ab_cdefn);
    transport.config.write32(4, 0x1122_3344);
    expect(Buffer.from(model.config).readUInt32LE(4)).toBe(0x1122_3344);
    expect(() => transport.config.read16(1)).toThrow(RangeError);
    expect(() => transport.config.read32(64)).toThrow(RangeError);
  });

  test('shared memory regions are enumerated (all-ones length = absent)', () => {
    const regions = [
      { id: 0, base: 0x8_0000_0000n, length: 0x20_0000n },
      { id: 3, base: 0x9_0000_0000n, length: 0x1000n },
    ];
    const { transport } = rig(version, echoModel(), { shmRegions: regions });
    if (version === 1) {
      expect(transport.shmRegions()).toEqual([]);
    } else {
      expect(transport.shmRegions()).toEqual(regions);
      expect(transport.shmRegion(1)).toBeUndefined();
    }
  });

  test('queue setup writes the layout the version asks for, and teardown reads back 0', () => {
    const { sim, transport, pool } = rig(version, echoModel({ queueSizes: [64] }));
    const negotiated = transport.negotiate(TRANSPORT_FEATURES);
    expect(transport.queueNumMax(0)).toBe(64);
    const queue = new SplitQueue({
      index: 0,
      size: 32,
      memory: pool,
      layout: transport.queueLayout,
      features: negotiated,
    });
    queue.attach(transport);
    const state = sim.queueState(0);
    expect(state.ready).toBe(true);
    expect(state.size).toBe(32);
    expect(state.desc).toBe(queue.addresses.desc);
    expect(state.driver).toBe(queue.addresses.driver);
    expect(state.device).toBe(queue.addresses.device);
    if (version === 1) {
      expect(queue.addresses.desc % 4096n).toBe(0n);
      expect(queue.addresses.device % 4096n).toBe(0n);
    }
    expect(() => transport.queueNumMax(0)).toThrow(expect.objectContaining({ code: TransportError.QUEUE_IN_USE }));
    transport.deactivateQueue(0);
    expect(sim.queueState(0).ready).toBe(false);
    queue.close();
  });

  test('a queue the device does not have reads QueueNumMax 0', () => {
    const { transport, pool } = rig(version, echoModel({ queueSizes: [8] }));
    const negotiated = transport.negotiate(0n);
    expect(transport.queueNumMax(1)).toBe(0);
    const queue = new SplitQueue({
      index: 1,
      size: 8,
      memory: pool,
      layout: transport.queueLayout,
      features: negotiated,
    });
    expect(() => queue.attach(transport)).toThrow(expect.objectContaining({ code: TransportError.QUEUE_UNAVAILABLE }));
    queue.close();
  });

  test('queue setup is refused after DRIVER_OK', () => {
    const { transport } = rig(version, echoModel());
    transport.negotiate(0n);
    transport.driverOk();
    expect(() => transport.queueNumMax(0)).toThrow(expect.objectContaining({ code: TransportError.STATE }));
  });

  test('a config change interrupt reaches listeners once; a status-0 wake-up is counted as spurious', async () => {
    const { sim, transport } = rig(version, echoModel({ config: new Uint8Array(4) }));
    transport.negotiate(0n);
    const changes: number[] = [];
    transport.onConfigChange(() => changes.push(transport.config.read8(0)));
    transport.driverOk();
    sim.raiseConfigChange((config) => (config[0] = 7));
    await turns();
    expect(changes).toEqual([7]);
    expect(transport.stats.configChanges).toBe(1);
    sim.interrupt.raise();
    await turns();
    expect(transport.stats.spuriousInterrupts).toBe(1);
    expect(changes).toEqual([7]);
  });

  test('no interrupt is delivered before DRIVER_OK or after reset', async () => {
    const { sim, transport } = rig(version, echoModel());
    transport.negotiate(0n);
    sim.interrupt.raise();
    await turns();
    expect(transport.stats.spuriousInterrupts + transport.stats.interrupts).toBe(0);
    transport.driverOk();
    await turns();
    // The early wake-up arrives now, finds InterruptStatus 0, and is only counted.
    expect(transport.stats.interrupts).toBe(0);
    transport.reset();
    expect(sim.interrupt.listening).toBe(false);
    sim.interrupt.raise();
    await turns();
    expect(transport.stats.interrupts).toBe(0);
  });
});

describe('Version 2 only', () => {
  test('a device that refuses FEATURES_OK gets FAILED and a typed error', () => {
    const { transport } = rig(2, echoModel(), { acceptFeatures: () => false });
    expect(() => transport.negotiate(TRANSPORT_FEATURES)).toThrow(
      expect.objectContaining({ code: NegotiationError.FEATURES_REFUSED, name: 'NegotiationError' }),
    );
    expect(transport.status & DeviceStatus.FAILED).toBe(DeviceStatus.FAILED);
    expect(transport.status & DeviceStatus.FEATURES_OK).toBe(0);
  });

  test('a Version 2 device without VERSION_1 is refused', () => {
    const { transport } = rig(2, echoModel(), { transportFeatures: features(FeatureBit.EVENT_IDX) });
    expect(() => transport.negotiate(TRANSPORT_FEATURES)).toThrow(
      expect.objectContaining({ code: NegotiationError.VERSION_1_MISSING }),
    );
    expect(transport.status & DeviceStatus.FAILED).toBe(DeviceStatus.FAILED);
  });

  test('config reads retry while ConfigGeneration moves, and give up on a device that never settles', () => {
    const config = new Uint8Array(8);
    new DataView(config.buffer).setBigUint64(0, 0xfeed_face_cafe_beefn, true);
    const churning = rig(2, echoModel({ config }), { configGenerationChurn: 5 });
    expect(churning.transport.config.read64(0)).toBe(0xfeed_face_cafe_beefn);

    const never = rig(2, echoModel({ config }), { configGenerationChurn: Infinity }, { configRetries: 10 });
    expect(() => never.transport.config.read64(0)).toThrow(
      expect.objectContaining({ code: TransportError.CONFIG_UNSTABLE }),
    );
  });

  test('queue reset (RING_RESET) waits for QueueReset to read 0, then allows setup after DRIVER_OK', () => {
    const { sim, transport, pool } = rig(2, echoModel());
    const negotiated = transport.negotiate(TRANSPORT_FEATURES);
    expect(hasFeature(negotiated, FeatureBit.RING_RESET)).toBe(true);
    const first = new SplitQueue({
      index: 0,
      size: 8,
      memory: pool,
      layout: transport.queueLayout,
      features: negotiated,
    });
    first.attach(transport);
    transport.driverOk();
    transport.resetQueue(0);
    expect(sim.queueState(0).ready).toBe(false);
    first.close();
    const second = new SplitQueue({
      index: 0,
      size: 4,
      memory: pool,
      layout: transport.queueLayout,
      features: negotiated,
    });
    second.attach(transport);
    expect(sim.queueState(0)).toMatchObject({ ready: true, size: 4 });
    second.close();
  });

  test('a queue reset that never completes is a typed error', () => {
    const { transport } = rig(2, echoModel(), { queueResetLatency: Infinity }, { queueResetTimeoutMs: 20 });
    transport.negotiate(TRANSPORT_FEATURES);
    expect(() => transport.resetQueue(0)).toThrow(
      expect.objectContaining({ code: TransportError.QUEUE_RESET_TIMEOUT }),
    );
  });

  test('queue reset needs RING_RESET', () => {
    const { transport } = rig(2, echoModel(), { transportFeatures: features(FeatureBit.VERSION_1) });
    transport.negotiate(TRANSPORT_FEATURES);
    expect(() => transport.resetQueue(0)).toThrow(expect.objectContaining({ code: TransportError.NOT_NEGOTIATED }));
  });
});

describe('Version 1 only', () => {
  test('legacy negotiation writes GuestPageSize and never reads ConfigGeneration', () => {
    const config = new Uint8Array(8);
    const { transport, sim } = rig(1, echoModel({ config }));
    transport.negotiate(TRANSPORT_FEATURES);
    expect(transport.config.read64(0)).toBe(0n);
    expect(sim.violations).toEqual([]);
    expect(MmioRegister.ConfigGeneration).toBe(0x0fc);
  });
});

describe('probe errors', () => {
  test('bad magic and bad version name the value read', () => {
    const bad = rig(2, echoModel());
    const { SimDevice } = jest.requireActual('../../lib/sim') as typeof import('../../lib/sim');
    const magic = new SimDevice({ memory: bad.pool, model: echoModel(), magic: 0x1234_5678 });
    const version = new SimDevice({ memory: bad.pool, model: echoModel(), versionValue: 3 });
    try {
      expect(() => probe(magic)).toThrow(
        expect.objectContaining({ code: TransportError.BAD_MAGIC, message: expect.stringContaining('0x12345678') }),
      );
      expect(() => new MmioTransport(version)).toThrow(
        expect.objectContaining({ code: TransportError.BAD_VERSION, message: expect.stringContaining('Version 3') }),
      );
    } finally {
      magic.close();
      version.close();
    }
  });
});
