/**
 * Strict mode is an observer of the honest device (lib/sim/strict-observer.ts):
 * the same accesses give the same reads and the same device state with it
 * on or off; only the violations differ.
 */
import { DeviceStatus, FeatureBit, MmioRegister as R } from '../../lib/spec';
import { TestModel, useTestDrivers } from './sim-test-driver';

const { ACKNOWLEDGE, DRIVER, FEATURES_OK, DRIVER_OK } = DeviceStatus;
const rig = useTestDrivers();

type Step = ['r' | 'rb' | 'rw', number] | ['w' | 'wb' | 'ww', number, number];

/** A driver that gets most things wrong, on both layouts. */
const MISTAKES: Step[] = [
  ['w', R.Status, ACKNOWLEDGE], // before the probe
  ['r', R.MagicValue],
  ['r', R.Version],
  ['r', R.DeviceID],
  ['rb', R.DeviceID + 1], // narrow read
  ['r', R.DeviceFeatures], // DeviceFeaturesSel never written
  ['w', R.DriverFeatures, 1], // before DRIVER, sel unset, not offered
  ['w', R.Status, ACKNOWLEDGE | DRIVER],
  ['wb', R.Status, ACKNOWLEDGE | DRIVER | 0x20], // narrow, a reserved bit
  ['r', 0x018], // no register there in either layout
  ['r', R.QueueNotify], // write-only
  ['w', R.MagicValue, 1], // read-only
  ['w', R.QueueNotify, 0], // before DRIVER_OK, queue not ready
  ['w', R.DriverFeaturesSel, 1],
  ['w', R.DriverFeatures, 1 << (FeatureBit.VERSION_1 - 32)],
  ['w', R.Status, ACKNOWLEDGE | DRIVER | FEATURES_OK], // refused: word 0 bit 0 was never offered
  ['r', R.Status],
  ['w', R.InterruptACK, 0xf0], // undefined bits
  ['w', R.Status, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK],
  ['w', R.Status, DRIVER_OK], // clears bits
  ['r', R.Status],
  ['w', R.Status, 0],
  ['r', R.Status],
];

function play(sim: {
  readl(o: number): number;
  readb(o: number): number;
  readw(o: number): number;
  writel(o: number, v: number): void;
  writeb(o: number, v: number): void;
  writew(o: number, v: number): void;
}): number[] {
  return MISTAKES.map(([op, offset, value]) => {
    switch (op) {
      case 'r':
        return sim.readl(offset);
      case 'rb':
        return sim.readb(offset);
      case 'rw':
        return sim.readw(offset);
      case 'w':
        sim.writel(offset, value!);
        return -1;
      case 'wb':
        sim.writeb(offset, value! & 0xff);
        return -1;
      case 'ww':
        sim.writew(offset, value! & 0xffff);
        return -1;
    }
  });
}

describe.each([1, 2] as const)('Version %i: strict mode observes, the device acts the same', (version) => {
  test('same reads, status and features with strict on and off; violations only with it on', () => {
    const strict = rig(new TestModel(), { version, strict: true });
    const lax = rig(new TestModel(), { version, strict: false });
    expect(play(strict.sim)).toEqual(play(lax.sim));
    for (const key of ['status', 'driverFeatures', 'negotiatedFeatures', 'acceptedFeatures'] as const)
      expect(strict.sim[key]).toEqual(lax.sim[key]);
    expect(lax.sim.violations).toEqual([]);
    expect(new Set(strict.rules)).toEqual(
      new Set(
        [
          'init-without-probe',
          'register-width',
          'device-features-sel-unset',
          'driver-features-sel-unset',
          'features-before-driver',
          'feature-not-offered',
          'status-reserved-bit',
          'undefined-register',
          'read-write-only',
          'write-read-only',
          'notify-before-driver-ok',
          'notify-queue-not-ready',
          'interrupt-ack-undefined-bits',
          'status-bit-cleared',
          ...(version === 1 ? ['legacy-features-ok'] : ['driver-ok-without-features-ok']),
        ].filter((rule) => version === 2 || rule !== 'notify-before-driver-ok'),
      ),
    );
  });

  test('the device decides: DRIVER_OK after a refused FEATURES_OK is driver-ok-without-features-ok (Version 2)', () => {
    const r = rig(new TestModel(), { version, acceptFeatures: () => false });
    const { sim } = r;
    sim.readl(R.MagicValue);
    sim.readl(R.Version);
    sim.readl(R.DeviceID);
    sim.writel(R.Status, ACKNOWLEDGE);
    sim.writel(R.Status, ACKNOWLEDGE | DRIVER);
    sim.writel(R.DriverFeaturesSel, 1);
    sim.writel(R.DriverFeatures, version === 2 ? 1 << (FeatureBit.VERSION_1 - 32) : 0);
    sim.writel(R.Status, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
    expect(r.rules).toEqual(version === 2 ? ['driver-ok-without-features-ok'] : ['legacy-features-ok']);
    expect(sim.status & FEATURES_OK).toBe(version === 2 ? 0 : FEATURES_OK);
  });
});
