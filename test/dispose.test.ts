/**
 * `using` (explicit resource management): what has close() — drivers,
 * transports, pools, sim devices, queues, interrupt sources, console ports
 * — and the addon's register windows — is disposed by close() at the end of the block, on a normal exit and
 * on a throw.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { VirtioBlk, VirtioRng } from '../lib/devices';
import { DmaPool, EpollLoop, EventfdInterruptSource, MmioWindow, type RegisterBlock } from '../lib/platform';
import { BlkModel, RngModel, SimDevice } from '../lib/sim';
import { MmioTransport } from '../lib/transport';

test('a block of `using` closes driver, transport, sim and pool, last declared first', async () => {
  let leaked: { memory: DmaPool; sim: SimDevice; transport: MmioTransport; rng: VirtioRng } | undefined;
  {
    using memory = DmaPool.anonymous();
    using sim = new SimDevice({ memory, model: new RngModel() });
    using transport = new MmioTransport(sim, { interrupts: sim.interrupt });
    using rng = VirtioRng.open(transport, { memory });
    expect((await rng.read(8)).length).toBe(8);
    leaked = { memory, sim, transport, rng };
    expect(transport.closed).toBe(false);
    expect(sim.closed).toBe(false);
  }
  expect(leaked.transport.closed).toBe(true);
  expect(leaked.sim.closed).toBe(true);
  expect(() => leaked!.memory.allocate(64)).toThrow(/closed/);
  await expect(leaked.rng.read(8)).rejects.toMatchObject({ code: 'ERR_VIRTIO_CLOSED' });
  // The sim's strict mode saw nothing wrong in that order (driver reset before the sim went away).
  expect(leaked.sim.violations).toEqual([]);
});

test('a throw out of the block still disposes, and a pending request is canceled', async () => {
  const memory = DmaPool.anonymous();
  const model = new BlkModel({ latency: 'async' });
  let pending: Promise<unknown> | undefined;
  let sim: SimDevice | undefined;
  expect(() => {
    using device = new SimDevice({ memory, model });
    sim = device;
    using blk = VirtioBlk.open(new MmioTransport(device, { interrupts: device.interrupt }), { memory });
    pending = blk.read(0, 512);
    pending.catch(() => undefined);
    throw new Error('out of the block');
  }).toThrow('out of the block');
  await expect(pending).rejects.toMatchObject({ code: 'ERR_VIRTIO_CANCELED' });
  expect(sim!.closed).toBe(true);
  memory.close();
});

test('Symbol.dispose is close() on the platform objects too', () => {
  const loop = new EpollLoop();
  {
    using source = new EventfdInterruptSource('disposed eventfd', loop);
    source.listen(
      () => undefined,
      () => undefined,
    );
    expect(loop.size).toBe(1);
  }
  expect(loop.size).toBe(0);
  loop[Symbol.dispose]();
});

test("the addon's register window (MmioWindow) is disposed too", () => {
  const dir = mkdtempSync(join(tmpdir(), 'dispose-window-'));
  try {
    const file = join(dir, 'regs');
    writeFileSync(file, Buffer.alloc(4096));
    let seen: RegisterBlock | undefined;
    {
      using window = MmioWindow.openFile(file, 0, 0x100);
      window.writel(0, 0x74726976);
      seen = window;
    }
    expect(seen.closed).toBe(true);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
