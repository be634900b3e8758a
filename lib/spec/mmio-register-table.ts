import { MmioRegister, type MmioRegisterName } from './mmio-registers';

/** R: read-only, W: write-only, RW: both (the Direction column of §4.2.2 / §4.2.4). */
export type RegisterDirection = 'R' | 'W' | 'RW';

export interface RegisterEntry {
  readonly name: MmioRegisterName;
  readonly direction: RegisterDirection;
}

type Row = [MmioRegisterName, RegisterDirection];

const common: Row[] = [
  ['MagicValue', 'R'],
  ['Version', 'R'],
  ['DeviceID', 'R'],
  ['VendorID', 'R'],
  ['DeviceFeatures', 'R'],
  ['DeviceFeaturesSel', 'W'],
  ['DriverFeatures', 'W'],
  ['DriverFeaturesSel', 'W'],
  ['QueueSel', 'W'],
  ['QueueNumMax', 'R'],
  ['QueueNum', 'W'],
  ['QueueNotify', 'W'],
  ['InterruptStatus', 'R'],
  ['InterruptACK', 'W'],
  ['Status', 'RW'],
];

/** Virtio 1.2 §4.2.2, table "MMIO Device Register Layout". */
const modern: Row[] = [
  ...common,
  ['QueueReady', 'RW'],
  ['QueueDescLow', 'W'],
  ['QueueDescHigh', 'W'],
  ['QueueDriverLow', 'W'],
  ['QueueDriverHigh', 'W'],
  ['QueueDeviceLow', 'W'],
  ['QueueDeviceHigh', 'W'],
  ['SHMSel', 'W'],
  ['SHMLenLow', 'R'],
  ['SHMLenHigh', 'R'],
  ['SHMBaseLow', 'R'],
  ['SHMBaseHigh', 'R'],
  ['QueueReset', 'RW'],
  ['ConfigGeneration', 'R'],
];

/** Virtio 1.2 §4.2.4, table "MMIO Device Legacy Register Layout". */
const legacy: Row[] = [...common, ['GuestPageSize', 'W'], ['QueueAlign', 'W'], ['QueuePFN', 'RW']];

const build = (rows: Row[]): ReadonlyMap<number, RegisterEntry> =>
  new Map(rows.map(([name, direction]) => [MmioRegister[name], Object.freeze({ name, direction })]));

const tables = { 1: build(legacy), 2: build(modern) } as const;

/** The control registers (offsets below 0x100) that exist in one register layout version. */
export function mmioRegisterTable(version: 1 | 2): ReadonlyMap<number, RegisterEntry> {
  return tables[version];
}
