/**
 * The QEMU labs: a real kernel with uio_pdrv_genirq and QEMU's own
 * virtio-mmio devices, Version 1 and Version 2, on an arm64 guest and on
 * a 32-bit armhf (LPAE) one. The guest scans every transport and runs the
 * same contract suites that run on the sim; this file checks what it
 * reported. Needs the lab (scripts/lab/prepare.sh [--arch armhf], root the
 * first time); skipped with the reason otherwise, except in CI.
 */
import { spawn, spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { blkContract, type BlkSubject } from '../support/contracts/blk-contract';
import {
  consoleEchoContract,
  consoleMultiportContract,
  type ConsoleSubject,
} from '../support/contracts/console-contract';
import { rngContract, type RngSubject } from '../support/contracts/rng-contract';
import { pattern } from '../../scripts/lab/guest/blk-pattern';
import { MARKER_SECTOR, PATTERN_BYTES, ROUNDS, marker } from '../../scripts/lab/guest/unbind-fault';
import { EVENT_IDX_WRAP_REQUESTS } from '../../scripts/lab/guest/event-idx-wrap';
import type { QueueStats } from '../../lib/queue';
import { describeIf } from '../support/requirements';
import { echoServer } from '../support/echo-server';
import { prepareLab, runLab, type LabArch, type LabRun } from '../support/lab-runner';

type Arch = Exclude<LabArch, 'amd64'>; // amd64 (the microvm, no UIO) has its own file: microvm.test.ts

/** What the checks expect of each guest (scripts/lab/lab-arch.sh builds them). */
const GUESTS = {
  arm64: { prebuild: 'linux-arm64/node.napi.armv8.glibc.node', suiteTimeoutMs: 360_000 },
  armhf: { prebuild: 'linux-arm/node.napi.armv7.glibc.node', suiteTimeoutMs: 360_000 },
} as const;

const lab = prepareLab('arm64');
const armhfLab = prepareLab('armhf');
const rngCases = rngContract({} as RngSubject).map((c) => c.name);
const blkCases = blkContract({} as BlkSubject).map((c) => c.name);
const consoleCases = consoleEchoContract({} as ConsoleSubject).map((c) => c.name);
const multiportCases = consoleMultiportContract({} as ConsoleSubject, { ports: [], echoPort: '' }).map((c) => c.name);

/**
 * The suite's 'dma' line: 64 bytes came back; every device address it saw lies in guest RAM; all of them (returned) as
 * bigint.
 */
function dmaInRam(lines: Record<string, unknown>[]): bigint[] {
  const [dma] = lines as {
    ram: string[];
    addresses: Record<string, string>;
    descriptors: string[];
    bytes: number;
    distinct: number;
  }[];
  expect(dma).toBeDefined();
  expect(dma.bytes).toBe(64);
  expect(dma.distinct).toBeGreaterThan(16);
  expect(dma.descriptors.length).toBeGreaterThan(0);
  const ram = dma.ram.map((r) => r.split('-').map((a) => BigInt(`0x${a}`)));
  const addresses = [...dma.descriptors, ...Object.values(dma.addresses)].map(BigInt);
  for (const address of addresses) {
    const hex = `0x${address.toString(16)}`;
    expect({ hex, inRam: ram.some(([start, end]) => address >= start && address <= end) }).toEqual({
      hex,
      inRam: true,
    });
  }
  return addresses;
}

/**
 * One boot per entry: rng, blk and console on QEMU's devices, the guest's
 * suite (scripts/lab/guest/suite.ts) and every check of what it reported.
 */
function contractBoots(
  arch: Arch,
  boots: readonly (readonly [name: string, legacy: boolean, version: 1 | 2, packed: boolean])[],
): void {
  const guest = GUESTS[arch];
  describe.each(boots)('%s', (_name, legacy, version, packed) => {
    let run: LabRun;
    let dir: string;
    let echo: Awaited<ReturnType<typeof echoServer>>;
    let portEcho: Awaited<ReturnType<typeof echoServer>>;
    // QEMU 7.2 offers RING_PACKED with packed=on (Version 2 only); it has no IN_ORDER or NOTIFICATION_DATA property.
    const packedOn = packed ? ',packed=on' : '';
    const ring = packed ? 'packed' : 'split';
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'lab-devices-'));
      // A 16 MiB raw image for QEMU's virtio-blk (the contract overwrites parts of it).
      const image = join(dir, 'disk.img');
      writeFileSync(image, Buffer.alloc(16 * 1024 * 1024));
      // The console's port 0 is a socket QEMU connects to; this end echoes.
      echo = await echoServer(join(dir, 'console.sock'));
      // A second port (virtserialport, port 1 with MULTIPORT) named as the guest suite expects, echoed the same way.
      portEcho = await echoServer(join(dir, 'port.sock'));
      run = await runLab(
        {
          // QEMU fills transports from the top: rng on /dev/uio31, blk on /dev/uio30, the console on /dev/uio29.
          devices: [
            `virtio-rng-device${packedOn}`,
            `virtio-blk-device,drive=blk0${packed ? ',packed=on,num-queues=2' : ''}`,
            `virtio-serial-device${packedOn}`,
            'virtconsole,chardev=con0',
            'virtserialport,chardev=port1,name=org.virtio-mmio.echo',
          ],
          extraArgs: [
            '-drive',
            `file=${image},if=none,format=raw,id=blk0`,
            '-chardev',
            `socket,id=con0,path=${join(dir, 'console.sock')}`,
            '-chardev',
            `socket,id=port1,path=${join(dir, 'port.sock')}`,
          ],
          legacy,
          command: 'node scripts/lab/guest/suite.js',
          timeoutMs: guest.suiteTimeoutMs,
        },
        arch,
      );
    }, guest.suiteTimeoutMs + 60_000);
    afterAll(async () => {
      await echo?.close();
      await portEcho?.close();
      rmSync(dir, { recursive: true, force: true });
    });

    const results = (kind: string): Record<string, unknown>[] => run.results.filter((r) => r.kind === kind);

    test('the guest ran the suite to the end', () => {
      expect(run.timedOut).toBe(false);
      if (run.exitCode !== 0) throw new Error(`guest exit ${run.exitCode}; console:\n${run.console.slice(-4000)}`);
    });

    test('RING_RESET (Version 2): one queue of blk and of rng reset through QueueReset; what QEMU did, checked', () => {
      const checks = results('queue-reset') as {
        device: string;
        queues: number;
        offered: boolean;
        reset: string;
        failure?: string;
        live: boolean;
        resettableAfter: boolean;
        reads: Record<string, string>;
      }[];
      if (version === 1) {
        // Legacy: no RING_RESET, nothing tried.
        expect(checks).toEqual([]);
        return;
      }
      expect(checks.map((c) => [c.device, c.queues]).sort()).toEqual([
        ['blk', packed ? 2 : 1],
        ['rng', 1],
      ]);
      for (const c of checks) {
        expect(c.offered).toBe(true);
        if (c.reset === 'ok') {
          // A completed reset (QueueReset and QueueReady read 0): that queue serves again, the others never stopped.
          expect(c).toMatchObject({ failure: undefined, live: true, resettableAfter: true });
          expect(Object.values(c.reads).every((r) => r === 'ok')).toBe(true);
        } else {
          // QEMU's virtio-mmio offers RING_RESET but ignores QueueReset (QueueReady stays 1): caught, the memory is
          // not taken back from the device; the device is failed as a whole (its reset takes the memory back) and
          // later requests are refused, typed.
          expect(c).toMatchObject({
            reset: 'ERR_VIRTIO_QUEUE_RESET_IGNORED',
            failure: 'ERR_VIRTIO_QUEUE_RESET_IGNORED',
            live: false,
            resettableAfter: false,
          });
          for (const read of Object.values(c.reads)) expect(read).toMatch(/^ERR_VIRTIO_/);
        }
      }
    });

    test(`the library loads its ${arch} prebuild from the package layout, without build/ or a compiler`, () => {
      const [addon] = results('addon');
      expect(addon).toEqual({
        kind: 'addon',
        path: `/opt/virtio-mmio/prebuilds/${guest.prebuild}`,
        buildDir: false,
        compiler: false,
      });
    });

    test('DMA: an rng request round-trips with its descriptor and rings at physical addresses in guest RAM', () => {
      dmaInRam(results('dma'));
    });

    test('all 32 transports are found through UIO; the 29 empty ones are reported as empty, not as errors', () => {
      const transports = results('transport');
      expect(transports).toHaveLength(32);
      expect(transports.filter((t) => t.error)).toEqual([]);
      expect(transports.every((t) => t.version === version)).toBe(true);
      expect(transports.filter((t) => t.device === 'empty')).toHaveLength(29);
      // QEMU fills transports from the top: the first -device is the last slot.
      expect(transports.find((t) => t.deviceId === 4)).toMatchObject({ path: '/dev/uio31', address: '0xa003e00' });
      expect(transports.find((t) => t.deviceId === 2)).toMatchObject({ path: '/dev/uio30', address: '0xa003c00' });
      expect(transports.find((t) => t.deviceId === 3)).toMatchObject({ path: '/dev/uio29', address: '0xa003a00' });
    });

    test("the CLI: scan finds the 32 slots and the three devices; inspect decodes QEMU's features and config", () => {
      const [scanned] = results('cli-scan') as {
        status: number;
        stderr: string;
        entries: { device: string; deviceId?: number; version?: number; empty?: boolean; vendor?: string }[];
      }[];
      expect({ status: scanned.status, stderr: scanned.stderr }).toEqual({ status: 0, stderr: '' });
      expect(scanned.entries).toHaveLength(32);
      expect(scanned.entries.filter((e) => e.empty)).toHaveLength(29);
      expect(
        scanned.entries
          .filter((e) => !e.empty)
          .map((e) => [e.device, e.version, e.vendor])
          .sort(),
      ).toEqual([
        ['BLOCK', version, 'QEMU'],
        ['CONSOLE', version, 'QEMU'],
        ['ENTROPY', version, 'QEMU'],
      ]);
      const inspected = results('cli-inspect') as {
        deviceId: number;
        status: number;
        stderr: string;
        report: {
          features: { bits: { name: string }[] };
          config?: { fields: Record<string, unknown> };
          queues: { sizeMax?: number }[];
          problem?: string;
        };
      }[];
      expect(inspected.map((i) => [i.deviceId, i.status, i.stderr, i.report.problem])).toEqual(
        expect.arrayContaining([
          [4, 0, '', undefined],
          [2, 0, '', undefined],
          [3, 0, '', undefined],
        ]),
      );
      const names = (id: number): string[] =>
        inspected.find((i) => i.deviceId === id)!.report.features.bits.map((b) => b.name);
      if (version === 2) for (const id of [2, 3, 4]) expect(names(id)).toContain('VIRTIO_F_VERSION_1');
      expect(names(2)).toEqual(expect.arrayContaining(['VIRTIO_BLK_F_FLUSH', 'VIRTIO_BLK_F_SEG_MAX']));
      expect(names(3)).toContain('VIRTIO_CONSOLE_F_MULTIPORT');
      // The 16 MiB image: 32768 sectors (64-bit values are hex strings in the report).
      expect(inspected.find((i) => i.deviceId === 2)!.report.config?.fields.capacity).toBe('0x8000');
      expect(inspected.find((i) => i.deviceId === 4)!.report.queues[0].sizeMax).toBeGreaterThan(0);
    });

    test('the CLI: selftest --strict passes every step for rng, blk and console, and QEMU breaks no MUST rule', () => {
      const tested = results('cli-selftest') as {
        deviceId: number;
        status: number;
        stderr: string;
        report: {
          ok: boolean;
          version: number;
          ring: string;
          steps: { step: string; ok: boolean; skipped?: boolean; error?: unknown }[];
          strict: { violations: { rule: string; level: string }[] };
        };
      }[];
      expect(tested.map((t) => t.deviceId).sort()).toEqual([2, 3, 4]);
      for (const t of tested) {
        expect({
          deviceId: t.deviceId,
          status: t.status,
          stderr: t.stderr,
          failed: t.report.steps.filter((s) => !s.ok),
        }).toEqual({ deviceId: t.deviceId, status: 0, stderr: '', failed: [] });
        expect(t.report).toMatchObject({ ok: true, version, ring: packed ? 'packed' : 'split' });
        expect(t.report.strict.violations.filter((v) => v.level === 'must')).toEqual([]);
      }
      const steps = (id: number): string[] => tested.find((t) => t.deviceId === id)!.report.steps.map((s) => s.step);
      expect(steps(4)).toContain('read 64 random bytes');
      expect(steps(2)).toContain('read sector 0');
      // The host echoes port 0, so the echo is proven, not skipped.
      expect(tested.find((t) => t.deviceId === 3)!.report.steps.find((s) => s.step === 'echo on port 0')).toMatchObject(
        { ok: true },
      );
      expect(
        tested.find((t) => t.deviceId === 3)!.report.steps.find((s) => s.step === 'echo on port 0')!.skipped,
      ).toBeUndefined();
    });

    test("the CLI: dump shows each device's queue 0 as its driver and as ring memory see it, and the two agree", () => {
      type Chain = { id: number; descriptors: { addr: string; len: number; flags: number }[] };
      const dumps = results('cli-dump') as {
        deviceId: number;
        status: number;
        stderr: string;
        dump: {
          driven: string;
          queue: { format: string; outstanding: (Chain & { used?: unknown })[] };
          live: { live: boolean; memory: { outstanding?: Chain[]; error?: unknown } };
        };
      }[];
      expect(dumps.map((d) => d.deviceId).sort()).toEqual([2, 3, 4]);
      for (const d of dumps) {
        expect({
          deviceId: d.deviceId,
          status: d.status,
          stderr: d.stderr,
          driven: d.dump.driven,
          format: d.dump.queue.format,
          live: d.dump.live.live,
          error: d.dump.live.memory.error,
        }).toEqual({
          deviceId: d.deviceId,
          status: 0,
          stderr: '',
          driven: 'this process',
          format: packed ? 'packed' : 'split',
          live: true,
          error: undefined,
        });
        // QEMU may have used a request already (it runs beside us): compare the chains the device has not returned.
        const pending = d.dump.queue.outstanding
          .filter((o) => !o.used)
          .map(({ id, descriptors }) => ({
            id,
            descriptors: descriptors.map(({ addr, len, flags }) => ({ addr, len, flags })),
          }));
        const fromMemory = d.dump.live.memory.outstanding!.map(({ id, descriptors }) => ({
          id,
          descriptors: descriptors.map(({ addr, len, flags }) => ({ addr, len, flags })),
        }));
        if (!packed) expect(fromMemory).toEqual(expect.arrayContaining(pending));
      }
      // The console's receive buffers are posted on open: queue 0 has chains in flight.
      expect(dumps.find((d) => d.deviceId === 3)!.dump.queue.outstanding.length).toBeGreaterThan(0);
    });

    test("the CLI: dump --live from another process reads a queue's registers, and the rings or says why not", () => {
      const [own] = results('cli-dump-own') as { outstanding: number; size: number; addresses: { desc: string } }[];
      const [child] = results('cli') as { argv: string[]; status: number; stderr: string; stdout: string }[];
      expect(own.outstanding).toBeGreaterThan(0);
      const dump = JSON.parse(child.stdout) as {
        driven: string;
        live: {
          live: boolean;
          size: number;
          addresses?: { desc: string };
          memory: { outstanding?: unknown[]; error?: { code?: string } };
        };
      };
      expect(dump.driven).toBe('elsewhere');
      expect(dump.live).toMatchObject({ live: true, size: own.size });
      expect(dump.live.addresses?.desc).toBe(own.addresses.desc);
      if (dump.live.memory.error) {
        // A Debian kernel (CONFIG_STRICT_DEVMEM) refuses /dev/mem reads of RAM: the CLI says so and how to get around
        // it.
        expect(child.status).toBe(1);
        expect(dump.live.memory.error.code).toMatch(/^(EPERM|EACCES|EINVAL)$/);
        expect(child.stderr).toContain('STRICT_DEVMEM');
        // The code is said once (system call messages already start with it).
        expect(child.stderr).not.toMatch(/(E[A-Z]+): \1:/);
      } else {
        expect(child.status).toBe(0);
        expect(dump.live.memory.outstanding).toHaveLength(own.outstanding);
      }
    });

    test.each([
      ...rngCases.flatMap((name) => [
        ['rng', 'default', name],
        ['rng', 'no-event-idx', name],
      ]),
      ...blkCases.map((name) => ['blk', 'default', name]),
      ...consoleCases.flatMap((name) => [
        ['console-echo', 'default', name],
        ['console-echo', 'no-multiport', name],
        ['console-echo', 'named-port', name],
      ]),
      ...multiportCases.map((name) => ['console-multiport', 'default', name]),
    ])('%s contract (%s features): %s', (suite, variant, name) => {
      const result = results('case').find((r) => r.suite === suite && r.variant === variant && r.name === name);
      expect(result).toBeDefined();
      if (!result!.ok) throw new Error(`failed in the guest: ${result!.error}`);
    });

    test('the console bytes really went through the host sockets: port 0 and the named port each', () => {
      // Port 0: the echo contract with and without MULTIPORT, and 20 kB of the multiport contract.
      expect(echo.echoed()).toBeGreaterThanOrEqual(2 * (30_000 + 64_000) + 20_000);
      // The named port: the echo contract and 70 kB of the multiport contract.
      expect(portEcho.echoed()).toBeGreaterThanOrEqual(30_000 + 64_000 + 70_000);
    });

    test(`our drivers negotiated the ${ring} ring with QEMU's devices${packed ? ', blk on both queues' : ''}`, () => {
      const negotiated = results('negotiated');
      expect(negotiated.map((r) => r.suite).sort()).toEqual(['blk', 'rng']);
      for (const r of negotiated) expect(r).toMatchObject({ packed });
      const blk = negotiated.find((r) => r.suite === 'blk') as { queues: number; perQueue: number[] };
      expect(blk.queues).toBe(packed ? 2 : 1);
      expect(blk.perQueue).toHaveLength(blk.queues);
      for (const completed of blk.perQueue) expect(completed).toBeGreaterThan(0);
    });

    test(`EVENT_IDX across the 16-bit wrap: ${EVENT_IDX_WRAP_REQUESTS} rng reads, ${ring} ring, none lost`, () => {
      const [wrap] = results('event-idx-wrap') as {
        error?: string;
        skipped?: string;
        reads: number;
        distinct: number;
        depth: number;
        stats: QueueStats;
        interrupts: number;
        uioEvents: number;
        qd1: Record<string, number>;
        availIdx?: number;
        usedIdx?: number;
      }[];
      expect(wrap).toBeDefined();
      expect(wrap.error).toBeUndefined();
      // Legacy boots skip it (CI time): their split ring is the Version 2 boot's code.
      if (version === 1) {
        expect(wrap).toMatchObject({ skipped: 'legacy' });
        return;
      }
      expect(wrap).toMatchObject({ eventIdx: true, packed, reads: EVENT_IDX_WRAP_REQUESTS, shortReads: 0 });
      const { stats, interrupts } = wrap;
      // Past 65,536 requests: the 16-bit indexes wrapped (split: the ring's own indexes say where they ended).
      expect(stats.completed).toBeGreaterThanOrEqual(EVENT_IDX_WRAP_REQUESTS);
      expect(stats.submitted).toBe(stats.completed);
      if (!packed)
        expect([wrap.availIdx, wrap.usedIdx]).toEqual([stats.completed - 0x10000, stats.completed - 0x10000]);
      // 8 random bytes per read: stale or repeated buffers would show as repeats.
      expect(wrap.distinct).toBeGreaterThan(EVENT_IDX_WRAP_REQUESTS - 10);
      // Every publish notified or was suppressed; at depth fewer notifications and interrupts than requests.
      expect(stats.notifications + stats.notificationsSuppressed).toBe(stats.publishes);
      expect(stats.notifications).toBeGreaterThan(0);
      expect(stats.notifications).toBeLessThan(stats.completed);
      expect(interrupts).toBeGreaterThan(0);
      expect(interrupts).toBeLessThan(stats.completed);
      expect(wrap.uioEvents).toBeGreaterThanOrEqual(interrupts);
      // Across the wrap one at a time (256 reads, the other lanes parked): QEMU asks for every notification and we for
      // every interrupt, so one suppressed or missing here is one lost at the wrap.
      expect(wrap.qd1).toEqual({
        completed: 256,
        publishes: 256,
        notifications: 256,
        notificationsSuppressed: 0,
        interrupts: 256,
      });
    });

    test('used-buffer interrupts arrive through the UIO fd and are counted by the kernel too', () => {
      const [counts] = results('interrupts');
      expect(counts).toBeDefined();
      const { handled, uioEvents } = counts as { handled: number; uioEvents: number };
      expect(handled).toBeGreaterThanOrEqual(1);
      expect(handled).toBeLessThanOrEqual(8);
      expect(uioEvents).toBeGreaterThanOrEqual(handled);
    });
  });
}

describeIf(lab.ok, lab.reason, 'the QEMU lab', () => {
  contractBoots('arm64', [
    ['Version 1 (QEMU default, legacy)', true, 1, false],
    ['Version 2 (force-legacy=false)', false, 2, false],
    ['Version 2, packed=on devices, blk num-queues=2', false, 2, true],
  ]);

  test('the CLI explains what is missing: no access to /dev/uioN (not root), no free hugepages', async () => {
    const run = await runLab({
      devices: ['virtio-rng-device'],
      command: [
        'node scripts/lab/guest/cli-report.js rng /dev/uio31 --bytes 16',
        'CLI_AS_UID=65534 node scripts/lab/guest/cli-report.js rng /dev/uio31',
        'echo 0 > /proc/sys/vm/nr_hugepages',
        'node scripts/lab/guest/cli-report.js rng /dev/uio31',
      ].join('\n'),
      timeoutMs: 120_000,
    });
    if (run.exitCode !== 0) throw new Error(`guest exit ${run.exitCode}; console:\n${run.console.slice(-3000)}`);
    const [ok, notRoot, noHugepages] = run.results.filter((r) => r.kind === 'cli') as {
      status: number;
      stdout: string;
      stderr: string;
    }[];
    expect({ status: ok.status, stderr: ok.stderr }).toEqual({ status: 0, stderr: '' });
    expect(ok.stdout).toMatch(/16 random bytes/);
    expect(notRoot.status).toBe(1);
    expect(notRoot.stderr).toMatch(/EACCES/);
    expect(notRoot.stderr).toContain('udev rule');
    expect(notRoot.stderr).toContain('SUBSYSTEM=="uio"');
    expect(noHugepages.status).toBe(1);
    expect(noHugepages.stderr).toContain('echo 64 > /proc/sys/vm/nr_hugepages');
  }, 180_000);

  describe("register windows: the device tree's reg, not the page-rounded UIO map", () => {
    // One rng (on a003e00). uio_pdrv_genirq maps every transport as a whole
    // page (size 0x1000, offset 0x000…0xe00); a000000 and a003000 sit at
    // in-page offset 0, and a003000's page also holds the rng's registers.
    type Access = {
      path: string;
      parent: string;
      window: { size: number; from: string };
      accesses: Record<string, string>;
    };
    let run: LabRun;
    beforeAll(async () => {
      run = await runLab({
        devices: ['virtio-rng-device'],
        command: 'node scripts/lab/guest/window-bounds.js',
        timeoutMs: 150_000,
      });
    }, 180_000);
    const results = (kind: string): Record<string, unknown>[] => run.results.filter((r) => r.kind === kind);

    test('the guest ran the checks to the end', () => {
      expect(run.timedOut).toBe(false);
      if (run.exitCode !== 0) throw new Error(`guest exit ${run.exitCode}; console:\n${run.console.slice(-4000)}`);
    });

    test("each transport's window is its reg's 0x200 bytes from the device tree, though maps are 0x1000 pages", () => {
      const windows = results('window');
      expect(windows).toHaveLength(32);
      for (const w of windows)
        expect(w).toMatchObject({ mapSize: '0x1000', window: '0x200', windowFrom: 'device-tree' });
      expect(windows.find((w) => w.parent === 'a000000.virtio_mmio')).toMatchObject({
        start: '0xa000000',
        offset: '0x0',
      });
      expect(windows.find((w) => w.parent === 'a003e00.virtio_mmio')).toMatchObject({
        start: '0xa003e00',
        offset: '0xe00',
      });
      // As QEMU's hw/arm/virt.c writes it: reg = <0 base 0 0x200> under a root of 2 address and 2 size cells.
      expect(results('window-dt')).toEqual([
        expect.objectContaining({
          reg: '00000000 0a000000 00000000 00000200',
          addressCells: '00000002',
          sizeCells: '00000002',
        }),
      ]);
    });

    test.each(['a000000.virtio_mmio', 'a003000.virtio_mmio'])(
      '%s (in-page offset 0): a window of 0x200; an access at 0x200 or beyond is a RangeError',
      (parent) => {
        const found = (results('window-access') as Access[]).find((r) => r.parent === parent);
        expect(found).toBeDefined();
        expect(found!.window).toMatchObject({ size: 0x200, from: 'device-tree' });
        expect(found!.accesses).toEqual({
          size: '0x200',
          'readl 0x0': '0x74726976',
          'readl 0x1fc': expect.stringMatching(/^0x[0-9a-f]+$/),
          'readl 0x200': 'RangeError',
          'readb 0x200': 'RangeError',
          'writel 0x270': 'RangeError',
          'readl 0xe00': 'RangeError',
          'writel 0xe70': 'RangeError',
        });
      },
    );

    test("nothing reached the rng sharing a003000's page; a windowSize of the whole page shows it is there", () => {
      const [rng] = results('window-rng');
      expect(rng).toEqual({
        kind: 'window-rng',
        statusBefore: 0,
        statusAfter: 0,
        page: { size: '0x1000', magicAtE00: '0x74726976', deviceIdAtE08: 4 },
        from: 'caller',
      });
    });

    test('the CLI: scan --json gives each window and its source; inspect says where the size came from', () => {
      const [cli] = results('window-cli') as {
        scanStatus: number;
        scan: { window?: string; windowFrom?: string }[];
        inspectStatus: number;
        inspectHead: string;
      }[];
      expect(cli.scanStatus).toBe(0);
      expect(cli.scan).toHaveLength(32);
      for (const entry of cli.scan) expect(entry).toMatchObject({ window: '0x200', windowFrom: 'device-tree' });
      expect(cli.inspectStatus).toBe(0);
      expect(cli.inspectHead).toMatch(
        /^\/dev\/uio\d+@0x0: window of 0x200 bytes \(device-tree reg\), MagicValue 0x74726976 \("virt"\), Version 2$/,
      );
    });
  });

  test('data written by VirtioBlk is in the host image file and survives a reboot', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lab-persist-'));
    const image = join(dir, 'disk.img');
    const bytes = 1 << 20;
    writeFileSync(image, Buffer.alloc(4 * bytes));
    try {
      const boot = (mode: string): Promise<LabRun> =>
        runLab({
          devices: ['virtio-blk-device,drive=blk0'],
          extraArgs: ['-drive', `file=${image},if=none,format=raw,id=blk0`],
          command: `node scripts/lab/guest/blk-pattern.js ${mode} ${bytes}`,
          timeoutMs: 120_000,
        });
      const hashOf = (run: LabRun): string => {
        if (run.exitCode !== 0) throw new Error(`guest exit ${run.exitCode}; console:\n${run.console.slice(-3000)}`);
        return (run.results.find((r) => r.kind === 'blk-pattern') as { sha256: string }).sha256;
      };
      const written = hashOf(await boot('write'));
      // The host's own view of the same bytes, and the pattern computed here.
      const onDisk = createHash('sha256').update(readFileSync(image).subarray(0, bytes)).digest('hex');
      expect(onDisk).toBe(written);
      expect(createHash('sha256').update(pattern(bytes)).digest('hex')).toBe(written);
      expect(hashOf(await boot('read'))).toBe(written);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 300_000);

  describe('the runner', () => {
    // Processes whose command line starts with QEMU's name (pgrep prints 0 and exits 1 when none).
    const qemuCount = (): number =>
      Number(spawnSync('pgrep', ['-c', '-f', '^qemu-system-aarch64 '], { encoding: 'utf8' }).stdout.trim() || 0);

    test("returns the guest command's exit status", async () => {
      const run = await runLab({ command: 'echo hello from the guest; exit 7', timeoutMs: 120_000 });
      expect(run.timedOut).toBe(false);
      expect(run.exitCode).toBe(7);
      expect(run.console).toContain('hello from the guest');
    }, 150_000);

    test('kills QEMU at the timeout and leaves no process behind', async () => {
      const before = qemuCount();
      const run = await runLab({ command: 'sleep 600', timeoutMs: 15_000 });
      expect(run.timedOut).toBe(true);
      expect(run.exitCode).toBeNull();
      expect(qemuCount()).toBe(before);
    }, 60_000);

    test('Ctrl-C on the command line stops QEMU too', async () => {
      const before = qemuCount();
      const cli = spawn(
        process.execPath,
        [resolve(__dirname, '../../scripts/lab/run.js'), '--timeout', '120', '--', 'sleep 600'],
        { stdio: ['ignore', 'pipe', 'pipe'] },
      );
      let output = '';
      await new Promise<void>((ready, fail) => {
        cli.stdout.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          if (output.includes('@@LAB-READY')) ready();
        });
        cli.on('exit', () => fail(new Error(`the runner exited before the guest was ready:\n${output}`)));
      });
      const exited = new Promise<number | null>((done) => cli.on('exit', (code) => done(code)));
      cli.kill('SIGINT');
      expect(await exited).toBe(130);
      expect(qemuCount()).toBe(before);
    }, 120_000);
  });

  describe('unbind during I/O', () => {
    // One boot (Version 2): scripts/lab/guest/unbind-fault.ts unbinds the rng
    // and blk transports from uio_pdrv_genirq while requests are in flight,
    // rebinds them and opens them again, once per round (ROUNDS). Requests in
    // flight at the unbind must reject with exactly these codes (the UIO fd's
    // poll/read answer EIO, which the interrupt source turns into
    // DeviceGoneError); a request made after the failure may also be refused
    // as canceled (a detached queue).
    const IN_FLIGHT_CODES = ['ERR_VIRTIO_DEVICE_GONE'];
    const AFTER_CODES = ['ERR_VIRTIO_DEVICE_GONE', 'ERR_VIRTIO_CANCELED'];
    const IMAGE_BYTES = 16 * 1024 * 1024;
    let run: LabRun;
    let dir: string;
    let image: string;
    beforeAll(async () => {
      dir = mkdtempSync(join(tmpdir(), 'lab-unbind-'));
      image = join(dir, 'disk.img');
      // The first MiB holds the pattern the guest's reads are checked against.
      const contents = Buffer.alloc(IMAGE_BYTES);
      pattern(PATTERN_BYTES).copy(contents);
      writeFileSync(image, contents);
      run = await runLab({
        // rng on /dev/uio31 (a003e00), blk on /dev/uio30 (a003c00).
        devices: ['virtio-rng-device', 'virtio-blk-device,drive=blk0'],
        extraArgs: ['-drive', `file=${image},if=none,format=raw,id=blk0`],
        command: 'node scripts/lab/guest/unbind-fault.js',
        timeoutMs: 240_000,
      });
    }, 300_000);
    afterAll(() => {
      if (dir) rmSync(dir, { recursive: true, force: true });
    });

    const rounds = (Object.keys(ROUNDS) as (keyof typeof ROUNDS)[]).flatMap((device) =>
      ROUNDS[device].map((trigger, round) => [device, round, trigger] as const),
    );
    type Described = { name: string; code?: string; virtio: boolean; message: string };
    interface RoundLine {
      trigger: string;
      submitted: number;
      settledBeforeUnbind: number;
      resolved: number;
      rejected: number;
      errors: Described[];
      failures: Described[];
      after: { state: string; code?: string };
      closed: { ok: boolean; error?: unknown; unsettledAfterClose: number };
    }
    const line = <T = Record<string, unknown>>(kind: string, device: string, round: number): T => {
      const found = run.results.find((r) => r.kind === kind && r.device === device && r.round === round);
      if (!found)
        throw new Error(
          `no ${kind} line for ${device} round ${round}; guest exit ${run.exitCode}; console:\n` +
            `${run.console.slice(-4000)}`,
        );
      return found as T;
    };

    test('the guest ran every round to the end; nothing escaped as uncaught exception or unhandled rejection', () => {
      expect(run.timedOut).toBe(false);
      expect(run.results.filter((r) => r.kind === 'unbind-crash')).toEqual([]);
      if (run.exitCode !== 0) throw new Error(`guest exit ${run.exitCode}; console:\n${run.console.slice(-4000)}`);
      expect(run.results.filter((r) => r.kind === 'unbind-round')).toHaveLength(rounds.length);
    });

    test.each(rounds)(
      '%s round %d (unbind %s): every request settled, in-flight ones rejected with a typed error',
      (device, round, trigger) => {
        const r = line<RoundLine>('unbind-round', device, round);
        expect(r).toMatchObject({ trigger, unbound: true, unsettled: 0, badData: 0 });
        expect(r.resolved + r.rejected).toBe(r.submitted);
        for (const error of r.errors) {
          expect(error.virtio).toBe(true);
          expect(IN_FLIGHT_CODES).toContain(error.code);
        }
        if (trigger === 'published') {
          // Published and notified, none reaped: the driver cannot have completed any.
          expect(r.settledBeforeUnbind).toBe(0);
          expect(r.rejected).toBe(r.submitted);
        } else if (trigger === 'after-some') {
          expect(r.resolved).toBeGreaterThanOrEqual(1);
          expect(r.rejected).toBeGreaterThanOrEqual(r.submitted / 2);
        }
        // The transport reported the loss once, and later work is refused, not hung.
        expect(r.failures).toHaveLength(1);
        expect(r.failures[0]).toMatchObject({ name: 'DeviceGoneError', code: 'ERR_VIRTIO_DEVICE_GONE', virtio: true });
        expect(r.after.state).toBe('rejected');
        expect(AFTER_CODES).toContain(r.after.code);
        expect(r.closed).toEqual({ ok: true, unsettledAfterClose: 0 });
      },
    );

    test.each(rounds)(
      '%s round %d (%s): rebound to UIO and opened again through discovery; the data checks pass',
      (device, round) => {
        const rebind = line<{ after: string }>('unbind-rebind', device, round);
        expect(rebind.after).toMatch(/^\/dev\/uio\d+$/);
        const reopen = line<{ ok: boolean; error?: unknown; bytes?: number; distinct?: number }>(
          'unbind-reopen',
          device,
          round,
        );
        if (!reopen.ok) throw new Error(`re-open failed in the guest: ${JSON.stringify(reopen.error)}`);
        if (device === 'blk') {
          expect(reopen).toMatchObject({ sector0Ok: true, markersOk: true, markers: round + 1, writeReadOk: true });
        } else {
          expect(reopen.bytes).toBe(256);
          expect(reopen.distinct).toBeGreaterThan(64);
        }
      },
    );

    test('what each blk round wrote and flushed before its unbind is in the host image file', () => {
      const contents = readFileSync(image);
      ROUNDS.blk.forEach((_trigger, round) => {
        const at = (MARKER_SECTOR + round * 8) * 512;
        expect(contents.subarray(at, at + marker(round).length).equals(marker(round))).toBe(true);
      });
      expect(contents.subarray(0, PATTERN_BYTES).equals(pattern(PATTERN_BYTES))).toBe(true);
    });
  });
});

// 32-bit ARM (armv7 hard-float, Debian's armmp-lpae kernel): the contract boots only (TCG is slow for a 32-bit guest).
describeIf(armhfLab.ok, armhfLab.reason, 'the QEMU armhf lab (32-bit, LPAE)', () => {
  contractBoots('armhf', [
    ['Version 1 (QEMU default, legacy)', true, 1, false],
    ['Version 2 (force-legacy=false)', false, 2, false],
  ]);

  test('4 GiB of RAM (run.js above4GiB): hugepages above 4 GiB; an rng request round-trips there', async () => {
    const run = await runLab(
      {
        above4GiB: true,
        devices: ['virtio-rng-device'],
        command: 'node scripts/lab/guest/suite.js',
        timeoutMs: 180_000,
      },
      'armhf',
    );
    if (run.exitCode !== 0) throw new Error(`guest exit ${run.exitCode}; console:\n${run.console.slice(-4000)}`);
    expect(run.results.filter((r) => r.kind === 'case' && !r.ok)).toEqual([]);
    expect(run.results.filter((r) => r.kind === 'case' && r.suite === 'rng')).toHaveLength(2 * rngCases.length);
    const addresses = dmaInRam(run.results.filter((r) => r.kind === 'dma'));
    for (const address of addresses)
      expect(address >= 1n << 32n ? 'above 4 GiB' : `0x${address.toString(16)}`).toBe('above 4 GiB');
  }, 240_000);
});
