import { ProtocolError, outOfRange } from '../errors';
import {
  EV_MAX,
  INPUT_CONFIG_UNION_BYTES,
  InputAbsInfo,
  InputConfig,
  InputConfigSelect,
  InputDevids,
  bitmapCodes,
} from '../spec';
import type { DeviceConfig } from '../transport';

/** struct virtio_input_absinfo (§5.8.4): one absolute axis. */
export interface InputAbsInfoValue {
  min: number;
  max: number;
  fuzz: number;
  flat: number;
  res: number;
}

/** struct virtio_input_devids (§5.8.4). */
export interface InputDevidsValue {
  bustype: number;
  vendor: number;
  product: number;
  version: number;
}

const SELECT = 'select';
const SUBSEL = 'subsel';

/**
 * The select/subsel window of virtio-input's config space (virtio 1.2
 * §5.8.4): the driver writes select and subsel, the device answers with
 * `size` and that many bytes of the union. Every answer is read inside one
 * configuration generation (§2.5.1) and copied out; `size` is checked
 * before it sizes anything. QEMU 7.2 notifies a configuration change for
 * each select/subsel write, so the generation moves with them; the
 * bracket starts after them.
 */
export class InputConfigReader {
  constructor(
    private readonly config: DeviceConfig,
    private readonly label: string,
  ) {}

  /** The valid bytes of the union for (select, subsel); empty when the device has nothing there (size 0). */
  query(select: number, subsel: number): Uint8Array {
    checkByte(select, SELECT);
    checkByte(subsel, SUBSEL);
    const { config } = this;
    // The writes stay outside the generation bracket: QEMU raises a config change (a new generation) on each of them.
    config.write8(InputConfig.select, select);
    config.write8(InputConfig.subsel, subsel);
    return config.atomic(() => {
      const size = config.read8(InputConfig.size);
      // §5.8.4: u is 128 bytes; a larger size would read past it.
      if (size > INPUT_CONFIG_UNION_BYTES) {
        throw new ProtocolError(
          'input-config-size',
          `${this.label}: virtio-input config select 0x${select.toString(16)} subsel ${subsel}: size ${size} is ` +
            `more than the ${INPUT_CONFIG_UNION_BYTES} bytes of the union`,
        );
      }
      return size === 0 ? new Uint8Array(0) : Uint8Array.from(config.readBytes(InputConfig.u, size));
    });
  }

  /** ID_NAME / ID_SERIAL: the string up to its first NUL (§5.8.4 does not promise one). */
  string(select: number): string {
    const bytes = this.query(select, 0);
    const end = bytes.indexOf(0);
    return Buffer.from(end < 0 ? bytes : bytes.subarray(0, end)).toString('utf8');
  }

  /** ID_DEVIDS, or undefined when the device gives none (size 0). */
  devids(): InputDevidsValue | undefined {
    const bytes = this.sized(InputConfigSelect.ID_DEVIDS, 0, InputDevids.SIZE, 'devids');
    if (!bytes) return undefined;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return {
      bustype: view.getUint16(InputDevids.bustype, true),
      vendor: view.getUint16(InputDevids.vendor, true),
      product: view.getUint16(InputDevids.product, true),
      version: view.getUint16(InputDevids.version, true),
    };
  }

  /** ABS_INFO of `axis`, or undefined when the device does not have that axis (size 0). */
  absInfo(axis: number): InputAbsInfoValue | undefined {
    const bytes = this.sized(InputConfigSelect.ABS_INFO, axis, InputAbsInfo.SIZE, `abs_info of axis ${axis}`);
    if (!bytes) return undefined;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    // Linux reads these le32 fields into the signed ints of struct input_absinfo.
    return {
      min: view.getInt32(InputAbsInfo.min, true),
      max: view.getInt32(InputAbsInfo.max, true),
      fuzz: view.getInt32(InputAbsInfo.fuzz, true),
      flat: view.getInt32(InputAbsInfo.flat, true),
      res: view.getInt32(InputAbsInfo.res, true),
    };
  }

  /** The codes set in the bitmap of (select, subsel) (PROP_BITS, EV_BITS). */
  bits(select: number, subsel: number): number[] {
    return bitmapCodes(this.query(select, subsel));
  }

  /** The event types the device supports: those whose EV_BITS answer has a size other than 0 (§5.8.4). */
  eventTypes(): number[] {
    const types: number[] = [];
    for (let type = 1; type <= EV_MAX; type++) {
      if (this.query(InputConfigSelect.EV_BITS, type).length > 0) types.push(type);
    }
    return types;
  }

  /** A struct that is all there or not there at all: size 0, or at least `bytes`. */
  private sized(select: number, subsel: number, bytes: number, what: string): Uint8Array | undefined {
    const answer = this.query(select, subsel);
    if (answer.length === 0) return undefined;
    if (answer.length < bytes) {
      throw new ProtocolError(
        'input-config-short',
        `${this.label}: virtio-input ${what}: size ${answer.length}, the struct has ${bytes} bytes`,
      );
    }
    return answer;
  }
}

function checkByte(value: number, name: string): void {
  if (!Number.isInteger(value) || value < 0 || value > 0xff)
    throw outOfRange(`${name} must be an integer in [0, 255], got ${String(value)}`);
}
