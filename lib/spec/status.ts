/** Device status field bits (virtio 1.2 §2.1). */
export const DeviceStatus = {
  ACKNOWLEDGE: 1,
  DRIVER: 2,
  DRIVER_OK: 4,
  FEATURES_OK: 8,
  DEVICE_NEEDS_RESET: 64,
  FAILED: 128,
} as const;

/** "ACKNOWLEDGE | DRIVER" style text for messages. */
export function describeStatus(status: number): string {
  const names = Object.entries(DeviceStatus)
    .filter(([, bit]) => status & bit)
    .map(([name]) => name);
  return names.length ? names.join(' | ') : '0';
}
