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

/** Queue indices (§5.3.2): port 0's pair always exists; the control pair and ports 1.. need MULTIPORT. */
export const ConsoleQueue = {
  RECEIVE0: 0,
  TRANSMIT0: 1,
  CONTROL_RECEIVE: 2,
  CONTROL_TRANSMIT: 3,
} as const;

/** receiveq of port `id` (§5.3.2: 0, then 4, 6, 8…). */
export function portReceiveQueue(id: number): number {
  return id === 0 ? ConsoleQueue.RECEIVE0 : 2 + 2 * id;
}

/** transmitq of port `id` (§5.3.2: 1, then 5, 7, 9…). */
export function portTransmitQueue(id: number): number {
  return portReceiveQueue(id) + 1;
}

/** The port a data queue belongs to, or undefined for the control queues (§5.3.2). */
export function portOfQueue(queue: number): number | undefined {
  if (queue < 2) return 0;
  if (queue < 4) return undefined;
  return (queue - 2) >> 1;
}

/** `event` of struct virtio_console_control (§5.3.6.2). */
export const ConsoleControlEvent = {
  DEVICE_READY: 0,
  DEVICE_ADD: 1,
  DEVICE_REMOVE: 2,
  PORT_READY: 3,
  CONSOLE_PORT: 4,
  RESIZE: 5,
  PORT_OPEN: 6,
  PORT_NAME: 7,
} as const;

/**
 * struct virtio_console_control (§5.3.6.2): le32 id, le16 event, le16 value; PORT_NAME's name and RESIZE's size follow
 * it.
 */
export const ConsoleControl = {
  id: 0,
  event: 4,
  value: 6,
  SIZE: 8,
} as const;

/** struct virtio_console_resize after a RESIZE message (§5.3.6.2): le16 cols, le16 rows. */
export const ConsoleResize = {
  cols: 0,
  rows: 2,
  SIZE: 4,
} as const;

export interface ConsoleControlMessage {
  id: number;
  event: number;
  value: number;
  /** What follows the 8-byte header (PORT_NAME's UTF-8 name, RESIZE's size). */
  extra: Uint8Array;
}

/** Encodes a control message (little-endian; §5.3.6.2). */
export function encodeConsoleControl(
  id: number,
  event: number,
  value: number,
  extra: Uint8Array = new Uint8Array(0),
): Buffer {
  const bytes = Buffer.alloc(ConsoleControl.SIZE + extra.length);
  bytes.writeUInt32LE(id >>> 0, ConsoleControl.id);
  bytes.writeUInt16LE(event & 0xffff, ConsoleControl.event);
  bytes.writeUInt16LE(value & 0xffff, ConsoleControl.value);
  bytes.set(extra, ConsoleControl.SIZE);
  return bytes;
}

/** Decodes a control message, or undefined when it is shorter than the header. */
export function decodeConsoleControl(bytes: Uint8Array): ConsoleControlMessage | undefined {
  if (bytes.length < ConsoleControl.SIZE) return undefined;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    id: view.getUint32(ConsoleControl.id, true),
    event: view.getUint16(ConsoleControl.event, true),
    value: view.getUint16(ConsoleControl.value, true),
    extra: bytes.subarray(ConsoleControl.SIZE),
  };
}
