import { ClosedError } from '../../lib/errors';
import { SimDevice, SIM_RULES, SIM_VENDOR_ID } from '../../lib/sim';
import { DeviceId, MMIO_MAGIC_VALUE } from '../../lib/spec';
import { R, TestModel, useTestDrivers } from './sim-test-driver';

const rig = useTestDrivers();

describe('probe values (virtio 1.2 §4.2.2, §4.2.4)', () => {
  test.each([1, 2] as const)('Version %i reads magic, version, device and vendor IDs', (version) => {
    const { sim } = rig(new TestModel({ deviceId: DeviceId.ENTROPY }), { version });
    expect(sim.readl(R.MagicValue)).toBe(MMIO_MAGIC_VALUE);
    expect(sim.readl(R.Version)).toBe(version);
    expect(sim.readl(R.DeviceID)).toBe(4);
    expect(sim.readl(R.VendorID)).toBe(SIM_VENDOR_ID);
    expect(Buffer.from(Uint32Array.of(SIM_VENDOR_ID).buffer).toString('latin1')).toBe('VIMM');
    expect(sim.violations).toEqual([]);
    expect(sim.label).toBe('sim ENTROPY (4)');
  });

  test('vendorId, magic and versionValue options change what is read', () => {
    const { sim } = rig(new TestModel(), { vendorId: 0x1af4, magic: 0x12345678, versionValue: 7 });
    expect(sim.readl(R.MagicValue)).toBe(0x12345678);
    expect(sim.readl(R.Version)).toBe(7);
    expect(sim.violations).toEqual([]);
  });

  test('a device with a bad magic or version may only be probed: anything more is ignored-device-access', () => {
    const bad = rig(new TestModel(), { magic: 0x1234 });
    bad.probe();
    expect(bad.sim.readl(R.VendorID)).toBe(0);
    bad.sim.writel(R.Status, 1);
    expect(bad.sim.status).toBe(0);
    expect(bad.rules).toEqual(['ignored-device-access', 'ignored-device-access', 'ignored-device-access']);
    const v3 = rig(new TestModel(), { versionValue: 3 });
    expect(v3.sim.readl(R.Version)).toBe(3);
    v3.sim.readl(R.DeviceID);
    expect(v3.rules).toEqual(['ignored-device-access']);
  });

  test('an empty slot (no model) reads DeviceID 0; only MagicValue, Version and DeviceID may be read', () => {
    const r = rig(undefined);
    expect(r.probe()).toEqual({ magic: MMIO_MAGIC_VALUE, version: 2, deviceId: 0 });
    expect(r.sim.violations).toEqual([]);
    expect(r.sim.label).toBe('sim empty slot');
    expect(r.sim.readl(R.VendorID)).toBe(0);
    r.sim.writel(R.Status, 1);
    expect(r.sim.status).toBe(0);
    expect(r.rules).toEqual(['empty-slot-access', 'empty-slot-access']);
    expect(r.sim.violations[0].section).toBe('4.2.3.1.1');
  });

  test('a model with DeviceID 0 is an empty slot too', () => {
    const r = rig(new TestModel({ deviceId: 0 }));
    r.probe();
    r.sim.readl(R.Status);
    expect(r.rules).toEqual(['empty-slot-access']);
  });

  test('registers touched before MagicValue, Version and DeviceID were read: init-without-probe, reported once', () => {
    const r = rig(new TestModel());
    r.sim.readl(R.MagicValue);
    r.sim.writel(R.Status, 0);
    r.sim.readl(R.Status);
    expect(r.rules).toEqual(['init-without-probe']);
    expect(r.sim.violations[0].message).toMatch(/Version, DeviceID/);
  });
});

describe('the register window (RegisterBlock semantics)', () => {
  test('size is 0x100 plus the config space rounded up to a word', () => {
    expect(rig(new TestModel()).sim.size).toBe(0x100);
    expect(rig(new TestModel({ config: new Uint8Array(6) })).sim.size).toBe(0x108);
  });

  test('out-of-window and misaligned accesses throw RangeError; bad values too; nothing is recorded', () => {
    const { sim } = rig(new TestModel({ config: new Uint8Array(8) }));
    expect(() => sim.readl(0x108)).toThrow(RangeError);
    expect(() => sim.readl(-4)).toThrow(RangeError);
    expect(() => sim.readl(1.5)).toThrow(RangeError);
    expect(() => sim.readw(0x101)).toThrow(/not naturally aligned/);
    expect(() => sim.writel(0x102, 0)).toThrow(/not naturally aligned/);
    expect(() => sim.writeb(0x100, 256)).toThrow(/does not fit in 8 bits/);
    expect(() => sim.writel(0x100, 2 ** 32)).toThrow(RangeError);
    expect(() => sim.readl('0' as unknown as number)).toThrow(TypeError);
    expect(() => sim.copyOut(0x104, new Uint8Array(8))).toThrow(/outside the window/);
    expect(() => sim.copyOut(0x100, new Uint8Array(3), 2)).toThrow(/not naturally aligned/);
    expect(() => sim.pollUntil(R.Status, 0xff, 0, 60_001)).toThrow(RangeError);
    expect(sim.violations).toEqual([]);
  });

  test('writes accept the signed range like the native region (-1 is all ones)', () => {
    const r = rig(
      new TestModel({ config: new Uint8Array(4), configFields: [{ offset: 0, width: 4, writable: true }] }),
    );
    r.init();
    r.sim.writel(0x100, -1);
    expect(r.sim.readl(0x100)).toBe(0xffff_ffff);
    expect(r.sim.violations).toEqual([]);
  });

  test('after close() every access throws ClosedError, and close() is idempotent', () => {
    const r = rig(new TestModel());
    r.sim.close();
    r.sim.close();
    expect(r.sim.closed).toBe(true);
    expect(r.sim.interrupt.closed).toBe(true);
    expect(() => r.sim.readl(R.MagicValue)).toThrow(ClosedError);
    expect(() => r.sim.writel(R.Status, 0)).toThrow(ClosedError);
    expect(() => r.sim.copyOut(0, new Uint8Array(4))).toThrow(ClosedError);
    expect(() => r.sim.pollUntil(R.Status, 0xff, 0, 1)).toThrow(ClosedError);
    expect(() => r.sim.process()).toThrow(ClosedError);
    expect(() => r.sim.raiseConfigChange()).toThrow(ClosedError);
  });

  test('an interrupt source passed in is not closed by close()', () => {
    const first = rig(new TestModel());
    const second = new SimDevice({ memory: first.pool, model: new TestModel(), interrupt: first.sim.interrupt });
    second.close();
    expect(first.sim.interrupt.closed).toBe(false);
  });

  test('copyOut/copyIn are repeated accesses at the given width', () => {
    const config = Uint8Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
    const r = rig(new TestModel({ config }));
    r.init();
    expect([...r.sim.copyOut(0x100, new Uint8Array(8))]).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect([...r.sim.copyOut(0x100, new Uint8Array(4), 1)]).toEqual([1, 2, 3, 4]);
    r.sim.copyIn(0x104, Uint8Array.from([9, 10, 11, 12]), 2);
    expect([...config]).toEqual([1, 2, 3, 4, 9, 10, 11, 12]);
    const regs = r.sim.copyOut(0, new Uint8Array(12));
    expect(Buffer.from(regs).readUInt32LE(0)).toBe(MMIO_MAGIC_VALUE);
    expect(r.sim.violations).toEqual([]);
  });
});

describe('register tables of both versions', () => {
  test('Version 1 has GuestPageSize, QueueAlign, QueuePFN and none of the Version 2 registers', () => {
    const r = rig(new TestModel(), { version: 1 });
    r.probe();
    r.sim.writel(R.GuestPageSize, 4096);
    r.sim.writel(R.QueueAlign, 4096);
    expect(r.sim.readl(R.QueuePFN)).toBe(0);
    expect(r.rules).toEqual([]);
    for (const offset of [
      R.QueueReady,
      R.QueueDescLow,
      R.QueueDriverHigh,
      R.QueueDeviceLow,
      R.SHMSel,
      R.SHMLenLow,
      R.QueueReset,
      R.ConfigGeneration,
    ]) {
      expect(r.sim.readl(offset)).toBe(0);
    }
    r.sim.writel(R.QueueReady, 1);
    expect(r.rules).toEqual(Array(9).fill('undefined-register'));
  });

  test('Version 2 has none of the legacy registers; holes are undefined too', () => {
    const r = rig(new TestModel());
    r.probe();
    expect(r.sim.readl(R.QueuePFN)).toBe(0);
    r.sim.writel(R.GuestPageSize, 4096);
    r.sim.writel(R.QueueAlign, 4096);
    r.sim.readl(0x018);
    r.sim.writel(0x0f8, 1);
    expect(r.rules).toEqual(Array(5).fill('undefined-register'));
    expect(r.sim.violations[0].section).toBe(SIM_RULES['undefined-register']);
  });

  test('reading a write-only register or writing a read-only one is a violation and has no effect', () => {
    const r = rig(new TestModel({ queueSizes: [8] }));
    r.probe();
    expect(r.sim.readl(R.QueueSel)).toBe(0);
    expect(r.sim.readl(R.InterruptACK)).toBe(0);
    r.sim.writel(R.QueueNumMax, 1);
    r.sim.writel(R.DeviceID, 9);
    expect(r.sim.readl(R.QueueNumMax)).toBe(8);
    expect(r.sim.readl(R.DeviceID)).toBe(42);
    expect(r.rules).toEqual(['read-write-only', 'read-write-only', 'write-read-only', 'write-read-only']);
  });

  test('narrow accesses to control registers are register-width violations, performed as best effort', () => {
    const r = rig(new TestModel());
    r.probe();
    expect(r.sim.readb(R.MagicValue)).toBe(0x76); // 'v'
    expect(r.sim.readw(R.MagicValue + 2)).toBe(0x7472); // 'rt'
    r.sim.writeb(R.Status, 1);
    expect(r.sim.status).toBe(1);
    r.sim.writew(R.Status, 3);
    expect(r.sim.readl(R.Status)).toBe(3);
    expect(r.rules).toEqual(['register-width', 'register-width', 'register-width', 'register-width']);
    expect(r.sim.violations[0].section).toBe('4.2.2.2');
  });
});
