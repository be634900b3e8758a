/** The selftest of lib/diag over an opener of the caller's own (the CLI's targets are one such opener). */
import { selftest, type SelftestSubject } from '../../lib/diag';
import { TransportError } from '../../lib/errors';
import { DmaPool } from '../../lib/platform';
import { InputModel, RngModel, SimDevice } from '../../lib/sim';
import { MmioTransport } from '../../lib/transport';

/** A sim rng, opened the way the subject is asked to; counts its opens and closes. */
function simSubject(): SelftestSubject & { opened: number; closed: number; wrapped: boolean } {
  const subject = {
    where: 'my-rng',
    opened: 0,
    closed: 0,
    wrapped: false,
    open(options: Parameters<SelftestSubject['open']>[0]) {
      subject.opened++;
      const memory = DmaPool.anonymous();
      const sim = new SimDevice({ memory, model: new RngModel(), strict: true });
      subject.wrapped = options.wrapRegisters !== undefined;
      const transport = new MmioTransport(options.wrapRegisters ? options.wrapRegisters(sim) : sim, {
        ...options.transport,
        interrupts: sim.interrupt,
      });
      return {
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

test('runs the device type’s steps on what the opener gives, strict through wrapped registers; closes it', async () => {
  const subject = simSubject();
  const report = await selftest(subject, { strict: true, timeoutMs: 2000 });
  expect(report).toMatchObject({
    where: 'my-rng',
    device: 'ENTROPY',
    version: 2,
    ok: true,
    strict: { violations: [] },
  });
  expect(report.steps.map((s) => s.step)).toEqual([
    'identify',
    'negotiate',
    'read 64 random bytes',
    'idle 100 ms',
    'reset',
  ]);
  expect(subject).toMatchObject({ opened: 1, closed: 1, wrapped: true });
});

test('an opener that throws gives a failed identify step with the error’s code, not an exception', async () => {
  const report = await selftest({
    where: 'nowhere',
    open() {
      throw new TransportError(TransportError.BAD_MAGIC, 'nowhere: MagicValue 0 is not "virt"');
    },
  });
  expect(report.ok).toBe(false);
  expect(report.steps).toEqual([
    {
      step: 'identify',
      ok: false,
      ms: expect.any(Number),
      error: { code: TransportError.BAD_MAGIC, message: 'nowhere: MagicValue 0 is not "virt"' },
    },
  ]);
});

test('--strict: an input device notifying a config change per select write (as QEMU 7.2) breaks no rule', async () => {
  let sim: SimDevice | undefined;
  const subject: SelftestSubject = {
    where: 'qemu-like input',
    open(options) {
      const memory = DmaPool.anonymous();
      const model = new InputModel({ echoStatus: true, onSelect: () => sim!.raiseConfigChange() });
      sim = new SimDevice({ memory, model, strict: true });
      const transport = new MmioTransport(options.wrapRegisters!(sim), {
        ...options.transport,
        interrupts: sim.interrupt,
      });
      return {
        transport,
        memory,
        close() {
          transport.close();
          sim!.close();
          memory.close();
        },
      };
    },
  };
  const report = await selftest(subject, { strict: true, timeoutMs: 2000 });
  expect(report.strict?.violations).toEqual([]);
  expect(report).toMatchObject({ device: 'INPUT', ok: true });
  expect(report.steps.find((s) => s.step === 'read config')?.detail).toMatch(/^"virtio-mmio sim input"/);
});
