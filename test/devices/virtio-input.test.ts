/** virtio-input (virtio 1.2 §5.8) on the sim: Version 1, Version 2 and packed rings. */
import { VirtioInput } from '../../lib/devices';
import { ClosedError, ProtocolError, TransportError } from '../../lib/errors';
import { InputModel, RngModel, type InputModelOptions } from '../../lib/sim';
import {
  InputAbs,
  InputBus,
  InputConfigSelect,
  InputEventType,
  InputKey,
  InputLed,
  InputProp,
  InputSyn,
  type InputEvent,
} from '../../lib/spec';
import { SIM_VARIANTS, driverOnSim, simRig, turns, type SimVariant } from '../support/sim-rig';

const { EV_SYN, EV_KEY, EV_ABS, EV_LED, EV_REL } = InputEventType;
const SYN: InputEvent = { type: EV_SYN, code: InputSyn.SYN_REPORT, value: 0 };

async function until(check: () => boolean, what: string, turnsLeft = 2000): Promise<void> {
  while (!check()) {
    if (--turnsLeft < 0) throw new Error(`timed out waiting for ${what}`);
    await turns(1);
  }
}

describe.each(SIM_VARIANTS)('virtio-input on a %s sim', (_label, variant: SimVariant) => {
  const violations: unknown[] = [];
  afterEach(() => expect(violations.splice(0)).toEqual([]));

  const open = (
    options: InputModelOptions = {},
    driverOptions: { maxQueuedEvents?: number; queueSize?: number } = {},
  ): { input: VirtioInput; model: InputModel; close(): void } => {
    const model = new InputModel(options);
    const { driver: input, close } = driverOnSim(
      variant,
      model,
      (r) => VirtioInput.open(r.transport, { memory: r.pool, ...driverOptions }),
      violations,
    );
    return { input, model, close };
  };

  test('config: name, serial, devids, properties, event types and codes, abs info', () => {
    const { input, close } = open({
      name: 'QEMU Virtio Tablet',
      serial: 'SN-42',
      devids: { bustype: InputBus.BUS_VIRTUAL, vendor: 0x0627, product: 3, version: 1 },
      properties: [InputProp.INPUT_PROP_DIRECT],
      eventCodes: {
        [EV_KEY]: [InputKey.BTN_LEFT, InputKey.BTN_TOUCH],
        [EV_ABS]: [InputAbs.ABS_X, InputAbs.ABS_Y],
        [EV_REL]: [],
      },
      absInfo: { [InputAbs.ABS_X]: { min: -5, max: 32767, fuzz: 1, flat: 2, res: 3 } },
    });
    try {
      expect(input.name()).toBe('QEMU Virtio Tablet');
      expect(input.serial()).toBe('SN-42');
      expect(input.devids()).toEqual({ bustype: 6, vendor: 0x0627, product: 3, version: 1 });
      expect(input.propBits()).toEqual([InputProp.INPUT_PROP_DIRECT]);
      expect(input.eventTypes()).toEqual([EV_KEY, EV_REL, EV_ABS]);
      expect(input.eventBits(EV_KEY)).toEqual([InputKey.BTN_LEFT, InputKey.BTN_TOUCH]);
      expect(input.eventBits(EV_LED)).toEqual([]);
      expect(input.absInfo(InputAbs.ABS_X)).toEqual({ min: -5, max: 32767, fuzz: 1, flat: 2, res: 3 });
      expect(input.absInfo(InputAbs.ABS_Y)).toBeUndefined();
      expect(input.queryConfig(0x7f, 0)).toEqual(new Uint8Array(0));
      expect(input.queryConfig(InputConfigSelect.ID_NAME, 0).length).toBe('QEMU Virtio Tablet'.length);
      expect(() => input.eventBits(256)).toThrow(RangeError);
    } finally {
      close();
    }
  });

  test('a device without serial or devids answers size 0: "" and undefined', () => {
    const { input, close } = open({ serial: '', devids: null });
    try {
      expect(input.serial()).toBe('');
      expect(input.devids()).toBeUndefined();
    } finally {
      close();
    }
  });

  test("events arrive as 'event', as 'report' at SYN_REPORT, and through events()", async () => {
    const { input, model, close } = open();
    try {
      const seen: InputEvent[] = [];
      const reports: InputEvent[][] = [];
      input.on('event', (e) => seen.push(e)).on('report', (r) => reports.push(r));
      const iterator = input.events();
      const x = { type: EV_ABS, code: InputAbs.ABS_X, value: 100 };
      const y = { type: EV_ABS, code: InputAbs.ABS_Y, value: -7 };
      model.inject(x, y, SYN);
      expect((await iterator.next()).value).toEqual(x);
      expect((await iterator.next()).value).toEqual(y);
      expect((await iterator.next()).value).toEqual(SYN);
      expect(seen).toEqual([x, y, SYN]);
      expect(reports).toEqual([[x, y]]);
      expect(input.inputStats).toMatchObject({ events: 3, malformed: 0, overruns: 0 });
    } finally {
      close();
    }
  });

  test('eventq is refilled: many more events than the queue size all arrive, in order', async () => {
    const { input, model, close } = open({}, { queueSize: 8 });
    try {
      const total = 500;
      const got: number[] = [];
      const reading = (async () => {
        for await (const event of input.events()) {
          got.push(event.value);
          if (got.length === total) break;
        }
      })();
      for (let i = 0; i < total; i++) model.inject({ type: EV_KEY, code: InputKey.KEY_A, value: i });
      await reading;
      expect(got).toEqual(Array.from({ length: total }, (_, i) => i));
      expect(model.dropped).toBe(0);
      await until(() => model.postedEvents === 8, 'the buffers back on eventq');
    } finally {
      close();
    }
  });

  test('an iterator that falls behind keeps the newest maxQueuedEvents and counts the rest', async () => {
    const { input, model, close } = open({}, { maxQueuedEvents: 4 });
    try {
      const iterator = input.events();
      for (let i = 0; i < 10; i++) model.inject({ type: EV_KEY, code: InputKey.KEY_A, value: i });
      await until(() => input.inputStats.events === 10, 'ten events');
      const values: number[] = [];
      for (let i = 0; i < 4; i++) values.push((await iterator.next()).value.value);
      expect(values).toEqual([6, 7, 8, 9]);
      expect(input.inputStats.overruns).toBe(6);
      await iterator.return!();
      expect(await iterator.next()).toEqual({ value: undefined, done: true });
    } finally {
      close();
    }
  });

  test('statusq: sendStatus() resolves once the device used it; the device sees the LED event', async () => {
    const { input, model, close } = open();
    try {
      await input.sendStatus(EV_LED, InputLed.LED_CAPSL, 1);
      await input.sendStatus(EV_LED, InputLed.LED_NUML, 0);
      expect(model.status).toEqual([
        { type: EV_LED, code: InputLed.LED_CAPSL, value: 1 },
        { type: EV_LED, code: InputLed.LED_NUML, value: 0 },
      ]);
      await expect(input.sendStatus(0x10000, 0, 0)).rejects.toThrow(RangeError);
      await expect(input.sendStatus(EV_LED, 0, 2 ** 32)).rejects.toThrow(RangeError);
    } finally {
      close();
    }
  });

  test('a used length other than 8 is counted and dropped, and the buffer goes back', async () => {
    const { input, model, close } = open();
    try {
      const seen: InputEvent[] = [];
      input.on('event', (e) => seen.push(e));
      const good = { type: EV_KEY, code: InputKey.KEY_A, value: 1 };
      model.injectRaw(new Uint8Array([1, 0, 30, 0, 9, 9, 9, 9]), 4);
      model.injectRaw(new Uint8Array([1, 0, 30, 0, 9, 9, 9, 9]), 0);
      model.inject(good);
      await until(() => seen.length === 1, 'the good event');
      expect(seen).toEqual([good]);
      expect(input.inputStats.malformed).toBe(2);
      await until(() => model.postedEvents === 64, 'all buffers posted again');
    } finally {
      close();
    }
  });

  test('close ends the iterators (after what they hold); later calls are refused', async () => {
    const { input, model, close } = open();
    const iterator = input.events();
    const waiting = input.events().next();
    model.inject({ type: EV_KEY, code: InputKey.KEY_A, value: 1 });
    await until(() => input.inputStats.events === 1, 'one event');
    // The waiting next() took that event; this iterator's backlog has it too.
    expect((await waiting).value).toMatchObject({ value: 1 });
    close();
    expect((await iterator.next()).value).toMatchObject({ value: 1 });
    expect(await iterator.next()).toEqual({ value: undefined, done: true });
    expect(await input.events().next()).toEqual({ value: undefined, done: true });
    expect(() => input.name()).toThrow(ClosedError);
    await expect(input.sendStatus(EV_LED, 0, 1)).rejects.toThrow(ClosedError);
    input.close();
  });
});

describe('virtio-input memory ownership', () => {
  test.each(SIM_VARIANTS)(
    '%s: close() with a status event the device never used rejects it; the reset frees every region',
    async (_label, variant) => {
      const rig = simRig(variant, new InputModel(), { suppressNotifications: true });
      const before = rig.pool.stats().regions;
      const input = VirtioInput.open(rig.transport, { memory: rig.pool });
      try {
        const pending = input.sendStatus(EV_LED, InputLed.LED_CAPSL, 1);
        await turns(3);
        expect(rig.pool.stats().regions).toBeGreaterThan(before + 2);
        input.close();
        await expect(pending).rejects.toMatchObject({ code: 'ERR_VIRTIO_CANCELED' });
        // The sim's reset completed: rings, event buffers and the status event are the driver's again, and freed.
        expect(rig.pool.stats()).toMatchObject({ regions: before, deferredRegions: 0 });
      } finally {
        input.close();
        expect(rig.close()).toEqual([]);
      }
    },
  );
});

describe('virtio-input with a bad device', () => {
  test('a config size above 128 is a ProtocolError, and the driver goes on', async () => {
    const rig = simRig(2, new InputModel(), {
      hostile: { seed: 1, behaviours: { 'config-out-of-range': { offset: 2, width: 1, value: 200 } } },
    });
    const input = VirtioInput.open(rig.transport, { memory: rig.pool });
    try {
      const error = (() => {
        try {
          input.name();
        } catch (e) {
          return e;
        }
      })();
      expect(error).toBeInstanceOf(ProtocolError);
      expect(error).toMatchObject({ reason: 'input-config-size' });
      await input.sendStatus(EV_LED, InputLed.LED_CAPSL, 1);
    } finally {
      input.close();
      rig.close();
    }
  });

  test('a short devids or abs_info answer is a ProtocolError', () => {
    const rig = simRig(2, new InputModel(), {
      hostile: { seed: 1, behaviours: { 'config-out-of-range': { offset: 2, width: 1, value: 3 } } },
    });
    const input = VirtioInput.open(rig.transport, { memory: rig.pool });
    try {
      expect(() => input.devids()).toThrow(ProtocolError);
      expect(() => input.absInfo(InputAbs.ABS_X)).toThrow(ProtocolError);
      // A string of 3 bytes is fine.
      expect(input.name()).toBe('vir');
    } finally {
      input.close();
      rig.close();
    }
  });

  test('a device that notifies a config change on every select write (as QEMU 7.2 does) is read all the same', () => {
    let changes = 0;
    const model = new InputModel({
      name: 'QEMU Virtio Keyboard',
      onSelect: () => (changes++, rig.sim.raiseConfigChange()),
    });
    const rig = simRig(2, model);
    const input = VirtioInput.open(rig.transport, { memory: rig.pool });
    try {
      expect(input.name()).toBe('QEMU Virtio Keyboard');
      expect(input.eventTypes()).toEqual([EV_KEY, EV_ABS, EV_LED]);
      expect(changes).toBeGreaterThan(2 * 31);
    } finally {
      input.close();
      expect(rig.close()).toEqual([]);
    }
  });

  test('a config space shorter than struct virtio_input_config is refused at open', () => {
    const rig = simRig(2, new InputModel(), {
      hostile: { seed: 1, behaviours: { 'config-window-short': { configBytes: 64 } } },
    });
    try {
      expect(() => VirtioInput.open(rig.transport, { memory: rig.pool })).toThrow(TransportError);
    } finally {
      rig.close();
    }
  });

  test('the wrong device type and bad options are refused', () => {
    const rig = simRig(2, new RngModel());
    try {
      expect(() => VirtioInput.open(rig.transport, { memory: rig.pool, maxQueuedEvents: 0 })).toThrow(RangeError);
      expect(() => VirtioInput.open(rig.transport, { memory: rig.pool })).toThrow(
        expect.objectContaining({ code: TransportError.WRONG_DEVICE }),
      );
      expect(VirtioInput.deviceId).toBe(18);
    } finally {
      rig.close();
    }
  });
});
