/**
 * One range for time limits that end up in pollUntil (finding 8):
 * resetTimeoutMs and queueResetTimeoutMs are refused where they enter (the
 * MmioTransport constructor) in pollUntil's own shape, an integer in
 * [0, POLL_TIMEOUT_MAX_MS]; the addon and the sim hold to that constant; the
 * request time limits, which go to setTimeout, end at 2^31 - 1.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selftest } from '../../lib/cli/selftest';
import { parseTarget } from '../../lib/cli/targets';
import { VirtioRng } from '../../lib/devices';
import { DmaPool, MmioWindow, POLL_TIMEOUT_MAX_MS } from '../../lib/platform';
import { RngModel, SimDevice } from '../../lib/sim';
import { MmioTransport } from '../../lib/transport';
import { echoModel, simRig } from '../support/sim-rig';
import { gateModel } from '../support/gated-model';

describe('finding 8: reset time limits in pollUntil’s range', () => {
  let pool: DmaPool;
  let sim: SimDevice;
  beforeEach(() => {
    pool = DmaPool.anonymous();
    sim = new SimDevice({ memory: pool, model: new RngModel(), strict: true });
  });
  afterEach(() => {
    sim.close();
    pool.close();
  });

  test.each([
    ['resetTimeoutMs', POLL_TIMEOUT_MAX_MS + 1],
    ['resetTimeoutMs', 2 ** 31 - 1],
    ['resetTimeoutMs', 2.5],
    ['resetTimeoutMs', -1],
    ['resetTimeoutMs', Number.NaN],
    ['queueResetTimeoutMs', POLL_TIMEOUT_MAX_MS + 1],
    ['queueResetTimeoutMs', 0.5],
    ['queueResetTimeoutMs', Infinity],
  ] as const)('finding 8: %s %p is refused by the constructor (RangeError), not later by pollUntil', (name, value) => {
    expect(() => new MmioTransport(sim, { [name]: value })).toThrow(
      new RangeError(
        `${name} must be an integer in [0, ${POLL_TIMEOUT_MAX_MS}] (ms, the most pollUntil waits), got ` +
          `${String(value)}`,
      ),
    );
  });

  test('finding 8: with the largest limits the constructor (and pollUntil) takes, open() and close() reset', () => {
    for (const [resetTimeoutMs, queueResetTimeoutMs] of [
      [POLL_TIMEOUT_MAX_MS, POLL_TIMEOUT_MAX_MS],
      [0, 0],
    ]) {
      const transport = new MmioTransport(sim, { interrupts: sim.interrupt, resetTimeoutMs, queueResetTimeoutMs });
      const rng = VirtioRng.open(transport, { memory: pool });
      rng.close();
      expect(sim.status).toBe(0);
      transport.close();
    }
    expect(sim.violations).toEqual([]);
  });

  test('finding 8: POLL_TIMEOUT_MAX_MS is the limit of the sim’s pollUntil and of the addon’s', () => {
    const dir = mkdtempSync(join(tmpdir(), 'poll-timeout-'));
    const file = join(dir, 'regs');
    writeFileSync(file, Buffer.alloc(4096));
    const window = MmioWindow.openFile(file, 0, 4096);
    try {
      for (const regs of [sim, window]) {
        // Mask 0 matches at the first read: the limit is checked, nothing waits.
        expect(regs.pollUntil(0, 0, 0, POLL_TIMEOUT_MAX_MS)).not.toBeNull();
        expect(() => regs.pollUntil(0, 0, 0, POLL_TIMEOUT_MAX_MS + 1)).toThrow(RangeError);
        expect(() => regs.pollUntil(0, 0, 0, 1.5)).toThrow(RangeError);
      }
    } finally {
      window.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('finding 8: selftest --timeout above 60 s still resets: its reset waits stop at pollUntil’s limit', async () => {
    const report = await selftest(parseTarget('sim:rng'), { timeoutMs: 120_000 });
    expect(report.steps.filter((s) => !s.ok)).toEqual([]);
    expect(report.ok).toBe(true);
  });
});

describe('finding 8 (checked, consistent): request time limits go to setTimeout and end at 2^31 - 1', () => {
  test('requestTimeoutMs and SubmitOptions.timeoutMs take 2^31 - 1 and refuse 2^31', async () => {
    const rig = simRig(2, echoModel());
    try {
      expect(() => VirtioRng.open(rig.transport, { memory: rig.pool, requestTimeoutMs: 2 ** 31 })).toThrow(RangeError);
    } finally {
      expect(rig.close()).toEqual([]);
    }
    const gate = gateModel(new RngModel());
    const held = simRig(2, gate.model);
    const warnings: Error[] = [];
    const onWarning = (warning: Error): number => warnings.push(warning);
    process.on('warning', onWarning);
    try {
      const rng = VirtioRng.open(held.transport, {
        memory: held.pool,
        requestTimeoutMs: 2 ** 31 - 1,
        requestBytes: 16,
      });
      const reads = Array.from({ length: 20 }, () => rng.read(16));
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(gate.held).toBeGreaterThan(0);
      gate.holding = false;
      gate.releaseAll();
      await Promise.all(reads);
      await new Promise((resolve) => setImmediate(resolve));
      expect(warnings.map((w) => w.name)).toEqual([]);
      rng.close();
    } finally {
      process.off('warning', onWarning);
      expect(held.close()).toEqual([]);
    }
  });
});
