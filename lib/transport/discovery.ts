import { DiscoveryError, invalidArgType, invalidArgValue } from '../errors';
import {
  MmioWindow,
  PollingInterruptSource,
  UioInterruptSource,
  UioSysfs,
  type InterruptSource,
  type RegisterBlock,
  type UioDeviceInfo,
} from '../platform';
import { MmioTransport, type MmioTransportOptions } from './mmio-transport';
import { probe, type ProbeResult } from './probe';
import { hex } from '../util/hex';

/** A virtio-mmio transport bound to UIO (uio_pdrv_genirq): registers and interrupt through /dev/uioN. */
export interface UioDeviceSpec {
  readonly kind: 'uio';
  readonly device: UioDeviceInfo;
  /** Which UIO map holds the registers. Default 0. */
  readonly map?: number;
  /** Bytes of the register window, instead of the device tree's `reg` size (MmioWindow.openUio's windowSize). */
  readonly windowSize?: number;
}

/**
 * A virtio-mmio transport at a physical address, reached through /dev/mem,
 * as Linux's `virtio_mmio.device=<size>@<baseaddr>[:<irq>[:<id>]]` names it.
 * `irq` and `id` are informational: user space gets no interrupt without
 * UIO, so such a device is polled (see openTransport).
 */
export interface PhysicalDeviceSpec {
  readonly kind: 'physical';
  /** Bytes of the register window. */
  readonly size: number;
  readonly base: bigint;
  readonly irq?: number;
  readonly id?: number;
}

/** Where a device is: found by discoverUio(), parsed by parseDeviceSpec(), or written out by hand. */
export type DeviceSpec = UioDeviceSpec | PhysicalDeviceSpec;

export type OpenTransportOptions = Omit<MmioTransportOptions, 'interrupts' | 'owns'> & {
  /** Physical specs: milliseconds between polls of InterruptStatus. Default 1. Ignored for UIO. */
  pollIntervalMs?: number;
  /**
   * Puts a layer between the register window and the transport (e.g. one that watches the device); it owns the window
   * after.
   */
  wrapRegisters?: (regs: RegisterBlock) => RegisterBlock;
};

export interface ProbeReport {
  readonly spec: DeviceSpec;
  /** What the registers say (an empty slot is a result with `empty: true`). */
  readonly result?: ProbeResult;
  /** Why the window could not be opened or is not a virtio-mmio device. */
  readonly error?: Error;
}

// ---- virtio_mmio.device= syntax ----

const SYNTAX = '<size>@<baseaddr>[:<irq>[:<id>]]';
const PARAMETER_PREFIX = 'virtio_mmio.device=';
/** MagicValue .. the start of config space: the smallest window a transport can have (§4.2.2). */
const MIN_SIZE = 0x100;
const MAX_SIZE = 1 << 30;
const ADDRESS_SPACE_END = 1n << 64n;
const MAX_IRQ = 0xffff_ffff;
const MAX_ID = 0x7fff_ffff;
const SUFFIX_SHIFT: Record<string, bigint> = { k: 10n, m: 20n, g: 30n };

/**
 * Parses the Linux `virtio_mmio.device=` syntax, `<size>@<baseaddr>[:<irq>[:<id>]]`
 * (Documentation/admin-guide/kernel-parameters.txt), e.g. "0x200@0xa003e00:48"
 * or "4K@0x10000000". Numbers are decimal or 0x-hex; the size may end in
 * K, M or G (binary multiples, any case). A leading "virtio_mmio.device="
 * and surrounding whitespace are ignored. Throws DiscoveryError quoting the
 * bad part; the size must lie in [0x100, 1 GiB], the base be 4-byte aligned,
 * and the window end within 64 bits.
 */
export function parseDeviceSpec(text: string): PhysicalDeviceSpec {
  if (typeof text !== 'string') throw invalidArgType(`device spec must be a string, got ${typeof text}`);
  const trimmed = text.trim();
  const body = trimmed.startsWith(PARAMETER_PREFIX) ? trimmed.slice(PARAMETER_PREFIX.length) : trimmed;
  const fail = (detail: string): never => {
    throw new DiscoveryError(`virtio_mmio device spec "${text}": ${detail}`);
  };
  if (body === '') fail(`empty; expected ${SYNTAX}`);
  const at = body.split('@');
  if (at.length === 1) fail(`no "@" between size and base address; expected ${SYNTAX}`);
  if (at.length > 2) fail(`more than one "@"; expected ${SYNTAX}`);
  const [sizeText, rest] = at;
  const fields = rest.split(':');
  if (fields.length > 3) fail(`too many ":" fields in "${rest}"; expected ${SYNTAX}`);
  const [baseText, irqText, idText] = fields;

  const size = parseNumber('size', sizeText, true, fail);
  const base = parseNumber('base address', baseText, false, fail);
  if (size === 0n) fail(`size "${sizeText}" is 0`);
  if (size < BigInt(MIN_SIZE))
    fail(`size "${sizeText}" (${size} bytes) is smaller than the ${hex(MIN_SIZE)}-byte virtio-mmio register block`);
  if (size > BigInt(MAX_SIZE)) fail(`size "${sizeText}" (${hex(size)} bytes) is larger than 1 GiB`);
  if (base >= ADDRESS_SPACE_END) fail(`base address "${baseText}" does not fit in 64 bits`);
  if (base % 4n !== 0n) fail(`base address "${baseText}" is not 4-byte aligned (the registers are 32-bit)`);
  if (base + size > ADDRESS_SPACE_END)
    fail(`base address "${baseText}" + size "${sizeText}" runs past the end of the 64-bit address space`);

  const spec: { kind: 'physical'; size: number; base: bigint; irq?: number; id?: number } = {
    kind: 'physical',
    size: Number(size),
    base,
  };
  if (irqText !== undefined) {
    const irq = parseNumber('irq', irqText, false, fail);
    if (irq > BigInt(MAX_IRQ)) fail(`irq "${irqText}" does not fit in 32 bits`);
    spec.irq = Number(irq);
  }
  if (idText !== undefined) {
    const id = parseNumber('id', idText, false, fail);
    if (id > BigInt(MAX_ID)) fail(`id "${idText}" is larger than ${MAX_ID}`);
    spec.id = Number(id);
  }
  return spec;
}

function parseNumber(what: string, text: string, suffixed: boolean, fail: (detail: string) => never): bigint {
  if (text === '') return fail(`${what} is missing`);
  const match = /^(0x[0-9a-f]+|[0-9]+)([kmg])?$/i.exec(text);
  if (!match) {
    const form = suffixed
      ? 'a decimal or 0x-hex number, optionally followed by K, M or G'
      : 'a decimal or 0x-hex number';
    return fail(`${what} "${text}" is not ${form}`);
  }
  const [, digits, suffix] = match;
  if (suffix !== undefined && !suffixed) return fail(`${what} "${text}" takes no K/M/G suffix (only the size does)`);
  if (/^0[0-9]/.test(digits))
    return fail(`${what} "${text}" has a leading zero (octal to Linux); write it in decimal or as 0x-hex`);
  const value = BigInt(digits);
  return suffix === undefined ? value : value << SUFFIX_SHIFT[suffix.toLowerCase()];
}

// ---- Finding, probing and opening ----

/** Every UIO device that is a virtio-mmio transport (by name or device-tree compatible), registers in map 0. */
export function discoverUio(sysfs: UioSysfs = new UioSysfs()): UioDeviceSpec[] {
  return sysfs.listVirtioMmio().map((device) => ({ kind: 'uio', device, map: 0 }));
}

/** A short label: "/dev/uio3 (a003e00.virtio_mmio)", or "0x200@0xa003e00:48" (parseDeviceSpec reads it back). */
export function describeSpec(spec: DeviceSpec): string {
  checkSpec(spec);
  if (spec.kind === 'uio') {
    const what = spec.device.parent ?? spec.device.name;
    const map = spec.map !== undefined && spec.map !== 0 ? ` map ${spec.map}` : '';
    return `${spec.device.devicePath}${what ? ` (${what})` : ''}${map}`;
  }
  let label = `${hex(spec.size)}@${hex(spec.base)}`;
  if (spec.irq !== undefined) {
    label += `:${spec.irq}`;
    if (spec.id !== undefined) label += `:${spec.id}`;
  }
  return label;
}

function checkSpec(spec: DeviceSpec): void {
  const kind = (spec as { kind?: unknown } | null | undefined)?.kind;
  if (kind !== 'uio' && kind !== 'physical') {
    throw invalidArgValue(
      `a device spec needs kind 'uio' or 'physical', got ${typeof kind === 'string' ? `'${kind}'` : String(kind)}`,
    );
  }
}

function openWindow(spec: DeviceSpec): RegisterBlock {
  return spec.kind === 'uio'
    ? MmioWindow.openUio(spec.device, spec.map ?? 0, { windowSize: spec.windowSize })
    : MmioWindow.openPhysical(spec.base, spec.size);
}

/**
 * Opens the device's transport, which owns what it opened (close() closes
 * the window and interrupt source too). UIO: the UIO map and /dev/uioN's
 * interrupt. Physical: a /dev/mem window and, since user space has no IRQ
 * without UIO, a PollingInterruptSource that wakes the interrupt handler
 * every `pollIntervalMs` (the spec's `irq` is not used). Probe failures
 * (TransportError BAD_MAGIC, BAD_VERSION, EMPTY_SLOT) and open failures
 * (SyscallError) are thrown after closing whatever was opened.
 */
export function openTransport(spec: DeviceSpec, options: OpenTransportOptions = {}): MmioTransport {
  checkSpec(spec);
  const { pollIntervalMs, wrapRegisters, ...transportOptions } = options;
  let interrupts: InterruptSource | undefined;
  let regs: RegisterBlock | undefined;
  try {
    if (spec.kind === 'physical') {
      // Made first: it validates pollIntervalMs and holds nothing until listened to.
      interrupts = new PollingInterruptSource({ intervalMs: pollIntervalMs, label: `${describeSpec(spec)} (polled)` });
      regs = openWindow(spec);
    } else {
      regs = openWindow(spec);
      interrupts = UioInterruptSource.open(spec.device);
    }
    if (wrapRegisters) regs = wrapRegisters(regs);
    return new MmioTransport(regs, { ...transportOptions, interrupts, owns: true });
  } catch (error) {
    interrupts?.close();
    regs?.close();
    throw error;
  }
}

/**
 * Probes each device (MagicValue, Version, DeviceID, VendorID) through its
 * register window alone, closing it afterwards; opens no interrupt fd and
 * writes no register. Failures are reported per device, never thrown.
 */
export function probeAll(specs: readonly DeviceSpec[]): ProbeReport[] {
  return specs.map((spec): ProbeReport => {
    let regs: RegisterBlock | undefined;
    try {
      checkSpec(spec);
      regs = openWindow(spec);
      return { spec, result: probe(regs) };
    } catch (error) {
      return { spec, error: error instanceof Error ? error : new Error(String(error)) };
    } finally {
      regs?.close();
    }
  });
}
