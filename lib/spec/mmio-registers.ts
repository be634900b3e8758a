/**
 * The virtio-mmio register map, each register named once (virtio 1.2
 * §4.2.2 for Version 2, §4.2.4 for the legacy Version 1). Offsets are bytes
 * from the start of the register window.
 */
export const MmioRegister = {
  MagicValue: 0x000,
  Version: 0x004,
  DeviceID: 0x008,
  VendorID: 0x00c,
  DeviceFeatures: 0x010,
  DeviceFeaturesSel: 0x014,
  DriverFeatures: 0x020,
  DriverFeaturesSel: 0x024,
  /** Version 1 only. */
  GuestPageSize: 0x028,
  QueueSel: 0x030,
  QueueNumMax: 0x034,
  QueueNum: 0x038,
  /** Version 1 only. */
  QueueAlign: 0x03c,
  /** Version 1 only. */
  QueuePFN: 0x040,
  /** Version 2 only. */
  QueueReady: 0x044,
  QueueNotify: 0x050,
  InterruptStatus: 0x060,
  InterruptACK: 0x064,
  Status: 0x070,
  QueueDescLow: 0x080,
  QueueDescHigh: 0x084,
  QueueDriverLow: 0x090,
  QueueDriverHigh: 0x094,
  QueueDeviceLow: 0x0a0,
  QueueDeviceHigh: 0x0a4,
  SHMSel: 0x0ac,
  SHMLenLow: 0x0b0,
  SHMLenHigh: 0x0b4,
  SHMBaseLow: 0x0b8,
  SHMBaseHigh: 0x0bc,
  QueueReset: 0x0c0,
  /** Version 2 only. */
  ConfigGeneration: 0x0fc,
  /** Start of the device-specific configuration space. */
  Config: 0x100,
} as const;

export type MmioRegisterName = keyof typeof MmioRegister;

/** "virt" read as a little-endian 32-bit word (§4.2.2). */
export const MMIO_MAGIC_VALUE = 0x74726976;

/** Version 1: the legacy interface (§4.2.4); Version 2: virtio 1.x (§4.2.2). */
export const MMIO_VERSION_LEGACY = 1;
export const MMIO_VERSION_MODERN = 2;

/** Bits of InterruptStatus and InterruptACK (§4.2.2). */
export const MmioInterrupt = {
  /** Used Buffer Notification. */
  VRING: 1 << 0,
  /** Configuration Change Notification. */
  CONFIG: 1 << 1,
} as const;

export const MMIO_INTERRUPT_DEFINED = MmioInterrupt.VRING | MmioInterrupt.CONFIG;

/** SHMLen reads as all ones when the selected region does not exist (§4.2.2). */
export const SHM_LEN_ABSENT = 0xffff_ffff_ffff_ffffn;
