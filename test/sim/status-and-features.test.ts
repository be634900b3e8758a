import { SimDevice } from '../../lib/sim';
import { FeatureBit, feature } from '../../lib/spec';
import {
  ACKNOWLEDGE,
  DEVICE_NEEDS_RESET,
  DRIVER,
  DRIVER_OK,
  FAILED,
  FEATURES_OK,
  R,
  TestModel,
  TRANSPORT_V1,
  TRANSPORT_V2,
  useTestDrivers,
} from './sim-test-driver';

const rig = useTestDrivers();

const MODEL_BITS = feature(0) | feature(5) | feature(50);

describe('feature words (virtio 1.2 §4.2.2)', () => {
  test.each([
    [2, TRANSPORT_V2],
    [1, TRANSPORT_V1],
  ] as const)('Version %i offers the model bits and its default transport bits, word by word', (version, transport) => {
    const r = rig(new TestModel({ features: MODEL_BITS }), { version });
    r.probe();
    expect(r.deviceFeatures()).toBe(MODEL_BITS | transport);
    r.sim.writel(R.DeviceFeaturesSel, 2);
    expect(r.sim.readl(R.DeviceFeatures)).toBe(0);
    r.sim.writel(R.DeviceFeaturesSel, 0xffff_ffff);
    expect(r.sim.readl(R.DeviceFeatures)).toBe(0);
    expect(r.sim.violations).toEqual([]);
  });

  test('transportFeatures replaces the default transport bits', () => {
    const r = rig(new TestModel({ features: feature(1) }), { transportFeatures: feature(FeatureBit.VERSION_1) });
    r.probe();
    expect(r.deviceFeatures()).toBe(feature(1) | feature(FeatureBit.VERSION_1));
  });

  test('a clean Version 2 negotiation records nothing and keeps FEATURES_OK; DRIVER_OK tells the model', () => {
    const model = new TestModel({ features: MODEL_BITS });
    const r = rig(model);
    const accepted = r.init(feature(5) | feature(FeatureBit.VERSION_1) | feature(FeatureBit.EVENT_IDX));
    expect(r.status()).toBe(ACKNOWLEDGE | DRIVER | FEATURES_OK);
    expect(r.sim.driverFeatures).toBe(accepted);
    r.driverOk();
    expect(r.sim.status).toBe(ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    expect(model.calls).toEqual(['reset', `driverOk 0x${accepted.toString(16)}`]);
    expect(r.sim.violations).toEqual([]);
  });

  test('a clean Version 1 sequence (no FEATURES_OK, GuestPageSize) records nothing', () => {
    const r = rig(new TestModel(), { version: 1 });
    r.init();
    r.driverOk();
    expect(r.status()).toBe(ACKNOWLEDGE | DRIVER | DRIVER_OK);
    expect(r.sim.violations).toEqual([]);
  });

  test('DeviceFeatures read before DeviceFeaturesSel, DriverFeatures written before DriverFeaturesSel', () => {
    const r = rig(new TestModel());
    r.probe();
    r.addStatus(ACKNOWLEDGE);
    r.addStatus(DRIVER);
    expect(r.sim.readl(R.DeviceFeatures)).toBe(0x3000_0000); // word 0: INDIRECT_DESC | EVENT_IDX
    r.sim.writel(R.DriverFeatures, 0);
    expect(r.rules).toEqual(['device-features-sel-unset', 'driver-features-sel-unset']);
  });

  test('accepting a feature not offered is feature-not-offered; FEATURES_OK is then refused by default', () => {
    const r = rig(new TestModel({ features: feature(1) }));
    r.probe();
    r.addStatus(ACKNOWLEDGE);
    r.addStatus(DRIVER);
    r.writeDriverFeatures(feature(1) | feature(2) | feature(FeatureBit.VERSION_1));
    expect(r.rules).toEqual(['feature-not-offered']);
    expect(r.sim.violations[0].message).toMatch(/did not offer: 2/);
    expect(r.addStatus(FEATURES_OK) & FEATURES_OK).toBe(0);
  });

  test('without VERSION_1 a Version 2 device refuses FEATURES_OK, and the driver broke §6.1', () => {
    const r = rig(new TestModel());
    r.probe();
    r.addStatus(ACKNOWLEDGE);
    r.addStatus(DRIVER);
    r.writeDriverFeatures(feature(FeatureBit.EVENT_IDX));
    expect(r.addStatus(FEATURES_OK)).toBe(ACKNOWLEDGE | DRIVER);
    expect(r.rules).toEqual(['version-1-not-accepted']);
    expect(r.sim.violations[0].section).toBe('6.1');
  });

  test('acceptFeatures decides FEATURES_OK', () => {
    const seen: bigint[] = [];
    const r = rig(new TestModel(), { acceptFeatures: (f) => (seen.push(f), false) });
    r.init(feature(FeatureBit.VERSION_1));
    expect(seen).toEqual([feature(FeatureBit.VERSION_1)]);
    expect(r.status() & FEATURES_OK).toBe(0);
    expect(r.sim.acceptedFeatures).toEqual([]);
    expect(r.sim.violations).toEqual([]);
  });

  test('acceptedFeatures lists every FEATURES_OK kept, across resets', () => {
    const r = rig(new TestModel({ features: MODEL_BITS }));
    const first = r.init(feature(0) | feature(FeatureBit.VERSION_1));
    const second = r.init(feature(5) | feature(FeatureBit.VERSION_1));
    expect(r.sim.acceptedFeatures).toEqual([first, second]);
    expect(r.sim.violations).toEqual([]);
  });

  test('DriverFeatures after FEATURES_OK (Version 2) or DRIVER_OK (Version 1) is too late and ignored', () => {
    const v2 = rig(new TestModel({ features: feature(3) }));
    const accepted = v2.init();
    v2.writeDriverFeatures(0n);
    expect(v2.sim.driverFeatures).toBe(accepted);
    expect(v2.rules).toEqual(['driver-features-too-late', 'driver-features-too-late']);
    const v1 = rig(new TestModel(), { version: 1 });
    v1.init();
    v1.writeDriverFeatures(0n); // before DRIVER_OK: fine on legacy
    v1.driverOk();
    v1.writeDriverFeatures(0n);
    expect(v1.rules).toEqual(['driver-features-too-late', 'driver-features-too-late']);
  });

  test('DriverFeatures before the DRIVER status bit is features-before-driver', () => {
    const r = rig(new TestModel());
    r.probe();
    r.addStatus(ACKNOWLEDGE);
    r.writeDriverFeatures(feature(FeatureBit.VERSION_1));
    expect(r.rules).toEqual(['features-before-driver', 'features-before-driver']);
  });
});

describe('device status (virtio 1.2 §2.1, §3.1)', () => {
  test('clearing a status bit without a reset is status-bit-cleared; the bit stays', () => {
    const r = rig(new TestModel());
    r.probe();
    r.sim.writel(R.Status, ACKNOWLEDGE);
    r.sim.writel(R.Status, DRIVER);
    expect(r.status()).toBe(ACKNOWLEDGE | DRIVER);
    expect(r.rules).toEqual(['status-bit-cleared']);
  });

  test('bits out of order are status-order; DRIVER_OK without FEATURES_OK on Version 2', () => {
    const r = rig(new TestModel());
    r.probe();
    r.sim.writel(R.Status, DRIVER);
    expect(r.rules).toEqual(['status-order']);
    r.sim.clearViolations();
    r.sim.writel(R.Status, ACKNOWLEDGE | DRIVER | DRIVER_OK);
    expect(r.rules).toEqual(['driver-ok-without-features-ok']);
    expect(r.sim.violations[0].section).toBe('3.1.1');
    r.sim.writel(R.Status, 0);
    r.sim.clearViolations();
    r.sim.writel(R.Status, ACKNOWLEDGE | FEATURES_OK);
    expect(r.rules).toEqual(['status-order', 'version-1-not-accepted']);
  });

  test('setting ACKNOWLEDGE and DRIVER in one write is accepted', () => {
    const r = rig(new TestModel());
    r.probe();
    r.sim.writel(R.Status, ACKNOWLEDGE | DRIVER);
    expect(r.sim.violations).toEqual([]);
  });

  test('FEATURES_OK on a legacy device is legacy-features-ok', () => {
    const r = rig(new TestModel(), { version: 1 });
    r.init();
    r.addStatus(FEATURES_OK);
    expect(r.rules).toEqual(['legacy-features-ok']);
  });

  test('undefined status bits are status-reserved-bit and not kept; an echoed DEVICE_NEEDS_RESET is ignored', () => {
    const r = rig(new TestModel());
    r.probe();
    r.sim.writel(R.Status, ACKNOWLEDGE | 0x20);
    expect(r.status()).toBe(ACKNOWLEDGE);
    r.sim.writel(R.Status, ACKNOWLEDGE | DEVICE_NEEDS_RESET);
    expect(r.status()).toBe(ACKNOWLEDGE);
    expect(r.rules).toEqual(['status-reserved-bit']);
  });

  test('going on after FAILED without a reset is status-after-failed', () => {
    const r = rig(new TestModel());
    r.probe();
    r.addStatus(ACKNOWLEDGE);
    r.addStatus(FAILED);
    r.addStatus(DRIVER);
    expect(r.rules).toEqual(['status-after-failed']);
  });

  test('writing 0 resets status, features, selectors, queues, InterruptStatus and the model', () => {
    const model = new TestModel({ queueSizes: [8] });
    const r = rig(model);
    r.init();
    const ring = r.setupQueue(0, 8);
    expect(r.sim.queueState(0)).toMatchObject({ ready: true, size: 8, desc: ring.addresses.desc });
    r.driverOk();
    r.sim.raiseConfigChange();
    expect(r.sim.readl(R.InterruptStatus)).toBe(2);
    r.sim.writel(R.Status, 0);
    expect(r.sim.status).toBe(0);
    expect(r.sim.driverFeatures).toBe(0n);
    expect(r.sim.readl(R.InterruptStatus)).toBe(0);
    expect(r.sim.queueState(0)).toMatchObject({ ready: false, size: 0, desc: 0n, lastAvail: 0, usedIdx: 0 });
    expect(model.calls.filter((c) => c === 'reset')).toHaveLength(2);
    r.sim.readl(R.DeviceFeatures); // the selector was reset too
    expect(r.rules).toEqual(['device-features-sel-unset']);
  });
});

describe('reset latency (virtio 1.2 §2.4)', () => {
  test('Status reads its old value for resetLatency reads; pollUntil waits for 0', () => {
    const r = rig(new TestModel(), { resetLatency: 3 });
    r.init();
    const before = r.status();
    r.sim.writel(R.Status, 0);
    expect(r.sim.status).toBe(0);
    expect([r.status(), r.status(), r.status(), r.status()]).toEqual([before, before, before, 0]);
    r.sim.writel(R.Status, 0);
    expect(r.sim.pollUntil(R.Status, 0xff, 0, 1000)).toBe(0);
    expect(r.sim.violations).toEqual([]);
  });

  test('a reset from status 0 reads DEVICE_NEEDS_RESET until it completes', () => {
    const r = rig(new TestModel(), { resetLatency: 2 });
    r.probe();
    r.sim.writel(R.Status, 0);
    expect([r.status(), r.status(), r.status()]).toEqual([DEVICE_NEEDS_RESET, DEVICE_NEEDS_RESET, 0]);
  });

  test('with Infinity, pollUntil gives up quickly and returns null', () => {
    const r = rig(new TestModel(), { resetLatency: Infinity });
    r.probe();
    r.addStatus(ACKNOWLEDGE);
    r.addStatus(DRIVER);
    r.sim.writel(R.Status, 0);
    const started = Date.now();
    expect(r.sim.pollUntil(R.Status, 0xff, 0, 5000)).toBeNull();
    expect(Date.now() - started).toBeLessThan(1000);
    expect(r.status()).toBe(ACKNOWLEDGE | DRIVER);
    // Giving up with FAILED is allowed; anything else before the reset completes is not.
    r.addStatus(FAILED);
    r.sim.writel(R.DeviceFeaturesSel, 0);
    expect(r.rules).toEqual(['reset-not-complete']);
    expect(r.sim.violations[0].section).toBe('2.4.2');
  });

  test('latency options are validated', () => {
    const r = rig(new TestModel());
    expect(() => new SimDevice({ memory: r.pool, model: new TestModel(), resetLatency: -1 })).toThrow(RangeError);
    expect(() => new SimDevice({ memory: r.pool, model: new TestModel(), queueResetLatency: 1.5 })).toThrow(RangeError);
    expect(() => new SimDevice({ memory: r.pool, model: new TestModel(), version: 3 as 2 })).toThrow(RangeError);
    expect(() => new SimDevice({} as never)).toThrow(TypeError);
  });

  test('pollUntil returns the matching value with the mask applied', () => {
    const r = rig(new TestModel());
    r.probe();
    r.sim.writel(R.Status, ACKNOWLEDGE | DRIVER);
    expect(r.sim.pollUntil(R.Status, DRIVER, DRIVER, 10)).toBe(ACKNOWLEDGE | DRIVER);
    expect(r.sim.pollUntil(R.Status, DRIVER_OK, DRIVER_OK, 10)).toBeNull();
  });
});
