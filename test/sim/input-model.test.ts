import { InputModel, type SimRequest } from '../../lib/sim';
import { DeviceId, InputConfig, InputConfigSelect, InputEventType, InputKey, encodeInputEvent } from '../../lib/spec';

const request = (queue: number, writable: Uint8Array[], readable: Uint8Array[] = []): SimRequest => ({
  queue,
  head: 0,
  readable,
  writable,
  readableBytes: readable.reduce((n, b) => n + b.length, 0),
  writableBytes: writable.reduce((n, b) => n + b.length, 0),
});

/** What the model answers to (select, subsel), as a driver sees it after writing both. */
function ask(model: InputModel, select: number, subsel: number): number[] {
  model.config[InputConfig.select] = select;
  model.configWritten(InputConfig.select);
  model.config[InputConfig.subsel] = subsel;
  model.configWritten(InputConfig.subsel);
  const size = model.config[InputConfig.size];
  return [...model.config.subarray(InputConfig.u, InputConfig.u + size)];
}

describe('InputModel (virtio 1.2 §5.8)', () => {
  test('an input device: two queues, no features, the 136-byte config of §5.8.4', () => {
    const model = new InputModel({ queueSize: 16 });
    expect(model.deviceId).toBe(DeviceId.INPUT);
    expect(model.features).toBe(0n);
    expect(model.queueSizes).toEqual([16, 16]);
    expect(model.config.length).toBe(136);
    expect(model.configFields?.filter((f) => f.writable).map((f) => f.offset)).toEqual([0, 1]);
  });

  test('select/subsel answers: strings, bitmaps, unknown selects answer size 0', () => {
    const model = new InputModel({ name: 'kb', eventCodes: { [InputEventType.EV_KEY]: [InputKey.KEY_A, 9] } });
    expect(ask(model, InputConfigSelect.ID_NAME, 0)).toEqual([0x6b, 0x62]);
    // KEY_A is 30: byte 3 bit 6; 9 is byte 1 bit 1.
    expect(ask(model, InputConfigSelect.EV_BITS, InputEventType.EV_KEY)).toEqual([0, 2, 0, 0x40]);
    expect(ask(model, InputConfigSelect.EV_BITS, InputEventType.EV_ABS)).toEqual([]);
    expect(ask(model, 0x55, 0)).toEqual([]);
    // A shorter answer after a longer one leaves no stale bytes in the union.
    ask(model, InputConfigSelect.EV_BITS, InputEventType.EV_KEY);
    ask(model, InputConfigSelect.ID_NAME, 0);
    expect([...model.config.subarray(InputConfig.u, InputConfig.u + 4)]).toEqual([0x6b, 0x62, 0, 0]);
  });

  test('events wait for a posted buffer and go out one per buffer, in order; statusq events are kept', async () => {
    const model = new InputModel();
    model.inject({ type: 1, code: 30, value: 1 }, { type: 0, code: 0, value: 0 });
    const first = new Uint8Array(8);
    expect(await model.handle(request(0, [first]))).toBe(8);
    expect([...first]).toEqual([...encodeInputEvent({ type: 1, code: 30, value: 1 })]);
    const second = new Uint8Array(8);
    expect(await model.handle(request(0, [second]))).toBe(8);
    expect([...second]).toEqual(new Array(8).fill(0));
    expect(model.handle(request(1, [], [encodeInputEvent({ type: 0x11, code: 1, value: 1 })]))).toBe(0);
    expect(model.status).toEqual([{ type: 0x11, code: 1, value: 1 }]);
  });

  test('options out of range are refused', () => {
    expect(() => new InputModel({ name: 'x'.repeat(129) })).toThrow(RangeError);
    expect(() => new InputModel({ eventCodes: { [InputEventType.EV_KEY]: [1024] } })).toThrow(RangeError);
    expect(() => new InputModel({ eventCodes: { 0x20: [1] } })).toThrow(RangeError);
    expect(() => new InputModel({ queueSize: -1 })).toThrow(RangeError);
  });
});
