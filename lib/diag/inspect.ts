import type { RegisterBlock } from '../platform';
import {
  BlkFeature,
  ConsoleFeature,
  DeviceId,
  DeviceStatus,
  describeStatus,
  deviceIdName,
  EMPTY_DEVICE_ID,
  FeatureBit,
  LegacyBlkFeature,
  LegacyFeatureBit,
  LegacyNetFeature,
  featureBits,
  MMIO_MAGIC_VALUE,
  MmioRegister,
  NetFeature,
  SHM_LEN_ABSENT,
  mmioRegisterTable,
  type MmioRegisterName,
  type RegisterDirection,
} from '../spec';
import { hasConfigSpace, inspectConfig, type ConfigReport } from './inspect-config';
import { outOfRange } from '../errors';
import { hexUnsigned as hex } from '../util/hex';

export type { ConfigReport } from './inspect-config';

/** "QEMU" for 0x554d4551: the four bytes of the VendorID (§4.2.2), low byte first, when all are printable. */
export function vendorText(id: number): string | undefined {
  const bytes = [id & 0xff, (id >>> 8) & 0xff, (id >>> 16) & 0xff, id >>> 24];
  return bytes.every((b) => b >= 0x20 && b < 0x7f) ? String.fromCharCode(...bytes) : undefined;
}

export interface InspectOptions {
  /**
   * Reset the device first (Status ← 0, then wait until it reads 0). Without it inspect writes selector registers only.
   */
  reset?: boolean;
  /**
   * Queue indices probed: 0 … maxQueues-1 (default DEFAULT_MAX_QUEUES),
   * stopping early after two absent queues in a row (QueueNumMax 0, and on
   * Version 1 QueuePFN 0).
   */
  maxQueues?: number;
  /**
   * Where the window's size came from (a UIO window: 'device-tree', 'uio-map' or 'caller'), and why, for the report.
   */
  windowFrom?: string;
  windowNote?: string;
}

/** R read-only, W write-only, RW both: the Direction column of virtio 1.2 §4.2.2 (§4.2.4 for Version 1). */
export type RegisterAccess = RegisterDirection;

/** One control register: read once (`value`), once per selector value (`values`), or not read (`note` says why). */
export interface RegisterReading {
  name: MmioRegisterName;
  offset: number;
  access: RegisterAccess;
  value?: number;
  values?: { selector: string; value: number }[];
  note?: string;
}

export interface FeatureName {
  bit: number;
  /** Spec name (VIRTIO_F_…, VIRTIO_BLK_F_…), or "bit N" when not known. */
  name: string;
  group: 'transport' | 'device' | 'unknown';
}

export interface FeatureReport {
  /** DeviceFeatures words 0 and 1 (DeviceFeaturesSel 0 and 1) as one 64-bit mask. */
  offered: string;
  bits: FeatureName[];
}

export interface ShmRegionReport {
  id: number;
  base: string;
  length: string;
}

export interface QueueReport {
  index: number;
  /** QueueNumMax; absent on Version 1 while QueuePFN ≠ 0, when the spec lets the driver not read it (§4.2.4). */
  sizeMax?: number;
  /** QueueReady = 1 (Version 2) or QueuePFN ≠ 0 (Version 1): the device may be using the rings. */
  live: boolean;
  /** Version 1: QueuePFN. */
  pfn?: number;
}

/** Plain JSON data: numbers as numbers, 64-bit values and feature masks as "0x…" strings. */
export interface InspectReport {
  where: string;
  windowSize: number;
  /** Where windowSize came from, when the caller said (UIO windows: 'device-tree', 'uio-map', 'caller'). */
  windowFrom?: string;
  windowNote?: string;
  magicValue?: string;
  /** MagicValue is "virt" (§4.2.2). */
  magicOk?: boolean;
  version?: number;
  deviceId?: number;
  /** The device type by name, or "empty" for DeviceID 0. */
  device?: string;
  /** DeviceID 0: a transport with no device behind it; nothing more is read (§4.2.3.1.1). */
  empty?: boolean;
  vendorId?: string;
  /** VendorID as four ASCII characters when they are printable (QEMU: "QEMU"). */
  vendor?: string;
  status?: number;
  statusBits?: string;
  /** Only with the reset option: whether Status read 0 within RESET_TIMEOUT_MS. */
  reset?: { completed: boolean };
  registers: RegisterReading[];
  features?: FeatureReport;
  config?: ConfigReport;
  /** Version 2: the shared memory regions present among SHMSel 0…255 (§2.10, §4.2.2). */
  shmRegions?: ShmRegionReport[];
  queues?: QueueReport[];
  /** Registers inspect wrote (selectors; Status too with the reset option). */
  writes: MmioRegisterName[];
  warnings: string[];
  /** Why inspection stopped early: not a virtio-mmio device, or a reset that never completed. */
  problem?: string;
}

export const DEFAULT_MAX_QUEUES = 256;
/** How long the reset option waits for Status to read 0 (§2.4.2). */
export const RESET_TIMEOUT_MS = 1000;
/** SHM region ids are 8 bits wide (§2.10). */
const SHM_IDS = 256;

type Row = readonly [MmioRegisterName, RegisterAccess];
/** The register layout of `version` (§4.2.2, §4.2.4), in offset order. */
const layout = (version: 1 | 2): readonly Row[] =>
  [...mmioRegisterTable(version).entries()]
    .sort(([a], [b]) => a - b)
    .map(([, entry]): Row => [entry.name, entry.direction]);

const TRANSPORT_NAMES: ReadonlyMap<number, string> = new Map([
  ...Object.entries(LegacyFeatureBit).map(([name, bit]): [number, string] => [bit, `VIRTIO_F_${name} (legacy)`]),
  ...Object.entries(FeatureBit).map(([name, bit]): [number, string] => [bit, `VIRTIO_F_${name}`]),
]);

const prefixed = (prefix: string, table: Record<string, number>): ReadonlyMap<number, string> =>
  new Map(Object.entries(table).map(([name, bit]) => [bit, `${prefix}${name}`]));

const legacy = (prefix: string, table: Record<string, number>): ReadonlyMap<number, string> =>
  new Map(Object.entries(table).map(([name, bit]) => [bit, `${prefix}${name} (legacy)`]));

/** Device-type feature names (§5.1.3, §5.2.3, §5.3.3); the entropy device has none (§5.4.3). */
const DEVICE_NAMES: ReadonlyMap<number, ReadonlyMap<number, string>> = new Map([
  [DeviceId.NET, new Map([...legacy('VIRTIO_NET_F_', LegacyNetFeature), ...prefixed('VIRTIO_NET_F_', NetFeature)])],
  [DeviceId.BLOCK, new Map([...legacy('VIRTIO_BLK_F_', LegacyBlkFeature), ...prefixed('VIRTIO_BLK_F_', BlkFeature)])],
  [DeviceId.CONSOLE, prefixed('VIRTIO_CONSOLE_F_', ConsoleFeature)],
]);

/**
 * The bit of a feature named as nameFeatures() names it (VIRTIO_F_EVENT_IDX,
 * VIRTIO_BLK_F_RO), or without its VIRTIO_…_F_ prefix (EVENT_IDX, RO);
 * case-insensitive; legacy-only names are not accepted. Undefined when
 * neither the transport (§6) nor `deviceId`'s type has that name.
 */
export function featureBitByName(deviceId: number, name: string): number | undefined {
  const wanted = name.toUpperCase();
  const tables = [
    new Map(Object.entries(FeatureBit).map(([n, bit]): [number, string] => [bit, `VIRTIO_F_${n}`])),
    DEVICE_NAMES.get(deviceId) ?? new Map<number, string>(),
  ];
  for (const table of tables) {
    for (const [bit, full] of table) {
      if (full.endsWith(' (legacy)')) continue;
      if (full === wanted || full.replace(/^VIRTIO_(?:[A-Z]+_)?F_/, '') === wanted) return bit;
    }
  }
  return undefined;
}

/** Offered feature bits by name: transport bits (§6), then the device type's, else "bit N". */
export function nameFeatures(deviceId: number, offered: bigint): FeatureName[] {
  const device = DEVICE_NAMES.get(deviceId);
  return featureBits(offered).map((bit): FeatureName => {
    const transport = TRANSPORT_NAMES.get(bit);
    if (transport) return { bit, name: transport, group: 'transport' };
    const name = device?.get(bit);
    return name ? { bit, name, group: 'device' } : { bit, name: `bit ${bit}`, group: 'unknown' };
  });
}

/**
 * Reads everything a driver may read of a virtio-mmio transport without
 * changing its state: identity, Status, InterruptStatus, DeviceFeatures,
 * the configuration space, SHM regions and each queue's QueueNumMax and
 * liveness. The only writes are the selectors DeviceFeaturesSel, QueueSel
 * and SHMSel (they are write-only, so their old values cannot be restored;
 * each is left at 0). It never reads a write-only register, nor QueueReset
 * (only allowed with VIRTIO_F_RING_RESET negotiated, which the driver side
 * cannot read back), nor QueueNumMax of a live legacy queue (§4.2.4). With
 * `reset`, Status ← 0 first (§2.4). A window that holds no virtio-mmio
 * device gives a report with `problem`, never an exception; an access that
 * fails (a closed window, a native error) throws.
 */
export function inspect(regs: RegisterBlock, options: InspectOptions = {}): InspectReport {
  const maxQueues = options.maxQueues ?? DEFAULT_MAX_QUEUES;
  if (!Number.isInteger(maxQueues) || maxQueues < 0 || maxQueues > 0x10000)
    throw outOfRange(`maxQueues must be an integer in [0, 65536], got ${String(maxQueues)}`);
  const report: InspectReport = { where: regs.label, windowSize: regs.size, registers: [], writes: [], warnings: [] };
  if (options.windowFrom !== undefined) report.windowFrom = options.windowFrom;
  if (options.windowNote !== undefined) report.windowNote = options.windowNote;
  if (regs.size < MmioRegister.Config) {
    report.problem =
      `the window has ${hex(regs.size)} bytes, less than the ${hex(MmioRegister.Config)} bytes of the ` +
      `virtio-mmio registers`;
    return report;
  }
  const readings = new Map<MmioRegisterName, RegisterReading>();
  const read = (name: MmioRegisterName): number => {
    const value = regs.readl(MmioRegister[name]);
    readings.set(name, { ...(readings.get(name) ?? { name, offset: MmioRegister[name], access: 'R' }), value });
    return value;
  };
  const readSelected = (name: MmioRegisterName, selector: string): number => {
    const value = regs.readl(MmioRegister[name]);
    const reading = readings.get(name) ?? { name, offset: MmioRegister[name], access: 'R' };
    readings.set(name, { ...reading, values: [...(reading.values ?? []), { selector, value }] });
    return value;
  };
  const write = (name: MmioRegisterName, value: number): void => {
    regs.writel(MmioRegister[name], value);
    if (!report.writes.includes(name)) report.writes.push(name);
  };
  const finish = (rows: readonly Row[] | undefined): InspectReport => {
    // Every register of the layout, in offset order; before the version is known, only what was read.
    const all = rows ?? [...readings.keys()].map((name): Row => [name, 'R']);
    report.registers = all
      .map(([name, access]): RegisterReading => ({
        ...(readings.get(name) ?? { name, offset: MmioRegister[name] }),
        access,
        ...notes.get(name),
      }))
      .sort((a, b) => a.offset - b.offset);
    return report;
  };
  const notes = new Map<MmioRegisterName, { note: string }>();

  // Identity first, in the order of §4.2.3.1.1; nothing else on a window that fails it (§4.2.2.2).
  const magic = read('MagicValue');
  const version = read('Version');
  report.magicValue = hex(magic);
  report.magicOk = magic === MMIO_MAGIC_VALUE;
  report.version = version;
  if (!report.magicOk || (version !== 1 && version !== 2)) {
    const why = report.magicOk
      ? `Version ${version} is neither 1 (legacy) nor 2`
      : `MagicValue ${hex(magic)} is not 0x74726976 ("virt")`;
    report.problem = `not a virtio-mmio device: ${why}`;
    return finish(undefined);
  }
  const rows = layout(version);
  for (const [name, access] of rows) if (access === 'W') notes.set(name, { note: 'write-only: not read' });
  const deviceId = read('DeviceID');
  report.deviceId = deviceId;
  if (deviceId === EMPTY_DEVICE_ID) {
    report.device = 'empty';
    report.empty = true;
    for (const [name] of rows)
      if (!readings.has(name) && !notes.has(name))
        notes.set(name, { note: 'not read: DeviceID 0 (an empty slot, §4.2.3.1.1)' });
    return finish(rows);
  }
  report.device = deviceIdName(deviceId);
  const vendorId = read('VendorID');
  report.vendorId = hex(vendorId);
  const vendor = vendorText(vendorId);
  if (vendor) report.vendor = vendor;

  if (options.reset) {
    // §2.4.2, §4.2.3.1.1: writing 0 resets; the reset is complete once Status reads 0.
    write('Status', 0);
    const completed = regs.pollUntil(MmioRegister.Status, 0xffff_ffff, 0, RESET_TIMEOUT_MS) !== null;
    report.reset = { completed };
    if (!completed) {
      report.problem = `the reset did not complete: Status did not read 0 within ${RESET_TIMEOUT_MS} ms`;
      const status = read('Status');
      report.status = status;
      report.statusBits = describeStatus(status);
      return finish(rows);
    }
  }
  const status = read('Status');
  report.status = status;
  report.statusBits = describeStatus(status);
  if (status & DeviceStatus.DEVICE_NEEDS_RESET) report.warnings.push('the device has set DEVICE_NEEDS_RESET (§2.1.2)');
  read('InterruptStatus');

  // DeviceFeatures, both words (§4.2.2: DeviceFeaturesSel selects bits 32·sel … 32·sel+31).
  let offered = 0n;
  for (const sel of [0, 1]) {
    write('DeviceFeaturesSel', sel);
    offered |= BigInt(readSelected('DeviceFeatures', `DeviceFeaturesSel ${sel}`)) << BigInt(32 * sel);
  }
  write('DeviceFeaturesSel', 0);
  notes.set('DeviceFeaturesSel', { note: 'write-only: written 0, 1, then left at 0' });
  report.features = { offered: hex(offered), bits: nameFeatures(deviceId, offered) };

  if (hasConfigSpace(deviceId)) {
    report.config = inspectConfig(regs, version, deviceId, offered);
    if (report.config.generation !== undefined)
      readings.set('ConfigGeneration', {
        name: 'ConfigGeneration',
        offset: MmioRegister.ConfigGeneration,
        access: 'R',
        value: report.config.generation,
      });
    if (report.config.stable === false)
      report.warnings.push(
        `ConfigGeneration changed during each of ${report.config.attempts} reads of the configuration space; ` +
          `the bytes shown may be inconsistent`,
      );
  } else if (version === 2) read('ConfigGeneration');

  if (version === 2) {
    report.shmRegions = inspectShm(regs, write, readSelected);
    notes.set('SHMSel', { note: `write-only: written 0…${SHM_IDS - 1}, then left at 0` });
    const absent =
      `all ones (no region) for every SHMSel 0…${SHM_IDS - 1}` + `${report.shmRegions.length ? ' not listed' : ''}`;
    notes.set('SHMLenLow', { note: absent });
    notes.set('SHMLenHigh', { note: absent });
    notes.set('SHMBaseLow', { note: 'read for present regions only' });
    notes.set('SHMBaseHigh', { note: 'read for present regions only' });
    notes.set('QueueReset', {
      note: 'not read: only allowed with VIRTIO_F_RING_RESET negotiated (§4.2.2.2), which cannot be read back',
    });
  }
  const probed = inspectQueues(version, maxQueues, write, readSelected);
  report.queues = probed.queues;
  notes.set('QueueSel', {
    note: probed.count ? `write-only: written 0…${probed.count - 1}, then left at 0` : 'write-only: not written',
  });
  return finish(rows);
}

type Write = (name: MmioRegisterName, value: number) => void;
type ReadSelected = (name: MmioRegisterName, selector: string) => number;

/** §2.10, §4.2.2: SHMLen all ones marks an absent region; SHMBase is read only for present ones. */
function inspectShm(regs: RegisterBlock, write: Write, readSelected: ReadSelected): ShmRegionReport[] {
  const regions: ShmRegionReport[] = [];
  const word = (name: MmioRegisterName, selector: string): bigint => BigInt(readSelected(name, selector));
  for (let id = 0; id < SHM_IDS; id++) {
    write('SHMSel', id);
    // Absent regions are not listed among the values: only the present ones are.
    const low = BigInt(regs.readl(MmioRegister.SHMLenLow));
    const high = BigInt(regs.readl(MmioRegister.SHMLenHigh));
    const length = (high << 32n) | low;
    if (length === SHM_LEN_ABSENT) continue;
    const selector = `SHMSel ${id}`;
    word('SHMLenLow', selector);
    word('SHMLenHigh', selector);
    const base = (word('SHMBaseHigh', selector) << 32n) | word('SHMBaseLow', selector);
    regions.push({ id, base: hex(base), length: hex(length) });
  }
  write('SHMSel', 0);
  return regions;
}

/**
 * QueueSel ← i, then QueueNumMax and QueueReady (Version 2), or QueuePFN
 * and, only while it is 0, QueueNumMax (Version 1, §4.2.4).
 */
function inspectQueues(
  version: 1 | 2,
  maxQueues: number,
  write: Write,
  readSelected: ReadSelected,
): { queues: QueueReport[]; count: number } {
  const queues: QueueReport[] = [];
  let absentInARow = 0;
  let index = 0;
  for (; index < maxQueues && absentInARow < 2; index++) {
    write('QueueSel', index);
    const selector = `QueueSel ${index}`;
    let queue: QueueReport | undefined;
    if (version === 2) {
      const sizeMax = readSelected('QueueNumMax', selector);
      if (sizeMax !== 0) queue = { index, sizeMax, live: readSelected('QueueReady', selector) === 1 };
    } else {
      const pfn = readSelected('QueuePFN', selector);
      if (pfn !== 0) queue = { index, live: true, pfn };
      else {
        const sizeMax = readSelected('QueueNumMax', selector);
        if (sizeMax !== 0) queue = { index, sizeMax, live: false, pfn };
      }
    }
    if (queue) {
      queues.push(queue);
      absentInARow = 0;
    } else absentInARow++;
  }
  if (index > 0) write('QueueSel', 0);
  return { queues, count: index };
}
