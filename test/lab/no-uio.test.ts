/**
 * The arm64 lab without UIO: the guest boots with 4 GiB of RAM of which the
 * kernel owns the low 3 GiB (`mem=3G`), QEMU's devices named by
 * `virtio_mmio.device=` entries on the kernel command line and left unbound
 * from uio_pdrv_genirq. The guest (scripts/lab/guest/no-uio.ts) finds them
 * with discoverCmdline(), maps their registers through /dev/mem, takes
 * rings and buffers from DmaPool.physical over the 1 GiB above 4 GiB that
 * the kernel does not own, polls for completions, and runs the contract
 * suites; Version 2 and Version 1. Skipped with the reason when the lab
 * cannot be prepared, except in CI.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blkContract, type BlkSubject } from '../support/contracts/blk-contract';
import { consoleEchoContract, type ConsoleSubject } from '../support/contracts/console-contract';
import { rngContract, type RngSubject } from '../support/contracts/rng-contract';
import { echoServer } from '../support/echo-server';
import { prepareLab, runLab, type LabRun } from '../support/lab-runner';
import { describeIf } from '../support/requirements';

const lab = prepareLab('arm64');

// -M virt: RAM from 0x4000_0000; 4096 MiB end at 0x1_4000_0000. mem=3G leaves the kernel 0x4000_0000..0xffff_ffff.
const MEMORY_MB = 4096;
const CARVE_OUT = { base: 0x1_0000_0000n, size: 0x4000_0000 };
// -M virt's 32 transports: 0x200 bytes each from 0x0a00_0000, GIC SPI 16 + n (INTID 48 + n); QEMU fills them from the
// top.
const slot = (n: number): string => `0x200@0x${(0x0a00_0000 + 0x200 * n).toString(16)}:${48 + n}`;
const RNG = slot(31);
const BLK = slot(30);
const CONSOLE = slot(29);
/**
 * /dev/mem probes beside the devices' own windows. The claimed region is the
 * PL011 UART (the kernel's console, its registers requested by the amba-pl011
 * driver): not a transport, because IO_STRICT_DEVMEM judges whole pages and
 * one claimed transport would make its seven page neighbours unmappable too.
 */
const PROBES = [
  'uio-bound=0x200@0xa000000', // slot 0, still bound to uio_pdrv_genirq
  'driver-claimed=0x1000@0x9000000', // -M virt's PL011, bound to amba-pl011
  'kernel-ram=0x1000@0x40000000', // the first page of the kernel's RAM
];
const BOOT_TIMEOUT_MS = 360_000;

const rngCases = rngContract({} as RngSubject).map((c) => c.name);
const blkCases = blkContract({} as BlkSubject).map((c) => c.name);
const consoleCases = consoleEchoContract({} as ConsoleSubject).map((c) => c.name);

describeIf(
  lab.ok,
  lab.reason,
  'the arm64 lab without UIO (/dev/mem windows, a carve-out above 4 GiB, polled completions)',
  () => {
    describe.each([
      ['Version 2', false, 2],
      ['Version 1 (legacy)', true, 1],
    ] as const)('%s', (name, legacy, version) => {
      let run: LabRun;
      let dir: string;
      let echo: Awaited<ReturnType<typeof echoServer>>;
      beforeAll(async () => {
        dir = mkdtempSync(join(tmpdir(), 'lab-no-uio-'));
        const image = join(dir, 'disk.img');
        writeFileSync(image, Buffer.alloc(16 * 1024 * 1024));
        echo = await echoServer(join(dir, 'console.sock'));
        const unbind = [RNG, BLK, CONSOLE].map(
          (s) =>
            `echo ${s.split('@0x')[1].split(':')[0]}.virtio_mmio > /sys/bus/platform/drivers/uio_pdrv_genirq/unbind`,
        );
        run = await runLab({
          memoryMb: MEMORY_MB,
          append: ['mem=3G', ...[RNG, BLK, CONSOLE].map((s) => `virtio_mmio.device=${s}`)],
          devices: [
            'virtio-rng-device',
            'virtio-blk-device,drive=blk0',
            'virtio-serial-device',
            'virtconsole,chardev=con0',
          ],
          extraArgs: [
            '-drive',
            `file=${image},if=none,format=raw,id=blk0`,
            '-chardev',
            `socket,id=con0,path=${join(dir, 'console.sock')}`,
          ],
          legacy,
          command: [
            ...unbind,
            `node scripts/lab/guest/no-uio.js ${CARVE_OUT.base} ${CARVE_OUT.size} ${PROBES.join(' ')}`,
          ].join(' && '),
          timeoutMs: BOOT_TIMEOUT_MS,
        });
        // For the CI budget: the wall time of this boot.
        console.log(`no-UIO lab boot, ${name}: ${(run.ms / 1000).toFixed(1)} s`);
        if (process.env.NO_UIO_DUMP)
          writeFileSync(`${process.env.NO_UIO_DUMP}-v${version}.json`, JSON.stringify(run, null, 1));
      }, BOOT_TIMEOUT_MS + 60_000);
      afterAll(async () => {
        await echo?.close();
        rmSync(dir, { recursive: true, force: true });
      });

      const results = (kind: string): Record<string, unknown>[] => run.results.filter((r) => r.kind === kind);

      test('the guest ran to the end', () => {
        expect(run.timedOut).toBe(false);
        if (run.exitCode !== 0) throw new Error(`guest exit ${run.exitCode}; console:\n${run.console.slice(-4000)}`);
      });

      test('discoverCmdline() finds the three entries; none is on UIO, and the kernel owns no RAM above 4 GiB', () => {
        const [cmdline] = results('cmdline') as { specs: string[]; uio: number; ram: string[] }[];
        expect(cmdline.specs).toEqual([RNG, BLK, CONSOLE]);
        // 32 transports, three unbound.
        expect(cmdline.uio).toBe(29);
        const ends = cmdline.ram.map((r) => BigInt(`0x${r.split('-')[1]}`));
        expect(ends.every((end) => end < CARVE_OUT.base)).toBe(true);
      });

      test('QEMU put rng, blk and console on the top three transports, as the command line says', () => {
        expect(results('transport').map((t) => [t.where, t.version, t.deviceId, t.error])).toEqual([
          [RNG, version, 4, undefined],
          [BLK, version, 2, undefined],
          [CONSOLE, version, 3, undefined],
        ]);
      });

      test('the rng, blk and console contract suites pass through /dev/mem and the carve-out, polled', () => {
        const cases = results('case') as {
          suite: string;
          variant: string;
          name: string;
          ok?: boolean;
          error?: string;
        }[];
        const ran = (suite: string, variant = 'default'): string[] =>
          cases.filter((c) => c.suite === suite && c.variant === variant).map((c) => c.name);
        expect(ran('rng')).toEqual(rngCases);
        expect(ran('rng', 'no-event-idx')).toEqual(rngCases);
        expect(ran('blk')).toEqual(blkCases);
        expect(ran('console-echo')).toEqual(consoleCases);
        expect(cases.filter((c) => !c.ok).map((c) => `${c.suite}/${c.variant}/${c.name}: ${c.error}`)).toEqual([]);
        expect(echo.echoed()).toBeGreaterThan(0);
      });

      test(
        version === 2
          ? 'rings above 4 GiB: the driver wrote 1 to QueueDescHigh, QueueDriverHigh and QueueDeviceHigh, and ' +
              'requests completed'
          : 'rings above 4 GiB: the driver wrote a QueuePFN above 4 GiB, and requests completed',
        () => {
          // QEMU reads the address registers back as 0 (write-only, virtio 1.2 §4.2.2): the guest reports the words
          // written.
          const rings = results('rings') as {
            device: string;
            version: number;
            driver: Record<string, string>;
            written: Record<string, string>;
            bytes: number;
          }[];
          expect(rings.map((r) => [r.device, r.version])).toEqual([
            [RNG, version],
            [BLK, version],
          ]);
          for (const r of rings) {
            // Data came back: the device found the rings where the words said.
            expect(r.bytes).toBeGreaterThan(0);
            const inCarveOut = (address: bigint): boolean =>
              address >= CARVE_OUT.base && address < CARVE_OUT.base + BigInt(CARVE_OUT.size);
            for (const address of Object.values(r.driver))
              expect({ address, inCarveOut: inCarveOut(BigInt(address)) }).toEqual({ address, inCarveOut: true });
            if (version === 2) {
              expect(r.written).toMatchObject({ QueueDescHigh: '0x1', QueueDriverHigh: '0x1', QueueDeviceHigh: '0x1' });
              const held = (low: string, high: string): string =>
                `0x${((BigInt(r.written[high]) << 32n) | BigInt(r.written[low])).toString(16)}`;
              expect({
                desc: held('QueueDescLow', 'QueueDescHigh'),
                driver: held('QueueDriverLow', 'QueueDriverHigh'),
                device: held('QueueDeviceLow', 'QueueDeviceHigh'),
              }).toEqual(r.driver);
            } else {
              // §4.2.4: the queue's guest-physical page number (GuestPageSize 4096).
              expect(BigInt(r.written.QueuePFN) << 12n).toBe(BigInt(r.driver.desc));
              expect(BigInt(r.written.QueuePFN)).toBeGreaterThanOrEqual(0x10_0000n);
            }
          }
        },
      );

      test('what /dev/mem allows under STRICT_DEVMEM and IO_STRICT_DEVMEM, each refusal with its hint', () => {
        const outcomes = Object.fromEntries(
          (results('devmem') as { name: string; kind: string }[]).map(({ name, kind: _kind, ...rest }) => [name, rest]),
        ) as Record<string, { ok: boolean; code?: string; syscall?: string; hint?: string }>;
        expect(outcomes['carve-out']).toEqual({ ok: true });
        // uio_pdrv_genirq does not request its device's region, so IO_STRICT_DEVMEM lets a UIO-bound transport through.
        expect(outcomes['uio-bound']).toEqual(expect.objectContaining({ ok: true }));
        expect(outcomes['driver-claimed']).toEqual(
          expect.objectContaining({
            ok: false,
            code: 'EPERM',
            syscall: 'mmap',
            hint: expect.stringContaining('claimed by a driver'),
          }),
        );
        expect(outcomes['kernel-ram']).toEqual(
          expect.objectContaining({ ok: false, code: 'EPERM', syscall: 'mmap', hint: expect.stringContaining('RAM') }),
        );
      });

      test('virtio-mmio scan lists the command line devices; virtio-mmio rng reads one named <size>@<base>', () => {
        const [scanned] = results('cli-scan') as {
          status: number;
          stderr: string;
          entries: { where: string; kind: string; device?: string; version?: number; error?: unknown }[];
        }[];
        const physical = scanned.entries.filter((e) => e.kind === 'physical');
        expect(physical.map((e) => [e.where, e.device, e.version, e.error])).toEqual([
          [RNG, 'ENTROPY', version, undefined],
          [BLK, 'BLOCK', version, undefined],
          [CONSOLE, 'CONSOLE', version, undefined],
        ]);
        const [rng] = results('cli-rng') as { where: string; status: number; stderr: string; out: string }[];
        expect({ where: rng.where, status: rng.status, stderr: rng.stderr }).toEqual({
          where: RNG,
          status: 0,
          stderr: '',
        });
      });
    });
  },
);
