/**
 * virtio-input (virtio 1.2 §5.8): device ID 18 (DeviceId.INPUT). Event
 * types and codes are Linux's (include/uapi/linux/input-event-codes.h),
 * which the device speaks (§5.8.6).
 */

/** Queue indices (§5.8.2). */
export const InputQueue = {
  EVENTQ: 0,
  STATUSQ: 1,
} as const;

/** Offsets in struct virtio_input_config (§5.8.4): select, subsel, size, reserved[5], then the 128-byte union u. */
export const InputConfig = {
  select: 0, // u8, driver-written
  subsel: 1, // u8, driver-written
  size: 2, // u8, device-written: bytes of u that are valid
  reserved: 3, // u8[5]
  u: 8, // u8[128]
  SIZE: 136,
} as const;

/** The union holds at most this many bytes (§5.8.4): a larger `size` is a device error. */
export const INPUT_CONFIG_UNION_BYTES = 128;

/** `select` values (§5.8.4: enum virtio_input_config_select). */
export const InputConfigSelect = {
  UNSET: 0x00,
  ID_NAME: 0x01,
  ID_SERIAL: 0x02,
  ID_DEVIDS: 0x03,
  PROP_BITS: 0x10,
  EV_BITS: 0x11,
  ABS_INFO: 0x12,
} as const;

/** struct virtio_input_absinfo inside u (§5.8.4): five le32 fields. */
export const InputAbsInfo = {
  min: 0,
  max: 4,
  fuzz: 8,
  flat: 12,
  res: 16,
  SIZE: 20,
} as const;

/** struct virtio_input_devids inside u (§5.8.4): four le16 fields. */
export const InputDevids = {
  bustype: 0,
  vendor: 2,
  product: 4,
  version: 6,
  SIZE: 8,
} as const;

/** struct virtio_input_event (§5.8.6): le16 type, le16 code, le32 value — 8 bytes on both queues. */
export const InputEventLayout = {
  type: 0,
  code: 2,
  value: 4,
  SIZE: 8,
} as const;

/** Event types (EV_*). */
export const InputEventType = {
  EV_SYN: 0x00,
  EV_KEY: 0x01,
  EV_REL: 0x02,
  EV_ABS: 0x03,
  EV_MSC: 0x04,
  EV_SW: 0x05,
  EV_LED: 0x11,
  EV_SND: 0x12,
  EV_REP: 0x14,
  EV_FF: 0x15,
  EV_PWR: 0x16,
  EV_FF_STATUS: 0x17,
} as const;

/** The highest event type; EV_BITS subsel takes 0..EV_MAX. */
export const EV_MAX = 0x1f;

/** Codes of EV_SYN. */
export const InputSyn = {
  SYN_REPORT: 0,
  SYN_CONFIG: 1,
  SYN_MT_REPORT: 2,
  SYN_DROPPED: 3,
} as const;

/** A few codes of EV_KEY: keys and buttons. */
export const InputKey = {
  KEY_ESC: 1,
  KEY_ENTER: 28,
  KEY_A: 30,
  KEY_SPACE: 57,
  KEY_CAPSLOCK: 58,
  KEY_NUMLOCK: 69,
  KEY_SCROLLLOCK: 70,
  BTN_LEFT: 0x110,
  BTN_RIGHT: 0x111,
  BTN_MIDDLE: 0x112,
  BTN_TOUCH: 0x14a,
} as const;

/** Codes of EV_REL. */
export const InputRel = {
  REL_X: 0x00,
  REL_Y: 0x01,
  REL_HWHEEL: 0x06,
  REL_WHEEL: 0x08,
} as const;

/** Codes of EV_ABS (the axes of ABS_INFO's subsel). */
export const InputAbs = {
  ABS_X: 0x00,
  ABS_Y: 0x01,
  ABS_Z: 0x02,
  ABS_PRESSURE: 0x18,
  ABS_MT_SLOT: 0x2f,
  ABS_MT_POSITION_X: 0x35,
  ABS_MT_POSITION_Y: 0x36,
} as const;

/** Codes of EV_MSC. */
export const InputMsc = {
  MSC_SCAN: 0x04,
} as const;

/** Codes of EV_LED (what the driver sends on the status queue, §5.8.6.2). */
export const InputLed = {
  LED_NUML: 0x00,
  LED_CAPSL: 0x01,
  LED_SCROLLL: 0x02,
} as const;

/** Codes of EV_REP. */
export const InputRep = {
  REP_DELAY: 0x00,
  REP_PERIOD: 0x01,
} as const;

/** Device properties (PROP_BITS bits, INPUT_PROP_*). */
export const InputProp = {
  INPUT_PROP_POINTER: 0x00,
  INPUT_PROP_DIRECT: 0x01,
} as const;

/** Bus types of devids.bustype (BUS_*; QEMU's devices say BUS_VIRTUAL). */
export const InputBus = {
  BUS_PCI: 0x01,
  BUS_USB: 0x03,
  BUS_VIRTUAL: 0x06,
} as const;

/** One event of either queue, decoded; `value` as Linux reads it (a signed 32-bit integer). */
export interface InputEvent {
  type: number;
  code: number;
  value: number;
}

/** Encodes an event (little-endian; §5.8.6). */
export function encodeInputEvent(event: InputEvent, into = new Uint8Array(InputEventLayout.SIZE), at = 0): Uint8Array {
  const view = new DataView(into.buffer, into.byteOffset + at, InputEventLayout.SIZE);
  view.setUint16(InputEventLayout.type, event.type & 0xffff, true);
  view.setUint16(InputEventLayout.code, event.code & 0xffff, true);
  view.setInt32(InputEventLayout.value, event.value | 0, true);
  return into;
}

/** Decodes the 8 bytes of an event at `at` of `bytes` (which must hold them). */
export function decodeInputEvent(bytes: Uint8Array, at = 0): InputEvent {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, InputEventLayout.SIZE);
  return {
    type: view.getUint16(InputEventLayout.type, true),
    code: view.getUint16(InputEventLayout.code, true),
    value: view.getInt32(InputEventLayout.value, true),
  };
}

/** The codes whose bits are set in a bitmap (bit n of byte n/8, as EV_BITS and PROP_BITS give them, §5.8.4). */
export function bitmapCodes(bitmap: Uint8Array): number[] {
  const codes: number[] = [];
  for (let byte = 0; byte < bitmap.length; byte++) {
    for (let bit = 0; bit < 8; bit++) if (bitmap[byte] & (1 << bit)) codes.push(byte * 8 + bit);
  }
  return codes;
}

const typeNames = new Map<number, string>(Object.entries(InputEventType).map(([name, type]) => [type, name]));

/** "EV_KEY" for 1; unknown types as "type N". */
export function inputEventTypeName(type: number): string {
  return typeNames.get(type) ?? `type ${type}`;
}
