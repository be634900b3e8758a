/** lib/diag's dumpQueueState over openers of the caller's own (the CLI's `dump` command is one caller). */
import { VirtioRng } from '../../lib/devices';
import { deviceRingMemory, dumpQueueState, type QueueDumpSubject } from '../../lib/diag';
import { DmaPool, type InterruptSource } from '../../lib/platform';
import { RngModel, SimDevice } from '../../lib/sim';
import { MmioTransport } from '../../lib/transport';

/** One sim rng; the subject's openers count their opens and closes and keep the device. */
function rig(): {
  subject: QueueDumpSubject;
  counts: { registers: number; driver: number; closed: number };
  sim: SimDevice;
  memory: DmaPool;
} {
  const memory = DmaPool.anonymous();
  // Not strict: reading Status before the probe's registers is what a look at a device driven elsewhere does.
  const sim = new SimDevice({ memory, model: new RngModel() });
  const counts = { registers: 0, driver: 0, closed: 0 };
  const subject: QueueDumpSubject = {
    ringMemory: deviceRingMemory(memory),
    openRegisters() {
      counts.registers++;
      return { where: 'my-rng', regs: sim, close: () => counts.closed++ };
    },
    openForDriver() {
      counts.driver++;
      const transport = new MmioTransport(sim, { interrupts: sim.interrupt as InterruptSource });
      return {
        where: 'my-rng',
        transport,
        memory,
        close() {
          counts.closed++;
          transport.close();
        },
      };
    },
  };
  return { subject, counts, sim, memory };
}

test('a device nobody drives is driven here: a request in flight, both views, then the driver closed', async () => {
  const { subject, counts, sim, memory } = rig();
  try {
    const dump = await dumpQueueState(subject, 0);
    expect(dump.driven).toBe('this process');
    if (dump.driven !== 'this process') return;
    expect(dump.queue.outstanding).toHaveLength(1);
    expect(dump.live).toMatchObject({ index: 0, live: true, size: dump.queue.size, addresses: dump.queue.addresses });
    // Status was read through the registers first (no DRIVER_OK), then the device was opened for a driver.
    expect(counts).toEqual({ registers: 1, driver: 1, closed: 2 });
  } finally {
    sim.close();
    memory.close();
  }
});

test('a device another driver has set up is only read: the driver opener is not called', async () => {
  const { subject, counts, sim, memory } = rig();
  const transport = new MmioTransport(sim, { interrupts: sim.interrupt as InterruptSource });
  const rng = VirtioRng.open(transport, { memory });
  try {
    const dump = await dumpQueueState(subject, 0);
    expect(dump).toMatchObject({ where: 'my-rng', driven: 'elsewhere', live: { index: 0, live: true } });
    expect(dump).not.toHaveProperty('queue');
    expect(counts).toEqual({ registers: 1, driver: 0, closed: 1 });
  } finally {
    rng.close();
    transport.close();
    sim.close();
    memory.close();
  }
});

test('a queue the driver does not use is a typed error, and the device is closed', async () => {
  const { subject, counts, sim, memory } = rig();
  try {
    await expect(dumpQueueState({ openForDriver: subject.openForDriver }, 5)).rejects.toMatchObject({
      code: 'ERR_VIRTIO_QUEUE_UNAVAILABLE',
      message: 'my-rng: the device has no queue 5, or the ENTROPY (4) driver does not use it',
    });
    expect(counts).toEqual({ registers: 0, driver: 1, closed: 1 });
  } finally {
    sim.close();
    memory.close();
  }
});
