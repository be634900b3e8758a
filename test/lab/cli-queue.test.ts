/**
 * The CLI's bring-up command on a device we did not write: QEMU's
 * virtio-rng addressed as an unknown device — `virtio-mmio queue` with no
 * rng driver involved (transport features only, queue 0 set up by hand,
 * device-writable buffers posted, the used lengths and bytes printed). One
 * short boot of the arm64 lab (scripts/lab/prepare.sh, root the first
 * time); skipped with the reason otherwise, except in CI.
 */
import { describeIf } from '../support/requirements';
import { prepareLab, runLab, type LabRun } from '../support/lab-runner';

const lab = prepareLab('arm64');

interface CliResult {
  argv: string[];
  status: number;
  stdout: string;
  stderr: string;
}

interface QueueJson {
  deviceId: number;
  version: number;
  vendorId: string;
  features: string[];
  queue: { index: number; size: number; ring: string };
  chains: { chain: number; in: number[]; usedLen?: number; hex?: string; error?: unknown }[];
  interrupts: number;
  strict: { violations: { rule: string; level: string }[] };
  ok: boolean;
}

describeIf(lab.ok, lab.reason, 'virtio-mmio queue on QEMU virtio-rng, addressed as an unknown device', () => {
  let run: LabRun;
  // QEMU fills transports from the top: the one device is on /dev/uio31.
  beforeAll(async () => {
    run = await runLab({
      devices: ['virtio-rng-device'],
      command: [
        'node scripts/lab/guest/cli-report.js queue /dev/uio31 --queue 0 --in 64 --in 64 --chains 4 --strict --json',
        // The installed command itself: its text output and exit statuses (0, then 2 for a chain with nothing in it).
        'node lib/cli/bin.js queue /dev/uio31 --queue 0 --in 32; echo "@@LAB-RESULT ' +
          '{\\"kind\\":\\"bin\\",\\"status\\":$?}"',
        'node lib/cli/bin.js queue /dev/uio31 --queue 0; echo "@@LAB-RESULT {\\"kind\\":\\"bin\\",\\"status\\":$?}"',
      ].join('\n'),
      timeoutMs: 150_000,
    });
  }, 180_000);

  test('the guest ran the commands to the end', () => {
    expect(run.timedOut).toBe(false);
    if (run.exitCode !== 0) throw new Error(`guest exit ${run.exitCode}; console:\n${run.console.slice(-3000)}`);
  });

  test('--strict --json: 4 chains of 64 + 64 writable bytes, each used whole with random bytes; no rule broken', () => {
    const [cli] = run.results.filter((r) => r.kind === 'cli') as unknown as CliResult[];
    expect({ status: cli.status, stderr: cli.stderr }).toEqual({ status: 0, stderr: '' });
    const report = JSON.parse(cli.stdout) as QueueJson;
    expect(report).toMatchObject({
      deviceId: 4,
      version: 2,
      vendorId: '0x554d4551 "QEMU"',
      queue: { index: 0, ring: 'split' },
      ok: true,
    });
    // No device-type feature asked for (the entropy device has none anyway, §5.4.3): transport ones only.
    expect(report.features).toContain('VIRTIO_F_VERSION_1');
    expect(report.features.every((f) => f.startsWith('VIRTIO_F_'))).toBe(true);
    expect(report.chains).toHaveLength(4);
    for (const chain of report.chains) {
      expect(chain.error).toBeUndefined();
      expect(chain.usedLen).toBe(128);
      expect(chain.hex).toMatch(/^[0-9a-f]{256}$/);
      expect(new Set(chain.hex!.match(/../g)).size).toBeGreaterThan(16);
    }
    expect(new Set(report.chains.map((c) => c.hex)).size).toBe(4);
    expect(report.interrupts).toBeGreaterThan(0);
    expect(report.strict.violations.filter((v) => v.level === 'must')).toEqual([]);
  });

  test('the command as installed: the text report on the console, exit 0; nothing to post is exit 2', () => {
    const statuses = run.results.filter((r) => r.kind === 'bin').map((r) => r.status);
    expect(statuses).toEqual([0, 2]);
    expect(run.console).toMatch(
      /^\/dev\/uio31 \(a003e00\.virtio_mmio\): ENTROPY \(4\), virtio-mmio Version 2, vendor 0x554d4551 "QEMU"$/m,
    );
    expect(run.console).toMatch(/^chain 0 \(0 bytes out, 32 bytes in\): used len 32 in \d+\.\d ms$/m);
    expect(run.console).toMatch(/^ {2}00000010 {2}([0-9a-f]{2} ){8} ([0-9a-f]{2} ){7}[0-9a-f]{2} {2}\|.{16}\|$/m);
    expect(run.console).toContain('virtio-mmio queue: ERR_VIRTIO_USAGE: queue needs something to post');
  });
});
