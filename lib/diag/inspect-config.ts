import type { RegisterBlock } from '../platform';
import { ConfigSpace } from '../transport/config-space';
import {
  BlkConfig,
  BlkFeature,
  ConsoleConfig,
  ConsoleFeature,
  DeviceId,
  hasFeature,
  MmioRegister,
  NetConfig,
  NetFeature,
  NetStatus,
  macText,
} from '../spec';
import { INPUT_LAYOUT, decodeInput } from './inspect-input';

/**
 * One field of a device's configuration structure, as the driver must access it (virtio 1.2 §4.2.2.2: by its own width;
 * 64-bit as two 32-bit halves).
 */
export interface ConfigLayoutField {
  readonly name: string;
  readonly offset: number;
  readonly width: 1 | 2 | 4 | 8;
}

/** A decoded field value: numbers as numbers, 64-bit values as "0x…" hex. */
export type ConfigValue = number | string;

/** What inspect says about the device-specific configuration space. */
export interface ConfigReport {
  /** Bytes of the window at 0x100 and beyond that were looked at (the window, at most MAX_CONFIG_BYTES). */
  length: number;
  /**
   * The window as hex bytes separated by spaces; ".." for bytes not read
   * (padding between the fields of a known layout, which the driver has no
   * business reading).
   */
  raw: string;
  /** Fields the offered features make meaningful (§5.x.4), by their spec names. */
  fields: Record<string, ConfigValue>;
  /** Version 2: the ConfigGeneration the bytes were read in, and whether it held still (§2.5.1, §4.2.2). */
  generation?: number;
  stable?: boolean;
  /** Reads of the window it took (more than 1 when ConfigGeneration moved). */
  attempts: number;
}

/** A window is dumped up to here; QEMU's virtio-mmio window has 0x100 bytes of config space. */
export const MAX_CONFIG_BYTES = 0x100;
/** Reads of the config space before giving up on a ConfigGeneration that keeps changing. */
export const CONFIG_ATTEMPTS = 5;

const B = BlkConfig;
/** struct virtio_blk_config up to write_zeroes_may_unmap (§5.2.4); unused0 (33) and unused1 (57–59) are padding. */
const BLK_LAYOUT: readonly ConfigLayoutField[] = [
  { name: 'capacity', offset: B.capacity, width: 8 },
  { name: 'size_max', offset: B.size_max, width: 4 },
  { name: 'seg_max', offset: B.seg_max, width: 4 },
  { name: 'geometry_cylinders', offset: B.geometry_cylinders, width: 2 },
  { name: 'geometry_heads', offset: B.geometry_heads, width: 1 },
  { name: 'geometry_sectors', offset: B.geometry_sectors, width: 1 },
  { name: 'blk_size', offset: B.blk_size, width: 4 },
  { name: 'topology_physical_block_exp', offset: B.topology_physical_block_exp, width: 1 },
  { name: 'topology_alignment_offset', offset: B.topology_alignment_offset, width: 1 },
  { name: 'topology_min_io_size', offset: B.topology_min_io_size, width: 2 },
  { name: 'topology_opt_io_size', offset: B.topology_opt_io_size, width: 4 },
  { name: 'writeback', offset: B.writeback, width: 1 },
  { name: 'num_queues', offset: B.num_queues, width: 2 },
  { name: 'max_discard_sectors', offset: B.max_discard_sectors, width: 4 },
  { name: 'max_discard_seg', offset: B.max_discard_seg, width: 4 },
  { name: 'discard_sector_alignment', offset: B.discard_sector_alignment, width: 4 },
  { name: 'max_write_zeroes_sectors', offset: B.max_write_zeroes_sectors, width: 4 },
  { name: 'max_write_zeroes_seg', offset: B.max_write_zeroes_seg, width: 4 },
  { name: 'write_zeroes_may_unmap', offset: B.write_zeroes_may_unmap, width: 1 },
];

/** struct virtio_net_config up to mtu (§5.1.4): the MAC is six u8 fields. */
const NET_LAYOUT: readonly ConfigLayoutField[] = [
  ...Array.from({ length: 6 }, (_, i) => ({ name: `mac[${i}]`, offset: NetConfig.mac + i, width: 1 as const })),
  { name: 'status', offset: NetConfig.status, width: 2 },
  { name: 'max_virtqueue_pairs', offset: NetConfig.max_virtqueue_pairs, width: 2 },
  { name: 'mtu', offset: NetConfig.mtu, width: 2 },
];

/** struct virtio_console_config (§5.3.4). */
const CONSOLE_LAYOUT: readonly ConfigLayoutField[] = [
  { name: 'cols', offset: ConsoleConfig.cols, width: 2 },
  { name: 'rows', offset: ConsoleConfig.rows, width: 2 },
  { name: 'max_nr_ports', offset: ConsoleConfig.max_nr_ports, width: 4 },
  { name: 'emerg_wr', offset: ConsoleConfig.emerg_wr, width: 4 },
];

interface ConfigType {
  layout: readonly ConfigLayoutField[];
  decode(view: DataView, offered: bigint, length: number): Record<string, ConfigValue>;
}

const TYPES: ReadonlyMap<number, ConfigType> = new Map([
  [DeviceId.BLOCK, { layout: BLK_LAYOUT, decode: decodeBlk }],
  [DeviceId.NET, { layout: NET_LAYOUT, decode: decodeNet }],
  [DeviceId.CONSOLE, { layout: CONSOLE_LAYOUT, decode: decodeConsole }],
  [DeviceId.INPUT, { layout: INPUT_LAYOUT, decode: decodeInput }],
]);

/** The entropy device has no configuration space (§5.4.4). */
export function hasConfigSpace(deviceId: number): boolean {
  return deviceId !== DeviceId.ENTROPY;
}

const hex64 = (view: DataView, offset: number): string => `0x${view.getBigUint64(offset, true).toString(16)}`;

/** §5.2.4: each group of fields exists only with the feature that names it; capacity always. */
function decodeBlk(view: DataView, offered: bigint, length: number): Record<string, ConfigValue> {
  const fields: Record<string, ConfigValue> = {};
  const has = (bit: number): boolean => hasFeature(offered, bit);
  const fits = (end: number): boolean => end <= length;
  if (fits(B.capacity + 8)) fields.capacity = hex64(view, B.capacity);
  if (has(BlkFeature.SIZE_MAX) && fits(B.size_max + 4)) fields.size_max = view.getUint32(B.size_max, true);
  if (has(BlkFeature.SEG_MAX) && fits(B.seg_max + 4)) fields.seg_max = view.getUint32(B.seg_max, true);
  if (has(BlkFeature.GEOMETRY) && fits(B.geometry_sectors + 1)) {
    fields.geometry_cylinders = view.getUint16(B.geometry_cylinders, true);
    fields.geometry_heads = view.getUint8(B.geometry_heads);
    fields.geometry_sectors = view.getUint8(B.geometry_sectors);
  }
  if (has(BlkFeature.BLK_SIZE) && fits(B.blk_size + 4)) fields.blk_size = view.getUint32(B.blk_size, true);
  if (has(BlkFeature.TOPOLOGY) && fits(B.topology_opt_io_size + 4)) {
    fields.topology_physical_block_exp = view.getUint8(B.topology_physical_block_exp);
    fields.topology_alignment_offset = view.getUint8(B.topology_alignment_offset);
    fields.topology_min_io_size = view.getUint16(B.topology_min_io_size, true);
    fields.topology_opt_io_size = view.getUint32(B.topology_opt_io_size, true);
  }
  if (has(BlkFeature.CONFIG_WCE) && fits(B.writeback + 1)) fields.writeback = view.getUint8(B.writeback);
  if (has(BlkFeature.MQ) && fits(B.num_queues + 2)) fields.num_queues = view.getUint16(B.num_queues, true);
  if (has(BlkFeature.DISCARD) && fits(B.discard_sector_alignment + 4)) {
    fields.max_discard_sectors = view.getUint32(B.max_discard_sectors, true);
    fields.max_discard_seg = view.getUint32(B.max_discard_seg, true);
    fields.discard_sector_alignment = view.getUint32(B.discard_sector_alignment, true);
  }
  if (has(BlkFeature.WRITE_ZEROES) && fits(B.write_zeroes_may_unmap + 1)) {
    fields.max_write_zeroes_sectors = view.getUint32(B.max_write_zeroes_sectors, true);
    fields.max_write_zeroes_seg = view.getUint32(B.max_write_zeroes_seg, true);
    fields.write_zeroes_may_unmap = view.getUint8(B.write_zeroes_may_unmap);
  }
  return fields;
}

/** §5.1.4: mac with VIRTIO_NET_F_MAC, status with STATUS, max_virtqueue_pairs with MQ, mtu with MTU. */
function decodeNet(view: DataView, offered: bigint, length: number): Record<string, ConfigValue> {
  const fields: Record<string, ConfigValue> = {};
  const has = (bit: number, end: number): boolean => hasFeature(offered, bit) && end <= length;
  if (has(NetFeature.MAC, NetConfig.mac + 6)) {
    fields.mac = macText(new Uint8Array(view.buffer, view.byteOffset + NetConfig.mac, 6));
  }
  if (has(NetFeature.STATUS, NetConfig.status + 2)) fields.status = view.getUint16(NetConfig.status, true);
  if (has(NetFeature.MQ, NetConfig.max_virtqueue_pairs + 2))
    fields.max_virtqueue_pairs = view.getUint16(NetConfig.max_virtqueue_pairs, true);
  if (has(NetFeature.MTU, NetConfig.mtu + 2)) fields.mtu = view.getUint16(NetConfig.mtu, true);
  return fields;
}

/** §5.3.4: cols and rows with VIRTIO_CONSOLE_F_SIZE, max_nr_ports with MULTIPORT. */
function decodeConsole(view: DataView, offered: bigint, length: number): Record<string, ConfigValue> {
  const fields: Record<string, ConfigValue> = {};
  if (hasFeature(offered, ConsoleFeature.SIZE) && length >= ConsoleConfig.rows + 2) {
    fields.cols = view.getUint16(ConsoleConfig.cols, true);
    fields.rows = view.getUint16(ConsoleConfig.rows, true);
  }
  if (hasFeature(offered, ConsoleFeature.MULTIPORT) && length >= ConsoleConfig.max_nr_ports + 4) {
    fields.max_nr_ports = view.getUint32(ConsoleConfig.max_nr_ports, true);
  }
  return fields;
}

/** "LINK_UP | ANNOUNCE" for the net config status field (§5.1.4). */
export function describeNetStatus(status: number): string {
  const names = Object.entries(NetStatus)
    .filter(([, bit]) => status & bit)
    .map(([name]) => name);
  return names.length ? names.join(' | ') : '0';
}

/** One pass over the window: returns the bytes and which of them were read. */
function readWindow(
  regs: RegisterBlock,
  length: number,
  layout: readonly ConfigLayoutField[] | undefined,
): { bytes: Uint8Array; read: boolean[] } {
  const bytes = new Uint8Array(length);
  const view = new DataView(bytes.buffer);
  const read = new Array<boolean>(length).fill(false);
  const base = MmioRegister.Config;
  const load = (offset: number, width: 1 | 2 | 4): void => {
    if (width === 1) view.setUint8(offset, regs.readb(base + offset));
    else if (width === 2) view.setUint16(offset, regs.readw(base + offset), true);
    else view.setUint32(offset, regs.readl(base + offset), true);
    read.fill(true, offset, offset + width);
  };
  let end = 0;
  for (const field of layout ?? []) {
    end = Math.max(end, field.offset + field.width);
    if (field.offset + field.width > length) continue;
    if (field.width === 8) {
      // §4.2.2.2: a 64-bit field is read as two 32-bit accesses, low half first (the generation check makes the pair
      // consistent).
      load(field.offset, 4);
      load(field.offset + 4, 4);
    } else load(field.offset, field.width);
  }
  // Past a known layout (or for an unknown type), aligned 32-bit reads.
  for (let offset = Math.ceil(end / 4) * 4; offset + 4 <= length; offset += 4) load(offset, 4);
  return { bytes, read };
}

/**
 * Reads the configuration space: fields of a known layout by their width,
 * the rest by 32-bit reads; on Version 2 inside one ConfigGeneration,
 * retried up to CONFIG_ATTEMPTS times (virtio 1.2 §2.5.1, §4.2.2).
 */
export function inspectConfig(regs: RegisterBlock, version: 1 | 2, deviceId: number, offered: bigint): ConfigReport {
  const length = Math.max(0, Math.min(MAX_CONFIG_BYTES, Math.floor((regs.size - MmioRegister.Config) / 4) * 4));
  const type = TYPES.get(deviceId);
  // §2.5.1: the whole window inside one ConfigGeneration, as the transport reads a driver's fields; an unsettled one is
  // shown, not refused.
  const {
    value: window,
    generation,
    stable,
    attempts,
  } = new ConfigSpace(regs, version, CONFIG_ATTEMPTS).consistent(() => readWindow(regs, length, type?.layout));
  const view = new DataView(window.bytes.buffer, window.bytes.byteOffset, window.bytes.byteLength);
  return {
    length,
    raw: Array.from(window.bytes, (b, i) => (window.read[i] ? b.toString(16).padStart(2, '0') : '..')).join(' '),
    fields: type ? type.decode(view, offered, length) : {},
    ...(version === 2 ? { generation, stable } : {}),
    attempts,
  };
}
