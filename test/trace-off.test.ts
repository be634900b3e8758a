/**
 * Tracing off is free: with `tracing` false no call site calls trace() (so
 * no text is built for it) through a device's whole life — negotiation,
 * queue set-up, interrupts, a broken queue, resets, close.
 */
import { VirtioBlk, VirtioRng } from '../lib/devices';
import { DmaPool } from '../lib/platform';
import { BlkModel, RngModel, SimDevice } from '../lib/sim';
import { MmioTransport } from '../lib/transport';
import { trace } from '../lib/trace';

jest.mock('../lib/trace', () => ({ tracing: false, trace: jest.fn() }));

test('no trace() call when tracing is off', async () => {
  using memory = DmaPool.anonymous();
  {
    using sim = new SimDevice({ memory, model: new RngModel() });
    using rng = VirtioRng.open(new MmioTransport(sim, { interrupts: sim.interrupt }), { memory });
    expect((await rng.read(32)).length).toBe(32);
  }
  {
    using liar = new SimDevice({
      memory,
      model: new BlkModel(),
      hostile: { seed: 1, behaviours: { 'used-id-out-of-range': true } },
    });
    using blk = VirtioBlk.open(new MmioTransport(liar, { interrupts: liar.interrupt }), { memory });
    await expect(blk.read(0, 512)).rejects.toMatchObject({ code: 'ERR_VIRTIO_BROKEN' });
  }
  expect(trace).not.toHaveBeenCalled();
});
