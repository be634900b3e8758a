import { MmioInterrupt } from '../../lib/spec';
import { nextInterrupt, R, TestModel, useTestDrivers } from './sim-test-driver';

const rig = useTestDrivers();

const C = R.Config;

function layoutModel(): TestModel {
  const config = Buffer.alloc(20);
  config.writeUInt8(0xab, 0);
  config.writeUInt16LE(0xbeef, 2);
  config.writeUInt32LE(0xdead_beef, 4);
  config.writeBigUInt64LE(0x0123_4567_89ab_cdefn, 8);
  return new TestModel({
    config: new Uint8Array(config.buffer, config.byteOffset, 20),
    configFields: [
      { offset: 0, width: 1 },
      { offset: 2, width: 2 },
      { offset: 4, width: 4, writable: true },
      { offset: 8, width: 8 },
      // bytes 16..19: no field
    ],
  });
}

describe('configuration space (virtio 1.2 §4.2.2.2)', () => {
  test('fields read little-endian at their own width; 64-bit fields as two 32-bit halves', () => {
    const r = rig(layoutModel());
    r.init();
    expect(r.sim.readb(C)).toBe(0xab);
    expect(r.sim.readw(C + 2)).toBe(0xbeef);
    expect(r.sim.readl(C + 4)).toBe(0xdead_beef);
    expect(r.sim.readl(C + 8)).toBe(0x89ab_cdef);
    expect(r.sim.readl(C + 12)).toBe(0x0123_4567);
    expect(r.sim.violations).toEqual([]);
  });

  test("a width that is not the field's, or an access across fields, is config-width (still performed)", () => {
    const r = rig(layoutModel());
    r.init();
    expect(r.sim.readl(C)).toBe(0xbeef_00ab);
    expect(r.sim.readb(C + 4)).toBe(0xef);
    expect(r.sim.readw(C + 8)).toBe(0xcdef);
    expect(r.rules).toEqual(['config-width', 'config-width', 'config-width']);
    expect(r.sim.violations[0].section).toBe('4.2.2.2');
  });

  test('bytes no field describes, or past the config length, are config-out-of-range and read 0', () => {
    const r = rig(layoutModel());
    r.init();
    expect(r.sim.readb(C + 1)).toBe(0);
    expect(r.sim.readl(C + 16)).toBe(0);
    const bare = rig(new TestModel({ config: new Uint8Array(6) }));
    bare.init();
    expect(bare.sim.readw(C + 4)).toBe(0);
    expect(bare.sim.readl(C + 4)).toBe(0); // 0x104..0x107: in the window, past the 6 config bytes
    expect(r.rules).toEqual(['config-out-of-range', 'config-out-of-range']);
    expect(bare.rules).toEqual(['config-out-of-range']);
  });

  test('writes: a writable field is stored and the model told; a read-only one is refused', () => {
    const model = layoutModel();
    const r = rig(model);
    r.init();
    r.sim.writel(C + 4, 0x1122_3344);
    expect(Buffer.from(model.config).readUInt32LE(4)).toBe(0x1122_3344);
    r.sim.writew(C + 2, 0x5555);
    expect(Buffer.from(model.config).readUInt16LE(2)).toBe(0xbeef);
    expect(model.calls.filter((c) => c.startsWith('configWritten'))).toEqual(['configWritten 4 4']);
    expect(r.rules).toEqual(['config-write-read-only']);
  });

  test('without a field layout any access inside the config is accepted', () => {
    const model = new TestModel({ config: new Uint8Array(8) });
    const r = rig(model);
    r.init();
    r.sim.writeb(C + 5, 0x7f);
    expect(r.sim.readl(C + 4)).toBe(0x7f00);
    expect(model.calls.at(-1)).toBe('configWritten 5 1');
    expect(r.sim.violations).toEqual([]);
  });

  test('a Version 2 driver writing config before FEATURES_OK breaks §3.1.1; a legacy one may', () => {
    const v2 = rig(new TestModel({ config: new Uint8Array(4) }));
    v2.probe();
    v2.sim.writel(C, 1);
    expect(v2.rules).toEqual(['config-write-before-features-ok']);
    const v1 = rig(new TestModel({ config: new Uint8Array(4) }), { version: 1 });
    v1.probe();
    v1.sim.writel(C, 1);
    expect(v1.sim.violations).toEqual([]);
  });
});

describe('ConfigGeneration (virtio 1.2 §2.5, §4.2.2)', () => {
  test('stable while nothing changes; raiseConfigChange mutates, changes it, notifies after DRIVER_OK', async () => {
    const model = new TestModel({ config: new Uint8Array(4) });
    const r = rig(model);
    r.init();
    const g0 = r.sim.readl(R.ConfigGeneration);
    expect(r.sim.readl(R.ConfigGeneration)).toBe(g0);
    r.sim.raiseConfigChange((config) => (config[0] = 9));
    const g1 = r.sim.readl(R.ConfigGeneration);
    expect(g1).not.toBe(g0);
    expect(r.sim.readb(C)).toBe(9);
    expect(r.sim.readl(R.InterruptStatus)).toBe(0); // not before DRIVER_OK
    expect(r.sim.stats.interrupts).toBe(0);
    r.driverOk();
    const interrupt = nextInterrupt(r.sim);
    r.sim.raiseConfigChange();
    await interrupt;
    expect(r.sim.readl(R.ConfigGeneration)).not.toBe(g1);
    expect(r.ack()).toBe(MmioInterrupt.CONFIG);
    expect(r.sim.readl(R.InterruptStatus)).toBe(0);
    expect(r.sim.violations).toEqual([]);
  });

  test('configGenerationChurn: the next N reads each return a new value, then it settles', () => {
    const r = rig(new TestModel({ config: new Uint8Array(4) }), { configGenerationChurn: 3 });
    r.init();
    const reads = Array.from({ length: 6 }, () => r.sim.readl(R.ConfigGeneration));
    expect(reads[0]).not.toBe(reads[1]);
    expect(reads[1]).not.toBe(reads[2]);
    expect(reads.slice(2)).toEqual([reads[2], reads[2], reads[2], reads[2]]);
  });

  test('with Infinity churn ConfigGeneration never settles', () => {
    const r = rig(new TestModel(), { configGenerationChurn: Infinity });
    r.init();
    const reads = Array.from({ length: 100 }, () => r.sim.readl(R.ConfigGeneration));
    expect(new Set(reads).size).toBe(100);
    expect(r.sim.pollUntil(R.ConfigGeneration, 0xffff_ffff, reads[99], 50)).toBeNull();
  });

  test('ConfigGeneration does not exist in the legacy layout', () => {
    const r = rig(new TestModel(), { version: 1 });
    r.init();
    expect(r.sim.readl(R.ConfigGeneration)).toBe(0);
    expect(r.rules).toEqual(['undefined-register']);
  });
});
