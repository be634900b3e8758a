/**
 * VIRTIO_F_IN_ORDER (virtio 1.2 §2.7.9 split, §2.8.20 packed) against a
 * device we did not write: the arm64 lab guest booted on QEMU 10.0 from
 * bookworm-backports (prepare.sh unpacks it into ready/qemu; the host's 7.2
 * has no in_order property), with rng, blk and console devices taking
 * in_order=on, once on the split ring and once packed, all in one boot. The
 * guest (scripts/lab/guest/in-order.ts) drives each with several requests
 * in flight and reports what was offered and negotiated, each queue's
 * counters and its data checks. Needs the lab (scripts/lab/prepare.sh,
 * root the first time); skipped with the reason otherwise, except in CI.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pattern } from '../../scripts/lab/guest/blk-pattern';
import { PATTERN_BYTES } from '../../scripts/lab/guest/in-order';
import { echoServer } from '../support/echo-server';
import { prepareLab, runLab, type LabRun } from '../support/lab-runner';
import { describeIf } from '../support/requirements';

const lab = prepareLab('arm64');
/** Where prepare.sh unpacks the backports QEMU for the arm64 lab (run.js's ARCHES.arm64.backport). */
const QEMU10 = join(process.env.LAB_CACHE ?? resolve(__dirname, '../../.lab-cache'), 'ready/qemu/qemu-system-aarch64');
const qemu = (bin: string, ...args: string[]): string => {
  const child = spawnSync(bin, ['-M', 'virt', '-display', 'none', '-audio', 'none', ...args], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  return `${child.stdout ?? ''}${child.stderr ?? ''}`;
};

type Ring = 'split' | 'packed';
const RINGS: readonly Ring[] = ['split', 'packed'];
const TYPES = ['rng', 'blk', 'console'] as const;
/** blk: every 4 KiB block of the host's pattern read, ours written and read back, one flush. */
const BLK_REQUESTS = 3 * (PATTERN_BYTES / 4096) + 1;

interface DeviceLine {
  type: string;
  device: string;
  version: number;
  format: Ring;
  queueSizes: number[];
  offeredNames: string;
  features: Record<string, { offered: boolean; negotiated: boolean }>;
}
interface QueueLine {
  type: string;
  device: string;
  index: number;
  stats: { submitted: number; completed: number; inOrderBatches: number; inOrderBatched: number };
}

describeIf(lab.ok, lab.reason, 'VIRTIO_F_IN_ORDER on QEMU 10.0 (the arm64 lab, bookworm-backports)', () => {
  test("backports QEMU 10.x: its virtio-mmio devices take in_order=on; the host's 7.2 has no such property", () => {
    expect(qemu(QEMU10, '--version')).toMatch(/QEMU emulator version 10\.\d+/);
    for (const device of ['virtio-rng-device', 'virtio-blk-device', 'virtio-serial-device']) {
      const help = qemu(QEMU10, '-device', `${device},help`);
      expect(help).toMatch(/in_order=<bool>/);
      expect(help).toMatch(/packed=<bool>/);
    }
    expect(qemu('qemu-system-aarch64', '-device', 'virtio-rng-device,help')).not.toMatch(/in_order/);
  });

  test('QEMU 10.0 has no notification_data property on virtio-mmio devices (NOTIFICATION_DATA stays sim-only)', () => {
    // If a later backport adds it, this fails and the boot below should turn it on.
    expect(qemu(QEMU10, '-device', 'virtio-rng-device,notification_data=on')).toMatch(
      /Property 'virtio-rng-device\.notification_data' not found/,
    );
  });

  describe('one boot: rng, blk and console with in_order=on, split and packed', () => {
    let run: LabRun;
    let dir: string;
    const echoes: Awaited<ReturnType<typeof echoServer>>[] = [];
    /** QEMU fills transports from the top, three per ring in the order given below. */
    const path: Record<Ring, Record<(typeof TYPES)[number], string>> = {
      split: { rng: '/dev/uio31', blk: '/dev/uio30', console: '/dev/uio29' },
      packed: { rng: '/dev/uio28', blk: '/dev/uio27', console: '/dev/uio26' },
    };

    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'lab-in-order-'));
      const devices: string[] = [];
      const extraArgs: string[] = [];
      for (const ring of RINGS) {
        const props = `in_order=on${ring === 'packed' ? ',packed=on' : ''}`;
        // The host's pattern at sector 0 of a 4 MiB image; the guest reads it back and writes its own after it.
        const image = join(dir, `${ring}.img`);
        const data = Buffer.alloc(4 << 20);
        pattern(PATTERN_BYTES).copy(data);
        writeFileSync(image, data);
        const socket = join(dir, `${ring}.sock`);
        echoes.push(await echoServer(socket));
        devices.push(
          `virtio-rng-device,${props}`,
          `virtio-blk-device,drive=${ring},${props}`,
          // Each console on its own serial bus: without bus= both would land on the first.
          `virtio-serial-device,id=serial-${ring},${props}`,
          `virtconsole,bus=serial-${ring}.0,chardev=con-${ring}`,
        );
        extraArgs.push(
          '-drive',
          `file=${image},if=none,format=raw,id=${ring}`,
          '-chardev',
          `socket,id=con-${ring},path=${socket}`,
        );
      }
      run = await runLab({
        backport: true,
        devices,
        extraArgs,
        command: 'node scripts/lab/guest/in-order.js',
        timeoutMs: 360_000,
      });
    }, 420_000);
    afterAll(async () => {
      for (const echo of echoes) await echo.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const lines = <T>(kind: string): T[] => run.results.filter((r) => r.kind === kind) as T[];
    const deviceLine = (device: string): DeviceLine | undefined =>
      lines<DeviceLine>('device').find((d) => d.device === device);
    const errorOf = (device: string): Record<string, unknown> | undefined =>
      lines<Record<string, unknown>>('error').find((e) => e.device === device);
    const check = (device: string): Record<string, unknown> | undefined =>
      lines<Record<string, unknown>>('check').find((c) => c.device === device);
    const queues = (device: string): QueueLine[] => lines<QueueLine>('queue').filter((q) => q.device === device);

    test('the guest ran to the end', () => {
      expect(run.timedOut).toBe(false);
      if (run.exitCode !== 0) throw new Error(`guest exit ${run.exitCode}; console:\n${run.console.slice(-4000)}`);
      // What the lead reads off a CI log: per device, the negotiated ring and the in-order counters.
      const summary = lines<QueueLine>('queue').map(
        (q) =>
          `${q.type} ${q.device} q${q.index}: ${q.stats.completed} completed, ` +
          `${q.stats.inOrderBatches} batch entries covering ${q.stats.inOrderBatched}`,
      );
      const outcomes = [...lines<Record<string, unknown>>('check'), ...lines<Record<string, unknown>>('error')].map(
        (l) => JSON.stringify(l),
      );
      console.log(`in-order boot (${Math.round(run.ms / 1000)} s):\n${[...summary, ...outcomes].join('\n')}`);
    });

    describe.each(RINGS)('%s ring', (ring) => {
      test.each(TYPES)('%s: Version 2, the ring asked for, IN_ORDER offered and negotiated', (type) => {
        const line = deviceLine(path[ring][type]);
        expect(line).toBeDefined();
        expect({ type: line!.type, version: line!.version, format: line!.format }).toEqual({
          type,
          version: 2,
          format: ring,
        });
        expect(line!.features.IN_ORDER).toEqual({ offered: true, negotiated: true });
        expect(line!.features.RING_PACKED).toEqual({ offered: ring === 'packed', negotiated: ring === 'packed' });
        // We implement NOTIFICATION_DATA: whatever QEMU offers of it is taken (10.0 offers none).
        expect(line!.features.NOTIFICATION_DATA.negotiated).toBe(line!.features.NOTIFICATION_DATA.offered);
      });

      test('blk: QD 32 reads of the host pattern, QD 16 writes read back, all equal, every request completed', () => {
        const device = path[ring].blk;
        expect(errorOf(device)).toBeUndefined();
        expect(check(device)).toMatchObject({ readMismatches: 0, writeMismatches: 0, reads: 512, writes: 256 });
        const [q] = queues(device);
        expect(q.stats.submitted).toBe(BLK_REQUESTS);
        expect(q.stats.completed).toBe(BLK_REQUESTS);
        // A batch entry covers at least two requests, and never more than were completed.
        expect(q.stats.inOrderBatched).toBeGreaterThanOrEqual(2 * q.stats.inOrderBatches);
        expect(q.stats.inOrderBatched).toBeLessThanOrEqual(q.stats.completed);
      });

      // The console's echo is not checked: on QEMU 10.0.2 its control queue often never receives DEVICE_ADD (no
      // buffer used on it, with in_order=on and in one run without), so port 0 never opens; 1 of 4 boots echoed.
      // The guest still reports the attempt (a 'check' or an 'error' line) for the log.
      test('rng: every request filled, or QEMU 10.0.2 broke the ring and the driver refused it', () => {
        const device = path[ring].rng;
        const error = errorOf(device);
        const [q] = queues(device);
        if (!error) {
          expect(check(device)).toMatchObject({ requests: 64, bytes: 64 * 256, zeroRequests: 0 });
          expect(q.stats.completed).toBe(64);
          return;
        }
        // QEMU 10.0.2's virtio-rng loses count of its in-order elements ("Virtqueue size exceeded") and publishes
        // used entries for requests never made: the driver breaks the queue on the first one, hands out nothing.
        expect(error).toMatchObject({ name: 'DeviceBrokenError' });
        expect(error.message).toMatch(
          /used\.idx moved by \d+ with \d+ request|used element id \d+ is not an outstanding/,
        );
        expect(run.console).toMatch(/Virtqueue size exceeded/);
        expect(check(device)).toBeUndefined();
        expect(q.stats.completed).toBeLessThan(64);
      });
    });
  });
});
