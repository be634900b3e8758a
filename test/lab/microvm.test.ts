/**
 * The x86-64 microvm lab, the Firecracker shape: `qemu-system-x86_64 -M
 * microvm,acpi=off` under TCG, Debian's amd64 kernel (virtio_mmio is a module
 * there and its command-line devices are off, so nothing binds the
 * transports), an amd64 rootfs with Debian's Node 18 and the host's own
 * addon build. QEMU writes a `virtio_mmio.device=` entry per device onto the
 * kernel command line; the guest (scripts/lab/guest/no-uio.ts) finds them
 * with discoverCmdline(), maps their registers through /dev/mem, takes
 * rings and buffers from DmaPool.physical over the RAM above the kernel's
 * `mem=` (run.js CARVE_OUT), polls for completions, runs the rng and blk
 * contract suites and the CLI's scan. One boot for all of it. Skipped with
 * the reason when the lab cannot be prepared (prepare.sh --arch amd64),
 * except in CI.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blkContract, type BlkSubject } from '../support/contracts/blk-contract';
import { rngContract, type RngSubject } from '../support/contracts/rng-contract';
import { carveOut, prepareLab, runLab, type LabRun } from '../support/lab-runner';
import { describeIf } from '../support/requirements';

const lab = prepareLab('amd64');
const CARVE_OUT = carveOut('amd64')!;

// QEMU 7.2's microvm: 512-byte transports from 0xfeb00000, filled from the top (the first -device is 0xfeb00e00), IRQ
// 12, 11, ...
const RNG = '0x200@0xfeb00e00:12';
const BLK = '0x200@0xfeb00c00:11';
/** What /dev/mem is asked for beside the devices' own windows and the carve-out. */
const PROBES = [
  'kernel-ram=0x1000@0x1000000', // RAM the kernel owns (its 16 MiB mark)
  'local-apic=0x1000@0xfee00000', // a region the kernel has claimed (busy in /proc/iomem)
  'low-ram=0x1000@0x1000', // RAM in the first MiB, which x86 lets /dev/mem map
];
const BOOT_TIMEOUT_MS = 300_000;

const rngCases = rngContract({} as RngSubject).map((c) => c.name);
const blkCases = blkContract({} as BlkSubject).map((c) => c.name);

/**
 * A guest shell line that prints one result line whose `field` is the output of `command` (no quotes or backslashes in
 * it).
 */
const resultLine = (kind: string, field: string, command: string): string =>
  `printf '@@LAB-RESULT {"kind":"${kind}","${field}":"%s"}\\n' "$(${command})"`;

/** The loaded addon, its barrier set and the guest's Node, reported by the guest's Node itself. */
const ADDON_REPORT =
  `node -e 'const a = require("./lib/platform/addon"); const p = require("./lib/platform"); ` +
  `process.stdout.write("@@LAB-RESULT " + JSON.stringify({ kind: "addon", path: a.addonPath, barrierKind: ` +
  `p.barrierKind, arch: process.arch, node: process.version }) + "\\n")'`;

describeIf(
  lab.ok,
  lab.reason,
  'the x86-64 microvm lab (command-line devices, /dev/mem windows, a carve-out, polled completions)',
  () => {
    let run: LabRun;
    let dir: string;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'lab-microvm-'));
      const image = join(dir, 'disk.img');
      writeFileSync(image, Buffer.alloc(16 * 1024 * 1024));
      run = await runLab(
        {
          devices: ['virtio-rng-device', 'virtio-blk-device,drive=blk0'],
          extraArgs: ['-drive', `file=${image},if=none,format=raw,id=blk0`],
          command: [
            resultLine('proc-cmdline', 'text', 'cat /proc/cmdline'),
            resultLine('pat', 'line', "dmesg | grep -m1 'x86/PAT'"),
            ADDON_REPORT,
            `node scripts/lab/guest/no-uio.js ${CARVE_OUT.base} ${CARVE_OUT.size} ${PROBES.join(' ')}`,
          ].join(' && '),
          timeoutMs: BOOT_TIMEOUT_MS,
        },
        'amd64',
      );
      // For the CI budget: the wall time of this boot.
      console.log(`microvm lab boot: ${(run.ms / 1000).toFixed(1)} s`);
    }, BOOT_TIMEOUT_MS + 60_000);
    afterAll(() => {
      rmSync(dir, { recursive: true, force: true });
    });

    const results = (kind: string): Record<string, unknown>[] => run.results.filter((r) => r.kind === kind);

    test('the guest ran to the end', () => {
      expect(run.timedOut).toBe(false);
      if (run.exitCode !== 0) throw new Error(`guest exit ${run.exitCode}; console:\n${run.console.slice(-4000)}`);
    });

    test("QEMU put the devices on the kernel command line; the guest's discovery found exactly them, no UIO", () => {
      const [proc] = results('proc-cmdline') as { text: string }[];
      // run.js gives microvm no virtio_mmio.device= of its own: these are QEMU's.
      expect(proc.text).toContain(`virtio_mmio.device=512@0xfeb00e00:12 virtio_mmio.device=512@0xfeb00c00:11`);
      expect(proc.text).toContain('mem=768M');
      const [cmdline] = results('cmdline') as { specs: string[]; uio: number; ram: string[] }[];
      expect(cmdline).toMatchObject({ specs: [RNG, BLK], uio: 0 });
      // The kernel's RAM ends where the carve-out begins.
      const ramEnd = Math.max(...cmdline.ram.map((r) => Number.parseInt(r.split('-')[1], 16)));
      expect(ramEnd + 1).toBe(CARVE_OUT.base);
    });

    test('each command-line transport answers through its /dev/mem window: an rng and a blk device, Version 2', () => {
      expect(
        results('transport').map(({ where, version, deviceId, error }) => ({ where, version, deviceId, error })),
      ).toEqual([
        { where: RNG, version: 2, deviceId: 4, error: undefined },
        { where: BLK, version: 2, deviceId: 2, error: undefined },
      ]);
    });

    test('the guest loads the host-built x86-64 addon from the package layout; its barriers are the x86 ones', () => {
      const [addon] = results('addon');
      expect(addon).toMatchObject({
        path: '/opt/virtio-mmio/prebuilds/linux-x64/node.napi.glibc.node',
        arch: 'x64',
        barrierKind: 'x86',
      });
      // Debian's Node 18 in the guest, loading an addon built by the host's Node (Node-API 8).
      expect(addon.node).toMatch(/^v18\./);
    });

    test.each([
      ...rngCases.flatMap((name) => [
        ['rng', 'default', name],
        ['rng', 'no-event-idx', name],
      ]),
      ...blkCases.map((name) => ['blk', 'default', name]),
    ])('%s contract (%s features): %s', (suite, variant, name) => {
      const result = results('case').find((r) => r.suite === suite && r.variant === variant && r.name === name);
      expect(result).toBeDefined();
      if (!result!.ok) throw new Error(`failed in the guest: ${result!.error}`);
    });

    test('rings and buffers lie in the carve-out: every ring address the driver placed', () => {
      const rings = results('rings') as { device: string; driver: Record<string, string>; bytes: number }[];
      expect(rings.map((r) => r.device)).toEqual([RNG, BLK]);
      for (const r of rings) {
        expect(r.bytes).toBeGreaterThan(0);
        for (const address of Object.values(r.driver).map(Number)) {
          expect({
            device: r.device,
            address,
            inCarveOut: address >= CARVE_OUT.base && address < CARVE_OUT.base + CARVE_OUT.size,
          }).toMatchObject({ inCarveOut: true });
        }
      }
    });

    test('the CLI: scan lists both command-line transports (/dev/mem); rng reads one as <size>@<base>:<irq>', () => {
      const [scanned] = results('cli-scan') as {
        status: number;
        stderr: string;
        entries: { where: string; kind: string; device: string; version: number; vendor: string }[];
      }[];
      expect({ status: scanned.status, stderr: scanned.stderr }).toEqual({ status: 0, stderr: '' });
      expect(
        scanned.entries.map(({ where, kind, device, version, vendor }) => ({ where, kind, device, version, vendor })),
      ).toEqual([
        { where: RNG, kind: 'physical', device: 'ENTROPY', version: 2, vendor: 'QEMU' },
        { where: BLK, kind: 'physical', device: 'BLOCK', version: 2, vendor: 'QEMU' },
      ]);
      const [rng] = results('cli-rng') as { status: number; stderr: string; out: string }[];
      expect({ status: rng.status, stderr: rng.stderr }).toEqual({ status: 0, stderr: '' });
      expect(JSON.parse(rng.out)).toMatchObject({
        where: RNG,
        bytes: 16,
        hex: expect.stringMatching(/^[0-9a-f]{32}$/),
      });
    });

    test("what Debian's amd64 /dev/mem maps: free windows, RAM outside mem=, the first MiB; not its RAM", () => {
      const devmem = Object.fromEntries(
        (results('devmem') as { name: string; ok: boolean; code?: string; hint?: string }[]).map((d) => [d.name, d]),
      );
      expect(devmem['carve-out']).toMatchObject({ ok: true });
      expect(devmem['low-ram']).toMatchObject({ ok: true });
      for (const refused of ['kernel-ram', 'local-apic']) {
        // A typed SyscallError from mmap, with the hint that names the kernel options.
        expect(devmem[refused]).toMatchObject({ ok: false, code: 'EPERM', syscall: 'mmap' });
        expect(devmem[refused].hint).toContain('STRICT_DEVMEM');
      }
    });

    test("the guest kernel says what PAT does here (recorded, not asserted: it depends on QEMU's CPU model)", () => {
      const [pat] = results('pat') as { line: string }[];
      expect(pat.line).toMatch(/x86\/PAT: /);
      console.log(`microvm guest: ${pat.line.replace(/^\[[^\]]*\]\s*/, '')}`);
    });
  },
);
