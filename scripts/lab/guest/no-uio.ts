/**
 * Runs in the lab guest booted without UIO for its devices: finds the
 * transports from the `virtio_mmio.device=` entries of /proc/cmdline,
 * drives them through /dev/mem windows with DMA memory from a carve-out
 * the kernel does not own, completions polled; runs the contract suites,
 * reports the queue address words the driver wrote (above 4 GiB), and what
 * /dev/mem allows under the kernel's STRICT_DEVMEM / IO_STRICT_DEVMEM.
 *
 *   node scripts/lab/guest/no-uio.js <carve-out base> <carve-out size> [<name>=<size>@<base>]...
 *
 * The named windows after the carve-out are /dev/mem probes (e.g.
 * "kernel-ram=0x1000@0x40000000"): each is mapped and the outcome reported.
 */
import { readdirSync } from 'node:fs';
import { VirtioBlk, VirtioRng } from '../../../lib/devices';
import { DmaPool, MmioWindow, barrierKind, type AccessWidth, type RegisterBlock } from '../../../lib/platform';
import { addonPath } from '../../../lib/platform/addon';
import { DeviceId, FeatureBit, MmioRegister, feature } from '../../../lib/spec';
import { describeSpec, discoverCmdline, parseDeviceSpec, probeAll } from '../../../lib/transport';
import type { ContractCase } from '../../../test/support/contracts/contract';
import { blkContract } from '../../../test/support/contracts/blk-contract';
import { consoleEchoContract } from '../../../test/support/contracts/console-contract';
import { rngContract } from '../../../test/support/contracts/rng-contract';
import { blkSubjects, carveOutSlice, consoleSubjects, openOnPhysical, rngSubjects, type CarveOut } from './devices';
import { report, runMain } from './report';
import { cli, systemRam } from './guest-tools';

async function main(): Promise<void> {
  const [baseText, sizeText, ...probes] = process.argv.slice(2);
  if (!baseText || !sizeText)
    throw new TypeError('usage: no-uio.js <carve-out base> <carve-out size> [<name>=<size>@<base>]...');
  const specs = discoverCmdline();
  const carveOut: CarveOut = { base: BigInt(baseText), size: Number(sizeText), slices: Math.max(specs.length, 1) };
  // The addon as the package loads it, and which architecture's barriers it compiled in.
  report({ kind: 'addon', path: addonPath, arch: process.arch, node: process.version, barrierKind });
  report({ kind: 'cmdline', specs: specs.map(describeSpec), uio: readdir('/sys/class/uio').length, ram: systemRam() });
  const reports = probeAll(specs);
  for (const r of reports)
    report({
      kind: 'transport',
      where: describeSpec(r.spec),
      version: r.result?.version,
      deviceId: r.result?.deviceId,
      error: r.error?.message,
    });

  // What /dev/mem allows: the devices' own windows were opened by probeAll above; these are the others asked for.
  for (const probe of probes) report({ kind: 'devmem', ...devmemProbe(probe) });
  report({ kind: 'devmem', name: 'carve-out', ...outcome(() => DmaPool.physical(carveOut.base, 4096).close()) });

  const runs: { suite: string; variant: string; device: string; cases: ContractCase[] }[] = [
    ...rngSubjects(reports, 0n, carveOut).map((s) => ({
      suite: 'rng',
      variant: 'default',
      device: s.label,
      cases: rngContract(s),
    })),
    ...rngSubjects(reports, feature(FeatureBit.EVENT_IDX), carveOut).map((s) => ({
      suite: 'rng',
      variant: 'no-event-idx',
      device: s.label,
      cases: rngContract(s),
    })),
    ...blkSubjects(reports, carveOut).map((s) => ({
      suite: 'blk',
      variant: 'default',
      device: s.label,
      cases: blkContract(s),
    })),
    ...consoleSubjects(reports, {}, undefined, carveOut).map((s) => ({
      suite: 'console-echo',
      variant: 'default',
      device: s.label,
      cases: consoleEchoContract(s),
    })),
  ];
  for (const { suite, variant, device, cases } of runs) {
    for (const c of cases) {
      const base = { kind: 'case', suite, variant, device, name: c.name };
      const started = Date.now();
      try {
        await c.run();
        report({ ...base, ok: true, ms: Date.now() - started });
      } catch (error) {
        report({ ...base, ok: false, ms: Date.now() - started, error: String((error as Error)?.stack ?? error) });
      }
    }
  }

  // Where queue 0's rings are: as the driver placed them, and the words it wrote to the device for them
  // (QEMU reads the address registers back as 0: they are write-only, virtio 1.2 §4.2.2).
  for (const [index, r] of reports.entries()) {
    if (
      r.spec.kind !== 'physical' ||
      (r.result?.deviceId !== DeviceId.ENTROPY && r.result?.deviceId !== DeviceId.BLOCK)
    )
      continue;
    let recorder: QueueAddressRecorder | undefined;
    const wrapRegisters = (regs: RegisterBlock): RegisterBlock => (recorder = new QueueAddressRecorder(regs));
    const slice = carveOutSlice(carveOut, index);
    if (r.result.deviceId === DeviceId.ENTROPY) {
      const { driver, transport, close } = openOnPhysical(r.spec, slice, (t, memory) => VirtioRng.open(t, { memory }), {
        wrapRegisters,
      });
      try {
        const bytes = await driver.read(64);
        report({
          kind: 'rings',
          device: describeSpec(r.spec),
          version: transport.version,
          driver: driver.dumpQueue(0).addresses,
          written: recorder?.queue(0),
          bytes: bytes.length,
        });
      } finally {
        close();
      }
    } else {
      const { driver, transport, close } = openOnPhysical(r.spec, slice, (t, memory) => VirtioBlk.open(t, { memory }), {
        wrapRegisters,
      });
      try {
        const bytes = await driver.read(0n, 4096);
        report({
          kind: 'rings',
          device: describeSpec(r.spec),
          version: transport.version,
          driver: driver.dumpQueue(0).addresses,
          written: recorder?.queue(0),
          bytes: bytes.length,
        });
      } finally {
        close();
      }
    }
  }

  // The CLI on the same devices: scan lists the command line's transports; rng takes one as <size>@<base>.
  const scanned = await cli('scan', '--json');
  report({
    kind: 'cli-scan',
    status: scanned.status,
    stderr: scanned.stderr,
    entries: JSON.parse(scanned.stdout || '[]'),
  });
  const rng = reports.find((r) => r.result?.deviceId === DeviceId.ENTROPY);
  if (rng) {
    const read = await cli('rng', describeSpec(rng.spec), '--bytes', '16', '--json');
    report({
      kind: 'cli-rng',
      where: describeSpec(rng.spec),
      status: read.status,
      stderr: read.stderr,
      out: read.stdout.trim(),
    });
  }
}

/** Maps `<name>=<size>@<base>` through /dev/mem (as a register window) and says what happened. */
function devmemProbe(text: string): Record<string, unknown> {
  const at = text.indexOf('=');
  const name = text.slice(0, at);
  const spec = parseDeviceSpec(text.slice(at + 1));
  return { name, where: describeSpec(spec), ...outcome(() => MmioWindow.openPhysical(spec.base, spec.size).close()) };
}

function outcome(run: () => void): Record<string, unknown> {
  try {
    run();
    return { ok: true };
  } catch (error) {
    const e = error as { code?: string; syscall?: string; hint?: string; message?: string };
    return { ok: false, code: e.code, syscall: e.syscall, hint: e.hint, message: e.message };
  }
}

/** The queue address registers of Version 2 (virtio 1.2 §4.2.2) and Version 1's QueuePFN (§4.2.4). */
const ADDRESS_REGISTERS = [
  'QueueDescLow',
  'QueueDescHigh',
  'QueueDriverLow',
  'QueueDriverHigh',
  'QueueDeviceLow',
  'QueueDeviceHigh',
  'QueuePFN',
] as const;
const REGISTER_NAME = new Map<number, string>(ADDRESS_REGISTERS.map((n) => [MmioRegister[n], n]));

/** Passes every access through and notes, per QueueSel, the last word written to each queue address register. */
class QueueAddressRecorder implements RegisterBlock {
  private selected = 0;
  private readonly written = new Map<number, Record<string, string>>();

  constructor(private readonly inner: RegisterBlock) {}

  get size(): number {
    return this.inner.size;
  }
  get closed(): boolean {
    return this.inner.closed;
  }
  get label(): string {
    return this.inner.label;
  }

  /** What the driver wrote for queue `index`, by register name (0x hex). */
  queue(index: number): Record<string, string> | undefined {
    return this.written.get(index);
  }

  writel(offset: number, value: number): void {
    this.inner.writel(offset, value);
    if (offset === MmioRegister.QueueSel) this.selected = value;
    const name = REGISTER_NAME.get(offset);
    if (name)
      this.written.set(this.selected, {
        ...this.written.get(this.selected),
        [name]: `0x${(value >>> 0).toString(16)}`,
      });
  }

  readb(offset: number): number {
    return this.inner.readb(offset);
  }
  readw(offset: number): number {
    return this.inner.readw(offset);
  }
  readl(offset: number): number {
    return this.inner.readl(offset);
  }
  writeb(offset: number, value: number): void {
    this.inner.writeb(offset, value);
  }
  writew(offset: number, value: number): void {
    this.inner.writew(offset, value);
  }
  copyOut(offset: number, target: Uint8Array, width?: AccessWidth): Uint8Array {
    return this.inner.copyOut(offset, target, width);
  }
  copyIn(offset: number, source: Uint8Array, width?: AccessWidth): void {
    this.inner.copyIn(offset, source, width);
  }
  pollUntil(offset: number, mask: number, expected: number, timeoutMs: number, intervalUs?: number): number | null {
    return this.inner.pollUntil(offset, mask, expected, timeoutMs, intervalUs);
  }
  close(): void {
    this.inner.close();
  }
}

function readdir(path: string): string[] {
  try {
    return readdirSync(path);
  } catch {
    return [];
  }
}

runMain(main);
