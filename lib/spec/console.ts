/** virtio-console (virtio 1.2 §5.3): device ID 3. */

/** Feature bits (§5.3.3). */
export const ConsoleFeature = {
  SIZE: 0,
  MULTIPORT: 1,
  EMERG_WRITE: 2,
} as const;

/** Offsets in struct virtio_console_config (§5.3.4). */
export const ConsoleConfig = {
  cols: 0, // le16
  rows: 2, // le16
  max_nr_ports: 4, // le32
  emerg_wr: 8, // le32
  SIZE: 12,
} as const;

/** Queues of port 0 (§5.3.2); the control queues and other ports need MULTIPORT. */
export const ConsoleQueue = {
  RECEIVE0: 0,
  TRANSMIT0: 1,
} as const;
