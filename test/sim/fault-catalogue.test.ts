import {
  FAULT_CATALOGUE,
  HOSTILE_BEHAVIOURS,
  RngModel,
  SimDevice,
  faultEntry,
  faultOfRegister,
  parseFaultSetting,
  type HostileOptions,
} from '../../lib/sim';
import type { DeviceMemory } from '../../lib/platform';
import { MmioRegister } from '../../lib/spec';

describe("FAULT_CATALOGUE: one table of the sim's lies", () => {
  test('numbers 1…24, unique names, and HOSTILE_BEHAVIOURS is the same table', () => {
    expect(FAULT_CATALOGUE.map((f) => f.number)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    expect(new Set(FAULT_CATALOGUE.map((f) => f.name)).size).toBe(24);
    expect(HOSTILE_BEHAVIOURS).toBe(FAULT_CATALOGUE);
  });

  test("parseFaultSetting fills the entry's parameter: integers as numbers, listed values as text", () => {
    expect(parseFaultSetting('needs-reset')).toEqual(['needs-reset', true]);
    expect(parseFaultSetting('interrupt-storm=3')).toEqual(['interrupt-storm', { limit: 3 }]);
    expect(parseFaultSetting('bad-identity=version-3')).toEqual(['bad-identity', { kind: 'version-3' }]);
    expect(parseFaultSetting('config-window-short=8')).toEqual(['config-window-short', { configBytes: 8 }]);
  });

  test.each([
    ['no-such-fault', "unknown fault 'no-such-fault'"],
    ['needs-reset=1', 'fault needs-reset takes no value'],
    ['interrupt-storm=lots', "takes an integer limit, got 'lots'"],
    ['bad-identity=wrong', "takes kind magic | version-3 | device-id-0, got 'wrong'"],
  ])('parseFaultSetting(%s) is a RangeError with ERR_INVALID_ARG_VALUE', (text, message) => {
    expect(() => parseFaultSetting(text)).toThrow(
      expect.objectContaining({
        name: 'RangeError',
        code: 'ERR_INVALID_ARG_VALUE',
        message: expect.stringContaining(message),
      }),
    );
  });

  test('every listed value of a register-level parameter is one the sim accepts', () => {
    const memory = { resolve: () => undefined } as unknown as DeviceMemory;
    for (const entry of FAULT_CATALOGUE) {
      // config-out-of-range needs a model with that field, device-gone a line that hangs up:
      // test/devices/hostile-device.test.ts.
      if (
        !('parameter' in entry) ||
        !('values' in entry.parameter) ||
        entry.name === 'config-out-of-range' ||
        entry.name === 'device-gone'
      )
        continue;
      for (const value of entry.parameter.values) {
        const [name, option] = parseFaultSetting(`${entry.name}=${value}`);
        const sim = new SimDevice({
          memory,
          model: new RngModel(),
          hostile: { seed: 1, behaviours: { [name]: option } } as HostileOptions,
        });
        sim.close();
      }
    }
  });

  test('the registers the mutators lie through each name a catalogued fault', () => {
    expect(faultOfRegister('MagicValue')).toBe('bad-identity');
    expect(faultOfRegister('DeviceFeatures')).toBe('features-bad');
    expect(faultOfRegister('config')).toBe('config-out-of-range');
    expect(faultOfRegister('QueueSel')).toBeUndefined();
    for (const entry of FAULT_CATALOGUE) {
      for (const register of 'registers' in entry ? entry.registers : []) {
        if (register !== 'config') expect(MmioRegister).toHaveProperty(register);
      }
    }
    const identity = faultEntry('bad-identity');
    expect(identity && 'knobs' in identity ? identity.knobs : undefined).toEqual(['magic', 'versionValue']);
  });
});
