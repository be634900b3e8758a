import { RngModel, type SimRequest } from '../../lib/sim';
import { DeviceId } from '../../lib/spec';
import { nextInterrupt, R, TestDriver, VirtqDesc } from './sim-test-driver';

const request = (writable: Uint8Array[], readable: Uint8Array[] = []): SimRequest => ({
  queue: 0,
  head: 0,
  readable,
  writable,
  readableBytes: readable.reduce((n, b) => n + b.length, 0),
  writableBytes: writable.reduce((n, b) => n + b.length, 0),
});

describe('RngModel (virtio 1.2 §5.4)', () => {
  test('an entropy device: one queue, no features, no config', () => {
    const model = new RngModel();
    expect(model.deviceId).toBe(DeviceId.ENTROPY);
    expect(model.features).toBe(0n);
    expect(model.queueSizes).toEqual([64]);
    expect(model.config.length).toBe(0);
    expect(new RngModel({ queueSize: 8 }).queueSizes).toEqual([8]);
  });

  test('fills every writable buffer from the source and returns the count', () => {
    let next = 1;
    const model = new RngModel({ source: (b) => b.forEach((_, i) => (b[i] = next++)) });
    const a = new Uint8Array(3);
    const b = new Uint8Array(2);
    const input = Uint8Array.of(9, 9);
    expect(model.handle(request([a, b], [input]))).toBe(5);
    expect([...a, ...b]).toEqual([1, 2, 3, 4, 5]);
    expect([...input]).toEqual([9, 9]);
  });

  test('maxBytesPerRequest caps the total across buffers', () => {
    const model = new RngModel({ maxBytesPerRequest: 4, source: (b) => b.fill(0xaa) });
    const a = new Uint8Array(3);
    const b = new Uint8Array(3);
    expect(model.handle(request([a, b]))).toBe(4);
    expect([...a, ...b]).toEqual([0xaa, 0xaa, 0xaa, 0xaa, 0, 0]);
    expect(new RngModel({ maxBytesPerRequest: 0 }).handle(request([a]))).toBe(0);
  });

  test('by default the bytes are random', () => {
    const a = new Uint8Array(64);
    new RngModel().handle(request([a]));
    expect(new Set(a).size).toBeGreaterThan(16);
  });

  test('bad options are RangeErrors', () => {
    expect(() => new RngModel({ queueSize: 3.5 })).toThrow(RangeError);
    expect(() => new RngModel({ queueSize: 65536 })).toThrow(RangeError);
    expect(() => new RngModel({ maxBytesPerRequest: -1 })).toThrow(RangeError);
  });

  test.each([1, 2] as const)('behind a Version %i SimDevice it answers a request through the ring', async (version) => {
    const r = new TestDriver(new RngModel({ maxBytesPerRequest: 16 }), { version });
    try {
      expect(r.probe().deviceId).toBe(4);
      r.init();
      const ring = r.setupQueue(0, 8);
      r.driverOk();
      const out = r.buffer(32);
      ring.setDesc(0, { addr: out.iova, len: 32, flags: VirtqDesc.F_WRITE });
      ring.publish(0);
      const interrupt = nextInterrupt(r.sim);
      r.notify(0);
      await interrupt;
      expect(r.sim.readl(R.InterruptStatus)).toBe(1);
      expect(ring.usedElement(0)).toEqual({ id: 0, len: 16 });
      expect(
        r
          .bytes(out)
          .subarray(16)
          .every((x) => x === 0),
      ).toBe(true);
      expect(r.sim.violations).toEqual([]);
    } finally {
      r.close();
    }
  });
});
