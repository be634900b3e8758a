import { DeviceId, MmioRegister } from '../spec';
import { describeNetStatus, type InspectReport } from '../diag';
import { hexUnsigned as hex } from '../util/hex';

export { inspect, nameFeatures, featureBitByName, DEFAULT_MAX_QUEUES, RESET_TIMEOUT_MS } from '../diag';
export type {
  ConfigReport,
  InspectOptions,
  InspectReport,
  RegisterAccess,
  RegisterReading,
  FeatureName,
  FeatureReport,
  ShmRegionReport,
  QueueReport,
} from '../diag';

const BLK_SECTOR = 512n;

function sizeText(bytes: bigint): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let unit = 0;
  let value = Number(bytes);
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${Number.isInteger(value) ? value : value.toFixed(1)} ${units[unit]}`;
}

function fieldText(report: InspectReport, name: string, value: number | string): string {
  if (report.deviceId === DeviceId.BLOCK && name === 'capacity' && typeof value === 'string') {
    const sectors = BigInt(value);
    return `${sectors} sectors (${sizeText(sectors * BLK_SECTOR)})`;
  }
  if (report.deviceId === DeviceId.NET && name === 'status' && typeof value === 'number')
    return `${hex(value)} (${describeNetStatus(value)})`;
  return String(value);
}

const WINDOW_FROM: Record<string, string> = { 'device-tree': 'device-tree reg', 'uio-map': 'UIO map', caller: 'given' };

/** A multi-line, human-readable rendering of a report, for a terminal. */
export function formatInspect(report: InspectReport): string {
  const lines: string[] = [];
  const from =
    report.windowFrom === undefined
      ? ''
      : ` (${WINDOW_FROM[report.windowFrom] ?? report.windowFrom}${report.windowNote ? `: ${report.windowNote}` : ''})`;
  const head = [`${report.where}: window of ${hex(report.windowSize)} bytes${from}`];
  if (report.magicValue !== undefined) head.push(`MagicValue ${report.magicValue}${report.magicOk ? ' ("virt")' : ''}`);
  if (report.version !== undefined) head.push(`Version ${report.version}${report.version === 1 ? ' (legacy)' : ''}`);
  lines.push(head.join(', '));
  if (report.problem) lines.push(`problem: ${report.problem}`);
  if (report.device !== undefined)
    lines.push(
      `device: ${report.empty ? 'none (DeviceID 0: an empty slot)' : report.device}` +
        `${report.vendorId ? `, vendor ${report.vendorId}${report.vendor ? ` "${report.vendor}"` : ''}` : ''}`,
    );
  if (report.reset)
    lines.push(
      report.reset.completed
        ? 'reset: Status written 0 and read back 0'
        : 'reset: Status written 0 but never read back 0',
    );
  if (report.status !== undefined) lines.push(`status: ${hex(report.status)} (${report.statusBits})`);
  for (const warning of report.warnings) lines.push(`warning: ${warning}`);

  lines.push('registers:');
  for (const r of report.registers) {
    const where = `  0x${r.offset.toString(16).padStart(3, '0')}  ${r.name.padEnd(18)}${r.access.padEnd(3)}`;
    if (r.value !== undefined) lines.push(`${where}${hex(r.value)}${r.note ? `  (${r.note})` : ''}`);
    else if (r.values?.length)
      lines.push(
        `${where}${r.values.map((v) => `${v.selector}: ${hex(v.value)}`).join(', ')}${r.note ? `  (${r.note})` : ''}`,
      );
    else lines.push(`${where}${r.note ?? (r.values ? 'no value to show' : 'not read')}`);
  }

  if (report.features) {
    lines.push(`features offered: ${report.features.offered}`);
    for (const group of ['transport', 'device', 'unknown'] as const) {
      const bits = report.features.bits.filter((b) => b.group === group);
      if (bits.length)
        lines.push(
          `  ${group}: ${bits.map((b) => (group === 'unknown' ? b.name : `${b.name} (${b.bit})`)).join(', ')}`,
        );
    }
    if (report.features.bits.length === 0) lines.push('  none');
  }

  if (report.config) {
    const c = report.config;
    const generation =
      c.generation === undefined ? '' : `, ConfigGeneration ${c.generation}${c.stable ? '' : ' (never settled)'}`;
    lines.push(`config space: ${c.length} bytes${generation}`);
    for (const [name, value] of Object.entries(c.fields)) lines.push(`  ${name}: ${fieldText(report, name, value)}`);
    const bytes = c.raw ? c.raw.split(' ') : [];
    for (let i = 0; i < bytes.length; i += 16)
      lines.push(`  ${hex(MmioRegister.Config + i).padEnd(7)}${bytes.slice(i, i + 16).join(' ')}`);
    if (bytes.includes('..'))
      lines.push('  (.. = not read: padding between the fields of the layout, which a driver does not read)');
  } else if (report.features) lines.push('config space: none for this device type');

  if (report.shmRegions) {
    lines.push(`shared memory regions: ${report.shmRegions.length ? '' : 'none'}`);
    for (const r of report.shmRegions) lines.push(`  id ${r.id}: base ${r.base}, length ${r.length}`);
  }
  if (report.queues) {
    lines.push(`queues: ${report.queues.length ? '' : 'none'}`);
    for (const q of report.queues) {
      const size = q.sizeMax === undefined ? 'QueueNumMax not read while QueuePFN is set' : `QueueNumMax ${q.sizeMax}`;
      lines.push(`  ${q.index}: ${size}, ${q.live ? 'live' : 'not live'}${q.pfn ? `, QueuePFN ${hex(q.pfn)}` : ''}`);
    }
  }
  if (report.writes.length)
    lines.push(`inspect wrote: ${report.writes.join(', ')}${report.reset ? '' : ' (selectors only)'}`);
  return lines.map((line) => line.trimEnd()).join('\n') + '\n';
}
