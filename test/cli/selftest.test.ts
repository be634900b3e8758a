import { runCli } from '../../lib/cli/main';
import { DEVICE_RULES, DeviceRuleWatch, ruleOfError } from '../../lib/diag';
import { formatSelftest, selftest, type SelftestReport } from '../../lib/cli/selftest';
import { parseTarget } from '../../lib/cli/targets';
import { DeviceBrokenError, ProtocolError, TimeoutError, TransportError } from '../../lib/errors';
import { ConsoleModel, RngModel, SimDevice, type SimViolation } from '../../lib/sim';
import { DmaPool } from '../../lib/platform';
import { MmioRegister } from '../../lib/spec';

async function cli(...argv: string[]): Promise<{ status: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const status = await runCli(argv, {
    stdout: { write: (t: string) => (stdout += t) },
    stderr: { write: (t: string) => (stderr += t) },
  });
  return { status, stdout, stderr };
}

async function selftestJson(...argv: string[]): Promise<{ status: number; report: SelftestReport; stderr: string }> {
  const { status, stdout, stderr } = await cli('selftest', ...argv, '--json');
  return { status, report: JSON.parse(stdout) as SelftestReport, stderr };
}

const STEPS: Record<string, string[]> = {
  rng: ['identify', 'negotiate', 'read 64 random bytes', 'idle 100 ms', 'reset'],
  blk: ['identify', 'negotiate', 'read sector 0', 'device ID', 'idle 100 ms', 'reset'],
  console: ['identify', 'negotiate', 'echo on port 0', 'idle 100 ms', 'reset'],
  net: ['identify', 'negotiate', 'link status', 'idle 100 ms', 'reset'],
  input: ['identify', 'negotiate', 'read config', 'status event', 'idle 100 ms', 'reset'],
};
const DEVICE_NAMES: Record<string, [string, number]> = {
  rng: ['ENTROPY', 4],
  blk: ['BLOCK', 2],
  console: ['CONSOLE', 3],
  net: ['NET', 1],
  input: ['INPUT', 18],
};

describe('selftest on every software device, Version 1, Version 2 and packed, with --strict', () => {
  const cases = Object.keys(STEPS).flatMap((type) => ['1', '2', 'packed'].map((version) => [type, version] as const));
  test.each(cases)('sim:%s:%s passes every step and breaks no device rule', async (type, version) => {
    const { status, report, stderr } = await selftestJson(`sim:${type}:${version}`, '--strict');
    expect({ status, stderr }).toEqual({ status: 0, stderr: '' });
    expect(report.steps.map((s) => s.step)).toEqual(STEPS[type]);
    for (const s of report.steps) {
      expect(s).toMatchObject({ ok: true });
      expect(s.skipped).toBeUndefined();
      expect(s.ms).toBeGreaterThanOrEqual(0);
    }
    expect([report.device, report.deviceId]).toEqual(DEVICE_NAMES[type]);
    expect(report.version).toBe(version === '1' ? 1 : 2);
    expect(report.ring).toBe(version === 'packed' ? 'packed' : 'split');
    expect(report.strict).toEqual({ rules: Object.keys(DEVICE_RULES).length, violations: [] });
    expect(report.ok).toBe(true);
    if (version !== '1') expect(report.features).toContain('VIRTIO_F_VERSION_1');
  });

  test('the step details say what was seen: random bytes, blk capacity and ID, the echo, MAC and link', async () => {
    const detail = async (target: string, step: string): Promise<string | undefined> =>
      (await selftestJson(target)).report.steps.find((s) => s.step === step)?.detail;
    expect(await detail('sim:rng', 'read 64 random bytes')).toMatch(/^[0-9a-f]{32}…$/);
    expect(await detail('sim:blk', 'read sector 0')).toBe('capacity 2048 sectors (1048576 bytes); sector 0 all zero');
    expect(await detail('sim:blk', 'device ID')).toBe('"sim-blk"');
    expect(await detail('sim:console', 'echo on port 0')).toMatch(/^\d+ bytes sent and echoed$/);
    expect(await detail('sim:net', 'link status')).toBe('MAC 52:54:00:12:34:56; link up');
    expect(await detail('sim:input', 'read config')).toBe(
      '"virtio-mmio sim input", serial "sim-0001"; bus 0x6 vendor 0x1af4 product 0x1 version 0x1; ' +
        'EV_KEY (6) EV_ABS (2) EV_LED (3); axes 0,1',
    );
    expect(await detail('sim:input', 'status event')).toBe('EV_LED LED_NUML 0 used by the device and echoed on eventq');
  });

  test('without --strict there is no idle step and no strict section', async () => {
    const { status, report } = await selftestJson('sim:rng');
    expect(status).toBe(0);
    expect(report.steps.map((s) => s.step)).toEqual(['identify', 'negotiate', 'read 64 random bytes', 'reset']);
    expect(report.strict).toBeUndefined();
  });

  test('the text report has a line per step and the verdict', async () => {
    const { status, stdout } = await cli('selftest', 'sim:blk:1', '--strict');
    expect(status).toBe(0);
    expect(stdout).toMatch(/^sim:blk:1: BLOCK, virtio-mmio Version 1, split ring\n/);
    expect(stdout).toMatch(/\n {2}pass {2}read sector 0 +\d+\.\d ms {2}capacity 2048 sectors/);
    expect(stdout).toContain(`strict: ${Object.keys(DEVICE_RULES).length} device rules checked, none broken\n`);
    expect(stdout.endsWith('selftest passed\n')).toBe(true);
  });
});

describe('selftest --strict turns the sim around: each lie of a hostile device is reported as its rule', () => {
  // [target, --hostile, the rule, exit status (0 when only a SHOULD rule broke), the failed step or undefined]
  const table: [string, string, string, number, string | undefined][] = [
    ['sim:rng', 'bad-identity=magic', 'magic-value', 1, 'identify'],
    ['sim:rng', 'bad-identity=version-3', 'version-value', 1, 'identify'],
    ['sim:rng', 'reset-never-completes=device', 'reset-completes', 1, 'negotiate'],
    ['sim:rng', 'queue-num-max-bad=already-live', 'queue-ready-cleared-on-reset', 1, 'negotiate'],
    ['sim:rng:1', 'queue-num-max-bad=already-live', 'queue-ready-cleared-on-reset', 1, 'negotiate'],
    ['sim:rng', 'queue-num-max-bad=zero', 'queues-present', 1, 'negotiate'],
    ['sim:rng', 'features-bad=version-1-missing', 'version-1-offered', 1, 'negotiate'],
    ['sim:rng', 'features-bad=features-ok-dropped', 'features-ok-kept', 1, 'negotiate'],
    ['sim:rng', 'interrupt-when-not-live', 'interrupt-status-cleared-on-reset', 1, undefined],
    ['sim:rng', 'spurious-interrupts=unknown-bits', 'interrupt-status-defined-bits', 1, undefined],
    ['sim:rng:1', 'spurious-interrupts=zero', 'interrupts-with-cause', 0, undefined],
    ['sim:rng', 'interrupt-storm', 'interrupts-with-cause', 1, 'idle 100 ms'],
    ['sim:blk', 'config-generation-churn', 'config-generation-settles', 1, 'negotiate'],
    ['sim:blk', 'config-out-of-range=blk-capacity-overflow', 'config-valid', 1, 'negotiate'],
    ['sim:rng', 'used-id-out-of-range', 'used-ring-valid', 1, 'read 64 random bytes'],
    ['sim:rng:packed', 'used-id-out-of-range', 'used-ring-valid', 1, 'read 64 random bytes'],
    ['sim:blk', 'used-idx-jump', 'used-ring-valid', 1, 'read sector 0'],
    ['sim:rng', 'used-len-too-long', 'used-len-valid', 1, 'read 64 random bytes'],
    ['sim:blk:1', 'used-len-too-short=0', 'used-len-valid', 1, 'read sector 0'],
    ['sim:rng', 'never-completes', 'completes-requests', 1, 'read 64 random bytes'],
    ['sim:rng', 'needs-reset', 'no-needs-reset', 1, 'read 64 random bytes'],
  ];
  test.each(table)('%s --hostile %s: %s', async (target, hostile, rule, status, failedStep) => {
    const run = await selftestJson(target, '--strict', '--hostile', hostile, '--timeout', '300');
    expect(run.stderr).toBe('');
    const violation = run.report.strict!.violations.find((v) => v.rule === rule);
    expect(violation).toMatchObject({
      section: DEVICE_RULES[rule as keyof typeof DEVICE_RULES].section,
      level: DEVICE_RULES[rule as keyof typeof DEVICE_RULES].level,
    });
    expect(violation!.count).toBeGreaterThanOrEqual(1);
    expect(violation!.detail.length).toBeGreaterThan(0);
    expect(run.report.steps.find((s) => !s.ok)?.step).toBe(failedStep);
    expect(run.status).toBe(status);
    expect(run.report.ok).toBe(status === 0);
  });

  test('without --strict a lie still fails its step with the typed error, and there is no rule report', async () => {
    const { status, report } = await selftestJson('sim:rng', '--hostile', 'used-len-too-long');
    expect(status).toBe(1);
    expect(report.strict).toBeUndefined();
    expect(report.steps.find((s) => !s.ok)).toMatchObject({
      step: 'read 64 random bytes',
      error: { code: 'ERR_VIRTIO_BROKEN' },
    });
    // The reset still runs after a failed step.
    expect(report.steps.at(-1)).toMatchObject({ step: 'reset', ok: true });
  });

  test('the text report names each broken rule with its level and section', async () => {
    const { status, stdout } = await cli(
      'selftest',
      'sim:rng',
      '--strict',
      '--hostile',
      'features-bad=version-1-missing',
    );
    expect(status).toBe(1);
    expect(stdout).toContain('  FAIL  negotiate');
    expect(stdout).toContain('MUST §6.2 version-1-offered: a Version 2 device offers VIRTIO_F_VERSION_1');
    expect(stdout.endsWith('selftest FAILED\n')).toBe(true);
  });
});

describe('selftest: other outcomes', () => {
  test('a console nobody loops back is a skip, not a failure', async () => {
    const report = await selftest(parseTarget('sim:console'), {
      sim: { model: new ConsoleModel() },
      echoTimeoutMs: 50,
    });
    expect(report.ok).toBe(true);
    expect(report.steps.find((s) => s.step === 'echo on port 0')).toMatchObject({
      ok: true,
      skipped: true,
      detail: 'nothing came back within 50 ms: the console is not looped back',
    });
    expect(formatSelftest(report)).toMatch(/\n {2}skip {2}echo on port 0/);
  });

  test('an rng that gives 64 equal bytes fails its step', async () => {
    const report = await selftest(parseTarget('sim:rng'), {
      sim: { model: new RngModel({ source: (target) => target.fill(7) }) },
    });
    expect(report.steps.find((s) => s.step === 'read 64 random bytes')).toMatchObject({
      ok: false,
      error: { message: 'all 64 bytes are 0x7: not random' },
    });
    expect(report.ok).toBe(false);
  });

  test('an empty slot fails at identify with its code', async () => {
    const { status, report } = await selftestJson('sim:empty');
    expect(status).toBe(1);
    expect(report.steps).toEqual([
      {
        step: 'identify',
        ok: false,
        ms: expect.any(Number),
        error: { code: TransportError.EMPTY_SLOT, message: expect.stringContaining('empty') },
      },
    ]);
  });

  test('--strict on a selftest stopped at its first step says no rule was checked, not none broken', async () => {
    const { status, stdout } = await cli('selftest', 'sim:empty', '--strict');
    expect(status).toBe(1);
    expect(stdout).not.toContain('device rules checked, none broken');
    expect(stdout).toContain(
      'strict: no device rule checked: the selftest stopped at ' +
        'its first step (identify), before the device was driven\n',
    );
    const { report } = await selftestJson('sim:empty', '--strict');
    expect(report.strict).toEqual({ rules: Object.keys(DEVICE_RULES).length, violations: [], stoppedAt: 'identify' });
    // A later step that fails: the rules were watched up to it.
    const later = formatSelftest({
      where: 'x',
      steps: [
        { step: 'identify', ok: true, ms: 1 },
        { step: 'negotiate', ok: false, ms: 1, error: { message: 'no' } },
      ],
      strict: { rules: 17, violations: [], stoppedAt: 'negotiate' },
      ok: false,
    });
    expect(later).toContain("strict: 17 device rules watched until the selftest stopped at 'negotiate', none broken\n");
  });

  test('the watch breaks no driver rule: the sim in strict mode sees nothing wrong in --strict selftest', async () => {
    for (const type of ['rng', 'blk', 'console', 'net']) {
      for (const version of ['1', '2', 'packed']) {
        const violations: SimViolation[] = [];
        const report = await selftest(parseTarget(`sim:${type}:${version}`), {
          strict: true,
          sim: { strict: true, onViolation: (v: SimViolation) => violations.push(v) },
        });
        expect({ type, version, ok: report.ok, violations }).toEqual({ type, version, ok: true, violations: [] });
      }
    }
  });

  test.each([
    [['selftest'], 'selftest takes one device, got 0'],
    [['selftest', 'sim:rng', 'sim:blk'], 'selftest takes one device, got 2'],
    [['selftest', '4096@0x10000', '--hostile', 'needs-reset'], '--hostile works on sim devices only'],
    [['selftest', 'sim:rng', '--hostile', 'no-such-lie'], "unknown --hostile behaviour 'no-such-lie'"],
    [['selftest', 'sim:rng', '--hostile', 'needs-reset=3'], '--hostile needs-reset takes no value'],
    // The values come from FAULT_CATALOGUE's parameter of each fault.
    [
      ['selftest', 'sim:rng', '--hostile', 'bad-identity=wrong'],
      "--hostile bad-identity takes kind magic | version-3 | device-id-0, got 'wrong'",
    ],
    [
      ['selftest', 'sim:rng', '--hostile', 'interrupt-storm=often'],
      "--hostile interrupt-storm takes an integer limit, got 'often'",
    ],
    [['selftest', 'sim:rng', '--timeout', '0'], '--timeout must be milliseconds in [1, 600000], got 0'],
    [['selftest', 'sim:rng', '--bogus'], 'selftest: ERR_VIRTIO_USAGE: selftest has no option --bogus'],
  ])('usage error %j: exit 2 with the usage text', async (argv, message) => {
    const { status, stdout, stderr } = await cli(...argv);
    expect(status).toBe(2);
    expect(stdout).toBe('');
    expect(stderr).toContain(message);
    expect(stderr).toContain('selftest <dev> [--strict]');
  });
});

describe('DeviceRuleWatch', () => {
  test('passes reads and writes through unchanged, and records nothing for an honest device', () => {
    const memory = DmaPool.anonymous();
    const sim = new SimDevice({ memory, model: new RngModel() });
    try {
      const watch = new DeviceRuleWatch(sim);
      for (const offset of [
        MmioRegister.MagicValue,
        MmioRegister.Version,
        MmioRegister.DeviceID,
        MmioRegister.VendorID,
        MmioRegister.Status,
      ]) {
        expect(watch.readl(offset)).toBe(sim.readl(offset));
      }
      watch.writel(MmioRegister.Status, 1);
      expect(sim.readl(MmioRegister.Status)).toBe(1);
      expect([watch.size, watch.label]).toEqual([sim.size, sim.label]);
      expect(watch.violations).toEqual([]);
    } finally {
      sim.close();
      memory.close();
    }
  });

  test('maps the typed errors that are about the device to rules, and the others to none', () => {
    expect(ruleOfError(new DeviceBrokenError('used-idx-jump', 'x'))).toBe('used-ring-valid');
    expect(ruleOfError(new DeviceBrokenError('used-len-too-long', 'x'))).toBe('used-len-valid');
    expect(ruleOfError(new ProtocolError('blk-status-missing', 'x'))).toBe('used-len-valid');
    expect(ruleOfError(new TimeoutError('x', 5))).toBe('completes-requests');
    expect(ruleOfError(new TransportError(TransportError.STATE, 'x'))).toBeUndefined();
    expect(ruleOfError(new RangeError('x'))).toBeUndefined();
  });
});
