/** The queue bring-up of lib/diag over an opener of the caller's own (the CLI's `queue` command is one caller). */
import { bringUpQueue, type QueueBringUpSubject } from '../../lib/diag';
import { UsageError } from '../../lib/errors';
import { DmaPool, type InterruptSource } from '../../lib/platform';
import { RngModel, SimDevice } from '../../lib/sim';
import { MmioTransport } from '../../lib/transport';

/** A strict sim rng, opened the way the subject is asked to; counts its opens and closes. */
function simSubject(): QueueBringUpSubject & { opened: number; closed: number; wrapped: boolean } {
  const subject = {
    opened: 0,
    closed: 0,
    wrapped: false,
    open(options: Parameters<QueueBringUpSubject['open']>[0]) {
      subject.opened++;
      const memory = DmaPool.anonymous();
      const sim = new SimDevice({ memory, model: new RngModel(), strict: true });
      subject.wrapped = options.wrapRegisters !== undefined;
      const transport = new MmioTransport(options.wrapRegisters ? options.wrapRegisters(sim) : sim, {
        ...options.transport,
        interrupts: sim.interrupt as InterruptSource,
      });
      return {
        where: 'my-rng',
        transport,
        memory,
        close() {
          subject.closed++;
          transport.close();
          expect(sim.violations).toEqual([]);
          sim.close();
          memory.close();
        },
      };
    },
  };
  return subject;
}

test('posts the chains on the queue asked for, reports what the device wrote; strict; closes the device', async () => {
  const subject = simSubject();
  const report = await bringUpQueue(subject, { queue: 0, ins: [24, 8], chains: 3, strict: true, timeoutMs: 2000 });
  expect(report).toMatchObject({
    where: 'my-rng',
    device: 'ENTROPY (4)',
    version: 2,
    queue: { index: 0, ring: 'split' },
    ok: true,
    strict: { violations: [] },
  });
  expect(report.chains.map((c) => [c.chain, c.out, c.in, c.usedLen, c.hex!.length, c.error])).toEqual([
    [0, 0, [24, 8], 32, 64, undefined],
    [1, 0, [24, 8], 32, 64, undefined],
    [2, 0, [24, 8], 32, 64, undefined],
  ]);
  // Random bytes: three chains writing the same 32 bytes would mean one buffer read three times.
  expect(new Set(report.chains.map((c) => c.hex)).size).toBe(3);
  expect(report.interrupts).toBeGreaterThan(0);
  expect(subject).toMatchObject({ opened: 1, closed: 1, wrapped: true });
});

test('a feature name the device type lacks rejects with a UsageError once the device is open; closed', async () => {
  const subject = simSubject();
  const failure = bringUpQueue(subject, { queue: 0, ins: [8], features: 'RING_PACKED,NO_SUCH_FEATURE' });
  await expect(failure).rejects.toThrow(UsageError);
  await expect(failure).rejects.toThrow(
    "--features: 'NO_SUCH_FEATURE' is neither a feature bit number (0-63) nor a feature name of ENTROPY (4) " +
      'or of the transport',
  );
  expect(subject).toMatchObject({ opened: 1, closed: 1, wrapped: false });
});
