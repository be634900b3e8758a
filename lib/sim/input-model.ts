import { outOfRange } from '../errors';
import {
  DeviceId,
  EV_MAX,
  INPUT_CONFIG_UNION_BYTES,
  InputAbs,
  InputAbsInfo,
  InputBus,
  InputConfig,
  InputConfigSelect,
  InputDevids,
  InputEventLayout,
  InputEventType,
  InputKey,
  InputLed,
  InputSyn,
  decodeInputEvent,
  encodeInputEvent,
  type InputEvent,
} from '../spec';
import { HeldReceives, fillWritable } from './held-receives';
import type { SimConfigField, SimDeviceModel, SimRequest } from './sim-model';

/** struct virtio_input_absinfo values of one axis (§5.8.4). */
export interface InputModelAbsInfo {
  min: number;
  max: number;
  fuzz?: number;
  flat?: number;
  res?: number;
}

export interface InputModelOptions {
  /** ID_NAME (default "virtio-mmio sim input"); at most 128 bytes of UTF-8. */
  name?: string;
  /** ID_SERIAL (default "sim-0001"; "" answers size 0). */
  serial?: string;
  /** ID_DEVIDS (default BUS_VIRTUAL, vendor 0x1af4, product 0x0001, version 1; null answers size 0). */
  devids?: { bustype: number; vendor: number; product: number; version: number } | null;
  /** PROP_BITS: the INPUT_PROP_* set (default none). */
  properties?: readonly number[];
  /**
   * EV_BITS: the codes of each event type the device supports (default: a keyboard with a pointer — EV_KEY KEY_ESC,
   * KEY_A, KEY_ENTER, KEY_SPACE, BTN_LEFT, BTN_TOUCH; EV_ABS ABS_X, ABS_Y; EV_LED NUML, CAPSL, SCROLLL). A type listed
   * with no codes answers a one-byte empty bitmap (supported, §5.8.4).
   */
  eventCodes?: Readonly<Partial<Record<number, readonly number[]>>>;
  /** ABS_INFO of each axis (default ABS_X and ABS_Y in [0, 32767]). */
  absInfo?: Readonly<Partial<Record<number, InputModelAbsInfo>>>;
  /** QueueNumMax of both queues (default 64). */
  queueSize?: number;
  /** Events held while the driver has no event buffer posted before the oldest is dropped (default 4096). */
  backlog?: number;
  /** Each statusq event comes back on eventq, followed by a SYN_REPORT (default false; the CLI's sim:input). */
  echoStatus?: boolean;
  /**
   * Called after each select or subsel write has changed the answer: QEMU 7.2 notifies a configuration change there
   * (a new ConfigGeneration); pass `() => sim.raiseConfigChange()` to do the same.
   */
  onSelect?: () => void;
}

interface Pending {
  bytes: Uint8Array;
  /** The used length reported (8 unless injectRaw said otherwise). */
  len: number;
}

/**
 * An input device (virtio 1.2 §5.8): the config space answers select and
 * subsel (§5.8.4) from the options; inject() hands events to the buffers
 * the driver keeps on eventq, in order (held while none is posted); what
 * the driver sends on statusq is kept in `status`.
 */
export class InputModel implements SimDeviceModel {
  readonly deviceId = DeviceId.INPUT;
  readonly features = 0n;
  readonly queueSizes: readonly number[];
  readonly config = new Uint8Array(InputConfig.SIZE);
  readonly configFields: readonly SimConfigField[] = [
    { offset: InputConfig.select, width: 1, writable: true },
    { offset: InputConfig.subsel, width: 1, writable: true },
    { offset: InputConfig.size, width: 1 },
    ...Array.from({ length: 5 }, (_, i) => ({ offset: InputConfig.reserved + i, width: 1 as const })),
    ...Array.from({ length: INPUT_CONFIG_UNION_BYTES }, (_, i) => ({ offset: InputConfig.u + i, width: 1 as const })),
  ];
  /** Events the driver sent on statusq (§5.8.6.2), in order. */
  readonly status: InputEvent[] = [];
  /** Events dropped: the backlog was full, or a buffer was too small for one. */
  dropped = 0;
  /** Selects answered (config writes of select or subsel). */
  queries = 0;
  private readonly name: Uint8Array;
  private readonly serial: Uint8Array;
  private readonly devids: InputModelOptions['devids'];
  private readonly properties: readonly number[];
  private readonly eventCodes: ReadonlyMap<number, readonly number[]>;
  private readonly absInfo: ReadonlyMap<number, InputModelAbsInfo>;
  private readonly backlogLimit: number;
  private readonly backlog: Pending[] = [];
  private readonly receives = new HeldReceives(() => this.deliver());
  private readonly statusListeners: ((event: InputEvent) => void)[] = [];
  private readonly echoStatus: boolean;
  private readonly onSelect?: () => void;

  constructor(options: InputModelOptions = {}) {
    const queueSize = options.queueSize ?? 64;
    if (!Number.isInteger(queueSize) || queueSize < 0 || queueSize > 32768)
      throw outOfRange(`queueSize must be an integer in [0, 32768], got ${String(queueSize)}`);
    this.queueSizes = [queueSize, queueSize];
    this.name = unionString(options.name ?? 'virtio-mmio sim input', 'name');
    this.serial = unionString(options.serial ?? 'sim-0001', 'serial');
    this.devids =
      options.devids === undefined
        ? { bustype: InputBus.BUS_VIRTUAL, vendor: 0x1af4, product: 0x0001, version: 1 }
        : options.devids;
    this.properties = options.properties ?? [];
    const codes = options.eventCodes ?? {
      [InputEventType.EV_KEY]: [
        InputKey.KEY_ESC,
        InputKey.KEY_A,
        InputKey.KEY_ENTER,
        InputKey.KEY_SPACE,
        InputKey.BTN_LEFT,
        InputKey.BTN_TOUCH,
      ],
      [InputEventType.EV_ABS]: [InputAbs.ABS_X, InputAbs.ABS_Y],
      [InputEventType.EV_LED]: [InputLed.LED_NUML, InputLed.LED_CAPSL, InputLed.LED_SCROLLL],
    };
    this.eventCodes = new Map(Object.entries(codes).map(([type, list]) => [Number(type), list ?? []]));
    for (const [type, list] of this.eventCodes) {
      if (!Number.isInteger(type) || type < 0 || type > EV_MAX) throw outOfRange(`event type ${type} is not 0..EV_MAX`);
      for (const code of list)
        if (!Number.isInteger(code) || code < 0 || code >= INPUT_CONFIG_UNION_BYTES * 8)
          throw outOfRange(`event code ${code} does not fit a 128-byte bitmap`);
    }
    const abs = options.absInfo ?? {
      [InputAbs.ABS_X]: { min: 0, max: 32767 },
      [InputAbs.ABS_Y]: { min: 0, max: 32767 },
    };
    this.absInfo = new Map(
      Object.entries(abs).flatMap(([axis, info]) => (info ? [[Number(axis), info] as const] : [])),
    );
    this.backlogLimit = options.backlog ?? 4096;
    this.echoStatus = options.echoStatus ?? false;
    this.onSelect = options.onSelect;
  }

  /** Event buffers the driver has posted and the device holds. */
  get postedEvents(): number {
    return this.receives.length;
  }

  /** Events for the driver, each in one eventq buffer (§5.8.6.1); held in order while none is posted. */
  inject(...events: InputEvent[]): void {
    for (const event of events) this.hold({ bytes: encodeInputEvent(event), len: InputEventLayout.SIZE });
    this.deliver();
  }

  /** A key press and its SYN_REPORT, then the release and its SYN_REPORT (a test's keystroke). */
  tapKey(code: number): void {
    const syn = { type: InputEventType.EV_SYN, code: InputSyn.SYN_REPORT, value: 0 };
    this.inject(
      { type: InputEventType.EV_KEY, code, value: 1 },
      syn,
      { type: InputEventType.EV_KEY, code, value: 0 },
      syn,
    );
  }

  /** For tests of a driver's checks: `bytes` written into the next buffer, with `len` as the used length. */
  injectRaw(bytes: Uint8Array, len: number): void {
    this.hold({ bytes: Uint8Array.from(bytes), len });
    this.deliver();
  }

  /** Calls `listener` with each event the driver sends on statusq; returns the unsubscribe function. */
  onStatus(listener: (event: InputEvent) => void): () => void {
    this.statusListeners.push(listener);
    return () => {
      const at = this.statusListeners.indexOf(listener);
      if (at >= 0) this.statusListeners.splice(at, 1);
    };
  }

  handle(request: SimRequest): number | Promise<number> {
    if (request.queue === 0) return this.receives.hold(request);
    if (request.queue !== 1) return 0;
    // §5.8.6.2: one event per statusq buffer, device-readable.
    const bytes = Buffer.concat(request.readable.map((b) => Buffer.from(b)));
    if (bytes.length >= InputEventLayout.SIZE) {
      const event = decodeInputEvent(bytes);
      this.status.push(event);
      for (const listener of [...this.statusListeners]) listener(event);
      if (this.echoStatus) this.inject(event, { type: InputEventType.EV_SYN, code: InputSyn.SYN_REPORT, value: 0 });
    }
    return 0;
  }

  /** The driver wrote select or subsel: the answer (size and union) follows it (§5.8.4). */
  configWritten(offset: number): void {
    if (offset !== InputConfig.select && offset !== InputConfig.subsel) return;
    this.queries++;
    const answer = this.answer(this.config[InputConfig.select], this.config[InputConfig.subsel]);
    this.config.fill(0, InputConfig.u);
    this.config.set(answer, InputConfig.u);
    this.config[InputConfig.size] = answer.length;
    this.onSelect?.();
  }

  reset(): void {
    this.receives.clear();
    this.backlog.length = 0;
  }

  resetQueue(queue: number): void {
    if (queue === 0) this.receives.clear();
  }

  private answer(select: number, subsel: number): Uint8Array {
    switch (select) {
      case InputConfigSelect.ID_NAME:
        return subsel === 0 ? this.name : empty;
      case InputConfigSelect.ID_SERIAL:
        return subsel === 0 ? this.serial : empty;
      case InputConfigSelect.ID_DEVIDS: {
        if (subsel !== 0 || !this.devids) return empty;
        const bytes = new Uint8Array(InputDevids.SIZE);
        const view = new DataView(bytes.buffer);
        view.setUint16(InputDevids.bustype, this.devids.bustype, true);
        view.setUint16(InputDevids.vendor, this.devids.vendor, true);
        view.setUint16(InputDevids.product, this.devids.product, true);
        view.setUint16(InputDevids.version, this.devids.version, true);
        return bytes;
      }
      case InputConfigSelect.PROP_BITS:
        return subsel === 0 && this.properties.length > 0 ? bitmap(this.properties) : empty;
      case InputConfigSelect.EV_BITS: {
        const codes = this.eventCodes.get(subsel);
        return codes ? bitmap(codes) : empty;
      }
      case InputConfigSelect.ABS_INFO: {
        const info = this.absInfo.get(subsel);
        if (!info) return empty;
        const bytes = new Uint8Array(InputAbsInfo.SIZE);
        const view = new DataView(bytes.buffer);
        view.setInt32(InputAbsInfo.min, info.min, true);
        view.setInt32(InputAbsInfo.max, info.max, true);
        view.setInt32(InputAbsInfo.fuzz, info.fuzz ?? 0, true);
        view.setInt32(InputAbsInfo.flat, info.flat ?? 0, true);
        view.setInt32(InputAbsInfo.res, info.res ?? 0, true);
        return bytes;
      }
      default:
        // §5.8.4: a select the device does not know answers size 0.
        return empty;
    }
  }

  private hold(pending: Pending): void {
    this.backlog.push(pending);
    if (this.backlog.length > this.backlogLimit) {
      this.backlog.shift();
      this.dropped++;
    }
  }

  private deliver(): void {
    while (this.backlog.length > 0 && this.receives.length > 0) {
      const pending = this.backlog.shift()!;
      const [{ request, complete }] = this.receives.take(1);
      const written = fillWritable(request, pending.bytes);
      if (written < pending.bytes.length) this.dropped++;
      complete(pending.len === InputEventLayout.SIZE ? written : pending.len);
    }
  }
}

const empty = new Uint8Array(0);

/** A bitmap with the bits of `codes` set, as long as the highest needs (at least one byte). */
function bitmap(codes: readonly number[]): Uint8Array {
  const bytes = new Uint8Array(Math.max(1, Math.ceil((Math.max(-1, ...codes) + 1) / 8)));
  for (const code of codes) bytes[code >> 3] |= 1 << (code & 7);
  return bytes;
}

function unionString(text: string, what: string): Uint8Array {
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > INPUT_CONFIG_UNION_BYTES)
    throw outOfRange(`${what} is ${bytes.length} bytes of UTF-8, at most ${INPUT_CONFIG_UNION_BYTES} fit`);
  return Uint8Array.from(bytes);
}
