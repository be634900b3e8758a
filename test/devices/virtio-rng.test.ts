import { TransportError } from '../../lib/errors';
import { VirtioRng } from '../../lib/devices';
import { RngModel } from '../../lib/sim';
import { simRig, turns, type SimRig, SIM_VARIANTS } from '../support/sim-rig';

let rig: SimRig | undefined;
afterEach(() => {
  const violations = rig?.close() ?? [];
  rig = undefined;
  expect(violations).toEqual([]);
});

describe.each(SIM_VARIANTS)('VirtioRng on a %s sim', (_label, version) => {
  test.each([0, 1, 7, 64, 4096, 4097, 65536, 1_000_003])('read(%i) returns that many device bytes', async (n) => {
    let counter = 0;
    const source = (buf: Uint8Array): void => {
      for (let i = 0; i < buf.length; i++) buf[i] = counter++ & 0xff;
    };
    rig = simRig(version, new RngModel({ source }));
    const rng = VirtioRng.open(rig.transport, { memory: rig.pool });
    const bytes = await rng.read(n);
    expect(bytes.length).toBe(n);
    // Every byte came from the device's source, none left unwritten.
    const sorted = [...bytes].sort((a, b) => a - b);
    if (n >= 256) expect(new Set(sorted).size).toBe(256);
    expect(rig.sim.stats.requests).toBe(Math.ceil(n / 4096));
    rng.close();
  });

  test('a device that fills only part of each buffer is asked again', async () => {
    rig = simRig(version, new RngModel({ maxBytesPerRequest: 100 }));
    const rng = VirtioRng.open(rig.transport, { memory: rig.pool });
    const bytes = await rng.read(1000);
    expect(bytes.length).toBe(1000);
    expect(rig.sim.stats.requests).toBe(10);
    rng.close();
  });

  test('concurrency above the queue size waits for room and completes every read', async () => {
    rig = simRig(version, new RngModel({ queueSize: 64 }));
    const rng = VirtioRng.open(rig.transport, { memory: rig.pool, queueSize: 4, requestBytes: 256 });
    const reads = Array.from({ length: 40 }, (_, i) => rng.read(300 + i));
    const results = await Promise.all(reads);
    expect(results.map((b) => b.length)).toEqual(Array.from({ length: 40 }, (_, i) => 300 + i));
    rng.close();
  });

  test('the stream yields device bytes until destroyed', async () => {
    rig = simRig(version, new RngModel());
    const rng = VirtioRng.open(rig.transport, { memory: rig.pool });
    const stream = rng.createReadStream({ highWaterMark: 1024 });
    let total = 0;
    for await (const chunk of stream) {
      total += (chunk as Buffer).length;
      if (total >= 50_000) break;
    }
    expect(total).toBeGreaterThanOrEqual(50_000);
    await turns();
    rng.close();
  });

  test('an aborted read rejects with AbortError and the queue stays usable', async () => {
    let hold: (() => void) | undefined;
    const model = new RngModel();
    const handle = model.handle.bind(model);
    let delayed = true;
    model.handle = (request) => {
      if (!delayed) return handle(request);
      return new Promise<number>((resolve) => (hold = () => resolve(handle(request) as number)));
    };
    rig = simRig(version, model);
    const rng = VirtioRng.open(rig.transport, { memory: rig.pool });
    const controller = new AbortController();
    const read = rng.read(16, { signal: controller.signal });
    await turns();
    controller.abort(new Error('enough'));
    await expect(read).rejects.toMatchObject({
      name: 'AbortError',
      code: 'ABORT_ERR',
      cause: expect.objectContaining({ message: 'enough' }),
    });
    delayed = false;
    hold?.();
    await turns();
    await expect(rng.read(32)).resolves.toHaveLength(32);
    rng.close();
  });

  test('close rejects pending reads with CanceledError', async () => {
    const model = new RngModel();
    model.handle = () => new Promise<number>(() => {});
    rig = simRig(version, model);
    const rng = VirtioRng.open(rig.transport, { memory: rig.pool });
    const read = rng.read(16);
    await turns();
    rng.close();
    await expect(read).rejects.toMatchObject({ code: 'ERR_VIRTIO_CANCELED' });
    await expect(rng.read(1)).rejects.toBeInstanceOf(Error);
    expect(rig.pool.stats().regions).toBe(0);
  });

  test('the driver refuses a device of another type', () => {
    rig = simRig(version, { deviceId: 2, features: 0n, queueSizes: [8], config: new Uint8Array(0), handle: () => 0 });
    expect(() => VirtioRng.open(rig!.transport, { memory: rig!.pool })).toThrow(
      expect.objectContaining({ code: TransportError.WRONG_DEVICE }),
    );
  });
});
