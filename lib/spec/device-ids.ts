/** Virtio device IDs (virtio 1.2 §5); 0 marks an empty slot. */
export const DeviceId = {
  NET: 1,
  BLOCK: 2,
  CONSOLE: 3,
  ENTROPY: 4,
  BALLOON_TRADITIONAL: 5,
  IOMEMORY: 6,
  RPMSG: 7,
  SCSI_HOST: 8,
  P9_TRANSPORT: 9,
  MAC80211_WLAN: 10,
  RPROC_SERIAL: 11,
  CAIF: 12,
  BALLOON: 13,
  GPU: 16,
  RTC: 17,
  INPUT: 18,
  SOCKET: 19,
  CRYPTO: 20,
  SIGNAL_DISTRIBUTION: 21,
  PSTORE: 22,
  IOMMU: 23,
  MEMORY: 24,
  SOUND: 25,
  FS: 26,
  PMEM: 27,
  RPMB: 28,
  MAC80211_HWSIM: 29,
  VIDEO_ENCODER: 30,
  VIDEO_DECODER: 31,
  SCMI: 32,
  NITRO_SECURE_MODULE: 33,
  I2C_ADAPTER: 34,
  WATCHDOG: 35,
  CAN: 36,
  PARAMETER_SERVER: 38,
  AUDIO_POLICY: 39,
  BLUETOOTH: 40,
  GPIO: 41,
  RDMA: 42,
  CAMERA: 43,
  ISM: 44,
  SPI: 45,
  TEE: 46,
  CPU_BALLOON: 47,
} as const;

export const EMPTY_DEVICE_ID = 0;

const names = new Map<number, string>(Object.entries(DeviceId).map(([name, id]) => [id, name]));

/** The ID's name as in §5 ("ENTROPY"), or undefined for an ID the spec does not name. */
export function deviceTypeName(id: number): string | undefined {
  return names.get(id);
}

/** "ENTROPY (4)" style text; unknown IDs by number. */
export function deviceIdName(id: number): string {
  return names.has(id) ? `${names.get(id)} (${id})` : `device ${id}`;
}
