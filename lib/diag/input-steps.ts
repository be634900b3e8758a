import type { VirtioInput, InputDevidsValue, InputAbsInfoValue } from '../devices';
import { InputEventType, InputLed, inputEventTypeName, type InputEvent } from '../spec';
import { hexUnsigned as hex } from '../util/hex';

/** What a virtio-input device says of itself through its config space (virtio 1.2 §5.8.4), as plain JSON data. */
export interface InputDescription {
  name: string;
  serial: string;
  devids?: InputDevidsValue;
  properties: number[];
  /** Each supported event type (EV_* name) with its codes. */
  events: Record<string, number[]>;
  /** ABS_INFO of each axis EV_ABS lists. */
  absInfo: Record<number, InputAbsInfoValue>;
}

/** Reads everything the config space describes. */
export function describeInput(input: VirtioInput): InputDescription {
  const events: Record<string, number[]> = {};
  for (const type of input.eventTypes()) events[inputEventTypeName(type)] = input.eventBits(type);
  const absInfo: Record<number, InputAbsInfoValue> = {};
  for (const axis of events.EV_ABS ?? []) {
    const info = input.absInfo(axis);
    if (info) absInfo[axis] = info;
  }
  const devids = input.devids();
  return {
    name: input.name(),
    serial: input.serial(),
    ...(devids ? { devids } : {}),
    properties: input.propBits(),
    events,
    absInfo,
  };
}

/** One line for people: "QEMU Virtio Keyboard", serial, ids, EV_KEY (n codes), … */
export function inputSummary(d: InputDescription): string {
  const ids = d.devids
    ? `bus ${hex(d.devids.bustype)} vendor ${hex(d.devids.vendor)} product ${hex(d.devids.product)} ` +
      `version ${hex(d.devids.version)}`
    : 'no devids';
  const types = Object.entries(d.events).map(([name, codes]) => `${name} (${codes.length})`);
  return (
    `"${d.name}"${d.serial ? `, serial "${d.serial}"` : ''}; ${ids}; ` +
    `${types.length ? types.join(' ') : 'no event types'}` +
    `${Object.keys(d.absInfo).length ? `; axes ${Object.keys(d.absInfo).join(',')}` : ''}`
  );
}

/**
 * The statusq step: a device with LEDs gets LED_NUML 0 (§5.8.6.2) and
 * must use the buffer; an event coming back within `echoTimeoutMs` (a
 * looped-back sim) shows the event queue works too, no echo is not a
 * failure.
 */
export async function inputStatusEcho(
  input: VirtioInput,
  echoTimeoutMs: number,
): Promise<string | { skipped: string }> {
  if (!input.eventBits(InputEventType.EV_LED).includes(InputLed.LED_NUML))
    return { skipped: 'the device has no LED_NUML: nothing to send on statusq' };
  const sent: InputEvent = { type: InputEventType.EV_LED, code: InputLed.LED_NUML, value: 0 };
  let listener: ((event: InputEvent) => void) | undefined;
  let timer: NodeJS.Timeout | undefined;
  const echoed = new Promise<boolean>((resolve) => {
    listener = (event) => {
      if (event.type === sent.type && event.code === sent.code && event.value === sent.value) resolve(true);
    };
    input.on('event', listener);
  });
  try {
    await input.sendStatus(sent.type, sent.code, sent.value);
    const found = await Promise.race([
      echoed,
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), echoTimeoutMs))),
    ]);
    return found
      ? 'EV_LED LED_NUML 0 used by the device and echoed on eventq'
      : 'EV_LED LED_NUML 0 used by the device (no echo: the device is not looped back)';
  } finally {
    clearTimeout(timer);
    if (listener) input.off('event', listener);
  }
}
